#![forbid(unsafe_code)]
//! `tls-steal-sidecar init` against real iptables, inside network namespaces each test creates and
//! deletes. Needs root and `ip netns` (the tests print a SKIPPED line and pass otherwise), plus
//! the `iptables` tools (nft and legacy), `python3` for the tiny listener/connector helpers, and
//! `setpriv` (or `capsh`) for the missing-capability case.
//!
//! Addresses used: 10.250.X.0/24 and fd00:250:X::/64 on a veth between two namespaces of the same
//! test (X distinct per test), and loopback. Nothing leaves the test's own namespaces.
//!
//! Over 400 lines: each test one iptables case in its own namespace, sharing the namespace helpers.

mod netns;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use netns::*;

/// Listens (in the pod) on the proxy port and the app ports; answers one line per connection:
/// `proxy:<SO_ORIGINAL_DST>` on the proxy port, `app<port>` on the others.
const LISTENER: &str = r#"
import socket, struct, sys, threading
proxy = int(sys.argv[1])
ports = [int(p) for p in sys.argv[2].split(",")]
families = [socket.AF_INET if f == "4" else socket.AF_INET6 for f in sys.argv[3].split(",")]

def original_dst(conn, family):
    if family == socket.AF_INET:
        raw = conn.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
        return "%s:%d" % (socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack("!H", raw[2:4])[0])
    raw = conn.getsockopt(41, 80, 28)  # SOL_IPV6, IP6T_SO_ORIGINAL_DST
    return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0])

def serve(sock, family, port):
    while True:
        conn, _ = sock.accept()
        try:
            tag = "proxy:" + original_dst(conn, family) if port == proxy else "app%d" % port
        except OSError as err:
            tag = "error:%s" % err
        try:
            conn.sendall((tag + "\n").encode())
        finally:
            conn.close()

for family in families:
    for port in [proxy] + ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("0.0.0.0" if family == socket.AF_INET else "::", port))
        sock.listen(16)
        threading.Thread(target=serve, args=(sock, family, port), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

/// Connects, prints the one line the listener answered.
const CONNECTOR: &str = r#"
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
deadline, last = time.time() + 10, None
while time.time() < deadline:
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            print(data.decode().strip())
            sys.exit(0)
    except OSError as err:
        last = err
        time.sleep(0.2)
print("connect-failed:%s" % last)
sys.exit(1)
"#;

struct Listener(Child);

impl Listener {
    fn start(ns: &Netns, proxy: u16, ports: &str, families: &str) -> Self {
        let mut child = ns
            .command("python3")
            .args(["-c", LISTENER, &proxy.to_string(), ports, families])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 listener");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listener = Listener(child);
        assert_eq!(line.trim(), "ready", "the listener did not start");
        listener
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What answered a connection from `ns` to `host:port`.
fn connect(ns: &Netns, host: &str, port: u16) -> String {
    let out = ns.run("python3", &["-c", CONNECTOR, host, &port.to_string()]);
    text(&out.stdout).trim().to_owned()
}

#[test]
fn ipv4_capture_reaches_proxy_with_original_destination() {
    if !privileged("ipv4_capture") {
        return;
    }
    let p = pod_and_client("v4", 11, false);
    let _listener = Listener::start(&p.pod, 15443, "443,8080", "4");
    assert_eq!(connect(&p.client, &p.ip4, 443), "app443", "before init");

    let out = p.pod.init_ok(&["--ports", "443", "--proxy-port", "15443"]);
    let log = text(&out.stderr);
    assert!(log.contains("families: ipv4;"), "{log}");
    assert!(log.contains("-A PREROUTING -j TLS_STEAL_INBOUND"), "{log}");

    assert_eq!(
        connect(&p.client, &p.ip4, 443),
        format!("proxy:{}:443", p.ip4)
    );
    assert_eq!(connect(&p.client, &p.ip4, 8080), "app8080");
    // Connections opened inside the pod (as the proxy's own) are never captured.
    assert_eq!(connect(&p.pod, &p.ip4, 443), "app443");
    assert_eq!(connect(&p.pod, "127.0.0.1", 443), "app443");
    assert_eq!(connect(&p.pod, &p.ip4, 8080), "app8080");
    // No global IPv6 address: no IPv6 rules.
    assert!(!p.pod.nat_save("ip6tables-nft-save").contains("TLS_STEAL"));
}

#[test]
fn ipv6_capture_is_auto_detected() {
    if !privileged("ipv6_capture") {
        return;
    }
    let p = pod_and_client("v6", 12, true);
    let ip6 = p.ip6.clone().unwrap();
    let _listener = Listener::start(&p.pod, 15443, "443,8080", "4,6");
    assert_eq!(connect(&p.client, &ip6, 443), "app443", "before init");

    let out = p.pod.init_ok(&["--ports", "443", "--proxy-port", "15443"]);
    let log = text(&out.stderr);
    assert!(log.contains("the pod has a global IPv6 address"), "{log}");
    assert!(log.contains("families: ipv4, ipv6;"), "{log}");

    assert_eq!(connect(&p.client, &ip6, 443), format!("proxy:[{ip6}]:443"));
    assert_eq!(connect(&p.client, &ip6, 8080), "app8080");
    assert_eq!(
        connect(&p.client, &p.ip4, 443),
        format!("proxy:{}:443", p.ip4)
    );
    assert_eq!(connect(&p.pod, &ip6, 443), "app443");
    assert_eq!(connect(&p.pod, "::1", 443), "app443");
    assert_eq!(connect(&p.pod, &p.ip4, 443), "app443");
}

#[test]
fn ipv6_off_leaves_ipv6_alone() {
    if !privileged("ipv6_off") {
        return;
    }
    let p = pod_and_client("v6off", 16, true);
    let ip6 = p.ip6.clone().unwrap();
    let _listener = Listener::start(&p.pod, 15443, "443", "4,6");
    p.pod.init_ok(&["--ports", "443", "--ipv6", "off"]);
    assert!(!p.pod.nat_save("ip6tables-nft-save").contains("TLS_STEAL"));
    assert_eq!(connect(&p.client, &ip6, 443), "app443");
    assert_eq!(
        connect(&p.client, &p.ip4, 443),
        format!("proxy:{}:443", p.ip4)
    );
}

#[test]
fn idempotent_after_mesh_rules_and_cleanup_removes_everything() {
    if !privileged("idempotent") {
        return;
    }
    let ns = Netns::new("idem", "pod");
    // A mesh's capture installed earlier must stay first.
    for tool in ["iptables-nft", "ip6tables-nft"] {
        ns.ok(tool, &["-w", "-t", "nat", "-N", "MESH_INBOUND"]);
        ns.ok(
            tool,
            &[
                "-w",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "-j",
                "MESH_INBOUND",
            ],
        );
    }
    let saves = || {
        (
            ns.nat_save("iptables-nft-save"),
            ns.nat_save("ip6tables-nft-save"),
        )
    };
    let args = ["--ports", "443,8443", "--ipv6", "on"];
    ns.init_ok(&args);
    let first = saves();
    let second_log = text(&ns.init_ok(&args).stderr);
    assert!(
        second_log.contains("PREROUTING jump already present"),
        "{second_log}"
    );
    assert_eq!(saves(), first, "a second run must leave identical rules");

    for save in [&first.0, &first.1] {
        let prerouting: Vec<&str> = save
            .lines()
            .filter(|line| line.starts_with("-A PREROUTING"))
            .collect();
        assert_eq!(
            prerouting,
            [
                "-A PREROUTING -p tcp -j MESH_INBOUND",
                "-A PREROUTING -j TLS_STEAL_INBOUND"
            ],
            "{save}"
        );
        for port in [443, 8443] {
            let rule = format!(
                "-A TLS_STEAL_INBOUND -p tcp -m tcp --dport {port} -j REDIRECT --to-ports 15443"
            );
            assert!(save.contains(&rule), "{save}");
        }
        assert!(!save.contains("OUTPUT -"), "nothing in OUTPUT: {save}");
    }

    // A new port list replaces the old one.
    ns.init_ok(&["--ports", "9443", "--ipv6", "on"]);
    let (v4, v6) = saves();
    for save in [&v4, &v6] {
        let ours: Vec<&str> = save
            .lines()
            .filter(|line| line.starts_with("-A TLS_STEAL_INBOUND "))
            .collect();
        assert_eq!(
            ours,
            ["-A TLS_STEAL_INBOUND -p tcp -m tcp --dport 9443 -j REDIRECT --to-ports 15443"]
        );
    }

    ns.init_ok(&["--cleanup"]);
    let (v4, v6) = saves();
    for save in [&v4, &v6] {
        assert!(!save.contains("TLS_STEAL"), "{save}");
        assert!(
            save.contains("-A PREROUTING -p tcp -j MESH_INBOUND"),
            "{save}"
        );
    }
    let again = text(&ns.init_ok(&["--cleanup"]).stderr);
    assert!(again.contains("nothing to remove"), "{again}");
}

#[test]
fn dry_run_changes_nothing() {
    if !privileged("dry_run") {
        return;
    }
    let ns = Netns::new("dry", "pod");
    let out = ns.init_ok(&["--ports", "443", "--ipv6", "on", "--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("# ipv4: iptables-nft-restore --noflush\n*nat\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# ipv6: ip6tables-nft-restore --noflush\n*nat\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "-A TLS_STEAL_INBOUND -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 15443\n\
             -A PREROUTING -j TLS_STEAL_INBOUND\nCOMMIT\n"
        ),
        "{stdout}"
    );
    for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
        assert!(!ns.nat_save(tool).contains("TLS_STEAL"));
    }
    assert!(!ns.ok("iptables-legacy-save", &[]).contains("TLS_STEAL"));
}

#[test]
fn backend_legacy_is_used_when_chosen_or_detected() {
    if !privileged("legacy") {
        return;
    }
    let ns = Netns::new("legacy", "pod");
    // Auto-detection: a mesh already uses legacy tables here.
    ns.ok(
        "iptables-legacy",
        &["-w", "-t", "nat", "-N", "MESH_INBOUND"],
    );
    let log = text(&ns.init_ok(&["--ports", "443", "--ipv6", "on"]).stderr);
    assert!(
        log.contains("backend: legacy (legacy rules already exist"),
        "{log}"
    );
    let v4 = ns.nat_save("iptables-legacy-save");
    assert!(v4.contains("-A PREROUTING -j TLS_STEAL_INBOUND"), "{v4}");
    assert!(
        v4.contains("--dport 443 -j REDIRECT --to-ports 15443"),
        "{v4}"
    );
    let v6 = ns.nat_save("ip6tables-legacy-save");
    assert!(v6.contains("-A PREROUTING -j TLS_STEAL_INBOUND"), "{v6}");
    assert!(!ns.nat_save("iptables-nft-save").contains("TLS_STEAL"));

    // Chosen explicitly: same rules, still nothing in nft.
    let log = text(
        &ns.init_ok(&["--ports", "443", "--ipv6", "on", "--backend", "legacy"])
            .stderr,
    );
    assert!(
        log.contains("backend: legacy (chosen with --backend legacy)"),
        "{log}"
    );
    assert_eq!(ns.nat_save("iptables-legacy-save"), v4);
    assert!(!ns.nat_save("iptables-nft-save").contains("TLS_STEAL"));
    assert!(!ns.nat_save("ip6tables-nft-save").contains("TLS_STEAL"));

    ns.init_ok(&["--cleanup", "--backend", "legacy"]);
    assert!(!ns.nat_save("iptables-legacy-save").contains("TLS_STEAL"));
    assert!(!ns.nat_save("ip6tables-legacy-save").contains("TLS_STEAL"));
    assert!(
        ns.nat_save("iptables-legacy-save")
            .contains(":MESH_INBOUND")
    );
}

#[test]
fn backend_nft_is_used_when_chosen_or_detected() {
    if !privileged("nft") {
        return;
    }
    let ns = Netns::new("nft", "pod");
    let log = text(&ns.init_ok(&["--ports", "8443", "--ipv6", "on"]).stderr);
    assert!(log.contains("backend: nft (no legacy rules here"), "{log}");
    let log = text(
        &ns.init_ok(&["--ports", "8443", "--ipv6", "on", "--backend", "nft"])
            .stderr,
    );
    assert!(
        log.contains("backend: nft (chosen with --backend nft)"),
        "{log}"
    );
    for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
        let save = ns.nat_save(tool);
        assert!(
            save.contains("-A PREROUTING -j TLS_STEAL_INBOUND"),
            "{save}"
        );
        assert!(
            save.contains("--dport 8443 -j REDIRECT --to-ports 15443"),
            "{save}"
        );
    }
    assert!(!ns.ok("iptables-legacy-save", &[]).contains("TLS_STEAL"));
    assert!(!ns.ok("ip6tables-legacy-save", &[]).contains("TLS_STEAL"));

    ns.init_ok(&["--cleanup", "--backend", "nft"]);
    for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
        assert!(!ns.nat_save(tool).contains("TLS_STEAL"));
    }
}

/// Runs the binary directly; only argument errors are expected, and `--dry-run` makes sure that
/// nothing would be written even if validation let something through.
fn init_dry(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("init")
        .args(args)
        .arg("--dry-run")
        .output()
        .unwrap()
}

fn assert_fails(out: &Output, code: i32, message: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in: {stderr}"
    );
}

/// Exit 0 (the pod must start), the reason logged, nothing printed or installed.
fn assert_fails_open(out: &Output, message: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains(message) && stderr.contains("not capturing anything"),
        "expected {message:?} in: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing printed: {}",
        text(&out.stdout)
    );
}

#[test]
fn bad_port_lists_fail_open_naming_the_item() {
    for (ports, message) in [
        ("", "the list is empty"),
        ("443,https", "`https` is not a port number"),
        ("443,-1", "`-1` is not a port number"),
        ("0", "port `0` is out of range"),
        ("443,65536", "port `65536` is out of range"),
        ("443,8443,443", "port 443 is listed more than once"),
        ("443,,8443", "item 2 is empty"),
    ] {
        let out = init_dry(&[&format!("--ports={ports}")]);
        assert_fails_open(&out, message);
    }
}

#[test]
fn proxy_ports_in_the_list_fail_open_naming_the_port() {
    let out = init_dry(&["--ports", "443,15443", "--proxy-port", "15443"]);
    assert_fails_open(&out, "--proxy-port: 15443 is also in --ports");
    let out = init_dry(&["--ports", "443,8443", "--proxy-port", "8443"]);
    assert_fails_open(&out, "--proxy-port: 8443 is also in --ports");
    let out = init_dry(&["--ports", "443,15400"]);
    assert_fails_open(&out, "15400 is the proxy's session API port");
    let out = init_dry(&["--ports", "15401"]);
    assert_fails_open(&out, "15401 is the proxy's admin port");
}

#[test]
fn a_reserved_port_installs_nothing_and_the_pod_starts() {
    if !privileged("reserved_port") {
        return;
    }
    let ns = Netns::new("reserved", "pod");
    for ports in ["443,15443", "15400", "443,15401"] {
        let out = ns.init(&["--ports", ports, "--ipv6", "on"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{ports}: {stderr}");
        assert!(stderr.contains("not capturing anything"), "{stderr}");
        for tool in [
            "iptables-nft-save",
            "ip6tables-nft-save",
            "iptables-legacy-save",
        ] {
            let save = ns.nat_save(tool);
            assert!(
                !save.contains("TLS_STEAL_INBOUND"),
                "{ports} {tool}: {save}"
            );
        }
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

#[test]
fn missing_iptables_is_named() {
    if !privileged("missing_iptables") {
        return;
    }
    let ns = Netns::new("nobin", "pod");
    let empty = tempfile::tempdir().unwrap();
    let ip = find_in_path("ip").expect("ip in PATH");
    for (backend, named) in [
        (
            "auto",
            "`iptables-legacy`, `iptables-nft`, `iptables` not found in PATH",
        ),
        ("nft", "`iptables-nft` not found in PATH"),
        ("legacy", "`iptables-legacy` not found in PATH"),
    ] {
        // `ip` itself is started by absolute path; the binary then sees only the empty PATH.
        let out = Command::new(&ip)
            .env("PATH", empty.path())
            .args(["netns", "exec", &ns.name, BIN, "init", "--ports", "443"])
            .args(["--ipv6", "on", "--backend", backend])
            .output()
            .unwrap();
        assert_fails(&out, 3, "iptables is not installed");
        assert_fails(&out, 3, named);
        assert_fails(&out, 3, &empty.path().display().to_string());
    }
}

#[test]
fn missing_capabilities_are_explained() {
    if !privileged("missing_caps") {
        return;
    }
    let ns = Netns::new("nocaps", "pod");
    let drop_caps: Vec<String> = if find_in_path("setpriv").is_some() {
        ["setpriv", "--bounding-set", "-net_admin,-net_raw"]
            .into_iter()
            .chain(["--inh-caps", "-net_admin,-net_raw", BIN])
            .map(str::to_owned)
            .collect()
    } else if find_in_path("capsh").is_some() {
        let script = format!("exec {BIN} \"$@\"");
        [
            "capsh",
            "--drop=cap_net_admin,cap_net_raw",
            "--",
            "-c",
            &script,
            "capsh",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    } else {
        panic!("neither setpriv (util-linux) nor capsh (libcap2-bin) is installed");
    };
    for backend in ["auto", "nft", "legacy"] {
        for extra in [&[][..], &["--cleanup"][..]] {
            let out = ns
                .command(&drop_caps[0])
                .args(&drop_caps[1..])
                .args([
                    "init",
                    "--ports",
                    "443",
                    "--ipv6",
                    "on",
                    "--backend",
                    backend,
                ])
                .args(extra)
                .output()
                .unwrap();
            assert_fails(
                &out,
                4,
                "the tls-steal-init container needs the NET_ADMIN and NET_RAW capabilities",
            );
        }
    }
    // Nothing was installed by the failed attempts.
    assert!(!ns.nat_save("iptables-nft-save").contains("TLS_STEAL"));
}

#![forbid(unsafe_code)]
//! Stays over 400 lines: one end-to-end scenario plus the helpers only it uses (python app, curl).
//!
//! A whole pod in network namespaces: a real HTTPS app listening on IPv4 and IPv6, the real
//! `tls-steal-sidecar init` (iptables capture) and `tls-steal-sidecar proxy` with its default
//! listeners (`0.0.0.0:15443` and `[::]:15443`), and real `curl` clients in another namespace
//! speaking HTTP/1.1 and HTTP/2 over both families (issue #3: the IPv6 listener).
//!
//! Needs root and `ip netns` (prints a SKIPPED line and passes otherwise), the `iptables` tools,
//! `python3` (the app: `http.server` + `ssl`) and `curl` with HTTP/2.
//!
//! Addresses used: 10.250.41.0/24 and fd00:250:41::/64 on a veth between the test's own two
//! namespaces (pod `::1`/`.1`, client `::2`/`.2`), and loopback inside the pod. Nothing leaves
//! the test's own namespaces.

mod common;
mod netns;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Ca;
use netns::{BIN, Netns, check, pod_and_client, privileged, text};
use tls_steal_crds::StealPlan;

const APP_PORT: u16 = 8443;
const PROXY_PORT: u16 = 15443;
const ADMIN: &str = "127.0.0.1:15401";
/// The subnet number of this test (`init_netns.rs` uses 11, 12 and 16).
const X: u8 = 41;

/// A process started in a namespace, its stderr in a file; killed on drop, and its stderr
/// printed when the test is failing.
struct Proc {
    what: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has already exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its stderr:\n{}",
                self.what,
                self.log()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- {} stderr ({}) -----\n{}----- end of {} stderr -----",
                self.what,
                self.log.display(),
                self.log(),
                self.what
            );
        }
    }
}

/// The app: one `http.server` on `0.0.0.0:PORT` and one on `[::]:PORT` (v6only), TLS with the
/// given chain and key, ALPN `http/1.1` only. Each GET is answered with JSON naming what the app
/// saw: the Host header, the listener's family, the peer address, SNI, ALPN and HTTP version.
const APP: &str = r#"
import json, socket, socketserver, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])

def on_sni(sock, name, _ctx):
    sock.tls_steal_sni = name
ctx.sni_callback = on_sni

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({
            "host": self.headers.get("Host"),
            "hosts": len(self.headers.get_all("Host") or []),
            "listener": self.server.family_name,
            "client": self.client_address[0],
            "sni": getattr(self.connection, "tls_steal_sni", None),
            "alpn": self.connection.selected_alpn_protocol(),
            "version": self.request_version,
            "path": self.path,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        who = (self.server.family_name, self.client_address[0], fmt % args)
        sys.stderr.write("app (%s): %s %s\n" % who)

class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Not HTTPServer.server_bind: its getfqdn() would ask a DNS server the namespace
        # cannot reach.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "app", self.server_address[1]

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            tls = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            sys.stderr.write("app: TLS handshake from %s failed: %s\n" % (client_address[0], err))
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()

class Server6(Server):
    address_family = socket.AF_INET6

v4, v6 = Server(("0.0.0.0", port), Handler), Server6(("::", port), Handler)
v4.family_name, v6.family_name = "ipv4", "ipv6"
for server in (v4, v6):
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

fn start_app(ns: &Netns, dir: &Path, chain: &Path, key: &Path) -> Proc {
    let log = dir.join("app.stderr");
    let mut child = ns
        .command("python3")
        .args(["-c", APP])
        .arg(chain)
        .arg(key)
        .arg(APP_PORT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the python3 app");
    let stdout = child.stdout.take().unwrap();
    let mut app = Proc {
        what: "app (python3)",
        child,
        log,
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    if line.trim() != "ready" {
        app.assert_running();
        panic!("the app did not start: {line:?}\n{}", app.log());
    }
    app
}

/// What `curl` got for one request, and what the app said it saw.
#[derive(Debug)]
struct Answer {
    /// `%{http_code} %{http_version}` as curl reports them.
    status: String,
    /// The app's JSON.
    seen: serde_json::Value,
    /// curl's `-v` output (handshake, certificate).
    verbose: String,
}

impl Answer {
    fn seen(&self, field: &str) -> &str {
        self.seen[field]
            .as_str()
            .unwrap_or_else(|| panic!("the app's answer has no string {field:?}: {}", self.seen))
    }
}

/// `curl https://app.test:8443<path>` from `ns`, with `app.test` resolved to `addr`.
fn https_get(ns: &Netns, root: &Path, addr: &str, http: &str, path: &str) -> Answer {
    let resolve = format!("app.test:{APP_PORT}:{addr}");
    let url = format!("https://app.test:{APP_PORT}{path}");
    let root = root.to_str().unwrap();
    let args = [
        "-q", // no ~/.curlrc
        "-sS",
        "-v",
        "--max-time",
        "10",
        "--noproxy",
        "*",
        "--cacert",
        root,
        http,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code} %{http_version}",
        &url,
    ];
    let out = ns.run("curl", &args);
    let verbose = text(&out.stderr);
    assert!(
        out.status.success(),
        "curl {} failed ({}):\n{}\n{verbose}",
        args.join(" "),
        out.status,
        text(&out.stdout)
    );
    let stdout = text(&out.stdout);
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    let seen = serde_json::from_str(body).unwrap_or_else(|err| {
        panic!("{url} via {addr} ({http}): not the app's JSON ({err}): {stdout}\n{verbose}")
    });
    Answer {
        status: status.to_owned(),
        seen,
        verbose,
    }
}

/// The app's certificate: `app.test` and both pod addresses, issued by `inter`.
fn app_leaf(inter: &Ca, cn: &str) -> (String, String) {
    let leaf = inter
        .issue()
        .dns(&["app.test"])
        .ip(format!("10.250.{X}.1").parse().unwrap())
        .ip(format!("fd00:250:{X}::1").parse().unwrap())
        .common_name(cn)
        .server_auth()
        .build();
    (leaf.full_chain_pem(), leaf.key_pem)
}

/// `name{labels} value` lines of a Prometheus text exposition.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn ipv4_and_ipv6_clients_reach_the_app_through_the_proxy() {
    if !privileged("pod_netns") {
        return;
    }
    let started = Instant::now();
    let p = pod_and_client("pod", X, true);
    // (name, the pod's address as curl wants it, the pod's address, the client's address)
    let families = [
        (
            "ipv4",
            format!("10.250.{X}.1"),
            format!("10.250.{X}.1"),
            format!("10.250.{X}.2"),
        ),
        (
            "ipv6",
            format!("[fd00:250:{X}::1]"),
            format!("fd00:250:{X}::1"),
            format!("fd00:250:{X}::2"),
        ),
    ];

    // PKI: root → intermediate → the app's leaf (served with the intermediate).
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::root("pod_netns root");
    let inter = root.intermediate("pod_netns intermediate");
    let cn = format!("pod_netns app {}", std::process::id());
    let (chain_pem, key_pem) = app_leaf(&inter, &cn);
    let (chain, key, root_file) = (
        dir.path().join("app.crt"),
        dir.path().join("app.key"),
        dir.path().join("root.crt"),
    );
    std::fs::write(&chain, chain_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&root_file, root.pem()).unwrap();

    let _app = start_app(&p.pod, dir.path(), &chain, &key);

    // Without the sidecar the app sees the client itself: the baseline the proxy must change.
    for (family, target, _, client_addr) in &families {
        let a = https_get(&p.client, &root_file, target, "--http1.1", "/direct");
        assert_eq!(a.status, "200 1.1", "{a:?}");
        assert_eq!(a.seen("listener"), *family, "{a:?}");
        assert_eq!(a.seen("client"), client_addr, "{a:?}");
    }

    // tls-steal-init: both families captured.
    let port_list = APP_PORT.to_string();
    let proxy_port = PROXY_PORT.to_string();
    let init = p
        .pod
        .command(BIN)
        .args(["init", "--ports", &port_list, "--proxy-port", &proxy_port])
        .output()
        .unwrap();
    let init_log = text(&init.stderr);
    check("tls-steal-sidecar init", init);
    assert!(
        init_log.contains("families: ipv4, ipv6;"),
        "init should capture both families:\n{init_log}"
    );

    // tls-steal-proxy: the app's own certificate toward clients, the app verified with the root.
    let plan = StealPlan::from_ports(vec![common::port_plan_with(
        APP_PORT,
        chain.to_str().unwrap(),
        key.to_str().unwrap(),
        root_file.to_str().unwrap(),
    )]);
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_json()).unwrap();
    let proxy_log = dir.path().join("proxy.stderr");
    let mut proxy = Proc {
        what: "tls-steal-sidecar proxy",
        child: p
            .pod
            .command(BIN)
            .args(["proxy", "--session-authorization", "disabled"])
            .arg("--plan")
            .arg(&plan_file)
            .args(["--admin", ADMIN])
            .env("RUST_LOG", "info,tls_steal_sidecar=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&proxy_log).unwrap())
            .spawn()
            .expect("start the proxy"),
        log: proxy_log,
    };

    // Ready: every port terminates TLS (bounded wait).
    let admin_get = |path: &str| {
        let url = format!("http://{ADMIN}{path}");
        let out = p.pod.run(
            "curl",
            &["-q", "-sS", "--max-time", "2", "--noproxy", "*", &url],
        );
        text(&out.stdout)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut readyz = String::new();
    while !readyz.starts_with("ready\n") {
        proxy.assert_running();
        assert!(
            Instant::now() < deadline,
            "the proxy was not ready within 15 s; last /readyz: {readyz:?}\nproxy stderr:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
        readyz = admin_get("/readyz");
    }
    assert!(readyz.contains(&format!("port {APP_PORT}: ok")), "{readyz}");
    let log = proxy.log();
    assert!(
        log.contains(&format!("0.0.0.0:{PROXY_PORT}"))
            && log.contains(&format!("[::]:{PROXY_PORT}")),
        "both default listeners should be bound:\n{log}"
    );
    assert!(
        !log.contains("IPv6 capture listener not bound"),
        "the IPv6 listener was skipped:\n{log}"
    );

    // Through the capture: both families, HTTP/1.1 and HTTP/2 from the client.
    let versions = [("--http1.1", "1.1"), ("--http2", "2")];
    for (family, target, pod_addr, client_addr) in &families {
        for (http, version) in versions {
            let path = format!("/through/{family}/{}", &http[2..]);
            let a = https_get(&p.client, &root_file, target, http, &path);
            let context = format!("{family} {http}: {a:?}\nproxy stderr:\n{}", proxy.log());
            // curl spoke `version` with the proxy, which spoke HTTP/1.1 (all the app offers) with
            // the app: only a terminating proxy can do that (a TCP relay would give curl HTTP/1.1).
            assert_eq!(a.status, format!("200 {version}"), "{context}");
            assert_eq!(a.seen("version"), "HTTP/1.1", "{context}");
            assert_eq!(a.seen("alpn"), "http/1.1", "{context}");
            assert_eq!(a.seen("path"), path, "{context}");
            // The app was reached by the proxy (the pod's own address), not by the client, on the
            // listener of the family the client used: the original destination was kept.
            assert_eq!(a.seen("listener"), *family, "{context}");
            assert_eq!(a.seen("client"), pod_addr, "{context}");
            assert_ne!(a.seen("client"), client_addr, "{context}");
            // The client's authority and SNI reached the app unchanged.
            assert_eq!(a.seen("host"), format!("app.test:{APP_PORT}"), "{context}");
            assert_eq!(a.seen["hosts"], 1, "{context}");
            assert_eq!(a.seen("sni"), "app.test", "{context}");
            // The client got the app's own certificate, verified against the root.
            assert!(
                a.verbose.contains(&format!("subject: CN={cn}")),
                "{context}\n(the served certificate is not the app's leaf)"
            );
            assert!(
                a.verbose.contains("issuer: CN=pod_netns intermediate"),
                "{context}"
            );
            assert!(a.verbose.contains("SSL certificate verify ok"), "{context}");
        }
    }

    // The proxy counted four terminated connections and four forwarded requests on the port.
    let metrics_text = admin_get("/metrics");
    let metrics = parse_metrics(&metrics_text);
    let metric = |key: &str| {
        *metrics
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in /metrics:\n{metrics_text}"))
    };
    let on_port = |name: &str, label: &str| format!("{name}{{port=\"{APP_PORT}\",{label}}}");
    let expect = [
        (on_port("tls_steal_connections_total", "kind=\"tls\""), 4.0),
        (
            on_port("tls_steal_connections_total", "kind=\"passthrough\""),
            0.0,
        ),
        (
            on_port("tls_steal_connections_total", "kind=\"opaque\""),
            0.0,
        ),
        (
            on_port("tls_steal_requests_total", "outcome=\"forwarded\""),
            4.0,
        ),
        (
            on_port("tls_steal_requests_total", "outcome=\"upstream_error\""),
            0.0,
        ),
        (
            on_port("tls_steal_upstream_connects_total", "result=\"error\""),
            0.0,
        ),
        // Port 0 counts connections to ports absent from the plan.
        (
            "tls_steal_connections_total{port=\"0\",kind=\"passthrough\"}".into(),
            0.0,
        ),
    ];
    for (key, value) in &expect {
        assert_eq!(metric(key), *value, "{key}:\n{metrics_text}");
    }
    // One pool per (destination, SNI, ALPN): at least one connection to each family's address.
    let upstream_ok = metric(&on_port(
        "tls_steal_upstream_connects_total",
        "result=\"ok\"",
    ));
    assert!(upstream_ok >= 2.0, "{metrics_text}");
    let handshake_failures: f64 = metrics
        .iter()
        .filter(|(k, _)| k.starts_with("tls_steal_tls_handshake_failures_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(handshake_failures, 0.0, "{metrics_text}");

    proxy.assert_running();
    eprintln!(
        "pod_netns: {} upstream connection(s) opened; took {:.1?}",
        upstream_ok,
        started.elapsed()
    );
}

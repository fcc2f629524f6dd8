//! Shared harness of the tests that run the real binary in network namespaces (`init_netns`,
//! `pod_netns`): the root check, namespaces deleted on drop, and a pod + client pair joined by a
//! veth with 10.250.X.0/24 (and fd00:250:X::/64) addresses, X distinct per test.
#![allow(dead_code)]

use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_tls-steal-sidecar");

/// Root and a working `ip netns`, or a printed reason to skip.
pub fn privileged(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"))
    });
    if !root {
        eprintln!("SKIPPED {test}: needs root (real iptables in network namespaces)");
        return false;
    }
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !netns {
        eprintln!("SKIPPED {test}: `ip netns` is not available (install iproute2)");
        return false;
    }
    true
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    check(&format!("ip {}", args.join(" ")), out);
}

/// A network namespace, deleted (with its veth ends) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(test: &str, role: &str) -> Self {
        let name = format!("tls-steal-{}-{test}-{role}", std::process::id());
        // A leftover of an earlier, killed run of the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("run {program} in {}: {err}", self.name))
    }

    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        check(
            &format!("{program} {}", args.join(" ")),
            self.run(program, args),
        )
    }

    pub fn init(&self, args: &[&str]) -> Output {
        self.command(BIN).arg("init").args(args).output().unwrap()
    }

    pub fn init_ok(&self, args: &[&str]) -> Output {
        let out = self.init(args);
        check(&format!("init {}", args.join(" ")), out.clone());
        out
    }

    /// `<tool> -t nat` without comment lines and counters.
    pub fn nat_save(&self, tool: &str) -> String {
        normalize(&self.ok(tool, &["-t", "nat"]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn normalize(save: &str) -> String {
    save.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| match line.strip_prefix(':') {
            Some(chain) => format!(":{}", chain.split(" [").next().unwrap()),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pod namespace and a client namespace joined by a veth (`eth0` in both).
pub struct Pod {
    // Field order: the client goes first on drop, then the pod (deleting either removes the veth).
    pub client: Netns,
    pub pod: Netns,
    pub ip4: String,
    pub ip6: Option<String>,
}

pub fn pod_and_client(test: &str, x: u8, ipv6: bool) -> Pod {
    let pod = Netns::new(test, "pod");
    let client = Netns::new(test, "client");
    ip(&[
        "-n",
        &pod.name,
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &client.name,
    ]);
    let ip4 = format!("10.250.{x}.1");
    for (ns, host) in [(&pod, 1), (&client, 2)] {
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("10.250.{x}.{host}/24"),
            "dev",
            "eth0",
        ]);
        if ipv6 {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("fd00:250:{x}::{host}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
    }
    Pod {
        client,
        pod,
        ip4,
        ip6: ipv6.then(|| format!("fd00:250:{x}::1")),
    }
}

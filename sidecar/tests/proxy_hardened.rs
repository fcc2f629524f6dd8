//! The real binary as it runs in a hardened pod: `wait` (the proxy container's `postStart`
//! hook) and the proxy as the non-root uid 15400 with no capabilities, reading an app key it
//! may not read (`setpriv`, when the test runs as root).

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tls_steal_crds::contract::PROXY_UID;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_tls-steal-sidecar");

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Kills the process on drop unless [`Proc::finish`]ed.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(mut c: Command) -> Proc {
        Proc(Some(c.spawn().unwrap()))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    /// Waits for the exit: (exit code, stderr).
    fn finish(mut self) -> (Option<i32>, String) {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_cmd(admin: SocketAddr, timeout: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["wait", "--admin", &admin.to_string(), "--timeout", timeout]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

#[tokio::test]
async fn wait_returns_once_the_proxy_is_ready() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let admin = free_addr();
    let mut waiting = Proc::spawn(wait_cmd(admin, "30"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        waiting.child().try_wait().unwrap().is_none(),
        "still waiting: nothing listens yet"
    );
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.admin = Some(admin);
    let _proxy = start_proxy(cfg).await;
    let (code, stderr) = tokio::task::spawn_blocking(move || waiting.finish())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("the proxy is ready"), "{stderr}");
}

#[test]
fn wait_fails_open_when_nothing_listens() {
    let admin = free_addr();
    let (code, stderr) = Proc::spawn(wait_cmd(admin, "1")).finish();
    assert_eq!(code, Some(0), "never keeps the app from starting: {stderr}");
    assert!(
        stderr.contains("not ready within 1s") && stderr.contains("failing open"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot connect"), "says why: {stderr}");
}

/// `setpriv` to uid/gid 15400, no supplementary groups, no capabilities.
fn as_proxy_user(program: &str) -> Option<Command> {
    if !root() {
        eprintln!("SKIPPED: needs root to switch to uid {PROXY_UID}");
        return None;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: setpriv (util-linux) is not installed");
        return None;
    }
    let id = PROXY_UID.to_string();
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"])
        .arg(program);
    Some(c)
}

#[tokio::test]
async fn wait_runs_as_the_proxy_user() {
    let Some(mut cmd) = as_proxy_user(BIN) else {
        return;
    };
    let admin = free_addr();
    cmd.args(["wait", "--admin", &admin.to_string(), "--timeout", "1"]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("failing open"), "{stderr}");
}

#[tokio::test]
async fn a_key_the_proxy_user_cannot_read_is_named_as_permission_denied() {
    let Some(mut cmd) = as_proxy_user(BIN) else {
        return;
    };
    let pki = Pki::new();
    let app = App::start(&pki).await;
    // The directory is searchable, the certificate readable, the key 0600 and owned by root.
    std::fs::set_permissions(pki.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["server.crt", "server-root.crt"] {
        std::fs::set_permissions(pki.path(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let key = pki.path("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plan = tls_steal_crds::StealPlan::from_ports(vec![port_plan(&pki, app.addr.port())]);
    let (listen, admin, api) = (free_addr(), free_addr(), free_addr());
    cmd.args([
        "proxy",
        "--session-authorization",
        "disabled",
        "--listen",
        &listen.to_string(),
    ])
    .args([
        "--admin",
        &admin.to_string(),
        "--session-api",
        &api.to_string(),
    ])
    .args(["--orig-dst-override", &app.addr.to_string()])
    .env("TLS_STEAL_PLAN", plan.to_json())
    .env("RUST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut proxy = Proc::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        if let Ok(tcp) = tokio::net::TcpStream::connect(admin).await {
            drop(tcp);
            break admin_get(admin, "/readyz").await;
        }
        if let Some(status) = proxy.child().try_wait().unwrap() {
            let (_, stderr) = proxy.finish();
            panic!("the proxy exited ({status}): {stderr}");
        }
        assert!(Instant::now() < deadline, "the admin port never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200, "passthrough keeps the pod ready: {body}");
    assert!(
        body.contains(&key) && body.contains("permission denied") && body.contains("fsGroup"),
        "{body}"
    );
    let metrics = admin_get(admin, "/metrics").await.1;
    let gauge = format!(
        "tls_steal_port_passthrough{{port=\"{}\"}} 1",
        app.addr.port()
    );
    assert!(metrics.contains(&gauge), "{metrics}");
    // Relayed untouched: the app's own TLS answers.
    let seen = get_seen(listen, &ClientOpts::new(&pki, &["http/1.1"]), "/through")
        .await
        .unwrap();
    assert_eq!(seen.uri, "/through");
}

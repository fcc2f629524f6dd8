//! The processes the tests run: the `tls-steal-sidecar proxy` binary (built on first use) and
//! `kubectl-steal`, each started and watched until ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

use super::{Certs, WAIT, free_port, plan_json};

// ---------------------------------------------------------------------------------------------
// Binaries

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

pub fn sidecar_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("TLS_STEAL_SIDECAR_BIN") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "tls-steal-sidecar"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p tls-steal-sidecar failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        target.join("debug").join("tls-steal-sidecar")
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// The sidecar and kubectl-steal processes

pub struct Sidecar {
    pub child: Child,
    pub plan: PathBuf,
    pub real_app: SocketAddr,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub session_api: SocketAddr,
    pub _plan_dir: tempfile::TempDir,
}

pub async fn start_sidecar(real_app: SocketAddr, certs: &Certs) -> Sidecar {
    let plan_dir = tempfile::tempdir().unwrap();
    let plan = plan_dir.path().join("plan.json");
    std::fs::write(&plan, plan_json(real_app.port(), certs)).unwrap();
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    // The ports are picked free, then bound by the sidecar: another test process may take one
    // in between (then this sidecar cannot bind it, or the port answers for someone else), so
    // the sidecar is only used once its own session API answers for this test's app; else it
    // starts again on new ports.
    let mut attempt = 0;
    let (child, listen, admin, session_api) = loop {
        let (listen, admin, session_api) = (addr(), addr(), addr());
        match spawn_sidecar(&plan, real_app, listen, admin, session_api).await {
            Ok(child) => break (child, listen, admin, session_api),
            Err(why) => {
                attempt += 1;
                assert!(attempt < 5, "the sidecar did not come up: {why}");
                eprintln!("the sidecar did not come up ({why}); again on other ports");
            }
        }
    };
    Sidecar {
        child,
        plan,
        real_app,
        listen,
        admin,
        session_api,
        _plan_dir: plan_dir,
    }
}

impl Sidecar {
    /// Kills the sidecar and starts it again on the same addresses.
    pub async fn restart(&mut self) {
        self.child.kill().await.unwrap();
        self.child = spawn_sidecar(
            &self.plan,
            self.real_app,
            self.listen,
            self.admin,
            self.session_api,
        )
        .await
        .unwrap_or_else(|why| panic!("the sidecar did not come up again: {why}"));
    }
}

pub async fn spawn_sidecar(
    plan: &Path,
    real_app: SocketAddr,
    listen: SocketAddr,
    admin: SocketAddr,
    session_api: SocketAddr,
) -> Result<Child, String> {
    spawn_sidecar_routes(plan, &[(listen, real_app)], admin, session_api, &[]).await
}

/// A sidecar with one listener per app: connections to `routes[i].0` count as sent to
/// `routes[i].1` (`--orig-dst-for`). Ready once its session API reports every app's port.
pub async fn spawn_sidecar_routes(
    plan: &Path,
    routes: &[(SocketAddr, SocketAddr)],
    admin: SocketAddr,
    session_api: SocketAddr,
    extra: &[&str],
) -> Result<Child, String> {
    let (listen, real_app) = routes[0];
    let mut cmd = Command::new(sidecar_bin());
    cmd.arg("proxy").arg("--plan").arg(plan);
    // Tests of the data path; `steal_ticket.rs` runs the sidecar with authorization required.
    if !extra.contains(&"--session-authorization") {
        cmd.args(["--session-authorization", "disabled"]);
    }
    for (l, app) in routes {
        cmd.args(["--listen", &l.to_string()])
            .args(["--orig-dst-for", &format!("{l}={app}")]);
    }
    let mut child = cmd
        .args(["--admin", &admin.to_string()])
        .args(["--session-api", &session_api.to_string()])
        .args(extra)
        .env("POD_NAME", "web-1")
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .spawn()
        .expect("the sidecar starts");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        let want = |ports: &[u16]| routes.iter().all(|(_, a)| ports.contains(&a.port()));
        match status_ports(session_api).await {
            Some(ports)
                if want(&ports)
                    && TcpStream::connect(listen).await.is_ok()
                    && matches!(child.try_wait(), Ok(None)) =>
            {
                return Ok(child);
            }
            Some(ports) if want(&ports) => {}
            Some(ports) => {
                let _ = child.kill().await;
                return Err(format!(
                    "{session_api} answers for ports {ports:?}, not {}",
                    real_app.port()
                ));
            }
            None => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(format!("its session API {session_api} did not answer"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The captured ports a session API reports (`GET /v1/status`); `None` if it does not answer
/// (not listening yet); an empty list if something else answers.
pub async fn status_ports(api: SocketAddr) -> Option<Vec<u16>> {
    let mut tcp = TcpStream::connect(api).await.ok()?;
    let ask = async {
        tcp.write_all(b"GET /v1/status HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        std::io::Result::Ok(out)
    };
    let out = match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(out)) => out,
        _ => return Some(Vec::new()),
    };
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let report: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    Some(
        report["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_u64())
            .map(|p| p as u16)
            .collect(),
    )
}

/// Runs `kubectl-steal ARGS` with `KUBECONFIG` to its end: (success, stdout, stderr).
pub async fn run_to_exit(
    args: &[impl AsRef<std::ffi::OsStr>],
    kubeconfig: &str,
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-steal"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("kubectl-steal exits in time")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `kubectl-steal`, with what it printed so far.
pub struct Steal {
    pub child: Child,
    pub stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Steal {
    /// `kubectl-steal --connect` to `sidecar`, once its session is registered.
    pub async fn start(sidecar: &Sidecar, args: &[&str]) -> Steal {
        let api = sidecar.session_api.to_string();
        let mut all = vec!["--connect", &api];
        all.extend_from_slice(args);
        let mut s = Steal::spawn(&all, &[]);
        s.wait_for("registered").await;
        s
    }

    /// `kubectl-steal ARGS`, with extra environment.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Steal {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-steal"))
            .args(["--client", "test"])
            .args(args)
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("kubectl-steal starts");
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Steal {
            child,
            stdout,
            lines: Arc::default(),
        }
    }

    /// Reads lines until one contains `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_nth(needle, 1).await
    }

    /// Reads lines until `n` of them contain `needle`; returns the `n`th.
    pub async fn wait_for_nth(&mut self, needle: &str, n: usize) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
            {
                return l.clone();
            }
            let line = tokio::time::timeout_at(deadline, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no line with {needle:?}; got {:?}",
                        self.lines.lock().unwrap()
                    )
                })
                .unwrap();
            match line {
                Some(l) => self.lines.lock().unwrap().push(l),
                None => panic!(
                    "kubectl-steal exited before printing {needle:?}; it printed {:?}",
                    self.lines.lock().unwrap()
                ),
            }
        }
    }

    pub fn interrupt(&self) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

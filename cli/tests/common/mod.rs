//! Shared by the integration tests: certificates, the plan, the apps, the sidecar and
//! `kubectl-steal` processes, and TLS clients of the proxy.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use kubectl_steal::tls::TlsClients;
use rustls::ServerConfig;
use rustls_pki_types::ServerName;
use tls_steal_crds::plan::{PortPlan, StealPlan};
use tls_steal_crds::{AgentAsClient, AgentAsServer, ClientVerification, TlsAuthentication};
use tls_steal_test_support::app::{echo_upgrade, switching_protocols, with_trailers};
use tls_steal_test_support::client::{h1_handshake, h2_handshake};
use tls_steal_test_support::pki::write_in;
use tls_steal_test_support::{Leaf, ServerTls};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};

// Each test binary uses a part of what the harness re-exports.
#[allow(unused_imports)]
pub use tls_steal_test_support::{Answer, Body, collect, full};
pub const WAIT: Duration = Duration::from_secs(30);

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
// Certificates and the plan

pub struct Certs {
    pub _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub server: Arc<ServerConfig>,
}

/// A self-signed certificate for `app.test` and `localhost`, its PEM files, and a server
/// config offering `h2` and `http/1.1`.
pub fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let leaf = Leaf::self_signed(&["app.test", "localhost"]);
    let cert_pem = write_in(dir.path(), "tls.crt", &leaf.cert_pem);
    let key_pem = write_in(dir.path(), "tls.key", &leaf.key_pem);
    let server = ServerTls::leaf(&leaf).alpn(&["h2", "http/1.1"]).build();
    Certs {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        cert_pem,
        key_pem,
        server,
    }
}

pub fn plan_json(port: u16, certs: &Certs) -> String {
    plan_json_ports(&[port], certs)
}

/// A plan capturing each of `ports` with `certs`.
pub fn plan_json_ports(ports: &[u16], certs: &Certs) -> String {
    StealPlan::from_ports(
        ports
            .iter()
            .map(|&port| PortPlan {
                port,
                container: "app".into(),
                config: "MirrordTlsStealConfig/test/app".into(),
                agent_as_server: AgentAsServer {
                    authentication: TlsAuthentication {
                        cert_pem: certs.cert_pem.display().to_string(),
                        key_pem: certs.key_pem.display().to_string(),
                    },
                    alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                    verification: None,
                },
                agent_as_client: AgentAsClient {
                    authentication: None,
                    verification: ClientVerification {
                        accept_any_cert: true,
                        trust_roots: vec![],
                    },
                },
            })
            .collect(),
    )
    .to_json()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// Apps: the real one behind the sidecar, and the local one kubectl-steal delivers to

/// A running app answering `<name> <METHOD> <path>` (routes in [`app`]); dropping it (or
/// [`App::kill`]) closes its listener and every connection.
pub struct App(pub tls_steal_test_support::App);

impl std::ops::Deref for App {
    type Target = tls_steal_test_support::App;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl App {
    pub async fn start(name: &'static str, tls: Option<Arc<ServerConfig>>) -> App {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), name, tls)
    }

    pub fn start_on(
        listener: TcpListener,
        name: &'static str,
        tls: Option<Arc<ServerConfig>>,
    ) -> App {
        App(tls_steal_test_support::App::builder()
            .maybe_tls(tls)
            .serve_on(listener, move |_, req| app(req, name)))
    }
}

/// Answers with `x-app: <name>`, `x-version`, `x-host` and `x-saw-meta` (whether the request
/// carried `tls-steal-meta`); `/echo` streams the body back, `/trailers` answers with a trailer,
/// `/ws` upgrades and echoes in upper case; anything else is `<name> <METHOD> <path>`.
pub async fn app(mut req: Request<Incoming>, name: &'static str) -> Response<Body> {
    let version = format!("{:?}", req.version());
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let saw_meta = if req.headers().contains_key("tls-steal-meta") {
        "yes"
    } else {
        "no"
    };
    let mut resp = match req.uri().path() {
        "/echo" => Response::new(req.into_body().map_err(std::io::Error::other).boxed()),
        "/trailers" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-trailer", "yes".parse().unwrap());
            Response::new(with_trailers("with trailers", trailers))
        }
        "/ws" if req.headers().contains_key(http::header::UPGRADE) => {
            echo_upgrade(&mut req, |b| b.to_ascii_uppercase());
            switching_protocols("upgrade")
        }
        path => {
            let text = format!("{name} {} {path}", req.method());
            Response::new(full(text))
        }
    };
    resp.headers_mut().insert("x-app", name.parse().unwrap());
    resp.headers_mut()
        .insert("x-version", version.parse().unwrap());
    resp.headers_mut().insert("x-host", host.parse().unwrap());
    resp.headers_mut()
        .insert("x-saw-meta", saw_meta.parse().unwrap());
    resp
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
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
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

// ---------------------------------------------------------------------------------------------
// Clients of the proxy

pub async fn tls_to(addr: SocketAddr, h2: bool) -> tokio_rustls::client::TlsStream<TcpStream> {
    let clients = TlsClients::new(&[], None).unwrap();
    let config = if h2 { clients.h2 } else { clients.h1 };
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("app.test").unwrap(), tcp)
        .await
        .unwrap()
}

/// An HTTP/1.1 request on a new TLS connection to the proxy.
pub async fn h1(proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut send = h1_handshake::<Empty<Bytes>, _>(tls_to(proxy, false).await).await;
    let mut req = Request::get(path).header("host", "app.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(WAIT, send.send_request(req.body(Empty::new()).unwrap()))
        .await
        .expect("an answer in time")
        .unwrap();
    collect(resp).await
}

/// An HTTP/2 sender on a new TLS connection to the proxy.
pub async fn h2_sender<B>(proxy: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = tls_to(proxy, true).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2_handshake(tls).await.0
}

pub async fn h2_get(proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut send = h2_sender::<Empty<Bytes>>(proxy).await;
    let mut req = Request::get(format!("https://app.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(WAIT, send.send_request(req.body(Empty::new()).unwrap()))
        .await
        .expect("an answer in time")
        .unwrap();
    collect(resp).await
}

pub const STEAL: (&str, &str) = ("x-steal", "yes");

pub struct World {
    pub certs: Certs,
    pub _real: App,
    pub sidecar: Sidecar,
}

pub async fn world() -> World {
    let certs = certs();
    let real = App::start("real", Some(certs.server.clone())).await;
    let sidecar = start_sidecar(real.addr, &certs).await;
    World {
        _real: real,
        sidecar,
        certs,
    }
}

pub fn steal_args(world: &World, local: SocketAddr, delivery: &str) -> Vec<String> {
    vec![
        "--port".into(),
        world._real.addr.port().to_string(),
        "--header".into(),
        "^x-steal: yes$".into(),
        "--to".into(),
        local.to_string(),
        "--delivery".into(),
        delivery.into(),
    ]
}

pub async fn start_steal(world: &World, local: SocketAddr, delivery: &str) -> Steal {
    let args = steal_args(world, local, delivery);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Steal::start(&world.sidecar, &args).await
}

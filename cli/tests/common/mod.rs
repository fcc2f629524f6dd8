//! Shared by the integration tests: certificates, the plan, the apps (on
//! `tls-steal-test-support`'s app), the sidecar and `kubectl-steal` processes ([`process`]), and
//! TLS clients of the proxy.
#![allow(dead_code)]

mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
use tls_steal_test_support::client::h2_handshake;
use tls_steal_test_support::pki::write_in;
use tls_steal_test_support::{Leaf, ServerTls};
use tokio::net::{TcpListener, TcpStream};

pub use process::*;
// Each test binary uses a part of what the harness re-exports.
#[allow(unused_imports)]
pub use tls_steal_test_support::client::h1_handshake;
#[allow(unused_imports)]
pub use tls_steal_test_support::{Answer, Body, collect, full};
pub const WAIT: Duration = Duration::from_secs(30);

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

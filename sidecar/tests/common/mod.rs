//! Shared harness of the whole-proxy tests: a test PKI (root → intermediate → leaf, written to
//! PEM files), a real HTTPS app that records what it sees, TLS clients, and an in-process proxy
//! whose original destination is fixed to the app (`orig_dst_override`, no iptables needed).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tls_steal_crds::StealPlan;
use tls_steal_crds::plan::PortPlan;
use tls_steal_crds::types::{
    AgentAsClient, AgentAsServer, ClientVerification, ServerVerification, TlsAuthentication,
};
use tls_steal_sidecar::proxy::{self, ProxyConfig, ProxyHandle};
use tokio::net::{TcpListener, TcpStream};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA (root or intermediate).
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn root(name: &str) -> Ca {
        Ca {
            issuer: CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().unwrap())
                .unwrap(),
        }
    }

    pub fn intermediate(&self, name: &str) -> Ca {
        Ca {
            issuer: CertifiedIssuer::signed_by(
                ca_params(name),
                KeyPair::generate().unwrap(),
                &self.issuer,
            )
            .unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf for `app.test`, `localhost` and 127.0.0.1, usable as server and client cert.
    pub fn leaf(&self, serial: u64) -> Leaf {
        self.leaf_for(serial, &["app.test", "localhost"], true)
    }

    /// A leaf for `names` (DNS), with the 127.0.0.1 IP SAN when `loopback_ip`.
    pub fn leaf_for(&self, serial: u64, names: &[&str], loopback_ip: bool) -> Leaf {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        if loopback_ip {
            p.subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        p.distinguished_name
            .push(DnType::CommonName, format!("leaf-{serial}"));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            chain_pem: self.pem(),
        }
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// An end-entity certificate, its issuing chain (intermediate) and key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_pem: String,
    /// PEM of the issuing intermediate (appended to make the chain).
    pub chain_pem: String,
}

impl Leaf {
    /// End-entity first, then the intermediate.
    pub fn full_chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.full_chain_pem().as_bytes())
            .map(|c| c.unwrap())
            .collect()
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// The test world's PKI: the app's server chain, the roots clients use, and a foreign root.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// Signs the app's server certificate (via `server_inter`).
    pub server_root: Ca,
    pub server_inter: Ca,
    pub server_leaf: Leaf,
    /// Signs client certificates that the proxy should trust (via `client_inter`).
    pub client_root: Ca,
    pub client_inter: Ca,
    pub client_leaf: Leaf,
    /// Signs nothing anyone trusts.
    pub foreign_root: Ca,
    pub foreign_leaf: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let server_root = Ca::root("server root");
        let server_inter = server_root.intermediate("server intermediate");
        let server_leaf = server_inter.leaf(1001);
        let client_root = Ca::root("client root");
        let client_inter = client_root.intermediate("client intermediate");
        let client_leaf = client_inter.leaf(2001);
        let foreign_root = Ca::root("foreign root");
        let foreign_leaf = foreign_root.intermediate("foreign intermediate").leaf(3001);
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            server_root,
            server_inter,
            server_leaf,
            client_root,
            client_inter,
            client_leaf,
            foreign_root,
            foreign_leaf,
        };
        pki.write("server.crt", &pki.server_leaf.full_chain_pem());
        pki.write("server.key", &pki.server_leaf.key_pem);
        pki.write("server-root.crt", &pki.server_root.pem());
        pki.write("client.crt", &pki.client_leaf.full_chain_pem());
        pki.write("client.key", &pki.client_leaf.key_pem);
        pki.write("client-root.crt", &pki.client_root.pem());
        pki.write("foreign-root.crt", &pki.foreign_root.pem());
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// What the app saw of one request.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub client_cert: bool,
    pub version: String,
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A real HTTPS application.
pub struct App {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct AppOptions {
    pub leaf: Leaf,
    pub alpn: Vec<&'static str>,
    /// Roots for optional client certificates (presence is recorded).
    pub client_roots: Vec<CertificateDer<'static>>,
}

type AppBody = BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> AppBody {
    Full::new(b.into())
        .map_err(|n: Infallible| match n {})
        .boxed()
}

impl App {
    pub async fn start(pki: &Pki) -> App {
        App::start_with(AppOptions {
            leaf: pki.server_leaf.clone(),
            alpn: vec!["h2", "http/1.1"],
            client_roots: vec![pki.client_root.der()],
        })
        .await
    }

    pub async fn start_with(o: AppOptions) -> App {
        let verifier = if o.client_roots.is_empty() {
            rustls::server::WebPkiClientVerifier::no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for r in o.client_roots {
                roots.add(r).unwrap();
            }
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .unwrap()
        };
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(o.leaf.chain(), o.leaf.key())
            .unwrap();
        cfg.alpn_protocols = o.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, s) = tls.get_ref();
                    let base = Seen {
                        sni: s.server_name().map(str::to_owned),
                        alpn: s
                            .alpn_protocol()
                            .map(|a| String::from_utf8_lossy(a).into_owned()),
                        client_cert: s.peer_certificates().is_some_and(|c| !c.is_empty()),
                        version: String::new(),
                        method: String::new(),
                        uri: String::new(),
                        headers: vec![],
                    };
                    let svc = service_fn(move |req| {
                        let mut seen_req = base.clone();
                        seen_req.version = format!("{:?}", req.version());
                        seen_req.method = req.method().to_string();
                        seen_req.uri = req.uri().to_string();
                        seen_req.headers = req
                            .headers()
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect();
                        seen.lock().unwrap().push(seen_req.clone());
                        app_handle(seen_req, req)
                    });
                    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    b.http1().preserve_header_case(true);
                    let _ = b
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        App { addr, seen, task }
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the app saw no request")
    }
}

async fn app_handle(
    seen: Seen,
    mut req: Request<Incoming>,
) -> Result<Response<AppBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = if path == "/trailers" {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("x-checksum", "abc123".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"body-before-trailers"))),
            Ok(Frame::trailers(trailers)),
        ];
        Response::new(StreamBody::new(futures::stream::iter(frames)).boxed())
    } else if path == "/upload" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                Err(_) => break,
            }
        }
        Response::new(full(n.to_string()))
    } else if let Some(n) = path.strip_prefix("/download/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len() as u64);
                Some((
                    Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n as usize))),
                    left - n,
                ))
            }
        });
        Response::new(StreamBody::new(stream).boxed())
    } else if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut()
            .insert("connection", "Upgrade".parse().unwrap());
        r
    } else if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Response::new(full(serde_json::to_vec(&seen).unwrap()))
    } else if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full(serde_json::to_vec(&seen).unwrap()))
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("answering {code}")));
        *r.status_mut() =
            StatusCode::from_bytes(code.as_bytes()).unwrap_or(StatusCode::IM_A_TEAPOT);
        r
    } else {
        Response::new(full(serde_json::to_vec(&seen).unwrap()))
    };
    Ok(resp)
}

/// How a test client connects.
#[derive(Clone)]
pub struct ClientOpts {
    pub sni: Option<String>,
    pub alpn: Vec<&'static str>,
    pub roots: Vec<CertificateDer<'static>>,
    pub cert: Option<Leaf>,
}

impl ClientOpts {
    pub fn new(pki: &Pki, alpn: &[&'static str]) -> Self {
        ClientOpts {
            sni: Some("app.test".into()),
            alpn: alpn.to_vec(),
            roots: vec![pki.server_root.der()],
            cert: None,
        }
    }

    pub fn with_cert(mut self, leaf: &Leaf) -> Self {
        self.cert = Some(leaf.clone());
        self
    }
}

pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// An HTTP/2 client over `tls` sending bodies of type `B`; its connection runs in the returned
/// task, which ends when the connection does.
pub async fn h2_client<B>(
    tls: ClientTls,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    (s, tokio::spawn(conn))
}

pub async fn tls_connect(addr: SocketAddr, o: &ClientOpts) -> std::io::Result<ClientTls> {
    let mut roots = rustls::RootCertStore::empty();
    for r in &o.roots {
        roots.add(r.clone()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match &o.cert {
        Some(l) => b.with_client_auth_cert(l.chain(), l.key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = o.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    if o.sni.is_none() {
        cfg.enable_sni = false;
    }
    let name = ServerName::try_from(o.sni.clone().unwrap_or_else(|| "app.test".into())).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    // TLS 1.3 reports client-certificate refusals after the handshake: surface them here.
    use tokio::io::AsyncWriteExt;
    tls.flush().await?;
    Ok(tls)
}

/// One HTTP connection to the proxy (h2 when negotiated, else HTTP/1.1).
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<BoxBody<Bytes, std::io::Error>>),
    H2(hyper::client::conn::http2::SendRequest<BoxBody<Bytes, std::io::Error>>),
}

pub type Err = Box<dyn std::error::Error + Send + Sync>;

impl Conn {
    pub async fn open(addr: SocketAddr, o: &ClientOpts) -> Result<Conn, Err> {
        let tls = tls_connect(addr, o).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(c);
            Ok(Conn::H2(s))
        } else {
            let (s, c) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(c.with_upgrades());
            Ok(Conn::H1(s))
        }
    }

    /// Sends `method path` for host `app.test` with `body`.
    pub async fn send(
        &mut self,
        req: Request<BoxBody<Bytes, std::io::Error>>,
    ) -> Result<Response<Incoming>, Err> {
        Ok(match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        })
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }

    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        if self.is_h2() {
            Request::builder()
                .method(method)
                .uri(format!("https://app.test{path}"))
        } else {
            Request::builder()
                .method(method)
                .uri(path)
                .header("Host", "app.test")
        }
    }

    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes), Err> {
        let req = self.request("GET", path).body(full(Bytes::new()))?;
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

pub fn empty() -> AppBody {
    full(Bytes::new())
}

pub fn body_of(b: impl Into<Bytes>) -> AppBody {
    full(b)
}

/// GET `path` over a fresh connection; returns what the app saw.
pub async fn get_seen(proxy: SocketAddr, o: &ClientOpts, path: &str) -> Result<Seen, Err> {
    let mut c = Conn::open(proxy, o).await?;
    let (status, body) = c.get(path).await?;
    if status != StatusCode::OK {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The plan entry of the usual setup: the app's own cert and key on the proxy, the app
/// verified with its root, no client authentication toward the app.
pub fn port_plan(pki: &Pki, port: u16) -> PortPlan {
    port_plan_with(
        port,
        &pki.path("server.crt"),
        &pki.path("server.key"),
        &pki.path("server-root.crt"),
    )
}

/// [`port_plan`] with the certificate, key and root at the given paths.
pub fn port_plan_with(port: u16, cert: &str, key: &str, root: &str) -> PortPlan {
    PortPlan {
        port,
        container: "app".into(),
        config: "MirrordTlsStealConfig/default/test".into(),
        agent_as_server: AgentAsServer {
            authentication: TlsAuthentication {
                cert_pem: cert.into(),
                key_pem: key.into(),
            },
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            verification: None,
        },
        agent_as_client: AgentAsClient {
            authentication: None,
            verification: ClientVerification {
                accept_any_cert: false,
                trust_roots: vec![root.into()],
            },
        },
    }
}

pub fn server_verification(
    allow_anonymous: bool,
    accept_any_cert: bool,
    roots: Vec<String>,
) -> Option<ServerVerification> {
    Some(ServerVerification {
        allow_anonymous,
        accept_any_cert,
        trust_roots: roots,
    })
}

/// Proxy settings for tests: loopback, ephemeral ports, original destination fixed to `app`.
pub fn test_config(plan: PortPlan, app: SocketAddr) -> ProxyConfig {
    let mut cfg = ProxyConfig::new(StealPlan::from_ports(vec![plan]));
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    cfg.orig_dst_override = Some(app);
    cfg.files.search_processes = false;
    cfg.reload_interval = Duration::from_millis(200);
    cfg.drain_timeout = Duration::from_secs(2);
    // Tests of the drain delay set their own.
    cfg.drain_delay = Duration::ZERO;
    cfg
}

pub async fn start_proxy(cfg: ProxyConfig) -> ProxyHandle {
    proxy::start(cfg).await.expect("proxy starts")
}

/// GET on the admin port: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(admin).await.unwrap();
    let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(c);
    let req = Request::get(path)
        .header("Host", "admin")
        .body(empty())
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub fn path_exists(p: &str) -> bool {
    Path::new(p).exists()
}

//! One client connection driven in memory: the client's end of a `tokio::io::duplex` pipe
//! (rustls over it for TLS ports) and the proxy's end handed to [`serve`], as the accept loop
//! hands it a socket. The app is a loopback TLS server, because forwarding and relaying open
//! real connections to the original destination. The [`Router`] here decides by path, so each
//! test names the route it exercises.
//!
//! Over 400 lines: one in-memory test per routing decision, sharing the pipe, TLS and app helpers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tls_steal_crds::StealPlan;
use tls_steal_crds::plan::PortPlan;
use tls_steal_crds::types::{AgentAsClient, AgentAsServer, ClientVerification, TlsAuthentication};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::serve;
use crate::proxy::body::BodyRead;
use crate::proxy::files::FileResolver;
use crate::proxy::forward::{ProxyBody, text_response};
use crate::proxy::route::{ConnInfo, Delivery, Mirror, Mirrored, Route, Router, Stolen, Taker};
use crate::proxy::{ProxyConfig, Shared};

const CLIENT: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)),
    40000,
);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root, and a leaf for `app.test` it signs, on disk for the plan.
struct Pki {
    dir: tempfile::TempDir,
    root: CertificateDer<'static>,
    chain_pem: String,
    key_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["app.test".to_owned()])
            .unwrap()
            .signed_by(&key, &root)
            .unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            root: root.der().clone(),
            chain_pem: format!("{}{}", leaf.pem(), root.pem()),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(pki.path("tls.crt"), &pki.chain_pem).unwrap();
        std::fs::write(pki.path("tls.key"), &pki.key_pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The app's (and the proxy's) TLS server configuration.
    fn server_config(&self, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
        let chain = CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        Arc::new(cfg)
    }

    /// The plan entry of `port`: this leaf, `h2` and `http/1.1`, the app not verified.
    fn port(&self, port: u16) -> PortPlan {
        PortPlan {
            port,
            container: "app".into(),
            config: "MirrordTlsStealConfig/default/test".into(),
            agent_as_server: AgentAsServer {
                authentication: TlsAuthentication {
                    cert_pem: self.path("tls.crt"),
                    key_pem: self.path("tls.key"),
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
        }
    }
}

/// The proxy's shared state for `ports`, routing with `router`.
async fn shared(
    ports: Vec<PortPlan>,
    router: Arc<dyn Router>,
    tweak: impl FnOnce(&mut ProxyConfig),
) -> Arc<Shared> {
    let mut cfg = ProxyConfig::new(StealPlan::from_ports(ports));
    cfg.files = FileResolver {
        search_processes: false,
        ..FileResolver::default()
    };
    tweak(&mut cfg);
    Shared::load(cfg, router).await
}

/// Hands the proxy one in-memory connection to `dst`; returns the client's end.
fn connect(shared: &Arc<Shared>, dst: SocketAddr) -> (DuplexStream, JoinHandle<()>) {
    let (client, proxy_end) = tokio::io::duplex(64 * 1024);
    (
        client,
        tokio::spawn(serve(shared.clone(), proxy_end, CLIENT, dst)),
    )
}

type ClientTls = tokio_rustls::client::TlsStream<DuplexStream>;

async fn tls_client(pki: &Pki, io: DuplexStream, alpn: &[&str]) -> std::io::Result<ClientTls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("app.test").unwrap(), io)
        .await
}

/// An HTTP connection over `tls`: HTTP/2 when negotiated or `prior_knowledge`, else HTTP/1.1.
enum Http {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Http {
    async fn over(tls: ClientTls, prior_knowledge: bool) -> Http {
        let h2 = prior_knowledge || tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(c);
            Http::H2(s)
        } else {
            let (s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(c);
            Http::H1(s)
        }
    }

    /// `method path` with `body`; returns (`served-by`, status, body).
    async fn send(&mut self, method: &str, path: &str, body: &str) -> (String, StatusCode, String) {
        let uri = match self {
            Http::H1(_) => path.to_owned(),
            Http::H2(_) => format!("https://app.test{path}"),
        };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "app.test")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let resp = match self {
            Http::H1(s) => s.send_request(req).await,
            Http::H2(s) => s.send_request(req).await,
        }
        .unwrap();
        let who = resp
            .headers()
            .get("served-by")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (who, status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// The application: a loopback TLS server answering HTTP with what it saw, or echoing bytes
/// when the client negotiated no HTTP protocol.
struct App {
    addr: SocketAddr,
    /// `METHOD path body` of every request it answered.
    seen: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    async fn start(pki: &Pki, echo: bool) -> App {
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(&["h2", "http/1.1"]));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, connections2) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections2.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen) = (acceptor.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if echo {
                        let (mut r, mut w) = tokio::io::split(&mut tls);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        return;
                    }
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let line = format!(
                                "{} {} {}",
                                parts.method,
                                parts.uri.path(),
                                String::from_utf8_lossy(&body)
                            );
                            seen.lock().unwrap().push(line.clone());
                            let resp = Response::builder()
                                .header("served-by", "app")
                                .body(Full::new(Bytes::from(line)))
                                .unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        App {
            addr,
            seen,
            connections,
            task,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Takes requests instead of the app; records `METHOD path body`.
#[derive(Default)]
struct Taker1 {
    seen: Mutex<Vec<String>>,
    /// Hands every request back, as a session that was closing does.
    closing: bool,
}

impl Taker for Taker1 {
    fn id(&self) -> u64 {
        1
    }

    fn take<'a>(
        &'a self,
        _request_id: u64,
        req: Request<ProxyBody>,
        _conn: &'a ConnInfo,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send + 'a>> {
        Box::pin(async move {
            if self.closing {
                return Delivery::NotTaken(req);
            }
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let line = format!(
                "{} {} {}",
                parts.method,
                parts.uri.path(),
                String::from_utf8_lossy(&body)
            );
            self.seen.lock().unwrap().push(line.clone());
            let mut resp = text_response(StatusCode::OK, line);
            resp.headers_mut()
                .insert("served-by", http::HeaderValue::from_static("taker"));
            Delivery::Answered(resp)
        })
    }
}

/// Records the heads of the requests copied to it.
#[derive(Default)]
struct Mirror1 {
    seen: Mutex<Vec<String>>,
}

impl Mirror for Mirror1 {
    fn id(&self) -> u64 {
        2
    }

    fn tee(
        self: Arc<Self>,
        _request_id: u64,
        req: Request<ProxyBody>,
        conn: &ConnInfo,
    ) -> Request<ProxyBody> {
        let line = format!("{} {} port {}", req.method(), req.uri().path(), conn.port);
        self.seen.lock().unwrap().push(line);
        req
    }
}

/// Routes by path: `/steal…` to the taker, `/closing…` to a taker that hands it back,
/// `/mirror…` to the mirror, `/body…` by whether the body says "steal"; anything else to the app.
#[derive(Default)]
struct ByPath {
    taker: Arc<Taker1>,
    closing: Arc<Taker1>,
    mirror: Arc<Mirror1>,
    /// Every connection a request was routed on.
    conns: Mutex<Vec<ConnInfo>>,
}

impl ByPath {
    fn new() -> Arc<ByPath> {
        Arc::new(ByPath {
            closing: Arc::new(Taker1 {
                closing: true,
                ..Taker1::default()
            }),
            ..ByPath::default()
        })
    }

    fn steal(&self) -> Route {
        Route::Steal(Stolen {
            taker: self.taker.clone(),
            request_id: 7,
        })
    }

    fn taken(&self) -> Vec<String> {
        self.taker.seen.lock().unwrap().clone()
    }
}

impl Router for ByPath {
    fn route(&self, request: &http::request::Parts, conn: &ConnInfo) -> Route {
        self.conns.lock().unwrap().push(conn.clone());
        let path = request.uri.path();
        if path.starts_with("/steal") {
            self.steal()
        } else if path.starts_with("/closing") {
            Route::Steal(Stolen {
                taker: self.closing.clone(),
                request_id: 8,
            })
        } else if path.starts_with("/mirror") {
            Route::Mirror(Mirrored {
                mirror: self.mirror.clone(),
                request_id: 9,
            })
        } else if path.starts_with("/body") {
            Route::ReadBody
        } else {
            Route::Forward
        }
    }

    fn route_with_body(
        &self,
        _request: &http::request::Parts,
        body: &BodyRead,
        _conn: &ConnInfo,
    ) -> Route {
        match body {
            BodyRead::Json(v) if v["please"] == "steal" => self.steal(),
            _ => Route::Forward,
        }
    }
}

fn metric(shared: &Shared, line: &str) -> bool {
    shared.metrics.render().lines().any(|l| l == line)
}

#[tokio::test]
async fn a_port_outside_the_plan_is_relayed_untouched() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dst = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
    });
    let pki = Pki::new();
    let router = ByPath::new();
    let shared = shared(
        vec![pki.port(dst.port().wrapping_add(1))],
        router.clone(),
        |_| {},
    )
    .await;
    let (mut client, task) = connect(&shared, dst);
    let sent = b"GET /steal HTTP/1.1\r\n\r\n";
    client.write_all(sent).await.unwrap();
    let mut back = [0u8; 23];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, sent, "bytes unchanged, nothing parsed");
    drop(client);
    task.await.unwrap();
    assert!(
        router.conns.lock().unwrap().is_empty(),
        "no request was routed"
    );
    assert!(metric(
        &shared,
        "tls_steal_connections_total{port=\"0\",kind=\"passthrough\"} 1"
    ));
}

#[tokio::test]
async fn a_port_whose_material_is_unusable_is_relayed_untouched() {
    let pki = Pki::new();
    let app = App::start(&pki, false).await;
    let mut plan = pki.port(app.addr.port());
    plan.agent_as_server.authentication.key_pem = pki.path("missing.key");
    let router = ByPath::new();
    let shared = shared(vec![plan], router.clone(), |_| {}).await;
    // The client's TLS reaches the app itself: the app's certificate, the app's answer.
    let (client, _task) = connect(&shared, app.addr);
    let tls = tls_client(&pki, client, &["http/1.1"]).await.unwrap();
    let mut http = Http::over(tls, false).await;
    let (who, status, body) = http.send("GET", "/steal", "").await;
    assert_eq!(
        (who.as_str(), status, body.as_str()),
        ("app", StatusCode::OK, "GET /steal ")
    );
    assert!(
        router.conns.lock().unwrap().is_empty(),
        "no request was routed"
    );
    let port = app.addr.port();
    assert!(metric(
        &shared,
        &format!("tls_steal_connections_total{{port=\"{port}\",kind=\"passthrough\"}} 1")
    ));
}

/// Per request, not per connection: forwarded and taken requests alternate on one connection.
async fn alternate(alpn: &str) {
    let pki = Pki::new();
    let app = App::start(&pki, false).await;
    let router = ByPath::new();
    let shared = shared(vec![pki.port(app.addr.port())], router.clone(), |_| {}).await;
    let (client, _task) = connect(&shared, app.addr);
    let tls = tls_client(&pki, client, &[alpn]).await.unwrap();
    let mut http = Http::over(tls, false).await;
    let mut answers = Vec::new();
    for path in ["/a", "/steal/1", "/b", "/steal/2"] {
        answers.push(http.send("POST", path, "x").await);
    }
    let who: Vec<_> = answers.iter().map(|(w, s, _)| (w.as_str(), *s)).collect();
    let ok = StatusCode::OK;
    assert_eq!(
        who,
        [("app", ok), ("taker", ok), ("app", ok), ("taker", ok)]
    );
    assert_eq!(app.seen(), ["POST /a x", "POST /b x"]);
    assert_eq!(router.taken(), ["POST /steal/1 x", "POST /steal/2 x"]);
    if alpn == "http/1.1" {
        // An HTTP/1.1 client connection keeps one app connection of its own.
        assert_eq!(app.connections.load(Ordering::SeqCst), 1);
    }

    let conns = router.conns.lock().unwrap();
    assert_eq!(conns.len(), 4);
    let c = &conns[0];
    assert_eq!(
        (c.client, c.original_dst, c.port),
        (CLIENT, app.addr, app.addr.port())
    );
    assert_eq!(c.sni.as_deref(), Some("app.test"));
    assert_eq!(c.alpn.as_deref(), Some(alpn.as_bytes()));
}

#[tokio::test]
async fn http1_requests_are_routed_one_by_one() {
    alternate("http/1.1").await;
}

#[tokio::test]
async fn http2_requests_are_routed_one_by_one() {
    alternate("h2").await;
}

#[tokio::test]
async fn without_alpn_the_protocol_is_sniffed() {
    let pki = Pki::new();
    let app = App::start(&pki, false).await;
    let router = ByPath::new();
    let shared = shared(vec![pki.port(app.addr.port())], router.clone(), |_| {}).await;
    for prior_knowledge in [false, true] {
        let (client, _task) = connect(&shared, app.addr);
        let tls = tls_client(&pki, client, &[]).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), None);
        let mut http = Http::over(tls, prior_knowledge).await;
        assert_eq!(http.send("GET", "/steal", "").await.0, "taker");
        assert_eq!(http.send("GET", "/a", "").await.0, "app");
    }
    let port = app.addr.port();
    assert!(metric(
        &shared,
        &format!("tls_steal_connections_total{{port=\"{port}\",kind=\"tls\"}} 2")
    ));
}

#[tokio::test]
async fn a_request_the_taker_never_got_goes_to_the_app() {
    let pki = Pki::new();
    let app = App::start(&pki, false).await;
    let router = ByPath::new();
    let shared = shared(vec![pki.port(app.addr.port())], router.clone(), |_| {}).await;
    let (client, _task) = connect(&shared, app.addr);
    let mut http = Http::over(tls_client(&pki, client, &["h2"]).await.unwrap(), false).await;
    let (who, _, body) = http.send("PUT", "/closing", "kept").await;
    assert_eq!((who.as_str(), body.as_str()), ("app", "PUT /closing kept"));
    assert!(router.closing.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_mirrored_request_is_copied_and_answered_by_the_app() {
    let pki = Pki::new();
    let app = App::start(&pki, false).await;
    let router = ByPath::new();
    let shared = shared(vec![pki.port(app.addr.port())], router.clone(), |_| {}).await;
    let (client, _task) = connect(&shared, app.addr);
    let mut http = Http::over(
        tls_client(&pki, client, &["http/1.1"]).await.unwrap(),
        false,
    )
    .await;
    let (who, _, body) = http.send("POST", "/mirror/x", "copy").await;
    assert_eq!(
        (who.as_str(), body.as_str()),
        ("app", "POST /mirror/x copy")
    );
    let port = app.addr.port();
    assert_eq!(
        *router.mirror.seen.lock().unwrap(),
        [format!("POST /mirror/x port {port}")]
    );
    assert!(router.taken().is_empty());
}

#[tokio::test]
async fn a_body_filter_decides_on_the_body_and_passes_it_on_unchanged() {
    let pki = Pki::new();
    let app = App::start(&pki, false).await;
    let router = ByPath::new();
    let shared = shared(vec![pki.port(app.addr.port())], router.clone(), |_| {}).await;
    let (client, _task) = connect(&shared, app.addr);
    let mut http = Http::over(tls_client(&pki, client, &["h2"]).await.unwrap(), false).await;
    let (who, _, _) = http.send("POST", "/body", "{\"please\": \"steal\"}").await;
    assert_eq!(who, "taker");
    let (who, _, body) = http.send("POST", "/body", "{\"please\": \"keep\"}").await;
    assert_eq!(
        (who.as_str(), body.as_str()),
        ("app", "POST /body {\"please\": \"keep\"}")
    );
    assert_eq!(router.taken(), ["POST /body {\"please\": \"steal\"}"]);
}

#[tokio::test]
async fn non_http_over_tls_is_relayed_to_the_app_over_tls() {
    let pki = Pki::new();
    let app = App::start(&pki, true).await;
    let router = ByPath::new();
    let shared = shared(vec![pki.port(app.addr.port())], router.clone(), |_| {}).await;
    let (client, task) = connect(&shared, app.addr);
    let mut tls = tls_client(&pki, client, &[]).await.unwrap();
    tls.write_all(b"hello, not http\n").await.unwrap();
    let mut back = [0u8; 16];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello, not http\n");
    drop(tls);
    task.await.unwrap();
    assert!(router.conns.lock().unwrap().is_empty());
    let port = app.addr.port();
    assert!(metric(
        &shared,
        &format!("tls_steal_connections_total{{port=\"{port}\",kind=\"opaque\"}} 1")
    ));
}

/// A client that does not speak TLS gets the app itself, untouched, as without the proxy: the
/// app's own answer to plain HTTP comes back (Go's server answers 400), and it is counted.
#[tokio::test]
async fn a_client_without_tls_reaches_the_app_untouched() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dst = listener.local_addr().unwrap();
    let app = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )
        .await
        .unwrap();
        got
    });
    let shared = shared(vec![pki.port(dst.port())], ByPath::new(), |_| {}).await;
    let (mut client, task) = connect(&shared, dst);
    let request = b"GET /plain HTTP/1.1\r\nHost: app.test\r\n\r\n";
    client.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.0 400 Bad Request"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        app.await.unwrap(),
        request,
        "the app got the bytes unchanged"
    );
    // A relay ends once both sides have closed.
    drop(client);
    task.await.unwrap();
    let port = dst.port();
    assert!(metric(
        &shared,
        &format!("tls_steal_tls_handshake_failures_total{{port=\"{port}\",reason=\"not_tls\"}} 1")
    ));
    assert!(metric(
        &shared,
        &format!("tls_steal_connections_total{{port=\"{port}\",kind=\"passthrough\"}} 1")
    ));
}

/// A handshake record that is not a valid ClientHello ends the connection, counted.
#[tokio::test]
async fn a_failed_handshake_ends_the_connection_and_is_counted() {
    let pki = Pki::new();
    let router = ByPath::new();
    let shared = shared(vec![pki.port(8443)], router, |_| {}).await;
    let (mut client, task) = connect(&shared, "127.0.0.1:8443".parse().unwrap());
    client
        .write_all(b"\x16\x03\x01\x00\x05hello")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest).await;
    task.await.unwrap();
    assert!(metric(
        &shared,
        "tls_steal_tls_handshake_failures_total{port=\"8443\",reason=\"not_tls\"} 1"
    ));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let pki = Pki::new();
    let app = App::start(&pki, false).await;
    let router = ByPath::new();
    let shared = shared(vec![pki.port(app.addr.port())], router, |c| {
        c.max_connections = 1;
    })
    .await;
    let (first, _task) = connect(&shared, app.addr);
    let mut http = Http::over(tls_client(&pki, first, &["h2"]).await.unwrap(), false).await;
    let (mut second, refused) = connect(&shared, app.addr);
    refused.await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        second.read_to_end(&mut buf).await.unwrap(),
        0,
        "closed unread"
    );
    assert_eq!(
        http.send("GET", "/a", "").await.0,
        "app",
        "the first one is served"
    );
    let port = app.addr.port();
    assert!(metric(
        &shared,
        &format!("tls_steal_connections_refused_total{{port=\"{port}\"}} 1")
    ));
}

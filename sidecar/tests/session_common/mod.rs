//! Helpers of the session tests: a proxy with the session API on an ephemeral port, and a test
//! "session client" that registers over the real session API and serves reverse HTTP/2 (hyper
//! `server::conn::http2`), the way `kubectl-steal` does.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use tls_steal_crds::StealPlan;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{
    ApiError, EVENT_PATH, Event, META_HEADER, Mode, REGISTER_PATH, Registration, RequestMeta,
    SESSION_ID_HEADER, STATUS_PATH, StatusReport, TICKET_HEADER, TICKET_PATH, UPGRADE_PROTOCOL,
    UPGRADE_STATUS_HEADER,
};
use tls_steal_sidecar::proxy::{self, Authorization, ProxyConfig, ProxyHandle};
use tls_steal_sidecar::session::{SessionConfig, Sessions};
use tls_steal_test_support::app::{echo_upgrade, with_trailers};
use tls_steal_test_support::client::h1_handshake;
use tls_steal_test_support::header_list;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::common::{App, Pki, port_plan};

// Each test binary uses a part of what the harness re-exports.
#[allow(unused_imports)]
pub use tls_steal_test_support::{Err, full, read_raw_response};
pub type TBody = tls_steal_test_support::Body;

/// A proxy in front of a real HTTPS app, with the session API on 127.0.0.1:0.
pub struct World {
    pub pki: Pki,
    pub app: App,
    pub proxy: ProxyHandle,
    pub api: SocketAddr,
    /// The app's port (the captured port, as requests arrive with the app as destination).
    pub port: u16,
    pub sessions: Option<Arc<Sessions>>,
}

impl World {
    pub async fn start() -> World {
        World::start_with(&[], None).await
    }

    /// `extra_ports`: more captured ports in the plan (their connections never arrive: the
    /// original destination is fixed to the app). `sessions`: tuned session settings.
    pub async fn start_with(extra_ports: &[u16], tune: Option<fn(&mut SessionConfig)>) -> World {
        World::start_full(extra_ports, tune, Authorization::Disabled).await
    }

    /// A proxy whose session API requires tickets (`authorization`).
    pub async fn start_authorized(authorization: Authorization) -> World {
        World::start_full(&[], None, authorization).await
    }

    async fn start_full(
        extra_ports: &[u16],
        tune: Option<fn(&mut SessionConfig)>,
        authorization: Authorization,
    ) -> World {
        let pki = Pki::new();
        let app = App::start(&pki).await;
        let port = app.addr.port();
        let mut ports = vec![port_plan(&pki, port)];
        ports.extend(extra_ports.iter().map(|p| port_plan(&pki, *p)));
        let mut cfg = ProxyConfig::new(StealPlan::from_ports(ports));
        cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.admin = Some("127.0.0.1:0".parse().unwrap());
        cfg.session_api = Some("127.0.0.1:0".parse().unwrap());
        cfg.orig_dst_override = Some(app.addr);
        cfg.files.search_processes = false;
        cfg.drain_timeout = Duration::from_secs(2);
        cfg.drain_delay = Duration::ZERO;
        cfg.session_authorization = authorization;
        let (proxy, sessions) = match tune {
            None => (proxy::start(cfg).await.expect("proxy starts"), None),
            Some(f) => {
                let mut sc = SessionConfig::new(cfg.plan.port_numbers());
                f(&mut sc);
                let s = Sessions::new(sc);
                (
                    proxy::start_with_router(cfg, s.clone())
                        .await
                        .expect("proxy starts"),
                    Some(s),
                )
            }
        };
        let api = proxy.session_api.expect("session API bound");
        World {
            pki,
            app,
            proxy,
            api,
            port,
            sessions,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.listen[0]
    }

    pub fn reg(&self, filter: Option<HttpFilter>, mode: Mode, client: &str) -> Registration {
        Registration {
            ports: vec![self.port],
            filter,
            filter_ports: None,
            mode,
            client: client.into(),
        }
    }

    pub async fn status(&self) -> StatusReport {
        let (code, body) = http1_get(self.api, STATUS_PATH).await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until exactly `n` sessions are registered.
    pub async fn wait_sessions(&self, n: usize) {
        for _ in 0..200 {
            if self.status().await.sessions.len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never saw {n} sessions: {:?}", self.status().await.sessions);
    }

    pub async fn metrics(&self) -> String {
        crate::common::admin_get(self.proxy.admin.unwrap(), "/metrics")
            .await
            .1
    }
}

/// A plain HTTP/1.1 GET: (status, body).
pub async fn http1_get(addr: SocketAddr, path: &str) -> (u16, String) {
    tls_steal_test_support::http1_get(addr, path, "localhost").await
}

/// What the test session saw of one stolen (or mirrored) request.
#[derive(Clone, Debug)]
pub struct Got {
    pub meta: RequestMeta,
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub protocol: Option<String>,
}

pub type Handler = Arc<
    dyn Fn(Got, Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TBody>> + Send>>
        + Send
        + Sync,
>;

/// A registered test session serving reverse HTTP/2. Dropping it closes its connection.
pub struct TestSession {
    pub id: u64,
    pub got: Arc<Mutex<Vec<Got>>>,
    pub events: Arc<Mutex<Vec<Event>>>,
    /// Notified on every request the session receives.
    pub arrived: Arc<Notify>,
    leave: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestSession {
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Closes the session's connection.
    pub fn close(self) {}

    /// Leaves the way `kubectl-steal` does on Ctrl-C: HTTP/2 graceful shutdown (`GOAWAY`), the
    /// streams in flight answered, then the connection closed.
    pub fn goaway(&self) {
        self.leave.notify_one();
    }

    /// Whether the session's connection is over.
    pub fn is_closed(&self) -> bool {
        self.task.is_finished()
    }
}

/// The default handler: answers with `x-served-by: <name>` and a JSON body describing the
/// request. `/hang*` never answers; `/slow*` answers after a second; `/echo*` streams the request
/// body back; `/trailers` reads the body and answers with trailers (echoing the request trailer
/// `x-req-trailer` as `x-req-trailer-seen`); an extended CONNECT is accepted as a WebSocket
/// (`tls-steal-status: 101`) and its bytes echoed.
pub fn default_handler(name: &str) -> Handler {
    let name = name.to_owned();
    Arc::new(move |got: Got, mut req: Request<Incoming>| {
        let name = name.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let served_by = |mut r: Response<TBody>| {
                r.headers_mut().insert("x-served-by", name.parse().unwrap());
                r
            };
            if got.protocol.is_some() {
                echo_upgrade(&mut req, |b| b);
                let mut r = Response::new(full(Bytes::new()));
                r.headers_mut()
                    .insert(UPGRADE_STATUS_HEADER, "101".parse().unwrap());
                r.headers_mut().insert(
                    "sec-websocket-accept",
                    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap(),
                );
                return served_by(r);
            }
            if path.starts_with("/hang") {
                std::future::pending::<()>().await;
            }
            if path.starts_with("/slow") {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if path.starts_with("/echo") {
                let body = req.into_body().map_err(std::io::Error::other).boxed();
                return served_by(Response::new(body));
            }
            if path == "/trailers" {
                let mut body = req.into_body();
                let mut n = 0usize;
                let mut req_trailers = None;
                while let Some(f) = body.frame().await {
                    let f = f.unwrap();
                    if let Some(d) = f.data_ref() {
                        n += d.len();
                    }
                    if let Ok(t) = f.into_trailers() {
                        req_trailers = Some(t);
                    }
                }
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                if let Some(t) = req_trailers.and_then(|t| t.get("x-req-trailer").cloned()) {
                    trailers.insert("x-req-trailer-seen", t);
                }
                return served_by(Response::new(with_trailers(
                    format!("received {n} bytes"),
                    trailers,
                )));
            }
            let body = serde_json::json!({
                "served_by": name,
                "id": got.meta.id,
                "method": got.method,
                "uri": got.uri,
            });
            served_by(Response::new(full(body.to_string())))
        })
    })
}

/// Why a registration failed.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub error: ApiError,
}

/// Registers over the session API and serves the session with `handler`.
pub async fn register(
    api: SocketAddr,
    reg: &Registration,
    handler: Handler,
) -> Result<TestSession, Refused> {
    register_raw(api, serde_json::to_vec(reg).unwrap(), handler).await
}

pub async fn register_raw(
    api: SocketAddr,
    body: Vec<u8>,
    handler: Handler,
) -> Result<TestSession, Refused> {
    register_ticketed(api, body, Arc::default(), handler).await
}

/// The session's ticket: sent with the registration, and answered to the sidecar's
/// `GET /.tls-steal/ticket` (404 while `None`); the test replaces it to renew.
pub type TicketCell = Arc<Mutex<Option<String>>>;

/// Registers with the ticket in `ticket` (if any) and serves the session.
pub async fn register_ticketed(
    api: SocketAddr,
    body: Vec<u8>,
    ticket: TicketCell,
    handler: Handler,
) -> Result<TestSession, Refused> {
    let tcp = TcpStream::connect(api).await.unwrap();
    let mut s = h1_handshake(tcp).await;
    let mut req = Request::post(REGISTER_PATH);
    if let Some(t) = ticket.lock().unwrap().clone() {
        req = req.header(TICKET_HEADER, t);
    }
    let req = req
        .header("host", "localhost")
        .header("connection", "upgrade")
        .header("upgrade", UPGRADE_PROTOCOL)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap();
    let mut resp = s.send_request(req).await.unwrap();
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let error = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "error body is not an ApiError ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        return Err(Refused { status, error });
    }
    let id: u64 = resp.headers()[SESSION_ID_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(Notify::new());
    let (got2, events2, arrived2) = (got.clone(), events.clone(), arrived.clone());
    let svc = service_fn(move |req: Request<Incoming>| {
        let (got, events, arrived, handler, ticket) = (
            got2.clone(),
            events2.clone(),
            arrived2.clone(),
            handler.clone(),
            ticket.clone(),
        );
        async move {
            if req.uri().path() == TICKET_PATH {
                let current = ticket.lock().unwrap().clone();
                let mut r = Response::new(full(current.clone().unwrap_or_default()));
                if current.is_none() {
                    *r.status_mut() = StatusCode::NOT_FOUND;
                }
                return Ok::<_, Infallible>(r);
            }
            if req.uri().path() == EVENT_PATH {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                events
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                return Ok::<_, Infallible>(Response::new(full(Bytes::new())));
            }
            let meta: RequestMeta =
                serde_json::from_slice(req.headers()[META_HEADER].as_bytes()).unwrap();
            let g = Got {
                meta,
                method: req.method().to_string(),
                uri: req.uri().to_string(),
                headers: header_list(req.headers()),
                protocol: req
                    .extensions()
                    .get::<hyper::ext::Protocol>()
                    .map(|p| p.as_str().to_owned()),
            };
            got.lock().unwrap().push(g.clone());
            arrived.notify_waiters();
            Ok(handler(g, req).await)
        }
    });
    let leave = Arc::new(Notify::new());
    let leave2 = leave.clone();
    let task = tokio::spawn(async move {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.enable_connect_protocol();
        let conn = b.serve_connection(upgraded, svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = leave2.notified() => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    });
    Ok(TestSession {
        id,
        got,
        events,
        arrived,
        leave,
        task,
    })
}

/// Raw bytes of a registration request.
pub fn raw_registration(body: &str) -> Vec<u8> {
    format!(
        "POST {REGISTER_PATH} HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: {UPGRADE_PROTOCOL}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `x-served-by` of a response, or `app`.
pub fn served_by<B>(r: &Response<B>) -> String {
    r.headers()
        .get("x-served-by")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| "app".into())
}

/// Writes raw bytes.
pub async fn write_all(s: &mut TcpStream, b: &[u8]) {
    s.write_all(b).await.unwrap();
}

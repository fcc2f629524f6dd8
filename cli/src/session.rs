//! One session with one sidecar (see `tls_steal_crds::session` for the protocol): register over
//! an HTTP/1.1 upgrade, then serve the reverse HTTP/2 connection on which the sidecar sends each
//! stolen request as a stream (extended CONNECT for upgrades, `POST /.tls-steal/event` for
//! notifications). The session lasts as long as the connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tls_steal_crds::session::{
    ApiError, EVENT_PATH, Event, META_HEADER, PASSTHROUGH_HEADER, PORTS_HEADER, PortStatus,
    REGISTER_PATH, Registration, RequestMeta, SESSION_ID_HEADER, TICKET_HEADER, TICKET_PATH,
    UPGRADE_PROTOCOL,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::deliver::{Body, BoxError, Deliverer, DeliveryError};
use crate::output::{Output, Served};

/// Registration gives up after this long.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest error / event body read.
const MAX_SMALL_BODY: usize = 64 * 1024;

/// The registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The sidecar said no (400 with an [`ApiError`]); retrying will not help.
    #[error("{}", describe_rejection(.0))]
    Rejected(ApiError),
    #[error("the session API answered {status}: {body}")]
    Unexpected { status: StatusCode, body: String },
    #[error("the session API did not answer the registration in time")]
    Timeout,
    #[error("talking to the session API failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the session API's upgrade failed: {0}")]
    Upgrade(#[source] hyper::Error),
    /// The sidecar accepted a registration whose meaning it does not know.
    #[error(
        "this sidecar predates per-port filters (http_filter.ports): it would filter every port. Roll the workload out to get a newer sidecar, or drop http_filter.ports"
    )]
    Outdated,
}

impl RegisterError {
    /// Whether trying again cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            RegisterError::Rejected(_) | RegisterError::Unexpected { .. } | RegisterError::Outdated
        )
    }
}

fn describe_rejection(e: &ApiError) -> String {
    let mut s = String::from("the sidecar refused the session: ");
    if let Some(f) = &e.field {
        s += &format!("{f}: ");
    }
    s += &e.error;
    if !e.captured_ports.is_empty() {
        let ports: Vec<String> = e.captured_ports.iter().map(u16::to_string).collect();
        s += &format!(
            " (the sidecar captures port(s) {}; pass one of them with --port)",
            ports.join(", ")
        );
    }
    s
}

/// A registered session, ready to serve.
pub struct Registered {
    pub id: String,
    pub io: Upgraded,
    /// The session's ports as the sidecar resolved them (every captured port when the
    /// registration named none).
    pub ports: Vec<u16>,
    /// Registered ports the sidecar relays untouched (nothing on them can be stolen), with why.
    pub passthrough: Vec<PortStatus>,
}

/// The `tls-steal-passthrough` header of a registration's answer (informative only: an
/// unreadable one, from another sidecar version, is skipped).
fn passthrough_ports(headers: &http::HeaderMap) -> Vec<PortStatus> {
    let Some(v) = headers.get(PASSTHROUGH_HEADER) else {
        return Vec::new();
    };
    serde_json::from_slice(v.as_bytes()).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "unreadable {PASSTHROUGH_HEADER} header");
        Vec::new()
    })
}

/// The ports of a `tls-steal-ports` header (`443,8443`).
fn parse_ports(v: &str) -> Option<Vec<u16>> {
    v.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse().ok())
        .collect()
}

/// Registers `registration` on `io` (a TCP connection or a port-forward stream).
/// With `ticket`, the session's signed ticket (`tls-steal-ticket` header).
pub async fn register<IO>(
    io: IO,
    registration: &Registration,
    ticket: Option<&str>,
) -> Result<Registered, RegisterError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    tokio::time::timeout(REGISTER_TIMEOUT, register_inner(io, registration, ticket))
        .await
        .map_err(|_| RegisterError::Timeout)?
}

async fn register_inner<IO>(
    io: IO,
    registration: &Registration,
    ticket: Option<&str>,
) -> Result<Registered, RegisterError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "registration connection ended");
        }
    });
    let body = serde_json::to_vec(registration).expect("a registration serialises");
    let mut req = Request::builder();
    if let Some(t) = ticket {
        req = req.header(TICKET_HEADER, t);
    }
    let req = req
        .method(Method::POST)
        .uri(REGISTER_PATH)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request");
    let mut res = sender.send_request(req).await?;
    let status = res.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let id = res
            .headers()
            .get(SESSION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        // Sidecars that know per-port filters and port-less registrations say which ports
        // the session has; an older one would have applied the filter to every port.
        let ports = res
            .headers()
            .get(PORTS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_ports);
        let ports = match ports {
            Some(p) => p,
            None if registration.filter_ports.is_some() => return Err(RegisterError::Outdated),
            None => registration.ports.clone(),
        };
        let passthrough = passthrough_ports(res.headers());
        let io = hyper::upgrade::on(&mut res)
            .await
            .map_err(RegisterError::Upgrade)?;
        return Ok(Registered {
            id,
            io,
            ports,
            passthrough,
        });
    }
    let body = Limited::new(res.into_body(), MAX_SMALL_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match serde_json::from_slice::<ApiError>(&body) {
        Ok(mut e) if status.is_client_error() => {
            if registration.ports.is_empty() && e.field.as_deref() == Some("ports") {
                e.error.push_str(
                    " (this sidecar predates sessions without a port: give --port or `ports`)",
                );
            }
            Err(RegisterError::Rejected(e))
        }
        _ => Err(RegisterError::Unexpected {
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        }),
    }
}

/// What serving needs.
pub struct Context {
    pub registration: Registration,
    /// The session's current ticket (from `--ticket`, or the `StealSession`'s status, renewed),
    /// sent with each registration and answered to the sidecar's `GET /.tls-steal/ticket`.
    pub ticket: tokio::sync::watch::Sender<Option<String>>,
    /// The endpoints (`pod/x`) a session is registered on now (the StealSession's status).
    pub pods: tokio::sync::watch::Sender<std::collections::BTreeSet<String>>,
    pub deliverer: Arc<Deliverer>,
    pub output: Arc<Output>,
    /// Ctrl-C: every session leaves cleanly.
    pub shutdown: Shutdown,
}

/// The clean end of every session (Ctrl-C / SIGTERM): each session shuts its HTTP/2 server
/// down gracefully (`GOAWAY`: the sidecar stops routing to it at once), answers the stolen
/// requests it already has, and closes; [`Shutdown::drained`] resolves when none is left.
#[derive(Debug)]
pub struct Shutdown {
    stop: tokio::sync::watch::Sender<bool>,
    serving: tokio::sync::watch::Sender<usize>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            stop: tokio::sync::watch::channel(false).0,
            serving: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Shutdown {
    /// Asks every session to leave.
    pub fn begin(&self) {
        self.stop.send_replace(true);
    }

    pub fn is_started(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once [`Shutdown::begin`] was called.
    pub async fn started(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Resolves when no session connection is being served.
    pub async fn drained(&self) {
        let mut rx = self.serving.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn enter(&self) -> Serving<'_> {
        self.serving.send_modify(|n| *n += 1);
        Serving(self)
    }
}

/// One session connection being served.
struct Serving<'a>(&'a Shutdown);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.serving.send_modify(|n| *n -= 1);
    }
}

/// Serves the reverse HTTP/2 connection until it ends; `label` names the endpoint (`pod/x`).
/// On [`Shutdown::begin`] the connection is shut down gracefully (`GOAWAY`, then the streams
/// in flight are answered, then it closes).
pub async fn serve(io: Upgraded, ctx: Arc<Context>, label: String) -> Result<(), hyper::Error> {
    let label = Arc::new(label);
    let svc_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let (ctx, label) = (svc_ctx.clone(), label.clone());
        async move { Ok::<_, Infallible>(handle(req, &ctx, &label).await) }
    });
    let _serving = ctx.shutdown.enter();
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(1000)
        .keep_alive_interval(Some(Duration::from_secs(15)))
        .keep_alive_timeout(Duration::from_secs(20))
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = ctx.shutdown.started() => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

async fn handle(req: Request<Incoming>, ctx: &Context, label: &str) -> Response<Body> {
    if req.method() == Method::POST && req.uri().path() == EVENT_PATH {
        return event(req, ctx, label).await;
    }
    if req.method() == Method::GET && req.uri().path() == TICKET_PATH {
        // The sidecar renews the session's ticket before it expires.
        let current = ctx.ticket.borrow().clone();
        let body = Bytes::from(current.clone().unwrap_or_default());
        let mut r = Response::new(Full::new(body).map_err(BoxError::from).boxed());
        if current.is_none() {
            *r.status_mut() = StatusCode::NOT_FOUND;
        }
        return r;
    }
    let meta = req
        .headers()
        .get(META_HEADER)
        .and_then(|v| serde_json::from_slice::<RequestMeta>(v.as_bytes()).ok())
        .unwrap_or_else(|| {
            tracing::warn!("stolen request without a valid {META_HEADER} header");
            fallback_meta(&ctx.registration)
        });
    let method = if req.method() == Method::CONNECT {
        "GET".to_string()
    } else {
        req.method().to_string()
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let started = Instant::now();
    let delivered = ctx.deliverer.deliver(req, &meta).await;
    ctx.output.request(&Served {
        pod: meta
            .pod
            .as_ref()
            .map_or_else(|| label.to_string(), |p| format!("pod/{p}")),
        method,
        path,
        mode: meta.mode,
        status: delivered.status,
        elapsed: started.elapsed(),
        failure: delivered.failure.as_ref().map(DeliveryError::describe),
    });
    delivered.response
}

async fn event(req: Request<Incoming>, ctx: &Context, label: &str) -> Response<Body> {
    let body = Limited::new(req.into_body(), MAX_SMALL_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes());
    match body
        .ok()
        .and_then(|b| serde_json::from_slice::<Event>(&b).ok())
    {
        Some(e) => ctx.output.event(label, &e),
        None => tracing::warn!("unreadable event from {label}"),
    }
    let mut r = Response::new(Full::new(Bytes::new()).map_err(BoxError::from).boxed());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn fallback_meta(reg: &Registration) -> RequestMeta {
    RequestMeta {
        id: 0,
        port: reg.ports.first().copied().unwrap_or(443),
        mode: reg.mode,
        client_addr: String::new(),
        original_dst: String::new(),
        sni: None,
        alpn: None,
        http_version: "HTTP/1.1".into(),
        upgrade: None,
        pod: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_header_reads() {
        assert_eq!(parse_ports("443,8443"), Some(vec![443, 8443]));
        assert_eq!(parse_ports(" 443 "), Some(vec![443]));
        assert_eq!(parse_ports("443,x"), None);
        assert!(RegisterError::Outdated.is_fatal());
    }

    #[test]
    fn rejections_list_the_captured_ports() {
        let e = RegisterError::Rejected(ApiError {
            error: "port 8443 is not captured".into(),
            field: Some("ports[0]".into()),
            captured_ports: vec![443, 9443],
        });
        assert_eq!(
            e.to_string(),
            "the sidecar refused the session: ports[0]: port 8443 is not captured (the sidecar captures port(s) 443, 9443; pass one of them with --port)"
        );
        assert!(e.is_fatal());
        assert!(!RegisterError::Timeout.is_fatal());
    }
}

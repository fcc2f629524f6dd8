//! One session: its filter, its reverse-HTTP/2 connection, and the delivery of stolen requests.
//!
//! After the registration's `101`, the sidecar is the HTTP/2 **client** on the upgraded
//! connection (hyper `client::conn::http2`), the session the server. Each stolen request is one
//! stream: the original head (plus `tls-steal-meta`), the body and trailers streamed both ways,
//! back-pressure from HTTP/2 flow control. An HTTP/1.1 upgrade (WebSocket) is an extended CONNECT
//! stream (RFC 8441) whose upgraded bytes are bridged with the client's upgraded connection.
//!
//! The session ends when its connection ends (or when the sidecar closes it: too many requests
//! waiting for its answers, or no PING answer): it leaves the registry at once, requests waiting
//! for its answer get a `502` saying so, and the next requests reach the app. A session leaving
//! cleanly (`kubectl-steal` on Ctrl-C) sends `GOAWAY` first: the sidecar notices it as it reads
//! it (`session::goaway`), takes the session out of the registry at once, and lets the streams
//! in flight be answered. A request routed to a session whose connection turns out closed
//! before the request was handed over (hyper gives it back) goes to the app
//! ([`Delivery::NotTaken`]): the `502` is only for requests the session had taken.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, UPGRADE};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tls_steal_crds::filter::{CompiledFilter, HttpFilter, MatchNotes, RequestView};
use tls_steal_crds::session::{
    ApiError, EVENT_PATH, Event, META_HEADER, Mode, Registration, RequestMeta, SessionInfo,
    UPGRADE_STATUS_HEADER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use super::goaway::GoawayWatch;
use super::metrics::{SessionError, SessionMetrics};
use super::{SessionConfig, Sessions};
use crate::proxy::forward::{ProxyBody, error_chain, text_response};
use crate::proxy::route::ConnInfo;
use tls_steal_http::io::{Hooked, Prefixed};
use tls_steal_http::sniff::{Sniffed, classify};
use tls_steal_http::{strip_hop_by_hop, upgrade_protocol};

/// How long a session that ended cleanly waits for the answers to its requests in flight.
const DRAIN_BOUND: Duration = Duration::from_secs(30);

/// Errors of bodies sent to a session.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of requests sent to a session.
pub type SessionBody = UnsyncBoxBody<Bytes, BoxError>;

/// The state of a session's connection.
#[derive(Clone)]
pub(crate) enum Link {
    /// Registered; the upgrade and the HTTP/2 handshake are under way.
    Connecting,
    Ready(SendRequest<SessionBody>),
    /// Ended, with the reason.
    Closed(Arc<str>),
}

/// An active session.
pub struct Session {
    pub id: u64,
    pub ports: Vec<u16>,
    pub mode: Mode,
    pub client: String,
    pub filter_spec: Option<HttpFilter>,
    filter: Option<CompiledFilter>,
    /// The ports the filter applies to (`None`: all of `ports`); the others are taken whole.
    pub filter_ports: Option<Vec<u16>>,
    /// The filter looks at bodies.
    uses_body: bool,
    pub(crate) cfg: Arc<SessionConfig>,
    pub(crate) metrics: Arc<SessionMetrics>,
    pub(crate) link: watch::Sender<Link>,
    closing: AtomicBool,
    close_reason: Mutex<Option<String>>,
    kill: Notify,
    in_flight: AtomicUsize,
    pub(crate) mirrors_in_flight: AtomicUsize,
    stolen: AtomicU64,
    pub(crate) mirrored: AtomicU64,
    pub(crate) mirror_dropped: AtomicU64,
    pub(crate) dropped_unreported: AtomicU64,
    events: mpsc::Sender<Event>,
    events_rx: Mutex<Option<mpsc::Receiver<Event>>>,
}

/// Why a session gave no answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The session ended (the reason).
    Ended(String),
    /// The session is alive but the exchange failed (e.g. it reset the stream).
    Failed(String),
    /// The session's connection was closed (or closing) before the request was handed over:
    /// the session never saw it, so it can go to the app instead.
    NotSent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Ended(r) => write!(f, "the session ended ({r})"),
            SendError::Failed(r) => f.write_str(r),
            SendError::NotSent(r) => write!(f, "not sent: the session is closing ({r})"),
        }
    }
}

/// What became of a stolen request.
pub enum Delivery {
    /// The session's answer, or a `502` saying why there is none.
    Answered(Response<ProxyBody>),
    /// The session was closing and never got the request (it was not handed over): it goes to
    /// the app, as if no session had matched.
    NotTaken(Request<ProxyBody>),
}

/// The head of a stolen request as it arrived, to rebuild it if the session never gets it.
struct OriginalHead {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl OriginalHead {
    fn into_request(
        self,
        body: ProxyBody,
        client_upgrade: Option<OnUpgrade>,
    ) -> Request<ProxyBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        if let Some(u) = client_upgrade {
            req.extensions_mut().insert(u);
        }
        req
    }
}

/// A stolen request's body as lent to the session's connection: the body stays in a shared
/// slot, so a request hyper hands back unsent gets its body back, untouched, for the app.
struct LentBody(Arc<Mutex<Option<ProxyBody>>>);

impl hyper::body::Body for LentBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map_or_else(
            || hyper::body::SizeHint::with_exact(0),
            hyper::body::Body::size_hint,
        )
    }
}

/// Counts a request in flight while alive.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    pub(crate) fn enter(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::AcqRel);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn version_label(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The head of a request as sent to a session: an absolute `https` URI (HTTP/2 needs a scheme
/// and an authority: the client's `:authority`, else its `Host`, else the original destination),
/// HTTP/2, no connection-specific headers, the meta header.
pub fn session_head(
    mut parts: http::request::Parts,
    meta: &RequestMeta,
    dst: SocketAddr,
) -> http::request::Parts {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let build = |a: &str| {
        Uri::builder()
            .scheme("https")
            .authority(a)
            .path_and_query(pq.as_str())
            .build()
    };
    parts.uri = authority
        .as_deref()
        .and_then(|a| build(a).ok())
        .or_else(|| build(&dst.to_string()).ok())
        .unwrap_or_else(|| Uri::from_static("https://localhost/"));
    parts.version = Version::HTTP_2;
    parts.extensions = http::Extensions::new();
    strip_hop_by_hop(&mut parts.headers, false);
    let json = serde_json::to_vec(meta).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_bytes(&json) {
        parts
            .headers
            .insert(HeaderName::from_static(META_HEADER), v);
    }
    parts
}

/// A JSON answer.
pub(crate) fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Response<ProxyBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|n: std::convert::Infallible| match n {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl Session {
    pub(crate) fn new(
        id: u64,
        reg: Registration,
        filter: Option<CompiledFilter>,
        cfg: Arc<SessionConfig>,
        metrics: Arc<SessionMetrics>,
    ) -> Arc<Self> {
        let mut ports = reg.ports;
        ports.sort_unstable();
        ports.dedup();
        let (events, events_rx) = mpsc::channel(cfg.event_queue.max(1));
        Arc::new(Session {
            id,
            ports,
            mode: reg.mode,
            client: reg.client,
            uses_body: reg.filter.as_ref().is_some_and(HttpFilter::uses_body),
            filter_spec: reg.filter,
            filter,
            filter_ports: reg.filter_ports,
            cfg,
            metrics,
            link: watch::channel(Link::Connecting).0,
            closing: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            kill: Notify::new(),
            in_flight: AtomicUsize::new(0),
            mirrors_in_flight: AtomicUsize::new(0),
            stolen: AtomicU64::new(0),
            mirrored: AtomicU64::new(0),
            mirror_dropped: AtomicU64::new(0),
            dropped_unreported: AtomicU64::new(0),
            events,
            events_rx: Mutex::new(Some(events_rx)),
        })
    }

    /// The filter that applies on `port` (`None`: the port is taken whole).
    fn filter_on(&self, port: u16) -> Option<&CompiledFilter> {
        match &self.filter_ports {
            Some(ports) if !ports.contains(&port) => None,
            _ => self.filter.as_ref(),
        }
    }

    /// Whether this session's filter takes the request on `port` (no filter there: every
    /// request); regex evaluations that hit the backtracking limit are noted in `notes`.
    pub fn matches(&self, req: &dyn RequestView, port: u16, notes: &mut MatchNotes) -> bool {
        self.filter_on(port).is_none_or(|f| f.eval(req, notes))
    }

    /// Whether deciding for a request on `port` needs its body.
    pub fn needs_body(&self, port: u16) -> bool {
        self.uses_body && self.filter_on(port).is_some()
    }

    /// Stolen requests waiting for this session's answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether the session is ending (it takes no more requests).
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Ends the session: it takes no more requests, and its connection is closed.
    pub fn close(&self, reason: &str) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.close_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        self.kill.notify_one();
    }

    /// Queues an event for the session (dropped, and counted, when its queue is full).
    pub fn tell(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            self.metrics.event_dropped();
        }
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id,
            client: self.client.clone(),
            ports: self.ports.clone(),
            mode: self.mode,
            filter: self.filter_spec.clone(),
            filter_ports: self.filter_ports.clone(),
            stolen: self.stolen.load(Ordering::Relaxed),
            mirrored: self.mirrored.load(Ordering::Relaxed),
        }
    }

    /// Mirror copies dropped so far because the session lagged.
    pub fn mirror_dropped(&self) -> u64 {
        self.mirror_dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn meta(
        &self,
        id: u64,
        conn: &ConnInfo,
        version: Version,
        upgrade: Option<String>,
        mode: Mode,
    ) -> RequestMeta {
        RequestMeta {
            id,
            port: conn.port,
            mode,
            client_addr: conn.client.to_string(),
            original_dst: conn.original_dst.to_string(),
            sni: conn.sni.clone(),
            alpn: conn
                .alpn
                .as_deref()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            http_version: version_label(version).to_owned(),
            upgrade,
            pod: self.cfg.pod.clone(),
        }
    }

    fn closed_reason(&self) -> Arc<str> {
        match &*self.link.borrow() {
            Link::Closed(r) => r.clone(),
            _ => Arc::from("the session is closing"),
        }
    }

    /// Sends one request on the session's connection; waits while it connects. `Err` carries
    /// why the session could not answer.
    pub(crate) async fn send(
        &self,
        req: Request<SessionBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut rx = self.link.subscribe();
        let mut sender = {
            let link = rx
                .wait_for(|l| !matches!(l, Link::Connecting))
                .await
                .map_err(|_| SendError::NotSent("the session is gone".to_owned()))?;
            match &*link {
                Link::Ready(s) => s.clone(),
                Link::Closed(r) => return Err(SendError::NotSent(r.to_string())),
                Link::Connecting => unreachable!(),
            }
        };
        if sender.is_closed() {
            return Err(SendError::NotSent("its connection is closed".to_owned()));
        }
        // An upgrade (extended CONNECT) is sent as is: a session whose SETTINGS do not allow
        // it resets the stream, which ends as a 502 naming the error.
        let closed = async {
            let _ = rx.wait_for(|l| matches!(l, Link::Closed(_))).await;
        };
        // `try_send_request`: a request hyper could not hand to the connection (it is closed,
        // or a GOAWAY was just noticed) comes back, and is known not to have reached the session.
        tokio::select! {
            r = sender.try_send_request(req) => r.map_err(|mut e| {
                if e.take_message().is_some() {
                    SendError::NotSent(error_chain(e.error()))
                } else if self.is_closing() || matches!(&*self.link.borrow(), Link::Closed(_)) {
                    SendError::Ended(self.closed_reason().to_string())
                } else {
                    SendError::Failed(error_chain(e.error()))
                }
            }),
            _ = closed => Err(SendError::Ended(self.closed_reason().to_string())),
        }
    }

    fn failed(&self, request_id: u64, why: SendError) -> Response<ProxyBody> {
        self.metrics.error(SessionError::RequestFailed);
        let client = if self.client.is_empty() {
            "unnamed"
        } else {
            &self.client
        };
        let text = match &why {
            SendError::Ended(r) => format!(
                "session {} ({client}) ended before answering this request: {r}",
                self.id
            ),
            SendError::Failed(r) | SendError::NotSent(r) => format!(
                "session {} ({client}) failed to answer this request: {r}",
                self.id
            ),
        };
        info!(session = self.id, client = %self.client, request = request_id, reason = %text, "stolen request not answered");
        text_response(
            StatusCode::BAD_GATEWAY,
            format!("tls-steal-proxy: {text}\n"),
        )
    }

    /// Delivers a stolen request to the session and returns its answer (or a 502 saying why
    /// there is none). A request the session never got (its connection closed or closing before
    /// the request was handed over) comes back as [`Delivery::NotTaken`], for the app.
    pub async fn steal(
        &self,
        request_id: u64,
        mut req: Request<ProxyBody>,
        conn: &ConnInfo,
    ) -> Delivery {
        let _slot = InFlight::enter(&self.in_flight);
        self.stolen.fetch_add(1, Ordering::Relaxed);
        let version = req.version();
        let upgrade = upgrade_protocol(&req).map(str::to_owned);
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let meta = self.meta(request_id, conn, version, upgrade.clone(), Mode::Steal);
        let (mut parts, body) = req.into_parts();
        let original = OriginalHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            extensions: std::mem::take(&mut parts.extensions),
        };
        let lent = Arc::new(Mutex::new(Some(body)));
        let mut parts = session_head(parts, &meta, conn.original_dst);
        let body = match &upgrade {
            Some(proto) => {
                parts.method = Method::CONNECT;
                parts.headers.remove(CONTENT_LENGTH);
                parts
                    .extensions
                    .insert(hyper::ext::Protocol::from(proto.as_str()));
                Empty::new().map_err(|n| match n {}).boxed_unsync()
            }
            None => LentBody(lent.clone()).boxed_unsync(),
        };
        let resp = match self.send(Request::from_parts(parts, body)).await {
            Ok(r) => r,
            Err(SendError::NotSent(why)) => {
                let body = lent.lock().unwrap_or_else(|e| e.into_inner()).take();
                let Some(body) = body else {
                    return Delivery::Answered(self.failed(request_id, SendError::NotSent(why)));
                };
                self.stolen.fetch_sub(1, Ordering::Relaxed);
                info!(session = self.id, client = %self.client, request = request_id, reason = %why,
                    "the session is closing and never got this request; it goes to the app");
                return Delivery::NotTaken(original.into_request(body, client_upgrade));
            }
            Err(why) => return Delivery::Answered(self.failed(request_id, why)),
        };
        Delivery::Answered(match (upgrade, client_upgrade) {
            (Some(proto), Some(client_upgrade)) => {
                self.finish_upgrade(resp, client_upgrade, &proto, version)
            }
            _ => {
                let mut resp = resp.map(|b| b.boxed_unsync());
                *resp.version_mut() = version;
                resp
            }
        })
    }

    /// The session's answer to an extended CONNECT: `2xx` + `tls-steal-status: 101` → a `101`
    /// to the client and the two upgraded streams bridged; `2xx` with another status → that
    /// status, with the stream's bytes as the body; anything else → passed on as is.
    fn finish_upgrade(
        &self,
        mut resp: Response<Incoming>,
        client_upgrade: OnUpgrade,
        proto: &str,
        version: Version,
    ) -> Response<ProxyBody> {
        if !resp.status().is_success() {
            let mut resp = resp.map(|b| b.boxed_unsync());
            *resp.version_mut() = version;
            return resp;
        }
        let real = resp
            .headers()
            .get(UPGRADE_STATUS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::SWITCHING_PROTOCOLS);
        let session_upgrade = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        parts.headers.remove(UPGRADE_STATUS_HEADER);
        parts.status = real;
        parts.version = version;
        parts.extensions = http::Extensions::new();
        if real == StatusCode::SWITCHING_PROTOCOLS {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            if !parts.headers.contains_key(UPGRADE)
                && let Ok(v) = HeaderValue::from_str(proto)
            {
                parts.headers.insert(UPGRADE, v);
            }
            let (id, metrics) = (self.id, self.metrics.clone());
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, session_upgrade) {
                    Ok((c, s)) => {
                        let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                        match tokio::io::copy_bidirectional(&mut c, &mut s).await {
                            Ok((up, down)) => {
                                debug!(session = id, up, down, "stolen upgraded connection closed")
                            }
                            Err(e) => {
                                debug!(session = id, error = %e, "stolen upgraded connection ended with an error")
                            }
                        }
                    }
                    Err(e) => {
                        metrics.error(SessionError::UpgradeFailed);
                        warn!(session = id, error = %e, "stolen upgrade could not be bridged");
                    }
                }
            });
            Response::from_parts(parts, Empty::new().map_err(|n| match n {}).boxed_unsync())
        } else {
            // The local app refused the upgrade: its answer's body follows on the stream.
            let (tx, rx) = mpsc::channel::<Bytes>(8);
            tokio::spawn(async move {
                let Ok(up) = session_upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(up);
                loop {
                    let mut buf = BytesMut::with_capacity(16 * 1024);
                    match io.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if tx.send(buf.freeze()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            parts.headers.remove(CONTENT_LENGTH);
            let body = super::mirror::ChannelBody::new(rx);
            Response::from_parts(parts, body.boxed_unsync())
        }
    }

    /// Runs the session's connection to its end, then removes the session.
    pub(crate) async fn run(self: Arc<Self>, sessions: Arc<Sessions>, on_upgrade: OnUpgrade) {
        let result = self.connect_and_serve(&sessions, on_upgrade).await;
        sessions.registry.remove(self.id);
        self.closing.store(true, Ordering::Release);
        if result.is_ok() && !self.was_killed() {
            // A clean end (the session's GOAWAY, or its connection closed): hyper's client may
            // finish while the streams it already sent are still being answered; they complete
            // (or fail, if the connection is gone) on their own. Requests waiting for an answer
            // only get a 502 when the sidecar closes the session itself.
            let deadline = tokio::time::Instant::now() + DRAIN_BOUND;
            while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let reason = match result {
            Ok(r) => r,
            Err(r) => {
                self.metrics.error(SessionError::ConnectionFailed);
                r
            }
        };
        self.link
            .send_replace(Link::Closed(Arc::from(reason.as_str())));
        sessions.metrics.session_ended();
        info!(session = self.id, client = %self.client, stolen = self.stolen.load(Ordering::Relaxed),
            mirrored = self.mirrored.load(Ordering::Relaxed), %reason, "session ended");
    }

    fn was_killed(&self) -> bool {
        self.close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    async fn connect_and_serve(
        self: &Arc<Self>,
        sessions: &Sessions,
        on_upgrade: OnUpgrade,
    ) -> Result<String, String> {
        let upgraded = tokio::time::timeout(Duration::from_secs(10), on_upgrade)
            .await
            .map_err(|_| "the registration connection was not upgraded in time".to_owned())?
            .map_err(|e| format!("the registration connection was not upgraded: {e}"))?;
        let mut io = TokioIo::new(upgraded);
        // An HTTP/2 server speaks first (its SETTINGS); a registration sent again on this
        // connection is answered in HTTP/1.1 and the session ends.
        let mut prefix = BytesMut::with_capacity(64);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while classify(&prefix) == Sniffed::NeedMore {
            match tokio::time::timeout_at(deadline, io.read_buf(&mut prefix)).await {
                Ok(Ok(0)) => return Ok("the session closed its connection".into()),
                Ok(Err(e)) => return Err(format!("reading from the session failed: {e}")),
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
        if classify(&prefix) == Sniffed::Http1 {
            let err = ApiError {
                error: format!(
                    "this connection already carries session {} (it stops now); register on a new connection",
                    self.id
                ),
                field: None,
                captured_ports: Vec::new(),
            };
            let body = serde_json::to_string(&err).unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = io.write_all(answer.as_bytes()).await;
            let _ = io.shutdown().await;
            return Err("the session sent an HTTP/1 request instead of serving HTTP/2".into());
        }
        let goaway = Arc::new(Notify::new());
        let io = TokioIo::new(Hooked::new(
            Prefixed::prefixed(prefix.freeze(), io),
            GoawayWatch::new(goaway.clone()),
        ));
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(self.cfg.keepalive_interval)
            .keep_alive_timeout(self.cfg.keepalive_timeout)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(1024 * 1024)
            .initial_connection_window_size(8 * 1024 * 1024)
            .max_send_buf_size(1024 * 1024);
        let (send, conn) = tokio::time::timeout(Duration::from_secs(10), builder.handshake(io))
            .await
            .map_err(|_| "the HTTP/2 handshake with the session timed out".to_owned())?
            .map_err(|e| {
                format!(
                    "the HTTP/2 handshake with the session failed: {}",
                    error_chain(&e)
                )
            })?;
        self.link.send_replace(Link::Ready(send));
        info!(session = self.id, client = %self.client, "session connected");
        let events = self
            .events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = events {
            tokio::spawn(self.clone().deliver_events(rx));
        }
        tokio::pin!(conn);
        let mut leaving = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => return match r {
                    Ok(()) if leaving => Ok("the session left (GOAWAY)".into()),
                    Ok(()) => Ok("the session closed its connection".into()),
                    Err(e) => Err(format!("the session connection failed: {}", error_chain(&e))),
                },
                _ = self.kill.notified() => {
                    let reason = self.close_reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    return Ok(reason.unwrap_or_else(|| "closed by the sidecar".into()));
                }
                _ = goaway.notified(), if !leaving => {
                    // The session is leaving (kubectl-steal's Ctrl-C): out of the registry now,
                    // so the next requests reach the app; its streams in flight complete, then
                    // it closes the connection.
                    leaving = true;
                    self.closing.store(true, Ordering::Release);
                    sessions.registry.remove(self.id);
                    info!(session = self.id, client = %self.client, in_flight = self.in_flight(),
                        "session is leaving (GOAWAY); it takes no new requests");
                }
            }
        }
    }

    /// Sends queued events (and, every 250 ms, the count of dropped mirror copies) as
    /// `POST /.tls-steal/event` streams, one at a time, until the session ends.
    async fn deliver_events(self: Arc<Self>, mut rx: mpsc::Receiver<Event>) {
        let mut link = self.link.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                _ = tick.tick() => {
                    let n = self.dropped_unreported.swap(0, Ordering::AcqRel);
                    if n == 0 { continue }
                    Event::MirrorDropped { count: n }
                }
                _ = link.wait_for(|l| matches!(l, Link::Closed(_))) => return,
            };
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let req = Request::post(format!("https://tls-steal{EVENT_PATH}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(
                    Full::new(Bytes::from(body))
                        .map_err(|n| match n {})
                        .boxed_unsync(),
                );
            let Ok(req) = req else { continue };
            match self.send(req).await {
                Ok(resp) => {
                    let mut body = resp.into_body();
                    while let Some(Ok(_)) = body.frame().await {}
                }
                Err(e) => debug!(session = self.id, error = %e, "event not delivered"),
            }
        }
    }
}

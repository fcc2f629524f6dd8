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
//!
//! This module is the session's state; [`head`] rewrites request heads for the session,
//! [`steal`] hands a stolen request over and answers the client, [`upgrade`] bridges stolen
//! upgrades, [`drive`] runs the session's connection (and sends each request on it).

mod drive;
mod head;
mod steal;
mod upgrade;

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
    TICKET_PATH, UPGRADE_STATUS_HEADER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use crate::proxy::{ConnInfo, Delivery};
use crate::proxy::{ProxyBody, empty_body, error_chain, text_response};
use crate::session::authorize::{self, Grant};
use crate::session::goaway::GoawayWatch;
use crate::session::metrics::{SessionError, SessionMetrics};
use crate::session::{SessionConfig, Sessions};
use tls_steal_http::{Hooked, Prefixed, Sniffed, classify, strip_hop_by_hop, upgrade_protocol};

pub(crate) use head::json_response;
pub use head::session_head;
use head::{OriginalHead, version_label};
pub(crate) use steal::SendError;

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
    /// When it registered (wall clock, for status) and how long ago (monotonic).
    registered: (std::time::SystemTime, std::time::Instant),
    /// What its ticket grants (authorization required), renewed while it lives.
    grant: Mutex<Option<Grant>>,
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

impl Session {
    pub(crate) fn new(
        id: u64,
        reg: Registration,
        filter: Option<CompiledFilter>,
        grant: Option<Grant>,
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
            registered: (std::time::SystemTime::now(), std::time::Instant::now()),
            grant: Mutex::new(grant),
        })
    }

    /// What the session's ticket grants (`None`: authorization is disabled).
    pub fn grant(&self) -> Option<Grant> {
        self.grant.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_grant(&self, grant: Grant) {
        *self.grant.lock().unwrap_or_else(|e| e.into_inner()) = Some(grant);
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
            since: Some(tls_steal_crds::session::rfc3339(self.registered.0)),
            age_seconds: Some(self.registered.1.elapsed().as_secs()),
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
}

//! Sessions: the developer-side consumers of stolen traffic (`kubectl-steal`), their filters,
//! and the session API on 127.0.0.1:15400. The protocol and wire types are
//! [`tls_steal_crds::session`]; this module is the sidecar's half of it.
//!
//! * [`registry`]: the active sessions in registration order, indexed by port; the hot path
//!   takes a read lock only to clone an `Arc` of an immutable snapshot.
//! * [`route`]: the proxy's per-request decision ([`crate::proxy::Router`]): the
//!   earliest-registered session whose ports include the request's port and whose filter matches
//!   takes it (steal, or mirror), later matching sessions are told, nothing matching → forward.
//! * [`conn`]: one session's connection: reverse HTTP/2 (the sidecar is the client) over the
//!   upgraded registration connection; each stolen request is a stream; session end → 502s.
//! * [`mirror`]: copies of mirrored requests, teed through a bounded buffer, dropped (and
//!   counted) when the session lags; the real request never waits for the session.
//! * [`api`]: `POST /v1/sessions` (registration + upgrade) and `GET /v1/status`.
//! * [`authorize`]: the registration's signed ticket (who may steal) and its renewal.
//! * [`status`]: the ports and certificates as the proxy serves them, for `/v1/status`.
//! * [`explain`]: `POST /v1/explain`, where a sample request would go (read-only).
//! * [`metrics`]: Prometheus lines appended to the proxy's `/metrics`.

mod api;
mod authorize;
mod conn;
mod explain;
mod goaway;
mod metrics;
mod mirror;
mod registry;
mod route;
mod status;
mod view;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::proxy::Shared;

pub use authorize::Authorization;
pub(crate) use conn::Session;
pub use conn::session_head;
pub(crate) use metrics::SessionMetrics;
pub(crate) use registry::Registry;

/// Tunables of the session layer.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The ports the plan captures (the only ones a session may ask for).
    pub captured_ports: Vec<u16>,
    /// Stolen requests waiting for a session's answer before the session counts as stuck and is
    /// closed (its requests get 502s, the next ones go to the app).
    pub max_in_flight: usize,
    /// Mirror copies in flight per session before further copies are dropped.
    pub mirror_max_in_flight: usize,
    /// Body frames buffered per mirror copy before the copy is dropped.
    pub mirror_body_frames: usize,
    /// Events queued per session before further events are dropped.
    pub event_queue: usize,
    /// HTTP/2 PING interval toward a session; a session that does not answer within
    /// `keepalive_timeout` is closed.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Largest registration body accepted.
    pub max_registration_bytes: usize,
    /// Whether a registration needs a signed ticket (the binary's default: required).
    pub authorization: Authorization,
    /// The pod's name, passed to sessions in each request's meta.
    pub pod: Option<String>,
}

impl SessionConfig {
    pub fn new(captured_ports: Vec<u16>) -> Self {
        SessionConfig {
            captured_ports,
            max_in_flight: 1024,
            mirror_max_in_flight: 64,
            mirror_body_frames: 64,
            event_queue: 256,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
            max_registration_bytes: 1024 * 1024,
            authorization: Authorization::Disabled,
            pod: std::env::var("POD_NAME")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok()),
        }
    }
}

/// A listener with `SO_REUSEADDR` (a restarted sidecar rebinds at once).
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// The session layer: configuration, registry, counters. Shared as `Arc<Sessions>`; it is also
/// the proxy's [`Router`](crate::proxy::Router).
pub struct Sessions {
    pub(crate) cfg: Arc<SessionConfig>,
    pub(crate) registry: Registry,
    pub(crate) metrics: Arc<SessionMetrics>,
    me: Weak<Sessions>,
    next_session: AtomicU64,
    next_request: AtomicU64,
    /// The proxy's state, for `/v1/status` (set when the proxy starts).
    proxy: OnceLock<Weak<Shared>>,
}

impl Sessions {
    pub fn new(cfg: SessionConfig) -> Arc<Self> {
        Arc::new_cyclic(|me| Sessions {
            metrics: Arc::new(SessionMetrics::new(cfg.captured_ports.iter().copied())),
            registry: Registry::default(),
            cfg: Arc::new(cfg),
            me: me.clone(),
            next_session: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
            proxy: OnceLock::new(),
        })
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// A request id, unique per sidecar process.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Validates a registration (JSON) and its ticket (when authorization is required), and
    /// adds the session to the registry. Until [`Session::run`] connects it, requests routed to
    /// it wait. A refusal says its status: `400` (the registration) or `403` (the ticket).
    pub(crate) fn register_json(
        &self,
        body: &[u8],
        ticket: Option<&str>,
    ) -> Result<Arc<Session>, (http::StatusCode, tls_steal_crds::session::ApiError)> {
        let (reg, filter) = api::validate(body, &self.cfg.captured_ports)
            .map_err(|e| (http::StatusCode::BAD_REQUEST, e))?;
        // The ticket covers the registration as sent (`ports: []` is its own scope).
        let as_sent: tls_steal_crds::session::Registration =
            serde_json::from_slice(body).unwrap_or_else(|_| reg.clone());
        let scope = authorize::Scope::of(&as_sent);
        let grant = self
            .cfg
            .authorization
            .check(ticket, &scope, authorize::now())
            .map_err(|e| {
                self.metrics.ticket_refused(e.label());
                (
                    http::StatusCode::FORBIDDEN,
                    tls_steal_crds::session::ApiError {
                        error: e.to_string(),
                        field: Some("ticket".into()),
                        captured_ports: Vec::new(),
                    },
                )
            })?;
        let session = Session::new(
            self.next_session_id(),
            reg,
            filter,
            grant,
            self.cfg.clone(),
            self.metrics.clone(),
        );
        self.registry.insert(session.clone());
        self.metrics.session_started();
        Ok(session)
    }

    /// As [`Sessions::register_json`], without a ticket.
    pub fn register(
        &self,
        reg: &tls_steal_crds::session::Registration,
    ) -> Result<Arc<Session>, tls_steal_crds::session::ApiError> {
        self.register_json(&serde_json::to_vec(reg).unwrap_or_default(), None)
            .map_err(|(_, e)| e)
    }

    /// The proxy's shared state, if it is running.
    pub(crate) fn proxy(&self) -> Option<Arc<Shared>> {
        self.proxy.get().and_then(Weak::upgrade)
    }

    /// Binds the session API on `shared.cfg.session_api` (if set) and serves it until the proxy
    /// shuts down. Returns the bound address (`None` when unset or when it cannot be bound: the
    /// proxy then serves without sessions, and the error is logged).
    pub(crate) fn attach(&self, shared: &Arc<Shared>) -> std::io::Result<Option<SocketAddr>> {
        let _ = self.proxy.set(Arc::downgrade(shared));
        let Some(addr) = shared.cfg.session_api else {
            return Ok(None);
        };
        let Some(sessions) = self.me.upgrade() else {
            return Ok(None);
        };
        // The data path never depends on the session API: if it cannot listen, the proxy
        // serves on (forwarding everything) and says why.
        let listener = match bind(addr) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for sessions; serving without the session API (nothing can be stolen)");
                return Ok(None);
            }
        };
        let bound = listener.local_addr()?;
        let shutdown = shared.shutdown.clone();
        tokio::spawn(async move {
            // On shutdown no new session registers; the existing ones keep serving the
            // requests still draining, and end with the process.
            tokio::select! {
                _ = api::serve(listener, sessions) => {}
                _ = shutdown.wait() => {}
            }
        });
        tracing::info!(addr = %bound, "session API listening");
        Ok(Some(bound))
    }
}

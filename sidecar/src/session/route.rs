//! The per-request decision over the active sessions ([`Router`] for [`Sessions`]); sessions
//! are the proxy's [`Taker`]s (steal) and [`Mirror`]s.
//!
//! For a request on port P: when a session of P filters on bodies there, the body is read first
//! ([`Route::ReadBody`], then [`Router::route_with_body`]). The sessions of P,
//! earliest-registered first, are asked in turn (a session whose filter does not apply on P,
//! per its `filter_ports`, takes P whole); the first whose filter matches takes it ([`Route::Steal`], or [`Route::Mirror`] for a mirror
//! session); every later session whose filter also matches is told
//! ([`Event::LostToEarlierSession`], fire-and-forget). No match → [`Route::Forward`]. A steal
//! session with too many requests waiting for its answers is stuck: it is closed and skipped,
//! so the request goes to the next match or to the app.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::Request;
use tls_steal_crds::filter::MatchNotes;
use tls_steal_crds::session::{Event, Mode};
use tracing::warn;

use super::Sessions;
use super::conn::Session;
use super::metrics::{Routed, SessionError};
use super::view::PartsView;
use crate::proxy::BodyRead;
use crate::proxy::ProxyBody;
use crate::proxy::Shared;
use crate::proxy::{ConnInfo, Delivery, Mirror, Mirrored, Route, Router, Stolen, Taker};

impl Taker for Session {
    fn id(&self) -> u64 {
        self.id
    }

    fn take<'a>(
        &'a self,
        request_id: u64,
        req: Request<ProxyBody>,
        conn: &'a ConnInfo,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send + 'a>> {
        Box::pin(self.steal(request_id, req, conn))
    }
}

impl Mirror for Session {
    fn id(&self) -> u64 {
        self.id
    }

    fn tee(
        self: Arc<Self>,
        request_id: u64,
        req: Request<ProxyBody>,
        conn: &ConnInfo,
    ) -> Request<ProxyBody> {
        self.mirror(request_id, req, conn)
    }
}

impl Sessions {
    /// The routing decision (see the module documentation). `body`: the request's body as read
    /// for body filters; without it, a port where a session filters on bodies gives
    /// [`Route::ReadBody`].
    pub fn decide(
        &self,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        body: Option<&BodyRead>,
    ) -> Route {
        let snapshot = self.registry.snapshot();
        let Some(port) = snapshot.port(conn.port) else {
            self.metrics.routed(conn.port, Routed::Forwarded);
            return Route::Forward;
        };
        if port.needs_body && body.is_none() {
            return Route::ReadBody;
        }
        if let Some(why) = body.and_then(BodyRead::unusable_reason) {
            self.metrics.body_unusable(conn.port, why);
        }
        let view = PartsView::with_body(parts, body.and_then(BodyRead::json));
        let mut notes = MatchNotes::default();
        let route = self.pick(parts, conn, &port.sessions, &view, &mut notes);
        if notes.regex_limit_hits > 0 {
            self.metrics
                .regex_limit(conn.port, u64::from(notes.regex_limit_hits));
        }
        route
    }

    fn pick(
        &self,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        candidates: &[Arc<Session>],
        view: &PartsView<'_>,
        notes: &mut MatchNotes,
    ) -> Route {
        let mut winner: Option<(&Arc<Session>, u64)> = None;
        for s in candidates {
            if s.is_closing() || !s.matches(view, conn.port, notes) {
                continue;
            }
            match winner {
                None => {
                    if s.mode == Mode::Steal && s.in_flight() >= self.cfg.max_in_flight {
                        warn!(session = s.id, client = %s.client, in_flight = s.in_flight(),
                            "session is not answering; closing it (its requests get 502s, the next ones go to the app)");
                        self.metrics.error(SessionError::Stuck);
                        s.close(&format!(
                            "closed by the sidecar: {} requests were waiting for its answers",
                            s.in_flight()
                        ));
                        continue;
                    }
                    winner = Some((s, self.next_request_id()));
                }
                Some((w, request_id)) => {
                    self.metrics.lost_event(conn.port);
                    s.tell(Event::LostToEarlierSession {
                        request_id,
                        method: parts.method.to_string(),
                        path: parts
                            .uri
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_else(|| "/".into()),
                        winner: w.id,
                    });
                }
            }
        }
        match winner {
            None => {
                self.metrics.routed(conn.port, Routed::Forwarded);
                Route::Forward
            }
            Some((s, request_id)) => {
                let session = s.clone();
                match s.mode {
                    Mode::Steal => {
                        self.metrics.routed(conn.port, Routed::Stolen);
                        Route::Steal(Stolen {
                            taker: session,
                            request_id,
                        })
                    }
                    Mode::Mirror => {
                        self.metrics.routed(conn.port, Routed::Mirrored);
                        Route::Mirror(Mirrored {
                            mirror: session,
                            request_id,
                        })
                    }
                }
            }
        }
    }
}

impl Router for Sessions {
    fn route(&self, request: &http::request::Parts, conn: &ConnInfo) -> Route {
        self.decide(request, conn, None)
    }

    fn route_with_body(
        &self,
        request: &http::request::Parts,
        body: &BodyRead,
        conn: &ConnInfo,
    ) -> Route {
        self.decide(request, conn, Some(body))
    }

    fn attach(&self, shared: &Arc<Shared>) -> std::io::Result<Option<SocketAddr>> {
        Sessions::attach(self, shared)
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }
}

//! Counters of the session layer, registered in the proxy's registry (served at `/metrics`).
//! Per-port handles exist for the plan's ports (known at start) and are resolved once, here:
//! counting touches atomics only.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tls_steal_http::openmetrics::{self, Label};

use crate::proxy::{Labels, per_port, port_label};

/// What the routing step decided for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    Forwarded,
    Stolen,
    Mirrored,
}

impl Routed {
    const LABELS: [&'static str; 3] = ["forwarded", "stolen", "mirrored"];
}

/// Session failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// A registration was refused (bad JSON, bad regex, uncaptured port, …).
    RegistrationRejected,
    /// The session's connection failed (upgrade, HTTP/2 handshake or protocol error).
    ConnectionFailed,
    /// The session stopped answering and was closed (in-flight bound reached, PING timeout).
    Stuck,
    /// A stolen request could not be completed by the session (the client got a 502).
    RequestFailed,
    /// A stolen upgrade (WebSocket) could not be bridged.
    UpgradeFailed,
}

impl SessionError {
    const LABELS: [&'static str; 5] = [
        "registration_rejected",
        "connection_failed",
        "stuck",
        "request_failed",
        "upgrade_failed",
    ];
}

/// Why a registration's ticket was refused (`TicketError::label`).
const TICKET_REASONS: [&str; 9] = [
    "missing",
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "wrong_namespace",
    "wrong_ports",
    "wrong_mode",
    "wrong_filter",
];

/// Why a body gave body filters nothing (each such request counts as "no match").
const BODY_REASONS: [&str; 5] = ["not_json", "empty", "too_large", "timeout", "read_error"];

/// The handles of one port.
struct PortCounters {
    routed: [Counter; 3],
    mirror_dropped: Counter,
    lost_events: Counter,
    regex_limit: Counter,
    body_unusable: [Counter; BODY_REASONS.len()],
}

/// The session layer's metric families and their handles.
pub struct SessionMetrics {
    ports: BTreeMap<u16, PortCounters>,
    active: Gauge,
    registered: Counter,
    errors: [Counter; 5],
    events_dropped: Counter,
    routed_family: Family<Labels<2>, Counter>,
    mirror_dropped_family: Family<Labels<1>, Counter>,
    lost_family: Family<Labels<1>, Counter>,
    regex_limit_family: Family<Labels<1>, Counter>,
    body_unusable_family: Family<Labels<2>, Counter>,
    errors_family: Family<Label, Counter>,
    tickets_refused: [Counter; TICKET_REASONS.len()],
    tickets_refused_family: Family<Label, Counter>,
}

impl SessionMetrics {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        let routed_family = Family::default();
        let mirror_dropped_family = Family::<Labels<1>, Counter>::default();
        let lost_family = Family::<Labels<1>, Counter>::default();
        let regex_limit_family = Family::<Labels<1>, Counter>::default();
        let body_unusable_family = Family::default();
        let ports = ports
            .into_iter()
            .map(|port| {
                let one = [port_label(port)];
                let counters = PortCounters {
                    routed: per_port(&routed_family, port, "route", Routed::LABELS),
                    mirror_dropped: mirror_dropped_family.get_or_create_owned(&one),
                    lost_events: lost_family.get_or_create_owned(&one),
                    regex_limit: regex_limit_family.get_or_create_owned(&one),
                    body_unusable: per_port(&body_unusable_family, port, "reason", BODY_REASONS),
                };
                (port, counters)
            })
            .collect();
        let (errors_family, errors) = openmetrics::counters("kind", SessionError::LABELS);
        let (tickets_refused_family, tickets_refused) =
            openmetrics::counters("reason", TICKET_REASONS);
        SessionMetrics {
            ports,
            active: Gauge::default(),
            registered: Counter::default(),
            errors,
            events_dropped: Counter::default(),
            routed_family,
            mirror_dropped_family,
            lost_family,
            regex_limit_family,
            body_unusable_family,
            errors_family,
            tickets_refused,
            tickets_refused_family,
        }
    }

    /// A registration's ticket was refused (`reason`: a label of [`TICKET_REASONS`]).
    pub fn ticket_refused(&self, reason: &str) {
        if let Some(i) = TICKET_REASONS.iter().position(|r| *r == reason) {
            self.tickets_refused[i].inc();
        }
    }

    pub fn routed(&self, port: u16, r: Routed) {
        if let Some(p) = self.ports.get(&port) {
            p.routed[r as usize].inc();
        }
    }

    pub fn mirror_dropped(&self, port: u16) {
        if let Some(p) = self.ports.get(&port) {
            p.mirror_dropped.inc();
        }
    }

    pub fn lost_event(&self, port: u16) {
        if let Some(p) = self.ports.get(&port) {
            p.lost_events.inc();
        }
    }

    /// `n` regex evaluations on `port` hit the backtracking limit (each counted as no match).
    pub fn regex_limit(&self, port: u16, n: u64) {
        if let Some(p) = self.ports.get(&port) {
            p.regex_limit.inc_by(n);
        }
    }

    /// A body read for body filters on `port` gave them nothing (`reason`: a label of
    /// [`BODY_REASONS`]).
    pub fn body_unusable(&self, port: u16, reason: &str) {
        let i = BODY_REASONS.iter().position(|r| *r == reason);
        if let (Some(p), Some(i)) = (self.ports.get(&port), i) {
            p.body_unusable[i].inc();
        }
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn session_started(&self) {
        self.registered.inc();
        self.active.inc();
    }

    pub fn session_ended(&self) {
        self.active.dec();
    }

    pub fn error(&self, e: SessionError) {
        self.errors[e as usize].inc();
    }

    /// Adds the families to `registry` (the proxy's, served at `/metrics`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_steal_sessions_active",
            "Sessions currently registered",
            self.active.clone(),
        );
        registry.register(
            "tls_steal_sessions_registered",
            "Sessions registered since start",
            self.registered.clone(),
        );
        registry.register(
            "tls_steal_session_routed_requests",
            "Requests by port and routing decision (forwarded to the app, stolen, mirrored)",
            self.routed_family.clone(),
        );
        registry.register(
            "tls_steal_session_mirror_dropped",
            "Mirror copies dropped because the session lagged, by port",
            self.mirror_dropped_family.clone(),
        );
        registry.register(
            "tls_steal_session_lost",
            "Matches a session lost to an earlier-registered session, by port",
            self.lost_family.clone(),
        );
        registry.register(
            "tls_steal_session_filter_regex_limit",
            "Filter regex evaluations that hit the backtracking limit (each counted as no match), by port",
            self.regex_limit_family.clone(),
        );
        registry.register(
            "tls_steal_session_body_unusable",
            "Request bodies read for body filters that gave them nothing (counted as no match), by port and reason",
            self.body_unusable_family.clone(),
        );
        registry.register(
            "tls_steal_session_errors",
            "Session failures, by kind",
            self.errors_family.clone(),
        );
        registry.register(
            "tls_steal_session_tickets_refused",
            "Registrations refused because their ticket did not authorize them, by reason",
            self.tickets_refused_family.clone(),
        );
        registry.register(
            "tls_steal_session_events_dropped",
            "Events not delivered because a session's event queue was full",
            self.events_dropped.clone(),
        );
    }

    /// These metrics alone, appended to `o` (tests).
    #[cfg(test)]
    pub fn render(&self, o: &mut String) {
        let mut r = Registry::default();
        self.register(&mut r);
        o.push_str(&openmetrics::encode(&r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let m = SessionMetrics::new([443, 8443]);
        m.routed(443, Routed::Stolen);
        m.routed(9999, Routed::Stolen);
        m.session_started();
        m.error(SessionError::Stuck);
        let mut t = String::new();
        m.render(&mut t);
        assert!(
            t.contains("tls_steal_session_routed_requests_total{port=\"443\",route=\"stolen\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("tls_steal_session_routed_requests_total{port=\"8443\",route=\"stolen\"} 0")
        );
        assert!(t.contains("tls_steal_sessions_active 1"));
        assert!(t.contains("tls_steal_session_errors_total{kind=\"stuck\"} 1"));
        m.regex_limit(443, 2);
        m.body_unusable(8443, "too_large");
        m.body_unusable(8443, "no such reason");
        m.ticket_refused("expired");
        let mut t = String::new();
        m.render(&mut t);
        assert!(
            t.contains("tls_steal_session_filter_regex_limit_total{port=\"443\"} 2"),
            "{t}"
        );
        assert!(t.contains(
            "tls_steal_session_body_unusable_total{port=\"8443\",reason=\"too_large\"} 1"
        ));
        assert!(
            t.contains("tls_steal_session_body_unusable_total{port=\"443\",reason=\"not_json\"} 0")
        );
        assert!(t.contains("tls_steal_session_tickets_refused_total{reason=\"expired\"} 1"));
    }
}

//! Counters of the session layer, rendered as Prometheus text lines appended to the proxy's
//! `/metrics`. Per-port counters exist for the plan's ports (known at start); everything is a
//! plain atomic.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// What the routing step decided for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    Forwarded,
    Stolen,
    Mirrored,
}

impl Routed {
    const ALL: [Routed; 3] = [Routed::Forwarded, Routed::Stolen, Routed::Mirrored];
    fn label(self) -> &'static str {
        match self {
            Routed::Forwarded => "forwarded",
            Routed::Stolen => "stolen",
            Routed::Mirrored => "mirrored",
        }
    }
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
    const ALL: [SessionError; 5] = [
        SessionError::RegistrationRejected,
        SessionError::ConnectionFailed,
        SessionError::Stuck,
        SessionError::RequestFailed,
        SessionError::UpgradeFailed,
    ];
    fn label(self) -> &'static str {
        match self {
            SessionError::RegistrationRejected => "registration_rejected",
            SessionError::ConnectionFailed => "connection_failed",
            SessionError::Stuck => "stuck",
            SessionError::RequestFailed => "request_failed",
            SessionError::UpgradeFailed => "upgrade_failed",
        }
    }
}

/// Why a body gave body filters nothing (each such request counts as "no match").
const BODY_REASONS: [&str; 5] = ["not_json", "empty", "too_large", "timeout", "read_error"];

#[derive(Default)]
struct PortCounters {
    routed: [AtomicU64; 3],
    mirror_dropped: AtomicU64,
    lost_events: AtomicU64,
    regex_limit: AtomicU64,
    body_unusable: [AtomicU64; BODY_REASONS.len()],
}

/// The session layer's counters.
pub struct SessionMetrics {
    ports: BTreeMap<u16, PortCounters>,
    active: AtomicI64,
    registered: AtomicU64,
    errors: [AtomicU64; 5],
    events_dropped: AtomicU64,
}

impl SessionMetrics {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        SessionMetrics {
            ports: ports
                .into_iter()
                .map(|p| (p, PortCounters::default()))
                .collect(),
            active: AtomicI64::new(0),
            registered: AtomicU64::new(0),
            errors: Default::default(),
            events_dropped: AtomicU64::new(0),
        }
    }

    pub fn routed(&self, port: u16, r: Routed) {
        if let Some(p) = self.ports.get(&port) {
            p.routed[r as usize].fetch_add(1, Relaxed);
        }
    }

    pub fn routed_count(&self, port: u16, r: Routed) -> u64 {
        self.ports
            .get(&port)
            .map_or(0, |p| p.routed[r as usize].load(Relaxed))
    }

    pub fn mirror_dropped(&self, port: u16) {
        if let Some(p) = self.ports.get(&port) {
            p.mirror_dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn lost_event(&self, port: u16) {
        if let Some(p) = self.ports.get(&port) {
            p.lost_events.fetch_add(1, Relaxed);
        }
    }

    /// `n` regex evaluations on `port` hit the backtracking limit (each counted as no match).
    pub fn regex_limit(&self, port: u16, n: u64) {
        if let Some(p) = self.ports.get(&port) {
            p.regex_limit.fetch_add(n, Relaxed);
        }
    }

    pub fn regex_limit_count(&self, port: u16) -> u64 {
        self.ports
            .get(&port)
            .map_or(0, |p| p.regex_limit.load(Relaxed))
    }

    /// A body read for body filters on `port` gave them nothing (`reason`: a label of
    /// [`BODY_REASONS`]).
    pub fn body_unusable(&self, port: u16, reason: &str) {
        let i = BODY_REASONS.iter().position(|r| *r == reason);
        if let (Some(p), Some(i)) = (self.ports.get(&port), i) {
            p.body_unusable[i].fetch_add(1, Relaxed);
        }
    }

    pub fn body_unusable_count(&self, port: u16, reason: &str) -> u64 {
        let i = BODY_REASONS.iter().position(|r| *r == reason);
        match (self.ports.get(&port), i) {
            (Some(p), Some(i)) => p.body_unusable[i].load(Relaxed),
            _ => 0,
        }
    }

    pub fn event_dropped(&self) {
        self.events_dropped.fetch_add(1, Relaxed);
    }

    pub fn session_started(&self) {
        self.registered.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    pub fn session_ended(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    pub fn error(&self, e: SessionError) {
        self.errors[e as usize].fetch_add(1, Relaxed);
    }

    pub fn error_count(&self, e: SessionError) -> u64 {
        self.errors[e as usize].load(Relaxed)
    }

    /// Appends the Prometheus text exposition of these counters to `o`.
    pub fn render(&self, o: &mut String) {
        let head = |o: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            o,
            "tls_steal_sessions_active",
            "Sessions currently registered.",
            "gauge",
        );
        let _ = writeln!(o, "tls_steal_sessions_active {}", self.active.load(Relaxed));
        head(
            o,
            "tls_steal_sessions_registered_total",
            "Sessions registered since start.",
            "counter",
        );
        let _ = writeln!(
            o,
            "tls_steal_sessions_registered_total {}",
            self.registered.load(Relaxed)
        );
        head(
            o,
            "tls_steal_session_routed_requests_total",
            "Requests by port and routing decision (forwarded to the app, stolen, mirrored).",
            "counter",
        );
        for (port, c) in &self.ports {
            for r in Routed::ALL {
                let v = c.routed[r as usize].load(Relaxed);
                let _ = writeln!(
                    o,
                    "tls_steal_session_routed_requests_total{{port=\"{port}\",route=\"{}\"}} {v}",
                    r.label()
                );
            }
        }
        head(
            o,
            "tls_steal_session_mirror_dropped_total",
            "Mirror copies dropped because the session lagged, by port.",
            "counter",
        );
        for (port, c) in &self.ports {
            let v = c.mirror_dropped.load(Relaxed);
            let _ = writeln!(
                o,
                "tls_steal_session_mirror_dropped_total{{port=\"{port}\"}} {v}"
            );
        }
        head(
            o,
            "tls_steal_session_lost_total",
            "Matches a session lost to an earlier-registered session, by port.",
            "counter",
        );
        for (port, c) in &self.ports {
            let v = c.lost_events.load(Relaxed);
            let _ = writeln!(o, "tls_steal_session_lost_total{{port=\"{port}\"}} {v}");
        }
        head(
            o,
            "tls_steal_session_filter_regex_limit_total",
            "Filter regex evaluations that hit the backtracking limit (each counted as no match), by port.",
            "counter",
        );
        for (port, c) in &self.ports {
            let v = c.regex_limit.load(Relaxed);
            let _ = writeln!(
                o,
                "tls_steal_session_filter_regex_limit_total{{port=\"{port}\"}} {v}"
            );
        }
        head(
            o,
            "tls_steal_session_body_unusable_total",
            "Request bodies read for body filters that gave them nothing (counted as no match), by port and reason.",
            "counter",
        );
        for (port, c) in &self.ports {
            for (i, reason) in BODY_REASONS.iter().enumerate() {
                let v = c.body_unusable[i].load(Relaxed);
                let _ = writeln!(
                    o,
                    "tls_steal_session_body_unusable_total{{port=\"{port}\",reason=\"{reason}\"}} {v}"
                );
            }
        }
        head(
            o,
            "tls_steal_session_errors_total",
            "Session failures, by kind.",
            "counter",
        );
        for e in SessionError::ALL {
            let v = self.errors[e as usize].load(Relaxed);
            let _ = writeln!(
                o,
                "tls_steal_session_errors_total{{kind=\"{}\"}} {v}",
                e.label()
            );
        }
        head(
            o,
            "tls_steal_session_events_dropped_total",
            "Events not delivered because a session's event queue was full.",
            "counter",
        );
        let _ = writeln!(
            o,
            "tls_steal_session_events_dropped_total {}",
            self.events_dropped.load(Relaxed)
        );
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
    }
}

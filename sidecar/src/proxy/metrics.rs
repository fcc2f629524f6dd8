//! Counters exposed at `/metrics` in the Prometheus text format, hand-written: the label sets
//! are small and known at start-up (ports of the plan, fixed outcome and reason sets), so every
//! counter is a plain atomic and the data path never takes a lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The application answered (any status).
    Forwarded,
    /// The application could not be reached or broke the exchange: the client got a 502.
    UpstreamError,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Outcome::Forwarded, Outcome::UpstreamError];
    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

/// Why a TLS handshake with a client failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    Timeout,
    /// Not TLS at all, or a corrupt record.
    NotTls,
    NoClientCert,
    BadClientCert,
    NoAlpnOverlap,
    /// The client went away or aborted (e.g. it refused our certificate).
    ClientAborted,
    Other,
}

impl HandshakeFailure {
    const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::NotTls,
        HandshakeFailure::NoClientCert,
        HandshakeFailure::BadClientCert,
        HandshakeFailure::NoAlpnOverlap,
        HandshakeFailure::ClientAborted,
        HandshakeFailure::Other,
    ];
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::NoClientCert => "no_client_cert",
            HandshakeFailure::BadClientCert => "bad_client_cert",
            HandshakeFailure::NoAlpnOverlap => "no_alpn_overlap",
            HandshakeFailure::ClientAborted => "client_aborted",
            HandshakeFailure::Other => "other",
        }
    }

    /// Classifies an error of `TlsAcceptor::accept`.
    pub fn classify(e: &std::io::Error) -> Self {
        use rustls::Error as E;
        match e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
            Some(E::NoCertificatesPresented) => HandshakeFailure::NoClientCert,
            Some(E::InvalidCertificate(_)) => HandshakeFailure::BadClientCert,
            Some(E::NoApplicationProtocol) => HandshakeFailure::NoAlpnOverlap,
            Some(
                E::InvalidMessage(_)
                | E::InappropriateHandshakeMessage { .. }
                | E::InappropriateMessage { .. },
            ) => HandshakeFailure::NotTls,
            Some(E::AlertReceived(_)) => HandshakeFailure::ClientAborted,
            Some(_) => HandshakeFailure::Other,
            None => match e.kind() {
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                    HandshakeFailure::ClientAborted
                }
                std::io::ErrorKind::InvalidData => HandshakeFailure::NotTls,
                _ => HandshakeFailure::Other,
            },
        }
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The counters of one port.
#[derive(Default)]
pub struct PortMetrics {
    requests: [AtomicU64; 2],
    handshake_failures: [AtomicU64; 7],
    latency: Histogram,
    connections_tls: AtomicU64,
    connections_passthrough: AtomicU64,
    connections_opaque: AtomicU64,
    upstream_connects: AtomicU64,
    upstream_connect_failures: AtomicU64,
    upstream_open: AtomicI64,
    upstream_pools: AtomicI64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Client connections open now (counted against `--max-connections`).
    client_open: AtomicUsize,
    connections_refused: AtomicU64,
    /// The port is relayed untouched (its TLS material is unusable).
    passthrough: AtomicBool,
}

/// A client connection counted against its port's limit, for as long as it lives.
pub struct ClientSlot<'a>(&'a AtomicUsize);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// How a connection was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// TLS terminated, HTTP served.
    Tls,
    /// Relayed untouched (no usable TLS material, or port not in the plan).
    Passthrough,
    /// TLS terminated, not HTTP: bytes relayed over a new TLS connection.
    Opaque,
}

impl PortMetrics {
    pub fn request(&self, outcome: Outcome, latency: Duration) {
        self.requests[outcome as usize].fetch_add(1, Relaxed);
        let h = &self.latency;
        let secs = latency.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i].fetch_add(1, Relaxed);
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_micros.fetch_add(latency.as_micros() as u64, Relaxed);
    }

    pub fn handshake_failure(&self, why: HandshakeFailure) {
        self.handshake_failures[why as usize].fetch_add(1, Relaxed);
    }

    pub fn connection(&self, kind: ConnKind) {
        match kind {
            ConnKind::Tls => &self.connections_tls,
            ConnKind::Passthrough => &self.connections_passthrough,
            ConnKind::Opaque => &self.connections_opaque,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn upstream_connect(&self, ok: bool) {
        if ok {
            &self.upstream_connects
        } else {
            &self.upstream_connect_failures
        }
        .fetch_add(1, Relaxed);
    }

    /// An upstream connection opened (`+1`) or closed (`-1`).
    pub fn upstream_open(&self, delta: i64) {
        self.upstream_open.fetch_add(delta, Relaxed);
    }

    /// An upstream pool (one per SNI/ALPN key) created (`+1`) or dropped (`-1`).
    pub fn upstream_pools(&self, delta: i64) {
        self.upstream_pools.fetch_add(delta, Relaxed);
    }

    /// Counts a new client connection; when `max` are open already it is counted as refused
    /// instead, and the refusals so far are returned.
    pub fn client_connection(&self, max: usize) -> Result<ClientSlot<'_>, u64> {
        let open = self.client_open.fetch_add(1, Relaxed);
        if open >= max {
            self.client_open.fetch_sub(1, Relaxed);
            return Err(self.connections_refused.fetch_add(1, Relaxed) + 1);
        }
        Ok(ClientSlot(&self.client_open))
    }

    /// Whether the port is relayed untouched, for `tls_steal_port_passthrough`.
    pub fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on, Relaxed);
    }

    pub fn reload(&self, ok: bool) {
        if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        }
        .fetch_add(1, Relaxed);
    }
}

/// Every port's counters. Port `0` collects connections to ports absent from the plan.
pub struct Metrics {
    ports: BTreeMap<u16, PortMetrics>,
}

impl Metrics {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut map: BTreeMap<u16, PortMetrics> = ports
            .into_iter()
            .map(|p| (p, PortMetrics::default()))
            .collect();
        map.entry(0).or_default();
        Metrics { ports: map }
    }

    /// The counters of `port` (those of port `0` for an unknown port).
    pub fn port(&self, port: u16) -> &PortMetrics {
        self.ports.get(&port).unwrap_or_else(|| &self.ports[&0])
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let counter = |o: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        counter(
            &mut o,
            "tls_steal_requests_total",
            "HTTP requests handled, by port and outcome.",
            "counter",
        );
        for (port, m) in &self.ports {
            for oc in Outcome::ALL {
                let v = m.requests[oc as usize].load(Relaxed);
                let _ = writeln!(
                    o,
                    "tls_steal_requests_total{{port=\"{port}\",outcome=\"{}\"}} {v}",
                    oc.label()
                );
            }
        }
        counter(
            &mut o,
            "tls_steal_tls_handshake_failures_total",
            "Failed client TLS handshakes, by port and reason.",
            "counter",
        );
        for (port, m) in &self.ports {
            for r in HandshakeFailure::ALL {
                let v = m.handshake_failures[r as usize].load(Relaxed);
                let _ = writeln!(
                    o,
                    "tls_steal_tls_handshake_failures_total{{port=\"{port}\",reason=\"{}\"}} {v}",
                    r.label()
                );
            }
        }
        counter(
            &mut o,
            "tls_steal_connections_total",
            "Accepted client connections, by port and handling.",
            "counter",
        );
        for (port, m) in &self.ports {
            for (kind, v) in [
                ("tls", &m.connections_tls),
                ("passthrough", &m.connections_passthrough),
                ("opaque", &m.connections_opaque),
            ] {
                let _ = writeln!(
                    o,
                    "tls_steal_connections_total{{port=\"{port}\",kind=\"{kind}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }
        counter(
            &mut o,
            "tls_steal_upstream_connects_total",
            "TLS connections opened to the application, by result.",
            "counter",
        );
        for (port, m) in &self.ports {
            let _ = writeln!(
                o,
                "tls_steal_upstream_connects_total{{port=\"{port}\",result=\"ok\"}} {}",
                m.upstream_connects.load(Relaxed)
            );
            let _ = writeln!(
                o,
                "tls_steal_upstream_connects_total{{port=\"{port}\",result=\"error\"}} {}",
                m.upstream_connect_failures.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "tls_steal_upstream_connections",
            "Open pooled TLS connections to the application.",
            "gauge",
        );
        for (port, m) in &self.ports {
            let _ = writeln!(
                o,
                "tls_steal_upstream_connections{{port=\"{port}\"}} {}",
                m.upstream_open.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "tls_steal_upstream_pools",
            "Upstream connection pools (one per SNI and ALPN).",
            "gauge",
        );
        for (port, m) in &self.ports {
            let _ = writeln!(
                o,
                "tls_steal_upstream_pools{{port=\"{port}\"}} {}",
                m.upstream_pools.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "tls_steal_cert_reloads_total",
            "Reloads of a port's TLS material, by result.",
            "counter",
        );
        for (port, m) in &self.ports {
            let _ = writeln!(
                o,
                "tls_steal_cert_reloads_total{{port=\"{port}\",result=\"ok\"}} {}",
                m.reloads_ok.load(Relaxed)
            );
            let _ = writeln!(
                o,
                "tls_steal_cert_reloads_total{{port=\"{port}\",result=\"error\"}} {}",
                m.reloads_failed.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "tls_steal_port_passthrough",
            "1 while a captured port is relayed untouched (its TLS material is unusable; see /readyz).",
            "gauge",
        );
        for (port, m) in self.ports.iter().filter(|(p, _)| **p != 0) {
            let _ = writeln!(
                o,
                "tls_steal_port_passthrough{{port=\"{port}\"}} {}",
                u8::from(m.passthrough.load(Relaxed))
            );
        }
        counter(
            &mut o,
            "tls_steal_client_connections",
            "Open client connections, by port.",
            "gauge",
        );
        for (port, m) in &self.ports {
            let _ = writeln!(
                o,
                "tls_steal_client_connections{{port=\"{port}\"}} {}",
                m.client_open.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "tls_steal_connections_refused_total",
            "Client connections closed right after accept because the port had --max-connections open.",
            "counter",
        );
        for (port, m) in &self.ports {
            let _ = writeln!(
                o,
                "tls_steal_connections_refused_total{{port=\"{port}\"}} {}",
                m.connections_refused.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "tls_steal_request_duration_seconds",
            "Time from request head to response head.",
            "histogram",
        );
        for (port, m) in &self.ports {
            let h = &m.latency;
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += h.buckets[i].load(Relaxed);
                let _ = writeln!(
                    o,
                    "tls_steal_request_duration_seconds_bucket{{port=\"{port}\",le=\"{b}\"}} {cum}"
                );
            }
            let count = h.count.load(Relaxed);
            let _ = writeln!(
                o,
                "tls_steal_request_duration_seconds_bucket{{port=\"{port}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                o,
                "tls_steal_request_duration_seconds_sum{{port=\"{port}\"}} {}",
                h.sum_micros.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "tls_steal_request_duration_seconds_count{{port=\"{port}\"}} {count}"
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new([443]);
        m.port(443)
            .request(Outcome::Forwarded, Duration::from_millis(3));
        m.port(443)
            .handshake_failure(HandshakeFailure::NoClientCert);
        m.port(9).connection(ConnKind::Passthrough);
        let t = m.render();
        assert!(
            t.contains("tls_steal_requests_total{port=\"443\",outcome=\"forwarded\"} 1"),
            "{t}"
        );
        assert!(t.contains("reason=\"no_client_cert\"} 1"));
        assert!(t.contains("tls_steal_connections_total{port=\"0\",kind=\"passthrough\"} 1"));
        assert!(
            t.contains("tls_steal_request_duration_seconds_bucket{port=\"443\",le=\"0.005\"} 1")
        );
        assert!(
            t.contains("tls_steal_request_duration_seconds_bucket{port=\"443\",le=\"0.0025\"} 0")
        );
    }

    #[test]
    fn connection_limit_and_passthrough_gauge() {
        let m = Metrics::new([443]);
        let p = m.port(443);
        let a = p.client_connection(2).unwrap();
        let _b = p.client_connection(2).unwrap();
        assert_eq!(p.client_connection(2).err(), Some(1));
        drop(a);
        let _c = p.client_connection(2).expect("a slot is free again");
        p.set_passthrough(true);
        let t = m.render();
        for needle in [
            "tls_steal_connections_refused_total{port=\"443\"} 1",
            "tls_steal_client_connections{port=\"443\"} 2",
            "tls_steal_port_passthrough{port=\"443\"} 1",
            "# TYPE tls_steal_port_passthrough gauge",
        ] {
            assert!(t.contains(needle), "missing {needle}\n{t}");
        }
        assert!(!t.contains("tls_steal_port_passthrough{port=\"0\"}"), "{t}");
    }
}

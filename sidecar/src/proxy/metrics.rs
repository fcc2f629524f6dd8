//! The proxy's counters, exposed at `/metrics` through prometheus-client (the registry is the
//! proxy's own, in [`super::Shared`]). The label sets are small and known at start-up (the plan's
//! ports, fixed outcome and reason sets), so every handle is resolved once, here, and the data
//! path only touches atomics: no lock, no allocation.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tls_steal_http::openmetrics::DurationHistogram;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The application answered (any status).
    Forwarded,
    /// The application could not be reached or broke the exchange: the client got a 502.
    UpstreamError,
}

impl Outcome {
    const LABELS: [&'static str; 2] = ["forwarded", "upstream_error"];
}

/// Why a TLS handshake with a client failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    Timeout,
    /// Not TLS at all, or a corrupt record.
    NotTls,
    /// TLS only the app can serve (TLS 1.0/1.1, no suite in common): relayed to it.
    Legacy,
    NoClientCert,
    BadClientCert,
    NoAlpnOverlap,
    /// The client went away or aborted (e.g. it refused our certificate).
    ClientAborted,
    Other,
}

impl HandshakeFailure {
    const ALL: [HandshakeFailure; 8] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::NotTls,
        HandshakeFailure::Legacy,
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
            HandshakeFailure::Legacy => "legacy_tls",
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
static BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A label set: the port, then the family's own labels.
pub(crate) type Labels<const N: usize> = [(&'static str, Cow<'static, str>); N];

/// `port` as a label value.
pub(crate) fn port_label(port: u16) -> (&'static str, Cow<'static, str>) {
    ("port", Cow::Owned(port.to_string()))
}

/// The per-port handles of a family labelled by port and one more label, in `values` order.
pub(crate) fn per_port<const N: usize>(
    family: &Family<Labels<2>, Counter>,
    port: u16,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    values.map(|v| family.get_or_create_owned(&[port_label(port), (label, Cow::Borrowed(v))]))
}

/// The handles of one port.
pub struct PortMetrics {
    requests: [Counter; 2],
    handshake_failures: [Counter; 8],
    latency: DurationHistogram,
    /// tls, passthrough, opaque.
    connections: [Counter; 3],
    /// ok, error.
    upstream_connects: [Counter; 2],
    upstream_open: Gauge,
    upstream_pools: Gauge,
    /// ok, error.
    reloads: [Counter; 2],
    /// Client connections open now (counted against `--max-connections`).
    client_open: Gauge,
    /// HTTP/1.1 client connections parked now (idle, holding no HTTP buffers).
    client_parked: Gauge,
    connections_refused: Counter,
    /// 1 while the port is relayed untouched (its TLS material is unusable); `None` on port 0.
    passthrough: Option<Gauge>,
}

/// A client connection counted in a gauge (open, parked) for as long as it is held.
pub struct ClientSlot<'a>(&'a Gauge);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How a connection was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// TLS terminated, HTTP served.
    Tls,
    /// Relayed untouched (no usable TLS material, port not in the plan, or a client that does
    /// not speak TLS or speaks a TLS only the app can serve).
    Passthrough,
    /// TLS terminated, not HTTP: bytes relayed over a new TLS connection.
    Opaque,
}

impl PortMetrics {
    pub fn request(&self, outcome: Outcome, latency: Duration) {
        self.requests[outcome as usize].inc();
        self.latency.observe(latency);
    }

    pub fn handshake_failure(&self, why: HandshakeFailure) {
        self.handshake_failures[why as usize].inc();
    }

    pub fn connection(&self, kind: ConnKind) {
        self.connections[kind as usize].inc();
    }

    pub fn upstream_connect(&self, ok: bool) {
        self.upstream_connects[usize::from(!ok)].inc();
    }

    /// An upstream connection opened (`+1`) or closed (`-1`).
    pub fn upstream_open(&self, delta: i64) {
        self.upstream_open.inc_by(delta);
    }

    /// An upstream pool (one per SNI/ALPN key) created (`+1`) or dropped (`-1`).
    pub fn upstream_pools(&self, delta: i64) {
        self.upstream_pools.inc_by(delta);
    }

    /// Counts a new client connection; when `max` are open already it is counted as refused
    /// instead, and the refusals so far are returned.
    pub fn client_connection(&self, max: usize) -> Result<ClientSlot<'_>, u64> {
        let open = self.client_open.inc();
        if open >= max as i64 {
            self.client_open.dec();
            return Err(self.connections_refused.inc() + 1);
        }
        Ok(ClientSlot(&self.client_open))
    }

    /// Counts a parked client connection until the slot is dropped.
    pub fn parked(&self) -> ClientSlot<'_> {
        self.client_parked.inc();
        ClientSlot(&self.client_parked)
    }

    /// Whether the port is relayed untouched, for `tls_steal_port_passthrough`.
    pub fn set_passthrough(&self, on: bool) {
        if let Some(g) = &self.passthrough {
            g.set(i64::from(on));
        }
    }

    pub fn reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
    }
}

/// The proxy's metric families, and every port's handles into them. Port `0` collects
/// connections to ports absent from the plan.
pub struct Metrics {
    ports: BTreeMap<u16, PortMetrics>,
    requests: Family<Labels<2>, Counter>,
    handshake_failures: Family<Labels<2>, Counter>,
    connections: Family<Labels<2>, Counter>,
    upstream_connects: Family<Labels<2>, Counter>,
    upstream_open: Family<Labels<1>, Gauge>,
    upstream_pools: Family<Labels<1>, Gauge>,
    reloads: Family<Labels<2>, Counter>,
    passthrough: Family<Labels<1>, Gauge>,
    client_open: Family<Labels<1>, Gauge>,
    client_parked: Family<Labels<1>, Gauge>,
    connections_refused: Family<Labels<1>, Counter>,
    latency: Family<Labels<1>, DurationHistogram, fn() -> DurationHistogram>,
}

fn latency_histogram() -> DurationHistogram {
    DurationHistogram::new(&BUCKETS)
}

impl Metrics {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut m = Metrics {
            ports: BTreeMap::new(),
            requests: Family::default(),
            handshake_failures: Family::default(),
            connections: Family::default(),
            upstream_connects: Family::default(),
            upstream_open: Family::default(),
            upstream_pools: Family::default(),
            reloads: Family::default(),
            passthrough: Family::default(),
            client_open: Family::default(),
            client_parked: Family::default(),
            connections_refused: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        for port in std::iter::once(0).chain(ports) {
            if !m.ports.contains_key(&port) {
                let p = m.port_handles(port);
                m.ports.insert(port, p);
            }
        }
        m
    }

    fn port_handles(&self, port: u16) -> PortMetrics {
        let one = || [port_label(port)];
        PortMetrics {
            requests: per_port(&self.requests, port, "outcome", Outcome::LABELS),
            handshake_failures: per_port(
                &self.handshake_failures,
                port,
                "reason",
                HandshakeFailure::ALL.map(HandshakeFailure::label),
            ),
            latency: self.latency.get_or_create_owned(&one()),
            connections: per_port(
                &self.connections,
                port,
                "kind",
                ["tls", "passthrough", "opaque"],
            ),
            upstream_connects: per_port(&self.upstream_connects, port, "result", ["ok", "error"]),
            upstream_open: self.upstream_open.get_or_create_owned(&one()),
            upstream_pools: self.upstream_pools.get_or_create_owned(&one()),
            reloads: per_port(&self.reloads, port, "result", ["ok", "error"]),
            client_open: self.client_open.get_or_create_owned(&one()),
            client_parked: self.client_parked.get_or_create_owned(&one()),
            connections_refused: self.connections_refused.get_or_create_owned(&one()),
            passthrough: (port != 0).then(|| self.passthrough.get_or_create_owned(&one())),
        }
    }

    /// The handles of `port` (those of port `0` for an unknown port).
    pub fn port(&self, port: u16) -> &PortMetrics {
        self.ports.get(&port).unwrap_or_else(|| &self.ports[&0])
    }

    /// Adds the families to `registry` (the proxy's, served at `/metrics`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_steal_requests",
            "HTTP requests handled, by port and outcome",
            self.requests.clone(),
        );
        registry.register(
            "tls_steal_tls_handshake_failures",
            "Failed client TLS handshakes, by port and reason",
            self.handshake_failures.clone(),
        );
        registry.register(
            "tls_steal_connections",
            "Accepted client connections, by port and handling",
            self.connections.clone(),
        );
        registry.register(
            "tls_steal_upstream_connects",
            "TLS connections opened to the application, by result",
            self.upstream_connects.clone(),
        );
        registry.register(
            "tls_steal_upstream_connections",
            "Open pooled TLS connections to the application",
            self.upstream_open.clone(),
        );
        registry.register(
            "tls_steal_upstream_pools",
            "Upstream connection pools (one per SNI and ALPN)",
            self.upstream_pools.clone(),
        );
        registry.register(
            "tls_steal_cert_reloads",
            "Reloads of a port's TLS material, by result",
            self.reloads.clone(),
        );
        registry.register(
            "tls_steal_port_passthrough",
            "1 while a captured port is relayed untouched (its TLS material is unusable; see /readyz)",
            self.passthrough.clone(),
        );
        registry.register(
            "tls_steal_client_connections",
            "Open client connections, by port",
            self.client_open.clone(),
        );
        registry.register(
            "tls_steal_client_connections_parked",
            "HTTP/1.1 client connections idle and parked (holding no HTTP buffers), by port",
            self.client_parked.clone(),
        );
        registry.register(
            "tls_steal_connections_refused",
            "Client connections closed right after accept because the port had --max-connections open",
            self.connections_refused.clone(),
        );
        registry.register(
            "tls_steal_request_duration_seconds",
            "Time from request head to response head",
            self.latency.clone(),
        );
    }

    /// These metrics alone, encoded (tests).
    #[cfg(test)]
    pub fn render(&self) -> String {
        let mut r = Registry::default();
        self.register(&mut r);
        tls_steal_http::openmetrics::encode(&r)
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
            t.contains("tls_steal_request_duration_seconds_bucket{le=\"0.005\",port=\"443\"} 1")
        );
        assert!(
            t.contains("tls_steal_request_duration_seconds_bucket{le=\"0.0025\",port=\"443\"} 0")
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

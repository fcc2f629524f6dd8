//! The state of every captured port: its plan entry and either usable TLS material (served) or
//! the reason it is unusable (relayed untouched, which keeps the pod ready: passthrough still
//! carries the traffic; the reason is in `/readyz`, `tls_steal_port_passthrough`, the session
//! API and one log line per change of state). The current material sits behind an
//! `RwLock<Arc<..>>` held only to clone the `Arc`: a reload swaps it for new handshakes while
//! established connections keep the configuration they started with.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use tls_steal_crds::StealPlan;
use tls_steal_crds::plan::PortPlan;
use tracing::{error, info, warn};

use super::files::FileResolver;
use super::forward::{Forwarder, UpstreamTimeouts};
use super::material::{MaterialError, PortTls, RawMaterial};
use super::metrics::Metrics;

/// Usable material of a port, with its forwarding pools.
pub struct ActivePort {
    pub server: Arc<rustls::ServerConfig>,
    pub forwarder: Forwarder,
}

enum State {
    Active {
        port: Arc<ActivePort>,
        fingerprint: u64,
        reload_error: Option<MaterialError>,
    },
    Failed {
        error: MaterialError,
        fingerprint: u64,
    },
}

/// One captured port.
pub struct PortEntry {
    pub plan: PortPlan,
    state: RwLock<State>,
}

/// What `/readyz` reports about a port.
pub enum PortHealth {
    Ok,
    /// Serving with earlier material; the new files are unusable.
    Stale(MaterialError),
    /// Relayed untouched.
    Passthrough(MaterialError),
}

impl PortEntry {
    /// The current material, `None` when the port is relayed untouched.
    pub fn active(&self) -> Option<Arc<ActivePort>> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Active { port, .. } => Some(port.clone()),
            State::Failed { .. } => None,
        }
    }

    pub fn health(&self) -> PortHealth {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Active {
                reload_error: None, ..
            } => PortHealth::Ok,
            State::Active {
                reload_error: Some(e),
                ..
            } => PortHealth::Stale(e.clone()),
            State::Failed { error, .. } => PortHealth::Passthrough(error.clone()),
        }
    }

    fn fingerprint(&self) -> u64 {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Active { fingerprint, .. } | State::Failed { fingerprint, .. } => *fingerprint,
        }
    }
}

/// Every port of the plan.
pub struct PortTable {
    ports: BTreeMap<u16, PortEntry>,
    files: FileResolver,
    metrics: Arc<Metrics>,
    timeouts: UpstreamTimeouts,
    /// Worker lanes: each port's forwarder keeps pools per lane.
    lanes: usize,
}

fn error_fingerprint(e: &MaterialError) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    e.hash(&mut h);
    h.finish()
}

impl PortTable {
    /// Loads every port's material (blocking file reads), with upstream pools for `lanes`
    /// worker lanes.
    pub fn load(
        plan: &StealPlan,
        files: FileResolver,
        metrics: Arc<Metrics>,
        timeouts: UpstreamTimeouts,
        lanes: usize,
    ) -> Self {
        let mut table = PortTable {
            ports: BTreeMap::new(),
            files,
            metrics,
            timeouts,
            lanes,
        };
        for p in &plan.ports {
            let (state, _) = table.build(p);
            table
                .metrics
                .port(p.port)
                .set_passthrough(matches!(state, State::Failed { .. }));
            match &state {
                State::Active { .. } => {
                    info!(port = p.port, config = %p.config, "TLS material loaded; terminating TLS on this port")
                }
                State::Failed { error, .. } => error!(
                    port = p.port, config = %p.config, file = %error.what, reason = %error.reason,
                    "TLS material unusable; relaying this port untouched (TCP passthrough)"
                ),
            }
            table.ports.insert(
                p.port,
                PortEntry {
                    plan: p.clone(),
                    state: RwLock::new(state),
                },
            );
        }
        table
    }

    fn build(&self, p: &PortPlan) -> (State, u64) {
        let raw = RawMaterial::read(p, &self.files);
        let fingerprint = match &raw {
            Ok(r) => r.fingerprint(),
            Err(e) => error_fingerprint(e),
        };
        let state = match raw.and_then(|r| PortTls::build(p, &r)) {
            Ok(tls) => State::Active {
                port: Arc::new(ActivePort {
                    server: tls.server,
                    forwarder: Forwarder::new(
                        p.port,
                        tls.upstream,
                        self.metrics.clone(),
                        self.timeouts,
                        self.lanes,
                    ),
                }),
                fingerprint,
                reload_error: None,
            },
            Err(error) => State::Failed { error, fingerprint },
        };
        (state, fingerprint)
    }

    pub fn get(&self, port: u16) -> Option<&PortEntry> {
        self.ports.get(&port)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PortEntry> {
        self.ports.values()
    }

    /// Re-reads every port's files; rebuilds and swaps the material of those that changed.
    /// A port that worked keeps its last good material when the new files are unusable (a
    /// rotation caught half-written, a key not yet matching its certificate): it is reported,
    /// and retried at the next pass.
    pub fn reload(&self) {
        for entry in self.ports.values() {
            let p = &entry.plan;
            let old = entry.fingerprint();
            let raw = RawMaterial::read(p, &self.files);
            let fp = match &raw {
                Ok(r) => r.fingerprint(),
                Err(e) => error_fingerprint(e),
            };
            if fp == old {
                continue;
            }
            let (new_state, _) = self.build(p);
            let m = self.metrics.port(p.port);
            let mut state = entry.state.write().unwrap_or_else(|e| e.into_inner());
            match (new_state, &mut *state) {
                (s @ State::Active { .. }, old) => {
                    m.reload(true);
                    m.set_passthrough(false);
                    if matches!(old, State::Failed { .. }) {
                        info!(
                            port = p.port,
                            "TLS material now usable; terminating TLS on this port again (was relayed untouched)"
                        );
                    } else {
                        info!(
                            port = p.port,
                            "TLS material changed; new handshakes use the reloaded certificates"
                        );
                    }
                    *state = s;
                }
                (
                    State::Failed { error, fingerprint },
                    State::Active {
                        fingerprint: f,
                        reload_error,
                        ..
                    },
                ) => {
                    m.reload(false);
                    warn!(port = p.port, file = %error.what, reason = %error.reason, "changed TLS material is unusable; keeping the previous one");
                    *f = fingerprint;
                    *reload_error = Some(error);
                }
                (s @ State::Failed { .. }, State::Failed { .. }) => {
                    if let State::Failed { error, .. } = &s {
                        m.reload(false);
                        error!(port = p.port, file = %error.what, reason = %error.reason, "TLS material still unusable; port stays in passthrough");
                    }
                    *state = s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use tls_steal_crds::types::{
        AgentAsClient, AgentAsServer, ClientVerification, TlsAuthentication,
    };

    use super::*;

    /// Log output, shared with the subscriber.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        /// Lines logged since the last call.
        fn take(&self) -> Vec<String> {
            let bytes = std::mem::take(&mut *self.0.lock().unwrap());
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[test]
    fn one_log_line_and_a_gauge_per_change_of_a_ports_state() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["app.test".into()]).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        let plan = StealPlan::from_ports(vec![PortPlan {
            port: 443,
            container: "app".into(),
            config: "MirrordTlsStealConfig/default/test".into(),
            agent_as_server: AgentAsServer {
                authentication: TlsAuthentication {
                    cert_pem: cert.display().to_string(),
                    key_pem: key.display().to_string(),
                },
                alpn_protocols: vec![],
                verification: None,
            },
            agent_as_client: AgentAsClient {
                authentication: None,
                verification: ClientVerification {
                    accept_any_cert: true,
                    trust_roots: vec![],
                },
            },
        }]);
        let metrics = Arc::new(Metrics::new([443]));
        let files = FileResolver {
            search_processes: false,
            ..FileResolver::default()
        };
        let timeouts = UpstreamTimeouts {
            connect: std::time::Duration::from_secs(1),
            idle: std::time::Duration::from_secs(1),
        };
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .finish();
        let gauge = |on: u8| format!("tls_steal_port_passthrough{{port=\"443\"}} {on}");
        tracing::subscriber::with_default(subscriber, || {
            let table = PortTable::load(&plan, files, metrics.clone(), timeouts, 1);
            let lines = log.take();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(
                lines[0].contains("relaying this port untouched"),
                "{lines:?}"
            );
            assert!(metrics.render().contains(&gauge(1)));
            for _ in 0..3 {
                table.reload();
            }
            assert_eq!(log.take(), Vec::<String>::new(), "no change, no line");

            std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
            table.reload();
            table.reload();
            let lines = log.take();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].contains("now usable"), "{lines:?}");
            assert!(metrics.render().contains(&gauge(0)));

            std::fs::write(&key, "not a key").unwrap();
            table.reload();
            table.reload();
            let lines = log.take();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].contains("keeping the previous one"), "{lines:?}");
            assert!(metrics.render().contains(&gauge(0)), "still terminating");

            std::fs::remove_file(&key).unwrap();
            table.reload();
            table.reload();
            assert_eq!(log.take().len(), 1, "the new failure, once");
        });
    }
}

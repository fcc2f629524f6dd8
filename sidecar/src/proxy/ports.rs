//! The state of every captured port: its plan entry and either usable TLS material (served) or
//! the reason it is unusable (relayed untouched). The current material sits behind an
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
}

fn error_fingerprint(e: &MaterialError) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    e.hash(&mut h);
    h.finish()
}

impl PortTable {
    /// Loads every port's material (blocking file reads).
    pub fn load(
        plan: &StealPlan,
        files: FileResolver,
        metrics: Arc<Metrics>,
        timeouts: UpstreamTimeouts,
    ) -> Self {
        let mut table = PortTable {
            ports: BTreeMap::new(),
            files,
            metrics,
            timeouts,
        };
        for p in &plan.ports {
            let (state, _) = table.build(p);
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
                (s @ State::Active { .. }, _) => {
                    m.reload(true);
                    info!(
                        port = p.port,
                        "TLS material changed; new handshakes use the reloaded certificates"
                    );
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

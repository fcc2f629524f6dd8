//! The active sessions, in registration order, indexed by port.
//!
//! Readers (every routed request) take the read lock only to clone an `Arc` of an immutable
//! [`Snapshot`]; writers (registration, session end: rare) build a new snapshot and swap it in.
//! A port without sessions is answered from an empty lookup, so forwarding costs one map probe.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::conn::Session;

/// An immutable view of the active sessions.
#[derive(Default)]
pub struct Snapshot {
    /// Every active session, earliest-registered first.
    pub all: Vec<Arc<Session>>,
    /// Per port, the sessions that asked for it, earliest-registered first.
    pub by_port: HashMap<u16, PortSessions>,
}

/// The sessions of one port.
#[derive(Default)]
pub struct PortSessions {
    /// Earliest-registered first.
    pub sessions: Vec<Arc<Session>>,
    /// One of them filters on the body here: requests must be read before deciding.
    pub needs_body: bool,
}

impl Snapshot {
    fn build(all: Vec<Arc<Session>>) -> Self {
        let mut by_port: HashMap<u16, PortSessions> = HashMap::new();
        for s in &all {
            for p in &s.ports {
                let entry = by_port.entry(*p).or_default();
                entry.needs_body |= s.needs_body(*p);
                entry.sessions.push(s.clone());
            }
        }
        Snapshot { all, by_port }
    }

    /// The sessions of `port` (none: `None`).
    pub fn port(&self, port: u16) -> Option<&PortSessions> {
        self.by_port.get(&port)
    }

    /// The sessions of `port`, earliest-registered first.
    pub fn for_port(&self, port: u16) -> &[Arc<Session>] {
        self.port(port).map_or(&[], |p| p.sessions.as_slice())
    }
}

/// The active sessions.
#[derive(Default)]
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
}

impl Registry {
    /// The current sessions.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds a session (ids grow with registration order, so it goes last).
    pub fn insert(&self, session: Arc<Session>) {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut all = cur.all.clone();
        all.push(session);
        all.sort_by_key(|s| s.id);
        *cur = Arc::new(Snapshot::build(all));
    }

    /// Removes a session; its filters stop applying at once. `false` if it was not there.
    pub fn remove(&self, id: u64) -> bool {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if !cur.all.iter().any(|s| s.id == id) {
            return false;
        }
        let all = cur.all.iter().filter(|s| s.id != id).cloned().collect();
        *cur = Arc::new(Snapshot::build(all));
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.snapshot().all.len()
    }
}

#[cfg(test)]
mod tests {
    use tls_steal_crds::session::{Mode, Registration};

    use crate::session::{SessionConfig, Sessions};

    fn reg(ports: &[u16]) -> Registration {
        Registration {
            ports: ports.to_vec(),
            filter: None,
            filter_ports: None,
            mode: Mode::Steal,
            client: String::new(),
        }
    }

    #[test]
    fn keeps_registration_order_per_port_and_removes_at_once() {
        let s = Sessions::new(SessionConfig::new(vec![443, 8443]));
        let a = s.register(&reg(&[443])).unwrap();
        let b = s.register(&reg(&[8443, 443, 443])).unwrap();
        let c = s.register(&reg(&[8443])).unwrap();
        assert_eq!(b.ports, vec![443, 8443], "sorted, deduplicated");
        let snap = s.registry.snapshot();
        let ids = |p: u16| snap.for_port(p).iter().map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(ids(443), vec![a.id, b.id]);
        assert_eq!(ids(8443), vec![b.id, c.id]);
        assert!(ids(9).is_empty());
        assert!(s.registry.remove(b.id));
        assert!(!s.registry.remove(b.id));
        let snap = s.registry.snapshot();
        assert_eq!(
            snap.for_port(443).iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![a.id]
        );
        assert_eq!(
            snap.for_port(8443).iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![c.id]
        );
        assert_eq!(s.registry.len(), 2);
    }
}

//! The signer's counters, per namespace of the sessions.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Ns = Vec<(String, String)>;

/// Tickets signed and sessions ended, by namespace; reconcile errors.
#[derive(Default)]
pub struct TicketMetrics {
    signed: Family<Ns, Counter>,
    ended: Family<Ns, Counter>,
    errors: Counter,
}

fn ns(namespace: &str) -> Ns {
    vec![("namespace".into(), namespace.into())]
}

impl TicketMetrics {
    pub fn signed(&self, namespace: &str) {
        self.signed.get_or_create(&ns(namespace)).inc();
    }

    pub fn ended(&self, namespace: &str) {
        self.ended.get_or_create(&ns(namespace)).inc();
    }

    pub fn error(&self) {
        self.errors.inc();
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_steal_session_tickets_signed",
            "Session tickets signed (new sessions and renewals), by namespace",
            self.signed.clone(),
        );
        registry.register(
            "tls_steal_steal_sessions_ended",
            "StealSessions ended by the signer (duration over, or client gone), by namespace",
            self.ended.clone(),
        );
        registry.register(
            "tls_steal_session_signer_errors",
            "StealSessions the signer could not handle (retried)",
            self.errors.clone(),
        );
    }
}

//! Metrics of the rollout controller. Names and labels are public (dashboards use them):
//! `tls_steal_controller_reconciles_total`, `tls_steal_controller_rollouts_total{kind}`,
//! `tls_steal_controller_rollouts_disabled_total{kind}`,
//! `tls_steal_controller_reconcile_errors_total{error}`,
//! `tls_steal_controller_status_updates_total`, the gauges
//! `tls_steal_controller_workloads_{in_sync,out_of_sync,rollout_disabled}`,
//! `tls_steal_controller_leader`, and per workload kind the watch caches':
//! `tls_steal_controller_cached_objects{kind}`,
//! `tls_steal_controller_watch_last_event_timestamp_seconds{kind}` and
//! `tls_steal_controller_watch_errors_total{kind}`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::desired::WorkloadKind;
use super::error::ErrorKind;
use super::status::SyncCounts;
use crate::openmetrics::{self, Label};

/// The controller's metrics. `Default` makes them unregistered; [`ControllerMetrics::register`]
/// exposes them (in the webhook's `/metrics` when it runs the controller, else in the
/// `controller` command's).
pub struct ControllerMetrics {
    reconciles: Counter,
    rollouts: Family<Label, Counter>,
    rollouts_by_kind: [Counter; WorkloadKind::ALL.len()],
    rollouts_disabled: Family<Label, Counter>,
    disabled_by_kind: [Counter; WorkloadKind::ALL.len()],
    errors: Family<Label, Counter>,
    errors_by_kind: [Counter; ErrorKind::ALL.len()],
    status_updates: Counter,
    in_sync: Gauge,
    out_of_sync: Gauge,
    disabled: Gauge,
    leader: Gauge,
    cached: Family<Label, Gauge>,
    cached_by_kind: [Gauge; WorkloadKind::ALL.len()],
    last_event: Family<Label, Gauge>,
    last_event_by_kind: [Gauge; WorkloadKind::ALL.len()],
    watch_errors: Family<Label, Counter>,
    watch_errors_by_kind: [Counter; WorkloadKind::ALL.len()],
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let kinds = WorkloadKind::ALL.map(WorkloadKind::as_str);
        let (rollouts, rollouts_by_kind) = openmetrics::counters("kind", kinds);
        let (rollouts_disabled, disabled_by_kind) = openmetrics::counters("kind", kinds);
        let (errors, errors_by_kind) =
            openmetrics::counters("error", ErrorKind::ALL.map(ErrorKind::as_str));
        let (cached, cached_by_kind) = openmetrics::labelled("kind", kinds);
        let (last_event, last_event_by_kind) = openmetrics::labelled("kind", kinds);
        let (watch_errors, watch_errors_by_kind) = openmetrics::counters("kind", kinds);
        ControllerMetrics {
            reconciles: Counter::default(),
            rollouts,
            rollouts_by_kind,
            rollouts_disabled,
            disabled_by_kind,
            errors,
            errors_by_kind,
            status_updates: Counter::default(),
            in_sync: Gauge::default(),
            out_of_sync: Gauge::default(),
            disabled: Gauge::default(),
            leader: Gauge::default(),
            cached,
            cached_by_kind,
            last_event,
            last_event_by_kind,
            watch_errors,
            watch_errors_by_kind,
        }
    }
}

impl ControllerMetrics {
    /// Adds these metrics to `registry` (counter names without `_total`, which the encoding
    /// appends).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_steal_controller_reconciles",
            "Workload reconciliations",
            self.reconciles.clone(),
        );
        registry.register(
            "tls_steal_controller_rollouts",
            "Rollouts triggered by patching tls-steal.io/config-hash, by workload kind",
            self.rollouts.clone(),
        );
        registry.register(
            "tls_steal_controller_rollouts_disabled",
            "Rollouts not done because the workload is annotated tls-steal.io/rollout=false",
            self.rollouts_disabled.clone(),
        );
        registry.register(
            "tls_steal_controller_reconcile_errors",
            "Failed reconciliations and status updates, by error kind",
            self.errors.clone(),
        );
        registry.register(
            "tls_steal_controller_status_updates",
            "Config status subresource patches",
            self.status_updates.clone(),
        );
        for (name, help, gauge) in [
            (
                "tls_steal_controller_workloads_in_sync",
                "Workloads whose pod template carries the plan hash the current configs give",
                &self.in_sync,
            ),
            (
                "tls_steal_controller_workloads_out_of_sync",
                "Workloads waiting for a rollout or refusing one (see _disabled)",
                &self.out_of_sync,
            ),
            (
                "tls_steal_controller_workloads_rollout_disabled",
                "Out-of-sync workloads annotated tls-steal.io/rollout=false",
                &self.disabled,
            ),
            (
                "tls_steal_controller_leader",
                "1 while this replica holds the controller lease",
                &self.leader,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "tls_steal_controller_cached_objects",
            "Workloads in the controller's watch cache, by kind (stripped on arrival: lean.rs)",
            self.cached.clone(),
        );
        registry.register(
            "tls_steal_controller_watch_last_event_timestamp_seconds",
            "Unix time of the last event the workload watch delivered, by kind",
            self.last_event.clone(),
        );
        registry.register(
            "tls_steal_controller_watch_errors",
            "Failed workload watches (retried with backoff), by kind",
            self.watch_errors.clone(),
        );
    }

    /// A workload watch of `kind` delivered an event; its cache holds `objects`.
    pub fn watch_event(&self, kind: WorkloadKind, objects: usize) {
        self.cached_by_kind[kind as usize].set(i64::try_from(objects).unwrap_or(i64::MAX));
        openmetrics::set_to_now(&self.last_event_by_kind[kind as usize]);
    }

    /// A workload watch of `kind` failed (it is retried).
    pub fn watch_error(&self, kind: WorkloadKind) {
        self.watch_errors_by_kind[kind as usize].inc();
    }

    pub fn reconcile(&self) {
        self.reconciles.inc();
    }

    pub fn rollout(&self, kind: WorkloadKind) {
        self.rollouts_by_kind[kind as usize].inc();
    }

    pub fn rollout_disabled(&self, kind: WorkloadKind) {
        self.disabled_by_kind[kind as usize].inc();
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors_by_kind[kind as usize].inc();
    }

    pub fn status_update(&self) {
        self.status_updates.inc();
    }

    pub fn set_sync_counts(&self, c: SyncCounts) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.in_sync.set(gauge(c.in_sync));
        self.out_of_sync.set(gauge(c.out_of_sync));
        self.disabled.set(gauge(c.disabled));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(leader.into());
    }

    /// Rollouts triggered for workloads of `kind`.
    pub fn rollouts_of(&self, kind: WorkloadKind) -> u64 {
        self.rollouts_by_kind[kind as usize].get()
    }

    /// Reconcile errors of `kind`.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors_by_kind[kind as usize].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_label() {
        let m = ControllerMetrics::default();
        m.rollout(WorkloadKind::StatefulSet);
        m.error(ErrorKind::Conflict);
        m.set_sync_counts(SyncCounts {
            in_sync: 7,
            out_of_sync: 2,
            disabled: 1,
        });
        m.set_leader(true);
        m.watch_event(WorkloadKind::Deployment, 5000);
        m.watch_error(WorkloadKind::DaemonSet);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let text = openmetrics::encode(&registry);
        for line in [
            "tls_steal_controller_rollouts_total{kind=\"StatefulSet\"} 1",
            "tls_steal_controller_rollouts_total{kind=\"Deployment\"} 0",
            "tls_steal_controller_reconcile_errors_total{error=\"conflict\"} 1",
            "tls_steal_controller_workloads_in_sync 7",
            "tls_steal_controller_workloads_out_of_sync 2",
            "tls_steal_controller_workloads_rollout_disabled 1",
            "tls_steal_controller_leader 1",
            "tls_steal_controller_cached_objects{kind=\"Deployment\"} 5000",
            "tls_steal_controller_cached_objects{kind=\"StatefulSet\"} 0",
            "tls_steal_controller_watch_errors_total{kind=\"DaemonSet\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(m.rollouts_of(WorkloadKind::StatefulSet), 1);
        assert_eq!(m.errors_of(ErrorKind::Conflict), 1);
        let stamp = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "tls_steal_controller_watch_last_event_timestamp_seconds{kind=\"Deployment\"} ",
                )
            })
            .expect("last event of the Deployment watch");
        assert!(stamp.parse::<i64>().unwrap() > 1_700_000_000, "{stamp}");
    }

    /// `as usize` indexes the handle arrays.
    #[test]
    fn label_arrays_are_in_declaration_order() {
        for (i, k) in WorkloadKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
        }
        for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
        }
    }
}

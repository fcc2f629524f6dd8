//! Counters and gauges of the rollout controller, in the Prometheus text format (atomics, no
//! registry crate, like the webhook's own [`crate::metrics`]).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::desired::WorkloadKind;
use super::reconcile::ErrorKind;
use super::status::SyncCounts;

/// All controller metrics.
#[derive(Default)]
pub struct ControllerMetrics {
    reconciles: AtomicU64,
    rollouts: [AtomicU64; 3],
    rollouts_disabled: [AtomicU64; 3],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    status_updates: AtomicU64,
    in_sync: AtomicU64,
    out_of_sync: AtomicU64,
    disabled: AtomicU64,
    leader: AtomicU64,
}

static GLOBAL: OnceLock<Arc<ControllerMetrics>> = OnceLock::new();

/// The process-wide metrics the running controller updates.
pub fn global() -> Arc<ControllerMetrics> {
    GLOBAL.get_or_init(Default::default).clone()
}

/// The controller's metrics in the Prometheus text format, for appending to the webhook's
/// `/metrics`; empty when no controller runs in this process.
pub fn render_global() -> String {
    GLOBAL.get().map(|m| m.render()).unwrap_or_default()
}

impl ControllerMetrics {
    pub fn reconcile(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rollout(&self, kind: WorkloadKind) {
        self.rollouts[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rollout_disabled(&self, kind: WorkloadKind) {
        self.rollouts_disabled[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn status_update(&self) {
        self.status_updates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_sync_counts(&self, c: SyncCounts) {
        self.in_sync.store(c.in_sync, Ordering::Relaxed);
        self.out_of_sync.store(c.out_of_sync, Ordering::Relaxed);
        self.disabled.store(c.disabled, Ordering::Relaxed);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader as u64, Ordering::Relaxed);
    }

    /// Rollouts triggered for workloads of `kind`.
    pub fn rollouts_of(&self, kind: WorkloadKind) -> u64 {
        self.rollouts[kind.index()].load(Ordering::Relaxed)
    }

    /// Reconcile errors of `kind`.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let header = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
        };
        header(
            &mut s,
            "tls_steal_controller_reconciles_total",
            "counter",
            "Workload reconciliations.",
        );
        let _ = writeln!(
            s,
            "tls_steal_controller_reconciles_total {}",
            load(&self.reconciles)
        );
        header(
            &mut s,
            "tls_steal_controller_rollouts_total",
            "counter",
            "Rollouts triggered by patching tls-steal.io/config-hash, by workload kind.",
        );
        for k in WorkloadKind::ALL {
            let _ = writeln!(
                s,
                "tls_steal_controller_rollouts_total{{kind=\"{}\"}} {}",
                k.as_str(),
                load(&self.rollouts[k.index()])
            );
        }
        header(
            &mut s,
            "tls_steal_controller_rollouts_disabled_total",
            "counter",
            "Rollouts not done because the workload is annotated tls-steal.io/rollout=false.",
        );
        for k in WorkloadKind::ALL {
            let _ = writeln!(
                s,
                "tls_steal_controller_rollouts_disabled_total{{kind=\"{}\"}} {}",
                k.as_str(),
                load(&self.rollouts_disabled[k.index()])
            );
        }
        header(
            &mut s,
            "tls_steal_controller_reconcile_errors_total",
            "counter",
            "Failed reconciliations and status updates, by error kind.",
        );
        for k in ErrorKind::ALL {
            let _ = writeln!(
                s,
                "tls_steal_controller_reconcile_errors_total{{error=\"{}\"}} {}",
                k.as_str(),
                load(&self.errors[k as usize])
            );
        }
        header(
            &mut s,
            "tls_steal_controller_status_updates_total",
            "counter",
            "Config status subresource patches.",
        );
        let _ = writeln!(
            s,
            "tls_steal_controller_status_updates_total {}",
            load(&self.status_updates)
        );
        header(
            &mut s,
            "tls_steal_controller_workloads_in_sync",
            "gauge",
            "Workloads whose pod template carries the plan hash the current configs give.",
        );
        let _ = writeln!(
            s,
            "tls_steal_controller_workloads_in_sync {}",
            load(&self.in_sync)
        );
        header(
            &mut s,
            "tls_steal_controller_workloads_out_of_sync",
            "gauge",
            "Workloads waiting for a rollout or refusing one (see _disabled).",
        );
        let _ = writeln!(
            s,
            "tls_steal_controller_workloads_out_of_sync {}",
            load(&self.out_of_sync)
        );
        header(
            &mut s,
            "tls_steal_controller_workloads_rollout_disabled",
            "gauge",
            "Out-of-sync workloads annotated tls-steal.io/rollout=false.",
        );
        let _ = writeln!(
            s,
            "tls_steal_controller_workloads_rollout_disabled {}",
            load(&self.disabled)
        );
        header(
            &mut s,
            "tls_steal_controller_leader",
            "gauge",
            "1 while this replica holds the controller lease.",
        );
        let _ = writeln!(s, "tls_steal_controller_leader {}", load(&self.leader));
        s
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
        let text = m.render();
        for line in [
            "tls_steal_controller_rollouts_total{kind=\"StatefulSet\"} 1",
            "tls_steal_controller_rollouts_total{kind=\"Deployment\"} 0",
            "tls_steal_controller_reconcile_errors_total{error=\"conflict\"} 1",
            "tls_steal_controller_workloads_in_sync 7",
            "tls_steal_controller_workloads_out_of_sync 2",
            "tls_steal_controller_workloads_rollout_disabled 1",
            "tls_steal_controller_leader 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(m.rollouts_of(WorkloadKind::StatefulSet), 1);
        assert_eq!(m.errors_of(ErrorKind::Conflict), 1);
    }
}

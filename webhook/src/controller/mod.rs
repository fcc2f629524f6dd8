//! The rollout controller: pods get their plan when they are created, so when the configs change
//! the workloads whose pods would get a different plan are rolled out.
//!
//! For every Deployment, StatefulSet and DaemonSet the controller computes the plan hash its
//! pods would get ([`desired::WorkloadState::desired_plan`]: `build_plan` on the pod template
//! with the workload as owner, the same merge the webhook runs) and compares it with the
//! workload's current hash ([`desired::workload_current_hash`]: the template's
//! `tls-steal.io/config-hash`, else `tls-steal.io/adopted-hash`, else `""`). When they differ it
//! sends one JSON patch (`test` of the resourceVersion + `add` of the annotation), which makes
//! Kubernetes roll the workload out. A workload whose namespace is not opted in, or whose pods the
//! webhook would skip, wants the empty hash, so losing a config or the namespace label rolls it
//! back to pods without the sidecar.
//!
//! How (the user-visible decisions are in the README: "Adopting workloads without a rollout",
//! "Known limitations"):
//! * Level-triggered: the decision depends only on current state (the pods included), so a
//!   restart re-derives everything and patches nothing that is in sync. Workloads are judged
//!   only once the namespace and config caches have completed their first list ([`run`]).
//! * Triggers ([`triggers`]): workload changes (generation or annotations), config changes
//!   (generation, or deletion) mapped to the workloads of the config's namespace (every workload
//!   for cluster-scoped configs), and flips of a namespace's opt-in label. Bursts are coalesced
//!   by kube-runtime's per-object debounce (`--controller-debounce-ms`), and a periodic resync
//!   (`--controller-resync-seconds`) catches anything missed.
//! * `tls-steal.io/rollout: "false"` on the workload's own metadata blocks the patch; the
//!   workload gets a `RolloutDisabled` warning event and every config matching it says so in
//!   its `RolledOut` condition.
//! * Adoption of a workload recording no hash: [`reconcile::reconcile`] judges it by its live
//!   pods ([`desired::adoption`]) before patching its template.
//! * Config status ([`status`], written by [`sweep`]) is recomputed from the caches after any
//!   change (debounced) and only patched when it differs.
//! * Failures are retried by one policy ([`backoff`]); leader election on a Lease ([`leader`]);
//!   everything above runs only while leading.

mod args;
mod backoff;
mod changed;
mod command;
mod context;
mod desired;
mod error;
mod leader;
mod lean;
mod metrics;
mod patches;
mod reconcile;
mod run;
mod status;
mod sweep;
mod triggers;

pub use args::{ControllerArgs, ControllerCommandArgs, ControllerSettings, ServeControllerArgs};
pub use command::{CommandError, run_command};
pub use context::{CacheWriters, Caches, Context};
pub use desired::{
    Adoption, Decision, NoPlan, Workload, WorkloadKind, WorkloadState, adoption, current_hash,
    hash_annotation_present, hash_recorded, live_pod_hashes, pod_plan_hash, pod_selector,
    workload_current_hash,
};
pub(crate) use error::chain as error_chain;
pub use error::{Error, ErrorKind};
pub use leader::{LeaseSettings, release, try_acquire_or_renew};
pub use lean::{Cached, CachedKind};
pub use metrics::ControllerMetrics;
pub use patches::{adoption_patch, hash_patch, rollout_patch};
pub use reconcile::{ADOPTION_RECHECK, reconcile};
pub use run::{run, spawn};
pub use status::{ConfigInput, SyncCounts, compute_statuses};
pub use sweep::sync_statuses;

// The names the controller reads and writes are public: they live in `tls_steal_crds::contract`.
use tls_steal_crds::contract::{
    ADOPTED_HASH_ANNOTATION, CONFIG_HASH_ANNOTATION, CONTROLLER_NAME as FIELD_MANAGER,
    ROLLOUT_ANNOTATION,
};

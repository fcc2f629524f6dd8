//! Pure computation of every config's status from the workloads the controller sees.
//!
//! For each config: `observedGeneration`; condition `Valid` (from `validate()`, naming the bad
//! fields); `matchedWorkloads` / `matchedCount` (workloads in opted-in namespaces whose pods the
//! webhook would inject and whose template the config's `targetPath` and `selector` match);
//! `portConflicts` / `conflictCount` (ports of this config discarded on some matched workload
//! because another config takes precedence, or because an earlier entry of the same config lists
//! them: then `keptBy` is the config itself, and the `Valid` message names the entries); and
//! condition `RolledOut`, which says whether every
//! matched workload carries the plan hash the current configs give it, and names those that
//! do not because they are annotated `tls-steal.io/rollout: "false"`.

use std::collections::HashMap;

use tls_steal_crds::ConfigSource;
use tls_steal_crds::plan::ConfigKind;
use tls_steal_crds::status::{Condition, PortConflict, TlsStealConfigStatus};

use super::ROLLOUT_ANNOTATION;
use super::desired::WorkloadState;

/// Condition type saying whether the spec passes validation.
pub const CONDITION_VALID: &str = "Valid";
/// Condition type saying whether matched workloads carry the current plan.
pub const CONDITION_ROLLED_OUT: &str = "RolledOut";

/// One config and what is needed to write its status.
#[derive(Clone, Debug)]
pub struct ConfigInput<'a> {
    pub source: &'a ConfigSource,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The status the object currently has (transition times are kept when unchanged).
    pub previous: Option<&'a TlsStealConfigStatus>,
}

/// Counts over all workloads (metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Workloads whose current hash ([`super::desired::workload_current_hash`]) is the desired one.
    pub in_sync: u64,
    /// Workloads waiting for (or refused, see `disabled`) a rollout.
    pub out_of_sync: u64,
    /// Out-of-sync workloads annotated `tls-steal.io/rollout: "false"`.
    pub disabled: u64,
}

/// Per-workload result of the merge, computed once per sweep.
struct Evaluated<'a> {
    state: &'a WorkloadState,
    id: String,
    plan: tls_steal_crds::StealPlan,
}

/// The status of each of `configs` (same order) and the sync counts over `workloads`. `now` is
/// the RFC 3339 time stamped on conditions whose status changed.
pub fn compute_statuses(
    configs: &[ConfigInput<'_>],
    workloads: &[WorkloadState],
    now: &str,
) -> (Vec<TlsStealConfigStatus>, SyncCounts) {
    // Configs that can apply in each namespace: its own and the cluster ones.
    let cluster: Vec<ConfigSource> = configs
        .iter()
        .filter(|c| c.source.kind == ConfigKind::Cluster)
        .map(|c| c.source.clone())
        .collect();
    // Built once per namespace, not per workload: with 1,000 configs in a namespace, copying
    // them for each of its workloads was most of a sweep's CPU (issue 19, at scale).
    let mut per_ns: HashMap<&str, Vec<ConfigSource>> = HashMap::new();
    for c in configs {
        if let (ConfigKind::Namespaced, Some(ns)) = (c.source.kind, &c.source.namespace) {
            per_ns.entry(ns).or_default().push(c.source.clone());
        }
    }
    for applicable in per_ns.values_mut() {
        applicable.extend(cluster.iter().cloned());
    }
    let mut counts = SyncCounts::default();
    let evaluated: Vec<Evaluated<'_>> = workloads
        .iter()
        .map(|w| {
            let applicable = per_ns.get(w.namespace.as_str()).unwrap_or(&cluster);
            let plan = w.desired_plan(applicable);
            if w.current_hash == plan.hash {
                counts.in_sync += 1;
            } else {
                counts.out_of_sync += 1;
                if w.rollout_disabled {
                    counts.disabled += 1;
                }
            }
            Evaluated {
                state: w,
                id: w.id(),
                plan,
            }
        })
        .collect();

    let statuses = configs
        .iter()
        .map(|c| config_status(c, &evaluated, now))
        .collect();
    (statuses, counts)
}

fn config_status(
    input: &ConfigInput<'_>,
    evaluated: &[Evaluated<'_>],
    now: &str,
) -> TlsStealConfigStatus {
    let source = input.source;
    let id = source.id();
    let validation = source.spec.validate();
    let valid = validation.is_ok();

    let mut matched = Vec::new();
    let mut conflicts = Vec::new();
    let mut disabled = Vec::new();
    let mut pending = Vec::new();
    for e in evaluated {
        let w = e.state;
        if w.no_plan.is_some() || source.matching_paths(&w.target, &w.namespace).is_none() {
            continue;
        }
        matched.push(e.id.clone());
        for d in e.plan.discarded.iter().filter(|d| d.config == id) {
            conflicts.push(PortConflict {
                port: d.port,
                workload: e.id.clone(),
                kept_by: d.kept_by.clone(),
            });
        }
        if valid && w.current_hash != e.plan.hash {
            if w.rollout_disabled {
                disabled.push(format!(
                    "{} (pods have plan {:?}, the configs give {:?})",
                    e.id, w.current_hash, e.plan.hash
                ));
            } else {
                pending.push(e.id.clone());
            }
        }
    }
    matched.sort();
    conflicts.sort_by(|a, b| (&a.workload, a.port).cmp(&(&b.workload, b.port)));

    let valid_condition = match &validation {
        Ok(()) => condition(
            CONDITION_VALID,
            true,
            "Valid",
            // Never an empty string: Kubernetes 1.20 rejects `""` in this schema as null.
            valid_message(&source.spec),
            input,
            now,
        ),
        Err(e) => condition(
            CONDITION_VALID,
            false,
            "InvalidSpec",
            format!("the config is not applied to any pod: {e}"),
            input,
            now,
        ),
    };
    let rolled_out = if !valid {
        condition(
            CONDITION_ROLLED_OUT,
            false,
            "InvalidSpec",
            "the config is invalid and is not applied".into(),
            input,
            now,
        )
    } else if !disabled.is_empty() {
        let mut msg = format!(
            "{} workload(s) annotated {ROLLOUT_ANNOTATION}: \"false\" were not rolled out and keep \
             their old pods: {}",
            disabled.len(),
            disabled.join(", ")
        );
        if !pending.is_empty() {
            msg.push_str(&format!("; rollout pending for {}", pending.join(", ")));
        }
        condition(
            CONDITION_ROLLED_OUT,
            false,
            "RolloutDisabled",
            msg,
            input,
            now,
        )
    } else if !pending.is_empty() {
        condition(
            CONDITION_ROLLED_OUT,
            false,
            "RolloutPending",
            format!("rollout pending for {}", pending.join(", ")),
            input,
            now,
        )
    } else {
        condition(
            CONDITION_ROLLED_OUT,
            true,
            "UpToDate",
            format!(
                "{} matched workload(s) carry the current plan",
                matched.len()
            ),
            input,
            now,
        )
    };

    TlsStealConfigStatus {
        observed_generation: input.generation,
        conditions: vec![valid_condition, rolled_out],
        matched_count: matched.len() as i64,
        matched_workloads: matched,
        conflict_count: conflicts.len() as i64,
        port_conflicts: conflicts,
    }
}

/// The `Valid=True` message; it names entries discarded because an earlier entry of the same
/// config lists their port (they are discarded on every workload, matched or not; on matched
/// workloads they are also in `portConflicts`, kept by the config itself).
fn valid_message(spec: &tls_steal_crds::TlsStealSpec) -> String {
    let dups = spec.duplicate_ports();
    if dups.is_empty() {
        return "the spec passes validation".into();
    }
    let list: Vec<String> = dups
        .iter()
        .map(|(i, port)| format!("spec.ports[{i}] (port {port})"))
        .collect();
    format!(
        "the spec passes validation; discarded because an earlier entry lists the same port (the first entry is kept): {}",
        list.join(", ")
    )
}

/// A condition; its `lastTransitionTime` is the previous one when the status did not change.
fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    input: &ConfigInput<'_>,
    now: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = input
        .previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(p) if p.status == status && p.last_transition_time.is_some() => {
            p.last_transition_time.clone()
        }
        _ => Some(now.to_owned()),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: input.generation,
    }
}

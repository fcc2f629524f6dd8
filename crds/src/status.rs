//! The status subresource shared by both kinds, written by the rollout controller.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the controller last saw of a config.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStealConfigStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid` (and later others), with a reason and a message naming the bad field.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Workloads the config currently applies to, as `namespace/kind/name`.
    #[serde(default)]
    pub matched_workloads: Vec<String>,
    /// Number of entries in `matchedWorkloads` (for `kubectl get`).
    #[serde(default)]
    pub matched_count: i64,
    /// Ports of this config discarded because another config already configured them.
    #[serde(default)]
    pub port_conflicts: Vec<PortConflict>,
    /// Number of entries in `portConflicts` (for `kubectl get`).
    #[serde(default)]
    pub conflict_count: i64,
}

/// A status condition (the usual Kubernetes shape).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Valid`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word.
    // Required, with no schema default: Kubernetes 1.20 rejects `default: ""` here.
    pub reason: String,
    /// Human-readable detail; for `Valid=False` it names the bad field.
    pub message: String,
    /// RFC 3339 time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A port this config lists that lost to another config on some workload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortConflict {
    /// The port.
    pub port: u16,
    /// Workload (`namespace/kind/name`) on which the conflict happened.
    pub workload: String,
    /// The config whose entry was kept.
    pub kept_by: String,
}

//! The pure part of a review: the plan a pod gets from its namespace's configs, and the patch
//! that plan makes of a pod of its shape. No I/O, no metrics and no memory of earlier reviews:
//! [`super::Admission`] wraps these in the memo (decisions per pod shape, patches per plan and
//! shape) and the replay layer.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tls_steal_crds::{PodTarget, StealPlan};

use super::answer::base64;
use super::memo::{Injected, Key};
use crate::configs::NamespaceConfigs;
use crate::mutate::{PodShape, SkipReason, plan_for, plan_mutation, undeclared_ports};
use crate::settings::Settings;

/// Why a pod could not be decided on. It is admitted unchanged (fail open).
#[derive(Debug, thiserror::Error)]
pub(super) enum ReviewError {
    #[error("the mutation panicked")]
    Panicked,
    #[error("serialising the patch")]
    Patch(#[source] serde_json::Error),
}

/// The merged plan of the configs that apply to the pod of `key`, when the pod can carry it.
pub(super) fn plan(
    key: &Key,
    entries: &NamespaceConfigs,
    settings: &Settings,
) -> Result<StealPlan, SkipReason> {
    let configs = entries.candidates(&key.target);
    plan_for(&key.shape, &key.target, &key.namespace, &configs, settings)
}

/// The JSON patch (base64, as the answer carries it) turning a pod of `shape` into one running
/// `plan` (whose JSON is `plan_json`). `pod` only feeds the patch's check in debug builds.
pub(super) fn patch(
    shape: &PodShape,
    plan: StealPlan,
    plan_json: &str,
    target: &PodTarget,
    settings: &Settings,
    pod: &Pod,
) -> Result<Arc<str>, ReviewError> {
    let m = plan_mutation(shape, plan, plan_json, target, settings);
    let patch = m.patch_json(pod).map_err(ReviewError::Patch)?;
    Ok(base64(&patch).into())
}

/// What an injection answers and reports besides its patch.
pub(super) struct Summary {
    ports: Vec<u16>,
    hash: String,
    configs: Vec<String>,
    undeclared_ports: Vec<u16>,
}

/// Read from `plan` before it goes into the mutation.
pub(super) fn summary(plan: &StealPlan, target: &PodTarget) -> Summary {
    Summary {
        ports: plan.port_numbers(),
        hash: plan.hash.clone(),
        configs: plan.configs.clone(),
        undeclared_ports: undeclared_ports(plan, target),
    }
}

impl Summary {
    pub(super) fn with_patch(self, patch_base64: Arc<str>) -> Injected {
        Injected {
            patch_base64,
            ports: self.ports,
            hash: self.hash,
            configs: self.configs,
            undeclared_ports: self.undeclared_ports,
        }
    }
}

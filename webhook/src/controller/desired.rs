//! Pure part of the rollout controller: from a workload, its namespace's opt-in state and the
//! configs, the plan hash its pods would get, what to do about it, and the JSON patch doing it.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;
use kube::core::{NamespaceResourceScope, Selector};
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use tls_steal_crds::{ConfigSource, Owner, OwnerKind, PodTarget, StealPlan, build_plan};

use super::{ADOPTED_HASH_ANNOTATION, CONFIG_HASH_ANNOTATION, ROLLOUT_ANNOTATION};
use crate::mutate::{self, SkipReason};
use crate::settings::Settings;
use tls_steal_crds::contract::STATUS_ANNOTATION;

/// The workload kinds the controller rolls out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 3] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
    ];

    /// The Kubernetes kind (`Deployment`, ...), also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }

    /// The owner kind of target paths (`deploy/x`, `statefulset/x`, `daemonset/x`).
    pub fn owner_kind(self) -> OwnerKind {
        match self {
            WorkloadKind::Deployment => OwnerKind::Deployment,
            WorkloadKind::StatefulSet => OwnerKind::StatefulSet,
            WorkloadKind::DaemonSet => OwnerKind::DaemonSet,
        }
    }
}

/// A workload as the controller reads it: a whole object (`Deployment`, ...) or the controller's
/// cached form of one (`lean::Cached`).
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const KIND: WorkloadKind;
    /// The pod template (`None` only for objects without a spec); a cached workload builds it
    /// with only the fields the decisions read.
    fn template(&self) -> Option<Cow<'_, PodTemplateSpec>>;
    /// One annotation of the pod template.
    fn template_annotation(&self, key: &str) -> Option<&str>;
    /// The label selector string of the workload's pods ([`pod_selector`] of `spec.selector`).
    fn pod_selector(&self) -> Option<String>;
    /// The workload is known to want no pods at all (`spec.replicas: 0`; for a DaemonSet, an
    /// up-to-date status scheduling it on no node), so there is nothing to wait for.
    fn expects_no_pods(&self) -> bool;
}

/// The annotation `key` of a whole object's template.
fn whole_template_annotation<'a>(t: &'a PodTemplateSpec, key: &str) -> Option<&'a str> {
    t.metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

macro_rules! whole_workload {
    ($t:ty, $kind:expr, |$w:ident| $no_pods:expr) => {
        impl Workload for $t {
            const KIND: WorkloadKind = $kind;
            fn template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
                self.spec.as_ref().map(|s| Cow::Borrowed(&s.template))
            }
            fn template_annotation(&self, key: &str) -> Option<&str> {
                whole_template_annotation(&self.spec.as_ref()?.template, key)
            }
            fn pod_selector(&self) -> Option<String> {
                pod_selector(self.spec.as_ref().map(|s| &s.selector))
            }
            fn expects_no_pods(&self) -> bool {
                let $w = self;
                $no_pods
            }
        }
    };
}

whole_workload!(Deployment, WorkloadKind::Deployment, |w| {
    w.spec.as_ref().and_then(|s| s.replicas) == Some(0)
});
whole_workload!(StatefulSet, WorkloadKind::StatefulSet, |w| {
    w.spec.as_ref().and_then(|s| s.replicas) == Some(0)
});
// Only trust a status written for the current spec (a new DaemonSet has none yet).
whole_workload!(DaemonSet, WorkloadKind::DaemonSet, |w| {
    w.status.as_ref().is_some_and(|s| {
        s.desired_number_scheduled == 0
            && s.observed_generation.is_some()
            && s.observed_generation >= w.metadata.generation
    })
});

/// `namespace/Kind/name`, the spelling of `matchedWorkloads` and of log lines.
pub fn workload_id(namespace: &str, kind: WorkloadKind, name: &str) -> String {
    format!("{namespace}/{}/{name}", kind.as_str())
}

/// Why a workload's pods get no plan whatever the configs say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPlan {
    /// The namespace lacks `tls-steal-injection=enabled`: the webhook is not called for it.
    NamespaceNotOptedIn,
    /// The webhook would skip the pods (opt-out label, `hostNetwork`, already injected, ...).
    Pod(SkipReason),
}

impl NoPlan {
    pub fn describe(self) -> String {
        match self {
            NoPlan::NamespaceNotOptedIn => {
                "the namespace is not labelled tls-steal-injection=enabled".into()
            }
            NoPlan::Pod(r) => format!("the webhook skips its pods ({})", r.as_str()),
        }
    }
}

/// Everything the controller derives from one workload, independent of its Rust type.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadState {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// What matching sees: template labels and containers, owner `deploy/<name>` (or the like).
    pub target: PodTarget,
    /// Set when the pods get no plan regardless of the configs.
    pub no_plan: Option<NoPlan>,
    /// The plan hash the pods carry as far as the workload records it
    /// ([`workload_current_hash`]: the template's `tls-steal.io/config-hash`, else the
    /// workload's `tls-steal.io/adopted-hash`, else empty).
    pub current_hash: String,
    /// The workload is annotated `tls-steal.io/rollout: "false"`.
    pub rollout_disabled: bool,
}

impl WorkloadState {
    /// Reads a workload. `namespace_opted_in` is the namespace's opt-in label; `settings` gives
    /// the webhook's own-pod label (its pods are never injected).
    pub fn of<W: Workload>(w: &W, namespace_opted_in: bool, settings: &Settings) -> Self {
        let meta = w.meta();
        let name = meta.name.clone().unwrap_or_default();
        let template = w.template();
        Self::from_parts(
            W::KIND,
            meta.namespace.as_deref().unwrap_or_default(),
            &name,
            meta,
            template,
            namespace_opted_in,
            settings,
        )
    }

    /// `template` is taken as it comes: a cached workload's is built for this call, so the
    /// pod the pre-checks read is made from it without another copy.
    pub fn from_parts(
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        meta: &ObjectMeta,
        template: Option<Cow<'_, PodTemplateSpec>>,
        namespace_opted_in: bool,
        settings: &Settings,
    ) -> Self {
        let owners = vec![Owner::new(kind.owner_kind(), name)];
        let empty = PodTemplateSpec::default();
        let target = PodTarget::from_template(template.as_deref().unwrap_or(&empty), owners);
        let current_hash = workload_current_hash(meta, template.as_deref()).to_owned();
        let no_plan = if !namespace_opted_in {
            Some(NoPlan::NamespaceNotOptedIn)
        } else {
            // The same checks the webhook makes before it looks at configs.
            let template = template.map(Cow::into_owned).unwrap_or_default();
            let pod = Pod {
                metadata: template.metadata.unwrap_or_default(),
                spec: template.spec,
                status: None,
            };
            mutate::precheck(&pod, namespace, settings)
                .or_else(|| mutate::target_skip(&target))
                .map(NoPlan::Pod)
        };
        WorkloadState {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            target,
            no_plan,
            current_hash,
            rollout_disabled: rollout_disabled(meta),
        }
    }

    /// `namespace/Kind/name`.
    pub fn id(&self) -> String {
        workload_id(&self.namespace, self.kind, &self.name)
    }

    /// The plan the pods of this workload would get from `configs` (the configs of its namespace
    /// and the cluster-scoped ones; others are ignored by the merge anyway). Empty when
    /// [`WorkloadState::no_plan`] is set.
    pub fn desired_plan(&self, configs: &[ConfigSource]) -> StealPlan {
        if self.no_plan.is_some() {
            return StealPlan::default();
        }
        build_plan(&self.target, &self.namespace, configs)
    }

    /// What to do given the desired hash.
    pub fn decide(&self, desired_hash: &str) -> Decision {
        if self.current_hash == desired_hash {
            Decision::InSync
        } else if self.rollout_disabled {
            Decision::RolloutDisabled
        } else {
            Decision::Rollout
        }
    }
}

/// The outcome of comparing the current and the desired hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do; the workload is never touched.
    InSync,
    /// Out of date, but annotated `tls-steal.io/rollout: "false"`: reported, not patched.
    RolloutDisabled,
    /// Patch the template annotation (which rolls the workload out).
    Rollout,
}

/// The template's `tls-steal.io/config-hash` when present (even `""`).
fn template_hash(template: Option<&PodTemplateSpec>) -> Option<&str> {
    template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
        .map(String::as_str)
}

/// The template's `tls-steal.io/config-hash`, empty when absent.
pub fn current_hash(template: Option<&PodTemplateSpec>) -> &str {
    template_hash(template).unwrap_or_default()
}

/// Whether the template carries a `tls-steal.io/config-hash` annotation at all (an empty value
/// counts as present: the controller wrote it to remove a plan).
pub fn hash_annotation_present(template: Option<&PodTemplateSpec>) -> bool {
    template_hash(template).is_some()
}

/// The workload's own `tls-steal.io/adopted-hash` (written when it was adopted without a
/// rollout), `None` when absent.
pub fn adopted_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ADOPTED_HASH_ANNOTATION))
        .map(String::as_str)
}

/// The one rule of what a workload records: the template's `tls-steal.io/config-hash` when
/// present (even `""`), else the workload's `tls-steal.io/adopted-hash`, else nothing.
fn recorded<'a>(template_hash: Option<&'a str>, meta: &'a ObjectMeta) -> Option<&'a str> {
    template_hash.or_else(|| adopted_hash(meta))
}

/// The plan hash a workload's pods carry as far as the workload records it ([`recorded`], `""`
/// when nothing). Used by reconcile, the namespace trigger filter, config status and the sync
/// gauges alike.
pub fn workload_current_hash<'a>(
    meta: &'a ObjectMeta,
    template: Option<&'a PodTemplateSpec>,
) -> &'a str {
    recorded(template_hash(template), meta).unwrap_or_default()
}

/// What `w` records ([`recorded`]), read without building its template: reconcile and the
/// trigger filter ask it of cached workloads.
pub fn recorded_hash<W: Workload>(w: &W) -> Option<&str> {
    recorded(w.template_annotation(CONFIG_HASH_ANNOTATION), w.meta())
}

/// Whether [`workload_current_hash`] of `w` is not empty.
pub fn records_a_plan<W: Workload>(w: &W) -> bool {
    recorded_hash(w).is_some_and(|h| !h.is_empty())
}

/// Whether the workload records a hash at all (template annotation or adopted-hash). Only a
/// workload recording none has its pods listed for adoption.
pub fn hash_recorded(meta: &ObjectMeta, template: Option<&PodTemplateSpec>) -> bool {
    recorded(template_hash(template), meta).is_some()
}

/// The label selector string listing a workload's pods. `None` when the selector is missing,
/// selects everything, or cannot be expressed (then the pods cannot be judged).
pub fn pod_selector(selector: Option<&LabelSelector>) -> Option<String> {
    let selector = Selector::try_from(selector?.clone()).ok()?;
    (!selector.selects_all()).then(|| selector.to_string())
}

/// The plan hash the webhook gave a pod: the `hash` of its `tls-steal.io/status` annotation;
/// empty when the pod has no (readable) status, i.e. no sidecar.
pub fn pod_plan_hash(pod: &Pod) -> String {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STATUS_ANNOTATION))
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v.get("hash")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The plan hashes of the pods that will keep running: pods being deleted or finished
/// (`Succeeded`, `Failed`, e.g. evicted) are left out.
pub fn live_pod_hashes<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<String> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .map(pod_plan_hash)
        .collect()
}

/// What to do with a workload whose template has no hash annotation yet (created after its
/// configs: the webhook already gave its pods their plan) and whose desired hash differs from
/// the empty one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Every live pod already carries the desired hash (or the workload wants no pods): leave
    /// the template alone.
    InSync,
    /// No pod yet (just created): the webhook will give the new pods the desired plan; look
    /// again shortly.
    WaitForPods,
    /// Some pod has another plan (typically none: it predates the config): roll out.
    Rollout,
}

/// Decides [`Adoption`] from the live pods' hashes ([`live_pod_hashes`]).
pub fn adoption(desired_hash: &str, pod_hashes: &[String], expects_no_pods: bool) -> Adoption {
    if pod_hashes.is_empty() {
        if expects_no_pods {
            Adoption::InSync
        } else {
            Adoption::WaitForPods
        }
    } else if pod_hashes.iter().all(|h| h == desired_hash) {
        Adoption::InSync
    } else {
        Adoption::Rollout
    }
}

/// `tls-steal.io/rollout: "false"` on the workload's own metadata.
pub fn rollout_disabled(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ROLLOUT_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        for (i, k) in WorkloadKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        assert_eq!(
            WorkloadKind::StatefulSet.owner_kind().path_prefix(),
            "statefulset"
        );
    }
}

//! What `--explain` says about one pod, computed from the pod and the configs alone (pure); the
//! sidecar's live answers are added by [`super::run`].

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Serialize;
use tls_steal_crds::contract::{PLAN_ENV, PROXY_CONTAINER};
use tls_steal_crds::explain::{Mismatch, match_config};
use tls_steal_crds::plan::{ConfigSource, DiscardedPort, PortPlan, RejectedConfig, build_plan};
use tls_steal_crds::session::{ExplainAnswer, ExplainRequest, PortStatus, SessionInfo};
use tls_steal_crds::target::TargetPath;
use tls_steal_crds::{PodTarget, StealPlan};

/// The whole answer of `--explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub target: String,
    pub namespace: String,
    /// The sample request (its `port` is unused: every port asked is in each pod's `requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<ExplainRequest>,
    /// Things that limit the answer (e.g. cluster-wide configs that could not be listed).
    pub notes: Vec<String>,
    pub pods: Vec<PodReport>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    pub pod: String,
    pub ready: bool,
    /// It carries `tls-steal-proxy`.
    pub sidecar: bool,
    /// The pod's target paths without a container (each also exists with `/container/<c>`).
    pub target_paths: Vec<String>,
    /// Every config of the namespace and every cluster-wide config, matched or not.
    pub configs: Vec<ConfigMatch>,
    /// The hash of the plan the configs give this pod now (empty: no port).
    pub plan_hash: String,
    /// The plan the pod's sidecar was started with, compared with the configs' plan.
    pub running_plan: RunningPlan,
    /// The ports of the plan the pod runs (when it runs one), else of the configs' plan.
    pub ports: Vec<PortReport>,
    /// Port entries that lost the merge (configs now).
    pub discarded: Vec<DiscardedPort>,
    /// Configs that matched but are invalid (configs now).
    pub rejected: Vec<RejectedConfig>,
    /// Why the sidecar could not be asked (its live state is then unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_error: Option<String>,
    /// The sessions active on the pod.
    pub sessions: Vec<SessionInfo>,
    /// Where the sample request would go, per port.
    pub requests: Vec<RequestReport>,
    pub notes: Vec<String>,
}

/// A config, and whether it applies to the pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMatch {
    pub config: String,
    pub matched: bool,
    /// The target paths its `targetPath` matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<Mismatch>,
    /// The mismatch in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The plan in the pod's `TLS_STEAL_PLAN`, compared with the configs' plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningPlan {
    /// `same`, `differs`, `none` (no sidecar) or `unreadable`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub detail: String,
}

/// One port of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortReport {
    /// Its TLS settings, container and config.
    #[serde(flatten)]
    pub plan: PortPlan,
    /// As the proxy serves it now (`None`: the sidecar was not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<PortStatus>,
}

/// Where the sample request would go on one port.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestReport {
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<ExplainAnswer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The proxy container (regular, or native sidecar).
fn proxy_container(pod: &Pod) -> Option<&Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == PROXY_CONTAINER)
}

/// Why the plan a pod's sidecar runs cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PodPlanError {
    #[error("{PROXY_CONTAINER} has no {PLAN_ENV}")]
    NoPlan,
    #[error("{PROXY_CONTAINER}'s {PLAN_ENV} is not a plan")]
    Unreadable(#[source] tls_steal_crds::plan::PlanError),
}

/// The plan the pod's sidecar runs: `None` without a sidecar; `Some(Err)` when unreadable.
pub fn pod_plan(pod: &Pod) -> Option<Result<StealPlan, PodPlanError>> {
    let c = proxy_container(pod)?;
    let value = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == PLAN_ENV)
        .and_then(|e| e.value.as_deref());
    Some(match value {
        None => Err(PodPlanError::NoPlan),
        Some(json) => StealPlan::from_json(json).map_err(PodPlanError::Unreadable),
    })
}

/// Everything `--explain` says about `pod` without asking its sidecar. `target` is the pod's
/// [`PodTarget`] with its owner chain complete; `configs` every config that could apply.
pub fn pod_report(
    pod: &Pod,
    target: &PodTarget,
    namespace: &str,
    configs: &[ConfigSource],
) -> PodReport {
    let mut matches: Vec<ConfigMatch> = configs
        .iter()
        .map(|c| match match_config(c, target, namespace) {
            Ok(paths) => ConfigMatch {
                config: c.id(),
                matched: true,
                paths: shown_paths(paths),
                mismatch: None,
                reason: None,
            },
            Err(m) => ConfigMatch {
                config: c.id(),
                matched: false,
                paths: Vec::new(),
                reason: Some(m.to_string()),
                mismatch: Some(m),
            },
        })
        .collect();
    matches.sort_by(|a, b| (!a.matched, &a.config).cmp(&(!b.matched, &b.config)));
    let plan = build_plan(target, namespace, configs);
    let (running_plan, ports) = match pod_plan(pod) {
        None => (
            RunningPlan {
                state: "none",
                hash: None,
                detail: match plan.is_empty() {
                    true => "no tls-steal-proxy in the pod, and the configs give it no port".into(),
                    false => "no tls-steal-proxy in the pod: it was created before a config matched, or was not injected (namespace label, opt-out, webhook down, a Job's pod in classic sidecar mode, a container declaring port 15400, 15401 or 15443: `kubectl describe` the pod's owner for a NotInjected event); new pods of the workload get the plan".into(),
                },
            },
            plan.ports.clone(),
        ),
        Some(Err(e)) => (
            RunningPlan {
                state: "unreadable",
                hash: None,
                detail: match std::error::Error::source(&e) {
                    Some(cause) => format!("the pod's plan cannot be read: {e}: {cause}"),
                    None => format!("the pod's plan cannot be read: {e}"),
                },
            },
            plan.ports.clone(),
        ),
        Some(Ok(running)) if running.hash == plan.hash => (
            RunningPlan {
                state: "same",
                hash: Some(running.hash.clone()),
                detail: "the pod runs the plan the configs give now".into(),
            },
            running.ports,
        ),
        Some(Ok(running)) => (
            RunningPlan {
                state: "differs",
                hash: Some(running.hash.clone()),
                detail: format!(
                    "the pod runs plan {} (ports {}); the configs now give {} (ports {}): the rollout controller replaces the pods of Deployments, StatefulSets and DaemonSets; other pods keep their plan until recreated",
                    or_empty(&running.hash),
                    list(&running.port_numbers()),
                    or_empty(&plan.hash),
                    list(&plan.port_numbers())
                ),
            },
            running.ports,
        ),
    };
    PodReport {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        ready: crate::pods::is_ready(pod),
        sidecar: crate::pods::carries_sidecar(pod),
        target_paths: target
            .target_paths()
            .into_iter()
            .filter(|p| p.container.is_none())
            .map(|p| p.path)
            .collect(),
        configs: matches,
        plan_hash: plan.hash.clone(),
        running_plan,
        ports: ports
            .into_iter()
            .map(|plan| PortReport { plan, live: None })
            .collect(),
        discarded: plan.discarded,
        rejected: plan.rejected,
        sidecar_error: None,
        sessions: Vec::new(),
        requests: Vec::new(),
        notes: Vec::new(),
    }
}

/// The matched paths without a container when there are any (the `/container/<c>` forms of a
/// matched path match too), else the container paths.
fn shown_paths(paths: Vec<TargetPath>) -> Vec<String> {
    let bare: Vec<String> = paths
        .iter()
        .filter(|p| p.container.is_none())
        .map(|p| p.path.clone())
        .collect();
    match bare.is_empty() {
        true => paths.into_iter().map(|p| p.path).collect(),
        false => bare,
    }
}

fn or_empty(hash: &str) -> &str {
    if hash.is_empty() { "(empty)" } else { hash }
}

/// `443, 8443` or `none`.
pub fn list(ports: &[u16]) -> String {
    match ports.is_empty() {
        true => "none".into(),
        false => ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

//! The mutation: a pure function from (pod, its target paths, namespace, configs, settings) to
//! the injected pod. No I/O; the admission handler and `inject` share it.
//!
//! Decisions:
//! * Container order. `tls-steal-init` is appended after the pod's existing init containers, so
//!   the capture rules come after any a mesh's init container installed (docs/architecture.md,
//!   "Injection") and after app init containers that may write the certificates the proxy loads.
//!   In native mode `tls-steal-proxy` is the init container right after it (`restartPolicy:
//!   Always`); its startup probe makes the kubelet start the app containers only once it runs.
//!   In classic mode it is the first regular container.
//! * Ports no container declares are still captured: `containerPort` is informational in
//!   Kubernetes and the plan must stay exactly what `build_plan` returns (its hash is what the
//!   rollout controller compares); they are reported in [`Injection::undeclared_ports`] (warning
//!   event + metric).
//! * Files: each PEM path is served from the volume that covers it in the target container
//!   (longest component-wise mount-path prefix), mounted read-only at the same path and subPath
//!   into the proxy. Paths on no volume (baked into the image), or whose mount path is already
//!   taken in the proxy by another volume, make the pod `shareProcessNamespace: true` and give the
//!   proxy `SYS_PTRACE` so it can read `/proc/<pid>/root` of the target container.
//! * kubectl's default container: classic mode makes the proxy the first container, which
//!   `kubectl logs`/`exec` without `-c` would pick, and with init containers (both modes add
//!   them) kubectl prints a "Defaulted container" notice; so the pod's own first container is
//!   named in `kubectl.kubernetes.io/default-container` (unless the pod names one).
//! * Probes of app containers that target a captured port move to the proxy's admin port
//!   ([`crate::probes`]).
//! * Hardening: see [`proxy_security`]; `tls-steal-init` runs as root with only `NET_ADMIN` and
//!   `NET_RAW`, no privilege escalation, the runtime's seccomp profile.
//! * Idempotence: a pod that already has `tls-steal-proxy`, `tls-steal-init` or the status
//!   annotation is left unchanged ([`SkipReason::AlreadyInjected`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ExecAction, Lifecycle, LifecycleHandler, Pod};
use serde::{Deserialize, Serialize};
use tls_steal_crds::plan::DiscardedPort;
use tls_steal_crds::{ConfigSource, PodTarget, StealPlan, build_plan};

use crate::probes::{self, Rewrite};
use crate::settings::{Settings, SidecarMode};
use tls_steal_crds::contract::{
    INIT_CONTAINER, POD_OPT_OUT_KEY, PROXY_CONTAINER, RESERVED_PORTS, STATUS_ANNOTATION,
};

mod containers;
mod patch;

pub use containers::SIDECAR_BINARY;
use containers::{init_container, proxy_container, proxy_mounts};
use patch::PatchShape;
pub use patch::{Mount, PodShape};

/// Why a pod was left unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// No config applies to the pod.
    NoMatchingConfig,
    /// Configs apply, but every one of them is invalid.
    InvalidConfigs,
    /// The pod already has the sidecar or the status annotation.
    AlreadyInjected,
    /// `hostNetwork: true`: iptables rules would capture the node's traffic.
    HostNetwork,
    /// A Windows pod (`spec.os.name: windows`, or a `kubernetes.io/os: windows` node
    /// selector): the init container's iptables and the Linux sidecar cannot run there, and the
    /// API server refuses Linux security fields on a pod whose `os` is Windows.
    Windows,
    /// `tls-steal.io/inject: "false"`.
    OptOut,
    /// One of the webhook's own pods.
    OwnPod,
    /// The pod has no spec.
    NoSpec,
    /// `kube-system` or the chart's own namespace: never injected, whatever their labels say.
    ProtectedNamespace,
    /// A control-plane pod (`tier: control-plane`, or `component` naming a control-plane part).
    ControlPlane,
    /// Classic mode and a pod that runs to completion (`restartPolicy` `Never` or `OnFailure`:
    /// a Job's pod): the proxy, a regular container that never exits, would keep it from ever
    /// completing. Native sidecars end with the pod, so native mode injects it.
    RunsToCompletion,
    /// A container of the pod declares one of the proxy's own TCP ports (15400, 15401,
    /// 15443): the proxy and that container could not both listen.
    PortConflict,
}

impl SkipReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoMatchingConfig => "no_matching_config",
            SkipReason::InvalidConfigs => "invalid_configs",
            SkipReason::AlreadyInjected => "already_injected",
            SkipReason::HostNetwork => "host_network",
            SkipReason::Windows => "windows",
            SkipReason::OptOut => "opt_out",
            SkipReason::OwnPod => "own_pod",
            SkipReason::NoSpec => "no_spec",
            SkipReason::ProtectedNamespace => "protected_namespace",
            SkipReason::ControlPlane => "control_plane",
            SkipReason::RunsToCompletion => "runs_to_completion",
            SkipReason::PortConflict => "port_conflict",
        }
    }

    pub const ALL: [SkipReason; 12] = [
        SkipReason::NoMatchingConfig,
        SkipReason::InvalidConfigs,
        SkipReason::AlreadyInjected,
        SkipReason::HostNetwork,
        SkipReason::Windows,
        SkipReason::OptOut,
        SkipReason::OwnPod,
        SkipReason::NoSpec,
        SkipReason::ProtectedNamespace,
        SkipReason::ControlPlane,
        SkipReason::RunsToCompletion,
        SkipReason::PortConflict,
    ];
}

/// A pod's `terminationGracePeriodSeconds` when it sets none.
const DEFAULT_GRACE_SECONDS: u64 = 30;

/// Control-plane components, as kubeadm and most distributions label their static pods.
const CONTROL_PLANE_COMPONENTS: [&str; 5] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "cloud-controller-manager",
];

/// The `tls-steal.io/status` annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStatus {
    /// Ids of the configs that contributed ports.
    pub configs: Vec<String>,
    /// Captured ports.
    pub ports: Vec<u16>,
    /// The plan hash (same as the controller's `tls-steal.io/config-hash`).
    pub hash: String,
    /// Port entries that lost the merge.
    pub discarded: Vec<DiscardedPort>,
    /// `native` or `classic`.
    pub sidecar_mode: String,
}

/// A pod that got the sidecar.
#[derive(Clone, Debug)]
pub struct Injection {
    pub pod: Pod,
    pub plan: StealPlan,
    /// Plan ports no container of the pod declares (still captured; warned about).
    pub undeclared_ports: Vec<u16>,
    /// (container, path) resolved through `/proc/<pid>/root` rather than a volume.
    pub proc_files: Vec<(String, String)>,
    /// App probes moved to the proxy's admin port.
    pub probe_rewrites: Vec<Rewrite>,
}

/// What [`mutate`] decided for a pod, before it is applied: the plan and the additions.
/// [`Mutation::apply`] makes the injected pod; [`Mutation::patch_json`] writes the same additions
/// as the JSON patch admission answers with, without copying or serialising the pod.
#[derive(Clone, Debug)]
pub struct Mutation {
    pub plan: StealPlan,
    /// Plan ports no container of the pod declares (still captured; warned about).
    pub undeclared_ports: Vec<u16>,
    /// (container, path) resolved through `/proc/<pid>/root` rather than a volume.
    pub proc_files: Vec<(String, String)>,
    /// Appended to the init containers.
    init_containers: Vec<Container>,
    /// Classic mode: inserted as the first container.
    first_container: Option<Container>,
    /// App probes moved to the proxy's admin port (see [`crate::probes`]).
    pub probe_rewrites: Vec<Rewrite>,
    /// When the pod names none: kubectl's default container, the pod's first (see
    /// [`plan_mutation`]).
    default_container: Option<String>,
    /// The `tls-steal.io/status` annotation.
    status: String,
    /// What the patch is written against.
    shape: PatchShape,
}

/// The result of [`mutate`].
#[derive(Clone, Debug)]
pub enum Outcome {
    Skipped(SkipReason),
    Injected(Box<Injection>),
}

/// The skips that do not depend on configs. Checked before any owner lookup.
pub fn precheck(pod: &Pod, namespace: &str, settings: &Settings) -> Option<SkipReason> {
    let meta = &pod.metadata;
    if namespace == "kube-system" || settings.own_namespace.as_deref() == Some(namespace) {
        return Some(SkipReason::ProtectedNamespace);
    }
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k));
    if label("tier").is_some_and(|t| t == "control-plane")
        || label("component").is_some_and(|c| CONTROL_PLANE_COMPONENTS.contains(&c.as_str()))
    {
        return Some(SkipReason::ControlPlane);
    }
    let Some(spec) = &pod.spec else {
        return Some(SkipReason::NoSpec);
    };
    let has = |name: &str| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == name)
    };
    if has(PROXY_CONTAINER)
        || has(INIT_CONTAINER)
        || meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(STATUS_ANNOTATION))
    {
        return Some(SkipReason::AlreadyInjected);
    }
    if spec.host_network == Some(true) {
        return Some(SkipReason::HostNetwork);
    }
    if is_windows(
        spec.os.as_ref().map(|os| os.name.as_str()),
        spec.node_selector.as_ref(),
    ) {
        return Some(SkipReason::Windows);
    }
    let opted_out = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .and_then(|m| m.get(POD_OPT_OUT_KEY))
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    };
    if opted_out(&meta.labels) || opted_out(&meta.annotations) {
        return Some(SkipReason::OptOut);
    }
    if let Some((k, v)) = &settings.self_label
        && meta.labels.as_ref().and_then(|l| l.get(k)) == Some(v)
    {
        return Some(SkipReason::OwnPod);
    }
    None
}

/// A Windows pod: `os.name` says so, or a node selector picks Windows nodes.
pub fn is_windows(os_name: Option<&str>, node_selector: Option<&BTreeMap<String, String>>) -> bool {
    let selected = node_selector
        .and_then(|s| s.get("kubernetes.io/os"))
        .map(String::as_str);
    os_name == Some("windows") || selected == Some("windows")
}

/// Injects the init container and the proxy into `pod` when configs apply. `target` is
/// `PodTarget::from_pod(pod)` completed with any owners found by lookup.
pub fn mutate(
    pod: &Pod,
    target: &PodTarget,
    namespace: &str,
    configs: &[ConfigSource],
    settings: &Settings,
) -> Outcome {
    match mutation(pod, target, namespace, configs, settings) {
        Ok(m) => Outcome::Injected(Box::new(m.apply(pod))),
        Err(reason) => Outcome::Skipped(reason),
    }
}

/// [`mutate`] up to the decision: what would be added to `pod`, or why nothing is.
pub fn mutation(
    pod: &Pod,
    target: &PodTarget,
    namespace: &str,
    configs: &[ConfigSource],
    settings: &Settings,
) -> Result<Mutation, SkipReason> {
    if let Some(reason) = precheck(pod, namespace, settings) {
        return Err(reason);
    }
    // precheck: the pod has a spec.
    let Some(shape) = PodShape::of(pod) else {
        return Err(SkipReason::NoSpec);
    };
    shape_mutation(&shape, target, namespace, configs, settings)
}

/// [`mutation`] of a pod that passed [`precheck`], from its shape.
pub fn shape_mutation(
    shape: &PodShape,
    target: &PodTarget,
    namespace: &str,
    configs: &[ConfigSource],
    settings: &Settings,
) -> Result<Mutation, SkipReason> {
    let plan = plan_for(shape, target, namespace, configs, settings)?;
    let plan_json = plan.to_json();
    Ok(plan_mutation(shape, plan, &plan_json, target, settings))
}

/// The plan of a pod that passed [`precheck`], or why it gets none. Both decision paths
/// (`shape_mutation` and admission's memo) come here. The skips that depend on the pod's shape
/// and the settings are checked once configs apply, so only pods someone meant to steal from
/// are reported.
pub fn plan_for(
    shape: &PodShape,
    target: &PodTarget,
    namespace: &str,
    configs: &[ConfigSource],
    settings: &Settings,
) -> Result<StealPlan, SkipReason> {
    let plan = build_plan(target, namespace, configs);
    if plan.is_empty() {
        return Err(if plan.rejected.is_empty() {
            SkipReason::NoMatchingConfig
        } else {
            SkipReason::InvalidConfigs
        });
    }
    if settings.sidecar_mode == SidecarMode::Classic && shape.runs_to_completion {
        return Err(SkipReason::RunsToCompletion);
    }
    if let Some(reason) = target_skip(target) {
        return Err(reason);
    }
    Ok(plan)
}

/// Why the pods of `target` get no sidecar whatever the configs say, from their containers
/// alone: a container declares one of the proxy's ports. The webhook checks it once configs
/// apply ([`plan_for`]); the rollout controller reads a workload's template with it, so it
/// never rolls out pods the webhook would skip.
pub fn target_skip(target: &PodTarget) -> Option<SkipReason> {
    (!proxy_ports_declared(target).is_empty()).then_some(SkipReason::PortConflict)
}

/// The proxy's own ports that a container of the pod declares (TCP).
pub fn proxy_ports_declared(target: &PodTarget) -> Vec<u16> {
    RESERVED_PORTS
        .into_iter()
        .filter(|p| target.containers.iter().any(|c| c.ports.contains(p)))
        .collect()
}

/// Plan ports that no container of the pod declares.
pub fn undeclared_ports(plan: &StealPlan, target: &PodTarget) -> Vec<u16> {
    plan.port_numbers()
        .into_iter()
        .filter(|p| !target.containers.iter().any(|c| c.ports.contains(p)))
        .collect()
}

/// What [`mutation`] adds for `plan` (`plan_json` is `plan.to_json()`, which the caller may
/// need too). Of the target it reads only the declared ports (for
/// [`Mutation::undeclared_ports`]): the patch is a function of the plan, the shape and the
/// settings, which admission's memo relies on.
pub fn plan_mutation(
    shape: &PodShape,
    plan: StealPlan,
    plan_json: &str,
    target: &PodTarget,
    settings: &Settings,
) -> Mutation {
    let (mounts, proc_files) = proxy_mounts(shape, &plan);
    let probe_rewrites = probes::rewrites(
        shape
            .containers
            .iter()
            .map(|c| (c.name.as_str(), &c.probes)),
        &plan.port_numbers(),
    );
    let init = init_container(&plan, settings);
    let mut proxy = proxy_container(
        plan_json,
        probes::app_probes_json(&probe_rewrites),
        mounts,
        !proc_files.is_empty(),
        crate::settings::proxy_workers(settings.workers, shape.workers.as_deref()),
        shape.grace_seconds,
        settings,
    );
    let (init_containers, first_container) = match settings.sidecar_mode {
        SidecarMode::Native => {
            proxy.restart_policy = Some("Always".into());
            (vec![init, proxy], None)
        }
        SidecarMode::Classic => {
            // The kubelet starts the next container only once this hook returns: the app
            // starts after the proxy is ready (as Istio's holdApplicationUntilProxyStarts).
            proxy.lifecycle = Some(Lifecycle {
                post_start: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(vec![SIDECAR_BINARY.into(), "wait".into()]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            (vec![init], Some(proxy))
        }
    };
    let status = InjectionStatus {
        configs: plan.configs.clone(),
        ports: plan.port_numbers(),
        hash: plan.hash.clone(),
        discarded: plan.discarded.clone(),
        sidecar_mode: settings.sidecar_mode.as_str().into(),
    };
    let undeclared_ports = undeclared_ports(&plan, target);
    // kubectl `logs`, `exec`, `cp` and `attach` without `-c` take the first container, which
    // classic mode makes the proxy, and print "Defaulted container ... out of" whenever a pod
    // has init containers (both modes add some): naming the pod's own first container keeps
    // both as they were before injection (Istio does the same).
    let default_container = match shape.patch.names_default_container {
        false => shape.containers.first().map(|c| c.name.clone()),
        true => None,
    };
    Mutation {
        plan,
        undeclared_ports,
        proc_files,
        init_containers,
        default_container,
        first_container,
        probe_rewrites,
        status: serde_json::to_string(&status).expect("status serialises"),
        shape: shape.patch.clone(),
    }
}

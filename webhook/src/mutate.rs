//! The mutation: a pure function from (pod, its target paths, namespace, configs, settings) to
//! the injected pod. No I/O; the admission handler and `inject` share it.
//!
//! Decisions:
//! * Container order. `tls-steal-init` is appended after the pod's existing init containers, so
//!   the capture rules come after any a mesh's init container installed (DESIGN: "appended after
//!   mesh rules") and after app init containers that may write the certificates the proxy loads.
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
//! * Probes of app containers that target a captured port move to the proxy's admin port
//!   ([`crate::probes`]).
//! * Hardening: see [`proxy_security`]; `tls-steal-init` runs as root with only `NET_ADMIN` and
//!   `NET_RAW`, no privilege escalation, the runtime's seccomp profile.
//! * Idempotence: a pod that already has `tls-steal-proxy`, `tls-steal-init` or the status
//!   annotation is left unchanged ([`SkipReason::AlreadyInjected`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    Lifecycle, LifecycleHandler, ObjectFieldSelector, Pod, PodSpec, Probe, SeccompProfile,
    SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use tls_steal_crds::plan::DiscardedPort;
use tls_steal_crds::{ConfigSource, PodTarget, StealPlan, build_plan};

use crate::probes::{self, ContainerProbes, Rewrite, probe_field};
use crate::settings::{Settings, SidecarMode};
use crate::{
    ADMIN_PORT, APP_PROBES_ENV, CAPTURE_PORT, INIT_CONTAINER, PLAN_ENV, POD_IP_ENV,
    POD_OPT_OUT_KEY, PROXY_CONTAINER, PROXY_UID, STATUS_ANNOTATION,
};

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
    /// `tls-steal.io/inject: "false"`.
    OptOut,
    /// One of the webhook's own pods.
    OwnPod,
    /// The pod has no spec.
    NoSpec,
}

impl SkipReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoMatchingConfig => "no_matching_config",
            SkipReason::InvalidConfigs => "invalid_configs",
            SkipReason::AlreadyInjected => "already_injected",
            SkipReason::HostNetwork => "host_network",
            SkipReason::OptOut => "opt_out",
            SkipReason::OwnPod => "own_pod",
            SkipReason::NoSpec => "no_spec",
        }
    }

    pub const ALL: [SkipReason; 7] = [
        SkipReason::NoMatchingConfig,
        SkipReason::InvalidConfigs,
        SkipReason::AlreadyInjected,
        SkipReason::HostNetwork,
        SkipReason::OptOut,
        SkipReason::OwnPod,
        SkipReason::NoSpec,
    ];
}

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
    /// The `tls-steal.io/status` annotation.
    status: String,
    /// What the patch is written against.
    shape: PatchShape,
}

/// Everything the mutation reads from a pod that passed [`precheck`], besides its target
/// ([`PodTarget`]): the pods of one ReplicaSet have equal shapes and targets, so they get equal
/// mutations and patches, which is what lets admission remember decisions
/// ([`crate::memo`]). The mutation is computed from this, not from the pod, so it cannot read
/// anything the memo does not key on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodShape {
    /// Each container's name, volume mounts, named ports and probes, in pod order.
    containers: Vec<ContainerMounts>,
    patch: PatchShape,
}

/// The fields a patch adds to or replaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PatchShape {
    /// `metadata.annotations`: absent, or present with this status annotation (if any).
    annotations: Option<Option<String>>,
    /// `spec.initContainers`: absent, or how many.
    init_containers: Option<usize>,
    share_process_namespace: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ContainerMounts {
    name: String,
    mounts: Vec<Mount>,
    /// Named ports and probes, for the probe rewrite.
    probes: ContainerProbes,
}

/// The fields of a `VolumeMount` that the proxy's mount copies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mount {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub sub_path_expr: Option<String>,
}

impl PodShape {
    /// `None` for a pod without a spec.
    pub fn of(pod: &Pod) -> Option<PodShape> {
        let spec = pod.spec.as_ref()?;
        let containers = spec
            .containers
            .iter()
            .map(|c| ContainerMounts {
                name: c.name.clone(),
                mounts: c
                    .volume_mounts
                    .iter()
                    .flatten()
                    .map(|m| Mount {
                        name: m.name.clone(),
                        mount_path: m.mount_path.clone(),
                        sub_path: m.sub_path.clone(),
                        sub_path_expr: m.sub_path_expr.clone(),
                    })
                    .collect(),
                probes: ContainerProbes::of(c),
            })
            .collect();
        let annotations = pod
            .metadata
            .annotations
            .as_ref()
            .map(|a| a.get(STATUS_ANNOTATION).cloned());
        Some(PodShape {
            containers,
            patch: PatchShape {
                annotations,
                init_containers: spec.init_containers.as_ref().map(Vec::len),
                share_process_namespace: spec.share_process_namespace,
            },
        })
    }
}

impl Mutation {
    /// The injected pod. `pod` is the pod the mutation was computed for.
    pub fn apply(self, pod: &Pod) -> Injection {
        let mut out = pod.clone();
        let spec: &mut PodSpec = out.spec.get_or_insert_with(Default::default);
        if !self.proc_files.is_empty() {
            spec.share_process_namespace = Some(true);
        }
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .extend(self.init_containers);
        for r in self.probe_rewrites.iter() {
            if let Some(c) = spec.containers.get_mut(r.index) {
                r.apply(c);
            }
        }
        if let Some(c) = self.first_container {
            spec.containers.insert(0, c);
        }
        out.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(STATUS_ANNOTATION.into(), self.status);
        Injection {
            pod: out,
            plan: self.plan,
            undeclared_ports: self.undeclared_ports,
            proc_files: self.proc_files,
            probe_rewrites: self.probe_rewrites,
        }
    }

    /// The RFC 6902 JSON patch (serialised) that turns `pod`, the pod the mutation was computed
    /// for, into the pod [`Mutation::apply`] returns; the same as `json_patch::diff` of the two
    /// pods (containers inserted in classic mode are added, not replaced index by index, so the
    /// pod's own containers stay exactly as sent). It is written from the pod's [`PodShape`];
    /// `pod` is only read by the check against [`Mutation::apply`] in debug builds.
    pub fn patch_json(&self, pod: &Pod) -> Result<Vec<u8>, serde_json::Error> {
        let json = serde_json::to_vec(&self.patch_ops())?;
        if cfg!(debug_assertions) {
            let mut doc = serde_json::to_value(pod)?;
            let patch: json_patch::Patch = serde_json::from_slice(&json)?;
            json_patch::patch(&mut doc, &patch).expect("the injection patch applies");
            let want = serde_json::to_value(&self.clone().apply(pod).pod)?;
            assert_eq!(
                doc, want,
                "the injection patch must produce the injected pod"
            );
        }
        Ok(json)
    }

    /// [`Mutation::patch_json`] as a [`json_patch::Patch`].
    pub fn patch(&self, pod: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::from_slice(&self.patch_json(pod)?)
    }

    /// In the order `json_patch::diff` would list them (object keys sorted).
    fn patch_ops(&self) -> Vec<PatchOp<'_>> {
        let mut ops = Vec::new();
        let add_or_replace = |exists: bool| if exists { "replace" } else { "add" };
        match &self.shape.annotations {
            None => ops.push(PatchOp {
                op: "add",
                path: "/metadata/annotations".into(),
                value: PatchValue::Status(&self.status),
            }),
            Some(a) if a.as_ref() != Some(&self.status) => ops.push(PatchOp {
                op: add_or_replace(a.is_some()),
                path: format!("/metadata/annotations/{}", pointer_token(STATUS_ANNOTATION)),
                value: PatchValue::Str(&self.status),
            }),
            Some(_) => {}
        }
        // Before the classic-mode insertion at index 0, so the indices are the pod's own.
        for r in &self.probe_rewrites {
            let probe = format!("/spec/containers/{}/{}", r.index, probe_field(r.kind));
            if r.was_tcp {
                ops.push(PatchOp {
                    op: "remove",
                    path: format!("{probe}/tcpSocket"),
                    value: PatchValue::None,
                });
            }
            ops.push(PatchOp {
                op: if r.was_tcp { "add" } else { "replace" },
                path: format!("{probe}/httpGet"),
                value: PatchValue::HttpGet(r.admin_action()),
            });
        }
        if let Some(c) = &self.first_container {
            ops.push(PatchOp {
                op: "add",
                path: "/spec/containers/0".into(),
                value: PatchValue::Container(c),
            });
        }
        match self.shape.init_containers {
            None => ops.push(PatchOp {
                op: "add",
                path: "/spec/initContainers".into(),
                value: PatchValue::Containers(&self.init_containers),
            }),
            Some(existing) => {
                for (i, c) in self.init_containers.iter().enumerate() {
                    ops.push(PatchOp {
                        op: "add",
                        path: format!("/spec/initContainers/{}", existing + i),
                        value: PatchValue::Container(c),
                    });
                }
            }
        }
        let share = self.shape.share_process_namespace;
        if !self.proc_files.is_empty() && share != Some(true) {
            ops.push(PatchOp {
                op: add_or_replace(share.is_some()),
                path: "/spec/shareProcessNamespace".into(),
                value: PatchValue::Bool(true),
            });
        }
        ops
    }
}

/// One patch operation, serialised as `{"op", "path", "value"}` without building a `Value`.
#[derive(Serialize)]
struct PatchOp<'a> {
    op: &'static str,
    path: String,
    #[serde(skip_serializing_if = "PatchValue::is_none")]
    value: PatchValue<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PatchValue<'a> {
    Bool(bool),
    Str(&'a str),
    /// An annotations map holding only the status.
    Status(#[serde(serialize_with = "status_map")] &'a str),
    Container(&'a Container),
    Containers(&'a [Container]),
    HttpGet(HTTPGetAction),
    /// A `remove` has no value.
    None,
}

impl PatchValue<'_> {
    fn is_none(&self) -> bool {
        matches!(self, PatchValue::None)
    }
}

fn status_map<S: serde::Serializer>(status: &&str, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(STATUS_ANNOTATION, status)?;
    m.end()
}

/// Escapes a JSON-pointer token (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The result of [`mutate`].
#[derive(Clone, Debug)]
pub enum Outcome {
    Skipped(SkipReason),
    Injected(Box<Injection>),
}

/// The skips that do not depend on configs. Checked before any owner lookup.
pub fn precheck(pod: &Pod, settings: &Settings) -> Option<SkipReason> {
    let meta = &pod.metadata;
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
    if let Some(reason) = precheck(pod, settings) {
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
    let plan = plan_for(target, namespace, configs)?;
    let plan_json = plan.to_json();
    Ok(plan_mutation(shape, plan, &plan_json, target, settings))
}

/// The plan of a pod that passed [`precheck`], or why it gets none.
pub fn plan_for(
    target: &PodTarget,
    namespace: &str,
    configs: &[ConfigSource],
) -> Result<StealPlan, SkipReason> {
    let plan = build_plan(target, namespace, configs);
    if plan.is_empty() {
        return Err(if plan.rejected.is_empty() {
            SkipReason::NoMatchingConfig
        } else {
            SkipReason::InvalidConfigs
        });
    }
    Ok(plan)
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
/// settings, which [`crate::memo`] relies on.
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
    Mutation {
        plan,
        undeclared_ports,
        proc_files,
        init_containers,
        first_container,
        probe_rewrites,
        status: serde_json::to_string(&status).expect("status serialises"),
        shape: shape.patch.clone(),
    }
}

fn ports_arg(plan: &StealPlan) -> String {
    plan.port_numbers()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn init_container(plan: &StealPlan, settings: &Settings) -> Container {
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(vec![
            "init".into(),
            "--ports".into(),
            ports_arg(plan),
            "--proxy-port".into(),
            CAPTURE_PORT.to_string(),
        ]),
        resources: settings.resources.clone(),
        // Root with only the two capabilities iptables needs: Pod Security "baseline" forbids
        // both, which is why `pod_security` tests name exactly this rule (README).
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn admin_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ADMIN_PORT.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Where the sidecar image keeps its binary (the `postStart` hook runs it).
pub const SIDECAR_BINARY: &str = "/usr/local/bin/tls-steal-sidecar";

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn proxy_container(
    plan_json: &str,
    app_probes_json: Option<String>,
    mounts: Vec<VolumeMount>,
    proc_fallback: bool,
    settings: &Settings,
) -> Container {
    let mut env = vec![
        EnvVar {
            name: PLAN_ENV.into(),
            value: Some(plan_json.to_owned()),
            value_from: None,
        },
        EnvVar {
            name: POD_IP_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "status.podIP".into(),
                }),
                ..Default::default()
            }),
        },
    ];
    if let Some(json) = app_probes_json {
        env.push(EnvVar {
            name: APP_PROBES_ENV.into(),
            value: Some(json),
            value_from: None,
        });
    }
    Container {
        name: PROXY_CONTAINER.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(vec![
            "proxy".into(),
            "--drain-delay".into(),
            settings.drain_delay_seconds.to_string(),
            "--max-connections".into(),
            settings.max_connections.to_string(),
        ]),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("tls-steal".into()),
                container_port: CAPTURE_PORT.into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("tls-steal-admin".into()),
                container_port: ADMIN_PORT.into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(admin_probe("/readyz", 2, 3)),
        startup_probe: Some(admin_probe("/healthz", 1, 60)),
        resources: settings.resources.clone(),
        security_context: Some(proxy_security(proc_fallback)),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    }
}

/// Without the `/proc` fallback the proxy meets Pod Security "restricted": a fixed non-root uid,
/// no capabilities, read-only root, the runtime's seccomp profile. Reading another container's
/// files through `/proc/<pid>/root` needs `SYS_PTRACE` (and `DAC_READ_SEARCH` for a key only its
/// owner may read), which Kubernetes makes effective only for root (a non-root container gets
/// no effective added capabilities), so only then does the proxy run as uid 0 with those two.
fn proxy_security(proc_fallback: bool) -> SecurityContext {
    let uid = if proc_fallback { 0 } else { PROXY_UID };
    SecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        run_as_non_root: Some(!proc_fallback),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            add: proc_fallback.then(|| vec!["SYS_PTRACE".into(), "DAC_READ_SEARCH".into()]),
            drop: Some(vec!["ALL".into()]),
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

/// Splits an absolute path into its components (ignoring empty ones and `.`).
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// The mount among `mounts` whose mount path is the longest component-wise prefix of `path`.
pub fn covering_mount<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let target = components(path);
    mounts
        .iter()
        .filter_map(|m| {
            let mp = components(&m.mount_path);
            target.starts_with(&mp).then_some((mp.len(), m))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, m)| m)
}

/// The read-only mounts the proxy needs, and the files that no volume (usable by the proxy)
/// covers.
fn proxy_mounts(shape: &PodShape, plan: &StealPlan) -> (Vec<VolumeMount>, Vec<(String, String)>) {
    let mut mounts: Vec<VolumeMount> = Vec::new();
    let mut proc_files = Vec::new();
    for (container, path) in plan.files() {
        let found = shape
            .containers
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| covering_mount(&c.mounts, &path))
            .map(|m| VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                sub_path: m.sub_path.clone(),
                sub_path_expr: m.sub_path_expr.clone(),
                read_only: Some(true),
                mount_propagation: None,
                recursive_read_only: None,
            });
        match found {
            Some(m) => {
                let same_path =
                    |o: &VolumeMount| components(&o.mount_path) == components(&m.mount_path);
                match mounts.iter().find(|o| same_path(o)) {
                    None => mounts.push(m),
                    Some(o) if *o == m => {}
                    // Another container mounts a different volume at this path: the proxy can
                    // only have one, so this file is read through /proc.
                    Some(_) => proc_files.push((container, path)),
                }
            }
            None => proc_files.push((container, path)),
        }
    }
    (mounts, proc_files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Fields the pod already has are replaced, and containers are added at the right indices.
    #[test]
    fn patch_over_existing_fields() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"a/b~c": "1"}},
            "spec": {"shareProcessNamespace": false, "initContainers": [{"name": "setup"}],
                "containers": [{"name": "app", "ports": [{"containerPort": 8443}]}, {"name": "log"}]}
        }))
        .unwrap();
        let spec = serde_json::from_value(json!({
            "targetPath": "pod/p",
            "ports": [{"port": 8443,
                "agentAsServer": {"authentication": {"certPem": "/certs/tls.crt", "keyPem": "/certs/tls.key"}},
                "agentAsClient": {"verification": {"acceptAnyCert": true}}}]
        }))
        .unwrap();
        let configs = [ConfigSource::namespaced("ns", "c", spec)];
        let target = PodTarget::from_pod(&pod);
        for mode in [SidecarMode::Native, SidecarMode::Classic] {
            let settings = Settings {
                sidecar_mode: mode,
                ..Settings::default()
            };
            let m = mutation(&pod, &target, "ns", &configs, &settings).unwrap();
            assert!(!m.proc_files.is_empty());
            let patch = m.patch(&pod).unwrap();
            let paths: Vec<(String, String)> = patch
                .iter()
                .map(|op| {
                    let v = serde_json::to_value(op).unwrap();
                    (
                        v["op"].as_str().unwrap().into(),
                        v["path"].as_str().unwrap().into(),
                    )
                })
                .collect();
            let p = |op: &str, path: &str| (op.to_string(), path.to_string());
            let mut want = vec![p("add", "/metadata/annotations/tls-steal.io~1status")];
            if mode == SidecarMode::Classic {
                want.push(p("add", "/spec/containers/0"));
            }
            want.push(p("add", "/spec/initContainers/1"));
            if mode == SidecarMode::Native {
                want.push(p("add", "/spec/initContainers/2"));
            }
            want.push(p("replace", "/spec/shareProcessNamespace"));
            assert_eq!(paths, want);
            let mut doc = serde_json::to_value(&pod).unwrap();
            json_patch::patch(&mut doc, &patch).unwrap();
            assert_eq!(doc, serde_json::to_value(m.apply(&pod).pod).unwrap());
        }
    }

    #[test]
    fn covering_mount_is_component_wise_and_longest() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [{
            "name": "app",
            "volumeMounts": [
                {"name": "a", "mountPath": "/etc"},
                {"name": "b", "mountPath": "/etc/tls/"},
                {"name": "c", "mountPath": "/etc/tlsx"},
                {"name": "d", "mountPath": "/etc/tls/key.pem", "subPath": "tls.key"},
            ]
        }]}}))
        .unwrap();
        let c = &PodShape::of(&pod).unwrap().containers[0].mounts;
        assert_eq!(covering_mount(c, "/etc/tls/cert.pem").unwrap().name, "b");
        assert_eq!(covering_mount(c, "/etc/tlsx/cert.pem").unwrap().name, "c");
        assert_eq!(covering_mount(c, "/etc/tls/key.pem").unwrap().name, "d");
        assert_eq!(covering_mount(c, "/etc/other").unwrap().name, "a");
        assert!(covering_mount(c, "/usr/share/cert.pem").is_none());
    }
}

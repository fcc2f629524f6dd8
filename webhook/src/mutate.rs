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
//! * Idempotence: a pod that already has `tls-steal-proxy`, `tls-steal-init` or the status
//!   annotation is left unchanged ([`SkipReason::AlreadyInjected`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, Pod, PodSpec, Probe,
    SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use tls_steal_crds::plan::DiscardedPort;
use tls_steal_crds::{ConfigSource, PodTarget, StealPlan, build_plan};

use crate::settings::{Settings, SidecarMode};
use crate::{
    ADMIN_PORT, CAPTURE_PORT, INIT_CONTAINER, PLAN_ENV, POD_OPT_OUT_KEY, PROXY_CONTAINER,
    STATUS_ANNOTATION,
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
    if let Some(reason) = precheck(pod, settings) {
        return Outcome::Skipped(reason);
    }
    let plan = build_plan(target, namespace, configs);
    if plan.is_empty() {
        return Outcome::Skipped(if plan.rejected.is_empty() {
            SkipReason::NoMatchingConfig
        } else {
            SkipReason::InvalidConfigs
        });
    }
    Outcome::Injected(Box::new(inject_plan(pod, plan, target, settings)))
}

fn inject_plan(pod: &Pod, plan: StealPlan, target: &PodTarget, settings: &Settings) -> Injection {
    let mut out = pod.clone();
    let spec: &mut PodSpec = out.spec.get_or_insert_with(Default::default);
    let (mounts, proc_files) = proxy_mounts(spec, &plan);
    if !proc_files.is_empty() {
        spec.share_process_namespace = Some(true);
    }

    let init = init_container(&plan, settings);
    let mut proxy = proxy_container(&plan, mounts, !proc_files.is_empty(), settings);
    let inits = spec.init_containers.get_or_insert_with(Vec::new);
    inits.push(init);
    match settings.sidecar_mode {
        SidecarMode::Native => {
            proxy.restart_policy = Some("Always".into());
            inits.push(proxy);
        }
        SidecarMode::Classic => spec.containers.insert(0, proxy),
    }

    let status = InjectionStatus {
        configs: plan.configs.clone(),
        ports: plan.port_numbers(),
        hash: plan.hash.clone(),
        discarded: plan.discarded.clone(),
        sidecar_mode: settings.sidecar_mode.as_str().into(),
    };
    out.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            STATUS_ANNOTATION.into(),
            serde_json::to_string(&status).expect("status serialises"),
        );

    let undeclared_ports = plan
        .port_numbers()
        .into_iter()
        .filter(|p| !target.containers.iter().any(|c| c.ports.contains(p)))
        .collect();
    Injection {
        pod: out,
        plan,
        undeclared_ports,
        proc_files,
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
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: None,
            }),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
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

fn proxy_container(
    plan: &StealPlan,
    mounts: Vec<VolumeMount>,
    proc_fallback: bool,
    settings: &Settings,
) -> Container {
    Container {
        name: PROXY_CONTAINER.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(vec!["proxy".into()]),
        env: Some(vec![EnvVar {
            name: PLAN_ENV.into(),
            value: Some(plan.to_json()),
            value_from: None,
        }]),
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
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: proc_fallback.then(|| Capabilities {
                add: Some(vec!["SYS_PTRACE".into()]),
                drop: None,
            }),
            ..Default::default()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    }
}

/// Splits an absolute path into its components (ignoring empty ones and `.`).
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// The mount of `container` whose mount path is the longest component-wise prefix of `path`.
pub fn covering_mount<'a>(container: &'a Container, path: &str) -> Option<&'a VolumeMount> {
    let target = components(path);
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let mp = components(&m.mount_path);
            target.starts_with(&mp).then_some((mp.len(), m))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, m)| m)
}

/// The read-only mounts the proxy needs, and the files that no volume (usable by the proxy)
/// covers.
fn proxy_mounts(spec: &PodSpec, plan: &StealPlan) -> (Vec<VolumeMount>, Vec<(String, String)>) {
    let mut mounts: Vec<VolumeMount> = Vec::new();
    let mut proc_files = Vec::new();
    for (container, path) in plan.files() {
        let found = spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| covering_mount(c, &path))
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

    #[test]
    fn covering_mount_is_component_wise_and_longest() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "app",
            "volumeMounts": [
                {"name": "a", "mountPath": "/etc"},
                {"name": "b", "mountPath": "/etc/tls/"},
                {"name": "c", "mountPath": "/etc/tlsx"},
                {"name": "d", "mountPath": "/etc/tls/key.pem", "subPath": "tls.key"},
            ]
        }))
        .unwrap();
        assert_eq!(covering_mount(&c, "/etc/tls/cert.pem").unwrap().name, "b");
        assert_eq!(covering_mount(&c, "/etc/tlsx/cert.pem").unwrap().name, "c");
        assert_eq!(covering_mount(&c, "/etc/tls/key.pem").unwrap().name, "d");
        assert_eq!(covering_mount(&c, "/etc/other").unwrap().name, "a");
        assert!(covering_mount(&c, "/usr/share/cert.pem").is_none());
    }
}

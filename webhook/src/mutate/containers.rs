//! The containers the mutation adds: `tls-steal-init`, `tls-steal-proxy` (its mounts, probes,
//! lifecycle and security context).

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, Probe, SeccompProfile, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tls_steal_crds::StealPlan;

use crate::settings::{SessionAuthorization, Settings};
use tls_steal_crds::contract::{
    ADMIN_PORT, ADMIN_PORT_NAME, APP_PROBES_ENV, CAPTURE_PORT, CAPTURE_PORT_NAME, INIT_CONTAINER,
    PLAN_ENV, POD_IP_ENV, POD_NAMESPACE_ENV, PROXY_CONTAINER, PROXY_UID, SESSION_AUTHORIZATION_ENV,
    SESSION_KEYS_ENV,
};
use tls_steal_crds::workers::Workers;

use super::*;

fn ports_arg(plan: &StealPlan) -> String {
    plan.port_numbers()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn init_container(plan: &StealPlan, settings: &Settings) -> Container {
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

pub(super) fn proxy_container(
    plan_json: &str,
    app_probes_json: Option<String>,
    mounts: Vec<VolumeMount>,
    proc_fallback: bool,
    workers: Workers,
    grace_seconds: u64,
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
    // Session authorization: the proxy checks tickets for its own namespace.
    env.push(EnvVar {
        name: POD_NAMESPACE_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.namespace".into(),
            }),
            ..Default::default()
        }),
    });
    let (authorization, keys) = match &settings.session_authorization {
        SessionAuthorization::Disabled => ("disabled", None),
        SessionAuthorization::Required { keys } => ("required", Some(keys.clone())),
    };
    env.push(EnvVar {
        name: SESSION_AUTHORIZATION_ENV.into(),
        value: Some(authorization.into()),
        value_from: None,
    });
    if let Some(keys) = keys {
        env.push(EnvVar {
            name: SESSION_KEYS_ENV.into(),
            value: Some(keys),
            value_from: None,
        });
    }
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
        args: Some(
            [
                "proxy".into(),
                "--drain-delay".into(),
                settings.drain_delay_seconds.to_string(),
                // In-flight requests may run until the kubelet would kill the app: cutting
                // them sooner (the proxy's own 25 s) would end what the app still finishes.
                "--drain-timeout".into(),
                grace_seconds.to_string(),
                "--max-connections".into(),
                settings.max_connections.to_string(),
            ]
            .into_iter()
            // `auto` is the proxy's default: no flag
            .chain(
                match workers {
                    Workers::Auto => None,
                    Workers::Fixed(n) => Some(["--workers".to_owned(), n.to_string()]),
                }
                .into_iter()
                .flatten(),
            )
            .collect(),
        ),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some(CAPTURE_PORT_NAME.into()),
                container_port: CAPTURE_PORT.into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(ADMIN_PORT_NAME.into()),
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
pub(super) fn proxy_mounts(
    shape: &PodShape,
    plan: &StealPlan,
) -> (Vec<VolumeMount>, Vec<(String, String)>) {
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

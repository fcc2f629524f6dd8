//! The injected pod against the Pod Security Standards (kubernetes.io/docs/concepts/security/
//! pod-security-standards, the "baseline" and "restricted" levels as published for v1.33),
//! written from the published rules.
//!
//! What tls-steal meets (README "Pod Security"):
//! * `tls-steal-proxy` meets "restricted" (and so "baseline"), unless the `/proc` fallback is
//!   used: then it runs as root with `SYS_PTRACE` and `DAC_READ_SEARCH`, which neither level allows.
//! * `tls-steal-init` breaks exactly one "baseline" rule, Capabilities: iptables needs `NET_ADMIN`
//!   and `NET_RAW`. Of "restricted" it also cannot meet "Running as Non-root" and "Running as
//!   Non-root user" (iptables runs as root). It meets every other rule. That is why the chart's
//!   webhook skips namespaces that enforce either level (their pods would be rejected).
//! * The pod-level fields tls-steal adds (`shareProcessNamespace` for the fallback) are allowed
//!   by both levels.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::{Value, json};
use tls_steal_crds::{ConfigSource, PodTarget};
use tls_steal_webhook::{Outcome, Settings, SidecarMode, mutate};

const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
const SAFE_SYSCTLS: [&str; 9] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
];
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

/// Violations of the "baseline" level, each as `<container or pod>: <rule>: <detail>`.
fn baseline(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    let mut v = Vec::new();
    let psc = spec.security_context.clone().unwrap_or_default();
    for (set, field) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if set == Some(true) {
            v.push(format!("pod: Host Namespaces: {field}"));
        }
    }
    if psc
        .windows_options
        .as_ref()
        .and_then(|w| w.host_process)
        .unwrap_or(false)
    {
        v.push("pod: HostProcess".into());
    }
    for vol in spec.volumes.iter().flatten() {
        if vol.host_path.is_some() {
            v.push(format!("pod: HostPath Volumes: {}", vol.name));
        }
    }
    if let Some(t) = psc.seccomp_profile.as_ref().map(|s| s.type_.as_str())
        && t == "Unconfined"
    {
        v.push("pod: Seccomp: Unconfined".into());
    }
    for s in psc.sysctls.iter().flatten() {
        if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
            v.push(format!("pod: Sysctls: {}", s.name));
        }
    }
    selinux(&psc.se_linux_options, "pod", &mut v);
    for c in containers(spec) {
        let n = &c.name;
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) {
            v.push(format!("{n}: Privileged Containers"));
        }
        if sc
            .windows_options
            .as_ref()
            .and_then(|w| w.host_process)
            .unwrap_or(false)
        {
            v.push(format!("{n}: HostProcess"));
        }
        let added: Vec<&String> = sc
            .capabilities
            .iter()
            .flat_map(|c| c.add.iter().flatten())
            .filter(|cap| !BASELINE_CAPS.contains(&cap.as_str()))
            .collect();
        if !added.is_empty() {
            v.push(format!("{n}: Capabilities: adds {added:?}"));
        }
        for p in c.ports.iter().flatten() {
            if p.host_port.unwrap_or(0) != 0 {
                v.push(format!("{n}: Host Ports: {:?}", p.host_port));
            }
        }
        if let Some(app_armor) = &sc.app_armor_profile
            && !matches!(app_armor.type_.as_str(), "RuntimeDefault" | "Localhost")
        {
            v.push(format!("{n}: AppArmor: {}", app_armor.type_));
        }
        selinux(&sc.se_linux_options, n, &mut v);
        if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            v.push(format!("{n}: /proc Mount Type"));
        }
        if let Some(t) = sc.seccomp_profile.as_ref().map(|s| s.type_.as_str())
            && t == "Unconfined"
        {
            v.push(format!("{n}: Seccomp: Unconfined"));
        }
    }
    v
}

fn selinux(o: &Option<k8s_openapi::api::core::v1::SELinuxOptions>, who: &str, v: &mut Vec<String>) {
    let Some(o) = o else { return };
    let allowed_type = o.type_.as_deref().is_none_or(|t| {
        [
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ]
        .contains(&t)
    });
    if !allowed_type || o.user.is_some() || o.role.is_some() {
        v.push(format!("{who}: SELinux"));
    }
}

/// Violations of the "restricted" level beyond "baseline".
fn restricted_only(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    let mut v = Vec::new();
    let psc = spec.security_context.clone().unwrap_or_default();
    for vol in spec.volumes.iter().flatten() {
        let value = serde_json::to_value(vol).unwrap();
        let kinds: Vec<&String> = value
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .collect();
        if kinds
            .iter()
            .any(|k| !RESTRICTED_VOLUMES.contains(&k.as_str()))
        {
            v.push(format!("pod: Volume Types: {} {kinds:?}", vol.name));
        }
    }
    for c in containers(spec) {
        let n = &c.name;
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!("{n}: Privilege Escalation"));
        }
        if !sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false) {
            v.push(format!("{n}: Running as Non-root"));
        }
        if sc.run_as_user.or(psc.run_as_user) == Some(0) {
            v.push(format!("{n}: Running as Non-root user"));
        }
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .or(psc.seccomp_profile.as_ref())
            .map(|s| s.type_.as_str());
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("{n}: Seccomp (restricted)"));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            v.push(format!("{n}: Capabilities (restricted): must drop ALL"));
        }
        let added: Vec<&String> = caps
            .add
            .iter()
            .flatten()
            .filter(|a| *a != "NET_BIND_SERVICE")
            .collect();
        if !added.is_empty() {
            v.push(format!("{n}: Capabilities (restricted): adds {added:?}"));
        }
    }
    v
}

fn only(pod: &Pod, name: &str) -> Pod {
    let mut p = pod.clone();
    let spec = p.spec.as_mut().unwrap();
    spec.containers.retain(|c| c.name == name);
    if let Some(i) = spec.init_containers.as_mut() {
        i.retain(|c| c.name == name);
    }
    p
}

/// An app pod that itself meets "restricted", with a Secret volume at `/etc/tls`.
fn app_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "web:1",
                "ports": [{"containerPort": 8443}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "readinessProbe": {"httpGet": {"port": 8443, "scheme": "HTTPS", "path": "/ready"}},
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls", "readOnly": true}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]
        }
    })
}

/// The app pod injected for a config whose PEM files are in `cert_dir` (`/etc/tls`: the Secret
/// volume; elsewhere: baked into the image).
fn injected(cert_dir: &str, mode: SidecarMode) -> Pod {
    let pod: Pod = serde_json::from_value(app_pod()).unwrap();
    let spec = serde_json::from_value(json!({
        "ports": [{"port": 8443,
            "agentAsServer": {"authentication": {"certPem": format!("{cert_dir}/tls.crt"), "keyPem": format!("{cert_dir}/tls.key")}},
            "agentAsClient": {"verification": {"trustRoots": [format!("{cert_dir}/ca.crt")]}}}]
    }))
    .unwrap();
    let configs = [ConfigSource::namespaced("shop", "web", spec)];
    let settings = Settings {
        sidecar_mode: mode,
        ..Settings::default()
    };
    match mutate(
        &pod,
        &PodTarget::from_pod(&pod),
        "shop",
        &configs,
        &settings,
    ) {
        Outcome::Injected(i) => {
            assert!(baseline(&pod).is_empty() && restricted_only(&pod).is_empty());
            i.pod
        }
        Outcome::Skipped(r) => panic!("not injected: {r:?}"),
    }
}

#[test]
fn the_proxy_meets_restricted_and_the_init_container_needs_only_its_capabilities() {
    for mode in [SidecarMode::Native, SidecarMode::Classic] {
        let pod = injected("/etc/tls", mode);
        let proxy = only(&pod, "tls-steal-proxy");
        assert_eq!(baseline(&proxy), Vec::<String>::new(), "{mode:?}");
        assert_eq!(restricted_only(&proxy), Vec::<String>::new(), "{mode:?}");

        assert_eq!(
            baseline(&pod),
            ["tls-steal-init: Capabilities: adds [\"NET_ADMIN\", \"NET_RAW\"]"],
            "{mode:?}: the one baseline rule the injected pod breaks"
        );
        let init = only(&pod, "tls-steal-init");
        assert_eq!(
            restricted_only(&init),
            [
                "tls-steal-init: Running as Non-root",
                "tls-steal-init: Running as Non-root user",
                "tls-steal-init: Capabilities (restricted): adds [\"NET_ADMIN\", \"NET_RAW\"]",
            ],
            "{mode:?}: the restricted rules iptables cannot meet"
        );
    }
}

#[test]
fn the_proc_fallback_is_the_exception() {
    // A certificate baked into the image: read through /proc/<pid>/root, which needs root.
    let pod = injected("/opt/app", SidecarMode::Native);
    let proxy = only(&pod, "tls-steal-proxy");
    assert_eq!(
        baseline(&proxy),
        ["tls-steal-proxy: Capabilities: adds [\"SYS_PTRACE\", \"DAC_READ_SEARCH\"]"]
    );
    assert_eq!(
        restricted_only(&proxy),
        [
            "tls-steal-proxy: Running as Non-root",
            "tls-steal-proxy: Running as Non-root user",
            "tls-steal-proxy: Capabilities (restricted): adds [\"SYS_PTRACE\", \"DAC_READ_SEARCH\"]",
        ]
    );
    assert_eq!(
        pod.spec.as_ref().unwrap().share_process_namespace,
        Some(true)
    );
}

/// The checker itself catches what it should (so the tests above can pass only for good reason).
#[test]
fn the_checker_catches_violations() {
    let pod: Pod = serde_json::from_value(json!({
        "spec": {"hostNetwork": true,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "securityContext": {"privileged": true,
                "capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}, "seccompProfile": {"type": "Unconfined"}},
                "ports": [{"containerPort": 80, "hostPort": 80}]}]}
    }))
    .unwrap();
    let b = baseline(&pod);
    for want in [
        "pod: Host Namespaces: hostNetwork",
        "pod: HostPath Volumes: h",
        "c: Privileged Containers",
        "c: Capabilities: adds [\"SYS_ADMIN\"]",
        "c: Host Ports: Some(80)",
        "c: Seccomp: Unconfined",
    ] {
        assert!(b.iter().any(|v| v == want), "{want} missing from {b:?}");
    }
    let r = restricted_only(&pod);
    for want in [
        "c: Privilege Escalation",
        "c: Running as Non-root",
        "c: Capabilities (restricted): must drop ALL",
        "pod: Volume Types: h [\"hostPath\"]",
    ] {
        assert!(r.iter().any(|v| v == want), "{want} missing from {r:?}");
    }
}

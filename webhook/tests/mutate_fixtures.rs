//! The pure mutation on JSON fixtures (`tests/fixtures/*.json`: a namespace, a pod as the API
//! server sends it at admission, and the configs in the cluster).
//!
//! Over 400 lines: one test per fixture or setting, all sharing the fixture loader and the patch check.

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use serde_json::{Value, json};
use tls_steal_crds::workers::Workers;
use tls_steal_crds::{
    ConfigSource, MirrordClusterTlsStealConfig, MirrordTlsStealConfig, PodTarget, StealPlan,
};
use tls_steal_webhook::{
    Injection, InjectionStatus, Outcome, SessionAuthorization, Settings, SidecarMode, SkipReason,
    mutate, mutation,
};

struct Fixture {
    namespace: String,
    /// The pod as the API server sends it.
    raw_pod: Value,
    pod: Pod,
    configs: Vec<ConfigSource>,
}

fn fixture(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let configs = v["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match c["kind"].as_str().unwrap() {
            "MirrordTlsStealConfig" => ConfigSource::from(
                &serde_json::from_value::<MirrordTlsStealConfig>(c.clone()).unwrap(),
            ),
            _ => ConfigSource::from(
                &serde_json::from_value::<MirrordClusterTlsStealConfig>(c.clone()).unwrap(),
            ),
        })
        .collect();
    Fixture {
        namespace: v["namespace"].as_str().unwrap().into(),
        raw_pod: v["pod"].clone(),
        pod: serde_json::from_value(v["pod"].clone()).unwrap(),
        configs,
    }
}

fn settings(mode: SidecarMode) -> Settings {
    Settings {
        image: "tls-steal/sidecar:test".into(),
        sidecar_mode: mode,
        ..Settings::default()
    }
}

fn run(f: &Fixture, mode: SidecarMode) -> Injection {
    let target = PodTarget::from_pod(&f.pod);
    let s = settings(mode);
    let injection = match mutate(&f.pod, &target, &f.namespace, &f.configs, &s) {
        Outcome::Injected(i) => *i,
        Outcome::Skipped(r) => panic!("skipped: {r:?}"),
    };
    // Idempotent: the output is left alone.
    let again = PodTarget::from_pod(&injection.pod);
    assert!(matches!(
        mutate(&injection.pod, &again, &f.namespace, &f.configs, &s),
        Outcome::Skipped(SkipReason::AlreadyInjected)
    ));
    // The plan handed to the proxy is valid for the sidecar.
    let proxy = container(&injection.pod, "tls-steal-proxy");
    let env = proxy.env.as_ref().unwrap();
    assert_eq!(env[0].name, "TLS_STEAL_PLAN");
    assert_eq!(
        StealPlan::from_json(env[0].value.as_deref().unwrap()).unwrap(),
        injection.plan
    );
    check_patch(f, &s, &injection);
    injection
}

/// `f`'s pod injected with `s` (it must be), its patch checked.
fn inject(f: &Fixture, s: &Settings) -> Injection {
    let target = PodTarget::from_pod(&f.pod);
    let i = match mutate(&f.pod, &target, &f.namespace, &f.configs, s) {
        Outcome::Injected(i) => *i,
        Outcome::Skipped(r) => panic!("skipped: {r:?}"),
    };
    check_patch(f, s, &i);
    i
}

/// The patch turns the pod as sent into the injected pod, like a full diff of the two would; in
/// native mode it is exactly that diff.
fn check_patch(f: &Fixture, s: &Settings, injection: &Injection) {
    let target = PodTarget::from_pod(&f.pod);
    let patch = mutation(&f.pod, &target, &f.namespace, &f.configs, s)
        .unwrap()
        .patch(&f.pod)
        .unwrap();
    let mut raw = f.raw_pod.clone();
    json_patch::patch(&mut raw, &patch).unwrap();
    assert_eq!(serde_json::from_value::<Pod>(raw).unwrap(), injection.pod);
    let before = serde_json::to_value(&f.pod).unwrap();
    let after = serde_json::to_value(&injection.pod).unwrap();
    let mut doc = before.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc, after);
    // A rewritten probe is patched as a whole action (`httpGet` replaced, or `tcpSocket` removed
    // and `httpGet` added), where a diff would list its fields one by one.
    if s.sidecar_mode == SidecarMode::Native && injection.probe_rewrites.is_empty() {
        assert_eq!(patch, json_patch::diff(&before, &after));
    }
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
    all_containers(pod).find(|c| c.name == name).unwrap()
}

fn names(cs: &Option<Vec<Container>>) -> Vec<&str> {
    cs.iter().flatten().map(|c| c.name.as_str()).collect()
}

fn proxy_mounts(pod: &Pod) -> Value {
    serde_json::to_value(&container(pod, "tls-steal-proxy").volume_mounts).unwrap()
}

fn status(pod: &Pod) -> InjectionStatus {
    serde_json::from_str(&pod.metadata.annotations.as_ref().unwrap()["tls-steal.io/status"])
        .unwrap()
}

#[test]
fn deployment_pod_exact_containers() {
    let f = fixture("deployment-pod");
    let i = run(&f, SidecarMode::Native);
    let spec = i.pod.spec.as_ref().unwrap();
    assert_eq!(
        names(&spec.init_containers),
        ["tls-steal-init", "tls-steal-proxy"]
    );
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(
        spec.containers[0],
        f.pod.spec.as_ref().unwrap().containers[0]
    );
    assert_eq!(spec.share_process_namespace, None);
    let inits = serde_json::to_value(&spec.init_containers).unwrap();
    let plan = i.plan.to_json();
    assert_eq!(
        inits,
        json!([
            {
                "name": "tls-steal-init",
                "image": "tls-steal/sidecar:test",
                "args": ["init", "--ports", "8443", "--proxy-port", "15443"],
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "10m", "memory": "32Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                    "runAsNonRoot": false,
                    "runAsUser": 0,
                    "seccompProfile": {"type": "RuntimeDefault"}
                }
            },
            {
                "name": "tls-steal-proxy",
                "image": "tls-steal/sidecar:test",
                "args": ["proxy", "--drain-delay", "3600", "--drain-timeout", "30", "--max-connections", "4096"],
                "env": [
                    {"name": "TLS_STEAL_PLAN", "value": plan},
                    {"name": "TLS_STEAL_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "TLS_STEAL_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "TLS_STEAL_SESSION_AUTHORIZATION", "value": "disabled"}
                ],
                "ports": [
                    {"name": "tls-steal", "containerPort": 15443, "protocol": "TCP"},
                    {"name": "tls-steal-admin", "containerPort": 15401, "protocol": "TCP"}
                ],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 15401}, "periodSeconds": 2, "failureThreshold": 3},
                "startupProbe": {"httpGet": {"path": "/healthz", "port": 15401}, "periodSeconds": 1, "failureThreshold": 60},
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "10m", "memory": "32Mi"}},
                "restartPolicy": "Always",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": true,
                    "runAsGroup": 15400,
                    "runAsNonRoot": true,
                    "runAsUser": 15400,
                    "seccompProfile": {"type": "RuntimeDefault"}
                },
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls", "readOnly": true}]
            }
        ])
    );
    assert_eq!(
        status(&i.pod),
        InjectionStatus {
            configs: vec!["MirrordTlsStealConfig/shop/web".into()],
            ports: vec![8443],
            hash: i.plan.hash.clone(),
            discarded: vec![],
            sidecar_mode: "native".into(),
        }
    );
    assert_eq!(i.plan.ports[0].container, "app");
    assert!(i.undeclared_ports.is_empty());
    // Everything else is untouched.
    let mut back = i.pod.clone();
    back.spec.as_mut().unwrap().init_containers = None;
    back.metadata.annotations = None;
    assert_eq!(back, f.pod);
}

#[test]
fn deployment_pod_classic_mode() {
    let f = fixture("deployment-pod");
    let i = run(&f, SidecarMode::Classic);
    let spec = i.pod.spec.as_ref().unwrap();
    assert_eq!(names(&spec.init_containers), ["tls-steal-init"]);
    assert_eq!(
        names(&Some(spec.containers.clone())),
        ["tls-steal-proxy", "app"]
    );
    assert_eq!(spec.containers[0].restart_policy, None);
    assert_eq!(status(&i.pod).sidecar_mode, "classic");
}

#[test]
fn statefulset_pod_through_cluster_config() {
    let f = fixture("statefulset-pod");
    let i = run(&f, SidecarMode::Native);
    assert_eq!(
        proxy_mounts(&i.pod),
        json!([{"name": "data", "mountPath": "/var/lib/db", "readOnly": true}])
    );
    let st = status(&i.pod);
    assert_eq!(st.configs, ["MirrordClusterTlsStealConfig/databases"]);
    assert_eq!(st.ports, [5443]);
    assert_eq!(
        container(&i.pod, "tls-steal-init").args.as_ref().unwrap()[2],
        "5443"
    );
}

#[test]
fn bare_pod_with_trust_roots_and_app_init_container() {
    let f = fixture("bare-pod");
    let i = run(&f, SidecarMode::Native);
    let spec = i.pod.spec.as_ref().unwrap();
    // The app's init container (which writes the certs) runs before the proxy starts.
    assert_eq!(
        names(&spec.init_containers),
        ["make-certs", "tls-steal-init", "tls-steal-proxy"]
    );
    assert_eq!(
        proxy_mounts(&i.pod),
        json!([
            {"name": "certs", "mountPath": "/certs", "readOnly": true},
            {"name": "roots", "mountPath": "/etc/ssl/roots", "readOnly": true}
        ])
    );
    assert_eq!(
        status(&i.pod).configs,
        ["MirrordTlsStealConfig/default/solo"]
    );
}

#[test]
fn pod_targeted_through_a_container_path() {
    let f = fixture("container-target-pod");
    let i = run(&f, SidecarMode::Native);
    assert_eq!(i.plan.ports[0].container, "nginx");
    // The nginx container's volume, not the app's one mounted at the same path.
    assert_eq!(
        proxy_mounts(&i.pod),
        json!([{"name": "nginx-tls", "mountPath": "/etc/nginx/tls", "readOnly": true}])
    );
    assert_eq!(i.pod.spec.as_ref().unwrap().share_process_namespace, None);
}

#[test]
fn secret_volume_with_sub_path() {
    let f = fixture("subpath-pod");
    let i = run(&f, SidecarMode::Native);
    assert_eq!(
        proxy_mounts(&i.pod),
        json!([
            {"name": "tls", "mountPath": "/app/server.crt", "subPath": "tls.crt", "readOnly": true},
            {"name": "tls", "mountPath": "/app/server.key", "subPath": "tls.key", "readOnly": true}
        ])
    );
    assert!(i.proc_files.is_empty());
}

#[test]
fn cert_baked_into_the_image() {
    let f = fixture("baked-cert-pod");
    let i = run(&f, SidecarMode::Native);
    let spec = i.pod.spec.as_ref().unwrap();
    assert_eq!(spec.share_process_namespace, Some(true));
    let proxy = container(&i.pod, "tls-steal-proxy");
    assert_eq!(proxy.volume_mounts, None);
    assert_eq!(
        proxy
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap()
            .add,
        Some(vec![
            "SYS_PTRACE".to_string(),
            "DAC_READ_SEARCH".to_string()
        ])
    );
    let sc = proxy.security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_user, sc.run_as_non_root),
        (Some(0), Some(false)),
        "added capabilities are effective only for root"
    );
    assert_eq!(
        i.proc_files,
        [
            ("old".to_string(), "/opt/app/cert.pem".to_string()),
            ("old".to_string(), "/opt/app/key.pem".to_string())
        ]
    );
}

#[test]
fn existing_init_containers_and_sidecars() {
    let f = fixture("existing-init-sidecars-pod");
    let i = run(&f, SidecarMode::Native);
    let spec = i.pod.spec.as_ref().unwrap();
    assert_eq!(
        names(&spec.init_containers),
        [
            "istio-init",
            "istio-proxy",
            "tls-steal-init",
            "tls-steal-proxy"
        ]
    );
    assert_eq!(
        names(&Some(spec.containers.clone())),
        ["app", "log-shipper"]
    );
    // 8443 from the namespaced config (precedence), 9443 from the cluster one.
    let st = status(&i.pod);
    assert_eq!(st.ports, [8443, 9443]);
    assert_eq!(
        st.configs,
        [
            "MirrordTlsStealConfig/mesh/shop",
            "MirrordClusterTlsStealConfig/everything-8443"
        ]
    );
    assert_eq!(st.discarded.len(), 1);
    assert_eq!(st.discarded[0].port, 8443);
    assert_eq!(
        st.discarded[0].config,
        "MirrordClusterTlsStealConfig/everything-8443"
    );
    assert_eq!(i.undeclared_ports, [9443]);
    assert_eq!(
        container(&i.pod, "tls-steal-init").args.as_ref().unwrap()[2],
        "8443,9443"
    );
    let mounts: Vec<VolumeMount> = serde_json::from_value(proxy_mounts(&i.pod)).unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].name, "tls");

    let c = run(&f, SidecarMode::Classic);
    let spec = c.pod.spec.as_ref().unwrap();
    assert_eq!(
        names(&spec.init_containers),
        ["istio-init", "istio-proxy", "tls-steal-init"]
    );
    assert_eq!(
        names(&Some(spec.containers.clone())),
        ["tls-steal-proxy", "app", "log-shipper"]
    );
}

#[test]
fn skips() {
    let f = fixture("deployment-pod");
    let target = PodTarget::from_pod(&f.pod);
    let s = settings(SidecarMode::Native);
    let skip =
        |pod: &Pod, configs: &[ConfigSource]| match mutate(pod, &target, &f.namespace, configs, &s)
        {
            Outcome::Skipped(r) => Some(r),
            Outcome::Injected(_) => None,
        };
    assert_eq!(skip(&f.pod, &[]), Some(SkipReason::NoMatchingConfig));
    assert_eq!(
        skip(&f.pod, &f.configs[1..]),
        Some(SkipReason::NoMatchingConfig)
    );
    let mut p = f.pod.clone();
    p.spec.as_mut().unwrap().host_network = Some(true);
    assert_eq!(skip(&p, &f.configs), Some(SkipReason::HostNetwork));
    // Windows pods, by `os` or by node selector; a Linux one of each is injected.
    for (os, selector) in [(Some("windows"), None), (None, Some("windows"))] {
        let mut p = f.pod.clone();
        let spec = p.spec.as_mut().unwrap();
        spec.os = os.map(|name| k8s_openapi::api::core::v1::PodOS { name: name.into() });
        spec.node_selector =
            selector.map(|os| [("kubernetes.io/os".to_owned(), os.to_owned())].into());
        assert_eq!(
            skip(&p, &f.configs),
            Some(SkipReason::Windows),
            "{os:?} {selector:?}"
        );
        let spec = p.spec.as_mut().unwrap();
        spec.os = os.map(|_| k8s_openapi::api::core::v1::PodOS {
            name: "linux".into(),
        });
        spec.node_selector =
            selector.map(|_| [("kubernetes.io/os".to_owned(), "linux".to_owned())].into());
        assert_eq!(skip(&p, &f.configs), None, "linux: {os:?} {selector:?}");
    }
    let mut p = f.pod.clone();
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tls-steal.io/inject".into(), "false".into());
    assert_eq!(skip(&p, &f.configs), Some(SkipReason::OptOut));
    let mut p = f.pod.clone();
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app.kubernetes.io/name".into(), "tls-steal-webhook".into());
    assert_eq!(skip(&p, &f.configs), Some(SkipReason::OwnPod));
    let mut p = f.pod.clone();
    p.metadata.annotations = Some([("tls-steal.io/status".to_string(), "{}".to_string())].into());
    assert_eq!(skip(&p, &f.configs), Some(SkipReason::AlreadyInjected));
    // Never kube-system, the chart's namespace or control-plane pods, whatever configs match.
    for (label, value) in [("tier", "control-plane"), ("component", "kube-apiserver")] {
        let mut p = f.pod.clone();
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(label.into(), value.into());
        assert_eq!(skip(&p, &f.configs), Some(SkipReason::ControlPlane));
    }
    let own = Settings {
        own_namespace: Some(f.namespace.clone()),
        ..settings(SidecarMode::Native)
    };
    for (namespace, s) in [("kube-system", &s), (f.namespace.as_str(), &own)] {
        assert!(matches!(
            mutate(&f.pod, &target, namespace, &f.configs, s),
            Outcome::Skipped(SkipReason::ProtectedNamespace)
        ));
    }
    // A matching but invalid config.
    let mut bad = f.configs[0].clone();
    bad.spec.ports[0].agent_as_server.authentication.cert_pem = "relative.pem".into();
    assert_eq!(skip(&f.pod, &[bad]), Some(SkipReason::InvalidConfigs));
}

/// A pod that runs to completion (a Job's: `restartPolicy` `Never` or `OnFailure`) is left alone
/// in classic mode, where the proxy, a regular container, would keep it from ever completing;
/// native sidecars end with the pod, so native mode injects it. Only pods configs apply to are
/// counted as such.
#[test]
fn run_to_completion_pods_in_classic_mode() {
    let f = fixture("deployment-pod");
    let target = PodTarget::from_pod(&f.pod);
    let outcome = |policy: Option<&str>, mode, configs: &[ConfigSource]| {
        let mut p = f.pod.clone();
        p.spec.as_mut().unwrap().restart_policy = policy.map(Into::into);
        match mutate(&p, &target, &f.namespace, configs, &settings(mode)) {
            Outcome::Skipped(r) => Some(r),
            Outcome::Injected(_) => None,
        }
    };
    for policy in ["Never", "OnFailure"] {
        assert_eq!(
            outcome(Some(policy), SidecarMode::Classic, &f.configs),
            Some(SkipReason::RunsToCompletion),
            "{policy}"
        );
        assert_eq!(outcome(Some(policy), SidecarMode::Native, &f.configs), None);
        assert_eq!(
            outcome(Some(policy), SidecarMode::Classic, &[]),
            Some(SkipReason::NoMatchingConfig)
        );
    }
    for policy in [None, Some("Always")] {
        assert_eq!(outcome(policy, SidecarMode::Classic, &f.configs), None);
    }
}

/// An HTTPS app as users write it: probes on its TLS port (named and numbered, httpGet and
/// tcpSocket) move to the proxy's admin port; the original actions reach the proxy; probes of
/// other ports and exec probes stay.
#[test]
fn probes_on_the_captured_port_move_to_the_admin_port() {
    use tls_steal_crds::probe::{ProbeAction, ProbeScheme, parse_app_probes};
    let f = fixture("probes-pod");
    for mode in [SidecarMode::Native, SidecarMode::Classic] {
        let i = run(&f, mode);
        let app = container(&i.pod, "app");
        let original = &f.pod.spec.as_ref().unwrap().containers[0];
        let get = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            let p = p.as_ref().unwrap();
            assert!(p.tcp_socket.is_none());
            serde_json::to_value(p.http_get.as_ref().unwrap()).unwrap()
        };
        for (probe, kind) in [
            (&app.readiness_probe, "readiness"),
            (&app.liveness_probe, "liveness"),
            (&app.startup_probe, "startup"),
        ] {
            assert_eq!(
                get(probe),
                json!({"path": format!("/app-health/app/{kind}"), "port": 15401, "scheme": "HTTP"}),
                "{mode:?} {kind}"
            );
        }
        // Timing fields are the user's.
        let (r, o) = (
            app.readiness_probe.as_ref().unwrap(),
            original.readiness_probe.as_ref().unwrap(),
        );
        assert_eq!(
            (r.period_seconds, r.timeout_seconds, r.failure_threshold),
            (o.period_seconds, o.timeout_seconds, o.failure_threshold)
        );
        assert_eq!(
            app.liveness_probe.as_ref().unwrap().initial_delay_seconds,
            Some(10)
        );
        // Everything else of the app container is unchanged.
        let mut without_probes = app.clone();
        let mut original_without = original.clone();
        for c in [&mut without_probes, &mut original_without] {
            c.readiness_probe = None;
            c.liveness_probe = None;
            c.startup_probe = None;
        }
        assert_eq!(without_probes, original_without);
        assert_eq!(
            container(&i.pod, "exporter"),
            &f.pod.spec.as_ref().unwrap().containers[1],
            "probes of other ports and exec probes are left alone"
        );

        let proxy = container(&i.pod, "tls-steal-proxy");
        let env = proxy.env.as_ref().unwrap();
        let json = env
            .iter()
            .find(|e| e.name == "TLS_STEAL_APP_PROBES")
            .and_then(|e| e.value.as_deref())
            .unwrap();
        let probes = parse_app_probes(json).unwrap();
        assert_eq!(
            probes.keys().collect::<Vec<_>>(),
            ["app/liveness", "app/readiness", "app/startup"]
        );
        assert_eq!(
            probes["app/readiness"].action,
            ProbeAction::HttpGet {
                port: 443,
                scheme: ProbeScheme::Https,
                path: "/ready".into(),
                headers: vec![]
            },
            "the named port is resolved"
        );
        assert_eq!(probes["app/readiness"].timeout_seconds, 2);
        match &probes["app/liveness"].action {
            ProbeAction::HttpGet { headers, .. } => {
                assert_eq!(
                    (headers[0].name.as_str(), headers[0].value.as_str()),
                    ("X-Probe", "liveness")
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            probes["app/startup"].action,
            ProbeAction::TcpSocket { port: 443 }
        );
        let pod_ip = env.iter().find(|e| e.name == "TLS_STEAL_POD_IP").unwrap();
        assert_eq!(
            pod_ip
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "status.podIP"
        );
    }
}

/// A pod whose probes target no captured port gets no probe env and keeps its probes.
#[test]
fn pods_without_captured_probes_keep_them() {
    let f = fixture("deployment-pod");
    let i = run(&f, SidecarMode::Native);
    assert!(i.probe_rewrites.is_empty());
    let proxy = container(&i.pod, "tls-steal-proxy");
    assert!(
        proxy
            .env
            .iter()
            .flatten()
            .all(|e| e.name != "TLS_STEAL_APP_PROBES")
    );
}

/// The proxy's arguments carry the drain delay, the pod's grace period as the drain timeout
/// (30 s when the pod sets none) and the connection cap; in classic mode its `postStart` hook
/// holds the app until it is ready.
#[test]
fn proxy_lifecycle_settings() {
    let f = fixture("probes-pod");
    let i = run(&f, SidecarMode::Classic);
    let proxy = container(&i.pod, "tls-steal-proxy");
    assert_eq!(
        proxy.args.as_ref().unwrap(),
        &[
            "proxy",
            "--drain-delay",
            "3600",
            "--drain-timeout",
            "30",
            "--max-connections",
            "4096"
        ]
    );
    let hook = proxy
        .lifecycle
        .as_ref()
        .unwrap()
        .post_start
        .as_ref()
        .unwrap();
    assert_eq!(
        hook.exec.as_ref().unwrap().command.as_ref().unwrap(),
        &["/usr/local/bin/tls-steal-sidecar", "wait"]
    );
    assert_eq!(
        i.pod.spec.as_ref().unwrap().containers[0].name,
        "tls-steal-proxy",
        "classic: the proxy starts first"
    );
    // A pod given two minutes to stop: requests in flight may take them through the proxy too.
    let mut slow = fixture("probes-pod");
    slow.pod
        .spec
        .as_mut()
        .unwrap()
        .termination_grace_period_seconds = Some(120);
    slow.raw_pod["spec"]["terminationGracePeriodSeconds"] = json!(120);
    let slow = run(&slow, SidecarMode::Native);
    let args = container(&slow.pod, "tls-steal-proxy")
        .args
        .clone()
        .unwrap();
    let at = args.iter().position(|a| a == "--drain-timeout").unwrap();
    assert_eq!(args[at + 1], "120");
    let native = run(&f, SidecarMode::Native);
    assert!(
        container(&native.pod, "tls-steal-proxy")
            .lifecycle
            .is_none(),
        "native sidecars are ordered by the kubelet (startupProbe)"
    );
}

/// Worker threads: the chart's `sidecar.workers`, overridden by the pod's
/// `tls-steal.io/proxy-workers` when that is `auto` or a positive number; `auto` is the proxy's
/// default, so no flag is written for it.
#[test]
fn proxy_workers_from_the_chart_and_the_pod_annotation() {
    let workers = |annotation: Option<&str>, chart: &str| {
        let mut f = fixture("probes-pod");
        if let Some(a) = annotation {
            f.pod
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert("tls-steal.io/proxy-workers".into(), a.into());
            f.raw_pod["metadata"]["annotations"]["tls-steal.io/proxy-workers"] = json!(a);
        }
        let s = Settings {
            workers: chart.parse::<Workers>().unwrap(),
            ..settings(SidecarMode::Native)
        };
        let i = inject(&f, &s);
        let args = container(&i.pod, "tls-steal-proxy").args.clone().unwrap();
        args.iter()
            .position(|a| a == "--workers")
            .map(|at| args[at + 1].clone())
    };
    assert_eq!(workers(None, "auto"), None);
    assert_eq!(workers(None, "2"), Some("2".into()));
    assert_eq!(workers(Some("3"), "auto"), Some("3".into()));
    assert_eq!(workers(Some("4"), "2"), Some("4".into()));
    assert_eq!(workers(Some("auto"), "2"), None, "the pod asks for auto");
    // A value the proxy would refuse never reaches it: the pod starts with the chart's setting.
    assert_eq!(workers(Some("lots"), "2"), Some("2".into()));
    assert_eq!(workers(Some("0"), "auto"), None);
    // The chart's value is checked when the webhook starts.
    let e = "many".parse::<Workers>().unwrap_err().to_string();
    assert!(e.contains("many"), "{e}");
}

#[test]
fn session_authorization_reaches_the_proxy() {
    let f = fixture("deployment-pod");
    let s = Settings {
        session_authorization: SessionAuthorization::Required {
            keys: "k1,k2".into(),
        },
        ..settings(SidecarMode::Native)
    };
    let i = inject(&f, &s);
    let env = container(&i.pod, "tls-steal-proxy").env.clone().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        value("TLS_STEAL_SESSION_AUTHORIZATION").as_deref(),
        Some("required")
    );
    assert_eq!(value("TLS_STEAL_SESSION_KEYS").as_deref(), Some("k1,k2"));
}

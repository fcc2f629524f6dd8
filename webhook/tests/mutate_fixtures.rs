//! The pure mutation on JSON fixtures (`tests/fixtures/*.json`: a namespace, a pod as the API
//! server sends it at admission, and the configs in the cluster).

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use serde_json::{Value, json};
use tls_steal_crds::{
    ConfigSource, MirrordClusterTlsStealConfig, MirrordTlsStealConfig, PodTarget, StealPlan,
};
use tls_steal_webhook::mutate::{
    Injection, InjectionStatus, Outcome, SkipReason, mutate, mutation,
};
use tls_steal_webhook::settings::{Settings, SidecarMode};

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
    if s.sidecar_mode == SidecarMode::Native {
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
                    "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]},
                    "runAsNonRoot": false,
                    "runAsUser": 0
                }
            },
            {
                "name": "tls-steal-proxy",
                "image": "tls-steal/sidecar:test",
                "args": ["proxy"],
                "env": [{"name": "TLS_STEAL_PLAN", "value": plan}],
                "ports": [
                    {"name": "tls-steal", "containerPort": 15443, "protocol": "TCP"},
                    {"name": "tls-steal-admin", "containerPort": 15401, "protocol": "TCP"}
                ],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 15401}, "periodSeconds": 2, "failureThreshold": 3},
                "startupProbe": {"httpGet": {"path": "/healthz", "port": 15401}, "periodSeconds": 1, "failureThreshold": 60},
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "10m", "memory": "32Mi"}},
                "restartPolicy": "Always",
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
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
        Some(vec!["SYS_PTRACE".to_string()])
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
    // A matching but invalid config.
    let mut bad = f.configs[0].clone();
    bad.spec.ports[0].agent_as_server.authentication.cert_pem = "relative.pem".into();
    assert_eq!(skip(&f.pod, &[bad]), Some(SkipReason::InvalidConfigs));
}

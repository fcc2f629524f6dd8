//! What the controller's watch caches keep of a workload: only what its decisions read.
//!
//! The decisions read the workload's metadata (name, namespace, uid, resource version,
//! generation, the `tls-steal.io/` annotations it matches and patches), its pod selector, whether
//! it wants pods at all, and of the pod template only what the plan and the skip reasons see: the
//! template's labels and annotations, each container's name and declared ports
//! (`PodTarget::from_template`), init container names, `hostNetwork` and whether it is a Windows
//! pod (`mutate::precheck`).
//!
//! [`Cached`] is deserialised straight from the API server's JSON, so nothing else is ever kept
//! (`managedFields`, the `kubectl.kubernetes.io/last-applied-configuration` copy of the whole
//! object, env, probes, resources, images, volumes, status...), and its own compact types replace
//! k8s-openapi's, whose structs are large even when empty (a `Container` is 2 KB inline, a
//! `Deployment` 2.4 KB): issue 19, memory per cached workload (BENCHMARKS.md). The decisions read
//! it through [`Workload`], as they read whole objects; tests check that both views agree.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodOS, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Deserializer};

use super::desired::{self, Workload, WorkloadKind};

/// The prefix of the workload annotations the controller reads and writes.
const OWN_ANNOTATIONS: &str = "tls-steal.io/";

/// A workload kind the controller caches as [`Cached<K>`].
pub trait CachedKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + std::fmt::Debug + Send + Sync + 'static
{
    const KIND: WorkloadKind;
}
impl CachedKind for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
}
impl CachedKind for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
}
impl CachedKind for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
}

/// A workload of kind `K` as the controller's caches keep it (see the module docs). Read and
/// patched through `Api<Cached<K>>`: same URLs as `K`, the answer parsed into this.
#[derive(Debug)]
pub struct Cached<K> {
    /// Name, namespace, uid, resourceVersion, generation, and the `tls-steal.io/` annotations
    /// (an empty map when the object has others only: patches distinguish a missing map).
    pub metadata: ObjectMeta,
    /// `spec.selector` as a label selector string (`None`: missing, selects all, or inexpressible).
    pod_selector: Option<Box<str>>,
    expects_no_pods: bool,
    template: Option<LeanTemplate>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Cached<K> {
    fn clone(&self) -> Self {
        Cached {
            metadata: self.metadata.clone(),
            pod_selector: self.pod_selector.clone(),
            expects_no_pods: self.expects_no_pods,
            template: self.template.clone(),
            kind: PhantomData,
        }
    }
}

type Pairs = Box<[(String, String)]>;
/// `(containerPort, protocol)` of each declared port.
type Ports = Box<[(i32, Option<String>)]>;

#[derive(Clone, Debug, PartialEq)]
struct LeanTemplate {
    /// `None`: the template has no metadata; inside, `None`: no such map.
    metadata: Option<(Option<Pairs>, Option<Pairs>)>,
    spec: Option<LeanPodSpec>,
}

#[derive(Clone, Debug, PartialEq)]
struct LeanPodSpec {
    containers: Box<[LeanContainer]>,
    init_containers: Option<Box<[String]>>,
    host_network: Option<bool>,
    /// `os.name: windows` or a `kubernetes.io/os: windows` node selector (kept as the former).
    windows: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct LeanContainer {
    name: String,
    /// `None`: no `ports` list.
    ports: Option<Ports>,
}

impl LeanTemplate {
    /// The template as the decisions read it (only the kept fields set).
    fn to_template(&self) -> PodTemplateSpec {
        let map = |p: &Option<Pairs>| p.as_ref().map(|p| p.iter().cloned().collect());
        PodTemplateSpec {
            metadata: self
                .metadata
                .as_ref()
                .map(|(labels, annotations)| ObjectMeta {
                    labels: map(labels),
                    annotations: map(annotations),
                    ..ObjectMeta::default()
                }),
            spec: self.spec.as_ref().map(|s| PodSpec {
                containers: s
                    .containers
                    .iter()
                    .map(|c| Container {
                        name: c.name.clone(),
                        ports: c.ports.as_ref().map(|ports| {
                            ports
                                .iter()
                                .map(|(port, protocol)| ContainerPort {
                                    container_port: *port,
                                    protocol: protocol.clone(),
                                    ..ContainerPort::default()
                                })
                                .collect()
                        }),
                        ..Container::default()
                    })
                    .collect(),
                init_containers: s.init_containers.as_ref().map(|names| {
                    names
                        .iter()
                        .map(|n| Container {
                            name: n.clone(),
                            ..Container::default()
                        })
                        .collect()
                }),
                host_network: s.host_network,
                os: s.windows.then(|| PodOS {
                    name: "windows".into(),
                }),
                ..PodSpec::default()
            }),
        }
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        let (_, annotations) = self.metadata.as_ref()?;
        let (_, v) = annotations.as_ref()?.iter().find(|(k, _)| k == key)?;
        Some(v)
    }
}

impl<K: CachedKind> Resource for Cached<K> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;
    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<K: CachedKind> Workload for Cached<K> {
    const KIND: WorkloadKind = K::KIND;
    fn template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        self.template.as_ref().map(|t| Cow::Owned(t.to_template()))
    }
    fn template_annotation(&self, key: &str) -> Option<&str> {
        self.template.as_ref()?.annotation(key)
    }
    fn pod_selector(&self) -> Option<String> {
        self.pod_selector.as_deref().map(str::to_owned)
    }
    fn expects_no_pods(&self) -> bool {
        self.expects_no_pods
    }
}

impl<K: CachedKind> Cached<K> {
    /// The cached form of a whole object (tests, and objects read whole elsewhere).
    pub fn of(whole: &K) -> Self
    where
        K: serde::Serialize,
    {
        let json = serde_json::to_value(whole).expect("a Kubernetes object serialises");
        serde_json::from_value(json).expect("a serialised Kubernetes object parses")
    }
}

/// The wire form: the fields kept, parsed into compact types; serde skips every other field.
mod wire {
    use super::*;

    #[derive(Deserialize)]
    pub struct Object {
        pub metadata: ObjectMeta,
        #[serde(default)]
        pub spec: Option<Spec>,
        #[serde(default)]
        pub status: Option<Status>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Spec {
        #[serde(default)]
        pub replicas: Option<i32>,
        #[serde(default)]
        pub selector: Option<LabelSelector>,
        #[serde(default)]
        pub template: Option<Template>,
    }
    #[derive(Deserialize)]
    pub struct Template {
        #[serde(default)]
        pub metadata: Option<TemplateMeta>,
        #[serde(default)]
        pub spec: Option<PodSpec>,
    }
    #[derive(Deserialize)]
    pub struct TemplateMeta {
        #[serde(default)]
        pub labels: Option<BTreeMap<String, String>>,
        #[serde(default)]
        pub annotations: Option<BTreeMap<String, String>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PodSpec {
        #[serde(default)]
        pub containers: Option<Vec<Container>>,
        #[serde(default)]
        pub init_containers: Option<Vec<Named>>,
        #[serde(default)]
        pub host_network: Option<bool>,
        #[serde(default)]
        pub os: Option<Os>,
        #[serde(default)]
        pub node_selector: Option<BTreeMap<String, String>>,
    }
    #[derive(Deserialize)]
    pub struct Os {
        #[serde(default)]
        pub name: String,
    }
    #[derive(Deserialize)]
    pub struct Container {
        #[serde(default)]
        pub name: String,
        #[serde(default)]
        pub ports: Option<Vec<Port>>,
    }
    #[derive(Deserialize)]
    pub struct Named {
        #[serde(default)]
        pub name: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Port {
        pub container_port: i32,
        #[serde(default)]
        pub protocol: Option<String>,
    }
    /// A DaemonSet's (the others' status is not read).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Status {
        #[serde(default)]
        pub desired_number_scheduled: Option<i32>,
        #[serde(default)]
        pub observed_generation: Option<i64>,
    }
}

impl<'de, K: CachedKind> Deserialize<'de> for Cached<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let o = wire::Object::deserialize(d)?;
        let m = o.metadata;
        let expects_no_pods = match K::KIND {
            WorkloadKind::Deployment | WorkloadKind::StatefulSet => {
                o.spec.as_ref().and_then(|s| s.replicas) == Some(0)
            }
            // Only a status written for the current spec (a new DaemonSet has none yet).
            WorkloadKind::DaemonSet => o.status.as_ref().is_some_and(|s| {
                s.desired_number_scheduled == Some(0)
                    && s.observed_generation.is_some()
                    && s.observed_generation >= m.generation
            }),
        };
        let (selector, template) = match o.spec {
            Some(s) => (s.selector, s.template),
            None => (None, None),
        };
        let pairs = |m: Option<BTreeMap<String, String>>| m.map(|m| m.into_iter().collect());
        let template = template.map(|t| LeanTemplate {
            metadata: t.metadata.map(|m| (pairs(m.labels), pairs(m.annotations))),
            spec: t.spec.map(|s| LeanPodSpec {
                containers: s
                    .containers
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| LeanContainer {
                        name: c.name,
                        ports: c.ports.map(|ports| {
                            ports
                                .into_iter()
                                .map(|p| (p.container_port, p.protocol))
                                .collect()
                        }),
                    })
                    .collect(),
                init_containers: s
                    .init_containers
                    .map(|v| v.into_iter().map(|c| c.name).collect()),
                host_network: s.host_network,
                windows: crate::mutate::is_windows(
                    s.os.as_ref().map(|os| os.name.as_str()),
                    s.node_selector.as_ref(),
                ),
            }),
        });
        let own = m.annotations.map(|a| {
            a.into_iter()
                .filter(|(k, _)| k.starts_with(OWN_ANNOTATIONS))
                .collect()
        });
        Ok(Cached {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                generation: m.generation,
                annotations: own,
                ..ObjectMeta::default()
            },
            pod_selector: desired::pod_selector(selector.as_ref()).map(String::into_boxed_str),
            expects_no_pods,
            template,
            kind: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::patches;
    use crate::settings::Settings;
    use desired::WorkloadState;

    /// The annotation `kubectl apply` writes: the last applied object, in full.
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    /// A Deployment as `kubectl apply` leaves it: managed fields, the last-applied copy, status.
    fn applied() -> Deployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop", "generation": 3, "resourceVersion": "42",
                "uid": "u-1", "labels": {"app": "web"},
                "annotations": {
                    "tls-steal.io/rollout": "false",
                    "deployment.kubernetes.io/revision": "7",
                    LAST_APPLIED: "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"spec\":{}}"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"},
                                 "annotations": {"tls-steal.io/config-hash": "abc"}},
                    "spec": {"containers": [{
                        "name": "app", "image": "web:1",
                        "env": [{"name": "MODE", "value": "prod"}],
                        "ports": [{"containerPort": 8443}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8443, "scheme": "HTTPS"}}
                    }]}
                }
            },
            "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": 3}
        }))
        .unwrap()
    }

    /// Everything a decision or a patch reads, from the cached and from the whole object.
    fn agree<K: CachedKind + Workload + serde::Serialize>(whole: &K, settings: &Settings) {
        let lean = Cached::<K>::of(whole);
        for opted_in in [true, false] {
            assert_eq!(
                WorkloadState::of(&lean, opted_in, settings),
                WorkloadState::of(whole, opted_in, settings)
            );
        }
        assert_eq!(lean.pod_selector(), whole.pod_selector());
        assert_eq!(lean.expects_no_pods(), whole.expects_no_pods());
        let (t_lean, t_whole) = (lean.template(), whole.template());
        assert_eq!(
            desired::hash_recorded(lean.meta(), t_lean.as_deref()),
            desired::hash_recorded(whole.meta(), t_whole.as_deref())
        );
        assert_eq!(desired::recorded_hash(&lean), desired::recorded_hash(whole));
        assert_eq!(
            lean.template_annotation(crate::controller::CONFIG_HASH_ANNOTATION),
            whole.template_annotation(crate::controller::CONFIG_HASH_ANNOTATION)
        );
        assert_eq!(
            patches::rollout_patch(lean.meta(), t_lean.as_deref(), "h"),
            patches::rollout_patch(whole.meta(), t_whole.as_deref(), "h")
        );
        assert_eq!(
            patches::adoption_patch(lean.meta(), "h"),
            patches::adoption_patch(whole.meta(), "h")
        );
        assert_eq!(lean.object_ref(&()), whole.object_ref(&()));
    }

    #[test]
    fn keeps_what_the_decisions_read_and_nothing_else() {
        let whole = applied();
        let lean = Cached::<Deployment>::of(&whole);
        let m = &lean.metadata;
        assert!(m.managed_fields.is_none() && m.labels.is_none());
        assert_eq!(
            m.annotations.as_ref().unwrap().keys().collect::<Vec<_>>(),
            ["tls-steal.io/rollout"]
        );
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref()),
            (Some("web"), Some("shop"), Some("u-1"))
        );
        assert_eq!(
            (m.resource_version.as_deref(), m.generation),
            (Some("42"), Some(3))
        );
        assert_eq!(lean.pod_selector().as_deref(), Some("app=web"));
        let t = lean.template().unwrap();
        let c = &t.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.name, "app");
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8443);
        assert!(c.env.is_none() && c.image.is_none() && c.readiness_probe.is_none());
        agree(&whole, &Settings::default());
    }

    /// Every template feature a decision reads, every annotation shape a patch depends on: the
    /// controller's view (target, skip reason, hash, patches) of the cached workload is its view
    /// of the whole one.
    #[test]
    fn the_decisions_and_patches_see_the_same_workload_cached() {
        let settings = Settings {
            self_label: Some(("app".into(), "tls-steal-webhook".into())),
            ..Settings::default()
        };
        let variants = [
            serde_json::json!({"hostNetwork": true}),
            serde_json::json!({"os": {"name": "windows"}}),
            serde_json::json!({"nodeSelector": {"kubernetes.io/os": "windows"}}),
            serde_json::json!({"os": {"name": "linux"}, "nodeSelector": {"kubernetes.io/os": "linux"}}),
            serde_json::json!({"initContainers": [{"name": "tls-steal-init", "image": "x"}]}),
            serde_json::json!({"containers": [{"name": "tls-steal-proxy", "image": "x"}]}),
            serde_json::json!({"containers": [{"name": "dns", "image": "x",
                "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 8443, "name": "https"}]}]}),
            serde_json::json!({"containers": [{"name": "admin", "image": "x",
                "ports": [{"containerPort": 15401}]}]}),
        ];
        let labels = [
            serde_json::json!({"app": "web"}),
            serde_json::json!({"app": "web", "tls-steal.io/inject": "false"}),
            serde_json::json!({"app": "tls-steal-webhook"}),
            serde_json::json!({"tier": "control-plane"}),
        ];
        let template_annotations = [
            None,
            Some(serde_json::json!({})),
            Some(serde_json::json!({"tls-steal.io/config-hash": ""})),
            Some(serde_json::json!({"tls-steal.io/config-hash": "abc", "x": "y"})),
        ];
        let workload_annotations = [
            None,
            Some(serde_json::json!({"deployment.kubernetes.io/revision": "1"})),
            Some(serde_json::json!({"tls-steal.io/adopted-hash": "abc"})),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for spec in &variants {
            for labels in &labels {
                for (ta, wa) in template_annotations
                    .iter()
                    .zip(workload_annotations.iter().cycle())
                {
                    let mut whole = applied();
                    whole.metadata.annotations =
                        wa.clone().map(|a| serde_json::from_value(a).unwrap());
                    let t = &mut whole.spec.as_mut().unwrap().template;
                    let mut pod_spec = serde_json::to_value(t.spec.as_ref().unwrap()).unwrap();
                    for (k, v) in spec.as_object().unwrap() {
                        pod_spec[k] = v.clone();
                    }
                    t.spec = Some(serde_json::from_value(pod_spec).unwrap());
                    let tm = t.metadata.as_mut().unwrap();
                    tm.labels = Some(serde_json::from_value(labels.clone()).unwrap());
                    tm.annotations = ta.clone().map(|a| serde_json::from_value(a).unwrap());
                    let state =
                        WorkloadState::of(&Cached::<Deployment>::of(&whole), true, &settings);
                    seen.insert(format!("{:?} {:?}", state.no_plan, state.target.containers));
                    agree(&whole, &settings);
                }
            }
        }
        // Host network, already injected, opted out, own pod, control plane, a proxy port
        // declared, and plannable pods with and without UDP ports: the variants reach every
        // branch.
        assert!(seen.len() >= 7, "{seen:#?}");
        // No template metadata, no template at all.
        let mut whole = applied();
        whole.spec.as_mut().unwrap().template.metadata = None;
        agree(&whole, &settings);
        whole.spec = None;
        agree(&whole, &settings);
    }

    #[test]
    fn statefulsets_and_daemonsets_agree_too() {
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "ops", "generation": 2},
            "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["db"]}]},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db"}]}}}
        }))
        .unwrap();
        agree(&sts, &Settings::default());
        assert!(Cached::of(&sts).expects_no_pods());
        let ds = |status: serde_json::Value| -> DaemonSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "agent", "namespace": "ops", "generation": 2},
                "spec": {"selector": {}, "template": {}},
                "status": status
            }))
            .unwrap()
        };
        let counts = |desired: i32, observed: i64| {
            serde_json::json!({"desiredNumberScheduled": desired, "currentNumberScheduled": 0,
                "numberMisscheduled": 0, "numberReady": 0, "observedGeneration": observed})
        };
        for (status, none) in [
            (counts(0, 2), true),
            (counts(0, 1), false),
            (counts(1, 2), false),
            (serde_json::Value::Null, false),
        ] {
            let d = ds(status);
            agree(&d, &Settings::default());
            assert_eq!(Cached::of(&d).expects_no_pods(), none);
        }
    }

    /// What the API server sends parses directly (unknown fields, nulls, a template without spec).
    #[test]
    fn parses_the_api_servers_json() {
        let lean: Cached<Deployment> = serde_json::from_value(serde_json::json!({
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "x", "namespace": "n", "annotations": null, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": null, "strategy": {"type": "RollingUpdate"}, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": [
                        {"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
                         "resources": {}, "terminationMessagePath": "/dev/termination-log"}],
                        "restartPolicy": "Always"}}},
            "status": {"observedGeneration": 1, "conditions": []}
        }))
        .unwrap();
        assert!(!lean.expects_no_pods());
        assert_eq!(lean.metadata.annotations, None);
        let t = lean.template().unwrap();
        assert_eq!(t.metadata.as_ref().unwrap().labels, None);
        let p = &t.spec.as_ref().unwrap().containers[0]
            .ports
            .as_ref()
            .unwrap()[0];
        assert_eq!((p.container_port, p.protocol.as_deref()), (80, Some("TCP")));
    }
}

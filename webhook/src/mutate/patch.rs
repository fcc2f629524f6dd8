//! The JSON patch a mutation makes of a pod, written from the pod's [`PodShape`] (what the memo
//! keys on) rather than from the pod.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod, PodSpec};
use serde::Serialize;

use crate::probes::{ContainerProbes, probe_field};
use tls_steal_crds::contract::{
    KUBECTL_DEFAULT_CONTAINER_ANNOTATION, PROXY_WORKERS_ANNOTATION, STATUS_ANNOTATION,
};

use super::*;

/// Everything the mutation reads from a pod that passed [`precheck`], besides its target
/// ([`PodTarget`]): the pods of one ReplicaSet have equal shapes and targets, so they get equal
/// mutations and patches, which is what lets admission remember decisions
/// (`admission`'s memo). The mutation is computed from this, not from the pod, so it cannot read
/// anything the memo does not key on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodShape {
    /// Each container's name, volume mounts, named ports and probes, in pod order.
    pub(super) containers: Vec<ContainerMounts>,
    pub(super) patch: PatchShape,
    /// The pod's `tls-steal.io/proxy-workers` annotation, as written.
    pub(super) workers: Option<String>,
    /// `restartPolicy` `Never` or `OnFailure` (absent is `Always`).
    pub(super) runs_to_completion: bool,
    /// `terminationGracePeriodSeconds`, absent read as Kubernetes' default (30).
    pub(super) grace_seconds: u64,
}

/// The fields a patch adds to or replaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct PatchShape {
    /// `metadata.annotations`: absent, or present with this status annotation (if any).
    annotations: Option<Option<String>>,
    /// The pod names kubectl's default container itself.
    pub(super) names_default_container: bool,
    /// `spec.initContainers`: absent, or how many.
    init_containers: Option<usize>,
    share_process_namespace: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ContainerMounts {
    pub(super) name: String,
    pub(super) mounts: Vec<Mount>,
    /// Named ports and probes, for the probe rewrite.
    pub(super) probes: ContainerProbes,
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
        let annotation = |key: &str| pod.metadata.annotations.as_ref()?.get(key).cloned();
        let workers = annotation(PROXY_WORKERS_ANNOTATION);
        Some(PodShape {
            containers,
            workers,
            runs_to_completion: spec
                .restart_policy
                .as_deref()
                .is_some_and(|p| p != "Always"),
            grace_seconds: spec
                .termination_grace_period_seconds
                .map_or(DEFAULT_GRACE_SECONDS, |s| s.max(0) as u64),
            patch: PatchShape {
                annotations,
                names_default_container: annotation(KUBECTL_DEFAULT_CONTAINER_ANNOTATION).is_some(),
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
        let annotations = out
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        if let Some(name) = self.default_container {
            annotations.insert(KUBECTL_DEFAULT_CONTAINER_ANNOTATION.into(), name);
        }
        annotations.insert(STATUS_ANNOTATION.into(), self.status);
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
                value: PatchValue::Annotations {
                    default_container: self.default_container.as_deref(),
                    status: &self.status,
                },
            }),
            Some(a) => {
                if let Some(name) = &self.default_container {
                    ops.push(PatchOp {
                        op: "add",
                        path: format!(
                            "/metadata/annotations/{}",
                            pointer_token(KUBECTL_DEFAULT_CONTAINER_ANNOTATION)
                        ),
                        value: PatchValue::Str(name),
                    });
                }
                if a.as_ref() != Some(&self.status) {
                    ops.push(PatchOp {
                        op: add_or_replace(a.is_some()),
                        path: format!("/metadata/annotations/{}", pointer_token(STATUS_ANNOTATION)),
                        value: PatchValue::Str(&self.status),
                    });
                }
            }
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
    /// The annotations of a pod that had none.
    #[serde(serialize_with = "new_annotations")]
    Annotations {
        default_container: Option<&'a str>,
        status: &'a str,
    },
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

fn new_annotations<S: serde::Serializer>(
    default_container: &Option<&str>,
    status: &&str,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    if let Some(name) = default_container {
        m.serialize_entry(KUBECTL_DEFAULT_CONTAINER_ANNOTATION, name)?;
    }
    m.serialize_entry(STATUS_ANNOTATION, status)?;
    m.end()
}

/// Escapes a JSON-pointer token (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::super::containers::covering_mount;
    use super::*;
    use serde_json::{Value, json};

    /// A config for `pod/p` whose files are on no volume (so the patch shares the process
    /// namespace too).
    fn configs_for_pod_p() -> [ConfigSource; 1] {
        let spec = serde_json::from_value(json!({
            "targetPath": "pod/p",
            "ports": [{"port": 8443,
                "agentAsServer": {"authentication": {"certPem": "/certs/tls.crt", "keyPem": "/certs/tls.key"}},
                "agentAsClient": {"verification": {"acceptAnyCert": true}}}]
        }))
        .unwrap();
        [ConfigSource::namespaced("ns", "c", spec)]
    }

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
        let configs = configs_for_pod_p();
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
            let mut want = vec![
                p(
                    "add",
                    "/metadata/annotations/kubectl.kubernetes.io~1default-container",
                ),
                p("add", "/metadata/annotations/tls-steal.io~1status"),
            ];
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

    /// The pod's own first container is named kubectl's default (classic mode made the proxy
    /// first; both modes add init containers, which make kubectl print a notice), in a new
    /// annotations map or beside existing annotations; a pod that names one keeps it.
    #[test]
    fn kubectl_default_container_stays_the_apps() {
        let configs = configs_for_pod_p();
        let pod = |annotations: Value| -> Pod {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": annotations},
                "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 8443}]},
                    {"name": "worker"}]}
            }))
            .unwrap()
        };
        let key = KUBECTL_DEFAULT_CONTAINER_ANNOTATION;
        let cases = [
            (json!(null), SidecarMode::Classic, Some("web")),
            (json!({"team": "a"}), SidecarMode::Classic, Some("web")),
            (json!({key: "worker"}), SidecarMode::Classic, Some("worker")),
            (json!(null), SidecarMode::Native, Some("web")),
            (json!({key: "worker"}), SidecarMode::Native, Some("worker")),
        ];
        for (annotations, mode, want) in cases {
            let pod = pod(annotations.clone());
            let settings = Settings {
                sidecar_mode: mode,
                ..Settings::default()
            };
            let m = mutation(&pod, &PodTarget::from_pod(&pod), "ns", &configs, &settings).unwrap();
            let patch = m.patch(&pod).unwrap();
            let mut doc = serde_json::to_value(&pod).unwrap();
            json_patch::patch(&mut doc, &patch).unwrap();
            let injected = m.apply(&pod).pod;
            assert_eq!(doc, serde_json::to_value(&injected).unwrap());
            let got = injected.metadata.annotations.as_ref().unwrap().get(key);
            assert_eq!(got.map(String::as_str), want, "{annotations} {mode:?}");
            let first = &injected.spec.unwrap().containers[0].name;
            match mode {
                SidecarMode::Classic => assert_eq!(first, PROXY_CONTAINER),
                SidecarMode::Native => assert_eq!(first, "web"),
            }
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

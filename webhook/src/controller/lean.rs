//! What the controller's watch caches keep of a workload: only what its decisions read.
//!
//! The decisions read the workload's metadata (name, namespace, resource version, labels and
//! annotations it matches and patches), its selector, a DaemonSet's status, and of the pod
//! template only what the plan and the skip reasons see: the template's labels and annotations,
//! each container's name and declared ports (`PodTarget::from_template`), init container names
//! and `hostNetwork` (`mutate::precheck`). Everything else is dropped as each object arrives,
//! before the cache stores it: `managedFields`, the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation (a second copy of the whole object), Deployment/StatefulSet status, and the rest of
//! the template (env, probes, resources, images, volumes...), which is most of a real workload
//! (issue 19: memory per cached workload, BENCHMARKS.md). A test checks that the controller's
//! view of a stripped workload equals its view of the whole one.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::desired::Workload;

/// The annotation `kubectl apply` writes: the last applied object, in full.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A workload the controller caches.
pub trait Lean: Workload {
    /// Drops the status when the decisions do not read it.
    fn drop_unread_status(&mut self);
    fn template_mut(&mut self) -> Option<&mut PodTemplateSpec>;
}

impl Lean for Deployment {
    fn drop_unread_status(&mut self) {
        self.status = None;
    }
    fn template_mut(&mut self) -> Option<&mut PodTemplateSpec> {
        self.spec.as_mut().map(|s| &mut s.template)
    }
}

impl Lean for StatefulSet {
    fn drop_unread_status(&mut self) {
        self.status = None;
    }
    fn template_mut(&mut self) -> Option<&mut PodTemplateSpec> {
        self.spec.as_mut().map(|s| &mut s.template)
    }
}

impl Lean for DaemonSet {
    /// Kept: `expects_no_pods` reads `desiredNumberScheduled` and `observedGeneration`.
    fn drop_unread_status(&mut self) {}
    fn template_mut(&mut self) -> Option<&mut PodTemplateSpec> {
        self.spec.as_mut().map(|s| &mut s.template)
    }
}

/// Strips `w` down to what the controller reads.
pub fn strip<W: Lean>(w: &mut W) {
    w.managed_fields_mut().clear();
    w.annotations_mut().remove(LAST_APPLIED);
    w.drop_unread_status();
    if let Some(t) = w.template_mut() {
        strip_template(t);
    }
}

/// The template's labels and annotations, container names and ports, init container names and
/// `hostNetwork`.
fn strip_template(t: &mut PodTemplateSpec) {
    if let Some(m) = t.metadata.as_mut() {
        *m = ObjectMeta {
            labels: m.labels.take(),
            annotations: m.annotations.take(),
            ..ObjectMeta::default()
        };
    }
    if let Some(s) = t.spec.as_mut() {
        let named = |c: &mut Container| Container {
            name: std::mem::take(&mut c.name),
            ..Container::default()
        };
        *s = PodSpec {
            containers: s
                .containers
                .iter_mut()
                .map(|c| Container {
                    ports: c.ports.take().map(|ports| {
                        ports
                            .into_iter()
                            .map(|p| ContainerPort {
                                container_port: p.container_port,
                                protocol: p.protocol,
                                ..ContainerPort::default()
                            })
                            .collect()
                    }),
                    ..named(c)
                })
                .collect(),
            init_containers: s
                .init_containers
                .take()
                .map(|v| v.into_iter().map(|mut c| named(&mut c)).collect()),
            host_network: s.host_network,
            ..PodSpec::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::desired::WorkloadState;
    use crate::settings::Settings;

    /// A Deployment as `kubectl apply` leaves it: managed fields, the last-applied copy, status.
    fn applied() -> Deployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop", "generation": 3, "resourceVersion": "42",
                "labels": {"app": "web"},
                "annotations": {
                    "tls-steal.io/rollout": "false",
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

    #[test]
    fn strips_what_no_decision_reads_and_keeps_what_they_do() {
        let full = applied();
        let mut lean = full.clone();
        strip(&mut lean);
        assert!(lean.managed_fields().is_empty());
        assert!(!lean.annotations().contains_key(LAST_APPLIED));
        assert!(lean.status.is_none());
        assert_eq!(
            lean.annotations().get("tls-steal.io/rollout").unwrap(),
            "false"
        );
        let (spec, full_spec) = (lean.spec.as_ref().unwrap(), full.spec.as_ref().unwrap());
        assert_eq!(spec.selector, full_spec.selector);
        assert_eq!(spec.replicas, full_spec.replicas);
        assert_eq!(spec.template.metadata, full_spec.template.metadata);
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.name, "app");
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8443);
        assert!(c.env.is_none() && c.image.is_none() && c.readiness_probe.is_none());
        assert_eq!(
            lean.metadata.resource_version,
            full.metadata.resource_version
        );
        assert!(
            serde_json::to_vec(&lean).unwrap().len() < serde_json::to_vec(&full).unwrap().len()
        );
        // The controller's view of it is the same.
        let settings = Settings::default();
        assert_eq!(
            WorkloadState::of(&lean, true, &settings),
            WorkloadState::of(&full, true, &settings)
        );
    }

    /// Every template feature a decision reads: the controller's view (target, skip reason,
    /// hash) of the stripped workload is its view of the whole one.
    #[test]
    fn the_decisions_see_the_same_workload_stripped() {
        let settings = Settings {
            self_label: Some(("app".into(), "tls-steal-webhook".into())),
            ..Settings::default()
        };
        let variants = [
            serde_json::json!({"hostNetwork": true}),
            serde_json::json!({"initContainers": [{"name": "tls-steal-init", "image": "x"}]}),
            serde_json::json!({"containers": [{"name": "tls-steal-proxy", "image": "x"}]}),
            serde_json::json!({"containers": [{"name": "dns", "image": "x",
                "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 8443, "name": "https"}]}]}),
        ];
        let labels = [
            serde_json::json!({"app": "web"}),
            serde_json::json!({"app": "web", "tls-steal.io/inject": "false"}),
            serde_json::json!({"app": "tls-steal-webhook"}),
            serde_json::json!({"tier": "control-plane"}),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for spec in &variants {
            for labels in &labels {
                let mut full = applied();
                let t = &mut full.spec.as_mut().unwrap().template;
                let mut pod_spec = serde_json::to_value(t.spec.as_ref().unwrap()).unwrap();
                for (k, v) in spec.as_object().unwrap() {
                    pod_spec[k] = v.clone();
                }
                t.spec = Some(serde_json::from_value(pod_spec).unwrap());
                t.metadata.as_mut().unwrap().labels =
                    Some(serde_json::from_value(labels.clone()).unwrap());
                let mut lean = full.clone();
                strip(&mut lean);
                for opted_in in [true, false] {
                    let state = WorkloadState::of(&lean, opted_in, &settings);
                    seen.insert(format!("{:?} {:?}", state.no_plan, state.target.containers));
                    assert_eq!(
                        WorkloadState::of(&lean, opted_in, &settings),
                        WorkloadState::of(&full, opted_in, &settings),
                        "{spec} {labels}"
                    );
                }
            }
        }
        // Host network, already injected, opted out, own pod, control plane, not opted in, and
        // plannable pods with and without UDP ports: the variants reach every branch.
        assert!(seen.len() >= 7, "{seen:#?}");
    }

    #[test]
    fn a_daemonset_keeps_the_status_its_decision_reads() {
        let mut ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent", "namespace": "ops", "generation": 1},
            "spec": {"selector": {}, "template": {}},
            "status": {"desiredNumberScheduled": 0, "currentNumberScheduled": 0,
                       "numberMisscheduled": 0, "numberReady": 0, "observedGeneration": 1}
        }))
        .unwrap();
        strip(&mut ds);
        assert!(ds.expects_no_pods());
    }
}

//! What the controller's watch caches keep of a workload: everything its decisions read (metadata
//! it matches and annotates, the pod template, the selector, a DaemonSet's status), without what
//! they never read and that is often most of the object: `managedFields`, the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (a second copy of the whole
//! object) and, for Deployments and StatefulSets, the status. Applied to every object as it
//! arrives, before the cache stores it.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::ResourceExt;

use super::desired::Workload;

/// The annotation `kubectl apply` writes: the last applied object, in full.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A workload whose status the decisions do not read.
pub trait Lean: Workload {
    fn drop_unread_status(&mut self);
}

impl Lean for Deployment {
    fn drop_unread_status(&mut self) {
        self.status = None;
    }
}

impl Lean for StatefulSet {
    fn drop_unread_status(&mut self) {
        self.status = None;
    }
}

impl Lean for DaemonSet {
    /// Kept: `expects_no_pods` reads `desiredNumberScheduled` and `observedGeneration`.
    fn drop_unread_status(&mut self) {}
}

/// Strips `w` down to what the controller reads.
pub fn strip<W: Lean>(w: &mut W) {
    w.managed_fields_mut().clear();
    w.annotations_mut().remove(LAST_APPLIED);
    w.drop_unread_status();
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
        assert_eq!(lean.spec, full.spec, "the template and selector are whole");
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

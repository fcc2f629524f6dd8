//! Target paths of a pod: `pod/<name>`, its owner chain (`deploy/<d>`, `rs/<rs>`, ...), each also
//! with `/container/<c>` for every container.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// Kinds of pod owners that have a target-path spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OwnerKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// Argo Rollout.
    Rollout,
}

impl OwnerKind {
    /// The first segment of the target path (`deploy`, `rs`, ...).
    pub fn path_prefix(self) -> &'static str {
        match self {
            OwnerKind::Deployment => "deploy",
            OwnerKind::ReplicaSet => "rs",
            OwnerKind::StatefulSet => "statefulset",
            OwnerKind::DaemonSet => "daemonset",
            OwnerKind::Job => "job",
            OwnerKind::CronJob => "cronjob",
            OwnerKind::Rollout => "rollout",
        }
    }

    /// The owner-reference `kind` this corresponds to (`Deployment`, `Rollout`, ...).
    pub fn from_kind(kind: &str) -> Option<OwnerKind> {
        Some(match kind {
            "Deployment" => OwnerKind::Deployment,
            "ReplicaSet" => OwnerKind::ReplicaSet,
            "StatefulSet" => OwnerKind::StatefulSet,
            "DaemonSet" => OwnerKind::DaemonSet,
            "Job" => OwnerKind::Job,
            "CronJob" => OwnerKind::CronJob,
            "Rollout" => OwnerKind::Rollout,
            _ => return None,
        })
    }

    /// Parses a target-path prefix (`deploy`, `statefulset`, ...).
    pub fn from_prefix(prefix: &str) -> Option<OwnerKind> {
        ALL_KINDS.into_iter().find(|k| k.path_prefix() == prefix)
    }
}

const ALL_KINDS: [OwnerKind; 7] = [
    OwnerKind::Deployment,
    OwnerKind::ReplicaSet,
    OwnerKind::StatefulSet,
    OwnerKind::DaemonSet,
    OwnerKind::Job,
    OwnerKind::CronJob,
    OwnerKind::Rollout,
];

/// Every first segment a target path can have.
pub fn known_prefixes() -> impl Iterator<Item = &'static str> {
    std::iter::once("pod").chain(ALL_KINDS.into_iter().map(OwnerKind::path_prefix))
}

/// One link of a pod's owner chain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub kind: OwnerKind,
    pub name: String,
}

impl Owner {
    pub fn new(kind: OwnerKind, name: impl Into<String>) -> Self {
        Owner {
            kind,
            name: name.into(),
        }
    }

    /// `deploy/<name>` and the like.
    pub fn path(&self) -> String {
        format!("{}/{}", self.kind.path_prefix(), self.name)
    }
}

/// A container and the ports it declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerInfo {
    pub name: String,
    pub ports: Vec<u16>,
}

/// One target path and the container it names, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPath {
    pub path: String,
    pub container: Option<String>,
}

/// What matching needs to know about a pod (or a pod template about to become pods).
/// `Hash`: the webhook remembers decisions per target (`build_plan` reads nothing else of a pod).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodTarget {
    /// `None` while the pod only has `generateName` (admission) or for a template.
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub containers: Vec<ContainerInfo>,
    /// The owner chain, nearest first (`rs/x-5d8f`, then `deploy/x`).
    pub owners: Vec<Owner>,
}

impl PodTarget {
    /// From a pod as the admission webhook sees it. The chain is derived from owner references
    /// and names: a ReplicaSet `<d>-<h>` whose pods carry `pod-template-hash: <h>` belongs to
    /// Deployment `<d>` (`rollouts-pod-template-hash` → Argo Rollout). Owners that names cannot
    /// answer are listed by [`PodTarget::needs_lookup`].
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let mut target = Self::from_parts(meta, pod.spec.as_ref());
        target.name = meta.name.clone().filter(|n| !n.is_empty());
        for r in meta.owner_references.iter().flatten() {
            let Some(kind) = OwnerKind::from_kind(&r.kind) else {
                continue;
            };
            target.owners.push(Owner::new(kind, &r.name));
            if kind == OwnerKind::ReplicaSet
                && let Some(parent) = derive_replicaset_parent(&r.name, &target.labels)
            {
                target.owners.push(parent);
            }
        }
        target
    }

    /// From a workload's pod template; `owners` is the workload itself (`deploy/x`, ...).
    pub fn from_template(template: &PodTemplateSpec, owners: Vec<Owner>) -> Self {
        let meta = template.metadata.clone().unwrap_or_default();
        let mut target = Self::from_parts(&meta, template.spec.as_ref());
        target.owners = owners;
        target
    }

    fn from_parts(meta: &ObjectMeta, spec: Option<&PodSpec>) -> Self {
        let containers = spec
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| ContainerInfo {
                        name: c.name.clone(),
                        ports: c
                            .ports
                            .iter()
                            .flatten()
                            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                            .filter_map(|p| u16::try_from(p.container_port).ok())
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        PodTarget {
            name: None,
            labels: meta.labels.clone().unwrap_or_default(),
            containers,
            owners: Vec::new(),
        }
    }

    /// Owners whose parent could not be derived from names and labels: a ReplicaSet with no
    /// recognised hash label (it may belong to a Deployment or a Rollout) and a Job (it may belong
    /// to a CronJob). The webhook reads these objects and calls [`PodTarget::add_owner`].
    pub fn needs_lookup(&self) -> Vec<&Owner> {
        self.owners
            .iter()
            .filter(|o| match o.kind {
                OwnerKind::ReplicaSet => !self
                    .owners
                    .iter()
                    .any(|p| matches!(p.kind, OwnerKind::Deployment | OwnerKind::Rollout)),
                OwnerKind::Job => !self.owners.iter().any(|p| p.kind == OwnerKind::CronJob),
                _ => false,
            })
            .collect()
    }

    /// Adds an owner found by lookup (ignored when already present).
    pub fn add_owner(&mut self, owner: Owner) {
        if !self.owners.contains(&owner) {
            self.owners.push(owner);
        }
    }

    /// Every target path of the pod: the pod itself (when named) and each owner, each alone and
    /// with `/container/<c>` for every container.
    pub fn target_paths(&self) -> Vec<TargetPath> {
        let bases = self
            .name
            .iter()
            .map(|n| format!("pod/{n}"))
            .chain(self.owners.iter().map(Owner::path));
        let mut paths = Vec::new();
        for base in bases {
            for c in &self.containers {
                paths.push(TargetPath {
                    path: format!("{base}/container/{}", c.name),
                    container: Some(c.name.clone()),
                });
            }
            paths.push(TargetPath {
                path: base,
                container: None,
            });
        }
        paths
    }

    /// A short name for logs and status: the nearest workload owner, else the pod.
    pub fn display_name(&self) -> String {
        self.owners
            .last()
            .map(Owner::path)
            .or_else(|| self.name.as_ref().map(|n| format!("pod/{n}")))
            .unwrap_or_else(|| "pod/<unnamed>".into())
    }
}

fn derive_replicaset_parent(rs: &str, labels: &BTreeMap<String, String>) -> Option<Owner> {
    let derive = |label: &str, kind| {
        let hash = labels.get(label)?;
        let parent = rs.strip_suffix(hash.as_str())?.strip_suffix('-')?;
        (!parent.is_empty()).then(|| Owner::new(kind, parent))
    };
    derive("pod-template-hash", OwnerKind::Deployment)
        .or_else(|| derive("rollouts-pod-template-hash", OwnerKind::Rollout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn replicaset_pod_at_admission_derives_its_deployment() {
        let p = pod(json!({
            "metadata": {"generateName": "web-5d8f7c-", "labels": {"app": "web", "pod-template-hash": "5d8f7c"},
              "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c", "uid": "u"}]},
            "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443}]}, {"name": "log"}]}
        }));
        let t = PodTarget::from_pod(&p);
        assert_eq!(t.name, None);
        assert_eq!(
            t.owners,
            vec![
                Owner::new(OwnerKind::ReplicaSet, "web-5d8f7c"),
                Owner::new(OwnerKind::Deployment, "web")
            ]
        );
        assert!(t.needs_lookup().is_empty());
        let paths: Vec<_> = t.target_paths().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "rs/web-5d8f7c/container/app",
                "rs/web-5d8f7c/container/log",
                "rs/web-5d8f7c",
                "deploy/web/container/app",
                "deploy/web/container/log",
                "deploy/web",
            ]
        );
        assert_eq!(t.containers[0].ports, [443]);
        assert_eq!(t.display_name(), "deploy/web");
    }

    #[test]
    fn rollout_and_unknown_replicaset() {
        let mut p = pod(json!({
            "metadata": {"name": "r-abc-x", "labels": {"rollouts-pod-template-hash": "abc"},
              "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r-abc", "uid": "u"}]},
            "spec": {"containers": [{"name": "c"}]}
        }));
        let t = PodTarget::from_pod(&p);
        assert!(t.owners.contains(&Owner::new(OwnerKind::Rollout, "r")));
        assert!(
            t.target_paths()
                .iter()
                .any(|p| p.path == "pod/r-abc-x/container/c")
        );

        p.metadata.labels = None;
        let mut t = PodTarget::from_pod(&p);
        assert_eq!(
            t.needs_lookup(),
            [&Owner::new(OwnerKind::ReplicaSet, "r-abc")]
        );
        t.add_owner(Owner::new(OwnerKind::Deployment, "r"));
        assert!(t.needs_lookup().is_empty());
    }

    #[test]
    fn statefulset_and_job_pods() {
        let t = PodTarget::from_pod(&pod(json!({
            "metadata": {"name": "db-0", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u"}]},
            "spec": {"containers": [{"name": "db"}]}
        })));
        assert_eq!(t.owners, [Owner::new(OwnerKind::StatefulSet, "db")]);
        let t = PodTarget::from_pod(&pod(json!({
            "metadata": {"name": "j-1-x", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j-1", "uid": "u"}]},
            "spec": {"containers": [{"name": "c"}]}
        })));
        assert_eq!(t.needs_lookup(), [&Owner::new(OwnerKind::Job, "j-1")]);
    }
}

//! TARGET (`deploy/x`, `statefulset/x`, `rollout/x`, `pod/x`, ...) → the pods it runs, as a
//! label selector from the workload's `spec.selector` (or the pod's name).

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject};
use kube::core::{GroupVersionKind, Selector};
use kube::{Api, Client};

/// Kinds of TARGET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    Rollout,
}

impl Kind {
    /// The target-path spelling.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Deployment => "deploy",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::ReplicaSet => "rs",
            Kind::Job => "job",
            Kind::Rollout => "rollout",
        }
    }
}

/// A parsed TARGET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.prefix(), self.name)
    }
}

/// How to find the target's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSelector {
    /// A single pod.
    Name(String),
    /// `spec.selector` of a workload, as a label selector string.
    Labels(String),
}

/// The target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{0:?} is not a target: expected KIND/NAME with KIND one of deploy, statefulset, rollout, pod, daemonset, rs, job (e.g. deploy/web)"
    )]
    Syntax(String),
    #[error("{target} not found in namespace {namespace}{hint}")]
    NotFound {
        target: Target,
        namespace: String,
        hint: &'static str,
    },
    #[error(
        "RBAC forbids reading {target} in namespace {namespace}: {message} (the ClusterRole tls-steal-user, bound in that namespace, grants what kubectl steal needs)"
    )]
    Forbidden {
        target: Target,
        namespace: String,
        message: String,
    },
    #[error("{target} has no usable spec.selector: {source}")]
    Selector {
        target: Target,
        #[source]
        source: SelectorError,
    },
    #[error("cannot read {target}: {source}")]
    Kube { target: Target, source: kube::Error },
}

/// Why a workload's `spec.selector` cannot select its pods.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error("it is missing")]
    Missing,
    #[error("it cannot be read")]
    Unreadable(#[source] serde_json::Error),
    #[error("it is not a valid label selector")]
    Invalid(#[source] kube::core::ParseExpressionError),
    #[error("it is empty (it would select every pod of the namespace)")]
    Empty,
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, TargetError> {
        let bad = || TargetError::Syntax(s.to_string());
        let (kind, name) = s.split_once('/').ok_or_else(bad)?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "pod" | "pods" | "po" => Kind::Pod,
            "deploy" | "deployment" | "deployments" => Kind::Deployment,
            "statefulset" | "statefulsets" | "sts" => Kind::StatefulSet,
            "daemonset" | "daemonsets" | "ds" => Kind::DaemonSet,
            "rs" | "replicaset" | "replicasets" => Kind::ReplicaSet,
            "job" | "jobs" => Kind::Job,
            "rollout" | "rollouts" | "ro" => Kind::Rollout,
            _ => return Err(bad()),
        };
        // A target path may name a container; the session is per pod, so it is not needed here.
        let name = name.split('/').next().unwrap_or_default();
        if name.is_empty() {
            return Err(bad());
        }
        Ok(Target {
            kind,
            name: name.to_string(),
        })
    }
}

/// Finds the target and how to select its pods.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    target: &Target,
) -> Result<PodSelector, TargetError> {
    let selector = match target.kind {
        Kind::Pod => {
            let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
            get(&api, namespace, target).await?;
            return Ok(PodSelector::Name(target.name.clone()));
        }
        Kind::Deployment => get(
            &Api::<Deployment>::namespaced(client.clone(), namespace),
            namespace,
            target,
        )
        .await?
        .spec
        .map(|s| s.selector),
        Kind::StatefulSet => get(
            &Api::<StatefulSet>::namespaced(client.clone(), namespace),
            namespace,
            target,
        )
        .await?
        .spec
        .map(|s| s.selector),
        Kind::DaemonSet => get(
            &Api::<DaemonSet>::namespaced(client.clone(), namespace),
            namespace,
            target,
        )
        .await?
        .spec
        .map(|s| s.selector),
        Kind::ReplicaSet => get(
            &Api::<ReplicaSet>::namespaced(client.clone(), namespace),
            namespace,
            target,
        )
        .await?
        .spec
        .map(|s| s.selector),
        Kind::Job => get(
            &Api::<Job>::namespaced(client.clone(), namespace),
            namespace,
            target,
        )
        .await?
        .spec
        .and_then(|s| s.selector),
        Kind::Rollout => {
            let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout");
            let resource = ApiResource::from_gvk_with_plural(&gvk, "rollouts");
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let obj = get(&api, namespace, target).await?;
            match obj.data.pointer("/spec/selector") {
                Some(v) => Some(serde_json::from_value::<LabelSelector>(v.clone()).map_err(
                    |e| TargetError::Selector {
                        target: target.clone(),
                        source: SelectorError::Unreadable(e),
                    },
                )?),
                None => None,
            }
        }
    };
    let selector = selector.ok_or_else(|| TargetError::Selector {
        target: target.clone(),
        source: SelectorError::Missing,
    })?;
    label_selector(&selector)
        .map(PodSelector::Labels)
        .map_err(|source| TargetError::Selector {
            target: target.clone(),
            source,
        })
}

/// `spec.selector` as a label selector string; an empty selector would select every pod and is
/// refused.
pub fn label_selector(selector: &LabelSelector) -> Result<String, SelectorError> {
    let s = Selector::try_from(selector.clone()).map_err(SelectorError::Invalid)?;
    let text = s.to_string();
    if text.is_empty() {
        return Err(SelectorError::Empty);
    }
    Ok(text)
}

async fn get<K>(api: &Api<K>, namespace: &str, target: &Target) -> Result<K, TargetError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    api.get(&target.name).await.map_err(|source| match source {
        kube::Error::Api(status) if status.is_not_found() => TargetError::NotFound {
            target: target.clone(),
            namespace: namespace.into(),
            hint: if target.kind == Kind::Rollout {
                " (or Argo Rollouts is not installed)"
            } else {
                ""
            },
        },
        kube::Error::Api(status) if status.is_forbidden() => TargetError::Forbidden {
            target: target.clone(),
            namespace: namespace.into(),
            message: status.message.clone(),
        },
        source => TargetError::Kube {
            target: target.clone(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn target_spellings() {
        let t = |s: &str| s.parse::<Target>().map(|t| t.to_string());
        assert_eq!(t("deploy/web").unwrap(), "deploy/web");
        assert_eq!(t("deployment/web").unwrap(), "deploy/web");
        assert_eq!(t("statefulset/db").unwrap(), "statefulset/db");
        assert_eq!(t("rollout/r").unwrap(), "rollout/r");
        assert_eq!(t("pod/p-1").unwrap(), "pod/p-1");
        assert_eq!(t("deploy/web/container/app").unwrap(), "deploy/web");
        for bad in ["web", "svc/web", "deploy/", ""] {
            let e = t(bad).unwrap_err().to_string();
            assert!(e.contains("is not a target"), "{bad}: {e}");
        }
    }

    #[test]
    fn not_found_names_the_target_and_namespace() {
        let e = TargetError::NotFound {
            target: "rollout/r".parse().unwrap(),
            namespace: "shop".into(),
            hint: " (or Argo Rollouts is not installed)",
        };
        assert_eq!(
            e.to_string(),
            "rollout/r not found in namespace shop (or Argo Rollouts is not installed)"
        );
    }

    #[test]
    fn selectors_become_label_selectors() {
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        let s = label_selector(&sel).unwrap();
        assert!(s.contains("app=web"), "{s}");
        assert!(s.contains("tier in (a,b)"), "{s}");
        assert!(matches!(
            label_selector(&LabelSelector::default()),
            Err(SelectorError::Empty)
        ));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Sometimes".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(matches!(
            label_selector(&bad),
            Err(SelectorError::Invalid(_))
        ));
    }
}

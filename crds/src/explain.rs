//! Why a config applies to a pod, or why not: the same checks as
//! [`ConfigSource::matching_paths`], in the same order, with the reason of the first that fails.
//! `kubectl steal --explain` prints it.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

use crate::plan::{ConfigKind, ConfigSource};
use crate::target::{PodTarget, TargetPath};

/// Why a config does not apply to a pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "camelCase")]
pub enum Mismatch {
    /// A namespaced config applies only to pods of its own namespace.
    #[serde(rename_all = "camelCase")]
    Namespace {
        config_namespace: String,
        pod_namespace: String,
    },
    /// The config's `selector` does not select the pod's labels.
    #[serde(rename_all = "camelCase")]
    Selector { selector: String },
    /// The config's `targetPath` matches none of the pod's target paths.
    #[serde(rename_all = "camelCase")]
    Pattern {
        pattern: String,
        /// The pod's target paths without a container (the `/container/<c>` forms exist too).
        pod_paths: Vec<String>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Namespace {
                config_namespace,
                pod_namespace,
            } => write!(
                f,
                "namespace: the config is in namespace {config_namespace}, the pod in {pod_namespace} (a MirrordTlsStealConfig applies to its own namespace only)"
            ),
            Mismatch::Selector { selector } => {
                write!(f, "selector: {selector} does not select the pod's labels")
            }
            Mismatch::Pattern { pattern, pod_paths } => write!(
                f,
                "pattern: targetPath {pattern:?} matches none of the pod's target paths ({})",
                pod_paths.join(", ")
            ),
        }
    }
}

/// `matchLabels` and `matchExpressions` as one line (`app=web, tier In (a, b)`).
pub fn describe_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default();
        parts.push(match values.is_empty() {
            true => format!("{} {}", req.key, req.operator),
            false => format!("{} {} ({})", req.key, req.operator, values.join(", ")),
        });
    }
    match parts.is_empty() {
        true => "{} (everything)".into(),
        false => parts.join(", "),
    }
}

/// The target paths `config` matches on `pod` (in `pod_namespace`), or why it does not apply.
/// Agrees with [`ConfigSource::matching_paths`] on every input.
pub fn match_config(
    config: &ConfigSource,
    pod: &PodTarget,
    pod_namespace: &str,
) -> Result<Vec<TargetPath>, Mismatch> {
    if let Some(paths) = config.matching_paths(pod, pod_namespace) {
        return Ok(paths);
    }
    if config.kind == ConfigKind::Namespaced && config.namespace.as_deref() != Some(pod_namespace) {
        return Err(Mismatch::Namespace {
            config_namespace: config.namespace.clone().unwrap_or_default(),
            pod_namespace: pod_namespace.into(),
        });
    }
    if let Some(selector) = &config.spec.selector
        && !crate::selector::selector_matches(Some(selector), &pod.labels)
    {
        return Err(Mismatch::Selector {
            selector: describe_selector(selector),
        });
    }
    Err(Mismatch::Pattern {
        pattern: config.spec.target_path.clone().unwrap_or_default(),
        pod_paths: pod
            .target_paths()
            .into_iter()
            .filter(|p| p.container.is_none())
            .map(|p| p.path)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;
    use crate::target::{ContainerInfo, Owner, OwnerKind};
    use crate::types::TlsStealSpec;

    fn pod() -> PodTarget {
        PodTarget {
            name: Some("web-5d8f-abc".into()),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            containers: vec![ContainerInfo {
                name: "app".into(),
                ports: vec![443],
            }],
            owners: vec![
                Owner::new(OwnerKind::ReplicaSet, "web-5d8f"),
                Owner::new(OwnerKind::Deployment, "web"),
            ],
        }
    }

    fn spec(pattern: Option<&str>, selector: Option<LabelSelector>) -> TlsStealSpec {
        TlsStealSpec {
            target_path: pattern.map(str::to_owned),
            selector,
            ports: vec![],
        }
    }

    fn app_selector(value: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), value.into())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        }
    }

    #[test]
    fn names_the_first_check_that_fails() {
        let p = pod();
        let ok = ConfigSource::namespaced("shop", "a", spec(Some("deploy/web*"), None));
        let paths = match_config(&ok, &p, "shop").unwrap();
        assert!(paths.iter().any(|t| t.path == "deploy/web"), "{paths:?}");

        let other_ns = ConfigSource::namespaced("bank", "a", spec(Some("deploy/web"), None));
        let e = match_config(&other_ns, &p, "shop").unwrap_err();
        assert!(matches!(e, Mismatch::Namespace { .. }), "{e:?}");
        assert!(e.to_string().contains("namespace bank"), "{e}");

        let sel = ConfigSource::cluster("c", spec(None, Some(app_selector("api"))));
        let e = match_config(&sel, &p, "shop").unwrap_err();
        assert_eq!(
            e.to_string(),
            "selector: app=api, tier DoesNotExist does not select the pod's labels"
        );

        let pat = ConfigSource::namespaced("shop", "a", spec(Some("deploy/api*"), None));
        let e = match_config(&pat, &p, "shop").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"deploy/api*\""), "{text}");
        assert!(
            text.contains("deploy/web, rs/web-5d8f") || text.contains("deploy/web"),
            "{text}"
        );
        assert!(!text.contains("/container/"), "{text}");
    }

    #[test]
    fn agrees_with_matching_paths() {
        let p = pod();
        for ns in ["shop", "bank"] {
            for pattern in [None, Some("deploy/web"), Some("pod/*"), Some("sts/*")] {
                for selector in [None, Some(app_selector("web")), Some(app_selector("x"))] {
                    for c in [
                        ConfigSource::namespaced("shop", "n", spec(pattern, selector.clone())),
                        ConfigSource::cluster("c", spec(pattern, selector.clone())),
                    ] {
                        assert_eq!(
                            match_config(&c, &p, ns).ok(),
                            c.matching_paths(&p, ns),
                            "{c:?} in {ns}"
                        );
                    }
                }
            }
        }
    }
}

//! The steal plan: every config that applies to a pod, merged into one TLS setting per port.
//! The webhook serialises it into the sidecar's `TLS_STEAL_PLAN` env var; its hash drives the
//! rollout controller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pattern::wildcard_match;
use crate::selector::selector_matches;
use crate::target::{PodTarget, TargetPath};
use crate::types::{
    AgentAsClient, AgentAsServer, MirrordClusterTlsStealConfig, MirrordTlsStealConfig, TlsStealSpec,
};

/// Version of the plan's JSON shape.
pub const PLAN_VERSION: u32 = 1;

/// Which of the two kinds a config is. Namespaced configs win over cluster ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigKind {
    Namespaced,
    Cluster,
}

/// A config as the merge sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigSource {
    pub kind: ConfigKind,
    /// The namespace of a namespaced config; `None` for cluster ones.
    pub namespace: Option<String>,
    pub name: String,
    pub spec: TlsStealSpec,
}

impl ConfigSource {
    pub fn namespaced(namespace: &str, name: &str, spec: TlsStealSpec) -> Self {
        ConfigSource {
            kind: ConfigKind::Namespaced,
            namespace: Some(namespace.into()),
            name: name.into(),
            spec,
        }
    }

    pub fn cluster(name: &str, spec: TlsStealSpec) -> Self {
        ConfigSource {
            kind: ConfigKind::Cluster,
            namespace: None,
            name: name.into(),
            spec,
        }
    }

    /// `MirrordTlsStealConfig/<ns>/<name>` or `MirrordClusterTlsStealConfig/<name>`.
    pub fn id(&self) -> String {
        match (&self.kind, &self.namespace) {
            (ConfigKind::Namespaced, Some(ns)) => {
                format!("MirrordTlsStealConfig/{ns}/{}", self.name)
            }
            _ => format!("MirrordClusterTlsStealConfig/{}", self.name),
        }
    }

    /// The order in which configs claim ports: namespaced before cluster-scoped, then by name.
    fn precedence(&self) -> (ConfigKind, &str) {
        (self.kind, &self.name)
    }

    /// The target paths of `pod` this config's `targetPath` matches, or `None` when the config
    /// does not apply (pattern, selector, or namespace).
    pub fn matching_paths(&self, pod: &PodTarget, pod_namespace: &str) -> Option<Vec<TargetPath>> {
        if self.kind == ConfigKind::Namespaced && self.namespace.as_deref() != Some(pod_namespace) {
            return None;
        }
        if !selector_matches(self.spec.selector.as_ref(), &pod.labels) {
            return None;
        }
        let paths: Vec<_> = pod
            .target_paths()
            .into_iter()
            .filter(|p| {
                self.spec
                    .target_path
                    .as_deref()
                    .is_none_or(|pat| wildcard_match(pat, &p.path))
            })
            .collect();
        (!paths.is_empty()).then_some(paths)
    }
}

impl From<&MirrordTlsStealConfig> for ConfigSource {
    fn from(c: &MirrordTlsStealConfig) -> Self {
        let ns = c.metadata.namespace.as_deref().unwrap_or_default();
        ConfigSource::namespaced(
            ns,
            c.metadata.name.as_deref().unwrap_or_default(),
            c.spec.inner.clone(),
        )
    }
}

impl From<&MirrordClusterTlsStealConfig> for ConfigSource {
    fn from(c: &MirrordClusterTlsStealConfig) -> Self {
        ConfigSource::cluster(
            c.metadata.name.as_deref().unwrap_or_default(),
            c.spec.inner.clone(),
        )
    }
}

/// The TLS settings of one captured port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortPlan {
    pub port: u16,
    /// The container whose filesystem holds every PEM path of this entry.
    pub container: String,
    /// Id of the config this entry comes from.
    pub config: String,
    pub agent_as_server: AgentAsServer,
    pub agent_as_client: AgentAsClient,
}

impl PortPlan {
    /// Every PEM file or directory this entry refers to.
    pub fn paths(&self) -> Vec<&str> {
        let server = &self.agent_as_server;
        let client = &self.agent_as_client;
        let mut v = vec![
            server.authentication.cert_pem.as_str(),
            server.authentication.key_pem.as_str(),
        ];
        v.extend(
            server
                .verification
                .iter()
                .flat_map(|s| s.trust_roots.iter().map(String::as_str)),
        );
        v.extend(
            client
                .authentication
                .iter()
                .flat_map(|a| [a.cert_pem.as_str(), a.key_pem.as_str()]),
        );
        v.extend(client.verification.trust_roots.iter().map(String::as_str));
        v
    }
}

/// A port entry that lost the merge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscardedPort {
    pub port: u16,
    /// The config whose entry was discarded.
    pub config: String,
    /// The config whose entry was kept.
    pub kept_by: String,
    pub reason: String,
}

/// A config that matched the pod but was left out because it is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedConfig {
    pub config: String,
    pub errors: Vec<String>,
}

/// Everything the sidecar of one pod needs, and what the webhook reports about it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StealPlan {
    pub version: u32,
    /// One entry per port, sorted by port.
    pub ports: Vec<PortPlan>,
    /// Ids of the configs that contributed at least one port, in precedence order.
    pub configs: Vec<String>,
    #[serde(default)]
    pub discarded: Vec<DiscardedPort>,
    #[serde(default)]
    pub rejected: Vec<RejectedConfig>,
    /// Stable hash of `ports` (empty string for an empty plan). Config names and discards do not
    /// change it, so renaming a config rolls nothing out.
    pub hash: String,
}

/// The plan JSON could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the steal plan is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the steal plan has version {found}, this build understands version {PLAN_VERSION}")]
    Version { found: u32 },
    #[error("the steal plan's hash {found:?} does not match its ports (expected {expected:?})")]
    Hash { found: String, expected: String },
}

impl StealPlan {
    /// No port to capture: the pod needs no sidecar.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The captured ports, ascending.
    pub fn port_numbers(&self) -> Vec<u16> {
        self.ports.iter().map(|p| p.port).collect()
    }

    /// The entry for `port`.
    pub fn port(&self, port: u16) -> Option<&PortPlan> {
        self.ports
            .binary_search_by_key(&port, |p| p.port)
            .ok()
            .map(|i| &self.ports[i])
    }

    /// Every (container, path) the plan refers to, deduplicated and sorted.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .ports
            .iter()
            .flat_map(|p| {
                p.paths()
                    .into_iter()
                    .map(|path| (p.container.clone(), path.to_owned()))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A plan made of exactly `ports` (sorted by port here), with the current version and the
    /// matching hash: what `from_json` accepts. For tools and tests that build plans by hand.
    pub fn from_ports(mut ports: Vec<PortPlan>) -> Self {
        ports.sort_by_key(|p| p.port);
        let hash = hash_ports(&ports);
        StealPlan {
            version: PLAN_VERSION,
            ports,
            hash,
            ..Default::default()
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a plan always serialises")
    }

    /// Parses and checks a plan (version and hash), as the sidecar does at start-up.
    pub fn from_json(s: &str) -> Result<Self, PlanError> {
        let plan: StealPlan = serde_json::from_str(s)?;
        if plan.version != PLAN_VERSION {
            return Err(PlanError::Version {
                found: plan.version,
            });
        }
        let expected = hash_ports(&plan.ports);
        if plan.hash != expected {
            return Err(PlanError::Hash {
                found: plan.hash,
                expected,
            });
        }
        Ok(plan)
    }
}

fn hash_ports(ports: &[PortPlan]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let canonical = serde_json::to_vec(ports).expect("ports always serialise");
    hex::encode(&Sha256::digest(&canonical)[..8])
}

/// Picks the container whose filesystem holds a port's files: the container named by the
/// matching paths when every one of them names a container (preferring the one that declares
/// the port); otherwise the container that declares the port; otherwise the first container.
fn choose_container(pod: &PodTarget, matched: &[TargetPath], port: u16) -> String {
    let declares = |name: &str| {
        pod.containers
            .iter()
            .any(|c| c.name == name && c.ports.contains(&port))
    };
    let named: Vec<&str> = matched
        .iter()
        .filter_map(|p| p.container.as_deref())
        .collect();
    if !named.is_empty() && named.len() == matched.len() {
        // Pod order, so the choice does not depend on which owner path matched first.
        let in_pod_order = pod
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .filter(|c| named.contains(c));
        let candidates: Vec<&str> = in_pod_order.collect();
        return candidates
            .iter()
            .find(|c| declares(c))
            .or(candidates.first())
            .unwrap()
            .to_string();
    }
    pod.containers
        .iter()
        .find(|c| c.ports.contains(&port))
        .or(pod.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// Merges every config of `configs` that applies to `pod` (in `pod_namespace`) into one plan.
/// The result does not depend on the order of `configs`. Invalid configs are left out and
/// listed in `rejected`; a port configured twice keeps the entry of the config that comes first
/// (namespaced before cluster-scoped, then by name) and lists the other in `discarded`.
pub fn build_plan(pod: &PodTarget, pod_namespace: &str, configs: &[ConfigSource]) -> StealPlan {
    let mut applicable: Vec<(&ConfigSource, Vec<TargetPath>)> = configs
        .iter()
        .filter_map(|c| c.matching_paths(pod, pod_namespace).map(|m| (c, m)))
        .collect();
    applicable.sort_by(|a, b| a.0.precedence().cmp(&b.0.precedence()));

    let mut ports: BTreeMap<u16, PortPlan> = BTreeMap::new();
    let mut plan = StealPlan {
        version: PLAN_VERSION,
        ..Default::default()
    };
    for (config, matched) in applicable {
        let id = config.id();
        if let Err(e) = config.spec.validate() {
            plan.rejected.push(RejectedConfig {
                config: id,
                errors: e.0.iter().map(|e| e.to_string()).collect(),
            });
            continue;
        }
        let mut used = false;
        for entry in &config.spec.ports {
            if let Some(kept) = ports.get(&entry.port) {
                let reason = if kept.config == id {
                    format!(
                        "port {} is listed twice in {id}; the first entry is kept",
                        entry.port
                    )
                } else {
                    format!(
                        "port {} is already configured by {}, which takes precedence",
                        entry.port, kept.config
                    )
                };
                plan.discarded.push(DiscardedPort {
                    port: entry.port,
                    config: id.clone(),
                    kept_by: kept.config.clone(),
                    reason,
                });
                continue;
            }
            used = true;
            ports.insert(
                entry.port,
                PortPlan {
                    port: entry.port,
                    container: choose_container(pod, &matched, entry.port),
                    config: id.clone(),
                    agent_as_server: entry.agent_as_server.clone(),
                    agent_as_client: entry.agent_as_client.clone(),
                },
            );
        }
        if used {
            plan.configs.push(id);
        }
    }
    plan.ports = ports.into_values().collect();
    plan.hash = hash_ports(&plan.ports);
    plan
}

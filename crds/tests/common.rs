//! Fixtures shared by the crds tests: builder-style pods and configs.

#![allow(dead_code)]

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tls_steal_crds::{MirrordTlsStealConfig, PodTarget, TlsStealSpec};

pub const SEED: &str = include_str!("fixtures/seed-tls-steal-config.yaml");

pub fn seed() -> MirrordTlsStealConfig {
    serde_saphyr::from_str(SEED).expect("the seed example loads unchanged")
}

/// A pod of Deployment `deploy` as admission sees it (generateName only).
#[derive(Clone)]
pub struct PodBuilder {
    deploy: String,
    labels: serde_json::Map<String, serde_json::Value>,
    containers: Vec<serde_json::Value>,
}

pub fn deployment_pod(deploy: &str) -> PodBuilder {
    PodBuilder {
        deploy: deploy.into(),
        labels: Default::default(),
        containers: Vec::new(),
    }
}

impl PodBuilder {
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    pub fn container(mut self, name: &str, ports: &[u16]) -> Self {
        let ports: Vec<_> = ports.iter().map(|p| json!({"containerPort": p})).collect();
        self.containers.push(json!({"name": name, "ports": ports}));
        self
    }

    pub fn pod(self) -> Pod {
        let mut labels = self.labels;
        labels.insert("pod-template-hash".into(), "7c9d8".into());
        serde_json::from_value(json!({
            "metadata": {
                "generateName": format!("{}-7c9d8-", self.deploy),
                "namespace": "example-deploy-namespace",
                "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": format!("{}-7c9d8", self.deploy), "uid": "1", "controller": true}]
            },
            "spec": {"containers": self.containers}
        }))
        .unwrap()
    }

    pub fn target(self) -> PodTarget {
        PodTarget::from_pod(&self.pod())
    }
}

/// A minimal valid spec for `ports`, with cert paths under `/certs/<tag>/`.
pub fn spec(target_path: Option<&str>, ports: &[u16], tag: &str) -> TlsStealSpec {
    let ports: Vec<_> = ports
        .iter()
        .map(|p| {
            json!({
                "port": p,
                "agentAsServer": {"authentication": {"certPem": format!("/certs/{tag}/tls.crt"), "keyPem": format!("/certs/{tag}/tls.key")}},
                "agentAsClient": {"verification": {"acceptAnyCert": true}}
            })
        })
        .collect();
    let mut v = json!({"ports": ports});
    if let Some(t) = target_path {
        v["targetPath"] = t.into();
    }
    serde_json::from_value(v).unwrap()
}

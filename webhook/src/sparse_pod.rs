//! A pod read with only the fields admission looks at.
//!
//! k8s-openapi's `Pod` parses every field of every container (env, probes, resources, ...) into
//! structs of ~2 kB each and moves them several times while doing so; that was a third of a
//! review's CPU. [`SparsePod`] reads the fields below and skips the rest of the JSON, giving a
//! `Pod` with only those fields set:
//!
//! * `metadata`: `name`, `generateName`, `namespace`, `labels`, `annotations`, `ownerReferences`;
//! * `spec`: `hostNetwork`, `os`, `nodeSelector`, `shareProcessNamespace`, `restartPolicy`,
//!   `terminationGracePeriodSeconds`, and
//!   of each container and init container `name`, `ports`, `volumeMounts`, and of their
//!   `readinessProbe`, `livenessProbe` and `startupProbe` the `httpGet`, `tcpSocket` and
//!   `timeoutSeconds` (what the probe rewrite reads; a probe with none of the two actions reads
//!   as an empty probe, which is left alone).
//!
//! Everything in `precheck`, `PodTarget::from_pod`, the mutation, its patch and the events reads
//! only these; the tests in `admission/tests.rs` check that a review read this way gets the same answer,
//! byte for byte, as one read into a whole `Pod`. A field that is set but not read keeps its
//! value in the API server, since the patch only adds.
//!
//! Decision: fields that are not read are not validated. A pod whose `resources` is a string is
//! injected here where the whole-`Pod` read would call it malformed; the API server decodes a pod
//! into its own types before calling webhooks, so it never sends one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, Pod, PodOS, PodSpec, Probe, TCPSocketAction,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A `Pod` holding only the fields listed in the module docs. Reads what k8s-openapi's `Pod`
/// reads for those fields (missing or null required fields become empty, `apiVersion` and `kind`
/// must be `v1` and `Pod` when present) and rejects duplicate keys, which the caller answers
/// through the whole-`Pod` path.
#[derive(Clone, Debug, Default)]
pub struct SparsePod(pub Pod);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPod {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<RawMeta>,
    spec: Option<RawSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    containers: Option<Vec<RawContainer>>,
    init_containers: Option<Vec<RawContainer>>,
    host_network: Option<bool>,
    os: Option<PodOS>,
    node_selector: Option<BTreeMap<String, String>>,
    share_process_namespace: Option<bool>,
    restart_policy: Option<String>,
    termination_grace_period_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContainer {
    name: Option<String>,
    ports: Option<Vec<ContainerPort>>,
    volume_mounts: Option<Vec<VolumeMount>>,
    readiness_probe: Option<RawProbe>,
    liveness_probe: Option<RawProbe>,
    startup_probe: Option<RawProbe>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProbe {
    http_get: Option<HTTPGetAction>,
    tcp_socket: Option<TCPSocketAction>,
    timeout_seconds: Option<i32>,
}

impl From<RawProbe> for Probe {
    fn from(p: RawProbe) -> Self {
        Probe {
            http_get: p.http_get,
            tcp_socket: p.tcp_socket,
            timeout_seconds: p.timeout_seconds,
            ..Default::default()
        }
    }
}

impl From<RawContainer> for Container {
    fn from(c: RawContainer) -> Self {
        Container {
            name: c.name.unwrap_or_default(),
            ports: c.ports,
            volume_mounts: c.volume_mounts,
            readiness_probe: c.readiness_probe.map(Probe::from),
            liveness_probe: c.liveness_probe.map(Probe::from),
            startup_probe: c.startup_probe.map(Probe::from),
            ..Default::default()
        }
    }
}

fn containers(list: Vec<RawContainer>) -> Vec<Container> {
    list.into_iter().map(Container::from).collect()
}

impl<'de> Deserialize<'de> for SparsePod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawPod::deserialize(d)?;
        if let Some(v) = raw.api_version.filter(|v| v != "v1") {
            return Err(D::Error::custom(format!(
                "pod apiVersion {v:?}, expected \"v1\""
            )));
        }
        if let Some(k) = raw.kind.filter(|k| k != "Pod") {
            return Err(D::Error::custom(format!(
                "pod kind {k:?}, expected \"Pod\""
            )));
        }
        let metadata = raw
            .metadata
            .map(|m| ObjectMeta {
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                labels: m.labels,
                annotations: m.annotations,
                owner_references: m.owner_references,
                ..Default::default()
            })
            .unwrap_or_default();
        let spec = raw.spec.map(|s| PodSpec {
            containers: s.containers.map(containers).unwrap_or_default(),
            init_containers: s.init_containers.map(containers),
            host_network: s.host_network,
            os: s.os,
            node_selector: s.node_selector,
            share_process_namespace: s.share_process_namespace,
            restart_policy: s.restart_policy,
            termination_grace_period_seconds: s.termination_grace_period_seconds,
            ..Default::default()
        });
        Ok(SparsePod(Pod {
            metadata,
            spec,
            status: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn full_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "generateName": "web-", "namespace": "shop",
                "labels": {"app": "web"}, "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
                "uid": "x", "resourceVersion": "1"},
            "spec": {
                "initContainers": [{"name": "setup", "image": "busybox", "command": ["sh"]}],
                "containers": [{"name": "app", "image": "web:1",
                    "ports": [{"containerPort": 8443, "name": "https", "protocol": "TCP"}],
                    "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls", "subPath": "s", "readOnly": true}],
                    "env": [{"name": "A", "value": "1"}],
                    "readinessProbe": {"httpGet": {"port": "https", "scheme": "HTTPS", "path": "/r",
                        "httpHeaders": [{"name": "X", "value": "y"}]}, "timeoutSeconds": 2, "periodSeconds": 5},
                    "livenessProbe": {"tcpSocket": {"port": 8443}},
                    "startupProbe": {"exec": {"command": ["true"]}},
                    "resources": {"limits": {"memory": "1Gi"}}}],
                "volumes": [{"name": "tls", "secret": {"secretName": "t"}}],
                "hostNetwork": false, "shareProcessNamespace": true, "restartPolicy": "OnFailure",
                "terminationGracePeriodSeconds": 90, "os": {"name": "linux"}, "nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"},
                "nodeName": "n"},
            "status": {"phase": "Pending"}
        })
    }

    /// Every read field comes out as the whole-`Pod` read has it.
    #[test]
    fn read_fields_match_the_whole_pod() {
        let value = full_pod();
        let whole: Pod = serde_json::from_value(value.clone()).unwrap();
        let sparse: SparsePod = serde_json::from_value(value).unwrap();
        let (w, s) = (&whole.metadata, &sparse.0.metadata);
        assert_eq!(
            (&s.name, &s.generate_name, &s.namespace),
            (&w.name, &w.generate_name, &w.namespace)
        );
        assert_eq!((&s.labels, &s.annotations), (&w.labels, &w.annotations));
        assert_eq!(s.owner_references, w.owner_references);
        assert!(s.managed_fields.is_none() && s.uid.is_none());
        let (w, s) = (whole.spec.unwrap(), sparse.0.spec.unwrap());
        assert_eq!(s.host_network, w.host_network);
        assert_eq!(s.share_process_namespace, w.share_process_namespace);
        assert_eq!(s.restart_policy.as_deref(), Some("OnFailure"));
        assert_eq!(s.restart_policy, w.restart_policy);
        assert_eq!(s.termination_grace_period_seconds, Some(90));
        assert_eq!(
            s.termination_grace_period_seconds,
            w.termination_grace_period_seconds
        );
        assert_eq!(s.os.as_ref().map(|o| o.name.as_str()), Some("linux"));
        assert_eq!((&s.os, &s.node_selector), (&w.os, &w.node_selector));
        let pairs = s.containers.iter().zip(&w.containers).chain(
            s.init_containers
                .iter()
                .flatten()
                .zip(w.init_containers.iter().flatten()),
        );
        for (s, w) in pairs {
            assert_eq!(
                (&s.name, &s.ports, &s.volume_mounts),
                (&w.name, &w.ports, &w.volume_mounts)
            );
            assert!(s.env.is_none() && s.image.is_none() && s.resources.is_none());
            let probe = |p: &Option<Probe>| {
                p.as_ref()
                    .map(|p| (p.http_get.clone(), p.tcp_socket.clone(), p.timeout_seconds))
            };
            for (sp, wp) in [
                (&s.readiness_probe, &w.readiness_probe),
                (&s.liveness_probe, &w.liveness_probe),
                (&s.startup_probe, &w.startup_probe),
            ] {
                assert_eq!(probe(sp), probe(wp));
            }
        }
        assert_eq!(s.containers.len(), 1);
        assert_eq!(s.init_containers.map(|c| c.len()), Some(1));
        assert!(s.volumes.is_none() && sparse.0.status.is_none());
    }

    /// Missing and null required fields become empty, as in k8s-openapi.
    #[test]
    fn missing_fields_default_like_k8s_openapi() {
        for value in [
            json!({}),
            json!({"metadata": null, "spec": {"containers": null}}),
            json!({"spec": {"containers": [{"name": null, "ports": null}]}}),
        ] {
            let whole: Pod = serde_json::from_value(value.clone()).unwrap();
            let sparse: SparsePod = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(sparse.0, whole, "{value}");
        }
    }

    /// A wrong apiVersion or kind, a wrongly typed read field, or a duplicate key: an error
    /// naming the problem (the review then takes the whole-`Pod` path).
    #[test]
    fn rejects_what_it_cannot_read() {
        for (value, want) in [
            (json!({"apiVersion": "v2"}), "apiVersion \"v2\""),
            (json!({"kind": "Service"}), "kind \"Service\""),
            (json!({"spec": {"containers": "x"}}), "invalid type"),
            (
                json!({"spec": {"containers": [{"ports": [{"containerPort": "x"}]}]}}),
                "invalid type",
            ),
        ] {
            let err = serde_json::from_value::<SparsePod>(value.clone()).unwrap_err();
            assert!(err.to_string().contains(want), "{value}: {err}");
        }
        let dup = br#"{"metadata": {"name": "a", "name": "b"}}"#;
        let err = serde_json::from_slice::<SparsePod>(dup).unwrap_err();
        assert!(err.to_string().contains("duplicate field `name`"), "{err}");
    }
}

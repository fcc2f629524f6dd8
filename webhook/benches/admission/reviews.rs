//! What the scenarios send: the configs in the caches and the reviews of their pods.

use std::sync::Arc;

use serde_json::json;
use tls_steal_crds::{ConfigSource, TlsStealSpec};

use crate::raw_conn::RawConn;
use crate::{PER_CONN, WARMUP_PER_CONN};

fn spec(target: String, port: u16) -> TlsStealSpec {
    serde_json::from_value(json!({
        "targetPath": target,
        "ports": [{"port": port,
            "agentAsServer": {"authentication": {"certPem": "/etc/tls/tls.crt", "keyPem": "/etc/tls/tls.key"},
                              "alpnProtocols": ["h2", "http/1.1"]},
            "agentAsClient": {"verification": {"acceptAnyCert": true}}}]
    }))
    .unwrap()
}

pub fn spread_configs() -> Vec<ConfigSource> {
    let mut v = Vec::new();
    for ns in 0..100 {
        for i in 0..9 {
            v.push(ConfigSource::namespaced(
                &format!("ns-{ns}"),
                &format!("c-{i}"),
                spec(format!("deploy/svc-{i}"), 8443),
            ));
        }
    }
    for i in 0..100 {
        v.push(ConfigSource::cluster(
            &format!("cl-{i}"),
            spec(format!("daemonset/agent-{i}"), 9443),
        ));
    }
    v
}

pub fn one_namespace_configs() -> Vec<ConfigSource> {
    (0..1000)
        .map(|i| {
            ConfigSource::namespaced(
                "ns-7",
                &format!("c-{i}"),
                spec(format!("deploy/svc-{i}"), 8443),
            )
        })
        .collect()
}

pub fn review(namespace: &str, deploy: &str) -> Vec<u8> {
    review_of_replicaset(namespace, deploy, "5d8f7c", false)
}

/// A review of a pod of ReplicaSet `<deploy>-<hash>`; `own_mount`: the pod also mounts a volume
/// at `/var/cache/<hash>` (a shape of its own).
pub fn review_of_replicaset(namespace: &str, deploy: &str, hash: &str, own_mount: bool) -> Vec<u8> {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{deploy}-{hash}-"), "namespace": namespace,
            "labels": {"app": deploy, "pod-template-hash": hash, "team": "payments", "tier": "backend"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-{hash}"),
                "uid": "3c1d6a4e-0000-4000-8000-000000000000", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "containers": [{"name": "app", "image": "example.com/app:1.2.3",
                "ports": [{"containerPort": 8443, "name": "https", "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8443, "scheme": "HTTPS"}},
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls", "readOnly": true},
                                 {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "volumes": [{"name": "tls", "secret": {"secretName": "app-tls"}},
                        {"name": "kube-api-access-abcde", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        }
    });
    if own_mount {
        let mounts = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap();
        mounts.push(json!({"name": "cache", "mountPath": format!("/var/cache/{hash}")}));
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": null, "dryRun": false}
    }))
    .unwrap()
}

/// The request uid of [`review_of_replicaset`]'s reviews, replaced in each review sent.
const UID: &str = "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4";

/// `body` with its request uid made unique for review `k` of connection `conn`, as the API
/// server sends every review with a uid of its own.
fn with_uid(body: &[u8], conn: usize, k: usize) -> Vec<u8> {
    let uid = format!("0c9a8d74-9cb7-44dd-{conn:04x}-{k:012x}");
    let at = body
        .windows(UID.len())
        .position(|w| w == UID.as_bytes())
        .expect("the review's uid");
    let mut out = body.to_vec();
    out[at..at + UID.len()].copy_from_slice(uid.as_bytes());
    out
}

/// What the connections send.
#[derive(Clone)]
pub enum Pods {
    /// The same review but for its uid, again and again: pods of one ReplicaSet, as a rollout
    /// or a scale-up sends them (the webhook replays its answer for all but the first).
    OneReplicaSet(Arc<Vec<u8>>),
    /// Every review a pod of another ReplicaSet of `svc-3` in `ns-7` (as when many Deployments
    /// roll out at once): no decision can be reused, but the patch can (same plan and shape).
    NewReplicaSetEach,
    /// As `NewReplicaSetEach`, and every pod with a mount of its own: nothing can be reused (the
    /// worst case; real pods of one Deployment share their mounts).
    NewShapeEach,
}

impl Pods {
    pub fn same(body: Vec<u8>) -> Self {
        Pods::OneReplicaSet(Arc::new(body))
    }

    /// Review `k` of connection `conn`.
    pub fn body(&self, conn: usize, k: usize) -> Arc<Vec<u8>> {
        match self {
            Pods::OneReplicaSet(b) => Arc::new(with_uid(b, conn, k)),
            Pods::NewReplicaSetEach | Pods::NewShapeEach => Arc::new(review_of_replicaset(
                "ns-7",
                "svc-3",
                &format!("{conn:02x}{k:04x}"),
                matches!(self, Pods::NewShapeEach),
            )),
        }
    }

    /// Every review connection `conn` sends (warm-up first), made before the clock starts.
    pub fn bodies(&self, conn: usize) -> Vec<Arc<Vec<u8>>> {
        self.first(conn, WARMUP_PER_CONN + PER_CONN)
    }

    /// The first `n` reviews of connection `conn`: all different.
    pub fn first(&self, conn: usize, n: usize) -> Vec<Arc<Vec<u8>>> {
        (0..n).map(|k| self.body(conn, k)).collect()
    }

    /// [`Pods::bodies`] as HTTP requests.
    pub fn requests(&self, conn: usize) -> Vec<Arc<Vec<u8>>> {
        self.bodies(conn)
            .iter()
            .map(|b| Arc::new(RawConn::request(b)))
            .collect()
    }
}

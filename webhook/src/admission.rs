//! One AdmissionReview in, one AdmissionReview out.
//!
//! Answers, precisely:
//! * body that is not JSON, or JSON without a readable `request.uid` (empty body included):
//!   **HTTP 400** with an AdmissionReview whose response is `allowed: false`, reason
//!   `InvalidRequest` ([`AdmissionResponse::invalid`]). The API server treats a non-200 answer as
//!   a failed call, so the chart's `failurePolicy` decides (default `Ignore`: the pod is admitted).
//! * an AdmissionReview with a readable uid but otherwise malformed (missing fields, an object
//!   that is not a valid Pod): HTTP 200, `allowed: true`, no patch, a warning. Fail open.
//! * an AdmissionReview for another kind (a Deployment, ...) or another operation than CREATE:
//!   HTTP 200, `allowed: true`, no patch, a warning.
//! * a pod that is skipped: HTTP 200, `allowed: true`, no patch (skip reason counted).
//! * an internal error (including a panic in the mutation): HTTP 200, `allowed: true`, no patch,
//!   logged and counted (fail open).
//! * a pod that is injected: HTTP 200, `allowed: true`, a JSON patch turning the pod into the one
//!   [`mutate`](crate::mutate::mutate) returns ([`Mutation::patch_json`]).
//!
//! Bodies over the size limit are refused with 413 by the HTTP layer before reaching here.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client};
use serde::Deserialize;
use tls_steal_crds::{Owner, OwnerKind, PodTarget};

use crate::configs::ConfigCache;
use crate::metrics::{Metrics, ReviewResult};
use crate::mutate::{Mutation, mutation, precheck};
use crate::settings::Settings;

/// Access to the cluster for the rare owner lookup and for events. Absent in tests and `inject`.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub recorder: Recorder,
}

/// Everything a review needs.
pub struct Admission {
    pub cache: Arc<ConfigCache>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub cluster: Option<Cluster>,
}

/// An HTTP status and a JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

fn answer(status: u16, review: &AdmissionReview<kube::core::DynamicObject>) -> Answer {
    Answer {
        status,
        body: serde_json::to_vec(review).unwrap_or_default(),
    }
}

/// An allowed review carrying `patch` (a serialised JSON patch), written straight into the
/// body. kube-core's `with_patch` keeps the patch as `Vec<u8>`, which serde writes as an array of
/// numbers; here it is the base64 string Kubernetes itself uses for `[]byte`, next to
/// `patchType: JSONPatch`. Same keys, in the same (sorted) order, as kube-core's review.
fn answer_with_patch(resp: &AdmissionResponse, patch: &[u8]) -> Result<Answer, serde_json::Error> {
    let mut body = Vec::with_capacity(patch.len() / 3 * 4 + 256);
    body.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut body, &resp.types.api_version)?;
    body.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut body, &resp.types.kind)?;
    body.extend_from_slice(b",\"response\":{\"allowed\":");
    serde_json::to_writer(&mut body, &resp.allowed)?;
    if !resp.audit_annotations.is_empty() {
        body.extend_from_slice(b",\"auditAnnotations\":");
        serde_json::to_writer(&mut body, &resp.audit_annotations)?;
    }
    body.extend_from_slice(b",\"patch\":\"");
    base64(&mut body, patch);
    body.extend_from_slice(b"\",\"patchType\":\"JSONPatch\",\"status\":");
    serde_json::to_writer(&mut body, &resp.result)?;
    body.extend_from_slice(b",\"uid\":");
    serde_json::to_writer(&mut body, &resp.uid)?;
    if let Some(w) = &resp.warnings {
        body.extend_from_slice(b",\"warnings\":");
        serde_json::to_writer(&mut body, w)?;
    }
    body.extend_from_slice(b"}}");
    Ok(Answer { status: 200, body })
}

/// Standard base64 with padding (what `k8s_openapi::ByteString` writes), appended to `out`.
fn base64(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine;
    let start = out.len();
    let len = base64::encoded_len(data.len(), true).expect("a patch far below usize::MAX / 4");
    out.resize(start + len, 0);
    base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .expect("the buffer was sized by encoded_len");
}

/// `allowed: true` for a request that could not be turned into an [`AdmissionRequest`].
fn bare_allowed(uid: String, api_version: &str) -> AdmissionResponse {
    let mut resp: AdmissionResponse =
        serde_json::from_value(serde_json::json!({"uid": uid, "allowed": true, "status": {}}))
            .expect("a minimal AdmissionResponse deserialises");
    resp.types = kube::core::TypeMeta {
        api_version: api_version.into(),
        kind: "AdmissionReview".into(),
    };
    resp
}

fn allowed_with_warning(mut resp: AdmissionResponse, warning: String) -> AdmissionResponse {
    resp.allowed = true;
    resp.result.message = warning.clone();
    resp.warnings = Some(vec![warning]);
    resp
}

impl Admission {
    /// Answers one request body. Never panics.
    pub async fn review(&self, body: &[u8]) -> Answer {
        let start = Instant::now();
        let (result, answer) = self.review_inner(body).await;
        self.metrics.review(result, start.elapsed());
        answer
    }

    async fn review_inner(&self, body: &[u8]) -> (ReviewResult, Answer) {
        // The common case in one typed pass; anything unusual takes the general path below, which
        // decides every error answer.
        if let Ok(FastReview {
            api_version,
            kind,
            request: Some(mut req),
            ..
        }) = serde_json::from_slice::<FastReview>(body)
            && req.kind.kind == "Pod"
            && req.kind.group.is_empty()
        {
            req.types = kube::core::TypeMeta { api_version, kind };
            return self.review_request(req).await;
        }
        self.review_general(body).await
    }

    async fn review_general(&self, body: &[u8]) -> (ReviewResult, Answer) {
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let resp = AdmissionResponse::invalid(format!("request body is not JSON: {e}"));
                return (ReviewResult::Invalid, answer(400, &resp.into_review()));
            }
        };
        let uid = value
            .pointer("/request/uid")
            .and_then(|u| u.as_str())
            .map(str::to_owned);
        let Some(uid) = uid else {
            let resp = AdmissionResponse::invalid("not an AdmissionReview with a request.uid");
            return (ReviewResult::Invalid, answer(400, &resp.into_review()));
        };
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .filter(|v| *v == "admission.k8s.io/v1beta1")
            .unwrap_or("admission.k8s.io/v1");
        let kind = value
            .pointer("/request/kind/kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let group = value
            .pointer("/request/kind/group")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind != "Pod" || !group.is_empty() {
            let resp = bare_allowed(uid, api_version);
            let warning =
                format!("tls-steal: only Pods are mutated, got kind {kind:?}; admitted unchanged");
            tracing::warn!(%kind, "unexpected kind in AdmissionReview");
            return (
                ReviewResult::UnexpectedKind,
                answer(200, &allowed_with_warning(resp, warning).into_review()),
            );
        }
        let review = match AdmissionReview::<Pod>::deserialize(&value) {
            Ok(r) => r,
            Err(e) => {
                let resp = bare_allowed(uid, api_version);
                let warning =
                    format!("tls-steal: malformed AdmissionReview ({e}); admitted unchanged");
                tracing::warn!(error = %e, "malformed AdmissionReview");
                return (
                    ReviewResult::Invalid,
                    answer(200, &allowed_with_warning(resp, warning).into_review()),
                );
            }
        };
        let req: AdmissionRequest<Pod> = match review.try_into() {
            Ok(r) => r,
            Err(_) => {
                let resp = AdmissionResponse::invalid("AdmissionReview without request");
                return (ReviewResult::Invalid, answer(400, &resp.into_review()));
            }
        };
        self.review_request(req).await
    }

    async fn review_request(&self, req: AdmissionRequest<Pod>) -> (ReviewResult, Answer) {
        let resp = AdmissionResponse::from(&req);
        let (Operation::Create, Some(pod)) = (&req.operation, &req.object) else {
            let warning = format!(
                "tls-steal: only pod CREATE is mutated, got {:?}; admitted unchanged",
                req.operation
            );
            return (
                ReviewResult::UnexpectedKind,
                answer(200, &allowed_with_warning(resp, warning).into_review()),
            );
        };
        let namespace = req
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into());

        match self.decide(pod, &namespace, req.dry_run).await {
            Ok(Decision::Skip) => (ReviewResult::Skipped, answer(200, &resp.into_review())),
            Ok(Decision::Patch(patch)) => match answer_with_patch(&resp, &patch) {
                Ok(a) => (ReviewResult::Injected, a),
                Err(e) => {
                    tracing::error!(error = %e, "serialising the patch");
                    (ReviewResult::Error, answer(200, &resp.into_review()))
                }
            },
            Err(e) => {
                tracing::error!(error = %e, %namespace, "injection failed; pod admitted unchanged");
                if !req.dry_run {
                    self.publish(
                        pod,
                        &namespace,
                        "InjectionFailed",
                        format!("tls-steal could not inject: {e}"),
                    );
                }
                (ReviewResult::Error, answer(200, &resp.into_review()))
            }
        }
    }

    async fn decide(&self, pod: &Pod, namespace: &str, dry_run: bool) -> Result<Decision, String> {
        if let Some(reason) = precheck(pod, &self.settings) {
            self.metrics.skip(reason);
            tracing::debug!(reason = reason.as_str(), "skipped");
            return Ok(Decision::Skip);
        }
        let entries = self.cache.for_namespace(namespace);
        let mut target = PodTarget::from_pod(pod);
        if !entries.is_empty() && !target.needs_lookup().is_empty() {
            self.lookup_owners(&mut target, namespace).await;
        }
        let configs = entries.candidates(&target);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            match mutation(pod, &target, namespace, &configs, &self.settings) {
                Err(reason) => Ok(Err(reason)),
                Ok(m) => m.patch_json(pod).map(|patch| Ok((m, patch))),
            }
        }))
        .map_err(|_| "the mutation panicked".to_string())?
        .map_err(|e| e.to_string())?;
        let (injection, patch) = match outcome {
            Err(reason) => {
                self.metrics.skip(reason);
                return Ok(Decision::Skip);
            }
            Ok(i) => i,
        };
        tracing::info!(
            target = %target.display_name(),
            %namespace,
            ports = ?injection.plan.port_numbers(),
            hash = %injection.plan.hash,
            "injecting tls-steal"
        );
        if !injection.undeclared_ports.is_empty() {
            self.metrics
                .undeclared_ports(injection.undeclared_ports.len());
            if !dry_run {
                self.warn_undeclared(pod, namespace, &injection);
            }
        }
        Ok(Decision::Patch(patch))
    }

    /// Completes the owner chain by reading ReplicaSets / Jobs. Failures are counted and ignored.
    async fn lookup_owners(&self, target: &mut PodTarget, namespace: &str) {
        let Some(cluster) = &self.cluster else { return };
        let owners: Vec<Owner> = target.needs_lookup().into_iter().cloned().collect();
        for owner in owners {
            let refs = match owner.kind {
                OwnerKind::ReplicaSet => {
                    Api::<ReplicaSet>::namespaced(cluster.client.clone(), namespace)
                        .get_metadata_opt(&owner.name)
                        .await
                        .map(|o| o.and_then(|o| o.metadata.owner_references))
                }
                OwnerKind::Job => Api::<Job>::namespaced(cluster.client.clone(), namespace)
                    .get_metadata_opt(&owner.name)
                    .await
                    .map(|o| o.and_then(|o| o.metadata.owner_references)),
                _ => continue,
            };
            match refs {
                Ok(refs) => {
                    for r in refs.into_iter().flatten() {
                        if let Some(kind) = OwnerKind::from_kind(&r.kind) {
                            target.add_owner(Owner::new(kind, r.name));
                        }
                    }
                }
                Err(e) => {
                    self.metrics.owner_lookup_error();
                    tracing::warn!(error = %e, owner = %owner.path(), "owner lookup failed");
                }
            }
        }
    }

    fn warn_undeclared(&self, pod: &Pod, namespace: &str, injection: &Mutation) {
        let ports = &injection.undeclared_ports;
        tracing::warn!(?ports, "captured ports that no container declares");
        let note = format!(
            "tls-steal captures port(s) {ports:?} that no container declares (configs: {})",
            injection.plan.configs.join(", ")
        );
        self.publish(pod, namespace, "UndeclaredPort", note);
    }

    /// A Warning event about `pod` (on its controller), fire and forget.
    fn publish(&self, pod: &Pod, namespace: &str, reason: &str, note: String) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let reference = event_reference(pod, namespace);
        let reason = reason.to_string();
        tokio::spawn(async move {
            let ev = Event {
                type_: EventType::Warning,
                reason,
                note: Some(note),
                action: "Inject".into(),
                secondary: None,
            };
            if let Err(e) = cluster.recorder.publish(&ev, &reference).await {
                tracing::debug!(error = %e, "publishing event");
            }
        });
    }
}

enum Decision {
    Skip,
    /// The serialised JSON patch.
    Patch(Vec<u8>),
}

/// `AdmissionReview<Pod>` with the same fields and types, minus kube-core's
/// `#[serde(flatten)]` of the type meta, which makes serde buffer the whole body before reading
/// it. It accepts what the general path accepts (field for field), so a review it reads gets the
/// same answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastReview {
    api_version: String,
    kind: String,
    request: Option<AdmissionRequest<Pod>>,
    #[serde(default)]
    #[allow(dead_code)]
    response: Option<AdmissionResponse>,
}

/// What an event about a pod being created refers to: its controller (which exists already),
/// else the pod by name or generateName.
fn event_reference(pod: &Pod, namespace: &str) -> ObjectReference {
    let meta = &pod.metadata;
    if let Some(owner) = meta.owner_references.iter().flatten().next() {
        return ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(namespace.into()),
            uid: Some(owner.uid.clone()),
            ..Default::default()
        };
    }
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: meta.name.clone().or_else(|| meta.generate_name.clone()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use tls_steal_crds::TlsStealSpec;

    fn admission() -> Admission {
        let spec: TlsStealSpec = serde_json::from_value(json!({
            "targetPath": "deploy/web",
            "ports": [{"port": 8443,
                "agentAsServer": {"authentication": {"certPem": "/etc/tls/tls.crt", "keyPem": "/etc/tls/tls.key"}},
                "agentAsClient": {"verification": {"acceptAnyCert": true}}}]
        }))
        .unwrap();
        Admission {
            cache: Arc::new(ConfigCache::from_sources(vec![
                tls_steal_crds::ConfigSource::namespaced("shop", "web", spec),
            ])),
            settings: Settings::default(),
            metrics: Arc::new(Metrics::default()),
            cluster: None,
        }
    }

    fn pod(deploy: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": format!("{deploy}-5d8f7c-"), "namespace": "shop",
                "labels": {"app": deploy, "pod-template-hash": "5d8f7c"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-5d8f7c"), "uid": "u"}]},
            "spec": {"containers": [{"name": "app", "image": "web:1", "ports": [{"containerPort": 8443}],
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}]}],
                "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]}
        })
    }

    fn review(api_version: &str, kind: Value, operation: &str, object: Value) -> Value {
        json!({
            "apiVersion": api_version, "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": kind,
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop", "operation": operation,
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": object, "oldObject": null, "dryRun": false}
        })
    }

    /// The one-pass read answers exactly like the general path, byte for byte.
    #[tokio::test]
    async fn fast_path_answers_like_the_general_path() {
        let a = admission();
        let pod_kind = json!({"group": "", "version": "v1", "kind": "Pod"});
        let mut bodies = vec![
            review(
                "admission.k8s.io/v1",
                pod_kind.clone(),
                "CREATE",
                pod("web"),
            ),
            review(
                "admission.k8s.io/v1beta1",
                pod_kind.clone(),
                "CREATE",
                pod("web"),
            ),
            review(
                "admission.k8s.io/v1",
                pod_kind.clone(),
                "CREATE",
                pod("api"),
            ),
            review(
                "admission.k8s.io/v1",
                pod_kind.clone(),
                "UPDATE",
                pod("web"),
            ),
            review(
                "admission.k8s.io/v1",
                pod_kind.clone(),
                "DELETE",
                Value::Null,
            ),
            review(
                "admission.k8s.io/v1",
                json!({"group": "apps", "version": "v1", "kind": "Pod"}),
                "CREATE",
                pod("web"),
            ),
            review(
                "admission.k8s.io/v1",
                json!({"group": "", "version": "v1", "kind": "Service"}),
                "CREATE",
                pod("web"),
            ),
        ];
        let mut no_ns = review(
            "admission.k8s.io/v1",
            pod_kind.clone(),
            "CREATE",
            pod("web"),
        );
        no_ns["request"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        bodies.push(no_ns);
        let mut bad = review(
            "admission.k8s.io/v1",
            pod_kind.clone(),
            "CREATE",
            pod("web"),
        );
        bad["request"]["object"]["spec"]["containers"] = json!("not a list");
        bodies.push(bad);
        let mut no_user = review("admission.k8s.io/v1", pod_kind, "CREATE", pod("web"));
        no_user["request"]
            .as_object_mut()
            .unwrap()
            .remove("userInfo");
        bodies.push(no_user);
        let mut bodies: Vec<Vec<u8>> = bodies
            .iter()
            .map(|b| serde_json::to_vec(b).unwrap())
            .collect();
        bodies
            .push(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec());
        bodies.push(br#"{"request": {"uid": "x", "uid": "y"}}"#.to_vec());
        bodies.push(b"[1, 2]".to_vec());
        let mut patched = 0;
        for body in &bodies {
            let (r1, fast) = a.review_inner(body).await;
            let (r2, general) = a.review_general(body).await;
            let text = String::from_utf8_lossy(body);
            assert_eq!(r1, r2, "{text}");
            assert_eq!(fast.status, general.status, "{text}");
            assert_eq!(fast.body, general.body, "{text}");
            let v: Value = serde_json::from_slice(&fast.body).unwrap();
            patched += usize::from(v["response"].get("patch").is_some());
        }
        assert_eq!(patched, 3);
    }

    /// The patched answer is what kube-core's review with the patch added would serialise to.
    #[test]
    fn patched_answer_matches_kube_core_shape() {
        let patch = br#"[{"op":"add","path":"/a","value":1}]"#.to_vec();
        let check = |resp: AdmissionResponse| {
            let got = answer_with_patch(&resp, &patch).unwrap();
            let mut want = serde_json::to_value(resp.into_review()).unwrap();
            want["response"]["patch"] =
                serde_json::to_value(k8s_openapi::ByteString(patch.clone())).unwrap();
            want["response"]["patchType"] = "JSONPatch".into();
            assert_eq!(got.body, serde_json::to_vec(&want).unwrap());
        };
        let mut resp = AdmissionResponse::invalid("x");
        resp.allowed = true;
        resp.result = Default::default();
        resp.uid = "u-1".into();
        check(resp.clone());
        resp.warnings = Some(vec!["w".into()]);
        resp.audit_annotations.insert("k".into(), "v".into());
        check(resp);
    }

    #[test]
    fn base64_matches_byte_string() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in (0..10).chain([255, 256, 257, 512]) {
            let mut got = Vec::new();
            base64(&mut got, &data[..len]);
            let want = serde_json::to_value(k8s_openapi::ByteString(data[..len].to_vec())).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                want.as_str().unwrap(),
                "{len}"
            );
        }
    }
}

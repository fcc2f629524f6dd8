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
//! * a pod that is injected: HTTP 200, `allowed: true`, a JSON patch (the json-patch diff of the
//!   pod before and after [`mutate`]).
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

use crate::configs::{ConfigCache, candidates};
use crate::metrics::{Metrics, ReviewResult};
use crate::mutate::{Injection, Outcome, mutate, precheck};
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

/// An allowed review carrying `patch`. kube-core's `with_patch` keeps the patch as `Vec<u8>`,
/// which serde writes as an array of numbers (slow to build and parse); it is written here as the
/// base64 string Kubernetes itself uses for `[]byte`, next to `patchType: JSONPatch`.
fn answer_with_patch(
    resp: AdmissionResponse,
    patch: &json_patch::Patch,
) -> Result<Answer, serde_json::Error> {
    let patch = serde_json::to_vec(patch)?;
    let mut value = serde_json::to_value(resp.into_review())?;
    if let Some(r) = value.get_mut("response").and_then(|r| r.as_object_mut()) {
        r.insert(
            "patch".into(),
            serde_json::to_value(k8s_openapi::ByteString(patch))?,
        );
        r.insert("patchType".into(), "JSONPatch".into());
    }
    Ok(Answer {
        status: 200,
        body: serde_json::to_vec(&value)?,
    })
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
            Ok(Decision::Patch(patch)) => match answer_with_patch(resp.clone(), &patch) {
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
        let configs = candidates(&entries, &target);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            mutate(pod, &target, namespace, &configs, &self.settings)
        }))
        .map_err(|_| "the mutation panicked".to_string())?;
        let injection = match outcome {
            Outcome::Skipped(reason) => {
                self.metrics.skip(reason);
                return Ok(Decision::Skip);
            }
            Outcome::Injected(i) => i,
        };
        let before = serde_json::to_value(pod).map_err(|e| e.to_string())?;
        let after = serde_json::to_value(&injection.pod).map_err(|e| e.to_string())?;
        let patch = json_patch::diff(&before, &after);
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

    fn warn_undeclared(&self, pod: &Pod, namespace: &str, injection: &Injection) {
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
    Patch(json_patch::Patch),
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

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

use std::borrow::Cow;
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

use crate::configs::{ConfigCache, NamespaceConfigs};
use crate::memo::{self, Decided, Injected, Memo};
use crate::metrics::{Metrics, ReviewResult};
use crate::mutate::{PodShape, SkipReason, plan_for, plan_mutation, precheck, undeclared_ports};
use crate::replay::{Outcome, Replay, Replayable};
use crate::settings::Settings;
use crate::sparse_pod::SparsePod;

/// Access to the cluster for the rare owner lookup and for events. Absent in tests and `inject`.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub recorder: Recorder,
}

/// Everything a review needs.
pub struct Admission {
    pub cache: Arc<ConfigCache>,
    /// Private, like `memo`: what the memo remembers was computed with these settings.
    settings: Settings,
    pub metrics: Arc<Metrics>,
    pub cluster: Option<Cluster>,
    /// Decisions and patches per pod shape (see `memo`).
    memo: Memo,
    /// Answers of reviews that differ only in their uid (see `replay`).
    replay: Replay,
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
fn answer_with_patch(
    resp: &AdmissionResponse,
    patch_base64: &str,
) -> Result<Answer, serde_json::Error> {
    let mut body = Vec::with_capacity(patch_base64.len() + 256);
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
    body.extend_from_slice(patch_base64.as_bytes());
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

/// Standard base64 with padding (what `k8s_openapi::ByteString` writes).
fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The line operators see for each injected pod.
fn log_injection(target: &str, namespace: &str, injected: &Injected) {
    tracing::info!(
        %target,
        %namespace,
        ports = ?injected.ports,
        hash = %injected.hash,
        "injecting tls-steal"
    );
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

/// Where a review stands after its synchronous part.
enum Step {
    /// With the request uid's span and the outcome when the answer depends on the body alone.
    Done(ReviewResult, Answer, Option<((usize, usize), Outcome)>),
    /// A pod CREATE to decide on. Boxed: only this crosses the owner lookup's `.await`, which
    /// keeps the review's future small (axum moves it several times; a 23 kB future, when the
    /// request sat in it, cost 5% of the server's CPU in memcpy).
    Pod(Box<PodReview>),
}

struct PodReview {
    pod: Pod,
    dry_run: bool,
    uid_span: Option<(usize, usize)>,
    resp: AdmissionResponse,
    namespace: String,
    entries: Arc<NamespaceConfigs>,
    target: PodTarget,
}

impl Admission {
    pub fn new(
        cache: Arc<ConfigCache>,
        settings: Settings,
        metrics: Arc<Metrics>,
        cluster: Option<Cluster>,
    ) -> Self {
        Admission {
            cache,
            settings,
            metrics,
            cluster,
            memo: Memo::default(),
            replay: Replay::default(),
        }
    }

    /// What is injected.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Answers one request body. Never panics.
    pub async fn review(&self, body: &[u8]) -> Answer {
        let start = Instant::now();
        // Read before the review: a config change during it makes its template unusable.
        let generation = self.cache.generation();
        let probe = match self.replay.answer(body, generation) {
            Ok(r) => {
                self.metrics.replayed();
                let result = self.replayed(&r.outcome);
                self.metrics.review(result, start.elapsed());
                return Answer {
                    status: r.status,
                    body: r.body,
                };
            }
            Err(probe) => probe,
        };
        let (result, answer, outcome) = self.complete(self.read(body)).await;
        if let Some((uid_span, outcome)) = outcome {
            let review = Replayable {
                uid_span,
                generation,
                outcome,
            };
            self.replay
                .keep(body, probe, review, answer.status, &answer.body);
        }
        self.metrics.review(result, start.elapsed());
        answer
    }

    /// What a review whose answer is replayed does besides answering (see `replay`).
    fn replayed(&self, outcome: &Outcome) -> ReviewResult {
        match outcome {
            Outcome::Skipped(reason) => {
                self.metrics.skip(*reason);
                tracing::debug!(reason = reason.as_str(), "skipped");
                ReviewResult::Skipped
            }
            Outcome::Injected {
                injected,
                target,
                namespace,
            } => {
                log_injection(target, namespace, injected);
                ReviewResult::Injected
            }
        }
    }

    /// The only asynchronous part: owners that names cannot answer are looked up. Also returns
    /// the request uid's span and the outcome when the answer depends on the body alone.
    async fn complete(
        &self,
        step: Step,
    ) -> (ReviewResult, Answer, Option<((usize, usize), Outcome)>) {
        match step {
            Step::Done(result, answer, replayable) => (result, answer, replayable),
            Step::Pod(mut review) => {
                let looked_up = self.cluster.is_some()
                    && !review.entries.is_empty()
                    && !review.target.needs_lookup().is_empty();
                if looked_up {
                    Box::pin(self.lookup_owners(&mut review.target, &review.namespace)).await;
                }
                let uid_span = review.uid_span.filter(|_| !looked_up);
                let (result, answer, outcome) = self.finish(*review);
                (result, answer, uid_span.zip(outcome))
            }
        }
    }

    fn read(&self, body: &[u8]) -> Step {
        // The common case in one typed pass over only the fields used; anything unusual takes
        // the general path below, which decides every error answer. The body's UTF-8 is checked
        // once here, so the parser does not check each string again.
        if let Ok(text) = std::str::from_utf8(body)
            && let Ok(FastReview {
                api_version,
                kind,
                request: Some(req),
            }) = serde_json::from_str::<FastReview>(text)
            && req.kind.kind == "Pod"
            && req.kind.group.is_empty()
        {
            // A uid without escapes is borrowed from the body: where it lies is then known, which
            // is what lets `replay` swap it.
            let uid_span = match &req.uid {
                Cow::Borrowed(uid) => {
                    let start = uid.as_ptr() as usize - text.as_ptr() as usize;
                    Some((start, start + uid.len()))
                }
                Cow::Owned(_) => None,
            };
            return self.start(PodRequest {
                types: kube::core::TypeMeta { api_version, kind },
                uid: req.uid.into_owned(),
                uid_span,
                operation: req.operation,
                namespace: req.namespace,
                dry_run: req.dry_run,
                object: req.object.map(|p| p.0),
            });
        }
        self.read_general(body)
    }

    fn read_general(&self, body: &[u8]) -> Step {
        let done = |result, status, resp: AdmissionResponse| {
            Step::Done(result, answer(status, &resp.into_review()), None)
        };
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let resp = AdmissionResponse::invalid(format!("request body is not JSON: {e}"));
                return done(ReviewResult::Invalid, 400, resp);
            }
        };
        let uid = value
            .pointer("/request/uid")
            .and_then(|u| u.as_str())
            .map(str::to_owned);
        let Some(uid) = uid else {
            let resp = AdmissionResponse::invalid("not an AdmissionReview with a request.uid");
            return done(ReviewResult::Invalid, 400, resp);
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
            let resp = allowed_with_warning(resp, warning);
            return done(ReviewResult::UnexpectedKind, 200, resp);
        }
        let review = match AdmissionReview::<Pod>::deserialize(&value) {
            Ok(r) => r,
            Err(e) => {
                let resp = bare_allowed(uid, api_version);
                let warning =
                    format!("tls-steal: malformed AdmissionReview ({e}); admitted unchanged");
                tracing::warn!(error = %e, "malformed AdmissionReview");
                return done(
                    ReviewResult::Invalid,
                    200,
                    allowed_with_warning(resp, warning),
                );
            }
        };
        match TryInto::<AdmissionRequest<Pod>>::try_into(review) {
            Ok(req) => self.start(PodRequest::from(req)),
            Err(_) => {
                let resp = AdmissionResponse::invalid("AdmissionReview without request");
                done(ReviewResult::Invalid, 400, resp)
            }
        }
    }

    /// Everything up to the owner lookup: the operation, the skips that need no configs, the
    /// namespace's configs and the pod's target paths.
    fn start(&self, mut req: PodRequest) -> Step {
        let resp = allowed(&req);
        let (Operation::Create, Some(pod)) = (&req.operation, req.object.take()) else {
            let warning = format!(
                "tls-steal: only pod CREATE is mutated, got {:?}; admitted unchanged",
                req.operation
            );
            let resp = allowed_with_warning(resp, warning);
            return Step::Done(
                ReviewResult::UnexpectedKind,
                answer(200, &resp.into_review()),
                None,
            );
        };
        let namespace = req
            .namespace
            .take()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into());
        if let Some(reason) = precheck(&pod, &self.settings) {
            self.metrics.skip(reason);
            tracing::debug!(reason = reason.as_str(), "skipped");
            let answer = answer(200, &resp.into_review());
            return Step::Done(
                ReviewResult::Skipped,
                answer,
                req.uid_span.map(|span| (span, Outcome::Skipped(reason))),
            );
        }
        let entries = self.cache.for_namespace(&namespace);
        let target = PodTarget::from_pod(&pod);
        Step::Pod(Box::new(PodReview {
            pod,
            dry_run: req.dry_run,
            uid_span: req.uid_span,
            resp,
            namespace,
            entries,
            target,
        }))
    }

    /// The answer, and the outcome when replaying it would do all the review did. Only
    /// reviews whose decision was remembered (the second pod of a shape on) are offered as
    /// replay templates: a pod whose shape is seen once pays nothing for replays.
    fn finish(&self, review: PodReview) -> (ReviewResult, Answer, Option<Outcome>) {
        let resp = &review.resp;
        match self.decide(&review) {
            Ok((Decided::Skip(reason), reused)) => (
                ReviewResult::Skipped,
                answer(200, &resp.clone().into_review()),
                reused.then_some(Outcome::Skipped(reason)),
            ),
            Ok((Decided::Inject(injected), reused)) => {
                match answer_with_patch(resp, &injected.patch_base64) {
                    // Warnings about undeclared ports are events about this pod: not replayed.
                    Ok(a) => {
                        let replayable = reused && injected.undeclared_ports.is_empty();
                        let outcome = replayable.then(|| Outcome::Injected {
                            target: review.target.display_name(),
                            namespace: review.namespace.clone(),
                            injected: injected.clone(),
                        });
                        (ReviewResult::Injected, a, outcome)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "serialising the answer");
                        (
                            ReviewResult::Error,
                            answer(200, &resp.clone().into_review()),
                            None,
                        )
                    }
                }
            }
            Err(e) => {
                let namespace = &review.namespace;
                tracing::error!(error = %e, %namespace, "injection failed; pod admitted unchanged");
                if !review.dry_run {
                    self.publish(
                        &review.pod,
                        namespace,
                        "InjectionFailed",
                        format!("tls-steal could not inject: {e}"),
                    );
                }
                (
                    ReviewResult::Error,
                    answer(200, &resp.clone().into_review()),
                    None,
                )
            }
        }
    }

    /// The decision for the pod, remembered per pod shape; `true` when it was remembered.
    fn decide(&self, review: &PodReview) -> Result<(Decided, bool), String> {
        let PodReview {
            pod,
            namespace,
            target,
            entries,
            ..
        } = review;
        let Some(shape) = PodShape::of(pod) else {
            // precheck has skipped pods without a spec.
            self.metrics.skip(SkipReason::NoSpec);
            return Ok((Decided::Skip(SkipReason::NoSpec), false));
        };
        let key = self.memo.key(memo::Key {
            namespace: namespace.clone(),
            target: target.clone(),
            shape,
        });
        let generation = entries.generation();
        let (decided, reused) = match self.memo.get(generation, &key) {
            Some(d) => (d, true),
            None => {
                let d = self.compute(pod, key.key(), entries)?;
                self.memo.insert(generation, key, d.clone());
                (d, false)
            }
        };
        let injected = match &decided {
            Decided::Skip(reason) => {
                self.metrics.skip(*reason);
                return Ok((decided, reused));
            }
            Decided::Inject(i) => i,
        };
        log_injection(&target.display_name(), namespace, injected);
        if !injected.undeclared_ports.is_empty() {
            self.metrics
                .undeclared_ports(injected.undeclared_ports.len());
            if !review.dry_run {
                self.warn_undeclared(pod, namespace, injected);
            }
        }
        Ok((decided, reused))
    }

    /// The decision for `key`, from the namespace's configs. `pod` only feeds the patch's check
    /// in debug builds.
    fn compute(
        &self,
        pod: &Pod,
        key: &memo::Key,
        entries: &NamespaceConfigs,
    ) -> Result<Decided, String> {
        let configs = entries.candidates(&key.target);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let plan = match plan_for(&key.target, &key.namespace, &configs) {
                Err(reason) => return Ok(Decided::Skip(reason)),
                Ok(plan) => plan,
            };
            let patch_key = self.memo.key(memo::PatchKey {
                plan_json: plan.to_json(),
                shape: key.shape.clone(),
            });
            // What the answer reports, read before `plan` goes into the mutation.
            let (ports, hash, configs) =
                (plan.port_numbers(), plan.hash.clone(), plan.configs.clone());
            let undeclared_ports = undeclared_ports(&plan, &key.target);
            let patch_base64 = match self.memo.patch(&patch_key) {
                Some(patch) => patch,
                None => {
                    let plan_json = &patch_key.key().plan_json;
                    let m = plan_mutation(&key.shape, plan, plan_json, &key.target, &self.settings);
                    let patch: Arc<str> = base64(&m.patch_json(pod)?).into();
                    self.memo.insert_patch(patch_key, patch.clone());
                    patch
                }
            };
            let injected = Injected {
                patch_base64,
                ports,
                hash,
                configs,
                undeclared_ports,
            };
            Ok(Decided::Inject(Arc::new(injected)))
        }))
        .map_err(|_| "the mutation panicked".to_string())?;
        outcome.map_err(|e: serde_json::Error| e.to_string())
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

    fn warn_undeclared(&self, pod: &Pod, namespace: &str, injection: &Injected) {
        let ports = &injection.undeclared_ports;
        tracing::warn!(?ports, "captured ports that no container declares");
        let note = format!(
            "tls-steal captures port(s) {ports:?} that no container declares (configs: {})",
            injection.configs.join(", ")
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

/// The parts of an `AdmissionReview<Pod>` that admission reads, read in one pass: no
/// `#[serde(flatten)]` of the type meta (kube-core's, which makes serde buffer the whole body),
/// the pods as [`SparsePod`]s, and the request's other fields (`userInfo`, `resource`,
/// `oldObject`, `options`, ...) skipped unread. What it reads gets the same answer as on the
/// general path; the decided difference is that fields it does not read are not validated (see
/// `sparse_pod`): a review the API server would never send, such as one without `userInfo`,
/// is answered here where the general path calls it malformed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastReview<'a> {
    api_version: String,
    kind: String,
    #[serde(borrow)]
    request: Option<FastRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    kind: FastKind,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    object: Option<SparsePod>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct FastKind {
    group: String,
    kind: String,
}

/// What `start` needs of a pod's AdmissionRequest, from either read.
struct PodRequest {
    types: kube::core::TypeMeta,
    uid: String,
    /// Where the body holds `uid` as written (the fast read of a uid without escapes).
    uid_span: Option<(usize, usize)>,
    operation: Operation,
    namespace: Option<String>,
    dry_run: bool,
    object: Option<Pod>,
}

impl From<AdmissionRequest<Pod>> for PodRequest {
    fn from(req: AdmissionRequest<Pod>) -> Self {
        PodRequest {
            types: req.types,
            uid: req.uid,
            uid_span: None,
            operation: req.operation,
            namespace: req.namespace,
            dry_run: req.dry_run,
            object: req.object,
        }
    }
}

/// `AdmissionResponse::from(&AdmissionRequest)` for a [`PodRequest`]: allowed, no patch, the
/// request's uid and type meta. kube-core has no public constructor taking these two, so this
/// starts from `invalid` and sets every field `from` sets (a test compares the two).
fn allowed(req: &PodRequest) -> AdmissionResponse {
    let mut resp = AdmissionResponse::invalid("");
    resp.types = req.types.clone();
    resp.uid = req.uid.clone();
    resp.allowed = true;
    resp.result = Default::default();
    resp
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
        Admission::new(
            Arc::new(ConfigCache::from_sources(vec![
                tls_steal_crds::ConfigSource::namespaced("shop", "web", spec),
            ])),
            Settings::default(),
            Arc::new(Metrics::default()),
            None,
        )
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
        let mut dry_run = review("admission.k8s.io/v1", pod_kind, "CREATE", pod("web"));
        dry_run["request"]["dryRun"] = true.into();
        bodies.push(dry_run);
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
            let (r1, fast, _) = a.complete(a.read(body)).await;
            // A fresh admission: no decision remembered from the fast path's review.
            let b = admission();
            let (r2, general, _) = b.complete(b.read_general(body)).await;
            let text = String::from_utf8_lossy(body);
            assert_eq!(r1, r2, "{text}");
            assert_eq!(fast.status, general.status, "{text}");
            assert_eq!(fast.body, general.body, "{text}");
            let v: Value = serde_json::from_slice(&fast.body).unwrap();
            patched += usize::from(v["response"].get("patch").is_some());
        }
        assert_eq!(patched, 4);
    }

    fn create(pod: Value, uid: &str) -> Vec<u8> {
        let pod_kind = json!({"group": "", "version": "v1", "kind": "Pod"});
        let mut v = review("admission.k8s.io/v1", pod_kind, "CREATE", pod);
        v["request"]["uid"] = uid.into();
        serde_json::to_vec(&v).unwrap()
    }

    /// The next pod of a ReplicaSet reuses the first one's decision and gets the answer a fresh
    /// computation gives, byte for byte; a pod of another shape or target, and every pod after a
    /// config change, is decided anew.
    #[tokio::test]
    async fn decisions_are_remembered_per_pod_shape() {
        let a = admission();
        // `remembered`: (decisions, patches) remembered after the review.
        let check = |body: Vec<u8>, remembered: (usize, usize)| {
            let a = &a;
            async move {
                let got = a.review(&body).await;
                let want = admission().review(&body).await;
                assert_eq!(got.body, want.body, "{}", String::from_utf8_lossy(&body));
                assert_eq!((a.memo.len(), a.memo.patches()), remembered);
                got
            }
        };
        let first = check(create(pod("web"), "u-1"), (1, 1)).await;
        assert!(String::from_utf8_lossy(&first.body).contains("\"patch\""));
        // The next pod of the ReplicaSet: another uid, same shape.
        let next = check(create(pod("web"), "u-2"), (1, 1)).await;
        assert_ne!(next.body, first.body, "each answer carries its own uid");
        // Another shape: the certificate volume mounted one level up (the proxy's mount follows).
        let mut moved = pod("web");
        moved["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = "/etc".into();
        let moved = check(create(moved, "u-3"), (2, 2)).await;
        assert!(String::from_utf8_lossy(&moved.body) != String::from_utf8_lossy(&first.body));
        // Another ReplicaSet of the Deployment: another target, decided anew, but the same plan
        // and shape, so the same patch.
        let mut rs2 = pod("web");
        rs2["metadata"]["labels"]["pod-template-hash"] = "77aa99".into();
        rs2["metadata"]["ownerReferences"][0]["name"] = "web-77aa99".into();
        check(create(rs2, "u-4"), (3, 2)).await;
        // A config change: decided again, against the new configs (none).
        a.cache.replace(vec![]);
        let after = a.review(&create(pod("web"), "u-1")).await;
        assert!(!String::from_utf8_lossy(&after.body).contains("\"patch\""));
        assert_eq!(a.memo.len(), 1, "only the new decision");
        assert_eq!(a.memo.patches(), 2, "patches do not depend on the configs");
    }

    /// A review that differs from an earlier one only in its uid gets the earlier answer with
    /// its own uid: byte for byte what a fresh review gives, counted like one. A config change,
    /// another pod, or a uid that would not read as itself means a fresh review. The first pod
    /// of a shape is not kept; the second (its decision remembered) is.
    #[tokio::test]
    async fn replayed_answers_equal_fresh_ones() {
        let a = admission();
        a.review(&create(pod("web"), "u-0")).await;
        assert!(a.replay.is_empty(), "the first pod of a shape");
        let mut host = pod("web");
        host["spec"]["hostNetwork"] = true.into();
        // As the API server sends pods: managedFields, whose keys are escaped JSON.
        let mut managed = pod("web");
        managed["metadata"]["managedFields"] = json!([{"manager": "kube-controller-manager",
            "operation": "Update", "time": "2026-11-28T16:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}}}}}}]);
        for pod in [pod("web"), pod("api"), host, managed] {
            a.review(&create(pod.clone(), "u-0")).await;
            a.review(&create(pod.clone(), "u-1")).await;
            for uid in ["u-2", "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", ""] {
                let hits = a.metrics.replays();
                let replayed = a.review(&create(pod.clone(), uid)).await;
                assert_eq!(a.metrics.replays(), hits + 1, "{pod} {uid}");
                let fresh = admission().review(&create(pod.clone(), uid)).await;
                assert_eq!(replayed.status, fresh.status);
                assert_eq!(replayed.body, fresh.body, "{pod} {uid}");
            }
        }
        let counters = a.metrics.render(1);
        for line in [
            "tls_steal_webhook_reviews_total{result=\"injected\"} 11",
            "tls_steal_webhook_reviews_total{result=\"skipped\"} 10",
            "tls_steal_webhook_skips_total{reason=\"no_matching_config\"} 5",
            "tls_steal_webhook_skips_total{reason=\"host_network\"} 5",
        ] {
            assert!(counters.lines().any(|l| l == line), "{line}\n{counters}");
        }
        // A uid with an escape reads as something else: reviewed afresh.
        let hits = a.metrics.replays();
        let escaped = a.review(&create(pod("web"), "u\\u0031")).await;
        let fresh = admission().review(&create(pod("web"), "u\\u0031")).await;
        assert_eq!((a.metrics.replays(), &escaped.body), (hits, &fresh.body));
        // Another pod, then a config change: reviewed afresh, against the new configs.
        let mut other = pod("web");
        other["metadata"]["labels"]["extra"] = "1".into();
        a.review(&create(other, "u-3")).await;
        a.cache.replace(vec![]);
        let after = a.review(&create(pod("web"), "u-4")).await;
        assert_eq!(a.metrics.replays(), hits);
        assert!(!String::from_utf8_lossy(&after.body).contains("\"patch\""));
    }

    /// A pod whose plan has a port no container declares gets a warning event per pod: its
    /// answer is never replayed.
    #[tokio::test]
    async fn undeclared_port_answers_are_not_replayed() {
        let a = admission();
        let mut undeclared = pod("web");
        undeclared["spec"]["containers"][0]["ports"] = json!([]);
        for uid in ["u-1", "u-2"] {
            let answer = a.review(&create(undeclared.clone(), uid)).await;
            assert!(String::from_utf8_lossy(&answer.body).contains("\"patch\""));
        }
        assert_eq!((a.metrics.replays(), a.replay.len()), (0, 0));
    }

    /// Fields the webhook does not read are not validated on the one-pass read (`sparse_pod`,
    /// `FastReview`): a pod with a malformed `resources`, or a review without `userInfo` or
    /// with a malformed `oldObject`, is injected there, where the general path calls the review
    /// malformed and admits it unchanged.
    #[tokio::test]
    async fn unread_fields_are_not_validated() {
        let mut bad_resources = pod("web");
        bad_resources["spec"]["containers"][0]["resources"] = "lots".into();
        let mut no_user: Value = serde_json::from_slice(&create(pod("web"), "u-2")).unwrap();
        no_user["request"]
            .as_object_mut()
            .unwrap()
            .remove("userInfo");
        let mut bad_old: Value = serde_json::from_slice(&create(pod("web"), "u-3")).unwrap();
        bad_old["request"]["oldObject"] = json!({"spec": {"containers": 7}});
        for body in [
            create(bad_resources, "u-1"),
            serde_json::to_vec(&no_user).unwrap(),
            serde_json::to_vec(&bad_old).unwrap(),
        ] {
            let text = String::from_utf8_lossy(&body).into_owned();
            let a = admission();
            let (result, fast, _) = a.complete(a.read(&body)).await;
            assert_eq!(result, ReviewResult::Injected, "{text}");
            assert_eq!(fast.status, 200);
            let (result, general, _) = a.complete(a.read_general(&body)).await;
            assert_eq!(result, ReviewResult::Invalid, "{text}");
            assert!(String::from_utf8_lossy(&general.body).contains("malformed AdmissionReview"));
        }
    }

    /// A body that is not UTF-8 takes the general path, which names the problem.
    #[tokio::test]
    async fn non_utf8_body_is_invalid() {
        let a = admission();
        let mut body = create(pod("web"), "u-1");
        let at = body.windows(3).position(|w| w == b"web").unwrap();
        body[at] = 0xff;
        let (result, answer, _) = a.complete(a.read(&body)).await;
        assert_eq!(result, ReviewResult::Invalid);
        assert_eq!(answer.status, 400);
        assert!(String::from_utf8_lossy(&answer.body).contains("request body is not JSON"));
    }

    /// `allowed` builds what kube-core's `AdmissionResponse::from(&request)` builds.
    #[test]
    fn allowed_matches_kube_core_from_request() {
        let body = create(pod("web"), "u-9");
        let review: AdmissionReview<Pod> = serde_json::from_slice(&body).unwrap();
        let req: AdmissionRequest<Pod> = review.try_into().unwrap();
        let want = serde_json::to_value(AdmissionResponse::from(&req).into_review()).unwrap();
        let got = serde_json::to_value(allowed(&PodRequest::from(req)).into_review()).unwrap();
        assert_eq!(got, want);
    }

    /// The patched answer is what kube-core's review with the patch added would serialise to.
    #[test]
    fn patched_answer_matches_kube_core_shape() {
        let patch = br#"[{"op":"add","path":"/a","value":1}]"#.to_vec();
        let check = |resp: AdmissionResponse| {
            let got = answer_with_patch(&resp, &base64(&patch)).unwrap();
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
            let got = base64(&data[..len]);
            let want = serde_json::to_value(k8s_openapi::ByteString(data[..len].to_vec())).unwrap();
            assert_eq!(got, want.as_str().unwrap(), "{len}");
        }
    }
}

//! One AdmissionReview in, one AdmissionReview out.
//!
//! Answers, precisely:
//! * body that is not JSON, or JSON without a readable `request.uid` (empty body included):
//!   **HTTP 400** with an AdmissionReview whose response is `allowed: false`, reason
//!   `InvalidRequest` (`AdmissionResponse::invalid`). The API server treats a non-200 answer as
//!   a failed call, so the chart's `failurePolicy` decides (default `Ignore`: the pod is admitted).
//! * an AdmissionReview with a readable uid but otherwise malformed (missing fields, an object
//!   that is not a valid Pod): HTTP 200, `allowed: true`, no patch, a warning. Fail open.
//! * an AdmissionReview for another kind (a Deployment, ...) or another operation than CREATE:
//!   HTTP 200, `allowed: true`, no patch, a warning.
//! * a pod that is skipped: HTTP 200, `allowed: true`, no patch (skip reason counted).
//! * an internal error (including a panic in the mutation): HTTP 200, `allowed: true`, no patch,
//!   logged and counted (fail open).
//! * a pod that is injected: HTTP 200, `allowed: true`, a JSON patch turning the pod into the one
//!   [`mutate`](crate::mutate::mutate) returns.
//!
//! Bodies over the size limit are refused with 413 by the HTTP layer before reaching here.
//!
//! The pipeline, outermost first: [`replay`] answers a review that differs from a kept one only
//! in its uid; otherwise the body is [`read`], the pod's owners completed ([`owners`], the only
//! I/O), and its decision taken from [`memo`] or computed by the pure functions of [`decide`];
//! [`answer`] writes the answer. Metrics, logs and [`events`] are this module's.
//!
//! About 450 lines: the steps of one review, each a method on [`Admission`] sharing its state;
//! every part with a concern of its own is a submodule.

mod answer;
mod decide;
mod events;
mod memo;
mod owners;
mod read;
mod replay;
pub mod sessions;
#[cfg(test)]
mod tests;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::core::admission::{AdmissionResponse, Operation};
use kube::runtime::events::Recorder;
use prometheus_client::registry::Registry;
use tls_steal_crds::PodTarget;

pub use answer::Answer;

use crate::configs::{ConfigCache, NamespaceConfigs};
use crate::metrics::{Metrics, ReviewResult};
use crate::mutate::{PodShape, SkipReason, precheck, proxy_ports_declared};
use crate::openmetrics::Sampled;
use crate::settings::Settings;
use decide::ReviewError;
use memo::{Decided, Injected, Memo};
use read::{PodRequest, Unreadable};
use replay::{Outcome, Replay, Replayable};

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

/// A review's answer, its result (the metric label) and, when the answer depends on the body
/// alone, what replaying it must do again.
struct Reviewed {
    result: ReviewResult,
    answer: Answer,
    replay: Option<ReplayAs>,
}

/// Where the body holds the request uid, and what the review did besides answering.
struct ReplayAs {
    uid_span: (usize, usize),
    outcome: Outcome,
}

impl Reviewed {
    fn new(result: ReviewResult, answer: Answer) -> Self {
        Reviewed {
            result,
            answer,
            replay: None,
        }
    }
}

/// Where a review stands after its synchronous part.
enum Step {
    Done(Reviewed),
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

    /// Adds admission's metrics to `registry`, with the number of cached configs.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        self.cache.register_metrics(registry);
        let cache = self.cache.clone();
        registry.register(
            "tls_steal_webhook_configs",
            "Configs of both kinds in the cache",
            Sampled::new(move || cache.snapshot().len() as i64),
        );
    }

    /// Answers one request body. Never panics. The replay layer: a body that is a kept review
    /// with another uid is answered without being read.
    pub async fn review(&self, body: &[u8]) -> Answer {
        let start = Instant::now();
        // Read before the review: a config change during it makes its template unusable.
        let generation = self.cache.generation();
        let probe = match self.replay.answer(body, generation) {
            Ok(r) => {
                self.metrics.replayed();
                let result = self.report(&r.outcome);
                self.metrics.review(result, start.elapsed());
                return Answer {
                    status: r.status,
                    body: r.body,
                };
            }
            Err(probe) => probe,
        };
        let reviewed = self.review_read(body, read::read).await;
        if let Some(r) = reviewed.replay {
            let review = Replayable {
                uid_span: r.uid_span,
                generation,
                outcome: r.outcome,
            };
            let answer = &reviewed.answer;
            self.replay
                .keep(body, probe, review, answer.status, &answer.body);
        }
        self.metrics.review(reviewed.result, start.elapsed());
        reviewed.answer
    }

    /// What a review whose answer is replayed does besides answering: what the review it
    /// replays did (see `replay`).
    fn report(&self, outcome: &Outcome) -> ReviewResult {
        match outcome {
            Outcome::Skipped(reason) => {
                self.skipped(*reason);
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

    fn skipped(&self, reason: SkipReason) {
        self.metrics.skip(reason);
        tracing::debug!(reason = reason.as_str(), "skipped");
    }

    /// A review of `body` as `read` reads it, without the replay layer.
    async fn review_read(
        &self,
        body: &[u8],
        read: fn(&[u8]) -> Result<PodRequest, Unreadable>,
    ) -> Reviewed {
        let step = match read(body) {
            Ok(req) => self.start(req),
            Err(e) => Step::Done(self.unreadable(&e)),
        };
        let mut review = match step {
            Step::Done(reviewed) => return reviewed,
            Step::Pod(review) => review,
        };
        // The only asynchronous part: owners that names cannot answer are looked up.
        let looked_up = match &self.cluster {
            Some(cluster)
                if !review.entries.is_empty() && !review.target.needs_lookup().is_empty() =>
            {
                let lookup =
                    owners::complete(&cluster.client, &mut review.target, &review.namespace);
                for _ in 0..Box::pin(lookup).await {
                    self.metrics.owner_lookup_error();
                }
                true
            }
            _ => false,
        };
        let uid_span = review.uid_span.filter(|_| !looked_up);
        let (mut reviewed, outcome) = self.finish(*review);
        reviewed.replay = uid_span
            .zip(outcome)
            .map(|(uid_span, outcome)| ReplayAs { uid_span, outcome });
        reviewed
    }

    fn unreadable(&self, e: &Unreadable) -> Reviewed {
        match e {
            Unreadable::NotAPod { kind, .. } => {
                tracing::warn!(%kind, "unexpected kind in AdmissionReview")
            }
            Unreadable::Malformed { source, .. } => {
                tracing::warn!(error = %source, "malformed AdmissionReview")
            }
            _ => {}
        }
        let (result, answer) = answer::unreadable(e);
        Reviewed::new(result, answer)
    }

    /// Everything up to the owner lookup: the operation, the skips that need no configs, the
    /// namespace's configs and the pod's target paths.
    fn start(&self, mut req: PodRequest) -> Step {
        let resp = answer::allowed(&req);
        let (Operation::Create, Some(pod)) = (&req.operation, req.object.take()) else {
            let warning = format!(
                "tls-steal: only pod CREATE is mutated, got {:?}; admitted unchanged",
                req.operation
            );
            let answer = answer::answer(200, answer::with_warning(resp, warning));
            return Step::Done(Reviewed::new(ReviewResult::UnexpectedKind, answer));
        };
        let namespace = req
            .namespace
            .take()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into());
        if let Some(reason) = precheck(&pod, &namespace, &self.settings) {
            self.skipped(reason);
            return Step::Done(Reviewed {
                result: ReviewResult::Skipped,
                answer: answer::answer(200, resp),
                replay: req.uid_span.map(|uid_span| ReplayAs {
                    uid_span,
                    outcome: Outcome::Skipped(reason),
                }),
            });
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
    fn finish(&self, review: PodReview) -> (Reviewed, Option<Outcome>) {
        let resp = &review.resp;
        let allowed = || answer::answer(200, resp.clone());
        let (decided, remembered) = match self.decide(&review) {
            Ok(d) => d,
            Err(e) => {
                let namespace = &review.namespace;
                let error = answer::chain(&e);
                tracing::error!(%error, %namespace, "injection failed; pod admitted unchanged");
                if let Some(cluster) = self.cluster.as_ref().filter(|_| !review.dry_run) {
                    let note = format!("tls-steal could not inject: {error}");
                    events::warn(
                        &cluster.recorder,
                        &review.pod,
                        namespace,
                        "InjectionFailed",
                        note,
                    );
                }
                return (Reviewed::new(ReviewResult::Error, allowed()), None);
            }
        };
        let injected = match decided {
            Decided::Skip(reason) => {
                let outcome = remembered.then_some(Outcome::Skipped(reason));
                return (Reviewed::new(ReviewResult::Skipped, allowed()), outcome);
            }
            Decided::Inject(injected) => injected,
        };
        match answer::with_patch(resp, &injected.patch_base64) {
            Ok(a) => {
                // Warnings about undeclared ports are events about this pod: not replayed.
                let replayable = remembered && injected.undeclared_ports.is_empty();
                let outcome = replayable.then(|| Outcome::Injected {
                    target: review.target.display_name(),
                    namespace: review.namespace.clone(),
                    injected,
                });
                (Reviewed::new(ReviewResult::Injected, a), outcome)
            }
            Err(e) => {
                tracing::error!(error = %e, "serialising the answer");
                (Reviewed::new(ReviewResult::Error, allowed()), None)
            }
        }
    }

    /// The decision for the pod and its effects (metrics, log, events); `true` when it was
    /// remembered.
    fn decide(&self, review: &PodReview) -> Result<(Decided, bool), ReviewError> {
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
        let (decided, remembered) = self.remembered(namespace, target, shape, entries, pod)?;
        let injected = match &decided {
            Decided::Skip(reason) => {
                self.metrics.skip(*reason);
                if matches!(
                    reason,
                    SkipReason::RunsToCompletion | SkipReason::PortConflict
                ) {
                    self.not_injected(review, *reason);
                }
                return Ok((decided, remembered));
            }
            Decided::Inject(i) => i,
        };
        log_injection(&target.display_name(), namespace, injected);
        if !injected.undeclared_ports.is_empty() {
            self.metrics
                .undeclared_ports(injected.undeclared_ports.len());
            if let Some(cluster) = self.cluster.as_ref().filter(|_| !review.dry_run) {
                events::undeclared_ports(&cluster.recorder, pod, namespace, injected);
            }
        }
        Ok((decided, remembered))
    }

    /// Configs apply to a pod that is left alone for its own sake (it runs to completion in
    /// classic mode, or declares a port the proxy needs): say so (log, and a Warning event on
    /// its owner), since nothing else shows why it has no sidecar.
    fn not_injected(&self, review: &PodReview, reason: SkipReason) {
        let name = review.target.display_name();
        let namespace = &review.namespace;
        let note = match reason {
            SkipReason::PortConflict => {
                let ports: Vec<String> = proxy_ports_declared(&review.target)
                    .iter()
                    .map(u16::to_string)
                    .collect();
                tracing::warn!(pod = %name, %namespace, ports = %ports.join(","), "not injected: a container declares the proxy's ports");
                format!(
                    "tls-steal configs match this pod, but a container of it declares port {} \
                    (TCP), which tls-steal-proxy listens on (15400 session API, 15401 admin, \
                    15443 capture); it was created without the sidecar, since the two could not both \
                    listen there.",
                    ports.join(", ")
                )
            }
            _ => {
                tracing::warn!(pod = %name, %namespace, "not injected: runs to completion, classic sidecar mode");
                "tls-steal configs match this pod, but it runs to completion (restartPolicy \
                Never/OnFailure) and the sidecar runs as a regular container (classic mode), \
                which would keep the pod from ever completing; it was created without the \
                sidecar. Native sidecars (Kubernetes 1.29+, chart value sidecar.mode) inject it."
                    .to_string()
            }
        };
        if let Some(cluster) = self.cluster.as_ref().filter(|_| !review.dry_run) {
            events::warn(
                &cluster.recorder,
                &review.pod,
                namespace,
                "NotInjected",
                note,
            );
        }
    }

    /// The memo layer: the decision remembered for the pod's shape, else computed (and its
    /// patch remembered for the plan and shape); `true` when it was remembered.
    fn remembered(
        &self,
        namespace: &str,
        target: &PodTarget,
        shape: PodShape,
        entries: &NamespaceConfigs,
        pod: &Pod,
    ) -> Result<(Decided, bool), ReviewError> {
        let key = self.memo.key(memo::Key {
            namespace: namespace.to_owned(),
            target: target.clone(),
            shape,
        });
        let generation = entries.generation();
        if let Some(d) = self.memo.get(generation, &key) {
            return Ok((d, true));
        }
        let computed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let key = key.key();
            let plan = match decide::plan(key, entries, &self.settings) {
                Err(reason) => return Ok(Decided::Skip(reason)),
                Ok(plan) => plan,
            };
            let patch_key = self.memo.key(memo::PatchKey {
                plan_json: plan.to_json(),
                shape: key.shape.clone(),
            });
            let summary = decide::summary(&plan, &key.target);
            let patch = match self.memo.patch(&patch_key) {
                Some(patch) => patch,
                None => {
                    let plan_json = &patch_key.key().plan_json;
                    let patch = decide::patch(
                        &key.shape,
                        plan,
                        plan_json,
                        &key.target,
                        &self.settings,
                        pod,
                    )?;
                    self.memo.insert_patch(patch_key, patch.clone());
                    patch
                }
            };
            Ok(Decided::Inject(Arc::new(summary.with_patch(patch))))
        }))
        .map_err(|_| ReviewError::Panicked)??;
        self.memo.insert(generation, key, computed.clone());
        Ok((computed, false))
    }
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

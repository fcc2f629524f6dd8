//! Admission of `StealSession` objects (`POST /sessions`, creates and updates): who created a
//! session is written here from the request's user, never by the client, and the chart's session
//! policy (`sessions.requireFilter`, `sessions.allowMirror`, `sessions.maxDuration`) is applied.
//! A refusal names the rule. The decision is a pure function of the review and the policy.

use std::collections::BTreeSet;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::json;
use tls_steal_crds::contract::SESSION_AUTHORIZATION_ANNOTATION;
use tls_steal_crds::session::Mode;
use tls_steal_crds::steal_session::{RequestedBy, StealSessionSpec};

use super::answer::{Answer, answer, base64, with_patch};

/// The chart's session policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// No session may take a port's requests without a filter.
    pub require_filter: bool,
    /// Mirror sessions are allowed.
    pub allow_mirror: bool,
    /// The longest a session may last, seconds (also the duration of one that names none).
    pub max_duration_seconds: u32,
    /// The proxies require tickets (`sessions.authorization: required`): admission says so in
    /// the annotation `tls-steal.io/authorization`, so `kubectl steal` knows to wait for one.
    pub tickets_required: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            require_filter: false,
            allow_mirror: true,
            max_duration_seconds: 8 * 3600,
            tickets_required: false,
        }
    }
}

/// What admission decides for a session.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Allowed, with this JSON patch (the recorded user, the duration).
    Allow(json_patch::Patch),
    /// Allowed as is (an update that changes no spec field).
    AllowUnchanged,
    /// Refused: the message names the rule or field.
    Deny(String),
}

fn spec_of(obj: Option<&DynamicObject>) -> Result<StealSessionSpec, String> {
    let spec = obj
        .and_then(|o| o.data.get("spec"))
        .cloned()
        .ok_or_else(|| "spec: missing".to_owned())?;
    serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))
}

/// The decision for `req` under `policy`.
pub fn decide(req: &AdmissionRequest<DynamicObject>, policy: &SessionPolicy) -> Verdict {
    let spec = match spec_of(req.object.as_ref()) {
        Ok(s) => s,
        Err(e) => return Verdict::Deny(e),
    };
    match req.operation {
        Operation::Create => create(req, spec, policy),
        Operation::Update => {
            let old = match spec_of(req.old_object.as_ref()) {
                Ok(s) => s,
                Err(e) => return Verdict::Deny(format!("the stored session: {e}")),
            };
            if spec.requested_by != old.requested_by {
                return Verdict::Deny(
                    "spec.requestedBy is recorded by admission when the session is created and cannot be changed".into(),
                );
            }
            if spec != old {
                return Verdict::Deny(
                    "spec is immutable: end this session (delete it) and start another".into(),
                );
            }
            Verdict::AllowUnchanged
        }
        _ => Verdict::AllowUnchanged,
    }
}

fn create(
    req: &AdmissionRequest<DynamicObject>,
    spec: StealSessionSpec,
    policy: &SessionPolicy,
) -> Verdict {
    if spec.target.trim().is_empty() {
        return Verdict::Deny("spec.target: name the workload (e.g. deploy/web)".into());
    }
    if let Some(f) = &spec.filter
        && let Err(e) = f.compile()
    {
        return Verdict::Deny(format!("spec.{}: {e}", e.field));
    }
    if policy.require_filter {
        if spec.filter.is_none() {
            return Verdict::Deny(
                "sessions.requireFilter: this cluster allows only filtered sessions; give a filter (kubectl steal --header/--path/--method, or a mirrord http_filter)".into(),
            );
        }
        if let Some(fp) = &spec.filter_ports {
            let filtered: BTreeSet<u16> = fp.iter().copied().collect();
            let unfiltered: Vec<u16> = spec
                .ports
                .iter()
                .copied()
                .filter(|p| !filtered.contains(p))
                .collect();
            if spec.ports.is_empty() || !unfiltered.is_empty() {
                return Verdict::Deny(format!(
                    "sessions.requireFilter: the filter applies only to ports {fp:?}, so {} would be taken whole; filter every port of the session",
                    if spec.ports.is_empty() {
                        "the other captured ports".to_owned()
                    } else {
                        format!("ports {unfiltered:?}")
                    }
                ));
            }
        }
    }
    if spec.mode == Mode::Mirror && !policy.allow_mirror {
        return Verdict::Deny(
            "sessions.allowMirror is false: this cluster does not allow mirror sessions".into(),
        );
    }
    let duration = match spec.duration_seconds {
        Some(0) => return Verdict::Deny("spec.durationSeconds must be positive".into()),
        Some(d) if d > policy.max_duration_seconds => {
            return Verdict::Deny(format!(
                "spec.durationSeconds: {d} s is longer than sessions.maxDuration ({} s)",
                policy.max_duration_seconds
            ));
        }
        Some(d) => d,
        None => policy.max_duration_seconds,
    };
    let user = RequestedBy {
        username: req.user_info.username.clone().unwrap_or_default(),
        groups: req.user_info.groups.clone().unwrap_or_default(),
    };
    if user.username.is_empty() {
        return Verdict::Deny("the request has no user: sessions record who created them".into());
    }
    let authorization = if policy.tickets_required {
        "required"
    } else {
        "disabled"
    };
    let has_annotations = req
        .object
        .as_ref()
        .is_some_and(|o| o.metadata.annotations.is_some());
    let annotation = if has_annotations {
        json!({"op": "add", "path": "/metadata/annotations/tls-steal.io~1authorization", "value": authorization})
    } else {
        json!({"op": "add", "path": "/metadata/annotations", "value": {SESSION_AUTHORIZATION_ANNOTATION: authorization}})
    };
    let patch = json!([
        {"op": "add", "path": "/spec/requestedBy", "value": user},
        {"op": "add", "path": "/spec/durationSeconds", "value": duration},
        annotation,
    ]);
    Verdict::Allow(serde_json::from_value(patch).expect("a valid JSON patch"))
}

/// Answers one AdmissionReview of a `StealSession` (always an AdmissionReview).
pub fn review(body: &[u8], policy: &SessionPolicy) -> Answer {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return answer(
                400,
                AdmissionResponse::invalid(format!("not an AdmissionReview: {e}")),
            );
        }
    };
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return answer(400, AdmissionResponse::invalid(format!("{e}"))),
    };
    let resp = AdmissionResponse::from(&req);
    let name = req
        .object
        .as_ref()
        .and_then(|o| o.metadata.name.clone().or(o.metadata.generate_name.clone()))
        .unwrap_or_default();
    let user = req.user_info.username.clone().unwrap_or_default();
    match decide(&req, policy) {
        Verdict::Allow(patch) => {
            tracing::info!(namespace = ?req.namespace, %name, %user, "steal session admitted");
            let json = serde_json::to_vec(&patch).unwrap_or_default();
            with_patch(&resp, &base64(&json)).unwrap_or_else(|e| {
                answer(
                    200,
                    AdmissionResponse::from(&req).deny(format!("internal error: {e}")),
                )
            })
        }
        Verdict::AllowUnchanged => answer(200, resp),
        Verdict::Deny(why) => {
            tracing::info!(namespace = ?req.namespace, %name, %user, reason = %why, "steal session refused");
            answer(200, resp.deny(why))
        }
    }
}

/// The review's `response` (tests).
#[cfg(test)]
fn response(a: &Answer) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(&a.body).unwrap()["response"].clone()
}

#[cfg(test)]
mod tests;

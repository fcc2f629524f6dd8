//! Reading an AdmissionReview body: a one-pass typed read of only the fields admission uses, and
//! the general path that takes everything else and decides every error answer.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;
use kube::core::TypeMeta;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde::Deserialize;

use crate::sparse_pod::SparsePod;

/// What admission needs of a pod's AdmissionRequest, from either read.
pub(super) struct PodRequest {
    pub types: TypeMeta,
    pub uid: String,
    /// Where the body holds `uid` as written (the fast read of a uid without escapes).
    pub uid_span: Option<(usize, usize)>,
    pub operation: Operation,
    pub namespace: Option<String>,
    pub dry_run: bool,
    pub object: Option<Pod>,
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

/// Who an answer to an unreadable review goes to: its uid and the review's API version.
#[derive(Debug)]
pub(super) struct Addressee {
    pub uid: String,
    pub api_version: &'static str,
}

/// Why a body is not a pod review admission can decide on. The answer names it (see
/// [`super::answer::unreadable`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum Unreadable {
    #[error("request body is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("not an AdmissionReview with a request.uid")]
    NoUid,
    #[error("only Pods are mutated, got kind {kind:?}")]
    NotAPod { kind: String, to: Addressee },
    #[error("malformed AdmissionReview")]
    Malformed {
        #[source]
        source: serde_json::Error,
        to: Addressee,
    },
    #[error("AdmissionReview without request")]
    NoRequest,
}

/// The common case in one typed pass over only the fields used; anything unusual takes
/// [`read_general`].
pub(super) fn read(body: &[u8]) -> Result<PodRequest, Unreadable> {
    // The body's UTF-8 is checked once here, so the parser does not check each string again.
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
        return Ok(PodRequest {
            types: TypeMeta { api_version, kind },
            uid: req.uid.into_owned(),
            uid_span,
            operation: req.operation,
            namespace: req.namespace,
            dry_run: req.dry_run,
            object: req.object.map(|p| p.0),
        });
    }
    read_general(body)
}

/// Any body: kube-core's types over a `serde_json::Value`.
pub(super) fn read_general(body: &[u8]) -> Result<PodRequest, Unreadable> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(Unreadable::NotJson)?;
    let uid = value
        .pointer("/request/uid")
        .and_then(|u| u.as_str())
        .map(str::to_owned)
        .ok_or(Unreadable::NoUid)?;
    let api_version = match value.get("apiVersion").and_then(|v| v.as_str()) {
        Some("admission.k8s.io/v1beta1") => "admission.k8s.io/v1beta1",
        _ => "admission.k8s.io/v1",
    };
    let to = Addressee { uid, api_version };
    let kind = value
        .pointer("/request/kind/kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    let group = value
        .pointer("/request/kind/group")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    if kind != "Pod" || !group.is_empty() {
        let kind = kind.to_owned();
        return Err(Unreadable::NotAPod { kind, to });
    }
    let review = AdmissionReview::<Pod>::deserialize(&value)
        .map_err(|source| Unreadable::Malformed { source, to })?;
    let req: AdmissionRequest<Pod> = review.try_into().map_err(|_| Unreadable::NoRequest)?;
    Ok(PodRequest::from(req))
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

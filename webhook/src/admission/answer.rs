//! Writing the AdmissionReview answers, byte for byte what kube-core's types serialise to.

use kube::core::admission::{AdmissionResponse, AdmissionReview};

use super::read::{PodRequest, Unreadable};
use crate::metrics::ReviewResult;

/// An HTTP status and a JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `resp` as the review it answers, with HTTP `status`.
pub(super) fn answer(status: u16, resp: AdmissionResponse) -> Answer {
    let review: AdmissionReview<kube::core::DynamicObject> = resp.into_review();
    Answer {
        status,
        body: serde_json::to_vec(&review).unwrap_or_default(),
    }
}

/// An allowed review carrying `patch` (a serialised JSON patch), written straight into the
/// body. kube-core's `with_patch` keeps the patch as `Vec<u8>`, which serde writes as an array of
/// numbers; here it is the base64 string Kubernetes itself uses for `[]byte`, next to
/// `patchType: JSONPatch`. Same keys, in the same (sorted) order, as kube-core's review.
pub(super) fn with_patch(
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
pub(super) fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `AdmissionResponse::from(&AdmissionRequest)` for a [`PodRequest`]: allowed, no patch, the
/// request's uid and type meta. kube-core has no public constructor taking these two, so this
/// starts from `invalid` and sets every field `from` sets (a test compares the two).
pub(super) fn allowed(req: &PodRequest) -> AdmissionResponse {
    let mut resp = AdmissionResponse::invalid("");
    resp.types = req.types.clone();
    resp.uid = req.uid.clone();
    resp.allowed = true;
    resp.result = Default::default();
    resp
}

/// `allowed: true` for a request that could not be turned into an `AdmissionRequest`.
fn bare_allowed(uid: &str, api_version: &str) -> AdmissionResponse {
    let mut resp: AdmissionResponse =
        serde_json::from_value(serde_json::json!({"uid": uid, "allowed": true, "status": {}}))
            .expect("a minimal AdmissionResponse deserialises");
    resp.types = kube::core::TypeMeta {
        api_version: api_version.into(),
        kind: "AdmissionReview".into(),
    };
    resp
}

pub(super) fn with_warning(mut resp: AdmissionResponse, warning: String) -> AdmissionResponse {
    resp.allowed = true;
    resp.result.message = warning.clone();
    resp.warnings = Some(vec![warning]);
    resp
}

/// `e` and its causes, `: `-separated.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The answer to a body that is not a pod review: HTTP 400 `InvalidRequest` without a readable
/// uid, else allowed unchanged with a warning (fail open).
pub(super) fn unreadable(e: &Unreadable) -> (ReviewResult, Answer) {
    match e {
        Unreadable::NotJson(_) | Unreadable::NoUid | Unreadable::NoRequest => (
            ReviewResult::Invalid,
            answer(400, AdmissionResponse::invalid(chain(e))),
        ),
        Unreadable::NotAPod { to, .. } => {
            let resp = bare_allowed(&to.uid, to.api_version);
            let warning = format!("tls-steal: {e}; admitted unchanged");
            (
                ReviewResult::UnexpectedKind,
                answer(200, with_warning(resp, warning)),
            )
        }
        Unreadable::Malformed { source, to } => {
            let resp = bare_allowed(&to.uid, to.api_version);
            let warning = format!("tls-steal: {e} ({source}); admitted unchanged");
            (
                ReviewResult::Invalid,
                answer(200, with_warning(resp, warning)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patched answer is what kube-core's review with the patch added would serialise to.
    #[test]
    fn patched_answer_matches_kube_core_shape() {
        let patch = br#"[{"op":"add","path":"/a","value":1}]"#.to_vec();
        let check = |resp: AdmissionResponse| {
            let got = with_patch(&resp, &base64(&patch)).unwrap();
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

//! The JSON patches the controller sends: each starts with a `test` of the workload's
//! resourceVersion, so a patch written against a stale read fails instead of overwriting.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::desired::adopted_hash;
use super::{ADOPTED_HASH_ANNOTATION, CONFIG_HASH_ANNOTATION};

/// Escapes one JSON-pointer token (RFC 6901).
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The one JSON patch setting the template's hash annotation to `hash`: a `test` of
/// `metadata.resourceVersion` (optimistic concurrency: the patch fails if the workload changed
/// since it was read) followed by one `add` (which replaces an existing member), creating the
/// annotation map or the template metadata when absent.
pub fn hash_patch(
    template: Option<&PodTemplateSpec>,
    resource_version: Option<&str>,
    hash: &str,
) -> json_patch::Patch {
    let mut ops = Vec::new();
    if let Some(rv) = resource_version {
        ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    let meta = template.and_then(|t| t.metadata.as_ref());
    let annotations: BTreeMap<&str, &str> = [(CONFIG_HASH_ANNOTATION, hash)].into();
    match meta {
        None => ops.push(json!({
            "op": "add",
            "path": "/spec/template/metadata",
            "value": {"annotations": annotations},
        })),
        Some(m) if m.annotations.is_none() => ops.push(json!({
            "op": "add",
            "path": "/spec/template/metadata/annotations",
            "value": annotations,
        })),
        Some(_) => ops.push(json!({
            "op": "add",
            "path": format!(
                "/spec/template/metadata/annotations/{}",
                pointer_token(CONFIG_HASH_ANNOTATION)
            ),
            "value": hash,
        })),
    }
    serde_json::from_value(serde_json::Value::Array(ops)).expect("a well-formed JSON patch")
}

/// The patch of a rollout: [`hash_patch`], plus the removal of the workload's
/// `tls-steal.io/adopted-hash` when it has one (the template annotation supersedes it).
pub fn rollout_patch(
    meta: &ObjectMeta,
    template: Option<&PodTemplateSpec>,
    hash: &str,
) -> json_patch::Patch {
    let mut patch = hash_patch(template, meta.resource_version.as_deref(), hash);
    if adopted_hash(meta).is_some() {
        let op = json!({
            "op": "remove",
            "path": format!("/metadata/annotations/{}", pointer_token(ADOPTED_HASH_ANNOTATION)),
        });
        patch
            .0
            .push(serde_json::from_value(op).expect("a well-formed JSON patch operation"));
    }
    patch
}

/// The JSON patch recording an adoption without a rollout: a `test` of
/// `metadata.resourceVersion`, then an `add` of `tls-steal.io/adopted-hash: hash` to the
/// WORKLOAD's own `metadata.annotations` (the whole map when absent). The pod template is not
/// touched, so nothing is rolled out.
pub fn adoption_patch(meta: &ObjectMeta, hash: &str) -> json_patch::Patch {
    let mut ops = Vec::new();
    if let Some(rv) = meta.resource_version.as_deref() {
        ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    if meta.annotations.is_none() {
        let annotations: BTreeMap<&str, &str> = [(ADOPTED_HASH_ANNOTATION, hash)].into();
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": annotations}));
    } else {
        ops.push(json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", pointer_token(ADOPTED_HASH_ANNOTATION)),
            "value": hash,
        }));
    }
    serde_json::from_value(serde_json::Value::Array(ops)).expect("a well-formed JSON patch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escaping() {
        assert_eq!(
            pointer_token("tls-steal.io/config-hash"),
            "tls-steal.io~1config-hash"
        );
        assert_eq!(pointer_token("a~b"), "a~0b");
    }
}

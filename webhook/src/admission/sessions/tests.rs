use serde_json::{Value, json};

use super::*;

fn review_json(op: &str, spec: Value, old_spec: Option<Value>, user: Option<&str>) -> Vec<u8> {
    let obj = |spec: Value| {
        json!({
            "apiVersion": "tls-steal.io/v1alpha1",
            "kind": "StealSession",
            "metadata": {"generateName": "steal-", "namespace": "shop"},
            "spec": spec
        })
    };
    let mut user_info = json!({"groups": ["dev", "system:authenticated"]});
    if let Some(u) = user {
        user_info["username"] = json!(u);
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "tls-steal.io", "version": "v1alpha1", "kind": "StealSession"},
            "resource": {"group": "tls-steal.io", "version": "v1alpha1", "resource": "stealsessions"},
            "namespace": "shop",
            "operation": op,
            "userInfo": user_info,
            "object": obj(spec),
            "oldObject": old_spec.map(obj),
            "dryRun": false
        }
    }))
    .unwrap()
}

fn ask(op: &str, spec: Value, old: Option<Value>, policy: &SessionPolicy) -> Value {
    response(&review(&review_json(op, spec, old, Some("alice")), policy))
}

fn denied(r: &Value) -> String {
    assert_eq!(r["allowed"], false, "{r}");
    r["status"]["message"].as_str().unwrap().to_owned()
}

fn patch_of(r: &Value) -> Value {
    use base64::Engine;
    assert_eq!(r["allowed"], true, "{r}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn strict() -> SessionPolicy {
    SessionPolicy {
        require_filter: true,
        allow_mirror: false,
        max_duration_seconds: 3600,
        tickets_required: false,
    }
}

#[test]
fn create_records_the_requesting_user_over_whatever_the_client_wrote() {
    let spec = json!({
        "target": "deploy/web", "ports": [443], "filter": {"header": "x-debug: me"},
        "requestedBy": {"username": "system:admin", "groups": ["system:masters"]}
    });
    let r = ask("CREATE", spec, None, &SessionPolicy::default());
    assert_eq!(r["uid"], "u-1");
    assert_eq!(
        patch_of(&r),
        json!([
            {"op": "add", "path": "/spec/requestedBy",
             "value": {"username": "alice", "groups": ["dev", "system:authenticated"]}},
            {"op": "add", "path": "/spec/durationSeconds", "value": 28800},
            {"op": "add", "path": "/metadata/annotations",
             "value": {"tls-steal.io/authorization": "disabled"}}
        ])
    );
}

#[test]
fn the_annotation_says_whether_tickets_are_required() {
    let p = SessionPolicy {
        tickets_required: true,
        ..SessionPolicy::default()
    };
    let r = ask("CREATE", json!({"target": "deploy/web"}), None, &p);
    assert_eq!(
        patch_of(&r)[2]["value"]["tls-steal.io/authorization"],
        "required"
    );
    // Existing annotations are kept: only the key is added.
    let mut body: Value = serde_json::from_slice(&review_json(
        "CREATE",
        json!({"target": "deploy/web"}),
        None,
        Some("alice"),
    ))
    .unwrap();
    body["request"]["object"]["metadata"]["annotations"] = json!({"team": "shop"});
    let r = response(&review(&serde_json::to_vec(&body).unwrap(), &p));
    assert_eq!(
        patch_of(&r)[2],
        json!({"op": "add", "path": "/metadata/annotations/tls-steal.io~1authorization", "value": "required"})
    );
}

#[test]
fn policy_refusals_name_the_rule() {
    let p = strict();
    let msg = denied(&ask(
        "CREATE",
        json!({"target": "deploy/web", "ports": [443]}),
        None,
        &p,
    ));
    assert!(msg.starts_with("sessions.requireFilter"), "{msg}");
    let msg = denied(&ask(
        "CREATE",
        json!({"target": "deploy/web", "ports": [443, 8443], "filter": {"path": "^/a"}, "filterPorts": [443]}),
        None,
        &p,
    ));
    assert!(msg.contains("ports [8443] would be taken whole"), "{msg}");
    let msg = denied(&ask(
        "CREATE",
        json!({"target": "deploy/web", "filter": {"path": "^/a"}, "filterPorts": [443]}),
        None,
        &p,
    ));
    assert!(msg.contains("the other captured ports"), "{msg}");
    let msg = denied(&ask(
        "CREATE",
        json!({"target": "deploy/web", "filter": {"path": "^/a"}, "mode": "mirror"}),
        None,
        &p,
    ));
    assert!(msg.starts_with("sessions.allowMirror"), "{msg}");
    let msg = denied(&ask(
        "CREATE",
        json!({"target": "deploy/web", "filter": {"path": "^/a"}, "durationSeconds": 7200}),
        None,
        &p,
    ));
    assert!(msg.contains("sessions.maxDuration (3600 s)"), "{msg}");
    // Within the policy: allowed, with the duration asked for.
    let r = ask(
        "CREATE",
        json!({"target": "deploy/web", "filter": {"path": "^/a"}, "durationSeconds": 600}),
        None,
        &p,
    );
    assert_eq!(patch_of(&r)[1]["value"], 600);
}

#[test]
fn bad_specs_name_the_field() {
    let p = SessionPolicy::default();
    let msg = denied(&ask(
        "CREATE",
        json!({"target": "deploy/web", "filter": {"header": "x-("}}),
        None,
        &p,
    ));
    assert!(msg.starts_with("spec.filter.header"), "{msg}");
    let msg = denied(&ask("CREATE", json!({"target": " "}), None, &p));
    assert!(msg.starts_with("spec.target"), "{msg}");
    let msg = denied(&ask("CREATE", json!({"ports": [443]}), None, &p));
    assert!(msg.starts_with("spec:"), "{msg}");
    let r = response(&review(
        &review_json("CREATE", json!({"target": "deploy/web"}), None, None),
        &p,
    ));
    assert!(denied(&r).contains("no user"));
    // Not a review at all: still an AdmissionReview answer.
    let a = review(b"{nope", &p);
    assert_eq!(a.status, 400);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["kind"], "AdmissionReview");
}

#[test]
fn updates_keep_the_recorded_user_and_the_spec() {
    let p = SessionPolicy::default();
    let stored = json!({"target": "deploy/web", "ports": [443], "filter": {"path": "^/a"},
        "durationSeconds": 600, "requestedBy": {"username": "alice", "groups": []}});
    // A label or finalizer change: the spec is the same.
    let r = ask("UPDATE", stored.clone(), Some(stored.clone()), &p);
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("patch").is_none(), "{r}");
    let mut other_user = stored.clone();
    other_user["requestedBy"]["username"] = json!("mallory");
    let msg = denied(&ask("UPDATE", other_user, Some(stored.clone()), &p));
    assert!(msg.starts_with("spec.requestedBy"), "{msg}");
    let mut wider = stored.clone();
    wider["filter"] = json!({"path": "^/"});
    let msg = denied(&ask("UPDATE", wider, Some(stored), &p));
    assert!(msg.starts_with("spec is immutable"), "{msg}");
}

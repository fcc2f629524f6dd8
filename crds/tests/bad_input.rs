//! Every invalid field is reported with its path; no spec makes anything panic.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use tls_steal_crds::{ConfigSource, TlsStealSpec, build_plan};

fn errors_of(v: Value) -> Vec<String> {
    let spec: TlsStealSpec = serde_json::from_value(v).expect("structurally valid");
    match spec.validate() {
        Ok(()) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn port(p: u16) -> Value {
    json!({
        "port": p,
        "agentAsServer": {"authentication": {"certPem": "/c/tls.crt", "keyPem": "/c/tls.key"}},
        "agentAsClient": {"verification": {"acceptAnyCert": true}}
    })
}

fn assert_reports(v: Value, field: &str, words: &str) {
    let errs = errors_of(v);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{field}: ")) && e.contains(words)),
        "expected an error at {field} containing {words:?}, got {errs:?}"
    );
}

#[test]
fn each_invalid_field_names_its_path() {
    let mut v = json!({"ports": [port(443)]});
    assert!(errors_of(v.clone()).is_empty());

    v["ports"][0]["agentAsServer"]["authentication"]["certPem"] = "".into();
    assert_reports(
        v.clone(),
        "spec.ports[0].agentAsServer.authentication.certPem",
        "must not be empty",
    );

    let mut v = json!({"ports": [port(443)]});
    v["ports"][0]["agentAsServer"]["authentication"]["keyPem"] = "certs/key.pem".into();
    assert_reports(
        v,
        "spec.ports[0].agentAsServer.authentication.keyPem",
        "absolute path",
    );

    // A port listed twice is not an error: the later entries are discarded (see tests/merge.rs).
    assert!(errors_of(json!({"ports": [port(443), port(8443), port(443)]})).is_empty());
    assert_reports(json!({"ports": []}), "spec.ports", "at least one port");
    for own in tls_steal_crds::contract::RESERVED_PORTS {
        assert_reports(
            json!({"ports": [port(443), port(own)]}),
            "spec.ports[1].port",
            "tls-steal-proxy's own ports",
        );
    }
    assert_reports(
        json!({"ports": [port(0)]}),
        "spec.ports[0].port",
        "between 1 and 65535",
    );

    let mut v = json!({"ports": [port(443)]});
    v["ports"][0]["agentAsServer"]["alpnProtocols"] = json!(["h2", ""]);
    assert_reports(
        v.clone(),
        "spec.ports[0].agentAsServer.alpnProtocols[1]",
        "must not be empty",
    );
    v["ports"][0]["agentAsServer"]["alpnProtocols"] = json!(["h2", "h2"]);
    assert_reports(
        v,
        "spec.ports[0].agentAsServer.alpnProtocols[1]",
        "more than once",
    );

    let sel = |op: &str, values: Value| json!({"ports": [port(443)], "selector": {"matchExpressions": [{"key": "app", "operator": op, "values": values}]}});
    assert_reports(
        sel("Equals", json!(["x"])),
        "spec.selector.matchExpressions[0].operator",
        "unknown operator \"Equals\"",
    );
    assert_reports(
        sel("In", json!([])),
        "spec.selector.matchExpressions[0].values",
        "at least one value",
    );
    assert_reports(
        sel("Exists", json!(["x"])),
        "spec.selector.matchExpressions[0].values",
        "takes no values",
    );
    for op in ["In", "NotIn"] {
        assert!(errors_of(sel(op, json!(["x"]))).is_empty());
    }

    let pattern = |p: &str| json!({"ports": [port(443)], "targetPath": p});
    assert_reports(pattern(""), "spec.targetPath", "must not be empty");
    assert_reports(
        pattern("deployment/x"),
        "spec.targetPath",
        "matches no target kind",
    );
    assert_reports(pattern("deploy/a b"), "spec.targetPath", "character");
    assert_reports(
        pattern("deploy//x"),
        "spec.targetPath",
        "empty path segment",
    );
    for ok in [
        "*",
        "deploy/x",
        "*/example-deploy*",
        "?od/x",
        "statefulset/db/container/c-?",
    ] {
        assert!(errors_of(pattern(ok)).is_empty(), "{ok}");
    }

    let mut v = json!({"ports": [port(443)]});
    v["ports"][0]["agentAsServer"]["verification"] = json!({});
    assert_reports(
        v.clone(),
        "spec.ports[0].agentAsServer.verification.trustRoots",
        "no client could ever connect",
    );
    v["ports"][0]["agentAsServer"]["verification"] = json!({"allowAnonymous": true});
    assert!(
        errors_of(v.clone()).is_empty(),
        "only anonymous clients: a valid choice"
    );
    v["ports"][0]["agentAsServer"]["verification"] = json!({"trustRoots": ["relative.pem"]});
    assert_reports(
        v,
        "spec.ports[0].agentAsServer.verification.trustRoots[0]",
        "absolute path",
    );

    let mut v = json!({"ports": [port(443)]});
    v["ports"][0]["agentAsClient"]["verification"] = json!({});
    assert_reports(
        v,
        "spec.ports[0].agentAsClient.verification.trustRoots",
        "could never be verified",
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let mut v = json!({"targetPath": "", "ports": [port(0), port(443)]});
    v["ports"][1]["agentAsServer"]["authentication"]["certPem"] = "".into();
    let errs = errors_of(v);
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn structural_errors_name_the_field() {
    let err =
        serde_json::from_value::<TlsStealSpec>(json!({"ports": [{"port": 70000}]})).unwrap_err();
    assert!(err.to_string().contains("70000"), "{err}");
    let err =
        serde_json::from_value::<TlsStealSpec>(json!({"ports": [{"port": 443}]})).unwrap_err();
    assert!(err.to_string().contains("agentAsServer"), "{err}");
}

/// Arbitrary JSON shaped roughly like a spec: real field names with random values.
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u32..70000).prop_map(Value::from),
        "[a-z/*?. \\-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("port"),
            Just("ports"),
            Just("targetPath"),
            Just("selector"),
            Just("matchLabels"),
            Just("matchExpressions"),
            Just("key"),
            Just("operator"),
            Just("values"),
            Just("agentAsServer"),
            Just("agentAsClient"),
            Just("authentication"),
            Just("certPem"),
            Just("keyPem"),
            Just("alpnProtocols"),
            Just("verification"),
            Just("allowAnonymous"),
            Just("acceptAnyCert"),
            Just("trustRoots"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_panics_on_generated_specs(v in arb_value(), wild in "[a-z/*?]{0,10}") {
        if let Ok(mut spec) = serde_json::from_value::<TlsStealSpec>(v) {
            let _ = spec.validate();
            let pod = deployment_pod("web").label("app", "web").container("app", &[443]).target();
            let plan = build_plan(&pod, "ns", &[ConfigSource::namespaced("ns", "x", spec.clone())]);
            prop_assert!(plan.ports.iter().all(|p| spec.ports.iter().any(|s| s.port == p.port)));
            spec.target_path = Some(wild);
            let _ = build_plan(&pod, "ns", &[ConfigSource::cluster("y", spec)]);
        }
    }

    #[test]
    fn valid_specs_always_plan_their_ports(ports in prop::collection::btree_set(1u16.., 1..5)) {
        let reserved = tls_steal_crds::contract::RESERVED_PORTS;
        let ports: Vec<u16> = ports.into_iter().filter(|p| !reserved.contains(p)).collect();
        prop_assume!(!ports.is_empty());
        let pod = deployment_pod("web").container("app", &[]).target();
        let plan = build_plan(&pod, "ns", &[ConfigSource::namespaced("ns", "x", spec(None, &ports, "t"))]);
        prop_assert_eq!(plan.port_numbers(), ports);
        prop_assert!(plan.ports.iter().all(|p| p.container == "app"), "first container by default");
    }
}

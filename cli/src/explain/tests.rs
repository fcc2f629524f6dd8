//! `--explain` on fixtures: matches and misses with their reasons, the plan the pod runs against
//! the configs' plan, ports with TLS settings and live state, discarded and rejected entries, the
//! sample's destination; human and JSON output.

use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tls_steal_crds::plan::{ConfigSource, build_plan};
use tls_steal_crds::session::{
    Destination, ExplainAnswer, Mode, PortStatus, SessionInfo, SessionVerdict, Verdict,
};
use tls_steal_crds::{PodTarget, TlsStealSpec};

use super::render::render;
use super::report::{Report, RequestReport, pod_report};
use super::sample;
use crate::args::Args;

fn spec(v: Value) -> TlsStealSpec {
    serde_json::from_value(v).unwrap()
}

fn port(port: u16, cert: &str) -> Value {
    json!({
        "port": port,
        "agentAsServer": {"authentication": {"certPem": cert, "keyPem": "/tls/tls.key"},
                          "alpnProtocols": ["h2", "http/1.1"]},
        "agentAsClient": {"verification": {"trustRoots": ["/tls/ca.crt"]}}
    })
}

fn configs() -> Vec<ConfigSource> {
    vec![
        ConfigSource::namespaced(
            "shop",
            "web",
            spec(json!({"targetPath": "deploy/web*", "ports": [port(443, "/tls/tls.crt")]})),
        ),
        ConfigSource::namespaced(
            "shop",
            "zz-dup",
            spec(json!({"targetPath": "deploy/web", "ports": [port(443, "/other.crt")]})),
        ),
        ConfigSource::namespaced(
            "shop",
            "bad",
            spec(json!({"targetPath": "deploy/web", "ports": [port(15443, "/tls/tls.crt")]})),
        ),
        ConfigSource::namespaced(
            "shop",
            "api-only",
            spec(json!({"targetPath": "deploy/api*", "ports": [port(8443, "/x")]})),
        ),
        ConfigSource::namespaced(
            "shop",
            "by-label",
            spec(json!({"selector": {"matchLabels": {"tier": "db"}}, "ports": [port(5432, "/x")]})),
        ),
        ConfigSource::namespaced(
            "bank",
            "elsewhere",
            spec(json!({"ports": [port(443, "/x")]})),
        ),
    ]
}

/// A pod of deploy/web; with `plan_json` it carries the sidecar started with that plan.
fn pod(plan_json: Option<String>) -> Pod {
    let mut containers = vec![json!({"name": "app", "ports": [{"containerPort": 443}]})];
    if let Some(plan) = plan_json {
        containers.push(json!({"name": "tls-steal-proxy",
                               "env": [{"name": "TLS_STEAL_PLAN", "value": plan}]}));
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web-5d8f-abcde", "namespace": "shop",
                     "labels": {"app": "web", "pod-template-hash": "5d8f"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "web-5d8f", "uid": "u"}]},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

fn current_plan_json() -> String {
    let p = pod(None);
    build_plan(&PodTarget::from_pod(&p), "shop", &configs()).to_json()
}

fn report(pod: &Pod) -> super::report::PodReport {
    pod_report(pod, &PodTarget::from_pod(pod), "shop", &configs())
}

#[test]
fn matches_misses_discards_and_rejects_with_reasons() {
    let r = report(&pod(Some(current_plan_json())));
    let by = |id: &str| r.configs.iter().find(|c| c.config.ends_with(id)).unwrap();
    assert!(by("/web").matched);
    assert_eq!(by("/web").paths, ["deploy/web"]);
    assert!(by("/bad").matched, "matched, then rejected as invalid");
    let api = by("/api-only").reason.clone().unwrap();
    assert!(
        api.starts_with("pattern: targetPath \"deploy/api*\""),
        "{api}"
    );
    assert!(api.contains("deploy/web"), "{api}");
    let label = by("/by-label").reason.clone().unwrap();
    assert!(label.starts_with("selector: tier=db"), "{label}");
    let ns = by("/elsewhere").reason.clone().unwrap();
    assert!(
        ns.starts_with("namespace: the config is in namespace bank"),
        "{ns}"
    );
    // Matched first, then by id.
    assert!(r.configs[..3].iter().all(|c| c.matched), "{:?}", r.configs);

    assert_eq!(r.running_plan.state, "same");
    assert_eq!(r.ports.len(), 1);
    assert_eq!(r.ports[0].plan.port, 443);
    assert_eq!(r.ports[0].plan.container, "app");
    assert_eq!(r.discarded.len(), 1);
    assert!(r.discarded[0].config.ends_with("/zz-dup"));
    assert!(
        r.discarded[0].reason.contains("already configured"),
        "{:?}",
        r.discarded
    );
    assert_eq!(r.rejected.len(), 1);
    assert!(
        r.rejected[0].errors.join(" ").contains("15443"),
        "{:?}",
        r.rejected
    );
    assert_eq!(
        r.target_paths,
        ["pod/web-5d8f-abcde", "rs/web-5d8f", "deploy/web"]
    );
}

#[test]
fn a_pod_started_before_the_configs_says_so() {
    let r = report(&pod(None));
    assert_eq!(r.running_plan.state, "none");
    assert!(!r.sidecar);
    assert!(
        r.running_plan
            .detail
            .contains("created before a config matched")
    );
    assert_eq!(r.ports.len(), 1, "the configs' plan is shown");

    let old = tls_steal_crds::StealPlan::from_ports(vec![]).to_json();
    let r = report(&pod(Some(old)));
    assert_eq!(r.running_plan.state, "differs");
    assert!(
        r.running_plan.detail.contains("ports none"),
        "{}",
        r.running_plan.detail
    );
    assert!(r.ports.is_empty(), "the pod's own (empty) plan");

    let r = report(&pod(Some("{".into())));
    assert_eq!(r.running_plan.state, "unreadable");
}

fn live_report() -> Report {
    let mut p = report(&pod(Some(current_plan_json())));
    p.ports[0].live = Some(PortStatus {
        port: 443,
        state: "passthrough".into(),
        reason: Some("/tls/tls.key: not found".into()),
        certificate: None,
    });
    p.sessions = vec![SessionInfo {
        id: 3,
        client: "alice@laptop".into(),
        ports: vec![443],
        mode: Mode::Steal,
        filter: Some(tls_steal_crds::filter::HttpFilter::Header(
            "x-steal: yes".into(),
        )),
        filter_ports: None,
        stolen: 2,
        mirrored: 0,
        since: Some("2024-05-01T12:00:00Z".into()),
        age_seconds: Some(75),
    }];
    p.requests = vec![
        RequestReport {
            port: 443,
            answer: Some(ExplainAnswer {
                port: 443,
                port_state: None,
                destination: Destination::Session {
                    id: 3,
                    client: "alice@laptop".into(),
                    mode: Mode::Steal,
                },
                reason: "session 3 (alice@laptop) takes it".into(),
                sessions: vec![SessionVerdict {
                    id: 3,
                    client: "alice@laptop".into(),
                    mode: Mode::Steal,
                    verdict: Verdict::Takes,
                }],
            }),
            error: None,
        },
        RequestReport {
            port: 8443,
            answer: None,
            error: Some("this sidecar has no /v1/explain".into()),
        },
    ];
    Report {
        target: "deploy/web".into(),
        namespace: "shop".into(),
        sample: sample(&Args::parse_from([
            "kubectl-steal",
            "--explain",
            "deploy/web",
            "--header",
            "x-steal: yes",
            "--path",
            "/api",
        ]))
        .unwrap(),
        notes: vec![],
        pods: vec![p],
    }
}

#[test]
fn human_output_reads_top_down() {
    let text = render(&live_report());
    for want in [
        "deploy/web in namespace shop: 1 pod(s)",
        "sample request: GET /api, x-steal: yes",
        "pod/web-5d8f-abcde (ready, tls-steal-proxy injected)",
        "    matched      MirrordTlsStealConfig/shop/web (targetPath matched deploy/web)",
        "    not matched  MirrordTlsStealConfig/shop/api-only: pattern: targetPath \"deploy/api*\"",
        "the pod runs the plan the configs give now",
        "    443: files in container app, from MirrordTlsStealConfig/shop/web",
        "      as server: cert /tls/tls.crt, key /tls/tls.key, ALPN h2, http/1.1, client certificates not asked",
        "      to the app: app verified against /tls/ca.crt, anonymous",
        "      live: relayed untouched (TCP passthrough, nothing is stolen): /tls/tls.key: not found",
        "  discarded:\n    port 443 of MirrordTlsStealConfig/shop/zz-dup: port 443 is already configured",
        "  rejected (invalid, left out of the plan):\n    MirrordTlsStealConfig/shop/bad:",
        "  sessions: 1 active\n    session 3 (alice@laptop, steal) ports 443: header ~ \"x-steal: yes\"; registered 1m15s ago",
        "    port 443: → session 3 (alice@laptop, steal): session 3 (alice@laptop) takes it",
        "      session 3 (alice@laptop): takes it",
        "    port 8443: unknown: this sidecar has no /v1/explain",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn json_output_is_for_scripts() {
    let v = serde_json::to_value(live_report()).unwrap();
    let p = &v["pods"][0];
    assert_eq!(p["runningPlan"]["state"], "same");
    assert_eq!(p["ports"][0]["port"], 443);
    assert_eq!(
        p["ports"][0]["agentAsServer"]["authentication"]["certPem"],
        "/tls/tls.crt"
    );
    assert_eq!(p["ports"][0]["live"]["state"], "passthrough");
    assert_eq!(p["configs"][0]["matched"], true);
    let miss = p["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["matched"] == false)
        .unwrap();
    assert!(miss["mismatch"]["check"].is_string(), "{miss}");
    assert_eq!(p["requests"][0]["answer"]["destination"]["to"], "session");
    assert_eq!(p["requests"][0]["answer"]["destination"]["id"], 3);
    assert_eq!(
        p["discarded"][0]["keptBy"],
        "MirrordTlsStealConfig/shop/web"
    );
    assert_eq!(v["sample"]["headers"][0], json!(["x-steal", "yes"]));
}

#[test]
fn the_sample_comes_from_the_filter_flags() {
    let parse = |a: &[&str]| {
        let mut all = vec!["kubectl-steal", "--explain", "deploy/web"];
        all.extend_from_slice(a);
        sample(&Args::parse_from(all))
    };
    assert_eq!(parse(&[]).unwrap(), None);
    let s = parse(&["--port", "443"]).unwrap().unwrap();
    assert_eq!((s.method, s.path, s.headers.len()), (None, None, 0));
    let s = parse(&["--method", "POST", "--header", "X-A:b: c"])
        .unwrap()
        .unwrap();
    assert_eq!(s.method.as_deref(), Some("POST"));
    assert_eq!(s.headers, [("X-A".to_string(), "b: c".to_string())]);
    let e = parse(&["--header", "no-colon"]).unwrap_err().to_string();
    assert!(e.contains("name: value"), "{e}");
}

//! The Grafana dashboard (`chart/dashboards/tls-steal.json`) queries only metrics the components
//! export: every `tls_steal_*` name in its PromQL is a series name of a real `/metrics` scrape,
//! the proxy's (an in-process `tls-steal-proxy` with its session layer) or the webhook's
//! (admission's and the controller's metrics in one registry, as `serve --controller` has them).
//! Histograms are named as scraped (`_bucket`, `_sum`, `_count`), counters with `_total`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tls_steal_crds::StealPlan;
use tls_steal_crds::plan::PortPlan;
use tls_steal_crds::{AgentAsClient, AgentAsServer, ClientVerification, TlsAuthentication};

fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../chart/dashboards/tls-steal.json")
}

/// Every PromQL expression of the dashboard (panel targets and template variable queries).
fn expressions(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("a target has an expr").to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str().or(v["definition"].as_str()) {
            out.push(q.to_owned());
        }
    }
    out
}

/// The `tls_steal_*` identifiers in `expr`, outside quoted label values.
fn metric_names(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let unquoted: String = expr
        .split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 0 { part } else { " " })
        .collect();
    let mut names = Vec::new();
    let mut rest = unquoted.as_str();
    while let Some(i) = rest.find("tls_steal_") {
        let preceded = rest[..i].chars().next_back().is_some_and(ident);
        let end = rest[i..]
            .find(|c: char| !ident(c))
            .map_or(rest.len(), |e| i + e);
        if !preceded {
            names.push(rest[i..end].to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// Series names of an exposition (text or OpenMetrics).
fn series_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

fn webhook_series() -> BTreeSet<String> {
    let mut registry = prometheus_client::registry::Registry::default();
    tls_steal_webhook::Metrics::default().register(&mut registry);
    tls_steal_webhook::controller::ControllerMetrics::default().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    series_names(&text)
}

/// Scrapes `/metrics` of a real proxy with one captured port (its files do not exist, so the
/// port is relayed untouched: every per-port series is still exported).
async fn proxy_series() -> BTreeSet<String> {
    let file = |n: &str| format!("/nonexistent/tls-steal-dashboard-test/{n}");
    let plan = StealPlan::from_ports(vec![PortPlan {
        port: 443,
        container: "app".into(),
        config: "MirrordTlsStealConfig/test/app".into(),
        agent_as_server: AgentAsServer {
            authentication: TlsAuthentication {
                cert_pem: file("tls.crt"),
                key_pem: file("tls.key"),
            },
            alpn_protocols: vec![],
            verification: None,
        },
        agent_as_client: AgentAsClient {
            authentication: None,
            verification: ClientVerification {
                accept_any_cert: true,
                trust_roots: vec![],
            },
        },
    }]);
    let mut cfg = tls_steal_sidecar::proxy::ProxyConfig::new(plan);
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    cfg.session_api = Some("127.0.0.1:0".parse().unwrap());
    cfg.files.search_processes = false;
    let proxy = tls_steal_sidecar::proxy::start(cfg)
        .await
        .expect("proxy starts");
    let (_, body) = tls_steal_test_support::http1_get(proxy.admin.unwrap(), "/metrics", "x").await;
    series_names(&body)
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let d: Value = serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap())
        .expect("the dashboard is JSON");
    let exprs = expressions(&d);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();

    let proxy = proxy_series().await;
    let webhook = webhook_series();
    assert!(
        proxy.contains("tls_steal_request_duration_seconds_bucket"),
        "{proxy:?}"
    );
    assert!(
        webhook.contains("tls_steal_webhook_reviews_total"),
        "{webhook:?}"
    );
    let exported: BTreeSet<&String> = proxy.iter().chain(&webhook).collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics no component exports: {unknown:?}\nexported: {exported:?}"
    );

    // What the dashboard is for (docs/operating.md, "Dashboard").
    for needed in [
        "tls_steal_session_routed_requests_total",
        "tls_steal_requests_total",
        "tls_steal_request_duration_seconds_bucket",
        "tls_steal_port_passthrough",
        "tls_steal_sessions_active",
        "tls_steal_webhook_review_duration_seconds_bucket",
        "tls_steal_controller_rollouts_total",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    for p in d["panels"].as_array().unwrap() {
        if p["type"] != "row" {
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "panel {} has no query",
                p["title"]
            );
        }
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le) (rate(tls_steal_a_bucket{x="tls_steal_no"}[5m]))) / tls_steal_b"#
        ),
        ["tls_steal_a_bucket", "tls_steal_b"]
    );
    assert_eq!(metric_names("my_tls_steal_x + 1"), Vec::<String>::new());
}

//! `/metrics` keeps every series the hand-written renderers exposed before prometheus-client
//! (dashboards use the names): scraped over the real server with admission's metrics and an
//! in-process controller's, as `serve --controller` registers them.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tls_steal_webhook::controller::ControllerMetrics;
use tls_steal_webhook::{Admission, ConfigCache, METRICS_CONTENT_TYPE, Metrics, Settings};

/// Every series (name and labels, without the value) the old renderers wrote, in their order:
/// `Metrics::render` (admission) followed by `ControllerMetrics::render` (controller). Series
/// added since then follow `tls_steal_controller_leader` (the watch caches', issue 19), except the
/// skip reasons `windows`, `runs_to_completion` and `port_conflict`, listed with their siblings.
const OLD_SERIES: &str = r#"
tls_steal_webhook_reviews_total{result="injected"}
tls_steal_webhook_reviews_total{result="skipped"}
tls_steal_webhook_reviews_total{result="error"}
tls_steal_webhook_reviews_total{result="invalid"}
tls_steal_webhook_reviews_total{result="unexpected_kind"}
tls_steal_webhook_skips_total{reason="no_matching_config"}
tls_steal_webhook_skips_total{reason="invalid_configs"}
tls_steal_webhook_skips_total{reason="already_injected"}
tls_steal_webhook_skips_total{reason="host_network"}
tls_steal_webhook_skips_total{reason="windows"}
tls_steal_webhook_skips_total{reason="opt_out"}
tls_steal_webhook_skips_total{reason="own_pod"}
tls_steal_webhook_skips_total{reason="no_spec"}
tls_steal_webhook_skips_total{reason="protected_namespace"}
tls_steal_webhook_skips_total{reason="control_plane"}
tls_steal_webhook_skips_total{reason="runs_to_completion"}
tls_steal_webhook_skips_total{reason="port_conflict"}
tls_steal_webhook_undeclared_ports_total
tls_steal_webhook_owner_lookup_errors_total
tls_steal_webhook_oversized_requests_total
tls_steal_webhook_replayed_total
tls_steal_webhook_configs
tls_steal_webhook_config_watch_errors_total{kind="MirrordTlsStealConfig"}
tls_steal_webhook_config_watch_errors_total{kind="MirrordClusterTlsStealConfig"}
tls_steal_webhook_config_listed_timestamp_seconds{kind="MirrordTlsStealConfig"}
tls_steal_webhook_config_listed_timestamp_seconds{kind="MirrordClusterTlsStealConfig"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.0005"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.001"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.0025"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.005"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.01"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.025"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.05"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.1"}
tls_steal_webhook_review_duration_seconds_bucket{le="0.25"}
tls_steal_webhook_review_duration_seconds_bucket{le="1"}
tls_steal_webhook_review_duration_seconds_bucket{le="+Inf"}
tls_steal_webhook_review_duration_seconds_sum
tls_steal_webhook_review_duration_seconds_count
tls_steal_controller_reconciles_total
tls_steal_controller_rollouts_total{kind="Deployment"}
tls_steal_controller_rollouts_total{kind="StatefulSet"}
tls_steal_controller_rollouts_total{kind="DaemonSet"}
tls_steal_controller_rollouts_disabled_total{kind="Deployment"}
tls_steal_controller_rollouts_disabled_total{kind="StatefulSet"}
tls_steal_controller_rollouts_disabled_total{kind="DaemonSet"}
tls_steal_controller_reconcile_errors_total{error="kube"}
tls_steal_controller_reconcile_errors_total{error="conflict"}
tls_steal_controller_reconcile_errors_total{error="invalid_object"}
tls_steal_controller_status_updates_total
tls_steal_controller_workloads_in_sync
tls_steal_controller_workloads_out_of_sync
tls_steal_controller_workloads_rollout_disabled
tls_steal_controller_leader
tls_steal_controller_cached_objects{kind="Deployment"}
tls_steal_controller_watch_last_event_timestamp_seconds{kind="Deployment"}
tls_steal_controller_watch_errors_total{kind="Deployment"}
tls_steal_controller_cached_objects{kind="StatefulSet"}
tls_steal_controller_watch_last_event_timestamp_seconds{kind="StatefulSet"}
tls_steal_controller_watch_errors_total{kind="StatefulSet"}
tls_steal_controller_cached_objects{kind="DaemonSet"}
tls_steal_controller_watch_last_event_timestamp_seconds{kind="DaemonSet"}
tls_steal_controller_watch_errors_total{kind="DaemonSet"}
"#;

/// A series as `name{label="value",...}` with its labels sorted. `le` is compared as the number
/// it is: the old renderer wrote `le="1"`, OpenMetrics writes the canonical float `le="1.0"`
/// (Prometheus 3 stores classic-histogram `le` values normalised that way whatever was scraped).
fn series(line: &str) -> String {
    let (name, labels) = match line.split_once('{') {
        None => return line.to_owned(),
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
    };
    let mut labels: Vec<String> = labels
        .split(',')
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            let v = v.trim_matches('"');
            match (k, v.parse::<f64>()) {
                ("le", Ok(f)) if f.is_finite() => format!("{k}={f:e}"),
                _ => format!("{k}={v}"),
            }
        })
        .collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

#[tokio::test]
async fn metrics_keep_every_series_the_old_renderers_wrote() {
    let admission = Admission::new(
        Arc::new(ConfigCache::from_sources(vec![])),
        Settings::default(),
        Arc::new(Metrics::default()),
        None,
    );
    let mut registry = Registry::default();
    let controller = ControllerMetrics::default();
    controller.register(&mut registry);
    admission.register_metrics(&mut registry);
    let srv = common::start_with_metrics(admission, 1024 * 1024, registry).await;
    let mut conn = common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
        .await
        .unwrap();
    let (status, content_type, body) = conn
        .request_typed("GET", "/metrics", Vec::new())
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(content_type, METRICS_CONTENT_TYPE);
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    // prometheus-client ends every HELP text with a period of its own.
    let doubled: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# HELP") && l.ends_with(".."))
        .collect();
    assert!(doubled.is_empty(), "HELP texts ending in '..': {doubled:?}");

    let scraped: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| series(l.rsplit_once(' ').unwrap().0))
        .collect();
    let unique: BTreeSet<&String> = scraped.iter().collect();
    assert_eq!(
        unique.len(),
        scraped.len(),
        "a series written twice:\n{text}"
    );
    let want: BTreeSet<String> = OLD_SERIES
        .lines()
        .filter(|l| !l.is_empty())
        .map(series)
        .collect();
    let got: BTreeSet<String> = scraped.into_iter().collect();
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "new series"
    );
    assert_eq!(
        want.difference(&got).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "lost series"
    );
}

//! Every series `/metrics` exported before the move to prometheus-client, by name and labels:
//! dashboards use them, so each must still be there (a bucket bound may read `1.0` for `1`).

use std::collections::BTreeSet;

/// The series of an exposition: `name{label="value",…}`, with `le` last and bucket bounds as
/// numbers (label order and `1` vs `1.0` are spelling, not identity).
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let key = l.rsplit_once(' ').map_or(l, |(k, _)| k);
            let Some((name, labels)) = key.split_once('{') else {
                return key.to_owned();
            };
            let labels = labels.trim_end_matches('}');
            let (mut rest, mut le) = (Vec::new(), None);
            for pair in labels.split(',') {
                match pair.strip_prefix("le=\"") {
                    Some(bound) => {
                        let bound = bound.trim_end_matches('"');
                        le = Some(match bound.parse::<f64>() {
                            Ok(b) if b.is_finite() => format!("{b}"),
                            _ => bound.to_owned(),
                        });
                    }
                    None => rest.push(pair.to_owned()),
                }
            }
            if let Some(le) = le {
                rest.push(format!("le=\"{le}\""));
            }
            format!("{name}{{{}}}", rest.join(","))
        })
        .collect()
}

fn expected() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |s: String| {
        out.insert(s);
    };
    for port in [0u16, 443] {
        for outcome in ["forwarded", "upstream_error"] {
            add(format!(
                "tls_steal_requests_total{{port=\"{port}\",outcome=\"{outcome}\"}}"
            ));
        }
        for reason in [
            "timeout",
            "not_tls",
            "legacy_tls",
            "no_client_cert",
            "bad_client_cert",
            "no_alpn_overlap",
            "client_aborted",
            "other",
        ] {
            add(format!(
                "tls_steal_tls_handshake_failures_total{{port=\"{port}\",reason=\"{reason}\"}}"
            ));
        }
        for kind in ["tls", "passthrough", "opaque"] {
            add(format!(
                "tls_steal_connections_total{{port=\"{port}\",kind=\"{kind}\"}}"
            ));
        }
        for result in ["ok", "error"] {
            add(format!(
                "tls_steal_upstream_connects_total{{port=\"{port}\",result=\"{result}\"}}"
            ));
            add(format!(
                "tls_steal_cert_reloads_total{{port=\"{port}\",result=\"{result}\"}}"
            ));
        }
        for gauge in [
            "tls_steal_upstream_connections",
            "tls_steal_upstream_pools",
            "tls_steal_client_connections",
            "tls_steal_client_connections_parked",
            "tls_steal_connections_refused_total",
            "tls_steal_request_duration_seconds_sum",
            "tls_steal_request_duration_seconds_count",
        ] {
            add(format!("{gauge}{{port=\"{port}\"}}"));
        }
        for le in [
            "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
            "1", "5", "+Inf",
        ] {
            add(format!(
                "tls_steal_request_duration_seconds_bucket{{port=\"{port}\",le=\"{le}\"}}"
            ));
        }
    }
    add("tls_steal_port_passthrough{port=\"443\"}".into());
    add("tls_steal_sessions_active".into());
    add("tls_steal_sessions_registered_total".into());
    add("tls_steal_session_events_dropped_total".into());
    for kind in [
        "registration_rejected",
        "connection_failed",
        "stuck",
        "request_failed",
        "upgrade_failed",
    ] {
        add(format!("tls_steal_session_errors_total{{kind=\"{kind}\"}}"));
    }
    let port = 443;
    for route in ["forwarded", "stolen", "mirrored"] {
        add(format!(
            "tls_steal_session_routed_requests_total{{port=\"{port}\",route=\"{route}\"}}"
        ));
    }
    for name in [
        "tls_steal_session_mirror_dropped_total",
        "tls_steal_session_lost_total",
        "tls_steal_session_filter_regex_limit_total",
    ] {
        add(format!("{name}{{port=\"{port}\"}}"));
    }
    for reason in ["not_json", "empty", "too_large", "timeout", "read_error"] {
        add(format!(
            "tls_steal_session_body_unusable_total{{port=\"{port}\",reason=\"{reason}\"}}"
        ));
    }
    // Added with session authorization (issue 18).
    for reason in [
        "missing",
        "malformed",
        "unknown_key",
        "bad_signature",
        "expired",
        "wrong_namespace",
        "wrong_ports",
        "wrong_mode",
        "wrong_filter",
    ] {
        add(format!(
            "tls_steal_session_tickets_refused_total{{reason=\"{reason}\"}}"
        ));
    }
    out
}

/// The proxy's and the session layer's exposition for a plan with port 443.
fn exposition() -> String {
    let proxy = crate::proxy::Metrics::new([443]);
    let sessions = crate::session::SessionMetrics::new([443]);
    let mut registry = prometheus_client::registry::Registry::default();
    proxy.register(&mut registry);
    sessions.register(&mut registry);
    tls_steal_http::openmetrics::encode(&registry)
}

#[test]
fn every_series_of_before_is_still_exported() {
    let text = exposition();
    let got = series(&text);
    let missing: Vec<_> = expected().difference(&got).cloned().collect();
    assert!(missing.is_empty(), "missing {missing:#?}\n{text}");
    let extra: Vec<_> = got.difference(&expected()).cloned().collect();
    assert!(extra.is_empty(), "new series {extra:#?}");
}

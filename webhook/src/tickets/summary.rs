//! A session's ports and filter for people (`kubectl get stealsessions` columns).

use tls_steal_crds::steal_session::StealSessionSpec;

/// `443,8443`, or `all captured`.
pub fn ports_summary(spec: &StealSessionSpec) -> String {
    if spec.ports.is_empty() {
        return "all captured".into();
    }
    let mut ports = spec.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The filter as compact JSON (at most 80 characters), with the ports it applies to; `none`.
pub fn filter_summary(spec: &StealSessionSpec) -> String {
    let Some(f) = &spec.filter else {
        return "none".into();
    };
    let mut s = serde_json::to_string(f).unwrap_or_default();
    if s.chars().count() > 80 {
        s = s.chars().take(79).collect::<String>() + "…";
    }
    match &spec.filter_ports {
        Some(p) => format!("{s} on {p:?}"),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let mut spec: StealSessionSpec = serde_json::from_value(serde_json::json!({
            "target": "deploy/web", "ports": [8443, 443, 443],
            "filter": {"header": "x-debug: me"}
        }))
        .unwrap();
        assert_eq!(ports_summary(&spec), "443,8443");
        assert_eq!(filter_summary(&spec), r#"{"header":"x-debug: me"}"#);
        spec.filter_ports = Some(vec![443]);
        assert_eq!(
            filter_summary(&spec),
            r#"{"header":"x-debug: me"} on [443]"#
        );
        spec.ports.clear();
        spec.filter = None;
        assert_eq!(
            (
                ports_summary(&spec).as_str(),
                filter_summary(&spec).as_str()
            ),
            ("all captured", "none")
        );
    }
}

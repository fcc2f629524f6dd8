use tls_steal_crds::filter::BodyFilter;

use super::*;

fn json(s: &str) -> Result<MirrordConfig, ConfigError> {
    parse(s, Format::Json)
}

fn incoming_of(s: &str) -> IncomingConfig {
    json(s).unwrap().incoming
}

fn err(s: &str) -> String {
    json(s).unwrap_err().to_string()
}

#[test]
fn full_section_json() {
    let c = json(
            r#"{"target": {"path": "deploy/x/container/app", "namespace": "shop"}, "feature": {"network": {"incoming": {
                "mode": "steal",
                "http_filter": {"all_of": [{"header": "^x-steal: yes$"}, {"path": "^/api"}], "ports": [443]},
                "ports": [443, 8443],
                "port_mapping": [[9443, 443]],
                "tls_delivery": {"protocol": "tcp", "trust_roots": ["/r.pem"], "server_name": "app.local"}
            }}}}"#,
        )
        .unwrap();
    assert_eq!(c.target.path.as_deref(), Some("deploy/x/container/app"));
    assert_eq!(c.target.namespace.as_deref(), Some("shop"));
    let c = c.incoming;
    assert_eq!(c.mode, Some(Mode::Steal));
    assert_eq!(c.ports, Some(vec![443, 8443]));
    assert_eq!(c.filter_ports, Some(vec![443]));
    assert_eq!(c.port_mapping, vec![(9443, 443)]);
    assert_eq!(
        c.filter,
        Some(HttpFilter::AllOf(vec![
            HttpFilter::Header("^x-steal: yes$".into()),
            HttpFilter::Path("^/api".into()),
        ]))
    );
    assert_eq!(c.delivery.protocol, Some(DeliveryProtocol::Tcp));
    assert_eq!(c.delivery.trust_roots, Some(vec![PathBuf::from("/r.pem")]));
    assert_eq!(c.delivery.server_name.as_deref(), Some("app.local"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn target_spellings() {
    let t = |s: &str| json(s).map(|c| c.target);
    assert_eq!(
        t(r#"{"target": "deployment/web"}"#)
            .unwrap()
            .path
            .as_deref(),
        Some("deployment/web")
    );
    let obj =
        t(r#"{"target": {"path": {"deployment": "web", "container": "app"}, "namespace": "ns"}}"#)
            .unwrap();
    assert_eq!(obj.path.as_deref(), Some("deploy/web"));
    assert_eq!(obj.namespace.as_deref(), Some("ns"));
    assert_eq!(
        t(r#"{"target": {"path": {"stateful_set": "db"}}}"#)
            .unwrap()
            .path
            .as_deref(),
        Some("statefulset/db")
    );
    assert_eq!(
        t(r#"{"target": {"namespace": "ns"}}"#).unwrap(),
        FileTarget {
            path: None,
            namespace: Some("ns".into())
        }
    );
    for (text, want) in [
        (r#"{"target": "targetless"}"#, "target: a targetless run"),
        (
            r#"{"target": {"path": "service/web"}}"#,
            "target.path: \"service/web\" is not a target",
        ),
        (
            r#"{"target": {"path": {"cron_job": "c"}}}"#,
            "target.path.cron_job: cron_job targets are not supported",
        ),
        (
            r#"{"target": {"pth": "deploy/x"}}"#,
            "target.pth: unknown key",
        ),
        (
            r#"{"target": 7}"#,
            "target: expected a target path or a mapping",
        ),
        (
            r#"{"target": {"namespace": ""}}"#,
            "target.namespace: cannot be an empty string",
        ),
    ] {
        let e = err(text);
        assert!(e.starts_with(want), "{text}\n  gave {e}\n  want {want}");
    }
}

#[test]
fn body_filters_alone_and_in_composites() {
    let c = incoming_of(
        r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"json","query":"$.user.id","matches":"^4[0-9]$"}}}}}}"#,
    );
    assert_eq!(
        c.filter,
        Some(HttpFilter::Body(BodyFilter::Json {
            query: "$.user.id".into(),
            matches: "^4[0-9]$".into()
        }))
    );
    let c = incoming_of(
        r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"path":"^/x"},{"body":"json","query":"$.a[*]","matches":"b"}]}}}}}"#,
    );
    assert!(matches!(&c.filter, Some(HttpFilter::AnyOf(v)) if matches!(v[1], HttpFilter::Body(_))));
}

#[test]
fn yaml_equals_json() {
    let y = parse(
            "feature:\n  network:\n    incoming:\n      mode: mirror\n      http_filter:\n        header_filter: 'x-a: 1'\n        ports: 8443\n      ports: [8443]\n      tls_delivery:\n        protocol: tls\n",
            Format::Yaml,
        )
        .unwrap();
    let j = json(
            r#"{"feature":{"network":{"incoming":{"mode":"mirror","http_filter":{"header_filter":"x-a: 1","ports":[8443]},"ports":[8443],"tls_delivery":{"protocol":"tls"}}}}}"#,
        )
        .unwrap();
    assert_eq!(y, j);
    assert_eq!(y.incoming.mode, Some(Mode::Mirror));
    assert_eq!(y.incoming.filter_ports, Some(vec![8443]));
}

#[test]
fn shorthand_missing_section_and_no_filter() {
    let c = incoming_of(r#"{"feature":{"network":{"incoming":"mirror"}}}"#);
    assert_eq!(c.mode, Some(Mode::Mirror));
    assert_eq!(c.filter, None);
    let c = incoming_of(r#"{"feature":{"network":{"incoming":{"http_filter":{"ports":[443]}}}}}"#);
    assert_eq!((c.filter, c.filter_ports), (None, Some(vec![443])));
    // No section: mirrord's defaults (left to the settings: mirror every port).
    assert_eq!(
        incoming_of(r#"{"feature":{"network":{}}}"#),
        IncomingConfig::default()
    );
    assert_eq!(
        incoming_of(r#"{"target":"pod/p"}"#),
        IncomingConfig::default()
    );
    // mirrord's toggles: `true` is the defaults.
    for on in [
        r#"{"feature":{"network":true}}"#,
        r#"{"feature":{"network":{"incoming":true}}}"#,
    ] {
        assert_eq!(incoming_of(on), IncomingConfig::default(), "{on}");
    }
}

#[test]
fn http_filter_ports_do_not_replace_the_ports() {
    let c = incoming_of(
        r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"a","ports":[443]},"ports":[80,443]}}}}"#,
    );
    assert_eq!(c.ports, Some(vec![80, 443]));
    assert_eq!(c.filter_ports, Some(vec![443]));
}

#[test]
fn https_delivery_is_the_deprecated_alias() {
    let c = incoming_of(
        r#"{"feature":{"network":{"incoming":{"https_delivery":{"protocol":"tcp"}}}}}"#,
    );
    assert_eq!(c.delivery.protocol, Some(DeliveryProtocol::Tcp));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0]
            .contains("https_delivery is deprecated; use feature.network.incoming.tls_delivery"),
        "{:?}",
        c.warnings
    );
    let c =
        incoming_of(r#"{"feature":{"network":{"incoming":{"tls_delivery":{"protocol":"tcp"}}}}}"#);
    assert!(c.warnings.is_empty());
}

#[test]
fn bad_filter_kind_names_the_item() {
    let e = err(
        r#"{"feature":{"network":{"incoming":{"http_filter":{"all_of":[{"header":"a"},{"hedaer":"b"}]}}}}}"#,
    );
    assert!(
        e.starts_with(
            "feature.network.incoming.http_filter.all_of[1]: unknown filter kind \"hedaer\""
        ),
        "{e}"
    );
}

#[test]
fn bad_keys_are_named() {
    let cases = [
        (
            r#"{"feature":{"network":{"incoming":{"http_filtre":{}}}}}"#,
            "feature.network.incoming.http_filtre: unknown key",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"mode":"stael"}}}}"#,
            "feature.network.incoming.mode: unknown mode \"stael\"",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"x-("}}}}}"#,
            "feature.network.incoming.http_filter.header_filter: invalid regex \"x-(\"",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"path_filter":""}}}}}"#,
            "feature.network.incoming.http_filter.path_filter: cannot be an empty string",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"all_of":[]}}}}}"#,
            "feature.network.incoming.http_filter.all_of: cannot be an empty list",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"ports":[]}}}}"#,
            "feature.network.incoming.ports: an empty list takes no port",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"path":"/a"},{"path":7}]}}}}}"#,
            "feature.network.incoming.http_filter.any_of[1].path: expected a string",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"json","query":"$[","matches":"a"}}}}}}"#,
            "feature.network.incoming.http_filter.body_filter: invalid JSONPath query \"$[\"",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"json","query":"$.a","matches":"("}}}}}}"#,
            "feature.network.incoming.http_filter.body_filter: invalid regex \"(\"",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"xml","query":"$.a","matches":"a"}}}}}}"#,
            "feature.network.incoming.http_filter.body_filter.body: unknown body kind \"xml\"",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"body":"json","query":"$.a"}]}}}}}"#,
            "feature.network.incoming.http_filter.any_of[0]: a body filter needs both",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter_jq":".a"}}}}}"#,
            "feature.network.incoming.http_filter.header_filter_jq: jq filters are not supported",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"ports":[443, 70000]}}}}"#,
            "feature.network.incoming.ports[1]: 70000 is not a port",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"tls_delivery":{"protocol":"udp"}}}}}"#,
            "feature.network.incoming.tls_delivery.protocol: unknown protocol \"udp\"",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"tls_delivery":{"trust_root":["/a"]}}}}}"#,
            "feature.network.incoming.tls_delivery.trust_root: unknown key",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"tls_delivery":{},"https_delivery":{}}}}}"#,
            "feature.network.incoming: both `https_delivery` and `tls_delivery`",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"a","path_filter":"b"}}}}}"#,
            "feature.network.incoming.http_filter: only one filter may be set",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"mode":"off"}}}}"#,
            "feature.network.incoming.mode: mode \"off\"",
        ),
        (
            r#"{"feature":{"network":{"incoming":false}}}"#,
            "feature.network.incoming: `false` turns incoming traffic off",
        ),
        (
            r#"{"feature":{"network":false}}"#,
            "feature.network: `false` turns incoming traffic off",
        ),
        (r#"{"feature":true}"#, "feature: expected a mapping, found"),
        (
            r#"{"feature":{"network":{"incoming":{"ignore_ports":[9999]}}}}"#,
            "feature.network.incoming.ignore_ports: not supported",
        ),
        (
            r#"{"feature":{"network":{"incoming":{"port_mapping":[[1,2],[1,3]]}}}}"#,
            "feature.network.incoming.port_mapping[1]: duplicate local port 1",
        ),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.starts_with(want), "{text}\n  gave {e}\n  want {want}");
    }
}

#[test]
fn mirrord_keys_for_the_local_process_warn() {
    let c = incoming_of(
        r#"{"feature":{"network":{"incoming":{"mode":"steal","listen_ports":[[80,4480]]}}}}"#,
    );
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("listen_ports"));
}

#[test]
fn syntax_errors_say_which_format() {
    assert!(err("{").contains("not valid JSON"));
    let e = parse("feature: [", Format::Yaml).unwrap_err().to_string();
    assert!(e.contains("not valid YAML"), "{e}");
}

#[test]
fn load_picks_format_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.yaml");
    std::fs::write(&p, "feature:\n  network:\n    incoming: steal\n").unwrap();
    assert_eq!(load(&p).unwrap().incoming.mode, Some(Mode::Steal));
    let p = dir.path().join("m.conf");
    std::fs::write(&p, "feature:\n  network:\n    incoming: mirror\n").unwrap();
    assert_eq!(load(&p).unwrap().incoming.mode, Some(Mode::Mirror));
    let e = load(&dir.path().join("nope.json")).unwrap_err().to_string();
    assert!(e.contains("cannot read the mirrord config"), "{e}");
}

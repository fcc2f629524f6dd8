use clap::Parser;

use super::*;
use crate::mirrord_config::{Format, parse};

fn args(flags: &[&str]) -> Args {
    let mut v = vec!["kubectl-steal", "deploy/web", "--client", "t"];
    v.extend_from_slice(flags);
    Args::try_parse_from(v).unwrap()
}

fn settings(flags: &[&str], file: Option<&str>) -> Settings {
    let file = file.map(|f| {
        let format = if f.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        };
        parse(f, format).unwrap()
    });
    resolve(&args(flags), file).unwrap()
}

#[test]
fn filter_flags_combine_all_of_by_default() {
    let f = flag_filter(&args(&[
        "--header", "a", "--path", "^/b", "--method", "post",
    ]))
    .unwrap();
    assert_eq!(
        f,
        Some(HttpFilter::AllOf(vec![
            HttpFilter::Header("a".into()),
            HttpFilter::Path("^/b".into()),
            HttpFilter::Method("POST".into()),
        ]))
    );
}

#[test]
fn any_makes_it_any_of() {
    let f = flag_filter(&args(&["--header", "a", "--header", "b", "--any"])).unwrap();
    assert_eq!(
        f,
        Some(HttpFilter::AnyOf(vec![
            HttpFilter::Header("a".into()),
            HttpFilter::Header("b".into()),
        ]))
    );
}

#[test]
fn one_flag_is_sent_alone_and_none_is_the_whole_port() {
    assert_eq!(
        flag_filter(&args(&["--path", "^/x"])).unwrap(),
        Some(HttpFilter::Path("^/x".into()))
    );
    assert_eq!(flag_filter(&args(&[])).unwrap(), None);
    let s = settings(&["--port", "443", "--any"], None);
    assert_eq!(s.registration.filter, None);
    assert!(s.warnings[0].contains("--any has no effect"));
}

#[test]
fn bad_flags_are_explained() {
    let e = resolve(&args(&["--port", "443", "--header", "x-("]), None).unwrap_err();
    assert!(
        e.to_string().starts_with("--header \"x-(\": invalid regex"),
        "{e}"
    );
    let e = resolve(&args(&["--port", "1", "--to", "a:b"]), None).unwrap_err();
    assert!(matches!(e, SettingsError::BadTo(_)), "{e}");
    let e = resolve(&args(&["--port", "1", "--method", "GE T"]), None).unwrap_err();
    assert!(matches!(e, SettingsError::BadMethod(_)), "{e}");
    let e = resolve(&args(&["--port", "0"]), None).unwrap_err();
    assert!(matches!(e, SettingsError::ZeroPort), "{e}");
}

#[test]
fn no_port_anywhere_means_every_port_of_the_plan() {
    let s = settings(&["--header", "a"], None);
    assert!(s.registration.ports.is_empty());
    assert_eq!(s.registration.mode, Mode::Steal, "no file: steal");
}

#[test]
fn local_addr_spellings() {
    let p = |s: &str| s.parse::<LocalAddr>().map(|a| a.to_string());
    assert_eq!(p("8443").unwrap(), "127.0.0.1:8443");
    assert_eq!(p("localhost:8443").unwrap(), "localhost:8443");
    assert_eq!(p("[::1]:8443").unwrap(), "[::1]:8443");
    assert!(p("localhost").is_err());
    assert!(p(":80").is_err());
    assert!(p("x:0").is_err());
}

const JSON: &str = r#"{"feature": {"network": {"incoming": {
        "mode": "mirror",
        "http_filter": {"all_of": [{"header": "^x-steal: yes$"}, {"path": "^/api"}]},
        "ports": [443],
        "tls_delivery": {"protocol": "tls", "server_name": "app.local", "trust_roots": ["/r1.pem", "/r2.pem"]}
    }}}}"#;

const YAML: &str = "
feature:
  network:
    incoming:
      mode: mirror
      http_filter:
        all_of:
          - header: '^x-steal: yes$'
          - path: ^/api
      ports: [443]
      tls_delivery:
        protocol: tls
        server_name: app.local
        trust_roots: [/r1.pem, /r2.pem]
";

const FLAGS: &[&str] = &[
    "--mode",
    "mirror",
    "--header",
    "^x-steal: yes$",
    "--path",
    "^/api",
    "--port",
    "443",
    "--delivery",
    "tls",
    "--server-name",
    "app.local",
    "--trust-root",
    "/r1.pem",
    "--trust-root",
    "/r2.pem",
];

#[test]
fn config_file_equals_the_equivalent_flags() {
    let from_flags = settings(FLAGS, None);
    assert_eq!(settings(&[], Some(JSON)), from_flags);
    assert_eq!(settings(&[], Some(YAML)), from_flags);
    assert_eq!(from_flags.registration.mode, Mode::Mirror);
    assert_eq!(from_flags.delivery.trust_roots.len(), 2);
}

#[test]
fn any_of_config_equals_any_flag() {
    let file = r#"{"feature":{"network":{"incoming":{"mode":"steal","http_filter":{"any_of":[{"header":"a"},{"method":"GET"}]},"ports":[8443],"tls_delivery":{"protocol":"tcp"}}}}}"#;
    let flags = settings(
        &[
            "--header",
            "a",
            "--method",
            "GET",
            "--any",
            "--port",
            "8443",
            "--delivery",
            "tcp",
        ],
        None,
    );
    assert_eq!(settings(&[], Some(file)), flags);
}

#[test]
fn http_filter_ports_say_where_the_filter_applies() {
    let file = r#"{"feature":{"network":{"incoming":{"mode":"steal","http_filter":{"header_filter":"a","ports":[443]}}}}}"#;
    let s = settings(&[], Some(file));
    assert!(s.registration.ports.is_empty(), "every port of the plan");
    assert_eq!(s.registration.filter_ports, Some(vec![443]));
    // Filter flags replace the filter; where it applies stays the file's.
    let s = settings(
        &["--path", "^/x", "--port", "443", "--port", "80"],
        Some(file),
    );
    assert_eq!(s.registration.filter, Some(HttpFilter::Path("^/x".into())));
    assert_eq!(s.registration.filter_ports, Some(vec![443]));
    let s = settings(&["--port", "80"], Some(file));
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("port(s) 443 that are not stolen")),
        "{:?}",
        s.warnings
    );
    let no_filter =
        r#"{"feature":{"network":{"incoming":{"mode":"steal","http_filter":{"ports":[443]}}}}}"#;
    let s = settings(&[], Some(no_filter));
    assert_eq!(s.registration.filter_ports, None);
    assert!(
        s.warnings[0].contains("no effect without a filter"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn a_file_without_mode_mirrors_as_mirrord_does() {
    let s = settings(&[], Some(r#"{"target":"deploy/web"}"#));
    assert_eq!(s.registration.mode, Mode::Mirror);
    assert!(s.notes[0].contains("mirrord's default"), "{:?}", s.notes);
    let s = settings(&["--mode", "steal"], Some(r#"{"target":"deploy/web"}"#));
    assert_eq!(s.registration.mode, Mode::Steal);
    assert!(s.notes.is_empty());
}

#[test]
fn delivery_settings_are_checked_as_mirrord_checks_them() {
    let bad = |flags: &[&str], file: Option<&str>| {
        let file = file.map(|f| parse(f, Format::Json).unwrap());
        resolve(&args(flags), file).unwrap_err().to_string()
    };
    let d = |inner: &str| {
        format!(
            r#"{{"feature":{{"network":{{"incoming":{{"mode":"steal","tls_delivery":{inner}}}}}}}}}"#
        )
    };
    let e = bad(&[], Some(&d(r#"{"trust_roots":[]}"#)));
    assert_eq!(
        e,
        "feature.network.incoming.tls_delivery.trust_roots: cannot be an empty list"
    );
    let e = bad(
        &[],
        Some(&d(r#"{"trust_roots":["/r"],"server_cert":"/c"}"#)),
    );
    assert!(
            e.starts_with("feature.network.incoming.tls_delivery.server_cert and feature.network.incoming.tls_delivery.trust_roots cannot be used together"),
            "{e}"
        );
    let e = bad(
        &["--server-cert", "/c"],
        Some(&d(r#"{"trust_roots":["/r"]}"#)),
    );
    assert!(
        e.starts_with("--server-cert and feature.network.incoming.tls_delivery.trust_roots"),
        "{e}"
    );
    let e = bad(&["--server-cert", "/c", "--trust-root", "/r"], None);
    assert!(
        e.starts_with("--server-cert and --trust-root cannot be used together"),
        "{e}"
    );
    let e = bad(&[], Some(&d(r#"{"server_name":"not a name"}"#)));
    assert_eq!(
        e,
        "feature.network.incoming.tls_delivery.server_name \"not a name\": must be a valid DNS name or an IP address"
    );
    let e = bad(&["--server-name", "a b"], None);
    assert!(e.starts_with("--server-name \"a b\""), "{e}");
    // The deprecated name is named in its own errors.
    let e = bad(
        &[],
        Some(r#"{"feature":{"network":{"incoming":{"https_delivery":{"trust_roots":[]}}}}}"#),
    );
    assert!(
        e.starts_with("feature.network.incoming.https_delivery.trust_roots"),
        "{e}"
    );
    // With tcp, mirrord ignores the TLS settings; so does kubectl-steal (with a warning).
    let s = settings(
        &[],
        Some(&d(
            r#"{"protocol":"tcp","trust_roots":[],"server_name":"a b"}"#,
        )),
    );
    assert_eq!(s.delivery.protocol, DeliveryProtocol::Tcp);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("ignored with --delivery tcp"))
    );
    let s = settings(&["--server-name", "10.0.0.1"], None);
    assert_eq!(s.delivery.server_name.as_deref(), Some("10.0.0.1"));
}

#[test]
fn flags_override_the_file() {
    let s = settings(
        &[
            "--header",
            "other",
            "--port",
            "8443",
            "--delivery",
            "tcp",
            "--mode",
            "steal",
            "--to",
            "9000",
        ],
        Some(JSON),
    );
    assert_eq!(
        s.registration.filter,
        Some(HttpFilter::Header("other".into()))
    );
    assert_eq!(s.registration.ports, [8443]);
    assert_eq!(s.registration.mode, Mode::Steal);
    assert_eq!(s.delivery.protocol, DeliveryProtocol::Tcp);
    assert_eq!(s.delivery.to.unwrap().to_string(), "127.0.0.1:9000");
    // Not overridden: kept from the file.
    assert_eq!(s.delivery.server_name.as_deref(), Some("app.local"));
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("ignored with --delivery tcp"))
    );
}

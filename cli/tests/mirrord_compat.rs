//! mirrord compatibility: mirrord config files, loaded by `kubectl-steal -f`, run against the real
//! sidecar (`--connect`), select the requests mirrord would. The sidecar captures two ports of
//! two real apps (`--orig-dst-for` maps a listener to each app, as iptables would); every case
//! sends requests to both and asserts which ones the local app answered.
//!
//! Config handling (refused files, the file's target, the seed example) is in
//! `mirrord_config.rs`; the pod is in `mirrord_pod/`.

mod common;
mod mirrord_pod;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::StreamBody;
use hyper::body::Frame;
use mirrord_pod::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_kind_and_composite_steals_what_mirrord_would() {
    let pod = pod().await;
    let local = App::start("local", None).await;
    let to = local.addr.to_string();
    let json_42 = r#"{"user": {"id": 42, "name": "Ada"}}"#;
    let json_7 = r#"{"user": {"id": 7}}"#;
    let body_filter = r#"{"body": "json", "query": "$.user.id", "matches": "^42$"}"#;
    let tcp = r#""tls_delivery": {"protocol": "tcp"}"#;
    let table: Vec<(&str, String, Vec<Case<'_>>)> = vec![
        (
            "header_filter, no ports: every port of the plan, filtered",
            incoming(&format!(
                r#"{{"mode": "steal", "http_filter": {{"header_filter": "^x-steal: yes$"}}, {tcp}}}"#
            )),
            vec![
                case(A, "GET", "/h", true).headers(STEAL_HDR),
                case(A, "GET", "/h", false),
                case(B, "GET", "/h", true).headers(STEAL_HDR),
                case(B, "GET", "/h", false).headers(&[("x-steal", "no")]),
            ],
        ),
        (
            "path_filter, case-insensitive, path or path?query",
            incoming(&format!(
                r#"{{"mode": "steal", "http_filter": {{"path_filter": "^/api/|debug=1$"}}, {tcp}}}"#
            )),
            vec![
                case(A, "GET", "/api/users", true),
                case(A, "GET", "/API/Users", true),
                case(B, "GET", "/x?debug=1", true),
                case(A, "GET", "/apis", false),
            ],
        ),
        (
            "method_filter",
            incoming(&format!(
                r#"{{"mode": "steal", "http_filter": {{"method_filter": "post"}}, {tcp}}}"#
            )),
            vec![case(A, "POST", "/m", true), case(A, "GET", "/m", false)],
        ),
        (
            "body_filter",
            incoming(&format!(
                r#"{{"mode": "steal", "http_filter": {{"body_filter": {body_filter}}}, {tcp}}}"#
            )),
            vec![
                case(A, "POST", "/b", true).body(json_42),
                case(B, "PUT", "/b", true).body(json_42),
                case(A, "POST", "/b", false).body(json_7),
                case(A, "POST", "/b", false).body("user.id=42"),
                case(A, "GET", "/b", false),
            ],
        ),
        (
            "all_of: header and body",
            incoming(&format!(
                r#"{{"mode": "steal", "http_filter": {{"all_of": [{{"header": "^x-steal: yes$"}}, {body_filter}]}}, {tcp}}}"#
            )),
            vec![
                case(A, "POST", "/c", true).headers(STEAL_HDR).body(json_42),
                case(A, "POST", "/c", false).headers(STEAL_HDR).body(json_7),
                case(A, "POST", "/c", false).body(json_42),
            ],
        ),
        (
            "any_of: path, method or body",
            incoming(&format!(
                r#"{{"mode": "steal", "http_filter": {{"any_of": [{{"path": "^/admin"}}, {{"method": "DELETE"}}, {body_filter}]}}, {tcp}}}"#
            )),
            vec![
                case(A, "GET", "/admin/x", true),
                case(B, "DELETE", "/y", true),
                case(A, "POST", "/y", true).body(json_42),
                case(A, "POST", "/y", false).body(json_7),
            ],
        ),
        (
            "ports: only the ports named are stolen",
            incoming(&format!(
                r#"{{"mode": "steal", "ports": [{}], "http_filter": {{"header_filter": "^x-steal: yes$"}}, {tcp}}}"#,
                pod.ports[A]
            )),
            vec![
                case(A, "GET", "/p", true).headers(STEAL_HDR),
                case(B, "GET", "/p", false).headers(STEAL_HDR),
            ],
        ),
        (
            "http_filter.ports: the filter applies there, the other ports are stolen whole",
            incoming(&format!(
                r#"{{"mode": "steal", "http_filter": {{"header_filter": "^x-steal: yes$", "ports": [{}]}}, {tcp}}}"#,
                pod.ports[A]
            )),
            vec![
                case(A, "GET", "/f", true).headers(STEAL_HDR),
                case(A, "GET", "/f", false),
                case(B, "GET", "/f", true),
            ],
        ),
        (
            "http_filter.ports as one number, with ports",
            incoming(&format!(
                r#"{{"mode": "steal", "ports": [{a}, {b}], "http_filter": {{"method_filter": "POST", "ports": {b}}}, {tcp}}}"#,
                a = pod.ports[A],
                b = pod.ports[B]
            )),
            vec![
                case(A, "GET", "/g", true),
                case(B, "GET", "/g", false),
                case(B, "POST", "/g", true),
            ],
        ),
        (
            "no filter, no ports: every request of every port",
            incoming(&format!(r#"{{"mode": "steal", {tcp}}}"#)),
            vec![
                case(A, "GET", "/w", true),
                case(B, "POST", "/w", true).body("x"),
            ],
        ),
        (
            "shorthand \"steal\" (delivery by --delivery)",
            incoming(r#""steal""#),
            vec![case(B, "GET", "/s", true)],
        ),
    ];
    for (label, text, cases) in &table {
        let extra: &[&str] = if label.starts_with("shorthand") {
            &["--to", &to, "--delivery", "tcp"]
        } else {
            &["--to", &to]
        };
        let steal = pod.steal(text, extra).await;
        check(&pod, label, cases).await;
        pod.stop(steal).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_says_which_ports_and_what_each_takes() {
    let pod = pod().await;
    let local = App::start("local", None).await;
    let to = local.addr.to_string();
    let text = incoming(&format!(
        r#"{{"mode": "steal", "http_filter": {{"header_filter": "^x-steal: yes$", "ports": [{}]}}, "tls_delivery": {{"protocol": "tcp"}}}}"#,
        pod.ports[A]
    ));
    let mut steal = pod.steal(&text, &["--to", &to]).await;
    let line = steal.wait_for("registered").await;
    let (a, b) = (pod.ports[A], pod.ports[B]);
    assert!(
        line.contains(&format!("port {a}: header ~ \"^x-steal: yes$\"; port {b}: every request (every port of the pod's steal plan)")),
        "{line}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&plain_get(pod.api, "/v1/status").await).unwrap();
    let s = &status["sessions"][0];
    assert_eq!(s["ports"], serde_json::json!([a.min(b), a.max(b)]));
    assert_eq!(s["filter_ports"], serde_json::json!([a]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_reach_whoever_answers_unchanged_and_unusable_ones_are_counted() {
    let pod = pod().await;
    let local = App::start("local", None).await;
    let to = local.addr.to_string();
    let text = incoming(
        r#"{"mode": "steal", "http_filter": {"body_filter": {"body": "json", "query": "$.items[*].sku", "matches": "^S-"}}, "tls_delivery": {"protocol": "tcp"}}"#,
    );
    let _steal = pod.steal(&text, &["--to", &to]).await;
    let stolen = r#"{"items": [{"sku": "A-1"}, {"sku": "S-2"}]}"#;
    let a = send(pod.listen[A], "POST", "/echo", &[], stolen).await;
    assert_eq!(
        (a.headers["x-app"].to_str().unwrap(), a.body.as_str()),
        ("local", stolen)
    );
    let kept = r#"{"items": [{"sku": "A-1"}]}"#;
    let a = send(pod.listen[A], "POST", "/echo", &[], kept).await;
    assert_eq!(
        (a.headers["x-app"].to_str().unwrap(), a.body.as_str()),
        ("real-a", kept)
    );

    // Over the 64 KiB default: not read further, not stolen, passed on whole.
    let big = format!(
        r#"{{"items": [{{"sku": "S-1"}}], "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let a = send(pod.listen[A], "POST", "/echo", &[], &big).await;
    assert_eq!(a.headers["x-app"], "real-a");
    assert_eq!(a.body.len(), big.len());
    assert!(a.body == big, "the body arrives unchanged");
    // Not JSON: not stolen, passed on.
    let a = send(pod.listen[B], "POST", "/echo", &[], "sku=S-1").await;
    assert_eq!(
        (a.headers["x-app"].to_str().unwrap(), a.body.as_str()),
        ("real-b", "sku=S-1")
    );

    // Slower than the 1 s default: not stolen; the bytes sent before and after pass on.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut s = h1_handshake(tls_to(pod.listen[A], false).await).await;
    let req = Request::post("/echo")
        .header("host", "app.test")
        .body(StreamBody::new(Box::pin(stream)))
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(
        b"{\"items\": [{\"sku\": ",
    ))))
    .await
    .unwrap();
    let pending = tokio::spawn(async move { s.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"\"S-9\"}]}"))))
        .await
        .unwrap();
    drop(tx);
    let a = collect(pending.await.unwrap().unwrap()).await;
    assert_eq!(a.headers["x-app"], "real-a");
    assert_eq!(a.body, r#"{"items": [{"sku": "S-9"}]}"#);

    let m = pod.metrics().await;
    let (pa, pb) = (pod.ports[A], pod.ports[B]);
    for (port, reason) in [(pa, "too_large"), (pb, "not_json"), (pa, "timeout")] {
        let line = format!(
            "tls_steal_session_body_unusable_total{{port=\"{port}\",reason=\"{reason}\"}} 1"
        );
        assert!(m.contains(&line), "{line} missing in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catastrophic_regex_counts_as_no_match_and_is_counted() {
    let pod = pod().await;
    let local = App::start("local", None).await;
    let to = local.addr.to_string();
    // A backreference keeps the regex on the backtracking engine; on a long run of `a`s it
    // would take exponential time. It hits the limit, the request goes to the app.
    let text = incoming(
        r#"{"mode": "steal", "http_filter": {"header_filter": "^x-slow: (a|aa)+\\1b"}, "tls_delivery": {"protocol": "tcp"}}"#,
    );
    let _steal = pod.steal(&text, &["--to", &to]).await;
    let long = "a".repeat(64);
    let a = send(pod.listen[A], "GET", "/r", &[("x-slow", &long)], "").await;
    assert_eq!(a.headers["x-app"], "real-a");
    let a = send(pod.listen[A], "GET", "/r", &[("x-slow", "aab")], "").await;
    assert_eq!(
        a.headers["x-app"], "local",
        "the regex still works where it can"
    );
    let m = pod.metrics().await;
    let line = format!(
        "tls_steal_session_filter_regex_limit_total{{port=\"{}\"}} 1",
        pod.ports[A]
    );
    assert!(m.contains(&line), "{line} missing in\n{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_mode_mirrors_as_mirrord_does() {
    let pod = pod().await;
    let local = App::start("local", None).await;
    let to = local.addr.to_string();
    let text = incoming(
        r#"{"http_filter": {"header_filter": "^x-steal: yes$"}, "tls_delivery": {"protocol": "tcp"}}"#,
    );
    let mut steal = pod.steal(&text, &["--to", &to]).await;
    check(
        &pod,
        "mirror",
        &[case(A, "GET", "/copy", false).headers(STEAL_HDR)],
    )
    .await;
    let line = steal.wait_for("GET /copy").await;
    assert!(line.contains("mirrored"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_settings_as_mirrord_defines_them() {
    let pod = pod().await;
    let local = App::start("local", Some(pod.certs.server.clone())).await;
    let to = local.addr.to_string();
    let cert = pod.certs.cert_pem.display().to_string();
    // tls_delivery with the local app's certificate as trust anchor; the server name comes
    // from its first SAN (app.test).
    let text = incoming(&format!(
        r#"{{"mode": "steal", "http_filter": {{"header_filter": "^x-steal: yes$"}}, "tls_delivery": {{"protocol": "tls", "server_cert": "{cert}"}}}}"#
    ));
    let steal = pod.steal(&text, &["--to", &to]).await;
    check(
        &pod,
        "server_cert",
        &[case(A, "GET", "/t", true).headers(STEAL_HDR)],
    )
    .await;
    pod.stop(steal).await;

    // Another certificate: the local app's does not verify against it.
    let other = certs();
    let text = incoming(&format!(
        r#"{{"mode": "steal", "http_filter": {{"header_filter": "^x-steal: yes$"}}, "tls_delivery": {{"server_cert": "{}"}}}}"#,
        other.cert_pem.display()
    ));
    let steal = pod.steal(&text, &["--to", &to]).await;
    let a = send(pod.listen[A], "GET", "/t", STEAL_HDR, "").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert!(a.body.contains("server_cert"), "{}", a.body);
    pod.stop(steal).await;

    // trust_roots holding the certificate, and server_name: verified by name too.
    let text = incoming(&format!(
        r#"{{"mode": "steal", "http_filter": {{"header_filter": "^x-steal: yes$"}}, "tls_delivery": {{"trust_roots": ["{cert}"], "server_name": "localhost"}}}}"#
    ));
    let steal = pod.steal(&text, &["--to", &to]).await;
    check(
        &pod,
        "trust_roots",
        &[case(B, "GET", "/t", true).headers(STEAL_HDR)],
    )
    .await;
    pod.stop(steal).await;

    // The deprecated name still works (plain TCP to a plain local app).
    let plain = App::start("local", None).await;
    let plain_to = plain.addr.to_string();
    let text = incoming(
        r#"{"mode": "steal", "http_filter": {"header_filter": "^x-steal: yes$"}, "https_delivery": {"protocol": "tcp"}}"#,
    );
    let steal = pod.steal(&text, &["--to", &plain_to]).await;
    check(
        &pod,
        "https_delivery",
        &[case(A, "GET", "/d", true).headers(STEAL_HDR)],
    )
    .await;
    pod.stop(steal).await;
}

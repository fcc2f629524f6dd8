//! mirrord compatibility: mirrord config files, loaded by `kubectl-steal -f`, run against the real
//! sidecar (`--connect`), select the requests mirrord would. The sidecar captures two ports of
//! two real apps (`--orig-dst-for` maps a listener to each app, as iptables would); every case
//! sends requests to both and asserts which ones the local app answered.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::process::Child;

/// The pod: two apps behind one sidecar.
struct Pod {
    certs: Certs,
    _apps: [App; 2],
    /// The apps' ports (the plan's ports).
    ports: [u16; 2],
    /// Where to connect to reach each port through the proxy.
    listen: [SocketAddr; 2],
    admin: SocketAddr,
    api: SocketAddr,
    _child: Child,
    _dir: tempfile::TempDir,
}

const A: usize = 0;
const B: usize = 1;

async fn pod() -> Pod {
    pod_with(&[]).await
}

async fn pod_with(extra: &[&str]) -> Pod {
    let certs = certs();
    let apps = [
        App::start("real-a", Some(certs.server.clone())).await,
        App::start("real-b", Some(certs.server.clone())).await,
    ];
    let ports = [apps[0].addr.port(), apps[1].addr.port()];
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, plan_json_ports(&ports, &certs)).unwrap();
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    for attempt in 1.. {
        let (listen, admin, api) = ([addr(), addr()], addr(), addr());
        let routes = [(listen[0], apps[0].addr), (listen[1], apps[1].addr)];
        match spawn_sidecar_routes(&plan, &routes, admin, api, extra).await {
            Ok(child) => {
                return Pod {
                    certs,
                    _apps: apps,
                    ports,
                    listen,
                    admin,
                    api,
                    _child: child,
                    _dir: dir,
                };
            }
            Err(why) => {
                assert!(attempt < 5, "the sidecar did not come up: {why}");
                eprintln!("the sidecar did not come up ({why}); again on other ports");
            }
        }
    }
    unreachable!()
}

impl Pod {
    fn config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.certs.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `kubectl-steal --connect` with the config `text` (and `args`), once registered.
    async fn steal(&self, text: &str, args: &[&str]) -> Steal {
        let file = self.config("mirrord.json", text);
        let api = self.api.to_string();
        let file = file.display().to_string();
        let mut all = vec!["--connect", &api, "-f", &file];
        all.extend_from_slice(args);
        let mut s = Steal::spawn(&all, &[]);
        s.wait_for("registered").await;
        s
    }

    /// Ends `steal` and waits until the sidecar has no session left.
    async fn stop(&self, mut steal: Steal) {
        steal.child.kill().await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while sessions(self.api).await != 0 {
            assert!(tokio::time::Instant::now() < deadline, "the session stays");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self) -> String {
        plain_get(self.admin, "/metrics").await
    }
}

/// A plain HTTP/1.1 GET; the body.
async fn plain_get(addr: SocketAddr, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "127.0.0.1")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    collect(send.send_request(req).await.unwrap()).await.body
}

async fn sessions(api: SocketAddr) -> usize {
    let status: serde_json::Value =
        serde_json::from_str(&plain_get(api, "/v1/status").await).unwrap_or_default();
    status["sessions"].as_array().map_or(usize::MAX, Vec::len)
}

/// One request through the proxy (HTTP/1.1 over TLS).
async fn send(
    proxy: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let io = TokioIo::new(tls_to(proxy, false).await);
    let (mut s, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = tokio::time::timeout(WAIT, s.send_request(req))
        .await
        .expect("an answer in time")
        .unwrap();
    collect(resp).await
}

/// A request and who must answer it.
struct Case<'a> {
    port: usize,
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a str,
    stolen: bool,
}

fn case<'a>(port: usize, method: &'a str, path: &'a str, stolen: bool) -> Case<'a> {
    Case {
        port,
        method,
        path,
        headers: &[],
        body: "",
        stolen,
    }
}

impl<'a> Case<'a> {
    fn headers(self, headers: &'a [(&'a str, &'a str)]) -> Self {
        Case { headers, ..self }
    }
    fn body(self, body: &'a str) -> Self {
        Case { body, ..self }
    }
}

async fn check(pod: &Pod, label: &str, cases: &[Case<'_>]) {
    for c in cases {
        let a = send(pod.listen[c.port], c.method, c.path, c.headers, c.body).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{label}: {} {}: {}",
            c.method,
            c.path,
            a.body
        );
        let who = a.headers["x-app"].to_str().unwrap().to_owned();
        let want = match (c.stolen, c.port) {
            (true, _) => "local",
            (false, A) => "real-a",
            (false, _) => "real-b",
        };
        assert_eq!(
            who, want,
            "{label}: {} {} on port {} (headers {:?}, body {:?})",
            c.method, c.path, pod.ports[c.port], c.headers, c.body
        );
    }
}

const STEAL_HDR: &[(&str, &str)] = &[("x-steal", "yes")];

fn incoming(section: &str) -> String {
    format!(r#"{{"feature": {{"network": {{"incoming": {section}}}}}}}"#)
}

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
    let io = TokioIo::new(tls_to(pod.listen[A], false).await);
    let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
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

/// Runs `kubectl-steal -f FILE ARGS` to its end; (exit success, stdout + stderr).
async fn run_to_end(file: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-steal"))
            .arg("-f")
            .arg(file)
            .args(args)
            .env("KUBECONFIG", "/nonexistent")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("kubectl-steal ends")
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_session_starts() {
    let pod = pod().await;
    let api = pod.api.to_string();
    let not_a_cert = pod.certs.dir.join("not-a-cert.pem");
    std::fs::write(&not_a_cert, "hello, I am not a certificate\n").unwrap();
    let cert = pod.certs.cert_pem.display().to_string();
    let filter = r#""http_filter": {"header_filter": "a"}"#;
    let cases = [
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"server_cert": "{}"}}}}"#, not_a_cert.display())),
            format!("{} holds no PEM certificate", not_a_cert.display()),
        ),
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"server_name": "not a name"}}}}"#)),
            "feature.network.incoming.tls_delivery.server_name \"not a name\": must be a valid DNS name or an IP address".into(),
        ),
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"trust_roots": []}}}}"#)),
            "feature.network.incoming.tls_delivery.trust_roots: cannot be an empty list".into(),
        ),
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"trust_roots": ["{cert}"], "server_cert": "{cert}"}}}}"#)),
            "feature.network.incoming.tls_delivery.server_cert and feature.network.incoming.tls_delivery.trust_roots cannot be used together".into(),
        ),
        (
            incoming(r#"{"mode": "steal", "http_filter": {"body_filter": {"body": "json", "query": "$.items[", "matches": "x"}}}"#),
            "feature.network.incoming.http_filter.body_filter: invalid JSONPath query \"$.items[\"".into(),
        ),
        (
            incoming(r#"{"mode": "steal", "http_filter": {"any_of": [{"body": "json", "query": "items", "matches": "x"}]}}"#),
            "feature.network.incoming.http_filter.any_of[0]: invalid JSONPath query \"items\"".into(),
        ),
        (
            incoming(r#"{"mode": "steal", "tls_delivery": {}, "https_delivery": {}}"#),
            "both `https_delivery` and `tls_delivery` are set".into(),
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = pod.config(&format!("bad-{i}.json"), text);
        let (ok, out) = run_to_end(&file, &["--connect", &api]).await;
        assert!(!ok, "{text} was accepted:\n{out}");
        assert!(
            out.contains(want.as_str()),
            "{text}\n  printed {out}\n  want {want}"
        );
        assert!(!out.contains("registered"), "{out}");
    }
    assert_eq!(sessions(pod.api).await, 0);

    // The deprecated name is named in a warning.
    let file = pod.config(
        "alias.json",
        &incoming(r#"{"mode": "steal", "https_delivery": {"protocol": "tcp"}}"#),
    );
    let (_, out) = run_to_end(&file, &[]).await;
    assert!(
        out.contains("warning: feature.network.incoming.https_delivery is deprecated; use feature.network.incoming.tls_delivery instead"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_target_is_used_when_the_command_line_has_none() {
    let pod = pod().await;
    let file = pod.config(
        "target.json",
        r#"{"target": {"path": {"deployment": "web", "container": "app"}, "namespace": "shop"}, "feature": {"network": {"incoming": "steal"}}}"#,
    );
    // No cluster here: the run gets as far as loading the kubeconfig for the file's target.
    let (ok, out) = run_to_end(&file, &[]).await;
    assert!(!ok);
    assert!(out.contains("cannot load the kubeconfig"), "{out}");
    assert!(!out.contains("which workload"), "{out}");
    // Nothing anywhere: asked for.
    let file = pod.config("no-target.json", &incoming(r#""steal""#));
    let (_, out) = run_to_end(&file, &[]).await;
    assert!(out.contains("which workload?"), "{out}");
}

/// The feature description's own example resource (`e2e/fixtures/seed-tls-steal-config.yaml`),
/// with only its `/path/to/` prefix pointed at generated PEM files: merged into a plan for a
/// pod of `deploy/example-deploy`, served by the real proxy on port 443 with mutual TLS on both
/// sides, and stolen from by a mirrord config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_serves_and_a_mirrord_config_steals_through_it() {
    use rustls_pki_types::ServerName;
    use tls_steal_crds::{ConfigSource, MirrordTlsStealConfig, PodTarget, build_plan};
    use tls_steal_test_support::pki::write_in;
    use tls_steal_test_support::client::h1_handshake;
    use tls_steal_test_support::{Ca, ClientOpts, ServerTls, tls_connect};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        write_in(root, rel, text);
    };
    let (server_ca, client_ca) = (Ca::root("server roots"), Ca::root("client roots"));
    let server = server_ca.issue().dns(&["app.test"]).build();
    let proxy_client = client_ca.issue().dns(&["proxy.test"]).build();
    let user = client_ca.issue().dns(&["user.test"]).build();
    write("server/cert.pem", &server.cert_pem);
    write("server/key.pem", &server.key_pem);
    write("trusted/client/root/cert.pem", &client_ca.pem());
    write("client/cert.pem", &proxy_client.cert_pem);
    write("client/key.pem", &proxy_client.key_pem);
    write("trusted/server/root/cert.pem", &server_ca.pem());

    let seed =
        std::fs::read_to_string(workspace_root().join("e2e/fixtures/seed-tls-steal-config.yaml"))
            .unwrap()
            .replace("/path/to/", &format!("{}/", root.display()));
    let config: MirrordTlsStealConfig = serde_saphyr::from_str(&seed).unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "example-deploy-6d4cf56db6-x2x9z", "namespace": "example-deploy-namespace",
            "labels": {"app": "example-deploy", "pod-template-hash": "6d4cf56db6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "example-deploy-6d4cf56db6", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443}]}]}
    }))
    .unwrap();
    let plan = build_plan(
        &PodTarget::from_pod(&pod),
        "example-deploy-namespace",
        &[ConfigSource::from(&config)],
    );
    assert_eq!(plan.port_numbers(), [443]);

    // The app, on port 443 of a loopback address of its own; it wants a client certificate
    // from the client roots (the proxy's, per agentAsClient.authentication).
    let app_tls = ServerTls::new(vec![server.cert_der.clone()], server.key())
        .alpn(&["h2", "http/1.1"])
        .client_roots(vec![client_ca.der()])
        .require_client_cert()
        .build();
    let n = std::process::id();
    let ip = format!(
        "127.{}.{}.{}",
        10 + n % 200,
        (n / 200) % 250,
        1 + (n / 50_000) % 250
    );
    let listener = tokio::net::TcpListener::bind(format!("{ip}:443"))
        .await
        .expect("binding port 443 on loopback (needs root, as the tests run)");
    let app = App::start_on(listener, "real", Some(app_tls));

    let plan_file = root.join("plan.json");
    std::fs::write(&plan_file, plan.to_json()).unwrap();
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (listen, admin, api) = (addr(), addr(), addr());
    let _sidecar = spawn_sidecar_routes(&plan_file, &[(listen, app.addr)], admin, api, &[])
        .await
        .unwrap();

    let local = App::start("local", None).await;
    let mirrord = root.join("mirrord.yaml");
    std::fs::write(
        &mirrord,
        "target:\n  path: deployment/example-deploy\n  namespace: example-deploy-namespace\nfeature:\n  network:\n    incoming:\n      mode: steal\n      http_filter:\n        header_filter: '^x-steal: yes$'\n      tls_delivery:\n        protocol: tcp\n",
    )
    .unwrap();
    let (api_s, mirrord_s, to) = (
        api.to_string(),
        mirrord.display().to_string(),
        local.addr.to_string(),
    );
    let mut steal = Steal::spawn(&["--connect", &api_s, "-f", &mirrord_s, "--to", &to], &[]);
    let line = steal.wait_for("registered").await;
    assert!(line.contains("port 443: header"), "{line}");

    // A client with a certificate from the client roots, verifying the app's name and roots.
    let client = ClientOpts::trusting(vec![server_ca.der()], "app.test", &[]).with_cert(&user);
    for (headers, want) in [(STEAL_HDR, "local"), (&[][..], "real")] {
        let tls = tls_connect(listen, &client).await.unwrap();
        let mut s = h1_handshake::<Full<Bytes>, _>(tls).await;
        let mut req = Request::get("/seed").header("host", "app.test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let a = collect(
            s.send_request(req.body(Full::new(Bytes::new())).unwrap())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (a.status, a.headers["x-app"].to_str().unwrap()),
            (StatusCode::OK, want),
            "{}",
            a.body
        );
    }
    // Without a client certificate the proxy refuses the handshake (allowAnonymous: false).
    let anonymous = kubectl_steal::tls::TlsClients::new(&[], None).unwrap().h1;
    let refused = tokio::time::timeout(WAIT, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(listen).await?;
        let mut tls = tokio_rustls::TlsConnector::from(anonymous)
            .connect(ServerName::try_from("app.test").unwrap(), tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    })
    .await
    .expect("the proxy answers or closes");
    assert!(
        !matches!(refused, Ok(n) if n > 0),
        "an anonymous client got an answer"
    );
}

//! The app's own probes, run by the proxy for the kubelet (`/app-health/<container>/<kind>` on
//! the admin port): real HTTPS and plain HTTP apps on loopback (the "pod IP" is 127.0.0.1), a
//! closed port, a slow answer, and what the app sees of the probe.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::Request;
use http_body_util::BodyExt;
use tls_steal_crds::probe::{
    AppProbe, AppProbes, ProbeAction, ProbeHeader, ProbeKind, ProbeScheme, app_health_path,
    probe_key,
};
use tokio::net::TcpStream;

fn http_get(port: u16, scheme: ProbeScheme, path: &str, headers: &[(&str, &str)]) -> AppProbe {
    AppProbe {
        action: ProbeAction::HttpGet {
            port,
            scheme,
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ProbeHeader {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        },
        timeout_seconds: 1,
    }
}

fn tcp(port: u16) -> AppProbe {
    AppProbe {
        action: ProbeAction::TcpSocket { port },
        timeout_seconds: 1,
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain-HTTP app answering 204 with the `Host` it saw in `x-host`.
async fn plain_app() -> tls_steal_test_support::App {
    tls_steal_test_support::App::builder()
        .serve(|_, req| async move {
            let mut r = http::Response::new(empty());
            *r.status_mut() = http::StatusCode::NO_CONTENT;
            if let Some(h) = req.headers().get("host") {
                r.headers_mut().insert("x-host", h.clone());
            }
            r
        })
        .await
}

/// A GET of the admin port as the kubelet sends it (`User-Agent`, `Accept` as given).
async fn kubelet_get(admin: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let tcp = TcpStream::connect(admin).await.unwrap();
    let mut s = h1_handshake(tcp).await;
    let mut req = Request::get(path).header("Host", format!("10.0.0.9:{}", admin.port()));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = s.send_request(req.body(empty()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

const KUBELET: [(&str, &str); 2] = [("User-Agent", "kube-probe/1.20"), ("Accept", "*/*")];

#[tokio::test]
async fn probes_run_against_the_app_as_the_kubelet_would() {
    let pki = Pki::new();
    // The app's certificate names DNS names only: a verifying client probing 127.0.0.1 would
    // fail, the kubelet (and so the proxy) does not verify.
    let app = App::start_with(AppOptions {
        leaf: pki.server_inter.leaf_for(1101, &["app.test"], false),
        alpn: vec!["h2", "http/1.1"],
        client_roots: vec![],
    })
    .await;
    // An app that speaks HTTP/1.1 only over TLS.
    let h1_app = App::start_with(AppOptions {
        leaf: pki.server_inter.leaf_for(1102, &["app.test"], false),
        alpn: vec!["http/1.1"],
        client_roots: vec![],
    })
    .await;
    let plain = plain_app().await;
    let (port, closed) = (app.addr.port(), closed_port());
    let key = |c: &str, k| probe_key(c, k);
    let mut probes = AppProbes::new();
    use ProbeKind::*;
    use ProbeScheme::*;
    probes.insert(
        key("app", Readiness),
        http_get(port, Https, "/ready?full=1", &[("X-Probe", "yes")]),
    );
    probes.insert(
        key("app", Liveness),
        http_get(port, Https, "/status/500", &[]),
    );
    probes.insert(key("app", Startup), tcp(port));
    probes.insert(
        key("redirect", Liveness),
        http_get(port, Https, "/status/302", &[]),
    );
    // The kubelet follows redirects on the pod IP and judges the last answer.
    probes.insert(
        key("moved", Liveness),
        http_get(
            port,
            Https,
            "/redirect/301/status/503",
            &[("Host", "probe.example")],
        ),
    );
    probes.insert(
        key("moved", Readiness),
        http_get(port, Https, "/redirect/302/redirect/307/ready?x=1", &[]),
    );
    probes.insert(
        key("away", Liveness),
        http_get(port, Https, "/redirect-away/302", &[]),
    );
    probes.insert(key("loop", Liveness), http_get(port, Https, "/loop", &[]));
    probes.insert(
        key("slow", Readiness),
        http_get(port, Https, "/sleep/3000", &[]),
    );
    probes.insert(key("closed", Liveness), http_get(closed, Https, "/", &[]));
    probes.insert(key("closed", Startup), tcp(closed));
    probes.insert(
        key("host", Readiness),
        http_get(
            port,
            Https,
            "/h",
            &[("Host", "probe.example"), ("User-Agent", "custom/1")],
        ),
    );
    probes.insert(
        key("plain", Readiness),
        http_get(plain.addr.port(), Http, "/", &[]),
    );
    probes.insert(
        key("h1", Readiness),
        http_get(h1_app.addr.port(), Https, "/ready", &[("X-Probe", "yes")]),
    );
    // An HTTPS probe of a plain-HTTP port fails in the TLS handshake.
    probes.insert(
        key("plain", Liveness),
        http_get(plain.addr.port(), Https, "/", &[]),
    );

    let mut cfg = test_config(port_plan(&pki, port), app.addr);
    cfg.app_probes = probes;
    let proxy = start_proxy(cfg).await;
    let admin = proxy.admin.unwrap();
    let path = |c: &str, k| app_health_path(c, k);

    let (status, body) = kubelet_get(admin, &path("app", Readiness), &KUBELET).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("200"), "{body}");
    // The app offers h2, so the kubelet's Go transport would speak HTTP/2: the host is the
    // `:authority` and no `host` or `connection` field is sent.
    let seen = app.last();
    assert_eq!(seen.uri, format!("https://127.0.0.1:{port}/ready?full=1"));
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(seen.sni, None, "no SNI toward an IP, as Go's kubelet");
    assert_eq!(seen.alpn.as_deref(), Some("h2"));
    assert_eq!(seen.header("host"), None);
    assert_eq!(seen.header("connection"), None);
    assert_eq!(seen.header("user-agent"), Some("kube-probe/1.20"));
    assert_eq!(seen.header("accept"), Some("*/*"));
    assert_eq!(seen.header("x-probe"), Some("yes"));
    assert!(!seen.client_cert);

    // An app offering only http/1.1 gets HTTP/1.1 with `Host` and `Connection: close`.
    let (status, body) = kubelet_get(admin, &path("h1", Readiness), &KUBELET).await;
    assert_eq!(status, 200, "{body}");
    let seen = h1_app.last();
    assert_eq!(seen.uri, "/ready");
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.alpn.as_deref(), Some("http/1.1"));
    let h1_host = format!("127.0.0.1:{}", h1_app.addr.port());
    assert_eq!(seen.header("host"), Some(h1_host.as_str()));
    assert_eq!(seen.header("connection"), Some("close"));
    assert_eq!(seen.header("user-agent"), Some("kube-probe/1.20"));
    assert_eq!(seen.header("x-probe"), Some("yes"));

    let (status, body) = kubelet_get(admin, &path("app", Liveness), &KUBELET).await;
    assert_eq!(status, 500, "the app's failing status is passed on: {body}");
    assert!(body.contains("500"), "{body}");

    let (status, body) = kubelet_get(admin, &path("app", Startup), &KUBELET).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = kubelet_get(admin, &path("redirect", Liveness), &KUBELET).await;
    assert_eq!(status, 200, "a 3xx without Location is the answer: {body}");
    assert!(body.contains("302"), "{body}");
    assert!(app.last().uri.ends_with("/status/302"), "nothing to follow");

    let (status, body) = kubelet_get(admin, &path("moved", Liveness), &KUBELET).await;
    assert_eq!(
        status, 503,
        "followed to a failing page, as the kubelet: {body}"
    );
    let seen = app.last();
    assert_eq!(
        seen.uri, "https://probe.example/status/503",
        "a relative redirect keeps Host (the HTTP/2 authority)"
    );
    assert_eq!(seen.header("user-agent"), Some("kube-probe/1.20"));

    let (status, body) = kubelet_get(admin, &path("moved", Readiness), &KUBELET).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        app.last().uri.ends_with("/ready?x=1"),
        "two redirects followed"
    );

    let (status, body) = kubelet_get(admin, &path("away", Liveness), &KUBELET).await;
    assert_eq!(status, 200, "another host: the 3xx is the answer: {body}");
    assert!(body.contains("another host"), "{body}");

    let before = app.seen.lock().unwrap().len();
    let (status, body) = kubelet_get(admin, &path("loop", Liveness), &KUBELET).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stopped after 10 redirects"), "{body}");
    assert_eq!(
        app.seen.lock().unwrap().len() - before,
        10,
        "ten requests, as Go's client"
    );

    let (status, body) = kubelet_get(admin, &path("slow", Readiness), &KUBELET).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("within 1s"), "{body}");

    let (status, body) = kubelet_get(admin, &path("closed", Liveness), &KUBELET).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot connect") && body.contains(&closed.to_string()),
        "{body}"
    );
    let (status, body) = kubelet_get(admin, &path("closed", Startup), &KUBELET).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot connect"), "{body}");

    // The probe's headers replace the defaults; without a kubelet User-Agent a default is sent.
    let (status, body) = kubelet_get(admin, &path("host", Readiness), &[]).await;
    assert_eq!(status, 200, "{body}");
    let seen = app.last();
    assert_eq!(seen.uri, "https://probe.example/h");
    assert_eq!(seen.header("user-agent"), Some("custom/1"));
    assert_eq!(seen.header("accept"), Some("*/*"));
    let (status, _) = kubelet_get(admin, &path("app", Readiness), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.last().header("user-agent"),
        Some("kube-probe/tls-steal")
    );

    let (status, body) = kubelet_get(admin, &path("plain", Readiness), &KUBELET).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("204"), "{body}");
    let (status, body) = kubelet_get(admin, &path("plain", Liveness), &KUBELET).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("TLS handshake"), "{body}");

    let (status, body) = kubelet_get(admin, "/app-health/nope/readiness", &KUBELET).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("nope/readiness") && body.contains("app/readiness"),
        "names the key and the known ones: {body}"
    );
}

#[tokio::test]
async fn a_probe_follows_the_app_down_and_up() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let port = app.addr.port();
    let mut cfg = test_config(port_plan(&pki, port), app.addr);
    cfg.app_probes.insert(
        probe_key("app", ProbeKind::Liveness),
        http_get(port, ProbeScheme::Https, "/", &[]),
    );
    let proxy = start_proxy(cfg).await;
    let admin = proxy.admin.unwrap();
    let path = app_health_path("app", ProbeKind::Liveness);
    assert_eq!(kubelet_get(admin, &path, &KUBELET).await.0, 200);
    drop(app);
    // The app's listener is gone: the probe fails, though the proxy itself still listens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = kubelet_get(admin, &path, &KUBELET).await;
        if status == 503 {
            assert!(body.contains("cannot connect"), "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn bad_probe_json_is_a_start_up_error_naming_the_env_var() {
    let pki = Pki::new();
    let plan = tls_steal_crds::StealPlan::from_ports(vec![port_plan(&pki, 443)]).to_json();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tls-steal-sidecar"))
        .args([
            "proxy",
            "--session-authorization",
            "disabled",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--session-api", "127.0.0.1:0"])
        .env("TLS_STEAL_PLAN", plan)
        .env(
            "TLS_STEAL_APP_PROBES",
            r#"{"app/readiness":{"action":{"exec":{}}}}"#,
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS_STEAL_APP_PROBES") && stderr.contains("invalid app probes"),
        "{stderr}"
    );
}

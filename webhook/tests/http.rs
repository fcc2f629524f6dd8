//! The real router over a real TLS socket on 127.0.0.1: certificate, skip reasons, error
//! answers.

mod common;

use std::sync::Arc;

use serde_json::{Value, json};
use tls_steal_crds::{ConfigSource, MirrordTlsStealConfig};
use tls_steal_webhook::{Admission, ConfigCache, Metrics, ReviewResult, Settings, SkipReason};

use common::{Conn, TestServer};

fn config() -> ConfigSource {
    let c: MirrordTlsStealConfig = serde_json::from_value(json!({
        "apiVersion": "mirrord.metalbear.co/v1alpha",
        "kind": "MirrordTlsStealConfig",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"targetPath": "deploy/web", "ports": [
            {"port": 8443, "agentAsServer": {"authentication": {"certPem": "/etc/tls/tls.crt", "keyPem": "/etc/tls/tls.key"}},
             "agentAsClient": {"verification": {"acceptAnyCert": true}}},
            {"port": 9443, "agentAsServer": {"authentication": {"certPem": "/etc/tls/tls.crt", "keyPem": "/etc/tls/tls.key"}},
             "agentAsClient": {"verification": {"acceptAnyCert": true}}}
        ]}
    }))
    .unwrap();
    ConfigSource::from(&c)
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5d8f7c-", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "5d8f7c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c", "uid": "u"}]},
        "spec": {"containers": [{"name": "app", "image": "web:1", "ports": [{"containerPort": 8443}],
            "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]}
    })
}

fn review(object: Value) -> Vec<u8> {
    let kind = object["kind"].as_str().unwrap_or("Pod").to_string();
    let (group, resource) = if kind == "Pod" {
        ("", "pods")
    } else {
        ("apps", "deployments")
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7f0b2e4c-1111-2222-3333-444455556666",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    }))
    .unwrap()
}

async fn server() -> (TestServer, Conn) {
    let admission = Admission::new(
        Arc::new(ConfigCache::from_sources(vec![config()])),
        Settings {
            image: "sidecar:test".into(),
            ..Settings::default()
        },
        Arc::new(Metrics::default()),
        None,
    );
    let srv = common::start(admission, 4 * 1024 * 1024).await;
    let conn = common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
        .await
        .unwrap();
    (srv, conn)
}

fn metrics(srv: &TestServer) -> &Metrics {
    &srv.state.admission.metrics
}

fn response(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    v["response"].clone()
}

#[tokio::test]
async fn presents_the_generated_certificate_valid_for_the_stored_ca() {
    let (srv, mut conn) = server().await;
    // The chain presented is the serving certificate, and the handshake verified it against
    // the CA exactly as it is stored in the Secret (`ca.crt`), with SNI <svc>.<ns>.svc.
    let data = tls_steal_webhook::to_secret_data(&srv.bundle);
    let stored_ca = String::from_utf8(data["ca.crt"].0.clone()).unwrap();
    assert_eq!(stored_ca, srv.bundle.ca_cert_pem);
    use rustls_pki_types::pem::PemObject;
    let served =
        rustls_pki_types::CertificateDer::from_pem_slice(srv.bundle.cert_pem.as_bytes()).unwrap();
    assert_eq!(conn.peer_certs, [served]);
    assert_eq!(conn.get("/healthz").await.0, 200);
    let mut c2 = common::connect(srv.addr, &stored_ca, "tls-steal-webhook.tls-steal.svc")
        .await
        .unwrap();
    assert_eq!(c2.get("/readyz").await.0, 200);

    // Another CA is refused; so is a name the certificate is not for.
    let other =
        tls_steal_webhook::generate_cert_bundle(&["x".into()], time::OffsetDateTime::now_utc())
            .unwrap();
    assert!(
        common::connect(srv.addr, &other.ca_cert_pem, &common::sni())
            .await
            .is_err()
    );
    assert!(
        common::connect(srv.addr, &stored_ca, "evil.example.com")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn injects_with_a_json_patch() {
    let (srv, mut conn) = server().await;
    let (status, body) = conn.post("/mutate", review(pod())).await;
    assert_eq!(status, 200);
    let resp = response(&body);
    assert_eq!(resp["uid"], "7f0b2e4c-1111-2222-3333-444455556666");
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch_bytes = base64_decode(resp["patch"].as_str().unwrap());
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();
    let mut patched = pod();
    json_patch::patch(&mut patched, &patch).unwrap();
    let inits: Vec<&str> = patched["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inits, ["tls-steal-init", "tls-steal-proxy"]);
    let status: Value = serde_json::from_str(
        patched["metadata"]["annotations"]["tls-steal.io/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["ports"], json!([8443, 9443]));
    assert_eq!(metrics(&srv).reviews_of(ReviewResult::Injected), 1);
    // 9443 is declared by no container: still captured, counted.
    let text = String::from_utf8(conn.get("/metrics").await.1).unwrap();
    assert!(
        text.contains("tls_steal_webhook_undeclared_ports_total 1"),
        "{text}"
    );
    assert!(
        text.contains("tls_steal_webhook_reviews_total{result=\"injected\"} 1"),
        "{text}"
    );
    assert!(text.contains("tls_steal_webhook_configs 1"), "{text}");
}

async fn expect_skip(conn: &mut Conn, srv: &TestServer, object: Value, reason: SkipReason) {
    let before = metrics(srv).skips_of(reason);
    let (status, body) = conn.post("/mutate", review(object)).await;
    assert_eq!(status, 200);
    let resp = response(&body);
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp.get("patch").is_none(), "{resp}");
    assert_eq!(metrics(srv).skips_of(reason), before + 1, "{reason:?}");
}

#[tokio::test]
async fn every_skip_reason_is_allowed_unchanged_and_counted() {
    let (srv, mut conn) = server().await;
    // No matching config (another deployment).
    let mut p = pod();
    p["metadata"]["ownerReferences"][0]["name"] = json!("api-5d8f7c");
    expect_skip(&mut conn, &srv, p, SkipReason::NoMatchingConfig).await;
    // Already injected (reinvocation): by container and by annotation.
    let mut p = pod();
    p["spec"]["initContainers"] = json!([{"name": "tls-steal-proxy", "image": "x"}]);
    expect_skip(&mut conn, &srv, p, SkipReason::AlreadyInjected).await;
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"tls-steal.io/status": "{}"});
    expect_skip(&mut conn, &srv, p, SkipReason::AlreadyInjected).await;
    // hostNetwork.
    let mut p = pod();
    p["spec"]["hostNetwork"] = json!(true);
    expect_skip(&mut conn, &srv, p, SkipReason::HostNetwork).await;
    // Opt-out label.
    let mut p = pod();
    p["metadata"]["labels"]["tls-steal.io/inject"] = json!("false");
    expect_skip(&mut conn, &srv, p, SkipReason::OptOut).await;
    // The webhook's own pods.
    let mut p = pod();
    p["metadata"]["labels"]["app.kubernetes.io/name"] = json!("tls-steal-webhook");
    expect_skip(&mut conn, &srv, p, SkipReason::OwnPod).await;
    assert_eq!(metrics(&srv).reviews_of(ReviewResult::Skipped), 6);
    let text = String::from_utf8(conn.get("/metrics").await.1).unwrap();
    assert!(
        text.contains("tls_steal_webhook_skips_total{reason=\"host_network\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tls_steal_webhook_skips_total{reason=\"already_injected\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn malformed_and_unexpected_requests() {
    let (srv, mut conn) = server().await;

    // Not JSON: 400 with an AdmissionReview-shaped failure.
    let (status, body) = conn.post("/mutate", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    let resp = response(&body);
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["reason"], "InvalidRequest");

    // Empty body: same.
    let (status, body) = conn.post("/mutate", Vec::new()).await;
    assert_eq!(status, 400);
    assert_eq!(response(&body)["allowed"], false);

    // JSON but not an AdmissionReview (no request.uid).
    let (status, body) = conn
        .post("/mutate", br#"{"hello": "world"}"#.to_vec())
        .await;
    assert_eq!(status, 400);
    assert_eq!(response(&body)["status"]["reason"], "InvalidRequest");

    // An AdmissionReview with a uid but a broken pod: fail open with a warning.
    let mut bad = pod();
    bad["spec"]["containers"] = json!("not a list");
    let (status, body) = conn.post("/mutate", review(bad)).await;
    assert_eq!(status, 200);
    let resp = response(&body);
    assert_eq!(resp["uid"], "7f0b2e4c-1111-2222-3333-444455556666");
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none());
    assert!(
        resp["warnings"][0].as_str().unwrap().contains("malformed"),
        "{resp}"
    );

    // A Deployment instead of a Pod: allowed, warning, no patch.
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "web:1"}]}}}});
    let (status, body) = conn.post("/mutate", review(deploy)).await;
    assert_eq!(status, 200);
    let resp = response(&body);
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none());
    assert!(
        resp["warnings"][0].as_str().unwrap().contains("Deployment"),
        "{resp}"
    );

    assert_eq!(metrics(&srv).reviews_of(ReviewResult::Invalid), 4);
    assert_eq!(metrics(&srv).reviews_of(ReviewResult::UnexpectedKind), 1);

    // Still serving after all that.
    assert_eq!(conn.post("/mutate", review(pod())).await.0, 200);
}

#[tokio::test]
async fn a_10_mib_body_is_refused_with_413() {
    let (srv, mut conn) = server().await;
    let mut big = pod();
    big["metadata"]["annotations"] = json!({"filler": "x".repeat(10 * 1024 * 1024)});
    let body = review(big);
    assert!(body.len() > 10 * 1024 * 1024);
    let (status, body) = conn.post("/mutate", body).await;
    assert_eq!(status, 413);
    assert_eq!(response(&body)["allowed"], false);
    let text = String::from_utf8(
        common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
            .await
            .unwrap()
            .get("/metrics")
            .await
            .1,
    )
    .unwrap();
    assert!(
        text.contains("tls_steal_webhook_oversized_requests_total 1"),
        "{text}"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    let v: k8s_openapi::ByteString = serde_json::from_value(Value::String(s.into())).unwrap();
    v.0
}

/// SIGTERM's graceful stop (`server::drain`): `/readyz` fails at once while reviews are still
/// answered through the drain delay (the Service stops routing here meanwhile); then the server
/// stops accepting and ends once in-flight reviews are done.
#[tokio::test]
async fn drains_gracefully() {
    let (srv, mut conn) = server().await;
    let (status, _) = conn.request("GET", "/readyz", vec![]).await.unwrap();
    assert_eq!(status, 200);
    let draining = srv.state.draining.clone();
    let handle = srv.handle.clone();
    let drain = tokio::spawn(async move {
        tls_steal_webhook::drain(
            &draining,
            &handle,
            std::time::Duration::from_millis(800),
            std::time::Duration::from_secs(5),
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, body) = conn.request("GET", "/readyz", vec![]).await.unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("shutting down"));
    // During the delay: reviews answered, on the open connection and on new ones.
    let (status, body) = conn
        .request("POST", "/mutate", review(pod()))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(response(&body)["allowed"], true);
    let mut fresh = common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
        .await
        .expect("a new connection is accepted during the drain delay");
    let (status, _) = fresh
        .request("POST", "/mutate", review(pod()))
        .await
        .unwrap();
    assert_eq!(status, 200);
    drain.await.unwrap();
    // After it: the server ends, and nothing is accepted any more.
    tokio::time::timeout(std::time::Duration::from_secs(10), srv.served)
        .await
        .expect("the server stops within the shutdown timeout")
        .unwrap()
        .unwrap();
    assert!(
        common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
            .await
            .is_err(),
        "no connection is accepted after the drain"
    );
}

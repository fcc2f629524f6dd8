//! Operations: passthrough when material is missing (the pod stays ready: passthrough carries
//! the traffic; the reason is in the `/readyz` body and a gauge), certificate rotation under
//! load (Kubernetes `..data` symlink swap), metrics, graceful shutdown.

mod common;

use std::os::unix::fs::symlink;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn missing_key_means_passthrough_still_ready_then_recovers() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    let key = pki.path("later/tls.key");
    plan.agent_as_server.authentication.key_pem = key.clone();
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let gauge = |on: u8| {
        format!(
            "tls_steal_port_passthrough{{port=\"{}\"}} {on}",
            app.addr.port()
        )
    };
    let (status, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
    assert_eq!(
        status, 200,
        "passthrough carries traffic: the pod stays ready: {body}"
    );
    assert!(
        body.contains(&key)
            && body.contains("not found")
            && body.contains("relayed untouched")
            && body.contains("passthrough"),
        "{body}"
    );
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    assert!(metrics.contains(&gauge(1)), "{metrics}");
    // The client reaches the app's own TLS directly: the app sees the client's own ALPN and a
    // client certificate it presented itself (the proxy never terminated TLS).
    let o = ClientOpts::new(&pki, &["h2"]).with_cert(&pki.client_leaf);
    let seen = get_seen(proxy.listen[0], &o, "/through").await.unwrap();
    assert!(
        seen.client_cert,
        "only the original client holds this certificate"
    );
    assert_eq!(seen.alpn.as_deref(), Some("h2"));
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    assert!(
        metrics.contains(&format!(
            "tls_steal_connections_total{{port=\"{}\",kind=\"passthrough\"}} 1",
            app.addr.port()
        )),
        "{metrics}"
    );
    // The key appears: the port starts terminating TLS.
    pki.write("later/tls.key", &pki.server_leaf.key_pem);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
        assert_eq!(status, 200, "{body}");
        if body.contains(&format!("port {}: ok", app.addr.port())) {
            break;
        }
        assert!(Instant::now() < deadline, "never terminated TLS: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    assert!(metrics.contains(&gauge(0)), "{metrics}");
    let seen = get_seen(proxy.listen[0], &o, "/terminated").await.unwrap();
    assert!(
        !seen.client_cert,
        "now the proxy terminates and connects anonymously"
    );
}

/// A Kubernetes Secret volume: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`.
fn secret_volume(pki: &Pki, version: &str, leaf: &Leaf) {
    let vol = pki.dir.path().join("vol");
    let dir = vol.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), leaf.full_chain_pem()).unwrap();
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
    let tmp = vol.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, vol.join("..data")).unwrap(); // atomic swap, as the kubelet does
    for f in ["tls.crt", "tls.key"] {
        let _ = symlink(format!("..data/{f}"), vol.join(f));
    }
}

/// The app, and a proxy serving its certificate from a Secret volume (version `2024_01_01`).
async fn on_secret_volume(pki: &Pki) -> (App, tls_steal_sidecar::proxy::ProxyHandle) {
    let app = App::start(pki).await;
    secret_volume(pki, "2024_01_01", &pki.server_leaf);
    let mut plan = port_plan(pki, app.addr.port());
    plan.agent_as_server.authentication.cert_pem = pki.path("vol/tls.crt");
    plan.agent_as_server.authentication.key_pem = pki.path("vol/tls.key");
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    (app, proxy)
}

/// The `/metrics` line that counts `n` successful reloads of `port`'s material.
fn reloads_ok(port: u16, n: u64) -> String {
    format!("tls_steal_cert_reloads_total{{port=\"{port}\",result=\"ok\"}} {n}")
}

#[tokio::test]
async fn rotation_under_load_fails_no_request() {
    let pki = Pki::new();
    let (app, proxy) = on_secret_volume(&pki).await;
    let addr = proxy.listen[0];

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for w in 0..4 {
        let (stop, ok, pki_opts) = (
            stop.clone(),
            ok.clone(),
            ClientOpts::new(&pki, if w % 2 == 0 { &["h2"] } else { &["http/1.1"] }),
        );
        load.push(tokio::spawn(async move {
            // One long-lived connection (must survive the rotation) and fresh ones.
            let mut long = Conn::open(addr, &pki_opts).await.unwrap();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match long.get("/long").await {
                    Ok((s, _)) if s == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        failures.push(format!("long: {other:?}"));
                        0
                    }
                };
                match get_seen(addr, &pki_opts, "/fresh").await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.push(format!("fresh: {e}"));
                        0
                    }
                };
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_leaf = pki.server_inter.leaf(1002);
    secret_volume(&pki, "2024_02_02", &new_leaf);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tls = tls_connect(addr, &ClientOpts::new(&pki, &["http/1.1"]))
            .await
            .unwrap();
        if tls.get_ref().1.peer_certificates().unwrap()[0] == new_leaf.cert_der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let failures = t.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(ok.load(Ordering::Relaxed) > 20);
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    assert!(
        metrics.contains(&reloads_ok(app.addr.port(), 1)),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_kept_http2_client_uses_the_new_material_after_a_rotation() {
    let pki = Pki::new();
    let (app, proxy) = on_secret_volume(&pki).await;
    let mut c = Conn::open(proxy.listen[0], &ClientOpts::new(&pki, &["h2"]))
        .await
        .unwrap();
    // The pool reaches the h2 app through its ALPN-offering client, then its h2-only one.
    for _ in 0..3 {
        assert_eq!(c.get("/before").await.unwrap().0, 200);
    }
    assert_eq!(upstream_connects(&proxy).await, 2);
    secret_volume(&pki, "2024_02_02", &pki.server_inter.leaf(1003));
    let reloaded = reloads_ok(app.addr.port(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !admin_get(proxy.admin.unwrap(), "/metrics")
        .await
        .1
        .contains(&reloaded)
    {
        assert!(Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection's streams go through the new generation's pools (its upstream TLS
    // configuration), not the pool they used before: new app connections.
    assert_eq!(c.get("/after").await.unwrap().0, 200);
    assert_eq!(upstream_connects(&proxy).await, 3);
    for _ in 0..2 {
        assert_eq!(c.get("/after").await.unwrap().0, 200);
    }
    assert_eq!(upstream_connects(&proxy).await, 4);
}

#[tokio::test]
async fn metrics_and_health() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    for _ in 0..3 {
        get_seen(proxy.listen[0], &ClientOpts::new(&pki, &["h2"]), "/m")
            .await
            .unwrap();
    }
    let admin = proxy.admin.unwrap();
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    let (status, body) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let m = admin_get(admin, "/metrics").await.1;
    let p = app.addr.port();
    for needle in [
        format!("tls_steal_requests_total{{port=\"{p}\",outcome=\"forwarded\"}} 3"),
        format!("tls_steal_request_duration_seconds_count{{port=\"{p}\"}} 3"),
        format!("tls_steal_upstream_connects_total{{port=\"{p}\",result=\"ok\"}}"),
        format!("tls_steal_upstream_connections{{port=\"{p}\"}}"),
        "# TYPE tls_steal_request_duration_seconds histogram".to_string(),
    ] {
        assert!(m.contains(&needle), "missing {needle}\n{m}");
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let addr = proxy.listen[0];
    let mut c = Conn::open(addr, &ClientOpts::new(&pki, &["http/1.1"]))
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move { c.get("/slow").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.shutdown();
    let (status, _) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(5), proxy.wait())
        .await
        .expect("drains in time");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

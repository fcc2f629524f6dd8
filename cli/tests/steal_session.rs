//! A `kubectl-steal --connect` session's own life against the real sidecar: what registration
//! says (a port not captured, a port in passthrough), SIGINT deregistering, registering again
//! when the sidecar comes back, a mirrord config file driving it, and how the local app is
//! verified (a pinned server certificate, trust roots and the server name).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_deregisters_so_the_next_request_reaches_the_real_app() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let mut steal = start_steal(&w, local.addr, "tls").await;
    assert_eq!(
        h1(w.sidecar.listen, "/x", &[STEAL]).await.body,
        "local GET /x"
    );

    steal.interrupt();
    let status = tokio::time::timeout(WAIT, steal.child.wait())
        .await
        .expect("kubectl-steal exits after SIGINT")
        .unwrap();
    assert!(status.success(), "{status}");
    // Right away, no pause: kubectl-steal left with a GOAWAY the sidecar acknowledged before
    // it exited, so the session is already out of the sidecar's routing.
    let a = h1(w.sidecar.listen, "/x", &[STEAL]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "real GET /x"),
        "{}",
        a.body
    );
    let summary = steal.wait_for("summary:").await;
    assert!(summary.contains("1 stolen"), "{summary}");
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(1), steal.stdout.next_line()).await
    {
        steal.lines.lock().unwrap().push(l);
    }
    println!(
        "kubectl-steal printed:\n{}",
        steal.lines.lock().unwrap().join("\n")
    );

    let a = h1(w.sidecar.listen, "/y", &[STEAL]).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "real GET /y"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_the_sidecar_does_not_capture_is_explained() {
    let w = world().await;
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-steal"))
        .args([
            "--connect",
            &w.sidecar.session_api.to_string(),
            "--port",
            "1",
            "--to",
            "9",
        ])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let captured = w._real.addr.port().to_string();
    assert!(err.contains("refused the session"), "{err}");
    assert!(
        err.contains(&captured),
        "the captured port is listed: {err}"
    );
    let _ = &w.certs.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_registers_again_when_the_sidecar_comes_back() {
    let mut w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let mut steal = start_steal(&w, local.addr, "tls").await;
    assert_eq!(
        h1(w.sidecar.listen, "/1", &[STEAL]).await.body,
        "local GET /1"
    );

    w.sidecar.restart().await;
    steal.wait_for("connection lost").await;
    steal.wait_for_nth("registered", 2).await;
    assert_eq!(
        h1(w.sidecar.listen, "/2", &[STEAL]).await.body,
        "local GET /2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrord_config_file_drives_the_session() {
    let w = world().await;
    let local = App::start("local", None).await;
    let config = w.certs.dir.join("mirrord.yaml");
    std::fs::write(
        &config,
        format!(
            "target: deploy/web\nfeature:\n  network:\n    incoming:\n      mode: steal\n      http_filter:\n        all_of:\n          - header: '^x-steal: yes$'\n          - path: ^/api\n        ports: [{}]\n      https_delivery:\n        protocol: tcp\n",
            w._real.addr.port()
        ),
    )
    .unwrap();
    let to = local.addr.to_string();
    let config = config.display().to_string();
    let _steal = Steal::start(&w.sidecar, &["-f", &config, "--to", &to]).await;
    assert_eq!(
        h1(w.sidecar.listen, "/api/x", &[STEAL]).await.body,
        "local GET /api/x"
    );
    assert_eq!(
        h1(w.sidecar.listen, "/other", &[STEAL]).await.body,
        "real GET /other"
    );
    assert_eq!(
        h1(w.sidecar.listen, "/api/x", &[]).await.body,
        "real GET /api/x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_server_certificate_is_enforced() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let right = w.certs.cert_pem.display().to_string();
    let other = certs();
    let wrong = other.cert_pem.display().to_string();
    let to = local.addr.to_string();
    let port = w._real.addr.port().to_string();
    let base = ["--port", &port, "--header", "^x-steal: yes$", "--to", &to];

    let mut args = base.to_vec();
    args.extend(["--server-cert", &right, "--server-name", "app.test"]);
    let mut ok = Steal::start(&w.sidecar, &args).await;
    assert_eq!(
        h1(w.sidecar.listen, "/p", &[STEAL]).await.body,
        "local GET /p"
    );
    ok.child.kill().await.unwrap();

    let mut args = base.to_vec();
    args.extend(["--server-cert", &wrong]);
    let mut bad = Steal::start(&w.sidecar, &args).await;
    let a = h1(w.sidecar.listen, "/p", &[STEAL]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert!(a.body.contains("--server-cert"), "{}", a.body);
    bad.wait_for("→ 502").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_roots_verify_the_local_app_and_its_name() {
    use tls_steal_test_support::{Ca, ServerTls};

    let w = world().await;
    let ca = Ca::root("local roots");
    let leaf = ca.issue().dns(&["local.test"]).build();
    let ca_pem = w.certs.dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let server = ServerTls::new(vec![leaf.cert_der.clone()], leaf.key()).build();
    let local = App::start("local", Some(server)).await;

    let ca_pem = ca_pem.display().to_string();
    let to = local.addr.to_string();
    let port = w._real.addr.port().to_string();
    let base = [
        "--port",
        &port,
        "--header",
        "^x-steal: yes$",
        "--to",
        &to,
        "--trust-root",
        &ca_pem,
    ];

    let mut args = base.to_vec();
    args.extend(["--server-name", "local.test"]);
    let mut ok = Steal::start(&w.sidecar, &args).await;
    assert_eq!(
        h1(w.sidecar.listen, "/t", &[STEAL]).await.body,
        "local GET /t"
    );
    ok.child.kill().await.unwrap();

    // Without --server-name the original SNI (app.test) is sent, which the certificate does not
    // cover.
    let _bad = Steal::start(&w.sidecar, &base).await;
    let a = h1(w.sidecar.listen, "/t", &[STEAL]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert!(a.body.contains("TLS handshake failed"), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_passthrough_is_named_with_its_reason_when_registering() {
    let mut certs = certs();
    let missing = certs.dir.join("missing.key");
    certs.key_pem = missing.clone();
    let real = App::start("real", Some(certs.server.clone())).await;
    let sidecar = start_sidecar(real.addr, &certs).await;
    let local = App::start("local", Some(certs.server.clone())).await;
    let port = real.addr.port().to_string();
    let to = local.addr.to_string();
    let mut steal = Steal::start(
        &sidecar,
        &["--port", &port, "--header", "^x-steal: yes$", "--to", &to],
    )
    .await;
    let line = steal.wait_for("is relayed untouched").await;
    assert!(line.contains(&format!("port {port} ")), "{line}");
    assert!(
        line.contains(&missing.display().to_string()) && line.contains("not found"),
        "the file and the reason: {line}"
    );
    // Indeed nothing is stolen: the app's own TLS answers, whatever the filter says.
    let a = h1(sidecar.listen, "/p", &[STEAL]).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "real GET /p"));
}

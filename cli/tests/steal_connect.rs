//! `kubectl-steal --connect` against the real sidecar: the `tls-steal-sidecar proxy` binary (its
//! original destination fixed with `--orig-dst-override`, since there is no iptables here), a
//! real app behind it, a local app, and TLS clients sending requests through the proxy.
//!
//! The sidecar binary is built with `cargo build -p tls-steal-sidecar` on first use (or taken
//! from `TLS_STEAL_SIDECAR_BIN`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_filter_steals_only_matching_requests_to_a_tls_local_app() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let mut steal = start_steal(&w, local.addr, "tls").await;

    let a = h1(w.sidecar.listen, "/hello?x=1", &[STEAL]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, "local GET /hello");
    assert_eq!(a.headers["x-app"], "local");
    assert_eq!(a.headers["x-version"], "HTTP/1.1");
    assert_eq!(a.headers["x-host"], "app.test", "the original Host is kept");
    assert_eq!(a.headers["x-saw-meta"], "no", "tls-steal-meta is stripped");

    let a = h1(w.sidecar.listen, "/hello", &[("x-steal", "no")]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "real GET /hello")
    );
    let a = h1(w.sidecar.listen, "/hello", &[]).await;
    assert_eq!(a.body, "real GET /hello");

    let line = steal.wait_for("GET /hello?x=1").await;
    assert!(line.contains("pod/web-1"), "{line}");
    assert!(line.contains("stolen"), "{line}");
    assert!(line.contains("→ 200"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_delivery_with_h2c_for_http2_requests() {
    let w = world().await;
    let local = App::start("local", None).await;
    let _steal = start_steal(&w, local.addr, "tcp").await;

    let a = h1(w.sidecar.listen, "/plain", &[STEAL]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, "local GET /plain");
    assert_eq!(a.headers["x-version"], "HTTP/1.1");

    let a = h2_get(w.sidecar.listen, "/two", &[STEAL]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, "local GET /two");
    assert_eq!(
        a.headers["x-version"], "HTTP/2.0",
        "h2c with prior knowledge"
    );
    assert_eq!(
        a.headers["x-host"], "app.test",
        "the original authority is kept"
    );
    assert_eq!(a.headers["x-saw-meta"], "no");

    let a = h2_get(w.sidecar.listen, "/two", &[]).await;
    assert_eq!(a.body, "real GET /two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streamed_body_and_trailers_pass_both_ways() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let _steal = start_steal(&w, local.addr, "tls").await;

    // A streamed body: each chunk comes back before the next one is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let mut send = h2_sender(w.sidecar.listen).await;
    let req = Request::post("https://app.test/echo")
        .header(STEAL.0, STEAL.1)
        .body(body)
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("response head in time")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-app"], "local");
    assert_eq!(resp.headers()["x-version"], "HTTP/2.0");
    let mut body = resp.into_body();
    let mut got = Vec::new();
    for chunk in ["two", "three"] {
        let want_len = got.len() + 1;
        while got.len() < want_len {
            let frame = tokio::time::timeout(WAIT, body.frame())
                .await
                .expect("an echoed chunk in time")
                .unwrap()
                .unwrap();
            if let Ok(d) = frame.into_data() {
                got.push(String::from_utf8_lossy(&d).into_owned());
            }
        }
        tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.unwrap();
    }
    drop(tx);
    let rest = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let all = got.concat() + &String::from_utf8_lossy(&rest);
    assert_eq!(all, "onetwothree");
    assert_eq!(
        got[0], "one",
        "the first chunk came back before the body ended"
    );

    // Trailers from the local app reach the client.
    let mut send = h2_sender::<Empty<Bytes>>(w.sidecar.listen).await;
    let req = Request::get("https://app.test/trailers")
        .header(STEAL.0, STEAL.1)
        .header("te", "trailers")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["x-app"], "local");
    let collected = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        collected.trailers().map(|t| t["x-trailer"].clone()),
        Some("yes".parse().unwrap())
    );
    assert_eq!(collected.to_bytes(), "with trailers");
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + Unpin {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_passes_both_ways() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let mut steal = start_steal(&w, local.addr, "tls").await;

    let io = TokioIo::new(tls_to(w.sidecar.listen, false).await);
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::get("/ws")
        .header("host", "app.test")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header(STEAL.0, STEAL.1)
        .body(Empty::new())
        .unwrap();
    let mut resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["x-app"], "local");
    let up = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut io = TokioIo::new(up);
    for msg in ["hello", "again"] {
        io.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, io.read_exact(&mut buf))
            .await
            .expect("the echo in time")
            .unwrap();
        assert_eq!(buf, msg.to_ascii_uppercase().as_bytes());
    }
    let line = steal.wait_for("/ws").await;
    assert!(line.contains("→ 101"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_app_down_gives_502_and_the_session_stays() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let local_addr = local.addr;
    let mut steal = start_steal(&w, local_addr, "tls").await;

    assert_eq!(
        h1(w.sidecar.listen, "/a", &[STEAL]).await.body,
        "local GET /a"
    );
    local.kill();
    drop(local);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let a = h1(w.sidecar.listen, "/b", &[STEAL]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert!(a.body.contains("kubectl-steal"), "{}", a.body);
    assert!(
        a.body.contains(&format!("local app at {local_addr}")),
        "{}",
        a.body
    );
    let line = steal.wait_for("GET /b").await;
    assert!(line.contains("→ 502"), "{line}");

    // Unmatched requests still reach the real app, and the session is still there.
    assert_eq!(h1(w.sidecar.listen, "/c", &[]).await.body, "real GET /c");
    let listener = TcpListener::bind(local_addr).await.unwrap();
    let _local = App::start_on(listener, "local", Some(w.certs.server.clone()));
    let a = h1(w.sidecar.listen, "/d", &[STEAL]).await;
    assert_eq!(a.body, "local GET /d");
    assert!(
        !steal
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("connection lost")),
        "the session was not re-established: {:?}",
        steal.lines.lock().unwrap()
    );
}

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
async fn mirror_mode_lets_the_real_app_answer_and_shows_the_copy() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let mut args = steal_args(&w, local.addr, "tls");
    args.extend(["--mode".to_string(), "mirror".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steal = Steal::start(&w.sidecar, &args).await;

    let a = h1(w.sidecar.listen, "/m", &[STEAL]).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "real GET /m"));
    let line = steal.wait_for("GET /m").await;
    assert!(line.contains("mirrored"), "{line}");
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
    let deadline = tokio::time::Instant::now() + WAIT;
    while steal
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("registered"))
        .count()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second registration"
        );
        let line = tokio::time::timeout_at(deadline, steal.stdout.next_line())
            .await
            .unwrap()
            .unwrap();
        steal
            .lines
            .lock()
            .unwrap()
            .push(line.expect("kubectl-steal keeps running"));
    }
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
async fn a_later_session_is_told_when_an_earlier_one_takes_the_request() {
    let w = world().await;
    let first_app = App::start("first", Some(w.certs.server.clone())).await;
    let second_app = App::start("second", Some(w.certs.server.clone())).await;
    let _first = start_steal(&w, first_app.addr, "tls").await;
    let mut second = start_steal(&w, second_app.addr, "tls").await;
    assert_eq!(
        h1(w.sidecar.listen, "/both", &[STEAL]).await.body,
        "first GET /both"
    );
    let line = second.wait_for("registered earlier").await;
    assert!(line.contains("GET /both"), "{line}");
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

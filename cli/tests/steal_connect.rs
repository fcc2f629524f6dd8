//! `kubectl-steal --connect` against the real sidecar: the `tls-steal-sidecar proxy` binary (its
//! original destination fixed with `--orig-dst-override`, since there is no iptables here), a
//! real app behind it, a local app, and TLS clients sending requests through the proxy.
//!
//! The sidecar binary is built with `cargo build -p tls-steal-sidecar` on first use (or taken
//! from `TLS_STEAL_SIDECAR_BIN`). The session's own life (registration, SIGINT, the sidecar
//! restarting, config files, verification of the local app) is in `steal_session.rs`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

    let mut send = h1_handshake::<Empty<Bytes>, _>(tls_to(w.sidecar.listen, false).await).await;
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

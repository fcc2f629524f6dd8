//! Shutdown without losing a request: after SIGTERM the proxy is not ready, tells open
//! connections to finish at once (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close` / idle keep-alive
//! connections closed) so their clients reconnect elsewhere, keeps accepting and serving new
//! connections while the app listens, at most for the drain delay (each told to close after
//! its requests), then refuses new connections and lets in-flight requests complete.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tls_steal_sidecar::proxy::ProxyHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);

/// An HTTP/1.1 keep-alive connection whose connection task can be watched.
async fn h1_conn(
    addr: SocketAddr,
    pki: &Pki,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tls = tls_connect(addr, &ClientOpts::new(pki, &["http/1.1"]))
        .await
        .unwrap();
    let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    (s, tokio::spawn(c))
}

async fn h1_get(
    s: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    path: &str,
) -> http::Response<Bytes> {
    s.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", "app.test")
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// A raw HTTP/2 connection (preface, SETTINGS and one `GET /` sent) whose frames are read in a
/// task that returns whether a GOAWAY frame arrived before the connection closed.
async fn h2_watch_goaway(addr: SocketAddr, pki: &Pki) -> tokio::task::JoinHandle<bool> {
    let mut tls = tls_connect(addr, &ClientOpts::new(pki, &["h2"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // empty SETTINGS
    // HEADERS on stream 1, END_STREAM | END_HEADERS: `:method GET`, `:scheme https`, `:path /`
    // (HPACK static table entries 2, 7, 4).
    tls.write_all(&[0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x87, 0x84])
        .await
        .unwrap();
    tls.flush().await.unwrap();
    tokio::spawn(async move {
        let mut goaway = false;
        loop {
            let mut head = [0u8; 9];
            if tls.read_exact(&mut head).await.is_err() {
                return goaway;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if tls.read_exact(&mut payload).await.is_err() {
                return goaway;
            }
            match head[3] {
                // Acknowledge SETTINGS and PINGs, as a well-behaved client (the server's
                // graceful shutdown waits for a PING's answer before its last GOAWAY).
                4 if head[4] & 1 == 0 => {
                    let _ = tls.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
                }
                6 if head[4] & 1 == 0 => {
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    let _ = tls.write_all(&ack).await;
                }
                7 => goaway = true,
                _ => {}
            }
        }
    })
}

async fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The test app and a proxy in front of it with these drain settings (`None`: the test
/// config's timeout).
async fn draining_proxy(delay: Duration, timeout: Option<Duration>) -> (Pki, App, ProxyHandle) {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.drain_delay = delay;
    if let Some(t) = timeout {
        cfg.drain_timeout = t;
    }
    let proxy = start_proxy(cfg).await;
    (pki, app, proxy)
}

async fn exits_once_drained(proxy: ProxyHandle) {
    tokio::time::timeout(WAIT, proxy.wait())
        .await
        .expect("the proxy exits once drained");
}

#[tokio::test]
async fn sigterm_drains_without_losing_a_request() {
    // Long enough for the steps "during the delay" even on a loaded machine.
    let (pki, _app, proxy) =
        draining_proxy(Duration::from_secs(6), Some(Duration::from_secs(10))).await;
    let (addr, admin) = (proxy.listen[0], proxy.admin.unwrap());

    // Before SIGTERM: an idle HTTP/1.1 keep-alive client, an HTTP/2 client (hyper) and a raw
    // HTTP/2 connection watching for GOAWAY, and a slow request in flight.
    let (mut idle, idle_conn) = h1_conn(addr, &pki).await;
    assert_eq!(h1_get(&mut idle, "/first").await.status(), 200);
    let tls = tls_connect(addr, &ClientOpts::new(&pki, &["h2"]))
        .await
        .unwrap();
    let (mut h2, h2_conn) = h2_client::<http_body_util::Empty<Bytes>>(tls).await;
    let req = Request::get("https://app.test/before-h2")
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    let goaway = h2_watch_goaway(addr, &pki).await;
    let (mut slow, _slow_conn) = h1_conn(addr, &pki).await;
    let slow_req = tokio::spawn(async move { h1_get(&mut slow, "/sleep/5000").await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    proxy.shutdown();

    // Draining: not ready; open connections are told to finish at once (the idle keep-alive one
    // closed, the HTTP/2 ones get GOAWAY), while new connections are still served, each told
    // to close after its request.
    let (status, body) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    tokio::time::timeout(WAIT, idle_conn)
        .await
        .expect("the idle keep-alive connection is closed by the proxy")
        .unwrap()
        .unwrap();
    assert!(
        tokio::time::timeout(WAIT, goaway).await.unwrap().unwrap(),
        "a GOAWAY frame before the close"
    );
    tokio::time::timeout(WAIT, h2_conn)
        .await
        .expect("the open HTTP/2 connection ends")
        .unwrap()
        .unwrap();
    drop(h2);
    let (mut during, _during_conn) = h1_conn(addr, &pki).await;
    let resp = h1_get(&mut during, "/during").await;
    assert_eq!(
        resp.status(),
        200,
        "a new connection during the delay is served"
    );
    assert_eq!(
        resp.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "and told to close after its request"
    );
    let tls = tls_connect(addr, &ClientOpts::new(&pki, &["h2"]))
        .await
        .expect("a new HTTP/2 connection during the delay is accepted");
    let (mut h2_during, _h2_during_conn) = h2_client::<http_body_util::Empty<Bytes>>(tls).await;
    let req = Request::get("https://app.test/during-h2")
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = h2_during.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "its first request is served");
    assert!(
        !proxy.is_closing(),
        "all of this happened within the drain delay"
    );

    // After the delay: connects are refused, and the request in flight still completes.
    wait_refused(addr).await;
    let slow = tokio::time::timeout(WAIT, slow_req).await.unwrap().unwrap();
    assert_eq!(slow.status(), 200, "the request in flight completes");
    assert_eq!(
        slow.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "told to close after it"
    );
    exits_once_drained(proxy).await;
}

#[tokio::test]
async fn the_drain_timeout_bounds_a_request_that_never_ends() {
    let (pki, _app, proxy) =
        draining_proxy(Duration::from_millis(100), Some(Duration::from_millis(500))).await;
    let mut c = Conn::open(proxy.listen[0], &ClientOpts::new(&pki, &["h2"]))
        .await
        .unwrap();
    let stuck = tokio::spawn(async move { c.get("/sleep/60000").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.shutdown();
    tokio::time::timeout(WAIT, proxy.wait())
        .await
        .expect("exits at the drain deadline");
    stuck.abort();
}

/// A connection opened before SIGTERM that has not sent its first request yet is not closed
/// under it: its request, sent while draining, is answered (then it is told to close).
#[tokio::test]
async fn a_connection_without_its_first_request_is_not_dropped() {
    let (pki, _app, proxy) =
        draining_proxy(Duration::from_secs(6), Some(Duration::from_secs(10))).await;
    let addr = proxy.listen[0];
    let (mut h1, h1_conn) = h1_conn(addr, &pki).await;
    let tls = tls_connect(addr, &ClientOpts::new(&pki, &["h2"]))
        .await
        .unwrap();
    let (mut h2, _h2_conn) = h2_client::<http_body_util::Empty<Bytes>>(tls).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    proxy.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let resp = h1_get(&mut h1, "/late-h1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    tokio::time::timeout(WAIT, h1_conn)
        .await
        .expect("closed after its request")
        .unwrap()
        .unwrap();
    let req = Request::get("https://app.test/late-h2")
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    assert!(!proxy.is_closing(), "within the drain delay");
}

/// The proxy takes new connections after SIGTERM exactly as long as the app still listens (as
/// an app pausing in its `preStop` hook does), however long the drain delay, and stops when
/// the app stops listening.
#[tokio::test]
async fn draining_follows_the_app_listening() {
    let (pki, app, proxy) =
        draining_proxy(Duration::from_secs(600), Some(Duration::from_secs(10))).await;
    let addr = proxy.listen[0];

    proxy.shutdown();
    // Many checks of the app's sockets later, the app still listens: so does the proxy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut during, _during_conn) = h1_conn(addr, &pki).await;
    assert_eq!(h1_get(&mut during, "/during-pause").await.status(), 200);
    assert!(!proxy.is_closing(), "still accepting while the app listens");

    // The app stops listening: new connections are refused, long before the drain delay.
    app.kill();
    wait_refused(addr).await;
    assert!(proxy.is_closing());
    exits_once_drained(proxy).await;
}

/// An app that is already gone when the proxy gets SIGTERM (native sidecars are stopped after
/// the app): connections are refused at once, not accepted and answered 502.
#[tokio::test]
async fn draining_after_the_app_exited_refuses_at_once() {
    let (_pki, app, proxy) = draining_proxy(Duration::from_secs(600), None).await;
    app.kill();
    tokio::task::yield_now().await;
    proxy.shutdown();
    wait_refused(proxy.listen[0]).await;
    exits_once_drained(proxy).await;
}

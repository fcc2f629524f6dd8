//! Idle HTTP/1.1 client connections are parked (hyper's connection taken apart, its buffers
//! freed) and resumed by their next byte: nothing read is lost, a request split across the park
//! is answered, an upgrade after a park still closes both ways, and draining closes a parked
//! connection. Raw HTTP/1.1 over real TLS on loopback; `park_after` is shortened to 100 ms.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PARK_AFTER: Duration = Duration::from_millis(100);

/// Reads one response with a `content-length` body: (head, body).
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> (String, String) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8(body).unwrap())
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> (String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(s).await
}

struct Setup {
    _app: App,
    proxy: tls_steal_sidecar::proxy::ProxyHandle,
    pki: Pki,
    parked: String,
    open: String,
}

async fn setup() -> Setup {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.park_after = PARK_AFTER;
    let proxy = start_proxy(cfg).await;
    let p = app.addr.port();
    Setup {
        parked: format!("tls_steal_client_connections_parked{{port=\"{p}\"}}"),
        open: format!("tls_steal_client_connections{{port=\"{p}\"}}"),
        _app: app,
        proxy,
        pki,
    }
}

#[tokio::test]
async fn an_idle_connection_parks_and_every_next_request_is_answered() {
    let s = setup().await;
    let admin = s.proxy.admin.unwrap();
    let mut tls = tls_connect(s.proxy.listen[0], &ClientOpts::new(&s.pki, &["http/1.1"]))
        .await
        .unwrap();
    assert!(get(&mut tls, "/one").await.0.starts_with("HTTP/1.1 200"));
    wait_metric(admin, &s.parked, 1).await;

    // Woken by its next request, answered, and parked again.
    let (head, body) = get(&mut tls, "/two").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(body.contains("\"/two\""), "{body}");
    assert_eq!(metric(admin, &s.parked).await, 0, "awake while answering");
    wait_metric(admin, &s.parked, 1).await;

    // A head split across the quiet time: the bytes hyper had read come back first.
    tls.write_all(b"GET /three HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(PARK_AFTER * 4).await;
    tls.write_all(b"st: app.test\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("\"/three\""), "{body}");

    // Two requests in one write (pipelined) after a park: both answered, in order.
    wait_metric(admin, &s.parked, 1).await;
    tls.write_all(
        b"GET /four HTTP/1.1\r\nHost: app.test\r\n\r\nGET /five HTTP/1.1\r\nHost: app.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(read_response(&mut tls).await.1.contains("\"/four\""));
    assert!(read_response(&mut tls).await.1.contains("\"/five\""));

    // The client leaves while parked: the connection ends and nothing stays counted.
    wait_metric(admin, &s.parked, 1).await;
    drop(tls);
    wait_metric(admin, &s.parked, 0).await;
    wait_metric(admin, &s.open, 0).await;
}

#[tokio::test]
async fn an_upgrade_after_a_park_still_closes_both_ways() {
    let s = setup().await;
    let admin = s.proxy.admin.unwrap();
    let mut tls = tls_connect(s.proxy.listen[0], &ClientOpts::new(&s.pki, &["http/1.1"]))
        .await
        .unwrap();
    assert!(get(&mut tls, "/before").await.0.starts_with("HTTP/1.1 200"));
    wait_metric(admin, &s.parked, 1).await;
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = read_response(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Longer than the quiet time: an upgraded connection is never parked.
    tokio::time::sleep(PARK_AFTER * 3).await;
    tls.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    assert_eq!(metric(admin, &s.parked).await, 0);
    // The client's close reaches the app, and the app's close comes back: EOF, not a hang.
    tls.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest))
        .await
        .expect("the upgraded connection closes")
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn draining_closes_a_parked_connection() {
    let s = setup().await;
    let admin = s.proxy.admin.unwrap();
    let mut tls = tls_connect(s.proxy.listen[0], &ClientOpts::new(&s.pki, &["http/1.1"]))
        .await
        .unwrap();
    assert!(get(&mut tls, "/a").await.0.starts_with("HTTP/1.1 200"));
    wait_metric(admin, &s.parked, 1).await;
    s.proxy.shutdown();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest))
        .await
        .expect("closed while draining")
        .unwrap();
    assert_eq!(n, 0, "closed between requests: nothing more was sent");
}

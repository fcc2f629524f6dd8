//! Bad input never crashes the proxy nor disturbs other connections: each case runs while a
//! good client keeps making requests that must all succeed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tls_steal_test_support::client::read_raw_response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct World {
    pki: Pki,
    _app: App,
    proxy: tls_steal_sidecar::proxy::ProxyHandle,
}

async fn world() -> World {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.header_read_timeout = Duration::from_secs(1);
    cfg.idle_timeout = Duration::from_secs(2);
    cfg.handshake_timeout = Duration::from_secs(1);
    cfg.max_header_bytes = 16 * 1024;
    let proxy = start_proxy(cfg).await;
    World {
        pki,
        _app: app,
        proxy,
    }
}

/// Runs `bad` while good requests (one long-lived h2 connection, fresh h1 connections) go on.
async fn beside<F: std::future::Future<Output = ()>>(w: &World, bad: F) {
    let addr = w.proxy.listen[0];
    let h2 = ClientOpts::new(&w.pki, &["h2"]);
    let h1 = ClientOpts::new(&w.pki, &["http/1.1"]);
    let mut long = Conn::open(addr, &h2).await.unwrap();
    let good = async {
        for i in 0..10 {
            let (s, _) = long
                .get(&format!("/good/{i}"))
                .await
                .expect("good h2 request");
            assert_eq!(s, 200);
            get_seen(addr, &h1, "/good-fresh")
                .await
                .expect("good h1 request");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    };
    tokio::join!(good, bad);
    // And after.
    get_seen(addr, &h1, "/after")
        .await
        .expect("request after the bad input");
}

async fn closed_within(s: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Garbage that is not TLS goes to the app untouched (which closes on it, as without the
/// proxy); garbage inside a TLS handshake record ends the connection at the proxy. Both are
/// counted, and the proxy serves on.
#[tokio::test]
async fn garbage_bytes_instead_of_tls() {
    let w = world().await;
    let addr: SocketAddr = w.proxy.listen[0];
    beside(&w, async {
        for garbage in [
            &b"\x00\xffGET / HTTP/1.1\r\n\r\n garbage garbage garbage\x16\x03\x01\x00\x05hello"[..],
            &b"\x16\x03\x01\x00\x05hello garbage"[..],
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(garbage).await.unwrap();
            assert!(closed_within(&mut s, Duration::from_secs(3)).await);
        }
    })
    .await;
    let m = admin_get(w.proxy.admin.unwrap(), "/metrics").await.1;
    assert!(
        m.lines()
            .any(|l| l.contains("reason=\"not_tls\"") && !l.ends_with(" 0")),
        "{m}"
    );
}

#[tokio::test]
async fn client_hello_without_sni() {
    let w = world().await;
    let addr = w.proxy.listen[0];
    beside(&w, async {
        let mut o = ClientOpts::new(&w.pki, &["http/1.1"]);
        o.sni = None;
        let seen = get_seen(addr, &o, "/nosni").await.unwrap();
        assert_eq!(
            seen.sni.as_deref(),
            Some("app.test"),
            "SNI toward the app from the Host header"
        );
    })
    .await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let w = world().await;
    let addr = w.proxy.listen[0];
    beside(&w, async {
        let mut tls = tls_connect(addr, &ClientOpts::new(&w.pki, &["http/1.1"]))
            .await
            .unwrap();
        let big = "a".repeat(64 * 1024);
        let req = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {big}\r\n\r\n");
        let _ = tls.write_all(req.as_bytes()).await;
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut resp)).await;
        let text = String::from_utf8_lossy(&resp);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "{text}"
        );
        // HTTP/2: a header list over the limit is refused without hurting the connection's peers.
        let mut c = Conn::open(addr, &ClientOpts::new(&w.pki, &["h2"]))
            .await
            .unwrap();
        let req = c
            .request("GET", "/big")
            .header("x-big", big)
            .body(empty())
            .unwrap();
        if let Ok(r) = c.send(req).await {
            assert_ne!(r.status(), 200);
        }
    })
    .await;
}

#[tokio::test]
async fn slow_client_is_timed_out() {
    let w = world().await;
    let addr = w.proxy.listen[0];
    beside(&w, async {
        // Slow request head (slowloris): closed after the header read timeout.
        let mut tls = tls_connect(addr, &ClientOpts::new(&w.pki, &["http/1.1"]))
            .await
            .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: app").await.unwrap();
        let start = Instant::now();
        assert!(
            closed_within(&mut tls, Duration::from_secs(5)).await,
            "slow head never timed out"
        );
        assert!(start.elapsed() >= Duration::from_millis(500));
        // A TCP connection that never starts the handshake.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut tcp, Duration::from_secs(5)).await,
            "silent handshake never timed out"
        );
    })
    .await;
    let m = admin_get(w.proxy.admin.unwrap(), "/metrics").await.1;
    assert!(
        m.lines()
            .any(|l| l.contains("reason=\"timeout\"") && !l.ends_with(" 0")),
        "{m}"
    );
}

#[tokio::test]
async fn http1_keep_alive_outlives_the_header_timeout_and_closes_when_idle() {
    let w = world().await;
    let addr = w.proxy.listen[0];
    beside(&w, async {
        let mut tls = tls_connect(addr, &ClientOpts::new(&w.pki, &["http/1.1"]))
            .await
            .unwrap();
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
        tls.write_all(get("/first").as_bytes()).await.unwrap();
        assert_eq!(read_raw_response(&mut tls).await.0, 200);
        // Longer than the header read timeout (1 s) between requests: still open, as the app
        // would keep it (an ingress reusing it now must not find it closing).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tls.write_all(get("/second").as_bytes()).await.unwrap();
        assert_eq!(read_raw_response(&mut tls).await.0, 200);
        // Then idle past the idle timeout (2 s): closed.
        let idle_from = Instant::now();
        assert!(
            closed_within(&mut tls, Duration::from_secs(6)).await,
            "idle keep-alive connection never closed"
        );
        let idle = idle_from.elapsed();
        assert!(idle >= Duration::from_millis(1900), "closed after {idle:?}");
    })
    .await;
}

#[tokio::test]
async fn http2_silent_and_idle_connections_are_closed_streaming_ones_kept() {
    let w = world().await;
    let addr = w.proxy.listen[0];
    let h2 = ClientOpts::new(&w.pki, &["h2"]);
    beside(&w, async {
        // TLS done, then not even the HTTP/2 preface: closed after the header timeout (1 s).
        let mut tls = tls_connect(addr, &h2).await.unwrap();
        let start = Instant::now();
        assert!(
            closed_within(&mut tls, Duration::from_secs(5)).await,
            "silent h2 connection never timed out"
        );
        assert!(start.elapsed() >= Duration::from_millis(900));

        // One request, then nothing: closed after the idle timeout (2 s) with GOAWAY.
        let tls = tls_connect(addr, &h2).await.unwrap();
        let (mut s, conn) = h2_client(tls).await;
        let req = http::Request::get("https://app.test/once")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert_eq!(s.send_request(req).await.unwrap().status(), 200);
        let idle_from = Instant::now();
        tokio::time::timeout(Duration::from_secs(6), conn)
            .await
            .expect("idle h2 connection never closed")
            .unwrap()
            .expect("closed cleanly (GOAWAY), not torn down");
        let idle = idle_from.elapsed();
        assert!(idle >= Duration::from_millis(1900), "closed after {idle:?}");

        // A response still streaming after the idle timeout keeps its connection.
        let mut conn = Conn::open(addr, &h2).await.unwrap();
        let req = conn
            .request("GET", "/download/4194304")
            .body(empty())
            .unwrap();
        let resp = conn.send(req).await.unwrap();
        let start = Instant::now();
        let mut body = resp.into_body();
        let mut n = 0;
        while let Some(f) = http_body_util::BodyExt::frame(&mut body).await {
            n += f.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
            if start.elapsed() < Duration::from_secs(3) {
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
        assert_eq!(n, 4 << 20);
        assert!(start.elapsed() >= Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn client_vanishing_mid_body() {
    let w = world().await;
    let addr = w.proxy.listen[0];
    beside(&w, async {
        for alpn in ["http/1.1", "h2"] {
            let mut tls = tls_connect(addr, &ClientOpts::new(&w.pki, &[alpn]))
                .await
                .unwrap();
            if alpn == "http/1.1" {
                tls.write_all(
                    b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10000000\r\n\r\n",
                )
                .await
                .unwrap();
                tls.write_all(&vec![b'x'; 1 << 20]).await.unwrap();
                drop(tls);
            } else {
                let (mut s, conn) = h2_client(tls).await;
                let (mut tx, body) = futures::channel::mpsc::channel::<
                    Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>,
                >(4);
                let req = http::Request::post("https://app.test/upload")
                    .body(http_body_util::BodyExt::boxed(
                        http_body_util::StreamBody::new(body),
                    ))
                    .unwrap();
                let pending = tokio::spawn(async move { s.send_request(req).await });
                use futures::SinkExt;
                tx.send(Ok(hyper::body::Frame::data(bytes::Bytes::from(
                    vec![b'y'; 256 * 1024],
                ))))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                conn.abort();
                pending.abort();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#![forbid(unsafe_code)]
//! Streams on the stolen path, through the real proxy: a WebSocket upgrade bridged to the
//! session (extended CONNECT), a streamed 100 MiB body both ways, trailers both ways.

mod common;
mod session_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{ClientOpts, Conn, h1_handshake};
use session_common::{World, default_handler, register, served_by};

#[tokio::test]
async fn stolen_websocket_is_echoed_by_the_session() {
    let w = World::start().await;
    let s = register(
        w.api,
        &w.reg(Some(HttpFilter::Path("^/ws".into())), Mode::Steal, "ws"),
        default_handler("session"),
    )
    .await
    .unwrap();
    let tls = common::tls_connect(w.addr(), &ClientOpts::new(&w.pki, &["http/1.1"]))
        .await
        .unwrap();
    let mut send = h1_handshake(tls).await;
    let req = Request::get("/ws/chat")
        .header("host", "app.test")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(common::empty())
        .unwrap();
    let mut resp = send.send_request(req).await.unwrap();
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        panic!("{status}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(served_by(&resp), "session");
    assert_eq!(resp.headers()["upgrade"], "websocket");
    assert_eq!(
        resp.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert!(!resp.headers().contains_key("tls-steal-status"));
    let up = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut io = TokioIo::new(up);
    for msg in [
        &b"hello"[..],
        &b"\x81\x05world"[..],
        &vec![7u8; 200_000][..],
    ] {
        io.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    let got = s.got().pop().unwrap();
    assert_eq!(got.protocol.as_deref(), Some("websocket"));
    assert_eq!(got.method, "CONNECT");
    assert_eq!(got.meta.upgrade.as_deref(), Some("websocket"));
    assert!(got.headers.iter().any(|(n, _)| n == "sec-websocket-key"));
    // The app never saw it.
    assert!(w.app.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn stolen_100_mib_body_streams_both_ways() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let w = World::start().await;
    let _s = register(
        w.api,
        &w.reg(Some(HttpFilter::Path("^/echo".into())), Mode::Steal, "big"),
        default_handler("session"),
    )
    .await
    .unwrap();
    for alpn in ["h2", "http/1.1"] {
        let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &[alpn]))
            .await
            .unwrap();
        let chunk = Bytes::from((0..64 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let n_chunks = TOTAL / chunk.len();
        let stream = futures::stream::iter(
            (0..n_chunks).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
        );
        let req = c
            .request("POST", "/echo/big")
            .body(StreamBody::new(stream).boxed())
            .unwrap();
        let start = Instant::now();
        let resp = c.send(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(served_by(&resp), "session");
        let mut body = resp.into_body();
        let (mut n, mut sum) = (0usize, 0u64);
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                for (i, b) in d.iter().enumerate() {
                    if (n + i) % 4099 == 0 {
                        assert_eq!(*b, ((n + i) % (64 * 1024) % 251) as u8, "byte {}", n + i);
                    }
                }
                sum += d.len() as u64;
                n += d.len();
            }
        }
        assert_eq!(n, TOTAL, "{alpn}");
        assert_eq!(sum as usize, TOTAL);
        eprintln!(
            "{alpn}: 100 MiB up and back through the session in {:?}",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn stolen_request_and_response_trailers() {
    let w = World::start().await;
    let _s = register(
        w.api,
        &w.reg(
            Some(HttpFilter::Path("^/trailers$".into())),
            Mode::Steal,
            "grpc",
        ),
        default_handler("session"),
    )
    .await
    .unwrap();
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["h2"]))
        .await
        .unwrap();
    let mut req_trailers = HeaderMap::new();
    req_trailers.insert("x-req-trailer", "from-client".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"0123456789"))),
        Ok(Frame::trailers(req_trailers)),
    ];
    let req = c
        .request("POST", "/trailers")
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures::stream::iter(frames)).boxed())
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(served_by(&resp), "session");
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-req-trailer-seen"], "from-client");
    assert_eq!(collected.to_bytes(), "received 10 bytes");
}

#[tokio::test]
async fn a_refused_stolen_upgrade_reaches_the_client_as_the_local_app_answered() {
    let w = World::start().await;
    let handler: session_common::Handler = std::sync::Arc::new(|_got, mut req| {
        Box::pin(async move {
            if req.uri().path() == "/ws-forbidden" {
                // The local app answered 403 with a body: the session relays it on the stream.
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = on.await {
                        let mut io = TokioIo::new(up);
                        let _ = io.write_all(b"forbidden by the local app").await;
                        let _ = io.shutdown().await;
                    }
                });
                let mut r = http::Response::new(session_common::full(Bytes::new()));
                r.headers_mut()
                    .insert("tls-steal-status", "403".parse().unwrap());
                r.headers_mut().insert("x-local", "yes".parse().unwrap());
                r
            } else {
                let mut r = http::Response::new(session_common::full("no such socket"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        })
    });
    let _s = register(w.api, &w.reg(None, Mode::Steal, "refuser"), handler)
        .await
        .unwrap();
    for (path, status, body) in [
        (
            "/ws-forbidden",
            StatusCode::FORBIDDEN,
            "forbidden by the local app",
        ),
        ("/ws-missing", StatusCode::NOT_FOUND, "no such socket"),
    ] {
        let tls = common::tls_connect(w.addr(), &ClientOpts::new(&w.pki, &["http/1.1"]))
            .await
            .unwrap();
        let mut send = h1_handshake(tls).await;
        let req = Request::get(path)
            .header("host", "app.test")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .body(common::empty())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert!(!resp.headers().contains_key("tls-steal-status"));
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, body, "{path}");
    }
}

//! An app that closes its connections: by its own keep-alive timeout while they are held or
//! kept idle, or just as a request reaches one that sat idle. Clients must not notice, except
//! that a request the app may have acted on is not sent twice.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn an_app_closing_idle_connections_is_invisible_to_clients_that_paused() {
    let pki = Pki::new();
    let app = App::start_closing_idle(&pki, Duration::from_millis(1500)).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    // Two clients hold their app connections; a third leaves, so its goes to the idle list.
    let (mut a, mut b) = (
        Conn::open(proxy.listen[0], &o).await.unwrap(),
        Conn::open(proxy.listen[0], &o).await.unwrap(),
    );
    assert_eq!(a.get("/a1").await.unwrap().0, 200);
    assert_eq!(b.get("/b1").await.unwrap().0, 200);
    let mut c = Conn::open(proxy.listen[0], &o).await.unwrap();
    assert_eq!(c.get("/c1").await.unwrap().0, 200);
    drop(c);
    assert_eq!(upstream_connects(&proxy).await, 3);
    // The app closes all three after 1.5 s; the proxy lets go of them, held or kept idle.
    let mut open = 3;
    for _ in 0..50 {
        open = upstream_open(&proxy).await;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        open, 0,
        "app connections the app closed are still counted open"
    );
    // Past the reclaim too: every request is answered, each over a new app connection.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.get("/a2").await.unwrap().0, 200);
    assert_eq!(b.get("/b2").await.unwrap().0, 200);
    let mut d = Conn::open(proxy.listen[0], &o).await.unwrap();
    assert_eq!(d.get("/d1").await.unwrap().0, 200);
    assert_eq!(app.last().uri, "/d1");
    assert_eq!(upstream_connects(&proxy).await, 6);
}

/// An HTTP/1.1 app that answers the first request of each connection and, on reading the
/// second, closes the connection without an answer: its keep-alive timeout firing just as a
/// request arrives. Returns its address and the request lines it read.
async fn app_closing_on_second_request(pki: &Pki) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(
        ServerTls::leaf(&pki.server_leaf)
            .alpn(&["http/1.1"])
            .build(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                for n in 0.. {
                    let Some(end) = tls_steal_test_support::read_head(&mut s, &mut buf).await
                    else {
                        return;
                    };
                    let head: Vec<u8> = buf.drain(..end).collect();
                    let line = String::from_utf8_lossy(&head);
                    log.lock()
                        .unwrap()
                        .push(line.lines().next().unwrap_or("").to_owned());
                    if n == 1 {
                        return; // closed, unanswered
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn an_idempotent_request_the_app_closed_on_is_sent_again_once_and_a_post_is_not() {
    let pki = Pki::new();
    let (app, seen) = app_closing_on_second_request(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.port()), app)).await;
    let mut c = Conn::open(proxy.listen[0], &ClientOpts::new(&pki, &["http/1.1"]))
        .await
        .unwrap();
    assert_eq!(c.get("/1").await.unwrap().0, 200);
    // Past the sweeper's ticks, the connection has sat idle: the app closes it on reading the
    // GET, which goes again on a new connection and is answered there.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = c.get("/2").await.unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status.as_u16(), &*body), (200, "ok"));
    assert_eq!(upstream_connects(&proxy).await, 2);
    // A POST after the same pause is not sent twice: the client gets the 502.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let req = c
        .request("POST", "/3")
        .body(tls_steal_test_support::full("x"))
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status(), 502);
    // And without a pause no copy is kept: a GET the app closes on is answered 502 too.
    assert_eq!(c.get("/4").await.unwrap().0, 200);
    assert_eq!(c.get("/5").await.unwrap().0, 502);
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "GET /1 HTTP/1.1",
            "GET /2 HTTP/1.1",
            "GET /2 HTTP/1.1",
            "POST /3 HTTP/1.1",
            "GET /4 HTTP/1.1",
            "GET /5 HTTP/1.1",
        ]
    );
}

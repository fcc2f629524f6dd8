//! The forward path: HTTP/1.1 and HTTP/2 through the proxy with TLS on both sides, SNI, ALPN
//! and headers as the app sees them, trailers, WebSocket upgrade, sniffing without ALPN, curl.
//!
//! Over 400 lines: one test per forwarding behaviour, over the same app and proxy helpers.

mod common;

use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn http1_forward_keeps_sni_alpn_and_headers() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    let mut c = Conn::open(proxy.listen[0], &o).await.unwrap();
    assert!(!c.is_h2());
    let req = c
        .request("GET", "/info?q=1")
        .header("X-Custom-Header", "Value With Spaces")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .body(empty())
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Seen =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen.sni.as_deref(), Some("app.test"));
    assert_eq!(seen.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.uri, "/info?q=1");
    assert_eq!(seen.header("host"), Some("app.test"));
    assert_eq!(seen.header("x-custom-header"), Some("Value With Spaces"));
    let multi: Vec<_> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "x-multi")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(multi, ["a", "b"]);
    assert!(!seen.client_cert);
    // Keep-alive: a second request on the same connection.
    let (status, _) = c.get("/again").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(app.last().uri, "/again");
}

#[tokio::test]
async fn http2_forward_keeps_sni_alpn_and_authority() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let o = ClientOpts::new(&pki, &["h2", "http/1.1"]);
    let mut c = Conn::open(proxy.listen[0], &o).await.unwrap();
    assert!(c.is_h2());
    let req = c
        .request("POST", "/info")
        .header("x-trace", "t1")
        .body(body_of("hello"))
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Seen =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen.sni.as_deref(), Some("app.test"));
    assert_eq!(seen.alpn.as_deref(), Some("h2"));
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "https://app.test/info");
    assert_eq!(seen.header("x-trace"), Some("t1"));
    assert_eq!(
        seen.header("host"),
        None,
        "no Host invented toward an h2 app"
    );
    // Many concurrent streams on the one client connection.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut c2 = match &c {
            Conn::H2(s) => Conn::H2(s.clone()),
            Conn::H1(_) => unreachable!(),
        };
        tasks.push(tokio::spawn(async move {
            c2.get(&format!("/slow?i={i}")).await.unwrap().0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn http2_app_is_reconnected_once_not_once_per_waiting_request() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.upstream_idle_timeout = std::time::Duration::from_millis(300);
    let proxy = start_proxy(cfg).await;
    let o = ClientOpts::new(&pki, &["h2"]);
    let c = Conn::open(proxy.listen[0], &o).await.unwrap();
    let burst = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let mut c2 = match &c {
                    Conn::H2(s) => Conn::H2(s.clone()),
                    Conn::H1(_) => unreachable!(),
                };
                tokio::spawn(async move { c2.get(&format!("/b?i={i}")).await.unwrap().0 })
            })
            .collect();
        async move {
            for t in tasks {
                assert_eq!(t.await.unwrap(), 200);
            }
        }
    };
    // The first burst cannot know the app speaks h2 (ALPN comes with the handshake).
    burst(1).await;
    assert_eq!(upstream_connects(&proxy).await, 1);
    // The pooled connection idles out; 100 requests then wait for one new connection.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    burst(100).await;
    assert_eq!(
        upstream_connects(&proxy).await,
        2,
        "one reconnect for the whole burst"
    );
    assert_eq!(app.last().alpn.as_deref(), Some("h2"));
}

#[tokio::test]
async fn http1_clients_reuse_app_connections_across_client_connections() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    // A client that reconnects for every request (`Connection: close`), one after the other:
    // each client connection hands its app connection on to the next.
    reconnecting_clients(proxy.listen[0], &o, 20).await;
    assert_eq!(
        upstream_connects(&proxy).await,
        1,
        "one app connection for all"
    );
    // Two clients at once need two; the app saw every request with its own Host.
    let mut a = Conn::open(proxy.listen[0], &o).await.unwrap();
    let mut b = Conn::open(proxy.listen[0], &o).await.unwrap();
    let (ra, rb) = tokio::join!(a.get("/slow?a"), b.get("/slow?b"));
    assert_eq!(ra.unwrap().0, 200);
    assert_eq!(rb.unwrap().0, 200);
    assert_eq!(upstream_connects(&proxy).await, 2);
    assert_eq!(app.last().header("host"), Some("app.test"));
    assert!(
        app.last().header("connection").is_none(),
        "the client's Connection header is not forwarded"
    );
}

/// GET `path` with `host` as its `Host`; the status, the body read to its end.
async fn get(c: &mut Conn, path: &str, host: &str) -> u16 {
    let req = http::Request::get(path).header("host", host);
    let resp = c.send(req.body(empty()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn an_app_connection_handed_on_by_a_client_that_stays_connected_still_answers() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    // Without SNI the app connection follows the Host: a client that changes it hands its app
    // connection (driven by its own task until then) to the idle list and stays connected.
    let mut o = ClientOpts::new(&pki, &["http/1.1"]);
    o.sni = None;
    let mut a = Conn::open(proxy.listen[0], &o).await.unwrap();
    assert_eq!(get(&mut a, "/a1", "app.test").await, 200);
    assert_eq!(get(&mut a, "/a2", "localhost").await, 200);
    assert_eq!(upstream_connects(&proxy).await, 2);
    // Another client takes the first one from the idle list: it answers, though the client that
    // made it is still open, and idle.
    let mut b = Conn::open(proxy.listen[0], &o).await.unwrap();
    assert_eq!(get(&mut b, "/b", "app.test").await, 200);
    assert_eq!(app.last().uri, "/b");
    assert_eq!(upstream_connects(&proxy).await, 2, "no new app connection");
    assert_eq!(get(&mut a, "/a3", "localhost").await, 200);
}

#[tokio::test]
async fn without_sni_every_request_reaches_the_app_under_its_own_host() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    // The held app connection remembers the Host its key was checked with: the same Host
    // skips building the key, another one (or another spelling of the same name) still goes
    // through it.
    let mut o = ClientOpts::new(&pki, &["http/1.1"]);
    o.sni = None;
    let mut c = Conn::open(proxy.listen[0], &o).await.unwrap();
    let mut connects: u64 = 0;
    for (i, (host, sni, new_conn)) in [
        ("app.test", "app.test", true),
        ("app.test", "app.test", false),
        ("app.test:443", "app.test", false),
        ("localhost", "localhost", true),
        ("localhost", "localhost", false),
        ("app.test", "app.test", false),
        ("app.test", "app.test", false),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/r{i}");
        assert_eq!(get(&mut c, &path, host).await, 200, "{host}");
        let seen = app.last();
        assert_eq!(seen.uri, path);
        assert_eq!(
            seen.sni.as_deref(),
            Some(sni),
            "request {i} with Host {host}"
        );
        assert_eq!(seen.header("host"), Some(host));
        connects += u64::from(new_conn);
        assert_eq!(upstream_connects(&proxy).await, connects, "request {i}");
    }
}

#[tokio::test]
async fn http2_without_sni_every_stream_reaches_the_app_under_its_own_authority() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    // The connection remembers its last pool: the same authority skips building the key,
    // another one (or another spelling of the same name) goes through it to its own pool. A
    // name's pool reaches an h2 app first through its ALPN-offering client, then through its
    // h2-only one: two app connections per name.
    let mut o = ClientOpts::new(&pki, &["h2"]);
    o.sni = None;
    let mut c = Conn::open(proxy.listen[0], &o).await.unwrap();
    assert!(c.is_h2());
    let mut connects: u64 = 0;
    for (i, (authority, sni, new_conn)) in [
        ("app.test", "app.test", true),
        ("app.test", "app.test", true),
        ("app.test", "app.test", false),
        // Same pool, but hyper's client keeps its connections per authority as written.
        ("app.test:443", "app.test", true),
        ("app.test:443", "app.test", false),
        ("localhost", "localhost", true),
        ("localhost", "localhost", true),
        ("localhost", "localhost", false),
        ("app.test", "app.test", false),
    ]
    .into_iter()
    .enumerate()
    {
        let uri = format!("https://{authority}/s{i}");
        let req = http::Request::get(&uri).body(empty()).unwrap();
        let resp = c.send(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{uri}");
        resp.into_body().collect().await.unwrap();
        let seen = app.last();
        assert_eq!(seen.uri, uri);
        assert_eq!(seen.sni.as_deref(), Some(sni), "stream {i} to {authority}");
        connects += u64::from(new_conn);
        assert_eq!(upstream_connects(&proxy).await, connects, "stream {i}");
    }
}

#[tokio::test]
async fn idle_http1_clients_pin_no_app_connection_and_come_back_to_a_warm_one() {
    use tls_steal_sidecar::proxy::KEEP_IDLE;
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    // More keep-alive clients than the idle list keeps, each holding its own app connection.
    let n = KEEP_IDLE + 4;
    let mut clients = Vec::new();
    for i in 0..n {
        let mut c = Conn::open(proxy.listen[0], &o).await.unwrap();
        assert_eq!(c.get(&format!("/a{i}")).await.unwrap().0, 200);
        clients.push(c);
    }
    assert_eq!(upstream_open(&proxy).await, n as i64);
    assert_eq!(upstream_connects(&proxy).await, n as u64);
    // All stay connected but silent: their app connections go to the idle list after two ticks
    // of the sweeper, and no request needs them there, so the purge closes all but KEEP_IDLE.
    let mut open = n as i64;
    for _ in 0..75 {
        open = upstream_open(&proxy).await;
        if open <= KEEP_IDLE as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        open, KEEP_IDLE as i64,
        "idle clients still pin app connections"
    );
    // Three more ticks: the kept ones stay (only the upstream idle timeout closes them).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(upstream_open(&proxy).await, KEEP_IDLE as i64);
    // Clients coming back after the pause are answered over kept connections, no handshake.
    for i in [0, n - 1] {
        assert_eq!(clients[i].get(&format!("/b{i}")).await.unwrap().0, 200);
        assert_eq!(app.last().uri, format!("/b{i}"));
    }
    assert_eq!(upstream_connects(&proxy).await, n as u64);
}

#[tokio::test]
async fn http2_client_to_http1_only_app_gets_host_from_authority() {
    let pki = Pki::new();
    let app = App::start_with(AppOptions {
        leaf: pki.server_leaf.clone(),
        alpn: vec!["http/1.1"],
        client_roots: vec![],
    })
    .await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let seen = get_seen(proxy.listen[0], &ClientOpts::new(&pki, &["h2"]), "/info")
        .await
        .unwrap();
    assert_eq!(seen.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.header("host"), Some("app.test"));
}

#[tokio::test]
async fn no_alpn_is_sniffed_and_sni_falls_back_to_authority() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    plan.agent_as_server.alpn_protocols.clear();
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    // HTTP/1.1 without ALPN and without SNI: the app sees SNI from the Host header.
    let mut o = ClientOpts::new(&pki, &[]);
    o.sni = None;
    let seen = get_seen(proxy.listen[0], &o, "/info").await.unwrap();
    assert_eq!(seen.alpn, None);
    assert_eq!(seen.sni.as_deref(), Some("app.test"));
    assert_eq!(seen.version, "HTTP/1.1");
    // HTTP/2 prior knowledge without ALPN is sniffed from the preface.
    let tls = tls_connect(proxy.listen[0], &ClientOpts::new(&pki, &[]))
        .await
        .unwrap();
    let (mut s, _conn) = h2_client(tls).await;
    let resp = s
        .send_request(
            http::Request::get("https://app.test/h2pk")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.last().uri, "/h2pk");
}

#[tokio::test]
async fn trailers_pass_through_http2() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let mut c = Conn::open(proxy.listen[0], &ClientOpts::new(&pki, &["h2"]))
        .await
        .unwrap();
    let req = c
        .request("POST", "/trailers")
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let resp = c.send(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("x-checksum").unwrap(), "abc123");
    assert_eq!(&collected.to_bytes()[..], b"body-before-trailers");
}

#[tokio::test]
async fn websocket_upgrade_echoes() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let mut tls = tls_connect(proxy.listen[0], &ClientOpts::new(&pki, &["http/1.1"]))
        .await
        .unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in [
        &b"frame-one"[..],
        b"second frame, longer",
        &[0u8, 1, 2, 255],
    ] {
        tls.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tls.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
    let seen = app.last();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
}

/// curl (Debian package `curl`, built with HTTP/2) as an independent client.
#[tokio::test]
async fn curl_http1_and_http2() {
    if std::process::Command::new("curl")
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("curl is required (apt-get install curl)");
    }
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.addr.port()), app.addr)).await;
    let port = proxy.listen[0].port();
    for (flag, alpn) in [("--http1.1", "http/1.1"), ("--http2", "h2")] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--fail",
                flag,
                "--cacert",
                &pki.path("server-root.crt"),
            ])
            .args(["--resolve", &format!("app.test:{port}:127.0.0.1")])
            .args(["-H", "X-From-Curl: yes"])
            .arg(format!("https://app.test:{port}/curl"))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: Seen = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen.alpn.as_deref(), Some(alpn));
        assert_eq!(seen.sni.as_deref(), Some("app.test"));
        assert_eq!(seen.header("x-from-curl"), Some("yes"));
    }
}

/// An HTTPS app that closes every connection after one answer (`Connection: close`), so a kept
/// app connection is always gone by the client's next request.
async fn closing_app(pki: &Pki) -> std::net::SocketAddr {
    let cfg = ServerTls::leaf(&pki.server_leaf)
        .alpn(&["http/1.1"])
        .build();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0u32;
        while let Ok((tcp, _)) = listener.accept().await {
            n += 1;
            let (acceptor, conn_no) = (acceptor.clone(), n);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(format!("conn {conn_no}"))),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_kept_app_connection_the_app_closed_is_replaced_without_an_error() {
    let pki = Pki::new();
    let app = closing_app(&pki).await;
    let proxy = start_proxy(test_config(port_plan(&pki, app.port()), app)).await;
    let mut c = Conn::open(proxy.listen[0], &ClientOpts::new(&pki, &["http/1.1"]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (status, body) = c.get("/").await.unwrap();
        assert_eq!(status, 200);
        seen.push(String::from_utf8(body.to_vec()).unwrap());
    }
    assert_eq!(seen, ["conn 1", "conn 2", "conn 3", "conn 4", "conn 5"]);
    assert_eq!(upstream_connects(&proxy).await, 5);
}

/// One raw exchange through a proxy in front of a raw TLS app that answers `answer` (and then
/// closes): what the app read of the request head, and the client's (status, head, body).
async fn raw_exchange(request: &[u8], answer: &'static [u8]) -> (String, (u16, String, String)) {
    use tls_steal_test_support::{read_head, read_raw_response};
    let pki = Pki::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = listener.local_addr().unwrap();
    let tls = ServerTls::leaf(&pki.server_leaf)
        .alpn(&["http/1.1"])
        .build();
    let app = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(tls)
            .accept(tcp)
            .await
            .unwrap();
        let mut buf = Vec::new();
        let end = read_head(&mut tls, &mut buf).await.unwrap();
        tls.write_all(answer).await.unwrap();
        tls.shutdown().await.unwrap();
        String::from_utf8(buf[..end].to_vec()).unwrap()
    });
    let proxy = start_proxy(test_config(port_plan(&pki, app_addr.port()), app_addr)).await;
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    let mut c = tls_connect(proxy.listen[0], &o).await.unwrap();
    c.write_all(request).await.unwrap();
    let response = read_raw_response(&mut c).await;
    (app.await.unwrap(), response)
}

/// HTTP/1.1 header names reach the app, and the app's come back, in the case they were written,
/// as without the proxy (hyper alone would lowercase them; legacy apps and clients can care).
#[tokio::test]
async fn http1_header_names_keep_their_case() {
    let (seen, (status, head, body)) = raw_exchange(
        b"GET /case HTTP/1.1\r\nHost: app.test\r\nX-Custom-Header: Value\r\nACCEPT: */*\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-App-Header: Yes\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(head.contains("\r\nX-App-Header: Yes\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("\r\ndate:"),
        "no Date the app did not send: {head}"
    );
    assert!(
        seen.contains("\r\nX-Custom-Header: Value\r\n") && seen.contains("\r\nACCEPT: */*\r\n"),
        "{seen}"
    );
}

/// An HTTP/1.0 client's request reaches the app as HTTP/1.0, and the app's HTTP/1.0 answer
/// comes back as such, as without the proxy.
#[tokio::test]
async fn http1_0_requests_reach_the_app_as_http1_0() {
    let (seen, (status, head, body)) = raw_exchange(
        b"GET /old HTTP/1.0\r\nHost: app.test\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(seen.starts_with("GET /old HTTP/1.0\r\n"), "{seen}");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
}

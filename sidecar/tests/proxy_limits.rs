//! Bounded under hostile clients: the upstream pool map (keys chosen by clients), the client
//! connections per port, and the admin listener's header timeout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::BodyExt;
use tls_steal_sidecar::proxy::MAX_POOLS_PER_PORT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);

type Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>;

/// An HTTP/2 connection without SNI, so each request's `:authority` picks its pool.
async fn h2_no_sni(addr: SocketAddr, pki: &Pki) -> Sender {
    let mut o = ClientOpts::new(pki, &["h2"]);
    o.sni = None;
    let tls = tls_connect(addr, &o).await.unwrap();
    h2_client(tls).await.0
}

async fn get(s: &mut Sender, authority: &str, path: &str) -> u16 {
    s.ready().await.unwrap();
    let req = Request::get(format!("https://{authority}{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn client_chosen_names_never_grow_the_pool_map_past_its_cap() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    // Any name reaches the app (its certificate covers only app.test).
    plan.agent_as_client.verification.accept_any_cert = true;
    plan.agent_as_client.verification.trust_roots.clear();
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let (addr, admin) = (proxy.listen[0], proxy.admin.unwrap());
    let pools = format!("tls_steal_upstream_pools{{port=\"{}\"}} ", app.addr.port());

    // A slow request on the first key, evicted by the others while it is in flight.
    let mut first = h2_no_sni(addr, &pki).await;
    let slow = tokio::spawn(async move { get(&mut first, "slow.test", "/sleep/1500").await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut s = h2_no_sni(addr, &pki).await;
    let names = MAX_POOLS_PER_PORT + 40;
    for i in 0..names {
        assert_eq!(
            get(&mut s, &format!("h{i}.test"), "/x").await,
            200,
            "name {i}"
        );
        if i % 8 == 0 {
            let n = metric(admin, &pools).await;
            assert!(n <= MAX_POOLS_PER_PORT as i64, "{n} pools after {i} names");
        }
    }
    assert_eq!(metric(admin, &pools).await, MAX_POOLS_PER_PORT as i64);
    assert_eq!(
        tokio::time::timeout(WAIT, slow).await.unwrap().unwrap(),
        200,
        "an evicted pool's request in flight completes"
    );
    // Names seen before (evicted since) still work: their pools are made again.
    for i in 0..4 {
        assert_eq!(get(&mut s, &format!("h{i}.test"), "/again").await, 200);
    }
    assert!(metric(admin, &pools).await <= MAX_POOLS_PER_PORT as i64);
    assert!(app.last().uri.contains("h3.test"), "{}", app.last().uri);
}

#[tokio::test]
async fn connections_above_the_cap_are_refused_and_counted() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.max_connections = 2;
    let proxy = start_proxy(cfg).await;
    let (addr, admin) = (proxy.listen[0], proxy.admin.unwrap());
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    let mut a = Conn::open(addr, &o).await.unwrap();
    let mut b = Conn::open(addr, &o).await.unwrap();
    assert_eq!(a.get("/a").await.unwrap().0, 200);
    assert_eq!(b.get("/b").await.unwrap().0, 200);

    let refused = tls_connect(addr, &o).await;
    assert!(refused.is_err(), "the third connection is closed at once");
    let p = app.addr.port();
    assert_eq!(
        metric(
            admin,
            &format!("tls_steal_connections_refused_total{{port=\"{p}\"}} ")
        )
        .await,
        1
    );
    assert_eq!(
        metric(
            admin,
            &format!("tls_steal_client_connections{{port=\"{p}\"}} ")
        )
        .await,
        2
    );
    // The open ones are unaffected; once one leaves, a new one gets in.
    assert_eq!(a.get("/a2").await.unwrap().0, 200);
    drop(b);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut c) = Conn::open(addr, &o).await
            && let Ok((status, _)) = c.get("/c").await
        {
            assert_eq!(status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_admin_port_drops_a_client_that_never_finishes_its_request_head() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.header_read_timeout = Duration::from_secs(1);
    let proxy = start_proxy(cfg).await;
    let admin = proxy.admin.unwrap();
    let mut half = tokio::net::TcpStream::connect(admin).await.unwrap();
    half.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, half.read_to_end(&mut buf))
        .await
        .expect("the admin port closes the connection");
    assert!(
        read.is_err() || !String::from_utf8_lossy(&buf).contains("ready"),
        "never answered: {}",
        String::from_utf8_lossy(&buf)
    );
    // Complete requests are still answered.
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
}

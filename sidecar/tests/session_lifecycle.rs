#![forbid(unsafe_code)]
//! Sessions coming and going through the real proxy: the end of a session mid-request, a stuck
//! session closed after its bound, mirror mode with a deliberately slow session, the status
//! report, and bad input on the session API.
//!
//! Over 400 lines: each test one way a session ends, over the same proxy and session harness.

mod common;
mod session_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{Event, Mode, Registration};
use tokio::net::TcpStream;

use common::{ClientOpts, Conn};
use session_common::{
    World, default_handler, raw_registration, read_raw_response, register, register_raw, served_by,
    write_all,
};

#[tokio::test]
async fn session_end_mid_request_gives_502_then_the_app_answers() {
    let w = World::start().await;
    let s = register(
        w.api,
        &w.reg(
            Some(HttpFilter::Path("^/hang".into())),
            Mode::Steal,
            "alice@laptop",
        ),
        default_handler("s"),
    )
    .await
    .unwrap();
    let arrived = s.arrived.clone();
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["http/1.1"]))
        .await
        .unwrap();
    let req = c.request("GET", "/hang").body(common::empty()).unwrap();
    let waiting = arrived.notified();
    let pending = tokio::spawn(async move {
        let resp = c.send(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body, c)
    });
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the session got the request");
    let id = s.id;
    drop(s); // the session's connection closes while the request waits for its answer
    let (status, body, mut c) = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(
        text.contains(&format!("session {id} (alice@laptop) ended")),
        "{text}"
    );
    // The filters are gone: the same request now reaches the app, on the same connection.
    let (status, body) = c.get("/hang").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let seen: common::Seen = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen.uri, "/hang");
    assert!(w.status().await.sessions.is_empty());
    let m = w.metrics().await;
    assert!(m.contains("tls_steal_sessions_active 0"), "{m}");
    assert!(
        m.contains("tls_steal_session_errors_total{kind=\"request_failed\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_session_leaving_with_goaway_stops_taking_requests_at_once_and_answers_its_own() {
    let w = World::start().await;
    let s = register(
        w.api,
        &w.reg(
            Some(HttpFilter::Path("^/slow".into())),
            Mode::Steal,
            "bob@laptop",
        ),
        default_handler("s"),
    )
    .await
    .unwrap();
    w.wait_sessions(1).await;
    // A stolen request in flight (the session answers it after a second).
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["http/1.1"]))
        .await
        .unwrap();
    let req = c.request("GET", "/slow-a").body(common::empty()).unwrap();
    let waiting = s.arrived.notified();
    let pending = tokio::spawn(async move {
        let resp = c.send(req).await.unwrap();
        let who = served_by(&resp);
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, who, body)
    });
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the session got the request");

    // The session sends GOAWAY; the sidecar takes it out of routing as soon as it reads it,
    // while the connection is still open for the answer in flight.
    s.goaway();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w.status().await.sessions.is_empty() {
        assert!(Instant::now() < deadline, "the session never left");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !pending.is_finished() && !s.is_closed(),
        "the session left before its connection ended"
    );

    // At once: a matching request reaches the app, not the leaving session (and no 502).
    let mut c2 = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["http/1.1"]))
        .await
        .unwrap();
    let resp = c2
        .send(c2.request("GET", "/slow-b").body(common::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(served_by(&resp), "app");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen: common::Seen = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen.uri, "/slow-b");

    // The request the session already had is answered by it.
    let (status, who, body) = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(who, "s");
    assert_eq!(s.got().len(), 1);
    let m = w.metrics().await;
    assert!(
        !m.contains("tls_steal_session_errors_total{kind=\"request_failed\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_session_that_stops_answering_is_closed_after_its_bound() {
    let w = World::start_with(&[], Some(|c| c.max_in_flight = 4)).await;
    let s = register(
        w.api,
        &w.reg(None, Mode::Steal, "stuck"),
        default_handler("s"),
    )
    .await
    .unwrap();
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["h2"]))
        .await
        .unwrap();
    let mut waiting = Vec::new();
    for i in 0..4 {
        let req = c
            .request("GET", &format!("/hang/{i}"))
            .body(common::empty())
            .unwrap();
        let mut c2 = match &c {
            Conn::H2(s) => Conn::H2(s.clone()),
            Conn::H1(_) => unreachable!(),
        };
        waiting.push(tokio::spawn(
            async move { c2.send(req).await.unwrap().status() },
        ));
    }
    for _ in 0..500 {
        if s.got().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.got().len(), 4);
    // The fifth request finds the session stuck: it is closed, and the request reaches the app.
    let start = Instant::now();
    let (status, body) = c.get("/hang/5").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(start.elapsed() < Duration::from_secs(2));
    for t in waiting {
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap(),
            StatusCode::BAD_GATEWAY
        );
    }
    w.wait_sessions(0).await;
    assert!(
        w.metrics()
            .await
            .contains("tls_steal_session_errors_total{kind=\"stuck\"} 1")
    );
}

#[tokio::test]
async fn mirror_with_a_slow_session_never_slows_the_real_request() {
    let w = World::start_with(&[], Some(|c| c.mirror_max_in_flight = 8)).await;
    // The session takes a second per copy.
    let s = register(
        w.api,
        &w.reg(
            Some(HttpFilter::Path("^/slow".into())),
            Mode::Mirror,
            "watcher",
        ),
        default_handler("s"),
    )
    .await
    .unwrap();
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["h2"]))
        .await
        .unwrap();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..40 {
        let t = Instant::now();
        // A body too, so the tee is exercised.
        let req = c
            .request("POST", &format!("/slow-mirror/{i}"))
            .body(common::body_of(Bytes::from(vec![b'm'; 100_000])))
            .unwrap();
        let resp = c.send(req).await.unwrap();
        assert_eq!(served_by(&resp), "app", "the app answers mirrored requests");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
        worst = worst.max(t.elapsed());
    }
    assert!(
        worst < Duration::from_millis(900),
        "a real request waited for the slow session: {worst:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        w.app.seen.lock().unwrap().len(),
        40,
        "every real request reached the app"
    );
    // Some copies arrived (mode mirror), the rest were dropped and counted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = s.got();
    assert!(
        !got.is_empty() && got.len() < 40,
        "copies delivered: {}",
        got.len()
    );
    assert!(got.iter().all(|g| g.meta.mode == Mode::Mirror));
    let m = w.metrics().await;
    let dropped: u64 = m
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "tls_steal_session_mirror_dropped_total{{port=\"{}\"}}",
                w.port
            ))
        })
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0, "{m}");
    assert!(
        m.contains(&format!(
            "tls_steal_session_routed_requests_total{{port=\"{}\",route=\"mirrored\"}} 40",
            w.port
        )),
        "{m}"
    );
    let told = || -> u64 {
        s.events()
            .iter()
            .map(|e| match e {
                Event::MirrorDropped { count } => *count,
                _ => 0,
            })
            .sum()
    };
    for _ in 0..300 {
        if told() >= dropped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        told(),
        dropped,
        "the session is told how many copies it missed"
    );
}

#[tokio::test]
async fn mirror_copies_carry_the_request_body() {
    let w = World::start().await;
    let got_bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let gb = got_bodies.clone();
    let handler: session_common::Handler = Arc::new(move |_g, req| {
        let gb = gb.clone();
        Box::pin(async move {
            let b = req.into_body().collect().await.unwrap().to_bytes();
            gb.lock().unwrap().push(b);
            http::Response::new(session_common::full("ignored"))
        })
    });
    let _s = register(w.api, &w.reg(None, Mode::Mirror, "m"), handler)
        .await
        .unwrap();
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["http/1.1"]))
        .await
        .unwrap();
    let req = c
        .request("POST", "/upload")
        .body(common::body_of(Bytes::from(vec![b'z'; 300_000])))
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "300000",
        "the app got the body"
    );
    for _ in 0..300 {
        if !got_bodies.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got_bodies.lock().unwrap()[0].len(), 300_000);
}

#[tokio::test]
async fn status_lists_ports_certificates_and_sessions() {
    let w = World::start().await;
    let f = HttpFilter::Header("^x-steal: ".into());
    let _s = register(
        w.api,
        &w.reg(Some(f.clone()), Mode::Steal, "bob@desk"),
        default_handler("s"),
    )
    .await
    .unwrap();
    let st = w.status().await;
    assert_eq!(st.ports.len(), 1);
    let p = &st.ports[0];
    assert_eq!((p.port, p.state.as_str()), (w.port, "tls"));
    let cert = p.certificate.as_ref().unwrap();
    assert!(cert.subject.contains("CN=leaf-1001"), "{cert:?}");
    assert!(
        cert.not_after.ends_with('Z') && cert.not_after.len() == 20,
        "{cert:?}"
    );
    assert!(cert.file.ends_with("server.crt"));
    assert_eq!(st.sessions.len(), 1);
    let s = &st.sessions[0];
    assert_eq!(
        (s.client.as_str(), s.mode, s.ports.clone(), s.filter.clone()),
        ("bob@desk", Mode::Steal, vec![w.port], Some(f))
    );
}

#[tokio::test]
async fn bad_input_on_the_session_api() {
    let other = 18444;
    let w = World::start_with(&[other], None).await;
    let h = || default_handler("never");

    let e = register_raw(w.api, b"{\"ports\": [".to_vec(), h())
        .await
        .err()
        .unwrap();
    assert_eq!(e.status, 400);
    assert!(e.error.error.contains("not valid JSON"), "{e:?}");

    let e = register_raw(w.api, b"\x00\xffgarbage".to_vec(), h())
        .await
        .err()
        .unwrap();
    assert_eq!(e.status, 400, "{e:?}");

    let e = register_raw(w.api, br#"{"ports": "443"}"#.to_vec(), h())
        .await
        .err()
        .unwrap();
    assert_eq!(e.error.field.as_deref(), Some("ports"));

    let bad_regex = Registration {
        ports: vec![w.port],
        filter: Some(HttpFilter::AllOf(vec![
            HttpFilter::Method("GET".into()),
            HttpFilter::Path("^/(unclosed".into()),
        ])),
        filter_ports: None,
        mode: Mode::Steal,
        client: String::new(),
    };
    let e = register(w.api, &bad_regex, h()).await.err().unwrap();
    assert_eq!(e.status, 400);
    assert_eq!(e.error.field.as_deref(), Some("filter.all_of[1].path"));
    assert!(e.error.error.contains("^/(unclosed"), "{e:?}");

    let uncaptured = Registration {
        ports: vec![w.port, 9],
        filter: None,
        filter_ports: None,
        mode: Mode::Steal,
        client: String::new(),
    };
    let e = register(w.api, &uncaptured, h()).await.err().unwrap();
    assert_eq!(e.status, 400);
    assert_eq!(e.error.field.as_deref(), Some("ports[1]"));
    let mut want = vec![w.port, other];
    want.sort();
    assert_eq!(e.error.captured_ports, want);
    assert!(
        e.error.error.contains(&format!("{}, {}", want[0], want[1])),
        "{e:?}"
    );

    // Not an upgrade: refused, and the connection stays usable.
    let mut tcp = TcpStream::connect(w.api).await.unwrap();
    let body = format!(r#"{{"ports":[{}]}}"#, w.port);
    let plain = format!(
        "POST /v1/sessions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    write_all(&mut tcp, plain.as_bytes()).await;
    let (status, _, text) = read_raw_response(&mut tcp).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Upgrade"), "{text}");

    // A second registration on a connection that already carries a session: 409, the session
    // ends, and nothing is left registered.
    write_all(&mut tcp, &raw_registration(&body)).await;
    let (status, head, _) = read_raw_response(&mut tcp).await;
    assert_eq!(status, 101, "{head}");
    w.wait_sessions(1).await;
    write_all(&mut tcp, &raw_registration(&body)).await;
    let (status, _, text) = read_raw_response(&mut tcp).await;
    assert_eq!(status, 409, "{text}");
    let e: tls_steal_crds::session::ApiError = serde_json::from_str(&text).unwrap();
    assert!(e.error.contains("already carries session"), "{e:?}");
    w.wait_sessions(0).await;
    // And the API still works for a well-formed registration.
    let ok = register(w.api, &w.reg(None, Mode::Steal, "ok"), h())
        .await
        .unwrap();
    assert!(ok.id > 0);

    let (code, _) = session_common::http1_get(w.api, "/nope").await;
    assert_eq!(code, 404);
    let m = w.metrics().await;
    assert!(
        m.contains("tls_steal_session_errors_total{kind=\"registration_rejected\"} 6"),
        "{m}"
    );
}

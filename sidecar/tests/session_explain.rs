#![forbid(unsafe_code)]
//! `POST /v1/explain` on the real session API: where a sample request would go (no session, the
//! earliest matching session, a mirror session, an uncaptured port), without routing anything:
//! the sessions are told nothing and no routing counter moves. `GET /v1/status` says since when
//! each session is registered.

mod common;
mod session_common;

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{Destination, EXPLAIN_PATH, ExplainAnswer, Mode, Verdict};
use tokio::net::TcpStream;

use common::h1_handshake;
use session_common::{World, default_handler, full, register};

async fn post(addr: SocketAddr, body: &Value) -> (u16, Value) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = h1_handshake(tcp).await;
    let req = Request::post(EXPLAIN_PATH)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(full(Bytes::from(body.to_string())))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

async fn explain(w: &World, sample: Value) -> ExplainAnswer {
    let (code, answer) = post(w.api, &sample).await;
    assert_eq!(code, 200, "{answer}");
    serde_json::from_value(answer).unwrap()
}

fn verdicts(a: &ExplainAnswer) -> Vec<(u64, Verdict)> {
    a.sessions.iter().map(|s| (s.id, s.verdict)).collect()
}

#[tokio::test]
async fn explain_names_the_session_that_would_take_a_request() {
    let w = World::start_with(&[8443], None).await;
    let port = w.port;

    let a = explain(&w, json!({"port": port})).await;
    assert_eq!(a.destination, Destination::App);
    assert!(a.reason.contains("no session"), "{}", a.reason);
    assert_eq!(a.port_state.as_ref().unwrap().state, "tls");

    let steal = register(
        w.api,
        &w.reg(
            Some(HttpFilter::Header("^x-steal: yes$".into())),
            Mode::Steal,
            "alice@laptop",
        ),
        default_handler("alice"),
    )
    .await
    .unwrap();
    let mirror = register(
        w.api,
        &w.reg(Some(HttpFilter::Path("^/api".into())), Mode::Mirror, "bob"),
        default_handler("bob"),
    )
    .await
    .unwrap();
    w.wait_sessions(2).await;
    let (a_id, b_id) = (steal.id, mirror.id);

    let header = json!({"port": port, "path": "/x", "headers": [["x-steal", "yes"]]});
    let a = explain(&w, header).await;
    assert_eq!(
        a.destination,
        Destination::Session {
            id: a_id,
            client: "alice@laptop".into(),
            mode: Mode::Steal
        }
    );
    assert!(a.reason.contains("alice@laptop"), "{}", a.reason);
    assert_eq!(
        verdicts(&a),
        [(a_id, Verdict::Takes), (b_id, Verdict::NoMatch)]
    );

    let both = json!({"port": port, "method": "POST", "path": "/api/v1?q=1",
                      "headers": [["X-Steal", "yes"]]});
    let a = explain(&w, both).await;
    assert_eq!(
        verdicts(&a),
        [(a_id, Verdict::Takes), (b_id, Verdict::Earlier)]
    );

    let a = explain(&w, json!({"port": port, "path": "/api/orders"})).await;
    assert!(
        matches!(a.destination, Destination::Session { id, mode: Mode::Mirror, .. } if id == b_id),
        "{a:?}"
    );

    let a = explain(&w, json!({"port": port, "path": "/other"})).await;
    assert_eq!(a.destination, Destination::App);
    assert!(
        a.reason.contains("no session's filter matches"),
        "{}",
        a.reason
    );

    // 8443 is captured (in the plan) but no session asked for it; 9 is not captured at all.
    let a = explain(&w, json!({"port": 8443, "headers": [["x-steal", "yes"]]})).await;
    assert_eq!(a.destination, Destination::App);
    assert!(a.sessions.is_empty());
    let a = explain(&w, json!({"port": 9})).await;
    assert_eq!(a.destination, Destination::App);
    assert!(a.port_state.is_none());
    assert!(a.reason.contains("not captured"), "{}", a.reason);

    // Read-only: nothing was routed, nobody was told.
    let metrics = w.metrics().await;
    for route in ["stolen", "mirrored", "forwarded"] {
        let line = format!(
            "tls_steal_session_routed_requests_total{{port=\"{port}\",route=\"{route}\"}} 0"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(steal.got().is_empty() && steal.events().is_empty());
    assert!(mirror.got().is_empty() && mirror.events().is_empty());

    // Status says since when.
    let status = w.status().await;
    for s in &status.sessions {
        let since = s.since.as_deref().expect("since");
        assert!(since.ends_with('Z') && since.len() == 20, "{since}");
        assert!(s.age_seconds.expect("age") < 60);
    }
}

#[tokio::test]
async fn explain_refuses_a_bad_sample_naming_the_field() {
    let w = World::start().await;
    let (code, e) = post(w.api, &json!({"port": w.port, "method": "GE T"})).await;
    assert_eq!(code, 400);
    assert_eq!(e["field"], "method");
    let (code, e) = post(
        w.api,
        &json!({"port": w.port, "headers": [["x-a", "ok"], ["bad name", "v"]]}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(e["field"], "headers[1]");
    let (code, e) = post(w.api, &json!({"path": "/"})).await;
    assert_eq!(code, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("port"), "{e}");
}

#[tokio::test]
async fn a_body_filter_without_a_sample_body_is_undecided() {
    let w = World::start().await;
    let filter: HttpFilter =
        serde_json::from_value(json!({"body": {"json": {"query": "$.user", "matches": "^ann$"}}}))
            .unwrap();
    let s = register(
        w.api,
        &w.reg(Some(filter), Mode::Steal, "c"),
        default_handler("c"),
    )
    .await
    .unwrap();
    w.wait_sessions(1).await;
    let a = explain(&w, json!({"port": w.port, "method": "POST"})).await;
    assert_eq!(verdicts(&a), [(s.id, Verdict::NeedsBody)]);
    assert_eq!(a.destination, Destination::App);
    assert!(a.reason.contains("body"), "{}", a.reason);
    let a = explain(
        &w,
        json!({"port": w.port, "method": "POST", "body": {"user": "ann"}}),
    )
    .await;
    assert_eq!(verdicts(&a), [(s.id, Verdict::Takes)]);
}

#![forbid(unsafe_code)]
//! Per-request routing through the real proxy (real sockets, real TLS): filters of every kind,
//! stolen and forwarded requests alternating on one keep-alive connection (HTTP/1.1 and HTTP/2),
//! port isolation, overlapping sessions, and the meta passed to the session.
//!
//! Over 400 lines: one test per filter kind or routing rule, over the same harness.

mod common;
mod session_common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{Event, Mode, Registration};
use tls_steal_sidecar::proxy::{ConnInfo, Route, Router};
use tls_steal_sidecar::session::{SessionConfig, Sessions};

use common::{ClientOpts, Conn};
use session_common::{World, default_handler, register, served_by};

/// Sends `method path` with `headers` on `c`; returns who answered and the body.
async fn ask(
    c: &mut Conn,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, StatusCode, Bytes) {
    let mut b = c.request(method, path);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = c.send(b.body(common::empty()).unwrap()).await.unwrap();
    let who = served_by(&resp);
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (who, status, body)
}

/// (method, path, headers, stolen?)
type Probe = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    bool,
);

struct Case {
    name: &'static str,
    filter: HttpFilter,
    requests: Vec<Probe>,
}

#[tokio::test]
async fn filters_of_every_kind_route_each_request() {
    let w = World::start().await;
    let h = |s: &str| HttpFilter::Header(s.into());
    let p = |s: &str| HttpFilter::Path(s.into());
    let m = |s: &str| HttpFilter::Method(s.into());
    let cases = vec![
        Case {
            name: "header, case-insensitive",
            filter: h("^x-steal: yes$"),
            requests: vec![
                ("GET", "/a", vec![("X-Steal", "YES")], true),
                ("GET", "/a", vec![("x-steal", "no")], false),
                ("GET", "/a", vec![], false),
            ],
        },
        Case {
            name: "header present twice",
            filter: h("^x-tenant: b$"),
            requests: vec![
                (
                    "GET",
                    "/t",
                    vec![("x-tenant", "a"), ("x-tenant", "b")],
                    true,
                ),
                (
                    "GET",
                    "/t",
                    vec![("x-tenant", "a"), ("x-tenant", "c")],
                    false,
                ),
            ],
        },
        Case {
            name: "look-around",
            filter: h("^User-Agent: (?!kube-probe)"),
            requests: vec![
                (
                    "GET",
                    "/healthz",
                    vec![("user-agent", "kube-probe/1.33")],
                    false,
                ),
                ("GET", "/healthz", vec![("user-agent", "curl/8.5")], true),
            ],
        },
        Case {
            name: "path",
            filter: p("^/api/users$"),
            requests: vec![
                ("GET", "/api/users", vec![], true),
                ("GET", "/api/users?id=7", vec![], true),
                ("GET", "/api/users/7", vec![], false),
                // Case-insensitive, as mirrord matches paths.
                ("GET", "/API/Users", vec![], true),
                ("GET", "/apis/users", vec![], false),
            ],
        },
        Case {
            name: "path with query",
            filter: p(r"^/search\?.*debug=1"),
            requests: vec![
                ("GET", "/search?q=x&debug=1", vec![], true),
                ("GET", "/search?q=x", vec![], false),
            ],
        },
        Case {
            name: "method",
            filter: m("post"),
            requests: vec![("POST", "/m", vec![], true), ("GET", "/m", vec![], false)],
        },
        Case {
            name: "all_of",
            filter: HttpFilter::AllOf(vec![m("GET"), h("^x-a: 1$"), p("^/all")]),
            requests: vec![
                ("GET", "/all", vec![("x-a", "1")], true),
                ("POST", "/all", vec![("x-a", "1")], false),
                ("GET", "/all", vec![("x-a", "2")], false),
            ],
        },
        Case {
            name: "any_of",
            filter: HttpFilter::AnyOf(vec![p("^/one$"), h("^x-b: ")]),
            requests: vec![
                ("GET", "/one", vec![], true),
                ("GET", "/two", vec![("x-b", "z")], true),
                ("GET", "/two", vec![], false),
            ],
        },
        Case {
            name: "nested composites",
            filter: HttpFilter::AllOf(vec![
                HttpFilter::AnyOf(vec![m("PUT"), m("PATCH")]),
                HttpFilter::AnyOf(vec![h("^x-dev: alice$"), p("alice")]),
            ]),
            requests: vec![
                ("PATCH", "/p", vec![("x-dev", "alice")], true),
                ("PUT", "/p?who=alice", vec![], true),
                ("PUT", "/p", vec![("x-dev", "bob")], false),
            ],
        },
    ];
    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let opts = ClientOpts::new(&w.pki, alpn);
        for case in &cases {
            let s = register(
                w.api,
                &w.reg(Some(case.filter.clone()), Mode::Steal, "filters"),
                default_handler("session"),
            )
            .await
            .unwrap();
            let mut c = Conn::open(w.addr(), &opts).await.unwrap();
            for (method, path, headers, stolen) in &case.requests {
                let (who, status, body) = ask(&mut c, method, path, headers).await;
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "{}: {method} {path}: {body:?}",
                    case.name
                );
                let want = if *stolen { "session" } else { "app" };
                assert_eq!(
                    who, want,
                    "{} ({alpn:?}): {method} {path} {headers:?}",
                    case.name
                );
            }
            drop(s);
            w.wait_sessions(0).await;
        }
    }
    let metrics = w.metrics().await;
    assert!(
        metrics.contains(&format!(
            "tls_steal_session_routed_requests_total{{port=\"{}\",route=\"stolen\"}}",
            w.port
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn stolen_and_forwarded_alternate_on_one_keep_alive_connection() {
    let w = World::start().await;
    let _s = register(
        w.api,
        &w.reg(
            Some(HttpFilter::Header("^x-steal: yes$".into())),
            Mode::Steal,
            "alt",
        ),
        default_handler("session"),
    )
    .await
    .unwrap();
    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, alpn))
            .await
            .unwrap();
        let before = w.app.seen.lock().unwrap().len();
        for i in 0..10 {
            let steal = i % 2 == 0;
            let (who, status, body) = ask(
                &mut c,
                "GET",
                &format!("/alt/{i}"),
                &[("x-steal", if steal { "yes" } else { "no" })],
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                who,
                if steal { "session" } else { "app" },
                "request {i} over {alpn:?}"
            );
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                v["uri"].as_str().unwrap().ends_with(&format!("/alt/{i}")),
                "{v}"
            );
        }
        assert_eq!(
            w.app.seen.lock().unwrap().len() - before,
            5,
            "the app saw the forwarded half"
        );
    }
}

fn conn(port: u16) -> ConnInfo {
    ConnInfo {
        client: "10.0.0.9:40000".parse().unwrap(),
        original_dst: SocketAddr::from(([10, 0, 0, 1], port)),
        port,
        sni: None,
        alpn: None,
    }
}

#[tokio::test]
async fn a_filter_on_one_port_never_affects_another() {
    // Through the real proxy: the connections arrive for the app's port; a session that took
    // every request of the other captured port must not see them.
    let other = 18443;
    let w = World::start_with(&[other], None).await;
    let everything_on_other = Registration {
        ports: vec![other],
        filter: None,
        filter_ports: None,
        mode: Mode::Steal,
        client: "other".into(),
    };
    let s_other = register(w.api, &everything_on_other, default_handler("other"))
        .await
        .unwrap();
    let s_app = register(
        w.api,
        &w.reg(Some(HttpFilter::Path("^/mine".into())), Mode::Steal, "mine"),
        default_handler("mine"),
    )
    .await
    .unwrap();
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["h2"]))
        .await
        .unwrap();
    assert_eq!(ask(&mut c, "GET", "/x", &[]).await.0, "app");
    assert_eq!(ask(&mut c, "GET", "/mine", &[]).await.0, "mine");
    assert!(s_other.got().is_empty());
    drop((s_other, s_app));

    // The decision itself, for both ports, on 443 and 8443.
    let sessions = Sessions::new(SessionConfig::new(vec![443, 8443]));
    let parts = http::Request::get("/api")
        .header("x-steal", "1")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let reg443 = Registration {
        ports: vec![443],
        filter: Some(HttpFilter::Header("^x-steal: 1$".into())),
        filter_ports: None,
        mode: Mode::Steal,
        client: String::new(),
    };
    sessions.register(&reg443).unwrap();
    assert!(matches!(
        sessions.route(&parts, &conn(443)),
        Route::Steal(_)
    ));
    assert_eq!(sessions.route(&parts, &conn(8443)), Route::Forward);
}

#[tokio::test]
async fn overlapping_sessions_earliest_wins_and_the_other_is_told() {
    let w = World::start().await;
    let f = Some(HttpFilter::Header("^x-steal: ".into()));
    let first = register(
        w.api,
        &w.reg(f.clone(), Mode::Steal, "first"),
        default_handler("first"),
    )
    .await
    .unwrap();
    let second = register(
        w.api,
        &w.reg(f.clone(), Mode::Steal, "second"),
        default_handler("second"),
    )
    .await
    .unwrap();
    // A third session whose filter does not match is not told anything.
    let third = register(
        w.api,
        &w.reg(
            Some(HttpFilter::Path("^/never".into())),
            Mode::Steal,
            "third",
        ),
        default_handler("third"),
    )
    .await
    .unwrap();
    assert!(first.id < second.id);
    let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &["http/1.1"]))
        .await
        .unwrap();
    let (who, _, body) = ask(&mut c, "GET", "/both?x=1", &[("x-steal", "1")]).await;
    assert_eq!(who, "first");
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let mut told = Vec::new();
    for _ in 0..200 {
        told = second.events();
        if !told.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        told,
        vec![Event::LostToEarlierSession {
            request_id: id,
            method: "GET".into(),
            path: "/both?x=1".into(),
            winner: first.id
        }]
    );
    assert!(first.events().is_empty());
    assert!(third.events().is_empty() && third.got().is_empty());
    assert!(second.got().is_empty());

    // The first ends: the next request goes to the second.
    drop(first);
    w.wait_sessions(2).await;
    assert_eq!(
        ask(&mut c, "GET", "/both", &[("x-steal", "1")]).await.0,
        "second"
    );
}

#[tokio::test]
async fn the_session_gets_the_original_sni_alpn_client_and_version() {
    let w = World::start().await;
    let s = register(
        w.api,
        &w.reg(None, Mode::Steal, "meta"),
        default_handler("session"),
    )
    .await
    .unwrap();
    for (alpn, version) in [("h2", "HTTP/2"), ("http/1.1", "HTTP/1.1")] {
        let tls = common::tls_connect(w.addr(), &ClientOpts::new(&w.pki, &[alpn]))
            .await
            .unwrap();
        let local = tls.get_ref().0.local_addr().unwrap();
        drop(tls);
        let mut c = Conn::open(w.addr(), &ClientOpts::new(&w.pki, &[alpn]))
            .await
            .unwrap();
        let (who, _, _) = ask(&mut c, "POST", "/meta?q=1", &[("x-custom", "v")]).await;
        assert_eq!(who, "session");
        let got = s.got().last().cloned().unwrap();
        let m = &got.meta;
        assert_eq!(m.port, w.port);
        assert_eq!(m.mode, Mode::Steal);
        assert_eq!(m.sni.as_deref(), Some("app.test"));
        assert_eq!(m.alpn.as_deref(), Some(alpn));
        assert_eq!(m.http_version, version);
        assert_eq!(m.original_dst, w.app.addr.to_string());
        assert!(m.client_addr.starts_with("127.0.0.1:"), "{}", m.client_addr);
        assert_ne!(
            m.client_addr,
            local.to_string(),
            "a new connection, a new client port"
        );
        assert_eq!(got.method, "POST");
        assert_eq!(got.uri, "https://app.test/meta?q=1");
        assert!(got.headers.iter().any(|(n, v)| n == "x-custom" && v == "v"));
        assert!(
            !got.headers
                .iter()
                .any(|(n, _)| n == "connection" || n == "transfer-encoding")
        );
    }
}

//! Whichever way a request goes (forwarded to the app, stolen or mirrored to a session, then
//! delivered to the local app), the app that answers it sees the same end-to-end headers: each
//! path's head rewrite is run on one request and the header sets compared.

use std::net::SocketAddr;

use http::{HeaderMap, Request, Version};
use kubectl_steal::local_head;
use tls_steal_crds::session::{META_HEADER, Mode, RequestMeta};
use tls_steal_sidecar::proxy::app_head;
use tls_steal_sidecar::session::session_head;

fn request(version: Version) -> Request<()> {
    let mut b = Request::builder()
        .version(version)
        .uri("/orders?id=7")
        .method("POST");
    for (k, v) in [
        ("host", "shop.test"),
        ("x-debug", "me"),
        ("accept", "*/*"),
        ("accept", "text/plain"),
        ("trailer", "grpc-status"),
        ("te", "gzip, trailers"),
        ("content-type", "application/json"),
        ("authorization", "Bearer t"),
        ("proxy-authorization", "Basic x"),
    ] {
        b = b.header(k, v);
    }
    if version == Version::HTTP_11 {
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ] {
            b = b.header(k, v);
        }
    }
    b.body(()).unwrap()
}

fn meta(mode: Mode, version: Version) -> RequestMeta {
    RequestMeta {
        id: 1,
        port: 443,
        mode,
        client_addr: "10.0.0.2:40000".into(),
        original_dst: "10.0.0.1:443".into(),
        sni: Some("shop.test".into()),
        alpn: None,
        http_version: if version == Version::HTTP_2 {
            "HTTP/2".into()
        } else {
            "HTTP/1.1".into()
        },
        upgrade: None,
        pod: None,
    }
}

/// The end-to-end headers (`host` aside: HTTP/2 carries it as `:authority`), by name; the
/// values of one name in their order (the order of different names carries no meaning).
fn end_to_end(h: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = h
        .iter()
        .filter(|(k, _)| *k != "host")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn forwarded_stolen_mirrored_and_delivered_requests_carry_the_same_headers() {
    let dst: SocketAddr = "10.0.0.1:443".parse().unwrap();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut forwarded = request(version);
        assert!(!app_head(&mut forwarded), "not an upgrade");
        let forwarded = end_to_end(forwarded.headers());

        let mut by_session = Vec::new();
        for mode in [Mode::Steal, Mode::Mirror] {
            let m = meta(mode, version);
            let (parts, ()) = request(version).into_parts();
            let mut to_session = session_head(parts, &m, dst);
            assert!(to_session.headers.remove(META_HEADER).is_some());
            by_session.push((mode, end_to_end(&to_session.headers)));
            // kubectl-steal takes the meta header off, then delivers.
            local_head(&mut to_session, version == Version::HTTP_2);
            by_session.push((mode, end_to_end(&to_session.headers)));
        }
        for (mode, headers) in &by_session {
            assert_eq!(&forwarded, headers, "{version:?} {mode:?}");
        }
        let names: Vec<&str> = forwarded.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "accept",
                "accept",
                "authorization",
                "content-type",
                "proxy-authorization",
                "te",
                "trailer",
                "x-debug",
            ],
            "{version:?}"
        );
        assert!(forwarded.contains(&("te".into(), "trailers".into())));
    }
}

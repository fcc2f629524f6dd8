//! Hop-by-hop ("connection-specific") headers, RFC 9110 §7.6.1.

use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

const HOP_COUNT: usize = 7;

/// The headers that describe one connection, removed before a message goes on another: RFC 9110
/// §7.6.1's list (`Connection`, `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`,
/// `Upgrade`) and `HTTP2-Settings` (RFC 9113 §3.2.1), plus every header `Connection` names.
///
/// `Trailer` is not among them: it is end-to-end (RFC 9110 §6.6.2), and hyper's HTTP/1 encoder
/// sends only the trailer fields it declares, so removing it would drop the trailers.
pub const HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    CONNECTION,
    PROXY_CONNECTION,
    KEEP_ALIVE,
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
    HTTP2_SETTINGS,
];

/// Whether one of `headers`' `Connection` values lists `token` (case-insensitive).
pub fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop headers ([`HOP_BY_HOP`] and those `Connection` names): they describe
/// one connection, so a client's `Connection: close` must not close a pooled connection to the
/// app, nor the app's the client's. Two exceptions:
///
/// * `upgrade`: the message is an upgrade (request or `101`), which is made of `Connection` and
///   `Upgrade`: both stay;
/// * `TE: trailers` stays (as `TE: trailers`, whatever else the value listed): it is end-to-end
///   in practice (gRPC needs it), and the only `TE` HTTP/2 allows.
///
/// Every other header passes unchanged, in order. A message without any of these headers costs
/// one pass over its names (this runs twice per forwarded request).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names notes which of HOP_BY_HOP are there, and only those are removed:
    // a hashed removal of an absent name costs more than the pass (an app's `Connection:
    // keep-alive` answer used to pay five of them).
    let mut present = [false; HOP_COUNT];
    for n in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == n) {
            present[i] = true;
        }
    }
    let [
        connection,
        proxy_connection,
        keep_alive,
        te,
        transfer_encoding,
        has_upgrade,
        h2_settings,
    ] = present;
    if connection {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // `close` names no header; `keep-alive` is removed below anyway.
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !(upgrade && n == UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
        if !upgrade {
            headers.remove(CONNECTION);
        }
    }
    if has_upgrade && !upgrade {
        headers.remove(UPGRADE);
    }
    for (there, name) in [
        (keep_alive, KEEP_ALIVE),
        (proxy_connection, PROXY_CONNECTION),
        (h2_settings, HTTP2_SETTINGS),
        // hyper frames bodies itself.
        (transfer_encoding, TRANSFER_ENCODING),
    ] {
        if there {
            headers.remove(name);
        }
    }
    if !te {
        return;
    }
    let mut values = headers.get_all(TE).iter();
    let Some(first) = values.next() else { return };
    if first.as_bytes() == b"trailers" && values.next().is_none() {
        return;
    }
    let trailers = headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    headers.remove(TE);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_after(pairs: &[(&str, &str)], upgrade: bool) -> Vec<String> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        strip_hop_by_hop(&mut h, upgrade);
        h.keys().map(|k| k.as_str().to_owned()).collect()
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_others_kept() {
        assert_eq!(
            names_after(
                &[
                    ("connection", "close, x-hop"),
                    ("x-hop", "1"),
                    ("keep-alive", "timeout=5"),
                    ("transfer-encoding", "chunked"),
                    ("te", "gzip"),
                    ("host", "app.test"),
                    ("x-end", "2"),
                ],
                false
            ),
            ["host", "x-end"]
        );
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.len(),
            3,
            "an upgrade keeps Connection and Upgrade; TE: trailers stays"
        );
        // Without `Connection`, the fixed names still go; `Connection: keep-alive, X-Other`
        // removes the header it names; a message with none is left alone.
        for (pairs, left) in [
            (
                &[
                    ("keep-alive", "1"),
                    ("proxy-connection", "x"),
                    ("http2-settings", "AAMAAABkAAQAAP__"),
                    ("upgrade", "h2c"),
                    ("a", "1"),
                ][..],
                &["a"][..],
            ),
            (
                &[
                    ("connection", "Keep-Alive, X-Other"),
                    ("x-other", "1"),
                    ("b", "2"),
                ][..],
                &["b"][..],
            ),
            (&[("c", "3"), ("te", "trailers")][..], &["c", "te"][..]),
            (
                &[("trailer", "grpc-status"), ("d", "4")][..],
                &["trailer", "d"][..],
            ),
        ] {
            assert_eq!(names_after(pairs, false), left, "{pairs:?}");
        }
    }

    #[test]
    fn an_app_answer_loses_only_its_connection_header() {
        assert_eq!(
            names_after(
                &[
                    ("server", "nginx"),
                    ("date", "Sun, 06 Dec 2026 21:00:00 GMT"),
                    ("content-type", "text/plain"),
                    ("content-length", "1024"),
                    ("connection", "keep-alive"),
                    ("etag", "\"1\""),
                ],
                false
            ),
            ["server", "date", "content-type", "content-length", "etag"]
        );
    }

    #[test]
    fn te_keeps_only_trailers() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("gzip, Trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[TE], "trailers");
        assert_eq!(h["x-kept"], "1");
        let mut h = HeaderMap::new();
        h.insert(TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn connection_tokens() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append(CONNECTION, HeaderValue::from_static(" Upgrade ,x"));
        assert!(connection_has_token(&h, "upgrade"));
        assert!(!connection_has_token(&h, "close"));
    }
}

//! Which requests ask for an upgrade of their connection.

use http::header::UPGRADE;
use http::{Method, Request, Version};

use crate::connection_has_token;

/// The protocol an HTTP/1.1 upgrade request asks for (e.g. `websocket`): `Upgrade` with a
/// non-empty value, and `upgrade` among the `Connection` tokens (RFC 9110 §7.8). `None` for any
/// other request, HTTP/1.0 and HTTP/2 included.
pub fn upgrade_protocol<B>(req: &Request<B>) -> Option<&str> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let upgrade = req.headers().get(UPGRADE)?.to_str().ok()?.trim();
    (!upgrade.is_empty() && connection_has_token(req.headers(), "upgrade")).then_some(upgrade)
}

/// Whether `req` is an HTTP/1.1 upgrade request ([`upgrade_protocol`]).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    upgrade_protocol(req).is_some()
}

/// The `:protocol` of an HTTP/2 extended CONNECT (RFC 8441): how a session carries an
/// HTTP/1.1 upgrade over its HTTP/2 connection.
pub fn extended_connect_protocol<B>(req: &Request<B>) -> Option<&str> {
    if req.method() != Method::CONNECT {
        return None;
    }
    req.extensions()
        .get::<hyper::ext::Protocol>()
        .map(hyper::ext::Protocol::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn http1_upgrades() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert_eq!(
            upgrade_protocol(&req(Version::HTTP_11, &ws)),
            Some("websocket")
        );
        assert!(!is_upgrade(&req(Version::HTTP_10, &ws)));
        assert!(!is_upgrade(&req(Version::HTTP_2, &ws)));
        assert!(!is_upgrade(&req(
            Version::HTTP_11,
            &[("upgrade", "websocket")]
        )));
        assert!(!is_upgrade(&req(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", " ")]
        )));
    }

    #[test]
    fn extended_connect() {
        let mut r = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://a.test/chat")
            .body(())
            .unwrap();
        assert_eq!(extended_connect_protocol(&r), None);
        r.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert_eq!(extended_connect_protocol(&r), Some("websocket"));
    }
}

//! A request head as the filters see it ([`RequestView`]).

use http::request::Parts;
use tls_steal_crds::filter::RequestView;

/// The head of a request. Header lines are the request's headers only, as mirrord's agent
/// sees them: an HTTP/2 request carries its host in `:authority`, which is not a header, so a
/// `host` filter matches it only when the client also sent a `host` header (mirrord selects
/// exactly those).
pub struct PartsView<'a> {
    parts: &'a Parts,
    body: Option<&'a serde_json::Value>,
}

impl<'a> PartsView<'a> {
    #[cfg(test)]
    pub fn new(parts: &'a Parts) -> Self {
        Self::with_body(parts, None)
    }

    /// With the body as JSON, when it was read and is JSON.
    pub fn with_body(parts: &'a Parts, body: Option<&'a serde_json::Value>) -> Self {
        PartsView { parts, body }
    }
}

impl RequestView for PartsView<'_> {
    fn method(&self) -> &str {
        self.parts.method.as_str()
    }

    fn path(&self) -> &str {
        self.parts.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }

    fn header_lines(&self) -> Box<dyn Iterator<Item = (&str, &[u8])> + '_> {
        Box::new(
            self.parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        )
    }

    fn body_json(&self) -> Option<&serde_json::Value> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_steal_crds::filter::HttpFilter;

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn sees_path_query_and_repeated_headers_but_no_h2_authority() {
        let p = parts(
            http::Request::get("https://api.test:8443/a/b?x=1")
                .version(http::Version::HTTP_2)
                .header("x-tenant", "one")
                .header("x-tenant", "two")
                .body(())
                .unwrap(),
        );
        let v = PartsView::new(&p);
        let m = |f: HttpFilter| f.compile().unwrap().matches(&v);
        assert!(m(HttpFilter::Path("^/a/b$".into())));
        assert!(m(HttpFilter::Path(r"^/a/b\?x=1$".into())));
        assert!(m(HttpFilter::Header("^x-tenant: two$".into())));
        assert!(m(HttpFilter::Header("^X-TENANT: ONE$".into())));
        assert!(m(HttpFilter::Method("get".into())));
        // mirrord's agent matches header lines only: `:authority` is not one.
        assert!(!m(HttpFilter::Header("^host:".into())));
        assert!(!m(HttpFilter::Header(r"api\.test".into())));
        assert_eq!(v.header_lines().count(), 2);

        // An HTTP/2 client that also sends `host` is matched on it, as in mirrord.
        let p = parts(
            http::Request::get("https://api.test/")
                .version(http::Version::HTTP_2)
                .header("host", "api.test")
                .body(())
                .unwrap(),
        );
        let v = PartsView::new(&p);
        let m = |f: HttpFilter| f.compile().unwrap().matches(&v);
        assert!(m(HttpFilter::Header(r"^host: api\.test$".into())));
    }
}

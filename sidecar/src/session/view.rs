//! A request head as the filters see it ([`RequestView`]).

use http::header::HOST;
use http::request::Parts;
use tls_steal_crds::filter::RequestView;

/// The head of a request. An HTTP/2 request carries its host in `:authority`, not in a `Host`
/// header; a `host: <authority>` line is added for it so one `header` filter on the host works
/// for both protocols.
pub struct PartsView<'a> {
    parts: &'a Parts,
    authority_line: Option<&'a str>,
    body: Option<&'a serde_json::Value>,
}

impl<'a> PartsView<'a> {
    #[cfg(test)]
    pub fn new(parts: &'a Parts) -> Self {
        Self::with_body(parts, None)
    }

    /// With the body as JSON, when it was read and is JSON.
    pub fn with_body(parts: &'a Parts, body: Option<&'a serde_json::Value>) -> Self {
        let authority_line = match parts.headers.contains_key(HOST) {
            true => None,
            false => parts.uri.authority().map(|a| a.as_str()),
        };
        PartsView {
            parts,
            authority_line,
            body,
        }
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
        let lines = self
            .parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()));
        let host = self.authority_line.map(|a| ("host", a.as_bytes()));
        Box::new(lines.chain(host))
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
    fn sees_path_query_repeated_headers_and_h2_authority() {
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
        assert!(m(HttpFilter::Header(r"^host: api\.test:8443$".into())));
        assert!(m(HttpFilter::Method("get".into())));

        let p = parts(
            http::Request::get("/")
                .header("host", "h1.test")
                .body(())
                .unwrap(),
        );
        let v = PartsView::new(&p);
        assert_eq!(
            v.header_lines().count(),
            1,
            "no synthetic line when Host exists"
        );
    }
}

//! The head of a request as a session gets it, and as it arrived (to give the request back to
//! the app when the session never got it).

use super::*;

/// The head of a stolen request as it arrived, to rebuild it if the session never gets it.
pub(super) struct OriginalHead {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl OriginalHead {
    /// Keeps a copy of `parts` (its extensions taken: the session gets none).
    pub(super) fn keep(parts: &mut http::request::Parts) -> Self {
        OriginalHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            extensions: std::mem::take(&mut parts.extensions),
        }
    }

    pub(super) fn into_request(
        self,
        body: ProxyBody,
        client_upgrade: Option<OnUpgrade>,
    ) -> Request<ProxyBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        if let Some(u) = client_upgrade {
            req.extensions_mut().insert(u);
        }
        req
    }
}

pub(super) fn version_label(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The head of a request as sent to a session: an absolute `https` URI (HTTP/2 needs a scheme
/// and an authority: the client's `:authority`, else its `Host`, else the original destination),
/// HTTP/2, no connection-specific headers, the meta header.
pub fn session_head(
    mut parts: http::request::Parts,
    meta: &RequestMeta,
    dst: SocketAddr,
) -> http::request::Parts {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let build = |a: &str| {
        Uri::builder()
            .scheme("https")
            .authority(a)
            .path_and_query(pq.as_str())
            .build()
    };
    parts.uri = authority
        .as_deref()
        .and_then(|a| build(a).ok())
        .or_else(|| build(&dst.to_string()).ok())
        .unwrap_or_else(|| Uri::from_static("https://localhost/"));
    parts.version = Version::HTTP_2;
    parts.extensions = http::Extensions::new();
    strip_hop_by_hop(&mut parts.headers, false);
    let json = serde_json::to_vec(meta).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_bytes(&json) {
        parts
            .headers
            .insert(HeaderName::from_static(META_HEADER), v);
    }
    parts
}

/// A JSON answer.
pub(crate) fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Response<ProxyBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|n: std::convert::Infallible| match n {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

//! Forwarding one request to the original destination over a pooled TLS connection.
//!
//! * One hyper-util legacy `Client` (and so one pool) per (destination, SNI, offered ALPN): the
//!   connector is fixed per pool, so requests never share a connection made for another name.
//! * The app picks the protocol: offering `h2` (when the client spoke h2) and getting it yields
//!   one multiplexed connection; otherwise HTTP/1.1 connections, as many as concurrent requests
//!   need (the pool is unbounded, idle ones are closed after a minute).
//! * Bodies stream both ways (`Incoming` in, `Incoming` out), so trailers and back-pressure are
//!   hyper's; nothing is buffered whole.
//! * Headers are passed as received. The URI given to the pool carries the client's authority
//!   (its `:authority`, else `Host`), so an h2 app sees the same `:authority`; toward an
//!   HTTP/1.1 app a `Host` is added from it only when the request has none (h2 → h1).
//! * HTTP/1.1 upgrades (WebSocket): the upgrade is taken on both sides and the two upgraded
//!   streams are joined with `copy_bidirectional`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, UPGRADE};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::{debug, warn};

use super::metrics::{Metrics, Outcome};
use super::route::ConnInfo;
use super::tls_client::{UpstreamTls, server_name};

/// The body type the proxy answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// A small generated response (errors).
pub fn text_response(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|n: Infallible| match n {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    dst: SocketAddr,
    name: ServerName<'static>,
    alpn: Vec<Vec<u8>>,
}

/// The forwarding side of one port (one per generation of its TLS material).
pub struct Forwarder {
    port: u16,
    upstream: Arc<UpstreamTls>,
    metrics: Arc<Metrics>,
    connect_timeout: Duration,
    clients: Mutex<HashMap<PoolKey, Client<UpstreamConnector, ProxyBody>>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let n = self.clients.get_mut().map(|c| c.len()).unwrap_or(0);
        self.metrics.port(self.port).upstream_pools(-(n as i64));
    }
}

/// The ALPN list offered to the app: the client's protocol, plus HTTP/1.1 as a fallback after
/// `h2` so an HTTP/1.1-only app still accepts the connection. Upgrades need HTTP/1.1.
fn offered_alpn(client_alpn: Option<&[u8]>, upgrade: bool) -> Vec<Vec<u8>> {
    match client_alpn {
        _ if upgrade => vec![b"http/1.1".to_vec()],
        Some(b"h2") => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Some(p) => vec![p.to_vec()],
        None => Vec::new(),
    }
}

fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11 && req.headers().contains_key(UPGRADE)
}

impl Forwarder {
    pub fn new(
        port: u16,
        upstream: Arc<UpstreamTls>,
        metrics: Arc<Metrics>,
        connect_timeout: Duration,
    ) -> Self {
        Forwarder {
            port,
            upstream,
            metrics,
            connect_timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The app-side TLS configuration offering `alpn` (for byte relays).
    pub fn upstream_config(&self, alpn: &[Vec<u8>]) -> Arc<rustls::ClientConfig> {
        self.upstream.config(alpn)
    }

    fn client(&self, key: PoolKey) -> Client<UpstreamConnector, ProxyBody> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return c.clone();
        }
        let connector = UpstreamConnector {
            dst: key.dst,
            name: key.name.clone(),
            tls: TlsConnector::from(self.upstream.config(&key.alpn)),
            connect_timeout: self.connect_timeout,
            metrics: self.metrics.clone(),
            port: self.port,
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http1_preserve_header_case(true)
            .set_host(true)
            .build(connector);
        self.metrics.port(self.port).upstream_pools(1);
        clients.insert(key, client.clone());
        client
    }

    /// Sends `req` to the app and returns its response (or a 502 naming the failure).
    /// (Any body: `Incoming`, or a mirrored request's teed body.)
    pub async fn forward<B>(&self, conn: &ConnInfo, req: Request<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = Bytes, Error = hyper::Error> + Send + 'static,
    {
        let mut req = req.map(|b| b.boxed_unsync());
        let start = Instant::now();
        let authority: Option<String> = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let upgrade = is_upgrade(&req);
        let name = server_name(
            conn.sni.as_deref(),
            authority.as_deref().map(host_of),
            conn.original_dst.ip(),
        );
        let key = PoolKey {
            dst: conn.original_dst,
            name,
            alpn: offered_alpn(conn.alpn.as_deref(), upgrade),
        };
        let client = self.client(key);

        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let dst = conn.original_dst.to_string();
        let uri = authority
            .as_deref()
            .and_then(|a| {
                Uri::builder()
                    .scheme("https")
                    .authority(a)
                    .path_and_query(pq.as_str())
                    .build()
                    .ok()
            })
            .or_else(|| {
                Uri::builder()
                    .scheme("https")
                    .authority(dst.as_str())
                    .path_and_query(pq.as_str())
                    .build()
                    .ok()
            });
        let Some(uri) = uri else {
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("tls-steal-proxy: unusable request target {pq:?}\n"),
            );
        };
        *req.uri_mut() = uri;
        let version = req.version();
        if version == Version::HTTP_2 {
            // The pool picks h2 or HTTP/1.1 by what the app negotiated; an HTTP_2 version would
            // forbid the HTTP/1.1 fallback.
            *req.version_mut() = Version::HTTP_11;
        }
        strip_hop_by_hop(req.headers_mut(), upgrade);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let m = self.metrics.port(self.port);
        match client.request(req).await {
            Ok(mut resp) => {
                m.request(Outcome::Forwarded, start.elapsed());
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(from_client) = client_upgrade
                {
                    let from_app = hyper::upgrade::on(&mut resp);
                    tokio::spawn(tunnel(from_client, from_app));
                }
                *resp.version_mut() = version;
                let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                strip_hop_by_hop(resp.headers_mut(), switching);
                resp.map(|b| b.boxed_unsync())
            }
            Err(e) => {
                m.request(Outcome::UpstreamError, start.elapsed());
                let detail = error_chain(&e);
                warn!(client = %conn.client, original_dst = %conn.original_dst, port = conn.port, error = %detail, "forwarding to the application failed");
                text_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "tls-steal-proxy: forwarding to {} failed: {detail}\n",
                        conn.original_dst
                    ),
                )
            }
        }
    }
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1 (and those `Connection` names): they
/// describe one connection, so a client's `Connection: close` must not close the pooled
/// connection to the app, nor the app's the client's. An upgrade keeps `Connection` and
/// `Upgrade`, which are what it is made of. Every other header passes unchanged.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap, upgrade: bool) {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING};
    let named: Vec<http::HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && n == UPGRADE))
        .collect();
    for n in named {
        headers.remove(n);
    }
    if !upgrade {
        headers.remove(CONNECTION);
        headers.remove(UPGRADE);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    // hyper frames bodies itself; `TE: trailers` is end-to-end in practice (gRPC needs it).
    headers.remove(TRANSFER_ENCODING);
    if headers.get(TE).is_some_and(|v| v.as_bytes() != b"trailers") {
        headers.remove(TE);
    }
}

/// `e: cause: cause…`
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn tunnel(from_client: hyper::upgrade::OnUpgrade, from_app: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(from_client, from_app) {
        Ok((c, a)) => {
            let (mut c, mut a) = (TokioIo::new(c), TokioIo::new(a));
            match tokio::io::copy_bidirectional(&mut c, &mut a).await {
                Ok((up, down)) => debug!(up, down, "upgraded connection closed"),
                Err(e) => debug!(error = %e, "upgraded connection ended with an error"),
            }
        }
        Err(e) => debug!(error = %e, "upgrade did not complete"),
    }
}

/// Opens TCP (no Nagle) + TLS to the fixed destination of its pool.
#[derive(Clone)]
pub struct UpstreamConnector {
    dst: SocketAddr,
    name: ServerName<'static>,
    tls: TlsConnector,
    connect_timeout: Duration,
    metrics: Arc<Metrics>,
    port: u16,
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UpstreamIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let r = this.connect().await;
            this.metrics.port(this.port).upstream_connect(r.is_ok());
            r
        })
    }
}

impl UpstreamConnector {
    async fn connect(&self) -> io::Result<UpstreamIo> {
        let dst = self.dst;
        let connect = async {
            let tcp = TcpStream::connect(dst).await?;
            tcp.set_nodelay(true)?;
            self.tls.connect(self.name.clone(), tcp).await
        };
        let tls = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {dst} timed out"),
                )
            })?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("TLS to {dst} as {:?}: {}", self.name, error_chain(&e)),
                )
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let gauge = OpenGauge::new(self.metrics.clone(), self.port);
        Ok(UpstreamIo {
            inner: TokioIo::new(tls),
            h2,
            _gauge: gauge,
        })
    }
}

/// Counts an open upstream connection for `/metrics` while alive.
struct OpenGauge {
    metrics: Arc<Metrics>,
    port: u16,
}

impl OpenGauge {
    fn new(metrics: Arc<Metrics>, port: u16) -> Self {
        metrics.port(port).upstream_open(1);
        OpenGauge { metrics, port }
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.metrics.port(self.port).upstream_open(-1);
    }
}

/// A TLS connection to the app, telling the pool whether h2 was negotiated.
pub struct UpstreamIo {
    inner: TokioIo<TlsStream<TcpStream>>,
    h2: bool,
    _gauge: OpenGauge,
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        if self.h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_offer_and_host() {
        assert_eq!(
            offered_alpn(Some(b"h2"), false),
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(offered_alpn(Some(b"h2"), true), vec![b"http/1.1".to_vec()]);
        assert_eq!(offered_alpn(None, false), Vec::<Vec<u8>>::new());
        assert_eq!(host_of("a.test:8443"), "a.test");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("a.test"), "a.test");
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_others_kept() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("host", "app.test"),
            ("x-end", "2"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "x-end"]);

        let mut h = http::HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.len(),
            3,
            "an upgrade keeps Connection and Upgrade; TE: trailers stays"
        );
    }
}

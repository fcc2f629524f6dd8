//! Forwarding one request to the original destination over a pooled TLS connection.
//!
//! * One hyper-util legacy `Client` (and so one pool) per (destination, SNI, offered ALPN): the
//!   connector is fixed per pool, so requests never share a connection made for another name.
//!   Keys come from clients (SNI, `:authority`), so at most [`MAX_POOLS_PER_PORT`] pools are
//!   kept per port and worker lane (each lane has its own, see `lanes`), least recently used
//!   evicted; an evicted pool's requests in flight finish on their connections, its idle
//!   connections close. Each pool keeps at most [`MAX_IDLE_PER_POOL`] idle connections.
//! * The app picks the protocol: offering `h2` (when the client spoke h2) and getting it yields
//!   one multiplexed connection; otherwise HTTP/1.1 connections, as many as concurrent requests
//!   need (the pool is unbounded, idle ones are closed after `--upstream-idle-timeout`, 60 s).
//! * Once the app has answered over h2, that pool key switches to an HTTP/2-only client (offering
//!   only `h2`): it makes one connection at a time, where the ALPN-agnostic client starts a
//!   handshake for every request waiting when no connection is open (hundreds at once after an
//!   idle minute). A failed connect switches back, so an app that dropped h2 is reached again.
//! * Bodies stream both ways (`Incoming` in, `Incoming` out), so trailers and back-pressure are
//!   hyper's; nothing is buffered whole.
//! * Header values, duplicates and order are passed as received; HTTP/1 header *names* reach
//!   the app in lowercase (they are case-insensitive, RFC 9110 §5.1, and HTTP/2 always carries
//!   them so), as Envoy, HAProxy and linkerd do: keeping each message's original spelling cost
//!   ~11% of the proxy's instructions per request (measured with callgrind, BENCHMARKS.md).
//! * The URI given to the pool carries the client's authority (its `:authority`, else `Host`),
//!   so an h2 app sees the same `:authority`; toward an HTTP/1.1 app a `Host` is added from it
//!   only when the request has none (h2 → h1).
//! * HTTP/1.1 upgrades (WebSocket): the upgrade is taken on both sides and the two upgraded
//!   streams are joined with `copy_bidirectional`.
//!
//! `upstream`: the pools' connector; `dedicated`: the HTTP/1.1 client connection's own app
//! connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lru::LruCache;
use rustls_pki_types::ServerName;
use tls_steal_http::{is_upgrade, strip_hop_by_hop};
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use super::affinity::{Affinity, IdleConns};
use super::metrics::{Metrics, Outcome};
use super::route::ConnInfo;
use super::tls_client::{UpstreamTls, server_name};

mod dedicated;
mod upstream;

use upstream::UpstreamConnector;

/// The body type the proxy answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// An empty body, for the proxy's or a session's body type.
pub fn empty_body<E: 'static>() -> UnsyncBoxBody<Bytes, E> {
    http_body_util::Empty::new()
        .map_err(|n: Infallible| match n {})
        .boxed_unsync()
}

/// A copy of a request's head (method, URI, version, headers), without its extensions.
pub fn head_copy<B>(req: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

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
pub struct PoolKey {
    dst: SocketAddr,
    name: ServerName<'static>,
    alpn: Vec<Vec<u8>>,
}

/// Most upstream pools (pool keys) kept per port and worker lane. Legitimate traffic has a
/// handful of names per port; the bound only matters against clients inventing names.
pub const MAX_POOLS_PER_PORT: usize = 64;
/// Most idle connections one pool keeps.
pub const MAX_IDLE_PER_POOL: usize = 256;

impl PoolKey {
    #[cfg(test)]
    pub fn new(dst: SocketAddr, name: ServerName<'static>, alpn: Vec<Vec<u8>>) -> Self {
        PoolKey { dst, name, alpn }
    }
}

/// Timeouts toward the application.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTimeouts {
    /// TCP connect + TLS handshake.
    pub connect: Duration,
    /// An idle pooled connection is closed after this.
    pub idle: Duration,
}

/// The forwarding side of one port (one per generation of its TLS material).
pub struct Forwarder {
    /// Unique among all forwarders ever made: a [`PoolMemo`] names the generation it was
    /// filled under with it.
    id: u64,
    port: u16,
    upstream: Arc<UpstreamTls>,
    metrics: Arc<Metrics>,
    timeouts: UpstreamTimeouts,
    /// One per worker lane (see `lanes`): a lane's connections to the app are used only by
    /// the requests of that lane, so no request waits on another thread.
    lanes: Box<[Lane]>,
}

static NEXT_FORWARDER: AtomicU64 = AtomicU64::new(0);

/// An HTTP/2 client connection's last pool. Its streams nearly always name one authority, so
/// the pool key (the name parsed into a TLS name, the ALPN list, ~2k instructions with the pool
/// lookup) is built once per connection rather than per stream: the same authority, upgrade
/// flag and TLS generation find the same pool. A pool the port's LRU has since dropped stays
/// in use by this connection until its authority changes (at most one such pool per
/// connection).
#[derive(Default)]
pub struct PoolMemo(Mutex<Option<Memo>>);

struct Memo {
    forwarder: u64,
    authority: Option<Authority>,
    upgrade: bool,
    pool: Arc<Pool>,
}

impl PoolMemo {
    fn get(
        &self,
        forwarder: u64,
        authority: Option<&Authority>,
        upgrade: bool,
    ) -> Option<Arc<Pool>> {
        let memo = self.0.lock().unwrap_or_else(|e| e.into_inner());
        memo.as_ref()
            .filter(|m| {
                m.forwarder == forwarder
                    && m.upgrade == upgrade
                    && m.authority.as_ref() == authority
            })
            .map(|m| m.pool.clone())
    }

    fn set(&self, memo: Memo) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(memo);
    }
}

/// What a client connection keeps between its requests.
#[derive(Clone)]
pub enum ConnSlot {
    /// HTTP/1.1: its own app connection.
    Dedicated(Arc<Affinity>),
    /// HTTP/2: its last pool.
    Pooled(Arc<PoolMemo>),
}

/// The upstream state of one worker lane.
struct Lane {
    clients: Mutex<LruCache<PoolKey, Arc<Pool>>>,
    /// App connections of HTTP/1.1 clients that went away (see `affinity`).
    idle: Arc<IdleConns>,
}

type UpstreamClient = Client<UpstreamConnector, ProxyBody>;

/// The clients of one pool key.
struct Pool {
    /// Offers the key's ALPN list; the app decides.
    auto: UpstreamClient,
    /// HTTP/2 only, offering only `h2`; `None` when the key does not offer `h2`.
    h2: Option<UpstreamClient>,
    /// The app answered over h2 on this key: use `h2`.
    speaks_h2: AtomicBool,
}

impl Pool {
    fn pick(&self) -> (&UpstreamClient, bool) {
        match &self.h2 {
            Some(h2) if self.speaks_h2.load(Relaxed) => (h2, true),
            _ => (&self.auto, false),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let n: usize = (self.lanes.iter_mut())
            .map(|l| l.clients.get_mut().map(|c| c.len()).unwrap_or(0))
            .sum();
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

/// The client's authority: its `:authority` (h2, or an absolute-form target), else `Host`.
fn client_authority<B>(req: &Request<B>) -> Option<Authority> {
    match req.uri().authority() {
        Some(a) => Some(a.clone()),
        None => req
            .headers()
            .get(HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok()),
    }
}

impl Forwarder {
    pub fn new(
        port: u16,
        upstream: Arc<UpstreamTls>,
        metrics: Arc<Metrics>,
        timeouts: UpstreamTimeouts,
        lanes: usize,
    ) -> Self {
        let lane = || Lane {
            clients: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_POOLS_PER_PORT).expect("a non-zero constant"),
            )),
            idle: {
                let idle = Arc::new(IdleConns::default());
                idle.start_sweeper(timeouts.idle);
                idle
            },
        };
        Forwarder {
            id: NEXT_FORWARDER.fetch_add(1, Relaxed),
            port,
            upstream,
            metrics,
            timeouts,
            lanes: (0..lanes.max(1)).map(|_| lane()).collect(),
        }
    }

    /// The calling worker lane's pools.
    fn lane(&self) -> &Lane {
        &self.lanes[super::lanes::current() % self.lanes.len()]
    }

    /// The app-side TLS configuration offering `alpn` (for byte relays).
    pub fn upstream_config(&self, alpn: &[Vec<u8>]) -> Arc<rustls::ClientConfig> {
        self.upstream.config(alpn)
    }

    /// Connects to `key`'s destination and name, offering `alpn`.
    fn connector(&self, key: &PoolKey, alpn: &[Vec<u8>]) -> UpstreamConnector {
        UpstreamConnector {
            dst: key.dst,
            name: key.name.clone(),
            tls: TlsConnector::from(self.upstream.config(alpn)),
            connect_timeout: self.timeouts.connect,
            metrics: self.metrics.clone(),
            port: self.port,
        }
    }

    fn client_for(&self, key: &PoolKey, alpn: &[Vec<u8>], h2_only: bool) -> UpstreamClient {
        let connector = self.connector(key, alpn);
        Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.timeouts.idle)
            .pool_max_idle_per_host(MAX_IDLE_PER_POOL)
            .http2_only(h2_only)
            .http1_preserve_header_case(true)
            .set_host(true)
            .build(connector)
    }

    fn pool(&self, key: PoolKey) -> Arc<Pool> {
        let mut clients = (self.lane().clients.lock()).unwrap_or_else(|e| e.into_inner());
        // Found: marked most recently used, no allocation.
        if let Some(p) = clients.get(&key) {
            return p.clone();
        }
        let offers_h2 = key.alpn.iter().any(|a| a == b"h2");
        let pool = Arc::new(Pool {
            auto: self.client_for(&key, &key.alpn, false),
            h2: offers_h2.then(|| self.client_for(&key, &[b"h2".to_vec()], true)),
            speaks_h2: AtomicBool::new(false),
        });
        let m = self.metrics.port(self.port);
        m.upstream_pools(1);
        // The least recently used pool leaves the map when it is full (the key was absent, so
        // it is never replaced itself); it is dropped outside the lock.
        let evicted = clients.push(key, pool.clone());
        drop(clients);
        if evicted.is_some() {
            m.upstream_pools(-1);
        }
        pool
    }

    /// Sends `req` to the app and returns its response (or a 502 naming the failure).
    /// (Any body: `Incoming`, or a mirrored request's teed body.) `slot`: what the client
    /// connection keeps between requests (HTTP/1.1: its own app connection, see
    /// [`super::affinity`]; HTTP/2: its last pool).
    pub async fn forward<B>(
        &self,
        conn: &ConnInfo,
        req: Request<B>,
        slot: &ConnSlot,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = Bytes, Error = hyper::Error> + Send + 'static,
    {
        let mut req = req.map(|b| b.boxed_unsync());
        let start = Instant::now();
        let version = req.version();
        let upgrade = app_head(&mut req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let sent = match slot {
            ConnSlot::Dedicated(a) if !upgrade && conn.alpn.as_deref() != Some(b"h2") => {
                self.send_dedicated(a, conn, req).await
            }
            ConnSlot::Pooled(memo) => self.send_pooled(conn, upgrade, req, Some(memo)).await,
            ConnSlot::Dedicated(_) => self.send_pooled(conn, upgrade, req, None).await,
        };
        let m = self.metrics.port(self.port);
        match sent {
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
            Err(SendFailure::BadTarget(target)) => text_response(
                StatusCode::BAD_REQUEST,
                format!("tls-steal-proxy: unusable request target {target:?}\n"),
            ),
            Err(SendFailure::Upstream(e)) => {
                m.request(Outcome::UpstreamError, start.elapsed());
                let detail = error_chain(&*e);
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

    fn key(&self, conn: &ConnInfo, authority: Option<&Authority>, upgrade: bool) -> PoolKey {
        PoolKey {
            dst: conn.original_dst,
            name: server_name(
                conn.sni.as_deref(),
                authority.map(Authority::host),
                conn.original_dst.ip(),
            ),
            alpn: offered_alpn(conn.alpn.as_deref(), upgrade),
        }
    }

    /// Through the shared pool of the request's key (absolute-form URI, the pool adds `Host`).
    async fn send_pooled(
        &self,
        conn: &ConnInfo,
        upgrade: bool,
        mut req: Request<ProxyBody>,
        memo: Option<&PoolMemo>,
    ) -> Result<Response<Incoming>, SendFailure> {
        let authority = client_authority(&req);
        let memoized = memo.and_then(|m| m.get(self.id, authority.as_ref(), upgrade));
        let pool = match memoized {
            Some(pool) => pool,
            None => {
                let pool = self.pool(self.key(conn, authority.as_ref(), upgrade));
                if let Some(m) = memo {
                    m.set(Memo {
                        forwarder: self.id,
                        authority: authority.clone(),
                        upgrade,
                        pool: pool.clone(),
                    });
                }
                pool
            }
        };
        let (client, via_h2) = pool.pick();
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = match authority {
            Some(a) => Some(a),
            None => Authority::try_from(conn.original_dst.to_string()).ok(),
        };
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        let target = parts.path_and_query.clone();
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| SendFailure::BadTarget(target))?;
        if req.version() == Version::HTTP_2 {
            // The pool picks h2 or HTTP/1.1 by what the app negotiated; an HTTP_2 version would
            // forbid the HTTP/1.1 fallback.
            *req.version_mut() = Version::HTTP_11;
        }
        match client.request(req).await {
            Ok(resp) => {
                if !via_h2 && pool.h2.is_some() && resp.version() == Version::HTTP_2 {
                    pool.speaks_h2.store(true, Relaxed);
                }
                Ok(resp)
            }
            Err(e) => {
                if via_h2 && e.is_connect() {
                    pool.speaks_h2.store(false, Relaxed);
                }
                Err(SendFailure::Upstream(Box::new(e)))
            }
        }
    }
}

/// Why a request did not reach the app.
enum SendFailure {
    /// The request target cannot be made into a URI (answered 400).
    BadTarget(Option<PathAndQuery>),
    /// Connecting or the exchange failed (answered 502).
    Upstream(Box<dyn std::error::Error + Send + Sync>),
}

/// The head of a request as the app gets it (the URI aside, which depends on the connection
/// it goes over): without hop-by-hop headers, except `Connection` and `Upgrade` of an upgrade.
/// Returns whether the request is an upgrade.
pub fn app_head<B>(req: &mut Request<B>) -> bool {
    let upgrade = is_upgrade(req);
    strip_hop_by_hop(req.headers_mut(), upgrade);
    upgrade
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

#[cfg(test)]
mod tests;

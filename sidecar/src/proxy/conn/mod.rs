//! One client connection: original destination → port state → TLS handshake → protocol
//! (ALPN, else sniffing) → HTTP serving with per-request routing, or a byte relay.
//! Every failure here ends this connection only, and is logged with the client address, the
//! original destination and the port (the span fields).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::{Service, service_fn};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Shared;
use super::affinity::Affinity;
use super::body;
use super::forward::{ConnSlot, PoolMemo, ProxyBody, error_chain, text_response};
use super::idle::{Activity, Guarded};
use super::metrics::{ConnKind, HandshakeFailure};
use super::orig_dst::original_dst;
use super::passthrough::relay_tcp;
use super::ports::ActivePort;
use super::route::{ConnInfo, Delivery, Route};
use super::tls_client::server_name;
use tls_steal_http::{Prefixed, Sniffed, classify};

/// Handles one accepted connection to its end.
pub async fn handle(shared: Arc<Shared>, tcp: TcpStream, client: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let dst = match original_dst(&tcp, shared.cfg.dst_override(tcp.local_addr().ok())) {
        Ok(d) => d,
        Err(e) => {
            return warn!(%client, error = %e, "cannot tell the original destination; closing the connection");
        }
    };
    serve(shared, tcp, client, dst).await
}

/// Serves one client connection whose original destination is known. Generic over the stream so
/// tests can drive it in memory; the accept loop's `TcpStream` instance is the only one built
/// into the binary, so the hot path is what it was.
pub(crate) async fn serve<S>(shared: Arc<Shared>, io: S, client: SocketAddr, dst: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _guard = shared.drain.guard();
    let port = dst.port();
    let metrics = shared.metrics.clone();
    let max = shared.cfg.max_connections;
    let _slot = match metrics.port(port).client_connection(max) {
        Ok(slot) => slot,
        // Dropping the socket closes it: the client sees EOF at once. Logged at the 1st, 2nd,
        // 4th, 8th... refusal: visible, never a flood.
        Err(refused) if refused.is_power_of_two() => {
            return warn!(%client, original_dst = %dst, port, max, refused_total = refused,
                "client connection limit of the port reached (--max-connections); connection refused");
        }
        Err(_) => return,
    };
    let span = info_span!("conn", %client, original_dst = %dst, port);
    async move {
        let active = shared.ports.get(port).and_then(|p| p.active());
        match active {
            None => {
                shared.metrics.port(port).connection(ConnKind::Passthrough);
                Box::pin(relay_tcp(io, dst, shared.cfg.connect_timeout)).await
            }
            Some(active) => serve_tls(shared, active, io, client, dst).await,
        }
    }
    .instrument(span)
    .await
}

enum Proto {
    H1,
    H2,
    Opaque,
}

async fn serve_tls<S>(
    shared: Arc<Shared>,
    active: Arc<ActivePort>,
    mut io: S,
    client: SocketAddr,
    dst: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let port = dst.port();
    let m = shared.metrics.port(port);
    // What the client sends first, before the proxy answers anything (`hello`): a client that
    // does not speak TLS, or speaks one only the app can serve, gets the app itself, its bytes
    // replayed, as without the proxy (plain HTTP to an HTTPS port gets the app's 400; an app
    // serving TLS and plaintext on one port, or still TLS 1.0, keeps serving both).
    let read = hello::read(&mut io, &active.server);
    let (raw, verdict) = match tokio::time::timeout(shared.cfg.handshake_timeout, read).await {
        Ok(Ok(Some(hello))) => hello,
        Ok(Ok(None)) => {
            m.handshake_failure(HandshakeFailure::ClientAborted);
            return debug!("client closed before sending anything");
        }
        Ok(Err(e)) => {
            m.handshake_failure(HandshakeFailure::classify(&e));
            return info!(error = %e, "client TLS handshake failed");
        }
        Err(_) => {
            m.handshake_failure(HandshakeFailure::Timeout);
            return info!("client TLS handshake timed out");
        }
    };
    let relayed = match verdict {
        Verdict::Terminate => None,
        Verdict::NotTls => Some((
            HandshakeFailure::NotTls,
            "the client does not speak TLS".into(),
        )),
        Verdict::Legacy(why) => Some((HandshakeFailure::Legacy, why)),
    };
    if let Some((counted, reason)) = relayed {
        drop(active);
        m.handshake_failure(counted);
        m.connection(ConnKind::Passthrough);
        info!(%reason, "relayed to the app untouched: only the app can serve this client");
        let io = Prefixed::prefixed(raw, io);
        return Box::pin(relay_tcp(io, dst, shared.cfg.connect_timeout)).await;
    }
    let io = Prefixed::prefixed(raw, io);
    let acceptor = TlsAcceptor::from(active.server.clone());
    // The handshake's future and the stream live on the heap: the connection's task then holds
    // a pointer, not a ~1.2 KB stream copied through every await below (each caller's future
    // would keep its own slot for it), so an idle connection's task stays small.
    let accept = Box::pin(async { acceptor.accept(io).await.map(Box::new) });
    let mut tls = match tokio::time::timeout(shared.cfg.handshake_timeout, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = HandshakeFailure::classify(&e);
            m.handshake_failure(why);
            return info!(reason = why.label(), error = %e, "client TLS handshake failed");
        }
        Err(_) => {
            m.handshake_failure(HandshakeFailure::Timeout);
            return info!("client TLS handshake timed out");
        }
    };
    drop(active);
    m.connection(ConnKind::Tls);
    let (_, session) = tls.get_ref();
    let info = Arc::new(ConnInfo {
        client,
        original_dst: dst,
        port,
        sni: session.server_name().map(str::to_owned),
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
    });
    let (proto, prefix) = match info.alpn.as_deref() {
        Some(b"h2") => (Proto::H2, Bytes::new()),
        Some(b"http/1.1" | b"http/1.0") => (Proto::H1, Bytes::new()),
        Some(_) => (Proto::Opaque, Bytes::new()),
        None => match sniff(&mut tls, shared.cfg.sniff_timeout).await {
            Some((Sniffed::Http1, b)) => (Proto::H1, b),
            Some((Sniffed::Http2, b)) => (Proto::H2, b),
            Some((_, b)) => (Proto::Opaque, b),
            None => return debug!("client closed before sending anything"),
        },
    };
    let io = Prefixed::prefixed(prefix, tls);
    match proto {
        Proto::Opaque => {
            m.connection(ConnKind::Opaque);
            Box::pin(relay_tls(&shared, &info, io)).await
        }
        Proto::H1 | Proto::H2 => serve_http(shared, info, io, matches!(proto, Proto::H2)).await,
    }
}

/// Reads until the first bytes tell the protocol. `None` when the client closed without a byte.
/// A client that stays silent past `wait` (a server-speaks-first protocol) is relayed.
async fn sniff<S: AsyncRead + Unpin>(s: &mut S, wait: Duration) -> Option<(Sniffed, Bytes)> {
    let mut buf = BytesMut::with_capacity(64);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match classify(&buf) {
            Sniffed::NeedMore => {}
            other => return Some((other, buf.freeze())),
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return None,
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Some((Sniffed::Opaque, buf.freeze())),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether a connection has received a request yet.
#[derive(Default)]
struct FirstRequest {
    seen: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl FirstRequest {
    /// Called for every request: one relaxed load after the first.
    fn seen(&self) {
        use std::sync::atomic::Ordering;
        if !self.seen.load(Ordering::Relaxed) {
            self.seen.store(true, Ordering::Release);
            // Stores a permit when nobody waits yet, so `wait` cannot miss it.
            self.notify.notify_one();
        }
    }

    async fn wait(&self) {
        if !self.seen.load(std::sync::atomic::Ordering::Acquire) {
            self.notify.notified().await;
        }
    }
}

async fn serve_http<S>(shared: Arc<Shared>, info: Arc<ConnInfo>, io: S, h2: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The first head within the header timeout, then no idle time beyond the idle timeout.
    let activity = Activity::default();
    // HTTP/1.1: one request at a time, so one app connection of its own; HTTP/2: its streams'
    // last pool.
    let slot = match h2 {
        false => ConnSlot::Dedicated(Affinity::new()),
        true => ConnSlot::Pooled(Arc::new(PoolMemo::default())),
    };
    let svc_shared = shared.clone();
    let svc_info = info.clone();
    let svc_activity = activity.clone();
    let first = Arc::new(FirstRequest::default());
    let svc_first = first.clone();
    let svc = service_fn(move |req| {
        svc_first.seen();
        let shared = svc_shared.clone();
        let info = svc_info.clone();
        let stream = svc_activity.open();
        let slot = slot.clone();
        async move {
            let resp = handle_request(&shared, &info, req, &slot).await;
            Ok::<_, Infallible>(resp.map(|b| Guarded::new(b, stream).boxed_unsync()))
        }
    });
    if h2 {
        Box::pin(serve_h2(&shared, io, svc, &activity, &first)).await
    } else {
        h1::serve(&shared, info.port, io, svc, &activity, &first).await
    }
}

/// HTTP/2: hyper's connection for the connection's life (its streams share the port's pool).
async fn serve_h2<S, Svc>(
    shared: &Shared,
    io: S,
    svc: Svc,
    activity: &Activity,
    first: &FirstRequest,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>,
    Svc: Clone + Send + 'static,
    Svc::Future: Send + 'static,
{
    let conn = shared
        .http
        .h2
        .serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let expired = activity.expired(shared.cfg.header_read_timeout, shared.cfg.idle_timeout);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = told_to_finish(shared, first) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        why = expired => {
            debug!(?why, "closing an HTTP/2 client connection without a request in flight");
            // GOAWAY first (a stream that arrives meanwhile is still answered), forced after
            // one more header timeout.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(shared.cfg.header_read_timeout, conn).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %error_chain(&*e), "client connection ended with an error");
    }
}

/// Resolves when draining has started and the connection has had its first request (or the
/// proxy is closing): a graceful shutdown before the first request could drop one already on the
/// wire (HTTP/1: closed unread; HTTP/2: the final GOAWAY can reach a client that has not sent its
/// first stream yet).
async fn told_to_finish(shared: &Shared, first: &FirstRequest) {
    shared.shutdown.wait().await;
    tokio::select! {
        _ = first.wait() => {}
        _ = shared.shutdown.closing() => {}
    }
}

async fn handle_request(
    shared: &Shared,
    info: &ConnInfo,
    req: Request<Incoming>,
    slot: &ConnSlot,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let (route, body) = match shared.router.route(&parts, info) {
        // A session on this port filters on bodies: read it (bounded), then decide; the bytes
        // read go on unchanged whichever way the request goes.
        Route::ReadBody => {
            let (read, body) = body::read(body, &parts.headers, shared.cfg.body_limits).await;
            (shared.router.route_with_body(&parts, &read, info), body)
        }
        route => (route, body.boxed_unsync()),
    };
    let req = Request::from_parts(parts, body);
    let req = match route {
        Route::Forward | Route::ReadBody => req,
        Route::Steal(stolen) => match stolen.serve(req, info).await {
            Delivery::Answered(resp) => return resp,
            // The session was closing and never got it: the app answers, as with no session.
            Delivery::NotTaken(req) => req,
        },
        Route::Mirror(mirrored) => mirrored.tee(req, info),
    };
    match shared.ports.get(info.port).and_then(|p| p.active()) {
        Some(active) => active.forwarder.forward(info, req, slot).await,
        None => text_response(
            StatusCode::BAD_GATEWAY,
            "tls-steal-proxy: port has no usable TLS material\n".into(),
        ),
    }
}

/// Non-HTTP over TLS: a new TLS connection to the app (same SNI, same ALPN), bytes copied.
async fn relay_tls<S>(shared: &Shared, info: &ConnInfo, mut io: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(active) = shared.ports.get(info.port).and_then(|p| p.active()) else {
        return;
    };
    let alpn: Vec<Vec<u8>> = info.alpn.iter().cloned().collect();
    let connector = tokio_rustls::TlsConnector::from(active.forwarder.upstream_config(&alpn));
    let name = server_name(info.sni.as_deref(), None, info.original_dst.ip());
    let connect = async {
        let tcp = TcpStream::connect(info.original_dst).await?;
        tcp.set_nodelay(true)?;
        connector.connect(name, tcp).await
    };
    let mut upstream = match tokio::time::timeout(shared.cfg.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return warn!(error = %error_chain(&e), "relay: TLS connection to the application failed");
        }
        Err(_) => return warn!("relay: connecting to the application timed out"),
    };
    match tokio::io::copy_bidirectional(&mut io, &mut upstream).await {
        Ok((up, down)) => debug!(up, down, "relay closed"),
        Err(e) => debug!(error = %e, "relay ended with an error"),
    }
}

mod h1;
mod hello;
#[cfg(test)]
mod tests;

use hello::Verdict;

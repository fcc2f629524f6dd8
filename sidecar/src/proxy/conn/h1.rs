//! HTTP/1.1 client connections, parked while idle.
//!
//! hyper's server connection keeps an 8 KB read buffer, an 8 KB header write buffer and the box
//! of the in-flight request's future for as long as it lives, so an idle keep-alive client (an
//! ingress's or a mesh's pool) would cost them all the time. After `park_after` without a request
//! in flight the connection is taken out of hyper: a graceful shutdown whose IO shutdown is
//! skipped (the hook's `keep_open`), then `into_parts`. The task then waits for the client's next
//! byte holding only the TLS stream, and a new hyper connection (same service) takes over with
//! every byte read so far replayed first: hyper's unprocessed bytes, then the waking byte.
//!
//! A request that slips in while parking is answered by the old connection with `Connection:
//! close` (hyper's graceful shutdown of a busy connection); the connection then closes, as any
//! server's keep-alive close would. Upgrades keep hyper's own path: an upgraded connection ends
//! the hyper connection before it could park.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tls_steal_http::{Hooked, Prefix, ReadHook};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

use super::{FirstRequest, told_to_finish};
use crate::proxy::Shared;
use crate::proxy::forward::{ProxyBody, error_chain};
use crate::proxy::idle::{Activity, Quiet, Watch};

/// The hook of a client stream: bytes to replay, and the connection's [`Activity`] (whose
/// parking flag turns hyper's IO shutdown into a no-op).
struct Parkable {
    replay: Prefix,
    activity: Activity,
}

impl ReadHook for Parkable {
    fn serve(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        self.replay.serve(buf)
    }

    fn keep_open(&self) -> bool {
        self.activity.parking()
    }
}

/// How one hyper connection over the stream ended.
enum Round {
    /// Done: the stream was shut down or closed by hyper, or upgraded.
    Ended(hyper::Result<()>),
    /// Taken out of hyper while idle.
    Parked,
}

/// Serves an HTTP/1.1 client connection to its end, parking it whenever it idles.
pub(super) async fn serve<S, Svc>(
    shared: &Shared,
    port: u16,
    io: S,
    mut svc: Svc,
    activity: &Activity,
    first: &FirstRequest,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible> + Unpin,
{
    let cfg = &shared.cfg;
    // Accepted while draining: its one request is answered (with `Connection: close`); a
    // graceful shutdown now would drop it unread. It never parks.
    let last = shared.shutdown.is_triggered();
    let builder = if last {
        &shared.http.h1_last
    } else {
        &shared.http.h1
    };
    let hook = Parkable {
        replay: Prefix::new(Bytes::new()),
        activity: activity.clone(),
    };
    let mut io = Hooked::new(io, hook);
    loop {
        // Boxed: the parked task holds none of hyper's state.
        let mut conn = Box::new(
            builder
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades(),
        );
        let quiet = (!last).then(|| Quiet {
            after: cfg.park_after,
            requests: activity.requests(),
        });
        let watch = activity.watch(cfg.header_read_timeout, cfg.idle_timeout, quiet);
        let round = tokio::select! {
            r = &mut *conn => Round::Ended(r),
            _ = told_to_finish(shared, first), if !last => {
                Pin::new(&mut *conn).graceful_shutdown();
                Round::Ended((&mut *conn).await)
            }
            seen = watch => match seen {
                Watch::Expired(why) => {
                    debug!(?why, "closing an HTTP/1.1 client connection without a request in flight");
                    // Graceful first (a request that arrives meanwhile is still answered); a
                    // head still trickling in (slowloris) keeps hyper reading, so the close is
                    // forced after one more header timeout.
                    Pin::new(&mut *conn).graceful_shutdown();
                    match tokio::time::timeout(cfg.header_read_timeout, &mut *conn).await {
                        Ok(r) => Round::Ended(r),
                        Err(_) => Round::Ended(Ok(())),
                    }
                }
                Watch::Quiet => {
                    let requests = activity.requests();
                    activity.set_parking(true);
                    Pin::new(&mut *conn).graceful_shutdown();
                    // Idle: hyper closes at once; a request that slipped in is answered first.
                    let r = tokio::time::timeout(cfg.header_read_timeout, &mut *conn).await;
                    activity.set_parking(false);
                    match r {
                        Ok(Ok(())) if activity.requests() == requests => Round::Parked,
                        // Answered with `Connection: close`: the stream, kept open for
                        // parking, is closed now.
                        Ok(Ok(())) => {
                            if let Some(parts) = conn.into_parts() {
                                let _ = parts.io.into_inner().shutdown().await;
                            }
                            return;
                        }
                        Ok(Err(e)) => Round::Ended(Err(e)),
                        Err(_) => return,
                    }
                }
            }
        };
        match round {
            Round::Ended(Ok(())) => return,
            Round::Ended(Err(e)) => {
                return debug!(error = %error_chain(&e), "client connection ended with an error");
            }
            Round::Parked => {}
        }
        // Not upgraded: hyper only completes an upgrade by ending the connection.
        let Some(parts) = conn.into_parts() else {
            return;
        };
        svc = parts.service;
        io = parts.io.into_inner();
        io.hook_mut().replay.prepend(parts.read_buf);
        if io.hook().replay.is_empty() {
            let _parked = shared.metrics.port(port).parked();
            match wait_for_byte(shared, &mut io, activity, first).await {
                Some(byte) => io.hook_mut().replay.prepend(byte),
                None => return,
            }
        }
    }
}

/// Waits, parked, for the client's next byte; `None` when the connection is to end (closed by
/// the client, idle past the idle timeout, or the proxy draining), the stream then shut down.
async fn wait_for_byte<S>(
    shared: &Shared,
    io: &mut Hooked<S, Parkable>,
    activity: &Activity,
    first: &FirstRequest,
) -> Option<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cfg = &shared.cfg;
    let mut byte = [0u8; 1];
    tokio::select! {
        r = io.read(&mut byte) => match r {
            Ok(1) => return Some(Bytes::copy_from_slice(&byte)),
            Ok(_) => return None,
            Err(e) => {
                debug!(error = %e, "parked client connection ended with an error");
                return None;
            }
        },
        _ = told_to_finish(shared, first) => {}
        why = activity.expired(cfg.header_read_timeout, cfg.idle_timeout) => {
            debug!(?why, "closing a parked HTTP/1.1 client connection");
        }
    }
    let _ = io.shutdown().await;
    None
}

//! Timeouts of client connections, both protocols. hyper's HTTP/2 server has none, and its
//! HTTP/1 header timer also runs while a keep-alive connection waits for its next request (an
//! idle client would be closed after 10 s, where apps keep them 60 s and more, and an ingress
//! reusing the connection just then gets an error), so the proxy keeps its own:
//!
//! * no request head within `header_read_timeout` of the handshake → closed (slowloris);
//! * no request in flight for `idle_timeout` → closed (HTTP/2: GOAWAY; HTTP/1.1: closed between
//!   requests; a client simply reconnects). A later head that trickles in is bounded by it too.
//!
//! A stream (an HTTP/1.1 exchange) counts as open from its request head until its response body
//! has ended (or the client reset it), so a long gRPC stream or download is never "idle".
//!
//! The same clock tells an HTTP/1.1 connection when to park ([`Watch::Quiet`], see `conn::h1`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::forward::ProxyBody;

#[derive(Debug)]
struct State {
    open: usize,
    /// When `open` last dropped to zero (or the connection started).
    idle_since: Instant,
    any_request: bool,
    /// Streams opened so far.
    requests: u64,
    /// The connection is being parked: its IO must not be shut down (see `conn::h1`).
    parking: bool,
}

/// The open streams of one connection.
#[derive(Clone, Debug)]
pub struct Activity(Arc<Mutex<State>>);

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(Mutex::new(State {
            open: 0,
            idle_since: Instant::now(),
            any_request: false,
            requests: 0,
            parking: false,
        })))
    }
}

/// Why a connection was closed by [`Activity::expired`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    NoRequest,
    Idle,
}

/// What [`Activity::watch`] saw first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    Expired(Expiry),
    /// A request was served since the count given, and nothing has been open for the quiet time.
    Quiet,
}

/// When [`Activity::watch`] reports [`Watch::Quiet`].
#[derive(Clone, Copy, Debug)]
pub struct Quiet {
    pub after: Duration,
    /// [`Activity::requests`] when the watch began: quiet needs a request after it.
    pub requests: u64,
}

impl Activity {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request head arrived; the stream stays open until the guard is dropped.
    pub fn open(&self) -> StreamGuard {
        let mut s = self.state();
        s.open += 1;
        s.requests += 1;
        s.any_request = true;
        StreamGuard(self.clone())
    }

    /// Resolves when the connection has been without an open stream for too long.
    pub async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) -> Expiry {
        match self.watch(header_timeout, idle_timeout, None).await {
            Watch::Expired(why) => why,
            Watch::Quiet => unreachable!("no quiet time was asked for"),
        }
    }

    /// [`Activity::expired`], or [`Watch::Quiet`] first when `quiet` is given: one timer for both.
    pub async fn watch(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
        quiet: Option<Quiet>,
    ) -> Watch {
        loop {
            let (open, since, any, requests) = {
                let s = self.state();
                (s.open, s.idle_since, s.any_request, s.requests)
            };
            let (limit, why) = if any {
                (idle_timeout, Expiry::Idle)
            } else {
                (header_timeout, Expiry::NoRequest)
            };
            // Re-checked after a period: a stream closing meanwhile restarts the clock.
            let period = quiet.map_or(limit, |q| q.after.min(limit));
            if open > 0 {
                tokio::time::sleep(period).await;
                continue;
            }
            let now = Instant::now();
            let expiry = since + limit;
            let quiet_at = quiet
                .filter(|q| requests > q.requests)
                .map(|q| since + q.after)
                .filter(|&at| at < expiry);
            if let Some(at) = quiet_at {
                if now >= at {
                    return Watch::Quiet;
                }
                tokio::time::sleep_until(at).await;
                continue;
            }
            if now >= expiry {
                return Watch::Expired(why);
            }
            // Not yet eligible for quiet: look again after a period.
            let wake = if quiet.is_some() {
                expiry.min(now + period)
            } else {
                expiry
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Streams opened so far.
    pub fn requests(&self) -> u64 {
        self.state().requests
    }

    /// While on, [`Activity::parking`] tells the connection's IO to skip its shutdown.
    pub fn set_parking(&self, on: bool) {
        self.state().parking = on;
    }

    pub fn parking(&self) -> bool {
        self.state().parking
    }
}

/// Closes its stream when dropped.
#[derive(Debug)]
pub struct StreamGuard(Activity);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.open -= 1;
        if s.open == 0 {
            s.idle_since = Instant::now();
        }
    }
}

/// A response body that keeps its stream open until it ends or is dropped.
pub struct Guarded {
    inner: ProxyBody,
    guard: Option<StreamGuard>,
}

impl Guarded {
    pub fn new(inner: ProxyBody, guard: StreamGuard) -> Self {
        Guarded {
            inner,
            guard: Some(guard),
        }
    }
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn body(text: &'static str) -> ProxyBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|n: std::convert::Infallible| match n {})
            .boxed_unsync()
    }

    #[tokio::test(start_paused = true)]
    async fn no_request_expires_after_the_header_timeout() {
        let a = Activity::default();
        let start = Instant::now();
        let why = a
            .expired(Duration::from_secs(10), Duration::from_secs(60))
            .await;
        assert_eq!(why, Expiry::NoRequest);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_is_never_idle_and_the_clock_restarts_when_it_ends() {
        let a = Activity::default();
        let guard = a.open();
        let watch = {
            let a = a.clone();
            tokio::spawn(async move {
                let why = a
                    .expired(Duration::from_secs(10), Duration::from_secs(60))
                    .await;
                (why, Instant::now())
            })
        };
        // A response body streaming for 5 minutes keeps the connection.
        let mut resp = Guarded::new(body("x"), guard);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(!watch.is_finished());
        let ended_at = Instant::now();
        assert!(resp.frame().await.is_some());
        assert!(resp.frame().await.is_none(), "body ended: stream closed");
        let (why, at) = watch.await.unwrap();
        assert_eq!(why, Expiry::Idle);
        assert!(
            at >= ended_at + Duration::from_secs(60),
            "{:?}",
            at - ended_at
        );
        assert!(
            at <= ended_at + Duration::from_secs(120),
            "{:?}",
            at - ended_at
        );
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_comes_after_a_request_and_the_quiet_time_and_before_expiry() {
        let a = Activity::default();
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(60));
        let quiet = Some(Quiet {
            after: Duration::from_secs(2),
            requests: a.requests(),
        });
        // No request since the count: only the header timeout applies.
        let start = Instant::now();
        assert_eq!(
            a.watch(header, idle, quiet).await,
            Watch::Expired(Expiry::NoRequest)
        );
        assert_eq!(start.elapsed(), header);
        // A request 1 s in, lasting 3 s: quiet 2 s after it ended.
        let a = Activity::default();
        let watch = {
            let a = a.clone();
            tokio::spawn(async move { (a.watch(header, idle, quiet).await, Instant::now()) })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let guard = a.open();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let ended = Instant::now();
        drop(guard);
        let (seen, at) = watch.await.unwrap();
        assert_eq!(seen, Watch::Quiet);
        assert_eq!(at - ended, Duration::from_secs(2));
        // A quiet time longer than the idle timeout never wins.
        let late = Some(Quiet {
            after: Duration::from_secs(600),
            requests: 0,
        });
        assert_eq!(
            a.watch(header, idle, late).await,
            Watch::Expired(Expiry::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_response_closes_its_stream() {
        let a = Activity::default();
        drop(Guarded::new(body("x"), a.open()));
        let start = Instant::now();
        let why = a
            .expired(Duration::from_secs(10), Duration::from_secs(60))
            .await;
        assert_eq!(why, Expiry::Idle);
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }
}

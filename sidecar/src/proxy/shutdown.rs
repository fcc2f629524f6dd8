//! Graceful shutdown, in two phases so that no request is lost while the pod goes away:
//!
//! 1. **Draining** (SIGTERM): `/readyz` answers 503 at once, so the pod leaves its Services'
//!    endpoints, and open HTTP connections are told to finish at once (hyper's graceful
//!    shutdown: HTTP/2 GOAWAY, HTTP/1.1 `Connection: close` on the response in flight, idle
//!    keep-alive connections closed), so their clients reconnect through the Service to pods
//!    that stay (a connection that has not sent its first request yet is told after it, so a
//!    request already on the wire is never dropped). New connections are still accepted and
//!    served, each told to close after its requests, for as long as the app still listens on
//!    one of its ports (`app_listen`), at most `--drain-delay`: the pod then takes
//!    connections exactly as long as it would without the proxy. An app that pauses in its
//!    `preStop` hook while its load balancers deregister it keeps the proxy accepting through
//!    the pause; an app that has stopped (native sidecars get SIGTERM only after the app
//!    exited) has its connections refused at once rather than accepted and answered 502.
//!    Keep-alive connections are not kept to the end: the app behind may stop accepting first,
//!    and a request then arriving on an old connection would find no app.
//! 2. **Closing** (the app stopped listening, or the delay is over): the capture listeners are
//!    closed (new connects are refused), relays run on, and the whole drain is cut at
//!    `--drain-timeout`.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// Where the process is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Not ready, still accepting and serving.
    Draining,
    /// No longer accepting; in-flight requests finish.
    Closing,
    /// Drained (or past the deadline): the worker lanes stop their runtimes.
    Stopped,
}

/// The shutdown signal, cloneable and awaitable anywhere.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<Phase>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(Phase::Serving).0),
        }
    }
}

impl Shutdown {
    /// Starts draining (SIGTERM).
    pub fn trigger(&self) {
        self.advance(Phase::Draining);
    }

    /// Stops accepting; connections finish what they carry.
    pub fn close(&self) {
        self.advance(Phase::Closing);
    }

    /// The drain is over: worker lanes end, cutting whatever is left.
    pub fn stop(&self) {
        self.advance(Phase::Stopped);
    }

    fn advance(&self, to: Phase) {
        self.tx.send_if_modified(|p| {
            let later = to > *p;
            if later {
                *p = to;
            }
            later
        });
    }

    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }

    /// Draining or closing: readiness is off.
    pub fn is_triggered(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    pub fn is_closing(&self) -> bool {
        self.phase() >= Phase::Closing
    }

    /// Resolves once the shutdown is triggered (draining starts).
    pub async fn wait(&self) {
        self.reached(Phase::Draining).await
    }

    /// Resolves once the proxy stops accepting (the app stopped listening, or the drain delay
    /// is over).
    pub async fn closing(&self) {
        self.reached(Phase::Closing).await
    }

    /// Resolves once the drain is over.
    pub async fn stopped(&self) {
        self.reached(Phase::Stopped).await
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

/// Counts live connections: each holds a [`DrainGuard`]; [`Drain::wait`] returns when none is
/// left or the deadline passes.
#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<DrainInner>,
}

#[derive(Default)]
struct DrainInner {
    live: AtomicUsize,
    changed: Notify,
}

/// Held by a live connection.
pub struct DrainGuard(Arc<DrainInner>);

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

impl Drain {
    pub fn guard(&self) -> DrainGuard {
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        DrainGuard(self.inner.clone())
    }

    /// Live connections.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Waits for every guard to drop, at most `deadline`; returns whether everything drained.
    pub async fn wait(&self, deadline: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.inner.changed.notified();
                if self.live() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward() {
        let s = Shutdown::default();
        assert_eq!(s.phase(), Phase::Serving);
        s.close();
        assert!(s.is_triggered() && s.is_closing());
        s.trigger();
        assert_eq!(s.phase(), Phase::Closing, "never back to draining");
        s.wait().await;
        s.closing().await;

        let s = Shutdown::default();
        s.trigger();
        assert!(s.is_triggered() && !s.is_closing());
        s.wait().await;
        let closing = tokio::spawn({
            let s = s.clone();
            async move { s.closing().await }
        });
        tokio::task::yield_now().await;
        assert!(!closing.is_finished());
        s.close();
        closing.await.unwrap();
    }
}

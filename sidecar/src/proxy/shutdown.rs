//! Graceful shutdown: SIGTERM (or SIGINT) stops the accept loops, open HTTP connections are
//! told to finish their in-flight requests (hyper's graceful shutdown), relays run on, and the
//! whole drain is cut at a hard deadline.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// The shutdown signal, cloneable and awaitable anywhere.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the shutdown is triggered.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
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

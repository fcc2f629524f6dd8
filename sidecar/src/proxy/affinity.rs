//! HTTP/1.1 clients get a dedicated HTTP/1.1 connection to the app (connection affinity).
//!
//! An HTTP/1.1 client connection has at most one request in flight, so one app connection per
//! client connection is all it can use. Holding it in the client connection's own slot skips
//! the shared pool's per-request work (key hashing, checkout, return), about a tenth of the
//! proxy's instructions per request. When the client connection ends, its app connection goes
//! to the port's idle list for the next client connection (so a client that reconnects for every
//! request does not cost a handshake with the app each time); idle ones are closed after the
//! upstream idle timeout. HTTP/2 clients and upgrades use the shared pool (`forward`).
//!
//! The idle list is bounded: [`MAX_IDLE_PER_KEY`] per pool key and [`MAX_IDLE_TOTAL`] per port
//! (keys come from clients' SNI and `Host`); a connection that does not fit is closed.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;
use tracing::debug;

use super::forward::{PoolKey, ProxyBody};

/// Most idle app connections kept per pool key.
pub const MAX_IDLE_PER_KEY: usize = 256;
/// Most idle app connections kept per port, whatever their keys.
pub const MAX_IDLE_TOTAL: usize = 512;

type Sender = SendRequest<ProxyBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The app connections no client connection holds, per pool key.
#[derive(Default)]
pub struct IdleConns {
    conns: Mutex<Lists>,
}

#[derive(Default)]
struct Lists {
    by_key: Vec<(PoolKey, Vec<Idle>)>,
    /// Connections in all lists.
    total: usize,
}

impl IdleConns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle connections kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().total
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A usable idle connection for `key`, newest first; expired and closed ones are dropped.
    pub fn take(&self, key: &PoolKey, max_idle: Duration) -> Option<Sender> {
        let mut all = self.lock();
        let Lists { by_key, total } = &mut *all;
        let list = &mut by_key.iter_mut().find(|(k, _)| k == key)?.1;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            *total -= 1;
            if now.duration_since(idle.since) < max_idle && idle.sender.is_ready() {
                return Some(idle.sender);
            }
        }
        None
    }

    fn put(&self, key: PoolKey, sender: Sender) {
        if !sender.is_ready() {
            return; // closed, or still busy with a response the client abandoned
        }
        let mut all = self.lock();
        if all.total >= MAX_IDLE_TOTAL {
            return; // dropped: the connection closes
        }
        let idle = Idle {
            sender,
            since: Instant::now(),
        };
        match all.by_key.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) if list.len() < MAX_IDLE_PER_KEY => list.push(idle),
            Some(_) => return,
            None => all.by_key.push((key, vec![idle])),
        }
        all.total += 1;
    }

    /// Drops connections idle for longer than `max_idle`.
    fn sweep(&self, max_idle: Duration) -> usize {
        let now = Instant::now();
        let mut all = self.lock();
        let mut closed = 0;
        for (_, list) in all.by_key.iter_mut() {
            let before = list.len();
            list.retain(|i| now.duration_since(i.since) < max_idle && !i.sender.is_closed());
            closed += before - list.len();
        }
        all.by_key.retain(|(_, list)| !list.is_empty());
        all.total -= closed;
        closed
    }

    /// Sweeps every `max_idle / 2` until the list is dropped (a new generation of the port's
    /// TLS material brings its own).
    pub fn start_sweeper(self: &Arc<Self>, max_idle: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let period = (max_idle / 2).max(Duration::from_millis(50));
            loop {
                tokio::time::sleep(period).await;
                let Some(idle) = weak.upgrade() else { return };
                let closed = idle.sweep(max_idle);
                if closed > 0 {
                    debug!(closed, "closed idle app connections");
                }
            }
        });
    }
}

/// The app connection of one HTTP/1.1 client connection.
pub struct Affinity {
    slot: Mutex<Option<Held>>,
}

struct Held {
    key: PoolKey,
    sender: Sender,
    idle: Weak<IdleConns>,
}

impl Affinity {
    pub fn new() -> Arc<Self> {
        Arc::new(Affinity {
            slot: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The held connection when it was made for `key` (checked by `same_key`, which avoids
    /// building the key) and is still open. A held connection for another key goes idle.
    pub fn take(&self, same_key: impl FnOnce(&PoolKey) -> bool) -> Option<(PoolKey, Sender)> {
        let held = self.lock().take()?;
        if held.sender.is_closed() {
            return None;
        }
        if same_key(&held.key) {
            return Some((held.key, held.sender));
        }
        if let Some(idle) = held.idle.upgrade() {
            idle.put(held.key, held.sender);
        }
        None
    }

    /// Keeps `sender` for this client connection's next request.
    pub fn hold(&self, key: PoolKey, sender: Sender, idle: &Arc<IdleConns>) {
        *self.lock() = Some(Held {
            key,
            sender,
            idle: Arc::downgrade(idle),
        });
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        let held = self
            .slot
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(held) = held
            && let Some(idle) = held.idle.upgrade()
        {
            idle.put(held.key, held.sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A ready HTTP/1.1 sender over an in-memory pipe (nothing answers; it is never used).
    async fn sender(pipes: &mut Vec<tokio::io::DuplexStream>) -> Sender {
        let (a, b) = tokio::io::duplex(64);
        pipes.push(b);
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(a))
            .await
            .unwrap();
        tokio::spawn(conn);
        s.ready().await.unwrap();
        s
    }

    fn key(i: usize) -> PoolKey {
        let name = rustls_pki_types::ServerName::try_from(format!("h{i}.test")).unwrap();
        PoolKey::new("127.0.0.1:443".parse().unwrap(), name, Vec::new())
    }

    #[tokio::test]
    async fn idle_list_is_bounded_per_key_and_in_total() {
        let idle = IdleConns::default();
        let mut pipes = Vec::new();
        for _ in 0..MAX_IDLE_PER_KEY + 5 {
            idle.put(key(0), sender(&mut pipes).await);
        }
        assert_eq!(idle.len(), MAX_IDLE_PER_KEY);
        // Many distinct keys (client-chosen names) never exceed the total.
        for i in 1..=MAX_IDLE_TOTAL {
            idle.put(key(i), sender(&mut pipes).await);
        }
        assert_eq!(idle.len(), MAX_IDLE_TOTAL);
        let max = Duration::from_secs(60);
        assert!(idle.take(&key(0), max).is_some());
        assert_eq!(idle.len(), MAX_IDLE_TOTAL - 1);
        assert!(
            idle.take(&key(MAX_IDLE_TOTAL), max).is_none(),
            "was not kept"
        );
        idle.put(key(9999), sender(&mut pipes).await);
        assert_eq!(idle.len(), MAX_IDLE_TOTAL, "a freed place is used again");
        // Closed connections are swept and uncounted.
        drop(pipes);
        tokio::time::sleep(Duration::from_millis(50)).await;
        idle.sweep(max);
        assert!(idle.is_empty(), "{}", idle.len());
    }
}

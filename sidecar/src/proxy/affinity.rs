//! HTTP/1.1 clients get a dedicated HTTP/1.1 connection to the app (connection affinity).
//!
//! An HTTP/1.1 client connection has at most one request in flight, so one app connection per
//! client connection is all it can use. Holding it in the client connection's own slot skips
//! the shared pool's per-request work (key hashing, checkout, return), about a tenth of the
//! proxy's instructions per request. When the client connection ends, its app connection goes
//! to the port's idle list for the next client connection (so a client that reconnects for every
//! request does not cost a handshake with the app each time); idle ones are closed after the
//! upstream idle timeout. HTTP/2 clients and upgrades use the shared pool (`forward`).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;
use tracing::debug;

use super::forward::{PoolKey, ProxyBody};

/// Most idle app connections kept per pool key.
const MAX_IDLE_PER_KEY: usize = 256;

type Sender = SendRequest<ProxyBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The app connections no client connection holds, per pool key.
#[derive(Default)]
pub struct IdleConns {
    conns: Mutex<Vec<(PoolKey, Vec<Idle>)>>,
}

impl IdleConns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PoolKey, Vec<Idle>)>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A usable idle connection for `key`, newest first; expired and closed ones are dropped.
    pub fn take(&self, key: &PoolKey, max_idle: Duration) -> Option<Sender> {
        let mut all = self.lock();
        let list = &mut all.iter_mut().find(|(k, _)| k == key)?.1;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
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
        let idle = Idle {
            sender,
            since: Instant::now(),
        };
        match all.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) if list.len() < MAX_IDLE_PER_KEY => list.push(idle),
            Some(_) => {}
            None => all.push((key, vec![idle])),
        }
    }

    /// Drops connections idle for longer than `max_idle`.
    fn sweep(&self, max_idle: Duration) -> usize {
        let now = Instant::now();
        let mut all = self.lock();
        let mut closed = 0;
        for (_, list) in all.iter_mut() {
            let before = list.len();
            list.retain(|i| now.duration_since(i.since) < max_idle && !i.sender.is_closed());
            closed += before - list.len();
        }
        all.retain(|(_, list)| !list.is_empty());
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

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
//! Each worker lane has its own idle list, bounded: [`MAX_IDLE_PER_KEY`] per pool key and
//! [`MAX_IDLE_TOTAL`] per port (keys come from clients' SNI and `Host`); a connection that does
//! not fit is closed.
//!
//! Idle clients must not pin app connections (an ingress keeps thousands of keep-alive
//! connections to a pod; one app connection each cost ~20 KB in the proxy and a connection in
//! the app). Every [`TICK`]:
//! * a client connection without a request for [`RECLAIM_TICKS`] ticks hands its app connection
//!   to the idle list (a later request takes one from there, or connects);
//! * the idle list closes half of the connections that no request needed during the last tick
//!   (its low-water mark), oldest first, as HAProxy purges its idle pools: a pool sized for a
//!   burst shrinks to what the load uses within seconds, while a steady load keeps its own.
//!   The newest [`KEEP_IDLE`] are kept until the upstream idle timeout, as nginx keeps its
//!   upstream `keepalive N`: without them, a keep-alive client that pauses for 3 s or more
//!   (a low-traffic service) paid a new TLS handshake with the app on its next request.
//!
//! The per-request cost is two relaxed loads of the tick counter: one in [`Affinity::hold`],
//! one in `forward::dedicated` (has the held connection sat idle over a tick?).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::HeaderValue;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;
use tracing::debug;

use super::forward::{PoolKey, ProxyBody};

/// Most idle app connections kept per pool key.
pub const MAX_IDLE_PER_KEY: usize = 256;
/// Most idle app connections kept per port and worker lane, whatever their keys.
pub const MAX_IDLE_TOTAL: usize = 512;
/// Idle app connections per port and worker lane the purge leaves (the upstream idle timeout
/// still closes them), for a warm connection when a client comes back after a pause. Their
/// cost is RSS after a load (~1 MiB per lane, the same with 8 as with 16: they pin allocator
/// pages; BENCHMARKS.md), not per connection.
pub const KEEP_IDLE: usize = 16;
/// Period of the reclaim, purge and expiry sweep (shorter when the upstream idle timeout is).
pub const TICK: Duration = Duration::from_secs(1);
/// Ticks without a request after which a client connection's app connection goes idle.
pub const RECLAIM_TICKS: u64 = 2;

type Sender = SendRequest<ProxyBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The app connections no client connection holds, per pool key.
#[derive(Default)]
pub struct IdleConns {
    conns: Mutex<Lists>,
    /// Ticks of the sweeper so far: the clock of [`Affinity`]'s last use.
    ticks: AtomicU64,
    /// Client connections that have held an app connection of this list's generation.
    pinned: Mutex<Vec<Weak<Affinity>>>,
}

#[derive(Default)]
struct Lists {
    by_key: Vec<(PoolKey, Vec<Idle>)>,
    /// Connections in all lists.
    total: usize,
    /// The fewest connections the lists held since the last tick: that many were not needed.
    low_water: usize,
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

    /// Ticks of the sweeper so far.
    pub fn tick(&self) -> u64 {
        self.ticks.load(Relaxed)
    }

    /// A usable idle connection for `key`, newest first; expired and closed ones are dropped.
    pub fn take(&self, key: &PoolKey, max_idle: Duration) -> Option<Sender> {
        let mut all = self.lock();
        let Lists { by_key, total, .. } = &mut *all;
        let list = &mut by_key.iter_mut().find(|(k, _)| k == key)?.1;
        let now = Instant::now();
        let mut found = None;
        while let Some(idle) = list.pop() {
            *total -= 1;
            if now.duration_since(idle.since) < max_idle && idle.sender.is_ready() {
                found = Some(idle.sender);
                break;
            }
        }
        all.low_water = all.low_water.min(all.total);
        found
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

    /// Drops connections idle for longer than `max_idle`, then half of those no request needed
    /// since the last sweep (oldest first), leaving at least [`KEEP_IDLE`].
    fn sweep(&self, max_idle: Duration) -> usize {
        let now = Instant::now();
        let mut all = self.lock();
        let mut closed = 0;
        for (_, list) in all.by_key.iter_mut() {
            let before = list.len();
            list.retain(|i| now.duration_since(i.since) < max_idle && !i.sender.is_closed());
            closed += before - list.len();
        }
        all.total -= closed;
        let surplus = all
            .low_water
            .min(all.total)
            .div_ceil(2)
            .min(all.total.saturating_sub(KEEP_IDLE));
        for _ in 0..surplus {
            // Lists are pushed and popped at their ends: the oldest of each is at its front.
            let oldest = all
                .by_key
                .iter_mut()
                .filter(|(_, l)| !l.is_empty())
                .min_by_key(|(_, l)| l[0].since);
            let Some((_, list)) = oldest else { break };
            list.remove(0);
            all.total -= 1;
            closed += 1;
        }
        all.by_key.retain(|(_, list)| !list.is_empty());
        all.low_water = all.total;
        closed
    }

    /// Moves the app connections of client connections that sent no request for
    /// [`RECLAIM_TICKS`] ticks to the idle list; forgets client connections that ended.
    fn reclaim(&self) -> usize {
        let now = self.ticks.fetch_add(1, Relaxed) + 1;
        // Collected first: `Affinity::hold` locks its slot, then this list.
        let live: Vec<Arc<Affinity>> = {
            let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
            pinned.retain(|w| w.strong_count() > 0);
            pinned.iter().filter_map(Weak::upgrade).collect()
        };
        let mut moved = 0;
        for a in live {
            let mut slot = a.lock();
            let idle_long = slot.held.as_ref().is_some_and(|h| {
                now.saturating_sub(h.tick) >= RECLAIM_TICKS && h.sender.is_ready()
            });
            if idle_long && let Some(held) = slot.held.take() {
                self.put(held.key, held.sender);
                moved += 1;
            }
        }
        moved
    }

    /// Every [`TICK`] (or `max_idle / 2` when shorter) until the list is dropped (a new
    /// generation of the port's TLS material brings its own): reclaim, then sweep.
    pub fn start_sweeper(self: &Arc<Self>, max_idle: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let period = (max_idle / 2).clamp(Duration::from_millis(50), TICK);
            loop {
                tokio::time::sleep(period).await;
                let Some(idle) = weak.upgrade() else { return };
                let reclaimed = idle.reclaim();
                let closed = idle.sweep(max_idle);
                if reclaimed + closed > 0 {
                    debug!(
                        reclaimed,
                        closed, "app connections of idle clients reclaimed, idle ones closed"
                    );
                }
            }
        });
    }
}

/// The app connection of one HTTP/1.1 client connection.
pub struct Affinity {
    slot: Mutex<Slot>,
    me: Weak<Affinity>,
}

#[derive(Default)]
struct Slot {
    held: Option<Held>,
    /// The idle list whose sweeper knows this connection (the port's TLS generation).
    known_to: Weak<IdleConns>,
}

struct Held {
    key: PoolKey,
    /// What the last request was checked against `key` with (its `Host`, see `forward`).
    host: Option<HeaderValue>,
    sender: Sender,
    idle: Weak<IdleConns>,
    /// The idle list's tick when it was last used.
    tick: u64,
}

impl Affinity {
    pub fn new() -> Arc<Self> {
        Arc::new_cyclic(|me| Affinity {
            slot: Mutex::new(Slot::default()),
            me: me.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The held connection when it was made for `key` (checked by `same_key` with the key and
    /// the `Host` the last request was checked with, which avoids building the key) and is
    /// still open, with the sweeper's tick of its last use. A held connection for another key
    /// goes idle.
    pub fn take(
        &self,
        same_key: impl FnOnce(&PoolKey, Option<&HeaderValue>) -> bool,
    ) -> Option<(PoolKey, Option<HeaderValue>, Sender, u64)> {
        let held = self.lock().held.take()?;
        if held.sender.is_closed() {
            return None;
        }
        if same_key(&held.key, held.host.as_ref()) {
            return Some((held.key, held.host, held.sender, held.tick));
        }
        if let Some(idle) = held.idle.upgrade() {
            idle.put(held.key, held.sender);
        }
        None
    }

    /// Keeps `sender` for this client connection's next request, until the client has been
    /// idle for [`RECLAIM_TICKS`] ticks of `idle`'s sweeper.
    pub fn hold(
        &self,
        key: PoolKey,
        host: Option<HeaderValue>,
        sender: Sender,
        idle: &Arc<IdleConns>,
    ) {
        let mut slot = self.lock();
        let register = !std::ptr::eq(slot.known_to.as_ptr(), Arc::as_ptr(idle));
        if register {
            slot.known_to = Arc::downgrade(idle);
        }
        slot.held = Some(Held {
            key,
            host,
            sender,
            idle: Arc::downgrade(idle),
            tick: idle.ticks.load(Relaxed),
        });
        drop(slot);
        if register {
            let mut pinned = idle.pinned.lock().unwrap_or_else(|e| e.into_inner());
            pinned.push(self.me.clone());
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        let held = self
            .slot
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .held
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

    #[tokio::test]
    async fn an_idle_client_hands_its_app_connection_back_and_the_surplus_closes() {
        let idle = Arc::new(IdleConns::default());
        let max = Duration::from_secs(60);
        let mut pipes = Vec::new();
        let (busy, quiet) = (Affinity::new(), Affinity::new());
        busy.hold(key(0), None, sender(&mut pipes).await, &idle);
        quiet.hold(key(0), None, sender(&mut pipes).await, &idle);
        for tick in 1..=RECLAIM_TICKS {
            if tick < RECLAIM_TICKS {
                assert_eq!(idle.reclaim(), 0, "tick {tick}: too early");
            }
            // The busy client sends a request every tick.
            let (k, h, s, _) = busy.take(|_, _| true).expect("still held");
            busy.hold(k, h, s, &idle);
        }
        assert_eq!(idle.reclaim(), 1, "the quiet client's connection goes idle");
        assert!(quiet.lock().held.is_none());
        assert!(busy.lock().held.is_some(), "the busy client keeps its own");
        assert_eq!(idle.len(), 1);
        // A returning client takes it from the idle list (forward does so on a miss).
        assert!(idle.take(&key(0), max).is_some());
        assert!(idle.is_empty());

        // Forty idle connections nobody needs: half of them close at each sweep, down to the
        // newest KEEP_IDLE (here the 16 of another key, put last).
        for _ in 0..24 {
            idle.put(key(1), sender(&mut pipes).await);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        for _ in 0..16 {
            idle.put(key(3), sender(&mut pipes).await);
        }
        idle.sweep(max); // low-water mark set to 40
        let mut left = vec![idle.len()];
        for _ in 0..5 {
            idle.sweep(max);
            left.push(idle.len());
        }
        assert_eq!(KEEP_IDLE, 16);
        assert_eq!(left, [40, 20, 16, 16, 16, 16]);
        assert!(idle.take(&key(1), max).is_none(), "the oldest were closed");
        assert_eq!(idle.len(), 16, "the newest are kept");
        // The upstream idle timeout still closes the kept ones.
        tokio::time::sleep(Duration::from_millis(20)).await;
        idle.sweep(Duration::from_millis(10));
        assert!(idle.is_empty(), "{}", idle.len());

        // Those a load takes again each tick are kept, above KEEP_IDLE too.
        let n = KEEP_IDLE + 4;
        for _ in 0..n {
            idle.put(key(2), sender(&mut pipes).await);
        }
        idle.sweep(max);
        for _ in 0..3 {
            let taken: Vec<_> = (0..n).filter_map(|_| idle.take(&key(2), max)).collect();
            assert_eq!(taken.len(), n);
            for s in taken {
                idle.put(key(2), s);
            }
            idle.sweep(max);
            assert_eq!(idle.len(), n);
        }
        // A client connection that ended is forgotten.
        drop(quiet);
        idle.reclaim();
        assert_eq!(idle.pinned.lock().unwrap().len(), 1);
    }
}

//! Workers that scale: the proxy serves on `cfg.workers` lanes, each a single-threaded tokio
//! runtime on its own thread with its own upstream pools (`forward`), as nginx's worker
//! processes and HAProxy's threads do.
//!
//! * Every lane accepts on the same listening socket (a duplicate per lane), so whichever lane
//!   is awake takes a new connection; none waits behind a busy lane's queue.
//! * The connection then goes to the lane with the fewest live connections ([`LaneSet::pick`];
//!   `tls_steal_lane_connections{lane}`), handed over through that lane's inbox when it is not
//!   the accepting one. Why: clients that keep a few long-lived connections (an ingress, a
//!   mesh) are the usual case, and spreading them by chance (`SO_REUSEPORT`'s hash, the first
//!   design) puts two connections on one lane one time in two, and 20 connections 13/7 or worse
//!   one time in four, leaving a core idle while the other queues. The accepting lane keeps the
//!   connection unless another has fewer by at least an eighth of that count (at least one), so
//!   a stream of short connections is not handed back and forth over a difference of one.
//! * A connection stays on its lane: the client connection, its routing, its app connections
//!   and their tasks all run on one thread, so a request never waits for another thread to be
//!   woken. Stolen requests cross to the session API's lane through channels, as before.
//! * Lane 0 is the runtime that started the proxy; it also runs the admin port, the session API,
//!   reloads and the shutdown. Every lane stops accepting when the proxy closes and ends its
//!   runtime once the drain is over; a connection in an inbox counts for the drain.
//!
//! Why not the multi-threaded scheduler: with two workers it served fewer requests than one
//! (work stealing moves a connection's tasks between threads; BENCHMARKS.md), and its cost is
//! paid even when nothing is stolen.
//!
//! Tested by `tests/proxy_lanes.rs` (kept connections split evenly whichever lane accepts
//! them, HTTP/1.1 and HTTP/2 clients on both lanes; the drain ends the lanes' threads) and the
//! unit tests below.

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::metrics::Labels;
use super::shutdown::DrainGuard;
use super::{Shared, accept_loop, conn};

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The lane of the calling thread (0 outside the lanes' own threads).
pub fn current() -> usize {
    LANE.with(Cell::get)
}

/// The lanes' live client connections and their inboxes.
pub(crate) struct LaneSet {
    live: Vec<Gauge>,
    family: Family<Labels<1>, Gauge>,
    inbox: Vec<mpsc::UnboundedSender<Handoff>>,
    /// Each lane's receiving end, taken once when the lane starts.
    receivers: Mutex<Vec<Option<mpsc::UnboundedReceiver<Handoff>>>>,
}

/// A connection accepted by one lane for another.
pub(crate) struct Handoff {
    tcp: StdStream,
    client: SocketAddr,
    seat: Seat,
    _drain: DrainGuard,
}

/// A client connection counted on its lane from accept until it ends.
pub(crate) struct Seat {
    lane: usize,
    live: Gauge,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.live.dec();
    }
}

impl LaneSet {
    pub(crate) fn new(lanes: usize) -> Self {
        let family = Family::<Labels<1>, Gauge>::default();
        let lanes = lanes.max(1);
        let live = (0..lanes)
            .map(|i| family.get_or_create_owned(&[("lane", i.to_string().into())]))
            .collect();
        let (inbox, receivers) = (0..lanes).map(|_| mpsc::unbounded_channel()).unzip();
        let receivers: Vec<_> = Vec::into_iter(receivers).map(Some).collect();
        LaneSet {
            live,
            family,
            inbox,
            receivers: Mutex::new(receivers),
        }
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_steal_lane_connections",
            "Client connections open now, by worker lane",
            self.family.clone(),
        );
    }

    /// The lane a connection accepted on `here` should go to: `here`, unless the lane with the
    /// fewest live connections has fewer by at least an eighth of its count (at least one).
    pub(crate) fn pick(&self, here: usize) -> usize {
        let here = self.clamp(here);
        let (least, n) = (self.live.iter().map(Gauge::get).enumerate())
            .min_by_key(|&(_, n)| n)
            .unwrap_or((here, 0));
        if self.live[here].get() - n >= (n / 8).max(1) {
            least
        } else {
            here
        }
    }

    fn clamp(&self, lane: usize) -> usize {
        lane.min(self.live.len() - 1)
    }

    /// Counts a connection on `lane` for as long as the seat is held.
    pub(crate) fn seat(&self, lane: usize) -> Seat {
        let live = self.live[lane].clone();
        live.inc();
        Seat { lane, live }
    }

    fn take_inbox(&self, lane: usize) -> Option<mpsc::UnboundedReceiver<Handoff>> {
        let mut r = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        r.get_mut(lane).and_then(Option::take)
    }
}

/// Serves a connection accepted on this lane, here or on the lane [`LaneSet::pick`] names.
pub(super) fn dispatch(shared: &Arc<Shared>, tcp: TcpStream, client: SocketAddr) {
    let lanes = &shared.lanes;
    let here = lanes.clamp(current());
    let to = lanes.pick(here);
    let tcp = if to == here {
        tcp
    } else {
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                return warn!(%client, error = %e, "cannot hand the connection to another lane; closed");
            }
        };
        let h = Handoff {
            tcp,
            client,
            seat: lanes.seat(to),
            _drain: shared.drain.guard(),
        };
        match lanes.inbox[to].send(h) {
            Ok(()) => return,
            // That lane has stopped (the proxy is ending): serve it here.
            Err(mpsc::error::SendError(h)) => match TcpStream::from_std(h.tcp) {
                Ok(tcp) => tcp,
                Err(e) => return warn!(%client, error = %e, "connection unusable; closed"),
            },
        }
    };
    tokio::spawn(serve(shared.clone(), tcp, client, lanes.seat(here)));
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, client: SocketAddr, seat: Seat) {
    let _seat = seat;
    conn::handle(shared, tcp, client).await
}

/// Serves what other lanes hand to lane `index`, until the proxy has stopped.
pub(super) fn receive(index: usize, shared: &Arc<Shared>) {
    let Some(mut rx) = shared.lanes.take_inbox(index) else {
        return error!(lane = index, "lane inbox already taken");
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let shutdown = shared.shutdown.clone();
        let stopped = shutdown.stopped();
        tokio::pin!(stopped);
        loop {
            let h = tokio::select! {
                h = rx.recv() => h,
                _ = &mut stopped => None,
            };
            let Some(Handoff {
                tcp,
                client,
                seat,
                _drain,
            }) = h
            else {
                return;
            };
            debug_assert_eq!(seat.lane, index);
            match TcpStream::from_std(tcp) {
                Ok(tcp) => drop(tokio::spawn({
                    let shared = shared.clone();
                    async move {
                        let _drain = _drain;
                        serve(shared, tcp, client, seat).await
                    }
                })),
                Err(e) => {
                    warn!(%client, lane = index, error = %e, "handed-over connection unusable; closed")
                }
            }
        }
    });
}

/// Starts lane `index` on a thread of its own, accepting on `listeners` until the proxy
/// closes, serving until it has drained.
pub(super) fn spawn(
    index: usize,
    listeners: Vec<StdListener>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("tls-steal-w{index}"))
        .spawn(move || {
            LANE.with(|l| l.set(index));
            runtime.block_on(async move {
                receive(index, &shared);
                for l in listeners {
                    match TcpListener::from_std(l) {
                        Ok(l) => drop(tokio::spawn(accept_loop(l, shared.clone()))),
                        Err(e) => error!(lane = index, error = %e, "listener unusable"),
                    }
                }
                shared.shutdown.stopped().await;
            });
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(set: &LaneSet) -> Vec<i64> {
        set.live.iter().map(Gauge::get).collect()
    }

    #[test]
    fn a_lane_with_fewer_connections_gets_the_next_one() {
        let set = LaneSet::new(3);
        assert_eq!(set.pick(1), 1, "all equal: the accepting lane keeps it");
        let a = set.seat(set.pick(1));
        assert_eq!(a.lane, 1);
        let b = set.seat(set.pick(1));
        assert_ne!(b.lane, 1, "lane 1 has one more than the others");
        let c = set.seat(set.pick(1));
        assert_eq!(live(&set), vec![1, 1, 1], "three connections, one per lane");
        drop((a, b, c));
        assert_eq!(
            live(&set),
            vec![0, 0, 0],
            "a seat counts until it is dropped"
        );
    }

    #[test]
    fn a_difference_within_an_eighth_keeps_the_connection_where_it_was_accepted() {
        let set = LaneSet::new(2);
        let mut seats: Vec<Seat> = (0..24).map(|_| set.seat(0)).collect();
        seats.extend((0..25).map(|_| set.seat(1)));
        assert_eq!(set.pick(1), 1, "25 against 24: less than an eighth");
        seats.extend((0..2).map(|_| set.seat(1)));
        assert_eq!(set.pick(1), 0, "27 against 24: an eighth");
        assert_eq!(set.pick(0), 0);
    }

    #[test]
    fn an_inbox_is_taken_once() {
        let set = LaneSet::new(2);
        assert!(set.take_inbox(1).is_some());
        assert!(set.take_inbox(1).is_none());
        assert!(set.take_inbox(2).is_none(), "no such lane");
    }

    #[test]
    fn the_gauge_is_exported_per_lane() {
        let set = LaneSet::new(2);
        let _s = set.seat(1);
        let mut registry = Registry::default();
        set.register(&mut registry);
        let text = tls_steal_http::openmetrics::encode(&registry);
        assert!(
            text.contains("tls_steal_lane_connections{lane=\"0\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("tls_steal_lane_connections{lane=\"1\"} 1"),
            "{text}"
        );
    }
}

//! Workers that scale: the proxy serves on `cfg.workers` lanes, each a single-threaded tokio
//! runtime on its own thread with its own listening socket per capture address and its own
//! upstream pools (`forward`), as nginx's worker processes and HAProxy's threads do.
//!
//! * The sockets of one address share it through `SO_REUSEPORT`: the kernel spreads new
//!   connections over the lanes by their addresses, without a lock or a hand-off between threads.
//!   (Only processes of the proxy's own user may join the group.)
//! * A connection stays on the lane that accepted it: the client connection, its routing, its
//!   app connections and their tasks all run on one thread, so a request never waits for
//!   another thread to be woken. Stolen requests cross to the session API's lane through
//!   channels, as before.
//! * Lane 0 is the runtime that started the proxy; it also runs the admin port, the session API,
//!   reloads and the shutdown. Every lane stops accepting when the proxy closes and ends its
//!   runtime once the drain is over.
//!
//! Why not the multi-threaded scheduler: with two workers it served fewer requests than one
//! (work stealing moves a connection's tasks between threads; BENCHMARKS.md), and its cost is
//! paid even when nothing is stolen.
//!
//! Tested by `tests/proxy_lanes.rs` (both lanes accept, each with its own app connections; the
//! drain ends the lanes' threads).

use std::cell::Cell;
use std::net::TcpListener as StdListener;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::error;

use super::{Shared, accept_loop};

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The lane of the calling thread (0 outside the lanes' own threads).
pub fn current() -> usize {
    LANE.with(Cell::get)
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

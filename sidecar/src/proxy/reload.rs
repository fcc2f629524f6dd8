//! Certificate rotation: every `reload_interval` the files of every port are read again and
//! compared (paths and bytes, so an atomic `..data` symlink swap, an in-place rewrite or a new
//! inode are all seen); a port whose files changed gets new configurations, swapped in for new
//! handshakes only (see [`super::ports`]). Polling rather than inotify: Secret volume updates
//! are symlink swaps that inotify reports unreliably, and a few small reads per second are
//! cheap.

use std::sync::Arc;

use super::Shared;

/// Polls until the task is aborted at shutdown.
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.cfg.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let s = shared.clone();
        // File reads and certificate parsing block: keep them off the async workers.
        let _ = tokio::task::spawn_blocking(move || s.ports.reload()).await;
    }
}

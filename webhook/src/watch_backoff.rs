//! How soon a broken watch is retried.
//!
//! kube-runtime's default backoff (client-go's: 0.8 s doubling to 30 s, jittered, reset only
//! after 120 s without an error) grows during an API server outage, so once the API server is
//! back a watch may wait close to a minute before it lists again. Meanwhile admission is already
//! being called (the API server is what calls it) and decided from a cache that misses every
//! config created since: pods are admitted without their sidecar, silently (found by the e2e
//! check that restarts kube-apiserver, issue 19). Watches of small objects (configs,
//! namespaces) therefore retry after at most [`SMALL`]; watches of workloads, whose relist is
//! a large LIST, after at most [`LARGE`]. Any event resets the delay (kube-runtime's
//! `StreamBackoff` does that on every `Ok`).

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The longest wait before a config or namespace watch is retried.
pub const SMALL: Duration = Duration::from_secs(1);
/// The longest wait before a workload watch is retried.
pub const LARGE: Duration = Duration::from_secs(5);
/// The first wait.
const FIRST: Duration = Duration::from_millis(100);

/// Doubles from 100 ms up to its cap; no jitter (two replicas do not make a herd).
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
    cap: Duration,
}

impl WatchBackoff {
    pub fn new(cap: Duration) -> Self {
        WatchBackoff {
            next: FIRST.min(cap),
            cap,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(self.cap);
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST.min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_restarts_after_a_reset() {
        let mut b = WatchBackoff::new(SMALL);
        let ms: Vec<u128> = b.by_ref().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
        let mut large = WatchBackoff::new(LARGE);
        assert_eq!(large.nth(10), Some(LARGE), "never beyond its cap");
    }
}

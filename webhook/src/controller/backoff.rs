//! The controller's one retry policy. A reconciliation that fails (an API error, or a patch that
//! still conflicted after re-reading the workload a few times) is requeued after
//! `1 s * 2^(failures-1)`, capped at 5 minutes, counting the workload's consecutive failures; a
//! reconciliation that settles the workload forgets them. Nothing else waits between attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First delay after a failure.
const BASE: Duration = Duration::from_secs(1);
/// Longest delay.
const CAP: Duration = Duration::from_secs(300);

/// `base * 2^(attempt-1)`, capped at 5 minutes.
pub fn delay(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(CAP)
}

/// Consecutive failures per workload id.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more failure of `id`: how long to wait before the next attempt.
    pub fn failed(&self, id: &str) -> Duration {
        let mut f = self.lock();
        let n = f.entry(id.to_owned()).or_default();
        *n = n.saturating_add(1);
        delay(BASE, *n)
    }

    /// `id` settled: its next failure waits the shortest delay again.
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(200);
        assert_eq!(delay(base, 1), Duration::from_millis(200));
        assert_eq!(delay(base, 2), Duration::from_millis(400));
        assert_eq!(delay(base, 4), Duration::from_millis(1600));
        assert_eq!(delay(base, 100), Duration::from_secs(300));
        assert_eq!(delay(Duration::from_secs(1), 0), Duration::from_secs(1));
    }

    #[test]
    fn failures_count_per_workload_until_forgotten() {
        let b = Backoff::default();
        assert_eq!(b.failed("a"), Duration::from_secs(1));
        assert_eq!(b.failed("a"), Duration::from_secs(2));
        assert_eq!(b.failed("b"), Duration::from_secs(1));
        b.forget("a");
        assert_eq!(b.failed("a"), Duration::from_secs(1));
    }
}

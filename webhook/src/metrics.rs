//! Prometheus counters of the webhook, rendered in the text exposition format (no registry crate:
//! a handful of atomics).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::mutate::SkipReason;

/// Final result of one review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewResult {
    /// Patched.
    Injected,
    /// Allowed unchanged for a [`SkipReason`].
    Skipped,
    /// Allowed unchanged after an internal error (fail open).
    Error,
    /// Not an AdmissionReview (HTTP 400) or without a request.
    Invalid,
    /// An AdmissionReview for something other than a Pod: allowed with a warning.
    UnexpectedKind,
}

impl ReviewResult {
    const ALL: [ReviewResult; 5] = [
        ReviewResult::Injected,
        ReviewResult::Skipped,
        ReviewResult::Error,
        ReviewResult::Invalid,
        ReviewResult::UnexpectedKind,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewResult::Injected => "injected",
            ReviewResult::Skipped => "skipped",
            ReviewResult::Error => "error",
            ReviewResult::Invalid => "invalid",
            ReviewResult::UnexpectedKind => "unexpected_kind",
        }
    }
}

const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// All counters.
#[derive(Default)]
pub struct Metrics {
    reviews: [AtomicU64; 5],
    skips: [AtomicU64; SkipReason::ALL.len()],
    undeclared_ports: AtomicU64,
    owner_lookup_errors: AtomicU64,
    oversized: AtomicU64,
    replayed: AtomicU64,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn review(&self, result: ReviewResult, took: Duration) {
        let i = ReviewResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.reviews[i].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (b, bound) in self.duration_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn skip(&self, reason: SkipReason) {
        let i = SkipReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.skips[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn undeclared_ports(&self, n: usize) {
        self.undeclared_ports.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn owner_lookup_error(&self) {
        self.owner_lookup_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn oversized(&self) {
        self.oversized.fetch_add(1, Ordering::Relaxed);
    }

    /// A review answered by replaying a kept answer (see `replay`).
    pub fn replayed(&self) {
        self.replayed.fetch_add(1, Ordering::Relaxed);
    }

    /// Count of replayed reviews.
    pub fn replays(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Count of reviews with `result`.
    pub fn reviews_of(&self, result: ReviewResult) -> u64 {
        let i = ReviewResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.reviews[i].load(Ordering::Relaxed)
    }

    /// Count of skips for `reason`.
    pub fn skips_of(&self, reason: SkipReason) -> u64 {
        let i = SkipReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.skips[i].load(Ordering::Relaxed)
    }

    /// The Prometheus text format. `configs` is the number of cached configs.
    pub fn render(&self, configs: usize) -> String {
        let mut s = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.push_str(
            "# HELP tls_steal_webhook_reviews_total Admission reviews answered, by result.\n",
        );
        s.push_str("# TYPE tls_steal_webhook_reviews_total counter\n");
        for (r, c) in ReviewResult::ALL.iter().zip(&self.reviews) {
            let _ = writeln!(
                s,
                "tls_steal_webhook_reviews_total{{result=\"{}\"}} {}",
                r.as_str(),
                load(c)
            );
        }
        s.push_str(
            "# HELP tls_steal_webhook_skips_total Pods admitted without injection, by reason.\n",
        );
        s.push_str("# TYPE tls_steal_webhook_skips_total counter\n");
        for (r, c) in SkipReason::ALL.iter().zip(&self.skips) {
            let _ = writeln!(
                s,
                "tls_steal_webhook_skips_total{{reason=\"{}\"}} {}",
                r.as_str(),
                load(c)
            );
        }
        for (name, help, value) in [
            (
                "undeclared_ports_total",
                "Captured ports that no container declares.",
                &self.undeclared_ports,
            ),
            (
                "owner_lookup_errors_total",
                "Failed ReplicaSet/Job owner lookups.",
                &self.owner_lookup_errors,
            ),
            (
                "oversized_requests_total",
                "Requests refused with 413.",
                &self.oversized,
            ),
            (
                "replayed_total",
                "Reviews answered with a kept answer and their own uid (they differed in nothing else).",
                &self.replayed,
            ),
        ] {
            let _ = writeln!(s, "# HELP tls_steal_webhook_{name} {help}");
            let _ = writeln!(s, "# TYPE tls_steal_webhook_{name} counter");
            let _ = writeln!(s, "tls_steal_webhook_{name} {}", load(value));
        }
        s.push_str("# HELP tls_steal_webhook_configs Configs of both kinds in the cache.\n");
        s.push_str("# TYPE tls_steal_webhook_configs gauge\n");
        let _ = writeln!(s, "tls_steal_webhook_configs {configs}");
        s.push_str("# HELP tls_steal_webhook_review_duration_seconds Time to answer a review.\n");
        s.push_str("# TYPE tls_steal_webhook_review_duration_seconds histogram\n");
        for (b, bound) in self.duration_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                s,
                "tls_steal_webhook_review_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                load(b)
            );
        }
        let count = load(&self.duration_count);
        let _ = writeln!(
            s,
            "tls_steal_webhook_review_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "tls_steal_webhook_review_duration_seconds_sum {}",
            load(&self.duration_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(s, "tls_steal_webhook_review_duration_seconds_count {count}");
        s
    }
}

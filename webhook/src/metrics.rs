//! Metrics of admission. Names and labels are public (dashboards use them):
//! `tls_steal_webhook_reviews_total{result}`, `tls_steal_webhook_skips_total{reason}`,
//! `tls_steal_webhook_{undeclared_ports,owner_lookup_errors,oversized_requests,replayed}_total`,
//! `tls_steal_webhook_configs`, `tls_steal_webhook_review_duration_seconds`.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::mutate::SkipReason;
use crate::openmetrics::{self, DurationHistogram, Label};

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
    /// In declaration order: `result as usize` indexes it.
    const ALL: [ReviewResult; 5] = [
        ReviewResult::Injected,
        ReviewResult::Skipped,
        ReviewResult::Error,
        ReviewResult::Invalid,
        ReviewResult::UnexpectedKind,
    ];

    /// The metric label.
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

static BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Admission's metrics. `Default` makes them unregistered; [`Metrics::register`] exposes them.
/// Counting is an atomic add on a handle resolved at construction.
pub struct Metrics {
    reviews: Family<Label, Counter>,
    by_result: [Counter; ReviewResult::ALL.len()],
    skips: Family<Label, Counter>,
    by_reason: [Counter; SkipReason::ALL.len()],
    undeclared_ports: Counter,
    owner_lookup_errors: Counter,
    oversized: Counter,
    replayed: Counter,
    duration: DurationHistogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let (reviews, by_result) =
            openmetrics::counters("result", ReviewResult::ALL.map(ReviewResult::as_str));
        let (skips, by_reason) =
            openmetrics::counters("reason", SkipReason::ALL.map(SkipReason::as_str));
        Metrics {
            reviews,
            by_result,
            skips,
            by_reason,
            undeclared_ports: Counter::default(),
            owner_lookup_errors: Counter::default(),
            oversized: Counter::default(),
            replayed: Counter::default(),
            duration: DurationHistogram::new(&BUCKETS),
        }
    }
}

impl Metrics {
    /// Adds these metrics to `registry` (counter names without `_total`, which the encoding
    /// appends).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_steal_webhook_reviews",
            "Admission reviews answered, by result",
            self.reviews.clone(),
        );
        registry.register(
            "tls_steal_webhook_skips",
            "Pods admitted without injection, by reason",
            self.skips.clone(),
        );
        for (name, help, counter) in [
            (
                "tls_steal_webhook_undeclared_ports",
                "Captured ports that no container declares",
                &self.undeclared_ports,
            ),
            (
                "tls_steal_webhook_owner_lookup_errors",
                "Failed ReplicaSet/Job owner lookups",
                &self.owner_lookup_errors,
            ),
            (
                "tls_steal_webhook_oversized_requests",
                "Requests refused with 413",
                &self.oversized,
            ),
            (
                "tls_steal_webhook_replayed",
                "Reviews answered with a kept answer and their own uid (they differed in nothing else)",
                &self.replayed,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "tls_steal_webhook_review_duration_seconds",
            "Time to answer a review",
            self.duration.clone(),
        );
    }

    pub fn review(&self, result: ReviewResult, took: Duration) {
        self.by_result[result as usize].inc();
        self.duration.observe(took);
    }

    pub fn skip(&self, reason: SkipReason) {
        self.by_reason[reason as usize].inc();
    }

    pub fn undeclared_ports(&self, n: usize) {
        self.undeclared_ports.inc_by(n as u64);
    }

    pub fn owner_lookup_error(&self) {
        self.owner_lookup_errors.inc();
    }

    pub fn oversized(&self) {
        self.oversized.inc();
    }

    /// A review answered by replaying a kept answer (see `replay`).
    pub fn replayed(&self) {
        self.replayed.inc();
    }

    /// Count of replayed reviews.
    pub fn replays(&self) -> u64 {
        self.replayed.get()
    }

    /// Count of reviews with `result`.
    pub fn reviews_of(&self, result: ReviewResult) -> u64 {
        self.by_result[result as usize].get()
    }

    /// Count of skips for `reason`.
    pub fn skips_of(&self, reason: SkipReason) -> u64 {
        self.by_reason[reason as usize].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as usize` indexes the handle arrays.
    #[test]
    fn label_arrays_are_in_declaration_order() {
        for (i, r) in ReviewResult::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        for (i, r) in SkipReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
    }
}

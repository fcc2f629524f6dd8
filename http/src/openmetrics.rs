//! What the webhook's, the controller's and the sidecar's metrics share: the exposition (OpenMetrics text, as
//! prometheus-client encodes it), a lock-free duration histogram, a gauge read at scrape time,
//! and label families resolved once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// The Content-Type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label, its value fixed at compile time.
pub type Label = [(&'static str, &'static str); 1];

/// `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// A metric family with one label and a handle per value, resolved here once so that updating
/// takes no lock (a `Family` lookup does).
pub fn labelled<M: Default + Clone, const N: usize>(
    label: &'static str,
    values: [&'static str; N],
) -> (Family<Label, M>, [M; N]) {
    let family = Family::<Label, M>::default();
    let handles = values.map(|v| family.get_or_create_owned(&[(label, v)]));
    (family, handles)
}

/// Sets `gauge` to the current Unix time in seconds (a "last happened at" gauge).
pub fn set_to_now(gauge: &Gauge) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    gauge.set(now);
}

/// [`labelled`] counters.
pub fn counters<const N: usize>(
    label: &'static str,
    values: [&'static str; N],
) -> (Family<Label, Counter>, [Counter; N]) {
    labelled(label, values)
}

/// A histogram of durations in seconds, counted with atomics (prometheus-client's takes a lock
/// per observation). Buckets are kept per bound and summed up at scrape time.
#[derive(Clone, Debug)]
pub struct DurationHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One per bound, then the one above every bound.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl DurationHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        DurationHistogram {
            inner: Arc::new(HistogramInner {
                bounds,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_micros: AtomicU64::new(0),
            }),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let h = &self.inner;
        let i = h
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(h.bounds.len());
        h.buckets[i].fetch_add(1, Ordering::Relaxed);
        h.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.inner;
        let bounds = h.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(h.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A gauge whose value is read when scraped.
pub struct Sampled(Box<dyn Fn() -> i64 + Send + Sync>);

impl Sampled {
    pub fn new(read: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Sampled(Box::new(read))
    }
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampled")
    }
}

impl EncodeMetric for Sampled {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.0)())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_when_encoded() {
        static BOUNDS: [f64; 2] = [0.001, 1.0];
        let h = DurationHistogram::new(&BOUNDS);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(2));
        let mut r = Registry::default();
        r.register("t_seconds", "t", h);
        let text = encode(&r);
        for line in [
            "t_seconds_bucket{le=\"0.001\"} 1",
            "t_seconds_bucket{le=\"1.0\"} 2",
            "t_seconds_bucket{le=\"+Inf\"} 3",
            "t_seconds_count 3",
            "t_seconds_sum 2.5005",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }
}

//! A lock-free histogram of durations with fixed buckets.
//!
//! prometheus-client's `Histogram` takes a mutex per observation; these are fed from actors'
//! threads (one sample per 16 messages), so they use atomic bucket counters instead and are
//! encoded through prometheus-client's `MetricEncoder::encode_histogram` at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 1 µs to 10 s in 1-2.5-5 steps.
pub(crate) const BUCKETS_SECONDS: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, for comparisons without floating point.
const BUCKETS_NANOS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Counts per bucket (not cumulative; the last one is `+Inf`) and the sum; the total count is
/// the buckets' sum, which spares an atomic increment per observation.
#[derive(Debug, Default)]
pub(crate) struct DurationHistogram {
    buckets: [AtomicU64; BUCKETS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A copy of a histogram in the shape prometheus-client's `encode_histogram` takes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    pub(crate) sum_seconds: f64,
    pub(crate) count: u64,
    /// `(upper bound in seconds, count in this bucket alone)`, the last bound being
    /// `f64::INFINITY`; the encoder makes the counts cumulative.
    pub(crate) buckets: Vec<(f64, u64)>,
}

impl DurationHistogram {
    pub(crate) fn observe(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Reads the buckets and derives the count from them, so that the count always equals the
    /// `+Inf` bucket even while observations race with the read.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let bounds = BUCKETS_SECONDS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(bound, counter)| (bound, counter.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        HistogramSnapshot {
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
            count,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let histogram = DurationHistogram::default();
        histogram.observe(Duration::from_nanos(1_000)); // exactly 1 µs: le="1e-6"
        histogram.observe(Duration::from_micros(3)); // le="5e-6"
        histogram.observe(Duration::from_millis(7)); // le="0.01"
        histogram.observe(Duration::from_secs(60)); // +Inf only
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 4);
        assert_eq!(snapshot.buckets.len(), BUCKETS_SECONDS.len() + 1);
        let at = |bound: f64| {
            snapshot
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, c)| *c)
        };
        assert_eq!(at(1e-6), Some(1));
        assert_eq!(at(2.5e-6), Some(0));
        assert_eq!(at(5e-6), Some(1));
        assert_eq!(at(0.01), Some(1));
        assert_eq!(at(10.0), Some(0));
        assert_eq!(at(f64::INFINITY), Some(1));
        let expected_sum = 1e-6 + 3e-6 + 7e-3 + 60.0;
        assert!((snapshot.sum_seconds - expected_sum).abs() < 1e-9);
    }

    #[test]
    fn bounds_in_seconds_and_nanoseconds_agree() {
        for (seconds, nanos) in BUCKETS_SECONDS.iter().zip(BUCKETS_NANOS) {
            assert_eq!((seconds * 1e9).round() as u64, nanos);
        }
    }
}

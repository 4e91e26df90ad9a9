//! Counters and distributions of persistence, read by the metrics endpoint.
//!
//! Everything is a relaxed atomic: recording costs a few uncontended increments next to a
//! write that costs an fsync. Distributions have fixed buckets, like Prometheus histograms.

use crate::error::StoreErrorKind;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s.
const LATENCY_BOUNDS: [f64; 17] = [
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds of the batch-size buckets, in events: powers of two up to 8192.
const SIZE_BOUNDS: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// A copy of a distribution: bucket counts (not cumulative), their sum and count.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Distribution {
    /// `(upper bound, observations in this bucket alone)`; the last bound is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of all observations (seconds, or events).
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl Distribution {
    /// The smallest bucket bound below which at least `q` (0..=1) of the observations fall;
    /// `None` without observations.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let target = (q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for &(bound, n) in &self.buckets {
            seen += n;
            if seen >= target.max(1) {
                return Some(bound);
            }
        }
        self.buckets.last().map(|&(bound, _)| bound)
    }
}

/// An atomic fixed-bucket histogram.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// Sum in millionths of the unit (micro-seconds, micro-events), to stay integral.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn latency() -> Self {
        Self::new(&LATENCY_BOUNDS)
    }

    pub(crate) fn sizes() -> Self {
        Self::new(&SIZE_BOUNDS)
    }

    pub(crate) fn observe(&self, value: f64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).max(0.0) as u64, Relaxed);
    }

    pub(crate) fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    pub(crate) fn snapshot(&self) -> Distribution {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.counts.iter())
            .map(|(bound, count)| (bound, count.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        Distribution {
            buckets,
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
            count,
        }
    }
}

/// Counters of a store's group commit (the writer that batches many callers' writes into one
/// transaction).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: u64,
    /// Events per committed transaction.
    pub batch_size: Distribution,
    /// Writes that found the writer's queue full and waited for room (backpressure).
    pub queue_full: u64,
    /// Writes waiting in the queue now.
    pub queued: u64,
    /// The queue's capacity.
    pub queue_capacity: u64,
}

/// The group commit's counters, shared by a store's writer and its callers.
#[derive(Debug)]
pub(crate) struct CommitCounters {
    pub(crate) commits: AtomicU64,
    pub(crate) batch_size: Histogram,
    pub(crate) queue_full: AtomicU64,
}

impl Default for CommitCounters {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            batch_size: Histogram::sizes(),
            queue_full: AtomicU64::new(0),
        }
    }
}

impl CommitCounters {
    pub(crate) fn committed(&self, events: usize) {
        self.commits.fetch_add(1, Relaxed);
        self.batch_size.observe(events as f64);
    }
}

/// What persistence did since the [`Persistence`](crate::Persistence) was created; read with
/// [`Persistence::stats`](crate::Persistence::stats).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct PersistenceStats {
    /// Events acknowledged as durable.
    pub events_written: u64,
    /// Snapshots saved.
    pub snapshots_written: u64,
    /// Durable states saved or deleted.
    pub states_written: u64,
    /// Events read back by recoveries.
    pub events_replayed: u64,
    /// Writes refused because another writer got there first.
    pub conflicts: u64,
    /// Failed store operations by kind (conflicts are counted in `conflicts` only); every
    /// kind is listed, zeros included.
    pub errors: Vec<(StoreErrorKind, u64)>,
    /// Time from a persist (or save) call to its acknowledgement, seconds.
    pub persist_latency: Distribution,
    /// Time of each completed recovery (snapshot, events, state), seconds.
    pub recovery_time: Distribution,
    /// The journal's group commit, if it has one.
    pub commit: Option<CommitStats>,
}

/// The counters behind [`PersistenceStats`].
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) events_written: AtomicU64,
    pub(crate) snapshots_written: AtomicU64,
    pub(crate) states_written: AtomicU64,
    pub(crate) events_replayed: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    errors: [AtomicU64; StoreErrorKind::ALL.len()],
    pub(crate) persist_latency: Histogram,
    pub(crate) recovery_time: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            events_written: AtomicU64::new(0),
            snapshots_written: AtomicU64::new(0),
            states_written: AtomicU64::new(0),
            events_replayed: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            errors: Default::default(),
            persist_latency: Histogram::latency(),
            recovery_time: Histogram::latency(),
        }
    }
}

impl Counters {
    pub(crate) fn failed(&self, kind: StoreErrorKind) {
        if kind == StoreErrorKind::Conflict {
            self.conflicts.fetch_add(1, Relaxed);
        } else {
            self.errors[kind.index()].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, commit: Option<CommitStats>) -> PersistenceStats {
        PersistenceStats {
            events_written: self.events_written.load(Relaxed),
            snapshots_written: self.snapshots_written.load(Relaxed),
            states_written: self.states_written.load(Relaxed),
            events_replayed: self.events_replayed.load(Relaxed),
            conflicts: self.conflicts.load(Relaxed),
            errors: StoreErrorKind::ALL
                .iter()
                .filter(|&&kind| kind != StoreErrorKind::Conflict)
                .map(|&kind| (kind, self.errors[kind.index()].load(Relaxed)))
                .collect(),
            persist_latency: self.persist_latency.snapshot(),
            recovery_time: self.recovery_time.snapshot(),
            commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_the_first_bucket_that_holds_it() {
        let h = Histogram::sizes();
        for v in [1.0, 1.0, 3.0, 9000.0] {
            h.observe(v);
        }
        let d = h.snapshot();
        assert_eq!(d.count, 4);
        assert_eq!(d.buckets[0], (1.0, 2));
        assert_eq!(d.buckets[2], (4.0, 1));
        assert_eq!(d.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(d.sum, 9005.0);
        assert_eq!(d.quantile_bound(0.5), Some(1.0));
        assert_eq!(d.quantile_bound(0.75), Some(4.0));
        assert_eq!(d.quantile_bound(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn conflicts_are_counted_apart_from_errors() {
        let c = Counters::default();
        c.failed(StoreErrorKind::Conflict);
        c.failed(StoreErrorKind::Full);
        let s = c.snapshot(None);
        assert_eq!(s.conflicts, 1);
        assert!(s.errors.contains(&(StoreErrorKind::Full, 1)));
        assert!(!s.errors.iter().any(|(k, _)| *k == StoreErrorKind::Conflict));
    }
}

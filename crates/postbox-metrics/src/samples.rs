//! The observer installed in the actor system: per-actor-type histograms of the sampled
//! handler times and mailbox waits, and the processed counts of actors that have stopped.

use crate::histogram::DurationHistogram;
use dashmap::DashMap;
use postbox::Observer;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What the runtime reported about one actor type.
#[derive(Debug, Default)]
pub(crate) struct TypeSamples {
    pub(crate) handler_time: DurationHistogram,
    pub(crate) mailbox_wait: DurationHistogram,
    /// Messages handled by actors of this type that have stopped.
    pub(crate) retired_processed: AtomicU64,
}

/// Samples by actor type. Types are few (one per Rust type that is spawned), so the map
/// stays small whatever the number of actors; entries are never removed.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    by_type: DashMap<&'static str, TypeSamples>,
}

impl Samples {
    fn with_type(&self, actor_type: &'static str, f: impl FnOnce(&TypeSamples)) {
        if let Some(samples) = self.by_type.get(actor_type) {
            return f(&samples);
        }
        f(&self.by_type.entry(actor_type).or_default());
    }

    /// Calls `f` for every actor type seen so far.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&'static str, &TypeSamples)) {
        for entry in self.by_type.iter() {
            f(entry.key(), entry.value());
        }
    }
}

impl Observer for Samples {
    fn handler_time(&self, actor_type: &'static str, elapsed: Duration) {
        self.with_type(actor_type, |s| s.handler_time.observe(elapsed));
    }

    fn mailbox_wait(&self, actor_type: &'static str, waited: Duration) {
        self.with_type(actor_type, |s| s.mailbox_wait.observe(waited));
    }

    fn actor_stopped(&self, actor_type: &'static str, processed: u64) {
        self.with_type(actor_type, |s| {
            s.retired_processed.fetch_add(processed, Relaxed);
        });
    }
}

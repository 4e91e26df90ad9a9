//! The observer installed in the actor system: per-actor-type histograms of the sampled
//! handler times and mailbox waits, and the processed counts of actors that have stopped.

use crate::histogram::DurationHistogram;
use dashmap::DashMap;
use postbox::Observer;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
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
#[derive(Debug)]
pub(crate) struct Samples {
    /// Tells this instance's entries apart in the threads' caches.
    id: u64,
    by_type: DashMap<&'static str, Arc<TypeSamples>>,
}

/// Ids of `Samples` instances (one per `Metrics`).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The entry a thread used last: `(Samples id, type name, entry)`. A thread mostly runs
/// batches of one actor, so this spares the map lookup (hashing the type name and taking a
/// shard lock) on nearly every sample.
type LastUsed = Option<(u64, &'static str, Arc<TypeSamples>)>;

thread_local! {
    static LAST_USED: RefCell<LastUsed> = const { RefCell::new(None) };
}

impl Default for Samples {
    fn default() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            by_type: DashMap::new(),
        }
    }
}

impl Samples {
    fn with_type(&self, actor_type: &'static str, f: impl FnOnce(&TypeSamples)) {
        let mut f = Some(f);
        LAST_USED.with(|last| {
            if let Some((id, name, samples)) = &*last.borrow() {
                // The same type's name may be two static copies (one per codegen unit), so
                // an address mismatch falls back to comparing the text.
                if *id == self.id && (std::ptr::eq(*name, actor_type) || *name == actor_type) {
                    if let Some(f) = f.take() {
                        f(samples);
                    }
                }
            }
        });
        let Some(f) = f else { return };
        let samples = match self.by_type.get(actor_type) {
            Some(samples) => samples.clone(),
            None => self.by_type.entry(actor_type).or_default().clone(),
        };
        f(&samples);
        LAST_USED.with(|last| *last.borrow_mut() = Some((self.id, actor_type, samples)));
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

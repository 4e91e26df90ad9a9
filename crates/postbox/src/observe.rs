//! Hooks for metrics: the [`Observer`] a system reports per-message samples to (its docs state
//! what is sampled and what it costs), and the process-wide switch that makes senders stamp
//! mailbox slots once any system has an observer.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Receives per-message samples from an [`ActorSystem`](crate::ActorSystem): the hook through
/// which metrics learn what the runtime cannot report afterwards.
///
/// Counters that can be read at any time (mailbox depth, processed counts, restarts, dead
/// letters) need no hook: a metrics exporter reads them from the actor table when it is
/// scraped. What cannot be read afterwards is the distribution of *per-message* times, so the
/// runtime reports those as they happen, to at most one observer per system
/// ([`ActorSystem::set_observer`](crate::ActorSystem::set_observer)):
///
/// * **Handler time**: the run time of the messages the actor already times for its
///   [`ActorStats`](crate::ActorStats) — one message in 16 per actor (the 1st, 17th, …), so the
///   clock stays off the hot path. A sample, not a count: counts come from `processed`.
/// * **Mailbox wait**: how long a message sat in its mailbox, from the moment its sender claimed
///   its slot to the moment the actor took it out. Measured for the first message of every
///   block of 16 mailbox slots, i.e. one message in 16 per mailbox, chosen by position (not by
///   time), so the sample is not biased towards fast or slow moments. The sender reads the clock
///   for those messages only, and only once an observer has been installed in this process.
/// * **Actor stopped**: an actor terminated, with its final processed count, so an exporter can
///   keep totals monotonic after the actor has left the actor table.
///
/// # Cost
///
/// Without an observer: handler samples already exist, and checking for an observer is one
/// load on the sampled path; mailbox slots that start a block cost the sender one load of a
/// process-wide flag. With an observer, each sample is one call into it, so observers must be
/// quick and must not block (atomic counters, lock-free histograms): they run inline on the
/// actor's (or the sender's) thread.
///
/// The mailbox-wait flag is process-wide: once any system in the process has an observer,
/// senders stamp block-starting messages for every system (a clock read per 16 messages);
/// systems without an observer ignore the stamps.
pub trait Observer: Send + Sync + 'static {
    /// A timed handler run of an actor of type `actor_type` took `elapsed`.
    fn handler_time(&self, actor_type: &'static str, elapsed: Duration);

    /// A message for an actor of type `actor_type` waited `waited` in its mailbox.
    fn mailbox_wait(&self, actor_type: &'static str, waited: Duration);

    /// An actor of type `actor_type` terminated after handling `processed` messages. Called
    /// after it has left the actor table.
    fn actor_stopped(&self, actor_type: &'static str, processed: u64);
}

/// Set once any system of the process has an observer: senders then stamp block-starting
/// mailbox slots with the time.
static WAIT_SAMPLING: AtomicBool = AtomicBool::new(false);

/// The origin of mailbox stamps.
static EPOCH: OnceLock<Instant> = OnceLock::new();

pub(crate) fn enable_wait_sampling() {
    EPOCH.get_or_init(Instant::now);
    WAIT_SAMPLING.store(true, Relaxed);
}

/// Whether senders should stamp block-starting slots.
#[inline]
pub(crate) fn wait_sampling() -> bool {
    WAIT_SAMPLING.load(Relaxed)
}

/// Nanoseconds since the stamp epoch, plus one, so that a stamp is never 0 (0 means "no stamp").
pub(crate) fn stamp_now() -> u64 {
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// Time since `stamp` (a value of [`stamp_now`]).
pub(crate) fn since_stamp(stamp: u64) -> Duration {
    Duration::from_nanos(stamp_now().saturating_sub(stamp))
}

/// [`ActorSystem::set_observer`](crate::ActorSystem::set_observer) refused: the system already
/// has an observer. The one offered is handed back.
pub struct ObserverAlreadySet(pub std::sync::Arc<dyn Observer>);

impl std::fmt::Debug for ObserverAlreadySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverAlreadySet").finish_non_exhaustive()
    }
}

impl std::fmt::Display for ObserverAlreadySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the actor system already has an observer")
    }
}

impl std::error::Error for ObserverAlreadySet {}

//! Ask deadlines, enforced by one sweeper per system.
//!
//! Every ask has a deadline, but a Tokio timer per ask is expensive: registering a deadline
//! earlier than everything else in the (often empty) timer wheel re-arms the time driver, which
//! doubled the latency of an ask round trip in our benchmarks. Reading the clock per ask is not
//! free either. Instead:
//!
//! * a pending ask registers an [`AskTimer`] (one small allocation) in one of a few sharded
//!   lists and parks its waker in it — no clock read, no timer;
//! * one sweeper task per system ticks every [`TICK`] while asks are in flight (and sleeps
//!   otherwise). It drops the timers of asks that finished, stamps new timers with the current
//!   time when it first sees them, and expires those whose timeout has passed since then,
//!   waking their askers.
//!
//! A timer is stamped no earlier than it was registered, so a timeout never fires early; it
//! fires at most two ticks late.

use atomic_waker::AtomicWaker;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often the sweeper looks at pending asks; timeouts fire at most two ticks late.
pub(crate) const TICK: Duration = Duration::from_millis(10);

const SHARDS: usize = 8;

const PENDING: u8 = 0;
const EXPIRED: u8 = 1;
const DONE: u8 = 2;

/// The deadline of one pending ask.
pub(crate) struct AskTimer {
    waker: AtomicWaker,
    state: AtomicU8,
    timeout: Duration,
    /// When the sweeper first saw this timer, in nanoseconds since the timers' origin, plus
    /// one; 0 until then. Written and read only by the sweeper.
    seen: AtomicU64,
}

impl AskTimer {
    /// Registers the asker's task, to be woken if the deadline passes.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    pub(crate) fn expired(&self) -> bool {
        self.state.load(Acquire) == EXPIRED
    }

    /// The ask resolved: the sweeper may forget this timer.
    pub(crate) fn finish(&self) {
        let _ = self.state.compare_exchange(PENDING, DONE, Release, Relaxed);
    }
}

/// The pending ask timers of one system and the sweeper that enforces them.
pub(crate) struct AskTimers {
    origin: Instant,
    shards: [Mutex<Vec<Arc<AskTimer>>>; SHARDS],
    /// Round-robin shard choice (contention between threads matters, order does not).
    next_shard: AtomicUsize,
    /// The sweeper is ticking (or about to).
    active: AtomicBool,
    /// Wakes the idle sweeper. Its own `Arc`, so the idle sweeper does not keep the timers
    /// (and their system) alive.
    wake: Arc<Notify>,
    /// Asks that gave up at their deadline (counted by the asker, for metrics).
    timeouts: AtomicU64,
}

impl Drop for AskTimers {
    fn drop(&mut self) {
        // Let an idle sweeper notice that its timers are gone and exit.
        self.wake.notify_one();
    }
}

impl AskTimers {
    /// Creates the timers and starts their sweeper on `runtime`. The sweeper stops when the
    /// timers are dropped (with their system).
    pub(crate) fn start(runtime: &tokio::runtime::Handle) -> Arc<Self> {
        let timers = Arc::new(Self {
            origin: Instant::now(),
            shards: Default::default(),
            next_shard: AtomicUsize::new(0),
            active: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            timeouts: AtomicU64::new(0),
        });
        runtime.spawn(sweep(Arc::downgrade(&timers)));
        timers
    }

    /// Counts an ask that resolved with a timeout.
    pub(crate) fn count_timeout(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    /// Asks that resolved with a timeout so far.
    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts.load(Relaxed)
    }

    /// Registers a deadline `timeout` from now.
    pub(crate) fn register(&self, timeout: Duration) -> Arc<AskTimer> {
        let timer = Arc::new(AskTimer {
            waker: AtomicWaker::new(),
            state: AtomicU8::new(PENDING),
            timeout,
            seen: AtomicU64::new(0),
        });
        let shard = self.next_shard.fetch_add(1, Relaxed) % SHARDS;
        lock(&self.shards[shard]).push(timer.clone());
        if !self.active.load(Acquire) && !self.active.swap(true, AcqRel) {
            self.wake.notify_one();
        }
        timer
    }

    /// One pass: forget finished timers, expire overdue ones. Returns how many are pending.
    fn sweep_once(&self, now: Instant) -> usize {
        let now =
            u64::try_from(now.duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        let mut pending = 0;
        for shard in &self.shards {
            let mut timers = lock(shard);
            timers.retain(|timer| {
                if timer.state.load(Acquire) != PENDING {
                    return false;
                }
                let seen = match timer.seen.load(Relaxed) {
                    0 => {
                        timer.seen.store(now, Relaxed);
                        now
                    }
                    seen => seen,
                };
                let timeout = u64::try_from(timer.timeout.as_nanos()).unwrap_or(u64::MAX);
                if now - seen >= timeout
                    && timer
                        .state
                        .compare_exchange(PENDING, EXPIRED, AcqRel, Acquire)
                        .is_ok()
                {
                    timer.waker.wake();
                    return false;
                }
                true
            });
            pending += timers.len();
        }
        pending
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn sweep(timers: Weak<AskTimers>) {
    loop {
        let Some(strong) = timers.upgrade() else {
            return;
        };
        if !strong.active.load(Acquire) {
            let wake = strong.wake.clone();
            drop(strong);
            wake.notified().await;
            continue;
        }
        drop(strong);
        tokio::time::sleep(TICK).await;
        let Some(strong) = timers.upgrade() else {
            return;
        };
        if strong.sweep_once(Instant::now()) == 0 {
            strong.active.store(false, Release);
            // A registration that raced the store above saw `active` still true and did not
            // notify; look once more so it is not left without a sweeper.
            if strong.shards.iter().any(|shard| !lock(shard).is_empty())
                && !strong.active.swap(true, AcqRel)
            {
                continue;
            }
        }
    }
}

impl std::fmt::Debug for AskTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AskTimers")
            .field("active", &self.active.load(Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    async fn expiry(timer: &AskTimer) {
        poll_fn(|cx| {
            timer.register(cx.waker());
            if timer.expired() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn fires_after_the_timeout_and_at_most_two_ticks_late() {
        let timers = AskTimers::start(&tokio::runtime::Handle::current());
        for timeout in [
            Duration::from_millis(1),
            Duration::from_millis(25),
            Duration::from_secs(3),
        ] {
            let start = Instant::now();
            let timer = timers.register(timeout);
            expiry(&timer).await;
            let waited = start.elapsed();
            assert!(waited >= timeout, "{waited:?} < {timeout:?}");
            assert!(waited <= timeout + 2 * TICK, "{waited:?} for {timeout:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn finished_timers_are_forgotten_and_the_sweeper_goes_idle() {
        let timers = AskTimers::start(&tokio::runtime::Handle::current());
        let timer = timers.register(Duration::from_secs(60));
        timer.finish();
        tokio::time::sleep(3 * TICK).await;
        assert!(!timer.expired());
        assert_eq!(
            Arc::strong_count(&timer),
            1,
            "the sweeper dropped its reference"
        );
        assert!(
            !timers.active.load(Acquire),
            "nothing pending: the sweeper sleeps"
        );
        // And wakes up again for the next registration.
        let again = timers.register(Duration::from_millis(5));
        expiry(&again).await;
    }
}

//! The state machine (Closed → Open → HalfOpen → Closed) behind one `Mutex`, with its state
//! word mirrored in an atomic so that the Closed path takes no lock. Every transition starts a
//! new epoch; a call's outcome moves the machine only if the call was admitted in the current
//! one. Events are queued under the lock (`Inner::publish`) and delivered after it
//! (`Inner::after`, through [`Observers`]).

use super::config::Config;
use super::events::Observers;
use super::{BreakerEvent, BreakerState, BreakerStats, CallOutcome};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

// The state word mirrored out of the lock (see `Inner::mirror`).
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const TAG_MASK: u64 = 0b11;
/// Closed with a non-zero failure count.
const DIRTY: u64 = 0b100;
const EPOCH_SHIFT: u32 = 3;

/// The shared part of a breaker: its settings, the state machine behind its lock, the state
/// word mirrored out of the lock, the counters, and the observers.
pub(super) struct Inner {
    pub(super) name: Box<str>,
    pub(super) config: Config,
    /// The machine's state word, `epoch << EPOCH_SHIFT | DIRTY? | tag`, written under the lock
    /// after every change and read without it, so that the Closed path takes no lock.
    ///
    /// Why that is enough: admitting a call when the word says Closed in epoch `e` is what the
    /// lock would have done at the moment of the load (a trip an instant later is then the same
    /// as a trip right after a locked admission). A success whose epoch still matches a clean
    /// Closed word would reset a count that is already zero, so it changes nothing. Everything
    /// that does change the machine takes the lock.
    mirror: AtomicU64,
    machine: Mutex<Machine>,
    counters: Counters,
    pub(super) observers: Observers,
}

#[derive(Default)]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    panics: AtomicU64,
    rejections: AtomicU64,
    cancelled: AtomicU64,
    ignored: AtomicU64,
    opened: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: CallOutcome) {
        let counter = match outcome {
            CallOutcome::Success => &self.successes,
            CallOutcome::Failure => &self.failures,
            CallOutcome::Timeout => &self.timeouts,
            CallOutcome::Panicked => &self.panics,
            CallOutcome::Rejected => &self.rejections,
            CallOutcome::Cancelled => &self.cancelled,
            CallOutcome::Ignored => &self.ignored,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// The state machine, behind `Inner::machine`.
struct Machine {
    phase: Phase,
    /// Bumped at every transition. A call's outcome moves the machine only if the call was
    /// admitted in the current epoch, so late results of an earlier period are ignored.
    epoch: u64,
    /// The reset timeout before jitter: the configured one, grown after each failed trial.
    base_reset: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { since: Instant, wait: Duration },
    HalfOpen { trial_running: bool },
}

impl Phase {
    fn state(&self) -> BreakerState {
        match self {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Machine {
    fn word(&self) -> u64 {
        let tag = match self.phase {
            Phase::Closed { failures: 0 } => CLOSED,
            Phase::Closed { .. } => CLOSED | DIRTY,
            Phase::Open { .. } => OPEN,
            Phase::HalfOpen { .. } => HALF_OPEN,
        };
        (self.epoch << EPOCH_SHIFT) | tag
    }
}

#[derive(Debug, Clone, Copy)]
struct Transition {
    from: BreakerState,
    to: BreakerState,
}

impl Inner {
    pub(super) fn new(name: String, config: Config, observers: Observers) -> Self {
        Self {
            name: name.into_boxed_str(),
            config,
            mirror: AtomicU64::new(CLOSED),
            machine: Mutex::new(Machine {
                phase: Phase::Closed { failures: 0 },
                epoch: 0,
                base_reset: config.reset_timeout,
            }),
            counters: Counters::default(),
            observers,
        }
    }

    /// The current state, after the Open → HalfOpen check; without the lock while Closed.
    pub(super) fn state(&self) -> BreakerState {
        if self.mirror.load(Acquire) & TAG_MASK == CLOSED {
            return BreakerState::Closed;
        }
        self.with_refreshed(|m| m.phase.state())
    }

    /// The state as last mirrored, without the lock and without the Open → HalfOpen check.
    pub(super) fn mirrored_state(&self) -> BreakerState {
        match self.mirror.load(Acquire) & TAG_MASK {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// A snapshot of the counters and the state.
    pub(super) fn stats(&self) -> BreakerStats {
        let (state, consecutive_failures, reset_timeout) = self.with_refreshed(|m| {
            let failures = match m.phase {
                Phase::Closed { failures } => failures,
                _ => 0,
            };
            (m.phase.state(), failures, m.base_reset)
        });
        let c = &self.counters;
        BreakerStats {
            state,
            successes: c.successes.load(Relaxed),
            failures: c.failures.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            panics: c.panics.load(Relaxed),
            rejections: c.rejections.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            ignored: c.ignored.load(Relaxed),
            times_opened: c.opened.load(Relaxed),
            consecutive_failures,
            reset_timeout,
            events_dropped: self.observers.dropped.load(Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        self.machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Under the lock: stores `phase` and publishes the word (same epoch).
    fn set_phase(&self, m: &mut Machine, phase: Phase) {
        m.phase = phase;
        self.mirror.store(m.word(), Release);
    }

    /// Under the lock: moves to `phase` in a new epoch.
    fn enter(&self, m: &mut Machine, phase: Phase) -> Transition {
        let from = m.phase.state();
        m.epoch += 1;
        self.set_phase(m, phase);
        if let Phase::Open { .. } = phase {
            self.counters.opened.fetch_add(1, Relaxed);
        }
        Transition {
            from,
            to: phase.state(),
        }
    }

    /// Under the lock: an Open breaker whose wait has passed becomes HalfOpen.
    fn refresh(&self, m: &mut Machine, now: Instant) -> Option<Transition> {
        match m.phase {
            Phase::Open { since, wait } if now.saturating_duration_since(since) >= wait => {
                Some(self.enter(
                    m,
                    Phase::HalfOpen {
                        trial_running: false,
                    },
                ))
            }
            _ => None,
        }
    }

    /// Runs `f` on the machine after the Open → HalfOpen check.
    fn with_refreshed<R>(&self, f: impl FnOnce(&Machine) -> R) -> R {
        let now = Instant::now();
        let mut m = self.lock();
        let transition = self.refresh(&mut m, now);
        self.publish(transition.map(Transition::event), None);
        let result = f(&m);
        drop(m);
        self.after(transition);
        result
    }

    /// Admits a call (returning its epoch) or says how long until the breaker half-opens.
    pub(super) fn admit(&self) -> Result<u64, Duration> {
        let word = self.mirror.load(Acquire);
        if word & TAG_MASK == CLOSED {
            return Ok(word >> EPOCH_SHIFT);
        }
        let now = Instant::now();
        let mut m = self.lock();
        let transition = self.refresh(&mut m, now);
        let admitted = match m.phase {
            Phase::Closed { .. } => Ok(m.epoch),
            Phase::HalfOpen {
                trial_running: false,
            } => {
                self.set_phase(
                    &mut m,
                    Phase::HalfOpen {
                        trial_running: true,
                    },
                );
                Ok(m.epoch)
            }
            Phase::HalfOpen {
                trial_running: true,
            } => Err(Duration::ZERO),
            Phase::Open { since, wait } => {
                Err(wait.saturating_sub(now.saturating_duration_since(since)))
            }
        };
        let rejected = admitted.is_err().then_some(CallOutcome::Rejected);
        if let Some(outcome) = rejected {
            self.counters.count(outcome);
        }
        self.publish(
            transition.map(Transition::event),
            rejected.map(BreakerEvent::Call),
        );
        drop(m);
        self.after(transition);
        admitted
    }

    /// Records the outcome of a call admitted in `epoch`, and moves the machine if the call
    /// belongs to the current epoch.
    pub(super) fn settle(&self, epoch: u64, outcome: CallOutcome) {
        self.counters.count(outcome);
        let clean = (epoch << EPOCH_SHIFT) | CLOSED;
        if outcome == CallOutcome::Success && self.mirror.load(Acquire) == clean {
            // Nothing to reset (see `mirror`).
            if self.observers.is_active() {
                self.observers.push(BreakerEvent::Call(outcome));
                self.after(None);
            }
            return;
        }
        let mut m = self.lock();
        let transition = if m.epoch == epoch {
            self.apply(&mut m, outcome)
        } else {
            None
        };
        self.publish(
            Some(BreakerEvent::Call(outcome)),
            transition.map(Transition::event),
        );
        drop(m);
        self.after(transition);
    }

    /// Under the lock: the effect of a current-epoch call's outcome.
    fn apply(&self, m: &mut Machine, outcome: CallOutcome) -> Option<Transition> {
        let failed = outcome.is_failure();
        let succeeded = outcome == CallOutcome::Success;
        match m.phase {
            Phase::Closed { .. } if succeeded => {
                self.set_phase(m, Phase::Closed { failures: 0 });
                None
            }
            Phase::Closed { failures } if failed => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.max_failures {
                    Some(self.open(m))
                } else {
                    self.set_phase(m, Phase::Closed { failures });
                    None
                }
            }
            Phase::HalfOpen { .. } if succeeded => {
                m.base_reset = self.config.reset_timeout;
                Some(self.enter(m, Phase::Closed { failures: 0 }))
            }
            Phase::HalfOpen { .. } if failed => {
                m.base_reset = self.config.grow(m.base_reset);
                Some(self.open(m))
            }
            // No verdict: free the trial slot for the next caller.
            Phase::HalfOpen { .. } => {
                self.set_phase(
                    m,
                    Phase::HalfOpen {
                        trial_running: false,
                    },
                );
                None
            }
            // No verdict in Closed; and no call is ever admitted in an Open epoch.
            Phase::Closed { .. } | Phase::Open { .. } => None,
        }
    }

    /// Under the lock: trips to Open for the current base reset timeout, with jitter.
    fn open(&self, m: &mut Machine) -> Transition {
        let wait = self.config.jitter(m.base_reset);
        self.enter(
            m,
            Phase::Open {
                since: Instant::now(),
                wait,
            },
        )
    }

    /// Under the lock: queues events for delivery, so that their order is the machine's.
    fn publish(&self, first: Option<BreakerEvent>, second: Option<BreakerEvent>) {
        if self.observers.is_active() {
            for event in [first, second].into_iter().flatten() {
                self.observers.push(event);
            }
        }
    }

    /// After the lock is released: logs the transition, delivers queued events.
    fn after(&self, transition: Option<Transition>) {
        if let Some(Transition { from, to }) = transition {
            if to == BreakerState::Open {
                tracing::warn!(target: "postbox::breaker", breaker = %self.name, %from, %to, "circuit breaker opened");
            } else {
                tracing::info!(target: "postbox::breaker", breaker = %self.name, %from, %to, "circuit breaker changed state");
            }
        }
        if self.observers.is_active() {
            self.observers.deliver(&self.name);
        }
    }
}

impl Transition {
    fn event(self) -> BreakerEvent {
        BreakerEvent::Transition {
            from: self.from,
            to: self.to,
        }
    }
}

//! Circuit breaker: fail fast while a dependency is down, and heal without a human.
//!
//! A [`CircuitBreaker`] wraps calls to one dependency (an async call, or an actor through
//! [`GuardedRef`] / [`GuardedRecipient`]) and follows the state machine of Akka's
//! `CircuitBreaker`:
//!
//! ```text
//!              max_failures consecutive failures
//!   Closed ─────────────────────────────────────────► Open ◄────────────────┐
//!     ▲                                                 │                   │ the trial fails:
//!     │ the trial                     reset timeout     │                   │ reset timeout
//!     │ succeeds                      has passed        ▼                   │ × backoff factor
//!     └──────────────────────────────────────────── HalfOpen ───────────────┘
//! ```
//!
//! * **Closed**: calls run. The breaker counts *consecutive* failures; any success resets the
//!   count to zero. When the count reaches `max_failures`, the breaker trips to Open.
//! * **Open**: calls fail at once with [`BreakerError::Open`], without running, carrying the
//!   time left until the breaker will let a trial call through. Nothing waits on a slow or dead
//!   dependency, and the dependency gets room to recover.
//! * **HalfOpen**: once the reset timeout has passed (checked lazily, on the next call or
//!   [`state`](CircuitBreaker::state)), exactly one *trial* call runs; callers that arrive
//!   while it runs are rejected with `Open { remaining: 0 }`. If the trial succeeds, the
//!   breaker closes and its reset timeout returns to the configured value. If it fails, the
//!   breaker opens again, for the previous reset timeout multiplied by the
//!   `exponential_backoff` factor (default 1.0: no growth), capped at `max_reset_timeout`. A
//!   trial whose caller drops it gives no verdict: the slot is released and the next caller
//!   becomes the trial.
//!
//! Each Open period may be stretched by a random fraction of up to `random_factor` (jitter, so
//! that many breakers opened by one outage do not probe it in lockstep). The cap applies to the
//! reset timeout before jitter.
//!
//! # What counts as a failure
//!
//! * An `Err` returned by the call ([`call`](CircuitBreaker::call)), or whatever the
//!   predicate given to [`call_with`](CircuitBreaker::call_with) says: an `Err` that is not a
//!   failure (say, "not found") or an `Ok` that is (say, an HTTP 503). The caller gets the
//!   call's result either way; the predicate only decides what the breaker counts.
//! * A call that does not finish within `call_timeout`: it is dropped there and the caller
//!   gets [`BreakerError::Timeout`].
//! * A panic inside the call: it is caught (each poll runs under `catch_unwind`), counted, and
//!   reported as [`BreakerError::Panicked`]; it does not unwind into the caller.
//!
//! Results of calls admitted before the breaker changed state (a slow call that started while
//! Closed and finished after the breaker opened) are counted in the statistics but do not move
//! the state machine: only calls of the current state's period do.
//!
//! # Observing
//!
//! [`state`](CircuitBreaker::state) and [`stats`](CircuitBreaker::stats) read the state and
//! exact counters. [`subscribe`](CircuitBreaker::subscribe) streams [`BreakerEvent`]s: each
//! state transition and each call's [`CallOutcome`]. Listeners registered with
//! [`on_event`](CircuitBreaker::on_event) or [`on_transition`](CircuitBreaker::on_transition)
//! (or on the builder) are called with the same events. Events are delivered in the order the
//! breaker produced them, by one thread at a time, and never while a lock of the breaker is
//! held, so a listener may call back into the breaker; it should be quick, since it runs on a
//! caller's thread. A panicking listener is logged and otherwise ignored. The delivery queue
//! is bounded: if listeners fall more than 1024 events behind, further call outcomes are
//! dropped for them and counted (transitions are never dropped). For exact numbers, read
//! `stats`; events are for reacting to transitions and for sampling outcomes. Transitions are
//! also logged through `tracing` (target `postbox::breaker`).
//!
//! # Cost
//!
//! The breaker is an `Arc`, cheap to clone and to share between tasks. On the Closed path, a
//! successful call costs three atomic loads and one counter increment: it takes no lock,
//! reads no clock and allocates nothing, unless someone observes the events (then each call's
//! outcome is queued for delivery, under a short lock). The call's deadline timer is only armed if the call does not finish on its
//! first poll. The Open and HalfOpen paths take a short lock.
//!
//! ```
//! use postbox::{BreakerError, BreakerState, CircuitBreaker};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreaker::builder("payments")
//!     .max_failures(2)
//!     .call_timeout(Duration::from_secs(1))
//!     .reset_timeout(Duration::from_secs(30))
//!     .build()?;
//!
//! for _ in 0..2 {
//!     let result = breaker.call(async { Err::<u32, _>("503") }).await;
//!     assert_eq!(result, Err(BreakerError::Inner("503")));
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//!
//! // Open: the call is not made, and the caller learns when to come back.
//! match breaker.call(async { Ok::<u32, &str>(42) }).await {
//!     Err(BreakerError::Open { remaining }) => assert!(remaining <= Duration::from_secs(30)),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! assert_eq!(breaker.stats().rejections, 1);
//! # Ok(())
//! # }
//! ```

mod guard;

pub use guard::{
    GuardedAskError, GuardedRecipient, GuardedRef, GuardedSendError, GuardedTrySendError,
};

use crate::actor::{Actor, Message};
use crate::actor_ref::{ActorRef, Recipient};
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::{Instant, Sleep};

/// Events a subscriber may fall behind by before it is told it lagged; also the most call
/// outcomes queued for delivery (see `Observers::push`).
const EVENT_CAPACITY: usize = 1024;

// The state word mirrored out of the lock (see `Inner::mirror`).
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const TAG_MASK: u64 = 0b11;
/// Closed with a non-zero failure count.
const DIRTY: u64 = 0b100;
const EPOCH_SHIFT: u32 = 3;

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls run; consecutive failures are counted.
    Closed,
    /// Calls are rejected at once until the reset timeout has passed.
    Open,
    /// One trial call runs; its outcome closes or re-opens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// A short snake_case label, stable for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one call through the breaker ended, as published in [`BreakerEvent::Call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallOutcome {
    /// The call finished and did not count as a failure.
    Success,
    /// The call finished and counted as a failure (an error, by default).
    Failure,
    /// The call did not finish within the call timeout (a failure).
    Timeout,
    /// The call panicked (a failure).
    Panicked,
    /// The call was not made: the breaker was open, or half-open with its trial running.
    Rejected,
    /// The caller dropped the call before it finished; no verdict.
    Cancelled,
    /// The call finished with a result the breaker does not judge (a guarded `try_tell` to a
    /// full mailbox); no verdict.
    Ignored,
}

impl CallOutcome {
    /// A short snake_case label, stable for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure => "failure",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Panicked => "panicked",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::Ignored => "ignored",
        }
    }

    /// Whether the breaker counts this outcome as a failure.
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            CallOutcome::Failure | CallOutcome::Timeout | CallOutcome::Panicked
        )
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a [`CircuitBreaker`] publishes to subscribers and listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// The breaker changed state.
    Transition {
        /// The state it left.
        from: BreakerState,
        /// The state it entered.
        to: BreakerState,
    },
    /// A call ended (or was rejected). A call's outcome is published before the transition it
    /// causes.
    Call(CallOutcome),
}

/// A snapshot of a breaker's counters, from [`CircuitBreaker::stats`].
///
/// The counters are exact and count since the breaker was built. Every call ends in exactly
/// one of `successes`, `failures`, `timeouts`, `panics`, `rejections`, `cancelled` and
/// `ignored`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The current state.
    pub state: BreakerState,
    /// Calls that finished and did not count as failures.
    pub successes: u64,
    /// Calls that finished and counted as failures (timeouts and panics excluded).
    pub failures: u64,
    /// Calls dropped at the call timeout.
    pub timeouts: u64,
    /// Calls that panicked (for guarded asks: handlers that panicked).
    pub panics: u64,
    /// Calls rejected without running (open, or half-open with the trial running).
    pub rejections: u64,
    /// Calls dropped by their callers before they finished.
    pub cancelled: u64,
    /// Calls that finished without a verdict (guarded `try_tell` to a full mailbox).
    pub ignored: u64,
    /// How many times the breaker has opened.
    pub times_opened: u64,
    /// Consecutive failures counted in the current Closed period (0 in other states).
    pub consecutive_failures: u32,
    /// The reset timeout the next Open period is based on (before jitter): the configured one,
    /// grown by the backoff factor after each failed trial.
    pub reset_timeout: Duration,
    /// Call outcome events not published because listeners fell more than 1024 events behind
    /// (transitions are never dropped).
    pub events_dropped: u64,
}

impl BreakerStats {
    /// All calls counted as failures: `failures + timeouts + panics`.
    pub fn total_failures(&self) -> u64 {
        self.failures + self.timeouts + self.panics
    }
}

/// Why a call through [`CircuitBreaker::call`] returned no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The breaker is open (or half-open with its one trial call running); the call was not
    /// made. `remaining` is the time until the breaker lets a trial call through (zero while a
    /// trial runs).
    Open {
        /// Time until the breaker half-opens.
        remaining: Duration,
    },
    /// The call did not finish within the breaker's call timeout and was dropped.
    Timeout(Duration),
    /// The call panicked; the panic message.
    Panicked(Arc<str>),
    /// The call itself returned this error.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// Whether the call was rejected without running.
    pub fn is_rejected(&self) -> bool {
        matches!(self, BreakerError::Open { .. })
    }

    /// The call's own error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Inner(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Open { remaining } => write!(
                f,
                "the circuit breaker is open; calls are rejected for another {remaining:?}"
            ),
            BreakerError::Timeout(d) => write!(
                f,
                "the call did not finish within the breaker's call timeout ({d:?})"
            ),
            BreakerError::Panicked(m) => write!(f, "the call panicked: {m}"),
            BreakerError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Displayed as the inner error itself, so its source is the inner error's source.
            BreakerError::Inner(e) => e.source(),
            _ => None,
        }
    }
}

/// An invalid [`CircuitBreakerBuilder`] setting, from [`build`](CircuitBreakerBuilder::build).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// `max_failures` must be at least 1.
    ZeroMaxFailures,
    /// `call_timeout` must be longer than zero.
    ZeroCallTimeout,
    /// `reset_timeout` must be longer than zero.
    ZeroResetTimeout,
    /// `exponential_backoff` must be a finite number of at least 1.0.
    InvalidBackoffFactor(f64),
    /// `random_factor` must be within `0.0..=1.0`.
    InvalidRandomFactor(f64),
    /// `max_reset_timeout` must not be shorter than `reset_timeout`.
    MaxResetTimeoutTooShort {
        /// The configured reset timeout.
        reset_timeout: Duration,
        /// The configured, shorter, cap.
        max_reset_timeout: Duration,
    },
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerConfigError::ZeroMaxFailures => {
                f.write_str("invalid circuit breaker config: max_failures must be at least 1")
            }
            BreakerConfigError::ZeroCallTimeout => {
                f.write_str("invalid circuit breaker config: call_timeout must be longer than 0")
            }
            BreakerConfigError::ZeroResetTimeout => {
                f.write_str("invalid circuit breaker config: reset_timeout must be longer than 0")
            }
            BreakerConfigError::InvalidBackoffFactor(x) => write!(
                f,
                "invalid circuit breaker config: exponential_backoff must be finite and at least 1.0, got {x}"
            ),
            BreakerConfigError::InvalidRandomFactor(x) => write!(
                f,
                "invalid circuit breaker config: random_factor must be within 0.0..=1.0, got {x}"
            ),
            BreakerConfigError::MaxResetTimeoutTooShort {
                reset_timeout,
                max_reset_timeout,
            } => write!(
                f,
                "invalid circuit breaker config: max_reset_timeout ({max_reset_timeout:?}) is shorter than reset_timeout ({reset_timeout:?})"
            ),
        }
    }
}

impl std::error::Error for BreakerConfigError {}

type Listener = Arc<dyn Fn(&BreakerEvent) + Send + Sync + 'static>;

fn transition_listener(f: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static) -> Listener {
    Arc::new(move |event: &BreakerEvent| {
        if let BreakerEvent::Transition { from, to } = *event {
            f(from, to);
        }
    })
}

/// Settings of a [`CircuitBreaker`], from [`CircuitBreaker::builder`].
///
/// Defaults: `max_failures` 5, `call_timeout` 10 s, `reset_timeout` 30 s,
/// `exponential_backoff` 1.0 (no growth), no `max_reset_timeout`, `random_factor` 0.0.
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBreakerBuilder {
    name: String,
    config: Config,
    listeners: Vec<Listener>,
}

impl CircuitBreakerBuilder {
    /// Consecutive failures (in the Closed state) that trip the breaker. At least 1.
    pub fn max_failures(mut self, max_failures: u32) -> Self {
        self.config.max_failures = max_failures;
        self
    }

    /// How long a call may take before it is dropped and counted as a failure. Longer than 0.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// How long the breaker stays open before it lets a trial call through. Longer than 0.
    pub fn reset_timeout(mut self, timeout: Duration) -> Self {
        self.config.reset_timeout = timeout;
        self
    }

    /// Factor by which the reset timeout grows after each failed trial (finite, at least 1.0;
    /// 1.0, the default, means no growth). A successful trial resets it.
    pub fn exponential_backoff(mut self, factor: f64) -> Self {
        self.config.backoff = factor;
        self
    }

    /// Upper bound for the grown reset timeout (not shorter than `reset_timeout`).
    pub fn max_reset_timeout(mut self, max: Duration) -> Self {
        self.config.max_reset_timeout = Some(max);
        self
    }

    /// Random stretch of each Open period, as a fraction of the reset timeout within
    /// `0.0..=1.0`: an Open period lasts between the reset timeout and
    /// `reset timeout × (1 + random_factor)`.
    pub fn random_factor(mut self, factor: f64) -> Self {
        self.config.random_factor = factor;
        self
    }

    /// Registers a listener for every event (see [`CircuitBreaker::on_event`]).
    pub fn on_event(mut self, f: impl Fn(&BreakerEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Registers a listener for state transitions, called with `(from, to)` (see
    /// [`CircuitBreaker::on_transition`]).
    pub fn on_transition(
        mut self,
        f: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push(transition_listener(f));
        self
    }

    /// Builds the breaker, Closed, or says which setting is invalid.
    pub fn build(self) -> Result<CircuitBreaker, BreakerConfigError> {
        let config = self.config;
        config.validate()?;
        let (stream, _) = broadcast::channel(EVENT_CAPACITY);
        let active = !self.listeners.is_empty();
        Ok(CircuitBreaker {
            inner: Arc::new(Inner {
                name: self.name.into_boxed_str(),
                config,
                mirror: AtomicU64::new(CLOSED),
                machine: Mutex::new(Machine {
                    phase: Phase::Closed { failures: 0 },
                    epoch: 0,
                    base_reset: config.reset_timeout,
                }),
                counters: Counters::default(),
                observers: Observers {
                    active: AtomicBool::new(active),
                    stream,
                    listeners: RwLock::new(self.listeners.into()),
                    outbox: Mutex::new(Outbox::default()),
                    dropped: AtomicU64::new(0),
                },
            }),
        })
    }
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

/// A circuit breaker: fails calls to a dependency fast while it is down, and lets them through
/// again once it has recovered, without anyone resetting it (Akka's `CircuitBreaker`).
///
/// * **Closed**: calls run; `max_failures` *consecutive* failures (errors, panics, calls
///   slower than `call_timeout`) trip it to Open. Any success resets the count.
/// * **Open**: calls are rejected at once with [`BreakerError::Open`], which says how long
///   until the breaker half-opens; after `reset_timeout` it becomes HalfOpen.
/// * **HalfOpen**: exactly one trial call runs (others are rejected meanwhile). Success closes
///   the breaker; failure opens it again for the reset timeout times `exponential_backoff`
///   (capped at `max_reset_timeout`, plus up to `random_factor` of jitter). A trial dropped by
///   its caller frees the slot for the next caller.
///
/// Late results of calls admitted before the last transition are counted in
/// [`stats`](Self::stats) but do not move the breaker. Observe it with
/// [`state`](Self::state), [`stats`](Self::stats), [`subscribe`](Self::subscribe) and
/// listeners ([`on_event`](Self::on_event)). Guard actors with [`guard`](Self::guard) and
/// [`guard_recipient`](Self::guard_recipient).
///
/// Cheap to clone: clones share one breaker. `Send + Sync`, so it can be stored in actors,
/// their `Props` and statics.
///
/// ```
/// use postbox::{BreakerError, CircuitBreaker};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::builder("inventory")
///     .max_failures(3)
///     .call_timeout(Duration::from_millis(500))
///     .reset_timeout(Duration::from_secs(1))
///     .exponential_backoff(2.0)
///     .max_reset_timeout(Duration::from_secs(60))
///     .random_factor(0.2)
///     .build()?;
///
/// // A 404 is an answer, not an outage: do not count it.
/// let lookup = async { Err::<u32, u16>(404) };
/// let result = breaker.call_with(lookup, |r| matches!(r, Err(code) if *code >= 500)).await;
/// assert_eq!(result, Err(BreakerError::Inner(404)));
/// assert_eq!(breaker.stats().consecutive_failures, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl CircuitBreaker {
    /// Starts configuring a breaker named `name` (used in logs and metrics).
    pub fn builder(name: impl Into<String>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            name: name.into(),
            config: Config::default(),
            listeners: Vec::new(),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The call timeout: how long a call may take before it is dropped and counted as a
    /// failure.
    pub fn call_timeout(&self) -> Duration {
        self.inner.config.call_timeout
    }

    /// The current state. An Open breaker whose reset timeout has passed becomes HalfOpen
    /// here (publishing the transition), even if no call has come in since.
    pub fn state(&self) -> BreakerState {
        if self.inner.mirror.load(Acquire) & TAG_MASK == CLOSED {
            return BreakerState::Closed;
        }
        self.inner.with_refreshed(|m| m.phase.state())
    }

    /// A snapshot of the counters and the state.
    pub fn stats(&self) -> BreakerStats {
        let (state, consecutive_failures, reset_timeout) = self.inner.with_refreshed(|m| {
            let failures = match m.phase {
                Phase::Closed { failures } => failures,
                _ => 0,
            };
            (m.phase.state(), failures, m.base_reset)
        });
        let c = &self.inner.counters;
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
            events_dropped: self.inner.observers.dropped.load(Relaxed),
        }
    }

    /// A stream of the events published from now on: transitions and call outcomes, in order.
    ///
    /// A subscriber that falls more than 1024 events behind is told how many it missed
    /// (`RecvError::Lagged`); the counters of [`stats`](Self::stats) stay exact regardless.
    /// Once a breaker has been subscribed to, it queues every call's outcome for delivery,
    /// even after the receivers are dropped.
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        let rx = self.inner.observers.stream.subscribe();
        self.inner.observers.active.store(true, Release);
        rx
    }

    /// Registers a listener called with every event, in order, on the thread of the call that
    /// produced it (or of another caller delivering queued events), never under a lock. It
    /// may call back into the breaker. A panic in it is logged and ignored.
    ///
    /// Keep it quick (hand slow work to a channel): while it runs, the caller delivering the
    /// events waits, and if listeners fall more than 1024 events behind, call outcomes are
    /// dropped for them (counted in [`BreakerStats::events_dropped`]).
    pub fn on_event(&self, f: impl Fn(&BreakerEvent) + Send + Sync + 'static) {
        self.inner.observers.add_listener(Arc::new(f));
    }

    /// Registers a listener for state transitions, called with `(from, to)`. Same rules as
    /// [`on_event`](Self::on_event).
    pub fn on_transition(&self, f: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static) {
        self.inner.observers.add_listener(transition_listener(f));
    }

    /// Runs `call` through the breaker; an `Err` counts as a failure.
    ///
    /// Returns the call's own result (its error as [`BreakerError::Inner`]), or
    /// [`BreakerError::Open`] without running it, [`BreakerError::Timeout`] if it took longer
    /// than the call timeout (it is dropped), or [`BreakerError::Panicked`] if it panicked.
    /// Anything that turns into such a future works, an `ask` for instance:
    /// `breaker.call(actor.ask(msg))`.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, BreakerError<E>>
    where
        F: IntoFuture<Output = Result<T, E>>,
    {
        self.call_with(call, Result::is_err).await
    }

    /// Like [`call`](Self::call), with `is_failure` deciding whether the call's result counts
    /// as a failure. The caller gets the result either way.
    pub async fn call_with<T, E, F, P>(&self, call: F, is_failure: P) -> Result<T, BreakerError<E>>
    where
        F: IntoFuture<Output = Result<T, E>>,
        P: FnOnce(&Result<T, E>) -> bool,
    {
        let permit = match self.admit() {
            Ok(permit) => permit,
            Err(remaining) => return Err(BreakerError::Open { remaining }),
        };
        let timeout = self.call_timeout();
        match Bounded::new(call.into_future(), timeout).await {
            Finished::Done(result) => {
                let outcome = if is_failure(&result) {
                    CallOutcome::Failure
                } else {
                    CallOutcome::Success
                };
                permit.settle(outcome);
                result.map_err(BreakerError::Inner)
            }
            Finished::Panicked(payload) => {
                permit.settle(CallOutcome::Panicked);
                Err(BreakerError::Panicked(panic_message(&*payload)))
            }
            Finished::TimedOut => {
                permit.settle(CallOutcome::Timeout);
                Err(BreakerError::Timeout(timeout))
            }
        }
    }

    /// Guards a typed actor reference: its `tell`, `try_tell` and `ask` go through this
    /// breaker (see [`GuardedRef`]).
    pub fn guard<A: Actor>(&self, actor: ActorRef<A>) -> GuardedRef<A> {
        GuardedRef::new(actor, self.clone())
    }

    /// Guards a recipient: its `tell`, `try_tell` and `ask` go through this breaker (see
    /// [`GuardedRecipient`]).
    pub fn guard_recipient<M: Message>(&self, recipient: Recipient<M>) -> GuardedRecipient<M> {
        GuardedRecipient::new(recipient, self.clone())
    }

    /// Asks to make a call: a permit to settle with the call's outcome, or the time until the
    /// breaker half-opens. Dropping the permit unsettled counts as `Cancelled`.
    fn admit(&self) -> Result<Permit<'_>, Duration> {
        self.inner.admit().map(|epoch| Permit {
            inner: &self.inner,
            epoch,
            settled: false,
        })
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner.mirror.load(Acquire) & TAG_MASK {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        };
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &state)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The right to make one call. Settle it with the call's outcome; dropping it unsettled (the
/// caller dropped the call) counts as `Cancelled` and frees the half-open trial slot.
struct Permit<'a> {
    inner: &'a Inner,
    /// The breaker's epoch when the call was admitted.
    epoch: u64,
    settled: bool,
}

impl Permit<'_> {
    fn settle(mut self, outcome: CallOutcome) {
        self.settled = true;
        self.inner.settle(self.epoch, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.inner.settle(self.epoch, CallOutcome::Cancelled);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    max_failures: u32,
    call_timeout: Duration,
    reset_timeout: Duration,
    backoff: f64,
    max_reset_timeout: Option<Duration>,
    random_factor: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_failures: 5,
            call_timeout: Duration::from_secs(10),
            reset_timeout: Duration::from_secs(30),
            backoff: 1.0,
            max_reset_timeout: None,
            random_factor: 0.0,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.max_failures == 0 {
            return Err(BreakerConfigError::ZeroMaxFailures);
        }
        if self.call_timeout.is_zero() {
            return Err(BreakerConfigError::ZeroCallTimeout);
        }
        if self.reset_timeout.is_zero() {
            return Err(BreakerConfigError::ZeroResetTimeout);
        }
        if !(self.backoff.is_finite() && self.backoff >= 1.0) {
            return Err(BreakerConfigError::InvalidBackoffFactor(self.backoff));
        }
        if !(0.0..=1.0).contains(&self.random_factor) {
            return Err(BreakerConfigError::InvalidRandomFactor(self.random_factor));
        }
        match self.max_reset_timeout {
            Some(max) if max < self.reset_timeout => {
                Err(BreakerConfigError::MaxResetTimeoutTooShort {
                    reset_timeout: self.reset_timeout,
                    max_reset_timeout: max,
                })
            }
            _ => Ok(()),
        }
    }

    /// The base reset timeout after one more failed trial.
    fn grow(&self, base: Duration) -> Duration {
        if self.backoff == 1.0 {
            return base;
        }
        match (
            Duration::try_from_secs_f64(base.as_secs_f64() * self.backoff),
            self.max_reset_timeout,
        ) {
            (Ok(grown), Some(max)) => grown.min(max),
            (Ok(grown), None) => grown,
            (Err(_), Some(max)) => max,
            // Beyond what a `Duration` holds, with no cap: stop growing.
            (Err(_), None) => base,
        }
    }

    /// How long one Open period lasts: `base`, stretched by up to `random_factor`.
    fn jitter(&self, base: Duration) -> Duration {
        if self.random_factor == 0.0 {
            return base;
        }
        let stretch = 1.0 + self.random_factor * fastrand::f64();
        Duration::try_from_secs_f64(base.as_secs_f64() * stretch).unwrap_or(base)
    }
}

struct Inner {
    name: Box<str>,
    config: Config,
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
    observers: Observers,
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
    fn admit(&self) -> Result<u64, Duration> {
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
    fn settle(&self, epoch: u64, outcome: CallOutcome) {
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

/// Subscribers and listeners, and the queue that delivers events to them in order.
struct Observers {
    /// Someone subscribed or registered a listener (never cleared): until then, no events are
    /// queued.
    active: AtomicBool,
    stream: broadcast::Sender<BreakerEvent>,
    /// Replaced as a whole when a listener is added, so delivery clones one `Arc`.
    listeners: RwLock<Arc<[Listener]>>,
    outbox: Mutex<Outbox>,
    /// Call outcomes not queued because the outbox was full.
    dropped: AtomicU64,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<BreakerEvent>,
    /// A thread is delivering; it will also deliver whatever is queued meanwhile.
    delivering: bool,
}

impl Observers {
    fn is_active(&self) -> bool {
        self.active.load(Acquire)
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an event. The queue is bounded: listeners slower than the calls would otherwise
    /// grow it without limit, so past `EVENT_CAPACITY` call outcomes are dropped (and
    /// counted). Transitions are always queued; they are rare, since each Open period lasts a
    /// reset timeout.
    fn push(&self, event: BreakerEvent) {
        let mut outbox = self.outbox();
        if matches!(event, BreakerEvent::Call(_)) && outbox.queue.len() >= EVENT_CAPACITY {
            drop(outbox);
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        outbox.queue.push_back(event);
    }

    fn add_listener(&self, listener: Listener) {
        let mut listeners = self
            .listeners
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *listeners = listeners
            .iter()
            .cloned()
            .chain(std::iter::once(listener))
            .collect();
        drop(listeners);
        self.active.store(true, Release);
    }

    /// Delivers queued events, one thread at a time and in queue order, holding no lock while
    /// listeners run. If another thread is already delivering, it delivers ours too: it only
    /// stops after finding the queue empty under the outbox lock.
    fn deliver(&self, name: &str) {
        {
            let mut outbox = self.outbox();
            if outbox.delivering || outbox.queue.is_empty() {
                return;
            }
            outbox.delivering = true;
        }
        loop {
            let event = {
                let mut outbox = self.outbox();
                match outbox.queue.pop_front() {
                    Some(event) => event,
                    None => {
                        outbox.delivering = false;
                        return;
                    }
                }
            };
            // No receivers is not an error here.
            let _ = self.stream.send(event);
            let listeners = self
                .listeners
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            for listener in listeners.iter() {
                if catch_unwind(AssertUnwindSafe(|| listener(&event))).is_err() {
                    tracing::warn!(target: "postbox::breaker", breaker = %name, ?event, "a circuit breaker listener panicked");
                }
            }
        }
    }
}

/// How a bounded call ended.
enum Finished<T> {
    Done(T),
    /// The panic's payload.
    Panicked(Box<dyn std::any::Any + Send>),
    TimedOut,
}

pin_project_lite::pin_project! {
    /// Polls a future under `catch_unwind`, and gives up on it after `timeout`. The timer is
    /// armed only if the first poll does not finish the future.
    struct Bounded<F> {
        #[pin]
        future: F,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
    }
}

impl<F> Bounded<F> {
    fn new(future: F, timeout: Duration) -> Self {
        Self {
            future,
            deadline: None,
            timeout,
        }
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Finished<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match catch_unwind(AssertUnwindSafe(|| this.future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => return Poll::Ready(Finished::Done(output)),
            Ok(Poll::Pending) => {}
            Err(payload) => return Poll::Ready(Finished::Panicked(payload)),
        }
        if this.deadline.is_none() {
            this.deadline.set(Some(tokio::time::sleep(*this.timeout)));
        }
        match this.deadline.as_pin_mut().map(|deadline| deadline.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Finished::TimedOut),
            _ => Poll::Pending,
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("non-string panic payload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;
    use tokio::time::advance;

    const CALL_TIMEOUT: Duration = Duration::from_millis(100);
    const RESET: Duration = Duration::from_secs(1);

    type R = Result<u32, BreakerError<&'static str>>;

    fn builder(max_failures: u32) -> CircuitBreakerBuilder {
        CircuitBreaker::builder("test")
            .max_failures(max_failures)
            .call_timeout(CALL_TIMEOUT)
            .reset_timeout(RESET)
    }

    async fn ok(b: &CircuitBreaker) -> R {
        b.call(async { Ok(1) }).await
    }

    async fn fail(b: &CircuitBreaker) -> R {
        b.call(async { Err("down") }).await
    }

    async fn boom() -> Result<u32, &'static str> {
        panic!("kaboom (expected by the test)")
    }

    fn remaining(result: R) -> Duration {
        match result {
            Err(BreakerError::Open { remaining }) => remaining,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// Trips a breaker whose `max_failures` is `n`.
    async fn trip(b: &CircuitBreaker, n: u32) {
        for _ in 0..n {
            assert_eq!(fail(b).await, Err(BreakerError::Inner("down")));
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }

    fn drain(rx: &mut broadcast::Receiver<BreakerEvent>) -> Vec<BreakerEvent> {
        let mut events = Vec::new();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        events
    }

    fn moved(from: BreakerState, to: BreakerState) -> BreakerEvent {
        BreakerEvent::Transition { from, to }
    }

    use BreakerState::{Closed, HalfOpen, Open};
    use CallOutcome::{Failure, Rejected, Success};

    #[tokio::test(start_paused = true)]
    async fn a_closed_breaker_runs_calls_and_stays_closed_on_success() {
        let b = builder(3).build().unwrap();
        for i in 0..10 {
            assert_eq!(b.call(async move { Ok::<_, &str>(i) }).await, Ok(i));
        }
        let stats = b.stats();
        assert_eq!(stats.state, Closed);
        assert_eq!(stats.successes, 10);
        assert_eq!(stats.total_failures(), 0);
        assert_eq!(stats.times_opened, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_trip_the_breaker() {
        let b = builder(3).build().unwrap();
        assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
        assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
        assert_eq!(b.state(), Closed);
        assert_eq!(b.stats().consecutive_failures, 2);
        // The call that trips the breaker still gets its own result.
        assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
        let stats = b.stats();
        assert_eq!(stats.state, Open);
        assert_eq!(stats.times_opened, 1);
        assert_eq!(stats.failures, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count() {
        let b = builder(3).build().unwrap();
        fail(&b).await.unwrap_err();
        fail(&b).await.unwrap_err();
        ok(&b).await.unwrap();
        assert_eq!(b.stats().consecutive_failures, 0);
        fail(&b).await.unwrap_err();
        fail(&b).await.unwrap_err();
        assert_eq!(b.state(), Closed);
        fail(&b).await.unwrap_err();
        assert_eq!(b.state(), Open);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_rejects_at_once_without_running_the_call() {
        let b = builder(1).build().unwrap();
        trip(&b, 1).await;
        advance(Duration::from_millis(300)).await;
        let ran = AtomicBool::new(false);
        let result = b
            .call(async {
                ran.store(true, Relaxed);
                Ok::<u32, &str>(1)
            })
            .await;
        assert_eq!(
            result,
            Err(BreakerError::Open {
                remaining: Duration::from_millis(700)
            })
        );
        assert!(result.unwrap_err().is_rejected());
        assert!(!ran.load(Relaxed), "an open breaker must not run the call");
        assert_eq!(b.stats().rejections, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_half_opens_once_the_reset_timeout_has_passed() {
        let b = builder(1).build().unwrap();
        let mut events = b.subscribe();
        trip(&b, 1).await;
        advance(RESET - Duration::from_millis(1)).await;
        assert_eq!(b.state(), Open);
        assert_eq!(remaining(ok(&b).await), Duration::from_millis(1));
        advance(Duration::from_millis(1)).await;
        // No call needed: `state` notices that the time has passed, and says so.
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(
            drain(&mut events),
            [
                BreakerEvent::Call(Failure),
                moved(Closed, Open),
                BreakerEvent::Call(Rejected),
                moved(Open, HalfOpen),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_one_trial_through() {
        let b = builder(1).build().unwrap();
        trip(&b, 1).await;
        advance(RESET).await;
        let (finish, finished) = oneshot::channel::<Result<u32, &'static str>>();
        let mut trial = Box::pin(b.call(async { finished.await.unwrap() }));
        assert!(poll_once(&mut trial).await.is_pending());
        assert_eq!(b.state(), HalfOpen);
        for _ in 0..3 {
            // Concurrent callers fail fast while the trial runs.
            assert_eq!(remaining(ok(&b).await), Duration::ZERO);
        }
        finish.send(Ok(5)).unwrap();
        assert_eq!(trial.await, Ok(5));
        assert_eq!(b.state(), Closed);
        assert_eq!(ok(&b).await, Ok(1));
        let stats = b.stats();
        assert_eq!(stats.rejections, 3);
        assert_eq!(stats.successes, 2);
    }

    /// Callers on several OS threads arrive together at a breaker whose reset timeout has
    /// passed: exactly one of them runs as the trial, every other one is rejected at once. The
    /// paused clock cannot drive several threads, so this test uses a short real reset timeout
    /// and waits it out (the wait is the point, not a synchronization).
    #[test]
    fn callers_racing_into_half_open_admit_exactly_one_trial() {
        const CALLERS: usize = 8;
        const ROUNDS: u64 = 20;
        const SHORT_RESET: Duration = Duration::from_millis(5);
        let b = CircuitBreaker::builder("race")
            .max_failures(1)
            .call_timeout(Duration::from_secs(60))
            .reset_timeout(SHORT_RESET)
            .build()
            .unwrap();
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        };
        let main = runtime();
        for round in 0..ROUNDS {
            main.block_on(trip(&b, 1));
            std::thread::sleep(SHORT_RESET + Duration::from_millis(1));
            let start = Arc::new(std::sync::Barrier::new(CALLERS));
            let release = Arc::new(tokio::sync::Semaphore::new(0));
            let ran = Arc::new(AtomicUsize::new(0));
            let (results, outcomes) = std::sync::mpsc::channel();
            let callers: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let (b, start, release, ran, results) = (
                        b.clone(),
                        start.clone(),
                        release.clone(),
                        ran.clone(),
                        results.clone(),
                    );
                    std::thread::spawn(move || {
                        let rt = runtime();
                        start.wait();
                        let result: R = rt.block_on(b.call(async {
                            ran.fetch_add(1, SeqCst);
                            release.acquire().await.unwrap().forget();
                            Ok(1)
                        }));
                        let _ = results.send(result);
                    })
                })
                .collect();
            // Everyone but the trial comes back at once; the trial waits for the release.
            let quick: Vec<R> = (1..CALLERS)
                .map_while(|_| outcomes.recv_timeout(Duration::from_secs(10)).ok())
                .collect();
            let trials = ran.load(SeqCst);
            let state = b.state();
            release.add_permits(CALLERS);
            let last: Vec<R> = outcomes.iter().take(CALLERS - quick.len()).collect();
            for caller in callers {
                caller.join().unwrap();
            }
            assert_eq!(trials, 1, "round {round}: trial calls run");
            assert_eq!(quick.len(), CALLERS - 1, "round {round}: {quick:?}");
            assert!(
                quick.iter().all(|r| *r
                    == Err(BreakerError::Open {
                        remaining: Duration::ZERO
                    })),
                "round {round}: {quick:?}"
            );
            assert_eq!(state, HalfOpen, "round {round}");
            assert_eq!(last, [Ok(1)], "round {round}");
            assert_eq!(b.state(), Closed, "round {round}");
        }
        let stats = b.stats();
        assert_eq!(stats.rejections, ROUNDS * (CALLERS as u64 - 1));
        assert_eq!((stats.successes, stats.failures), (ROUNDS, ROUNDS));
        assert_eq!(stats.times_opened, ROUNDS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_trial_closes_and_restores_the_reset_timeout() {
        let b = builder(1).exponential_backoff(2.0).build().unwrap();
        trip(&b, 1).await;
        advance(RESET).await;
        fail(&b).await.unwrap_err();
        assert_eq!(b.stats().reset_timeout, 2 * RESET);
        advance(2 * RESET).await;
        assert_eq!(ok(&b).await, Ok(1));
        let stats = b.stats();
        assert_eq!(stats.state, Closed);
        assert_eq!(stats.reset_timeout, RESET);
        assert_eq!(stats.consecutive_failures, 0);
        trip(&b, 1).await;
        assert_eq!(remaining(ok(&b).await), RESET);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trials_reopen_with_backoff_growing_up_to_the_cap() {
        let b = builder(1)
            .exponential_backoff(2.0)
            .max_reset_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        trip(&b, 1).await;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let wait = remaining(ok(&b).await);
            waits.push(wait.as_secs());
            advance(wait).await;
            assert_eq!(b.state(), HalfOpen);
            assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
            assert_eq!(b.state(), Open);
        }
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(b.stats().times_opened, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn without_backoff_the_reset_timeout_stays_the_same() {
        let b = builder(1).build().unwrap();
        trip(&b, 1).await;
        for _ in 0..3 {
            assert_eq!(remaining(ok(&b).await), RESET);
            advance(RESET).await;
            fail(&b).await.unwrap_err();
        }
        assert_eq!(b.stats().reset_timeout, RESET);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stretches_open_periods_within_bounds() {
        let b = builder(1)
            .exponential_backoff(2.0)
            .max_reset_timeout(Duration::from_secs(4))
            .random_factor(0.5)
            .build()
            .unwrap();
        let within = |wait: Duration, base: Duration| wait >= base && wait <= base.mul_f64(1.5);
        let mut first_waits = Vec::new();
        for _ in 0..40 {
            trip(&b, 1).await;
            // Bases 1 s, 2 s, 4 s (the cap), 4 s: jitter applies on top of the capped base.
            for base in [1, 2, 4, 4].map(Duration::from_secs) {
                let wait = remaining(ok(&b).await);
                assert!(within(wait, base), "wait {wait:?} for base {base:?}");
                if base == RESET {
                    first_waits.push(wait);
                }
                assert_eq!(b.stats().reset_timeout, base);
                advance(wait).await;
                fail(&b).await.unwrap_err();
            }
            advance(Duration::from_secs(6)).await;
            ok(&b).await.unwrap();
            assert_eq!(b.state(), Closed);
        }
        first_waits.dedup();
        assert!(first_waits.len() > 1, "jitter must vary the open periods");
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_slower_than_the_call_timeout_is_dropped_and_counts_as_failure() {
        let b = builder(2).build().unwrap();
        // Just in time: a success.
        let quick = b.call(async {
            tokio::time::sleep(CALL_TIMEOUT - Duration::from_millis(1)).await;
            Ok::<u32, &str>(1)
        });
        assert_eq!(quick.await, Ok(1));

        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let started = Instant::now();
        let slow: R = b
            .call(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok(1)
            })
            .await;
        assert_eq!(slow, Err(BreakerError::Timeout(CALL_TIMEOUT)));
        assert_eq!(started.elapsed(), CALL_TIMEOUT);
        assert!(dropped.load(Relaxed), "the slow call must be dropped");
        let stats = b.stats();
        assert_eq!((stats.timeouts, stats.consecutive_failures), (1, 1));

        let never = b.call(std::future::pending::<Result<u32, &str>>());
        assert_eq!(never.await, Err(BreakerError::Timeout(CALL_TIMEOUT)));
        assert_eq!(b.state(), Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_call_counts_as_failure_and_does_not_unwind() {
        let b = builder(3).build().unwrap();
        assert_eq!(
            b.call(boom()).await,
            Err(BreakerError::Panicked(
                "kaboom (expected by the test)".into()
            ))
        );
        // A panic on a later poll, with a formatted message.
        let later: R = b
            .call(async {
                tokio::task::yield_now().await;
                panic!("kaboom #{} (expected by the test)", 2)
            })
            .await;
        assert_eq!(
            later,
            Err(BreakerError::Panicked(
                "kaboom #2 (expected by the test)".into()
            ))
        );
        let stats = b.stats();
        assert_eq!((stats.panics, stats.consecutive_failures), (2, 2));
        b.call(boom()).await.unwrap_err();
        assert_eq!(b.state(), Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_predicate_decides_what_counts_as_failure() {
        let b = builder(1).build().unwrap();
        // An `Err` that is an answer, not an outage.
        for _ in 0..5 {
            let result = b
                .call_with(
                    async { Err::<u32, _>("not found") },
                    |r| matches!(r, Err(e) if *e != "not found"),
                )
                .await;
            assert_eq!(result, Err(BreakerError::Inner("not found")));
        }
        assert_eq!(b.state(), Closed);
        assert_eq!(b.stats().successes, 5);
        // An `Ok` that is an outage; the caller still gets it.
        let result = b
            .call_with(
                async { Ok::<u16, &str>(503) },
                |r| matches!(r, Ok(code) if *code >= 500),
            )
            .await;
        assert_eq!(result, Ok(503));
        assert_eq!(b.state(), Open);
        assert_eq!(b.stats().failures, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trial_releases_the_half_open_slot() {
        let b = builder(1).build().unwrap();
        trip(&b, 1).await;
        advance(RESET).await;
        let mut trial = Box::pin(b.call(std::future::pending::<Result<u32, &str>>()));
        assert!(poll_once(&mut trial).await.is_pending());
        assert_eq!(remaining(ok(&b).await), Duration::ZERO);
        drop(trial);
        let stats = b.stats();
        assert_eq!((stats.state, stats.cancelled), (HalfOpen, 1));
        // The next caller becomes the trial.
        assert_eq!(ok(&b).await, Ok(1));
        assert_eq!(b.state(), Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_from_an_earlier_period_are_counted_but_move_nothing() {
        let b = builder(1)
            .call_timeout(Duration::from_secs(3600))
            .build()
            .unwrap();
        // A slow call admitted while closed...
        let (finish_slow, slow_result) = oneshot::channel::<Result<u32, &'static str>>();
        let mut slow = Box::pin(b.call(async { slow_result.await.unwrap() }));
        assert!(poll_once(&mut slow).await.is_pending());
        trip(&b, 1).await;
        advance(RESET).await;
        let (finish_trial, trial_result) = oneshot::channel::<Result<u32, &'static str>>();
        let mut trial = Box::pin(b.call(async { trial_result.await.unwrap() }));
        assert!(poll_once(&mut trial).await.is_pending());
        // ...succeeds while the trial runs: it must not close the breaker.
        finish_slow.send(Ok(1)).unwrap();
        assert_eq!(slow.await, Ok(1));
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(remaining(ok(&b).await), Duration::ZERO);
        // The trial decides.
        finish_trial.send(Err("still down")).unwrap();
        assert_eq!(trial.await, Err(BreakerError::Inner("still down")));
        let stats = b.stats();
        assert_eq!(stats.state, Open);
        assert_eq!(stats.successes, 1, "the late success is still counted");
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_published_in_order() {
        let b = builder(2).build().unwrap();
        let mut events = b.subscribe();
        ok(&b).await.unwrap();
        fail(&b).await.unwrap_err();
        fail(&b).await.unwrap_err();
        ok(&b).await.unwrap_err();
        advance(RESET).await;
        fail(&b).await.unwrap_err();
        advance(RESET).await;
        ok(&b).await.unwrap();
        let timed_out: R = b.call(std::future::pending()).await;
        timed_out.unwrap_err();
        b.call(boom()).await.unwrap_err();
        assert_eq!(
            drain(&mut events),
            [
                BreakerEvent::Call(Success),
                BreakerEvent::Call(Failure),
                BreakerEvent::Call(Failure),
                moved(Closed, Open),
                BreakerEvent::Call(Rejected),
                moved(Open, HalfOpen),
                BreakerEvent::Call(Failure),
                moved(HalfOpen, Open),
                moved(Open, HalfOpen),
                BreakerEvent::Call(Success),
                moved(HalfOpen, Closed),
                BreakerEvent::Call(CallOutcome::Timeout),
                BreakerEvent::Call(CallOutcome::Panicked),
                moved(Closed, Open),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn listeners_see_transitions_in_order_and_may_call_back_into_the_breaker() {
        let from_builder = Arc::new(Mutex::new(Vec::new()));
        let log = from_builder.clone();
        let b = builder(1)
            .on_transition(move |from, to| log.lock().unwrap().push((from, to)))
            .build()
            .unwrap();
        // A listener added later, which reads the breaker from inside the callback.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, breaker) = (seen.clone(), b.clone());
        b.on_event(move |event| {
            if let BreakerEvent::Transition { to, .. } = *event {
                log.lock()
                    .unwrap()
                    .push((to, breaker.state(), breaker.stats().state));
            }
        });
        trip(&b, 1).await;
        advance(RESET).await;
        ok(&b).await.unwrap();
        assert_eq!(
            *from_builder.lock().unwrap(),
            [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (Open, Open, Open),
                (HalfOpen, HalfOpen, HalfOpen),
                (Closed, Closed, Closed)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_listener_is_ignored() {
        let b = builder(1)
            .on_event(|_| panic!("listener panics (expected by the test)"))
            .build()
            .unwrap();
        let transitions = Arc::new(AtomicUsize::new(0));
        let count = transitions.clone();
        b.on_transition(move |_, _| {
            count.fetch_add(1, Relaxed);
        });
        let mut events = b.subscribe();
        trip(&b, 1).await;
        advance(RESET).await;
        ok(&b).await.unwrap();
        assert_eq!(transitions.load(Relaxed), 3);
        assert_eq!(drain(&mut events).len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn counters_are_exact() {
        let b = builder(3).build().unwrap();
        for _ in 0..4 {
            ok(&b).await.unwrap();
        }
        fail(&b).await.unwrap_err();
        let timed_out: R = b.call(std::future::pending()).await;
        timed_out.unwrap_err();
        b.call(boom()).await.unwrap_err();
        ok(&b).await.unwrap_err();
        ok(&b).await.unwrap_err();
        advance(RESET).await;
        drop(Box::pin(ok(&b))); // never polled: not admitted, not counted
        let mut cancelled = Box::pin(b.call(std::future::pending::<Result<u32, &str>>()));
        assert!(poll_once(&mut cancelled).await.is_pending());
        drop(cancelled);
        ok(&b).await.unwrap();
        let judged = b.call_with(async { Ok::<u32, &str>(500) }, |_| true).await;
        assert_eq!(judged, Ok(500));
        assert_eq!(
            b.stats(),
            BreakerStats {
                state: Closed,
                successes: 5,
                failures: 2,
                timeouts: 1,
                panics: 1,
                rejections: 2,
                cancelled: 1,
                ignored: 0,
                times_opened: 1,
                consecutive_failures: 1,
                reset_timeout: RESET,
                events_dropped: 0,
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_keep_exact_counts_and_every_event_is_delivered_or_counted() {
        const TASKS: u64 = 4;
        const CALLS: u64 = 2_000;
        let delivered = Arc::new(AtomicU64::new(0));
        let count = delivered.clone();
        let b = builder(3)
            .on_event(move |_| {
                count.fetch_add(1, Relaxed);
            })
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move {
                    for _ in 0..CALLS {
                        ok(&b).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let stats = b.stats();
        assert_eq!(stats.successes, TASKS * CALLS);
        // Each outcome was delivered exactly once, or dropped (and counted) when the delivering
        // thread fell too far behind the others.
        assert_eq!(
            delivered.load(Relaxed) + stats.events_dropped,
            TASKS * CALLS
        );
    }

    #[tokio::test(start_paused = true)]
    async fn listeners_falling_behind_lose_call_outcomes_but_never_transitions() {
        const BURST: u64 = 2_000;
        let b = builder(1).build().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let (log, breaker) = (delivered.clone(), b.clone());
        b.on_event(move |event| {
            let first = {
                let mut log = log.lock().unwrap();
                log.push(*event);
                log.len() == 1
            };
            if first {
                // Calls made while this listener runs only queue their events: a burst
                // larger than the queue, then a trip.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                for _ in 0..BURST {
                    let mut call = std::pin::pin!(breaker.call(async { Ok::<u32, &str>(1) }));
                    assert!(call.as_mut().poll(&mut cx).is_ready());
                }
                let mut call = std::pin::pin!(breaker.call(async { Err::<u32, _>("down") }));
                assert!(call.as_mut().poll(&mut cx).is_ready());
            }
        });
        ok(&b).await.unwrap();
        let delivered = delivered.lock().unwrap();
        let capacity = EVENT_CAPACITY as u64;
        assert_eq!(delivered.len() as u64, 1 + capacity + 1);
        assert_eq!(delivered.last(), Some(&moved(Closed, Open)));
        let stats = b.stats();
        assert_eq!(stats.events_dropped, BURST + 1 - capacity);
        assert_eq!((stats.successes, stats.failures), (BURST + 1, 1));
    }

    #[test]
    fn build_rejects_invalid_settings() {
        use BreakerConfigError::*;
        let err = |b: CircuitBreakerBuilder| b.build().unwrap_err();
        assert_eq!(err(builder(0)), ZeroMaxFailures);
        assert_eq!(
            err(builder(1).call_timeout(Duration::ZERO)),
            ZeroCallTimeout
        );
        assert_eq!(
            err(builder(1).reset_timeout(Duration::ZERO)),
            ZeroResetTimeout
        );
        assert_eq!(
            err(builder(1).exponential_backoff(0.5)),
            InvalidBackoffFactor(0.5)
        );
        assert!(matches!(
            err(builder(1).exponential_backoff(f64::NAN)),
            InvalidBackoffFactor(x) if x.is_nan()
        ));
        assert_eq!(
            err(builder(1).exponential_backoff(f64::INFINITY)),
            InvalidBackoffFactor(f64::INFINITY)
        );
        assert_eq!(err(builder(1).random_factor(1.5)), InvalidRandomFactor(1.5));
        assert_eq!(
            err(builder(1).random_factor(-0.1)),
            InvalidRandomFactor(-0.1)
        );
        assert_eq!(
            err(builder(1).max_reset_timeout(Duration::from_millis(10))),
            MaxResetTimeoutTooShort {
                reset_timeout: RESET,
                max_reset_timeout: Duration::from_millis(10)
            }
        );
        assert!(err(builder(1).random_factor(2.0))
            .to_string()
            .contains("random_factor"));
        let b = CircuitBreaker::builder("defaults").build().unwrap();
        assert_eq!(b.name(), "defaults");
        assert_eq!(b.call_timeout(), Duration::from_secs(10));
        assert_eq!(b.stats().reset_timeout, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_breaker_that_is_send_and_sync() {
        fn shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let b = builder(1).build().unwrap();
        shareable(&b);
        send(&b.call(async { Ok::<u32, &str>(1) }));
        let clone = b.clone();
        fail(&clone).await.unwrap_err();
        assert_eq!(b.state(), Open);
        assert!(format!("{b:?}").contains("Open"));
    }
}

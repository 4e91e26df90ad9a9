//! Circuit breaker: [`CircuitBreaker`] (its docs state the semantics), its builder, events,
//! errors and guarded actor references.
//!
//! `mod.rs` holds the handle and the public value types; `machine.rs` the state machine behind
//! one lock, with its state word mirrored in an atomic; `events.rs` the delivery of events to
//! subscribers and listeners; `config.rs` the builder and its checks; `bounded.rs` a call under
//! the call timeout and `catch_unwind`; `guard.rs` guarded actor references; `tests.rs` the
//! unit tests.

mod bounded;
mod config;
mod events;
mod guard;
mod machine;
#[cfg(test)]
mod tests;

pub use config::{BreakerConfigError, CircuitBreakerBuilder};
pub use events::BreakerEvent;
pub use guard::{
    GuardedAskError, GuardedRecipient, GuardedRef, GuardedSendError, GuardedTrySendError,
};

use crate::actor::{Actor, Message};
use crate::actor_ref::{ActorRef, Recipient};
use bounded::{panic_message, Bounded, Finished};
use config::Config;
use events::transition_listener;
use machine::Inner;
use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

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

/// A circuit breaker: fails calls to a dependency fast while it is down, and lets them through
/// again once it has recovered, without anyone resetting it.
///
/// It wraps calls to one dependency (an async call, or an actor through
/// [`GuardedRef`] / [`GuardedRecipient`]) and follows the state machine of Akka's
/// `CircuitBreaker`:
///
/// ```text
///              max_failures consecutive failures
///   Closed ─────────────────────────────────────────► Open ◄────────────────┐
///     ▲                                                 │                   │ the trial fails:
///     │ the trial                     reset timeout     │                   │ reset timeout
///     │ succeeds                      has passed        ▼                   │ × backoff factor
///     └──────────────────────────────────────────── HalfOpen ───────────────┘
/// ```
///
/// * **Closed**: calls run. The breaker counts *consecutive* failures; any success resets the
///   count to zero. When the count reaches `max_failures`, the breaker trips to Open.
/// * **Open**: calls fail at once with [`BreakerError::Open`], without running, carrying the
///   time left until the breaker will let a trial call through. Nothing waits on a slow or dead
///   dependency, and the dependency gets room to recover.
/// * **HalfOpen**: once the reset timeout has passed (checked lazily, on the next call or
///   [`state`](CircuitBreaker::state)), exactly one *trial* call runs; callers that arrive
///   while it runs are rejected with `Open { remaining: 0 }`. If the trial succeeds, the
///   breaker closes and its reset timeout returns to the configured value. If it fails, the
///   breaker opens again, for the previous reset timeout multiplied by the
///   `exponential_backoff` factor (default 1.0: no growth), capped at `max_reset_timeout`. A
///   trial whose caller drops it gives no verdict: the slot is released and the next caller
///   becomes the trial.
///
/// Each Open period may be stretched by a random fraction of up to `random_factor` (jitter, so
/// that many breakers opened by one outage do not probe it in lockstep). The cap applies to the
/// reset timeout before jitter.
///
/// Guard actors with [`guard`](Self::guard) and [`guard_recipient`](Self::guard_recipient):
/// their sends go through the breaker and fail fast, handing the message back, while it is
/// open. A breaker is `Send + Sync`, so it can be stored in actors, their `Props` and statics.
///
/// # What counts as a failure
///
/// * An `Err` returned by the call ([`call`](CircuitBreaker::call)), or whatever the
///   predicate given to [`call_with`](CircuitBreaker::call_with) says: an `Err` that is not a
///   failure (say, "not found") or an `Ok` that is (say, an HTTP 503). The caller gets the
///   call's result either way; the predicate only decides what the breaker counts.
/// * A call that does not finish within `call_timeout`: it is dropped there and the caller
///   gets [`BreakerError::Timeout`].
/// * A panic inside the call: it is caught (each poll runs under `catch_unwind`), counted, and
///   reported as [`BreakerError::Panicked`]; it does not unwind into the caller.
///
/// Results of calls admitted before the breaker changed state (a slow call that started while
/// Closed and finished after the breaker opened) are counted in the statistics but do not move
/// the state machine: only calls of the current state's period do.
///
/// # Observing
///
/// [`state`](CircuitBreaker::state) and [`stats`](CircuitBreaker::stats) read the state and
/// exact counters. [`subscribe`](CircuitBreaker::subscribe) streams [`BreakerEvent`]s: each
/// state transition and each call's [`CallOutcome`]. Listeners registered with
/// [`on_event`](CircuitBreaker::on_event) or [`on_transition`](CircuitBreaker::on_transition)
/// (or on the builder) are called with the same events. Events are delivered in the order the
/// breaker produced them, by one thread at a time, and never while a lock of the breaker is
/// held, so a listener may call back into the breaker; it should be quick, since it runs on a
/// caller's thread. A panicking listener is logged and otherwise ignored. The delivery queue
/// is bounded: if listeners fall more than 1024 events behind, further call outcomes are
/// dropped for them and counted (transitions are never dropped). For exact numbers, read
/// `stats`; events are for reacting to transitions and for sampling outcomes. Transitions are
/// also logged through `tracing` (target `postbox::breaker`).
///
/// # Cost
///
/// The breaker is an `Arc`, cheap to clone and to share between tasks. On the Closed path, a
/// successful call costs three atomic loads and one counter increment: it takes no lock,
/// reads no clock and allocates nothing, unless someone observes the events (then each call's
/// outcome is queued for delivery, under a short lock). The call's deadline timer is only
/// armed if the call does not finish on its first poll. The Open and HalfOpen paths take a
/// short lock.
///
/// ```
/// use postbox::{BreakerError, BreakerState, CircuitBreaker};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::builder("payments")
///     .max_failures(2)
///     .call_timeout(Duration::from_secs(1))
///     .reset_timeout(Duration::from_secs(30))
///     .build()?;
///
/// for _ in 0..2 {
///     let result = breaker.call(async { Err::<u32, _>("503") }).await;
///     assert_eq!(result, Err(BreakerError::Inner("503")));
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
///
/// // Open: the call is not made, and the caller learns when to come back.
/// match breaker.call(async { Ok::<u32, &str>(42) }).await {
///     Err(BreakerError::Open { remaining }) => assert!(remaining <= Duration::from_secs(30)),
///     other => panic!("expected a rejection, got {other:?}"),
/// }
/// assert_eq!(breaker.stats().rejections, 1);
/// # Ok(())
/// # }
/// ```
///
/// A failure predicate (a 404 is an answer, not an outage), backoff and jitter:
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
        self.inner.state()
    }

    /// A snapshot of the counters and the state.
    pub fn stats(&self) -> BreakerStats {
        self.inner.stats()
    }

    /// A stream of the events published from now on: transitions and call outcomes, in order.
    ///
    /// A subscriber that falls more than 1024 events behind is told how many it missed
    /// (`RecvError::Lagged`); the counters of [`stats`](Self::stats) stay exact regardless.
    /// Once a breaker has been subscribed to, it queues every call's outcome for delivery,
    /// even after the receivers are dropped.
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.inner.observers.subscribe()
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
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.inner.mirrored_state())
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

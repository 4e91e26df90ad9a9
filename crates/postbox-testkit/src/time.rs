//! Paused time: tests of timeouts, backoff and breakers that run in microseconds and never
//! depend on the machine's speed.
//!
//! Everything in postbox measures time with Tokio's clock (ask deadlines, backoff delays,
//! breaker reset timeouts, the probe's and [`within`](crate::within)'s deadlines). Tokio's
//! `test-util` can pause that clock; then, whenever every task of the runtime is idle, the
//! clock **jumps to the next timer** (auto-advance). So a test body that waits 30 s for a
//! backoff takes no real time, and the order of events is the order of their deadlines,
//! exactly, whatever the load of the machine.
//!
//! - [`paused_runtime`] builds a current-thread runtime whose clock starts paused (the
//!   clock can only be paused on a current-thread runtime); [`run_paused`] runs one test body
//!   on a fresh one. `#[tokio::test(start_paused = true)]` does the same for a whole test.
//! - [`advance_until`] moves a paused clock forward in fixed steps until a condition holds,
//!   and fails once a given amount of virtual time has passed without it: "the breaker is
//!   half-open again within 5 s of virtual time, checked every 100 ms".
//!
//! What a paused clock does not cover: real I/O (sockets, processes) and threads outside the
//! runtime (dispatchers, blocking actors) do not wait for the virtual clock, and the clock
//! may jump past them while they work. Test those on a real clock with
//! [`until`](crate::until).
//!
//! ```
//! use postbox_testkit::time::{advance_until, run_paused};
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! run_paused(async {
//!     let started = Instant::now();
//!     let timer = tokio::spawn(tokio::time::sleep(Duration::from_secs(3590)));
//!     // An hour of virtual time, checked every minute: takes microseconds. (At 3600 s, the
//!     // first check after the timer fired.)
//!     advance_until(Duration::from_secs(60), Duration::from_secs(7200), "the timer", || {
//!         timer.is_finished()
//!     })
//!     .await;
//!     assert_eq!(started.elapsed(), Duration::from_secs(3600));
//! });
//! ```

use crate::wait::Outcome;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::time::Duration;
use tokio::time::Instant;

/// A current-thread runtime with every driver enabled and its clock paused from the start:
/// it auto-advances to the next timer whenever all its tasks are idle.
///
/// Panics if the runtime cannot be built (the process is out of file descriptors).
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap_or_else(|error| panic!("cannot build a paused runtime: {error}"))
}

/// Runs `test` to completion on a fresh [`paused_runtime`] and returns its output.
///
/// For use from a plain `#[test]` (not from inside a runtime: Tokio refuses to block a thread
/// that drives one).
pub fn run_paused<F: Future>(test: F) -> F::Output {
    paused_runtime().block_on(test)
}

/// Moves a paused clock forward by `step` at a time until `condition` holds (see
/// [`Outcome`]), and returns its value; panics once `limit` of virtual time has passed
/// without it, naming `what`, the virtual time spent and the caller's location.
///
/// The condition is checked first at once, then after each step. A step is a `sleep(step)`:
/// on a paused clock the runtime first runs every task that can run, and then jumps from
/// timer to timer up to the end of the step, running the tasks each one wakes — so when the
/// condition is checked, everything due before that instant has happened, in deadline order
/// (what is due at that very instant may or may not have: pick steps that do not fall on the
/// deadlines under test). On a clock that is not paused the steps are real sleeps (slow, but
/// correct).
#[track_caller]
pub fn advance_until<O: Outcome>(
    step: Duration,
    limit: Duration,
    what: impl fmt::Display,
    mut condition: impl FnMut() -> O,
) -> impl Future<Output = O::Value> {
    let at = Location::caller();
    assert!(!step.is_zero(), "advance_until: the step must not be zero");
    async move {
        let started = Instant::now();
        let mut last_reason = None;
        loop {
            match condition().check() {
                Ok(value) => return value,
                Err(reason) => last_reason = reason.or(last_reason),
            }
            let spent = started.elapsed();
            if spent >= limit {
                let last = last_reason
                    .map(|reason| format!("last: {reason}; "))
                    .unwrap_or_default();
                panic!(
                    "advance_until: {what} did not happen within {limit:?} of virtual time \
                     (advanced {spent:?} in steps of {step:?}; {last}waited at {at})"
                );
            }
            tokio::time::sleep(step.min(limit - spent)).await;
        }
    }
}

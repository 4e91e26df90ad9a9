//! Bounded waits: [`within`] a deadline, [`until`] a condition holds.
//!
//! A test that waits for something — a reply, a message, a state — must stop by itself when
//! it never comes, and say what it was waiting for. These helpers are hang guards, not delays:
//! they return as soon as the awaited thing happens, and only a failing test ever waits out a
//! whole deadline.
//!
//! - [`within(limit, future)`](within) awaits `future` for at most `limit`, then panics with
//!   the limit and the caller's source location.
//! - [`until(limit, what, condition)`](until) checks `condition` now and then again with a
//!   short backoff (1 ms, doubling, at most 20 ms between checks) until it holds; it panics
//!   after `limit` with `what`, the caller's location, how many checks ran, and the last
//!   reason the condition gave (for conditions that return a `Result`).
//!   [`until_async`] is the same for a condition that has to `.await`.
//!
//! A condition can answer in three ways ([`Outcome`]): a `bool`; an `Option<T>` (`Some(value)`
//! ends the wait and is returned); or a `Result<T, E>` (`Ok(value)` ends the wait, the last
//! `Err` is quoted in the failure message).
//!
//! All deadlines are measured on Tokio's clock, so on a paused clock (see
//! [`time`](crate::time)) they are virtual time and a hang fails at once instead of after
//! real seconds. [`PATIENCE`] is the deadline the project's own tests use when nothing
//! specific is awaited: generous enough for a loaded two-core CI machine.
//!
//! ```
//! use postbox_testkit::{until, within, PATIENCE};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let done = Arc::new(AtomicUsize::new(0));
//! let worker = tokio::spawn({
//!     let done = done.clone();
//!     async move { done.store(3, Ordering::Relaxed); "finished" }
//! });
//! assert_eq!(within(PATIENCE, worker).await.unwrap(), "finished");
//! until(PATIENCE, "three items done", || done.load(Ordering::Relaxed) == 3).await;
//! # }
//! ```

use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::Location;
use std::time::Duration;
use tokio::time::Instant;

/// The hang guard the project's tests use by default: 10 s. Long enough for a loaded CI
/// machine, short enough that a hung test fails long before CI's own timeout.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The first pause between two checks of an [`until`] condition; it doubles up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
/// The longest pause between two checks of an [`until`] condition.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// Awaits `future` for at most `limit`; panics (failing the test) if it does not finish in
/// time, naming the limit and where `within` was called.
///
/// ```should_panic
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// // Panics: "within: not finished after 1s (waited at src/…:…)".
/// postbox_testkit::within(Duration::from_secs(1), std::future::pending::<()>()).await;
/// # }
/// ```
#[track_caller]
pub fn within<F: IntoFuture>(limit: Duration, future: F) -> impl Future<Output = F::Output> {
    let at = Location::caller();
    let future = future.into_future();
    async move {
        match tokio::time::timeout(limit, future).await {
            Ok(output) => output,
            Err(_) => panic!("within: not finished after {limit:?} (waited at {at})"),
        }
    }
}

/// What a condition of [`until`] answers: whether it holds, and with what value.
///
/// Implemented for `bool` (value `()`), `Option<T>` (`Some(value)` holds) and `Result<T, E>`
/// (`Ok(value)` holds; the last `Err` is quoted in the failure message).
pub trait Outcome {
    /// What the wait returns once the condition holds.
    type Value;

    /// `Ok(value)` if the condition holds; otherwise `Err` with what to report should the
    /// wait fail (`None`: nothing to add).
    fn check(self) -> Result<Self::Value, Option<String>>;
}

impl Outcome for bool {
    type Value = ();

    fn check(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;

    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: fmt::Debug> Outcome for Result<T, E> {
    type Value = T;

    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|error| Some(format!("{error:?}")))
    }
}

/// Checks `condition` until it holds (see [`Outcome`]) and returns its value; panics after
/// `limit`, naming `what`, the caller's location, the number of checks and the condition's
/// last reason.
///
/// The first check runs at once; then one every 1 ms, doubling up to 20 ms. Prefer awaiting an
/// event (a message, a reply, a notification) where there is one; `until` is for state that
/// announces nothing, such as a mailbox depth or a counter.
#[track_caller]
pub fn until<O: Outcome>(
    limit: Duration,
    what: impl fmt::Display,
    mut condition: impl FnMut() -> O,
) -> impl Future<Output = O::Value> {
    let at = Location::caller();
    async move {
        let mut poll = Poll::new(limit);
        loop {
            match condition().check() {
                Ok(value) => return value,
                Err(reason) => poll.failed(reason),
            }
            poll.pause(&what, at).await;
        }
    }
}

/// [`until`] for a condition that has to `.await` (an ask, a lookup, a query of another
/// process): the same backoff and the same failure message. The limit also bounds each
/// check: a check still running when it runs out fails the wait.
#[track_caller]
pub fn until_async<O: Outcome>(
    limit: Duration,
    what: impl fmt::Display,
    mut condition: impl AsyncFnMut() -> O,
) -> impl Future<Output = O::Value> {
    let at = Location::caller();
    async move {
        let mut poll = Poll::new(limit);
        loop {
            match tokio::time::timeout_at(poll.deadline, condition()).await {
                Ok(outcome) => match outcome.check() {
                    Ok(value) => return value,
                    Err(reason) => poll.failed(reason),
                },
                Err(_) => poll.failed(Some("the last check itself did not finish".into())),
            }
            poll.pause(&what, at).await;
        }
    }
}

/// The bookkeeping of one `until`: deadline, backoff, checks, last reason.
struct Poll {
    limit: Duration,
    deadline: Instant,
    backoff: Duration,
    checks: u64,
    last_reason: Option<String>,
}

impl Poll {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            deadline: Instant::now() + limit,
            backoff: FIRST_BACKOFF,
            checks: 0,
            last_reason: None,
        }
    }

    fn failed(&mut self, reason: Option<String>) {
        self.checks += 1;
        if reason.is_some() {
            self.last_reason = reason;
        }
    }

    /// Waits before the next check, or panics if the deadline has passed.
    async fn pause(&mut self, what: &impl fmt::Display, at: &Location<'_>) {
        let now = Instant::now();
        if now >= self.deadline {
            let Poll {
                limit,
                checks,
                last_reason,
                ..
            } = self;
            match last_reason {
                Some(reason) => panic!(
                    "until: {what} did not happen within {limit:?} \
                     ({checks} checks, last: {reason}; waited at {at})"
                ),
                None => panic!(
                    "until: {what} did not happen within {limit:?} ({checks} checks; waited at {at})"
                ),
            }
        }
        tokio::time::sleep_until((now + self.backoff).min(self.deadline)).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

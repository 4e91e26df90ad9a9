//! User code — handlers, lifecycle hooks, their destructors — polled under `catch_unwind`
//! and given up at the next pending poll once an interrupt (kill, abort) is set.

use super::ActorConsumer;
use crate::actor::Actor;
use crate::ask::with_abandon_reason;
use crate::error::AskError;
use crate::lifecycle::Failure;
use crate::slot::{ParkedHandler, RunningHandler};
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

/// How user code ended.
pub(super) enum Outcome<T> {
    Done(T),
    Panicked(Failure),
    Interrupted,
}

/// Result of polling a handler in place.
pub(super) enum FirstPoll {
    Finished(Outcome<()>),
    Parked(ParkedHandler),
}

/// What one poll of user code came to.
enum Polled<T> {
    Ready(T),
    /// Pending, and no interrupt is set: poll again when woken.
    Pending,
    /// Panicked, or pending while an interrupt is set: the future is to be dropped, with
    /// `answer` for any asker whose reply handle it owns.
    GiveUp {
        outcome: Outcome<T>,
        answer: AskError,
    },
}

/// Polls user code once under `catch_unwind`. A pending poll also registers the task for
/// interrupts, and gives up if one is set.
#[inline(always)]
fn poll_once<T, A: Actor>(
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    cx: &mut Context<'_>,
    consumer: &ActorConsumer<A>,
) -> Polled<T> {
    match catch_unwind(AssertUnwindSafe(|| poll(cx))) {
        Ok(Poll::Ready(value)) => Polled::Ready(value),
        Ok(Poll::Pending) => {
            consumer.on_user_code_pending(cx);
            if consumer.interrupts() == 0 {
                return Polled::Pending;
            }
            Polled::GiveUp {
                outcome: Outcome::Interrupted,
                answer: AskError::Stopped,
            }
        }
        Err(panic) => Polled::GiveUp {
            outcome: Outcome::Panicked(Failure::from_panic(&*panic)),
            answer: AskError::Panicked,
        },
    }
}

/// Drops a future that was given up. Its destructor is user code too, so it runs under
/// `catch_unwind`; any asker whose reply handle it owned gets `answer`.
fn drop_given_up(answer: AskError, drop: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(|| with_abandon_reason(answer, drop)));
}

/// Polls a handler once under `catch_unwind`. Finished, panicked or interrupted (kill, abort),
/// the future is dropped here — in the last two cases with the matching answer for any asker
/// whose reply handle it owned. Otherwise it is parked in its slot.
pub(super) fn first_poll<A: Actor>(
    mut running: RunningHandler<'_>,
    cx: &mut Context<'_>,
    consumer: &ActorConsumer<A>,
) -> FirstPoll {
    match poll_once(|cx| Pin::new(&mut running).poll(cx), cx, consumer) {
        Polled::Ready(()) => {
            drop(running);
            FirstPoll::Finished(Outcome::Done(()))
        }
        Polled::Pending => FirstPoll::Parked(running.park()),
        Polled::GiveUp { outcome, answer } => {
            drop_given_up(answer, || drop(running));
            FirstPoll::Finished(outcome)
        }
    }
}

/// Runs a lifecycle hook (or any user future) to its end under [`poll_once`]. On completion,
/// a panic or an interrupt, the future is dropped at once — in the last two cases with the
/// matching answer for any asker whose reply handle it owned.
pub(super) async fn guarded<F: Future, A: Actor>(
    future: F,
    consumer: &ActorConsumer<A>,
) -> Outcome<F::Output> {
    let mut future = pin!(Some(future));
    poll_fn(|cx| {
        let Some(running) = future.as_mut().as_pin_mut() else {
            return Poll::Ready(Outcome::Interrupted);
        };
        match poll_once(|cx| running.poll(cx), cx, consumer) {
            Polled::Ready(value) => {
                future.set(None);
                Poll::Ready(Outcome::Done(value))
            }
            Polled::Pending => Poll::Pending,
            Polled::GiveUp { outcome, answer } => {
                drop_given_up(answer, || future.set(None));
                Poll::Ready(outcome)
            }
        }
    })
    .await
}

/// Drops an actor instance, containing a panic in its destructor.
pub(super) fn drop_quietly<A>(actor: A) {
    if catch_unwind(AssertUnwindSafe(move || drop(actor))).is_err() {
        tracing::warn!(target: "postbox::actor", "an actor's destructor panicked");
    }
}

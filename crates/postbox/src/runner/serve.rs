//! The message loop of one instance, and the one place where a message meets its handler.

use super::receive::{Item, Listen};
use super::user_code::{first_poll, FirstPoll, Outcome};
use super::{cold, End, Runner};
use crate::actor::Actor;
use crate::cell::{ActorCell, Signal, Supervision, SystemSignal};
use crate::context::Request;
use crate::letter::Letter;
use crate::lifecycle::{ExitReason, Failure};
use crate::mailbox::{Received, INTERRUPT_ABORT, INTERRUPT_KILL};
use crate::slot::ParkedHandler;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};
use std::time::Instant;

/// What `poll_batch` hands back to the async part of the loop.
enum Batch<A: Actor> {
    /// Something other than a message (boxed: rare, and kept small in the task's state).
    Other(Box<Item<A>>),
    /// A handler is waiting; its future is parked in the slot.
    Parked(Parked),
    /// The instance ends.
    End(End),
}

/// A handler that has to wait: its future, parked in the slot, and its timing sample.
struct Parked {
    handler: ParkedHandler,
    started: Option<Instant>,
}

/// How far a message got in [`Runner::start_handler`].
enum Handling {
    /// Its handler finished (or panicked, or was interrupted), and it has been recorded.
    Finished(Outcome<()>),
    /// Its handler has to wait; [`Runner::finish_parked`] takes it from there.
    Parked(Parked),
}

impl<A: Actor> Runner<A> {
    /// The hot loop: takes messages and runs their handlers until the instance ends.
    ///
    /// Messages are handled inside one synchronous poll ([`poll_batch`](Self::poll_batch)):
    /// take a message, start its handler in the slot, poll it once, take the next. Only when a
    /// handler has to wait, or something other than a message arrives, does the loop come back
    /// out here to `.await`. This keeps the per-message cost to the work itself rather than the
    /// construction and teardown of nested futures.
    // Deliberately not an `async fn`, which would store its arguments twice (see the
    // `runner` module docs).
    #[allow(clippy::manual_async_fn)]
    pub(super) fn serve<'a>(
        &'a mut self,
        actor: &'a mut A,
    ) -> impl Future<Output = End> + Send + 'a {
        async move {
            loop {
                if self.ctx.supervisor.deadline().is_some() {
                    // A child is being stopped or suspended against a deadline: take one event
                    // at a time, with a timer (rare, so on the cold path).
                    if let Some(end) = cold(self.step_with_deadline(actor)).await {
                        return end;
                    }
                    continue;
                }
                // Matched as a temporary, so nothing of it is stored across the awaits below.
                let parked = match poll_fn(|cx| self.poll_batch(cx, actor)).await {
                    Batch::End(end) => return end,
                    Batch::Other(received) => {
                        if let Some(end) = cold(self.on_received(*received, actor)).await {
                            return end;
                        }
                        continue;
                    }
                    Batch::Parked(parked) => parked,
                };
                // The handler waits on something: await it here. Between the park in
                // `poll_batch` and the end of this await, neither `actor` nor `self.ctx` is
                // touched, which is what makes resuming the parked future sound.
                let outcome = self.finish_parked(parked).await;
                if let Some(end) = self.after_handle(outcome) {
                    return end;
                }
            }
        }
    }

    /// Handles messages until one of them waits, something else arrives, or the instance ends.
    fn poll_batch(&mut self, cx: &mut Context<'_>, actor: &mut A) -> Poll<Batch<A>> {
        loop {
            let envelope = match std::task::ready!(self.consumer.poll_recv(cx)) {
                Received::Message(envelope) => envelope,
                other => return Poll::Ready(Batch::Other(Box::new(other))),
            };
            let outcome = match self.start_handler(actor, envelope, cx) {
                Handling::Finished(outcome) => outcome,
                Handling::Parked(parked) => return Poll::Ready(Batch::Parked(parked)),
            };
            if let Some(end) = self.after_handle(outcome) {
                return Poll::Ready(Batch::End(end));
            }
        }
    }

    /// Dispatches `envelope` to its handler and polls the handler once, in place, under
    /// `catch_unwind`; if that finishes it, records the message (count, and time for the
    /// sampled ones). Every message goes through here, in the hot loop and outside it.
    #[inline(always)]
    fn start_handler(
        &mut self,
        actor: &mut A,
        envelope: Letter<A>,
        cx: &mut Context<'_>,
    ) -> Handling {
        let started = self.meta().stats.sample_next().then(Instant::now);
        // Dispatch runs the synchronous part of `Handler::handle_reply`, user code.
        // Matched as a temporary, so its borrow of the slot ends with the match.
        let outcome = match catch_unwind(AssertUnwindSafe(|| {
            envelope.dispatch(actor, &mut self.ctx, &mut self.slot)
        })) {
            Ok(running) => match first_poll(running, cx, &self.consumer) {
                FirstPoll::Finished(outcome) => outcome,
                FirstPoll::Parked(handler) => return Handling::Parked(Parked { handler, started }),
            },
            Err(panic) => Outcome::Panicked(Failure::from_panic(&*panic)),
        };
        record_handled(self.cell(), started);
        Handling::Finished(outcome)
    }

    /// Awaits a handler parked by [`start_handler`](Self::start_handler) until it finishes (or
    /// panics, or is interrupted), then records the message.
    fn finish_parked(&mut self, parked: Parked) -> impl Future<Output = Outcome<()>> + '_ {
        let slot = &mut self.slot;
        let consumer = &self.consumer;
        let mut parked = Some(parked);
        poll_fn(move |cx| {
            let Some(Parked { handler, started }) = parked.take() else {
                return Poll::Ready(Outcome::Interrupted);
            };
            // SAFETY: `handler` was parked in this slot by `start_handler`, and nothing has been
            // started in it since (this future holds the only access to the slot). What the
            // handler borrows — the actor and the context — stays alive and unmoved in the
            // actor's task, and neither `serve` nor `handle` touches either until this future
            // has finished.
            let running = unsafe { handler.resume(slot) };
            match first_poll(running, cx, consumer) {
                FirstPoll::Finished(outcome) => {
                    record_handled(consumer.owner(), started);
                    Poll::Ready(outcome)
                }
                FirstPoll::Parked(handler) => {
                    parked = Some(Parked { handler, started });
                    Poll::Pending
                }
            }
        })
    }

    /// Runs one message's handler to its end outside the hot loop: deferred and watched
    /// actors' `Terminated` notifications, and messages taken while a child's deadline runs.
    pub(super) async fn handle(&mut self, actor: &mut A, envelope: Letter<A>) -> Outcome<()> {
        let handling = with_context(|cx| self.start_handler(actor, envelope, cx)).await;
        match handling {
            Handling::Finished(outcome) => outcome,
            // As in `serve`: nothing touches `actor` or `self.ctx` until this await is over.
            Handling::Parked(parked) => self.finish_parked(parked).await,
        }
    }

    /// How the instance ends after a handler, if it does.
    pub(super) fn after_handle(&mut self, outcome: Outcome<()>) -> Option<End> {
        match outcome {
            Outcome::Done(()) => self.take_request(),
            Outcome::Panicked(failure) => Some(End::Failed {
                failure,
                keep_instance: true,
            }),
            Outcome::Interrupted => Some(self.interrupted()),
        }
    }

    pub(super) fn take_request(&mut self) -> Option<End> {
        match *self.ctx.request.take()? {
            Request::Stop => Some(End::Failed {
                failure: Failure::ExitedNormally,
                keep_instance: true,
            }),
            Request::Fail(failure) => Some(End::Failed {
                failure,
                keep_instance: true,
            }),
        }
    }

    pub(super) fn interrupted(&mut self) -> End {
        let bits = self.cell().mailbox.interrupts();
        if bits & INTERRUPT_ABORT != 0 {
            End::Aborted
        } else {
            self.cell().mailbox.clear_interrupts(INTERRUPT_KILL);
            End::Failed {
                failure: Failure::Killed,
                keep_instance: false,
            }
        }
    }

    /// One message or event while a child's stop or suspension has a deadline.
    async fn step_with_deadline(&mut self, actor: &mut A) -> Option<End> {
        let received = self.receive(Listen::Everything).await;
        self.on_received(received, actor).await
    }

    /// Everything the mailbox yields while an instance runs.
    async fn on_received(&mut self, received: Item<A>, actor: &mut A) -> Option<End> {
        match received {
            Received::Message(envelope) => {
                let outcome = self.handle(actor, envelope).await;
                self.after_handle(outcome)
            }
            Received::Signals(mut signals) => {
                while let Some(signal) = signals.next() {
                    if let Some(end) = self.on_signal(signal, actor).await {
                        self.requeue(signals);
                        return Some(end);
                    }
                }
                None
            }
            Received::Interrupted => Some(self.interrupted()),
            Received::Drained => {
                let reason = self
                    .lifecycle
                    .as_mut()
                    .and_then(|state| state.draining.take())
                    .unwrap_or(ExitReason::Stopped);
                Some(End::Stopped {
                    reason,
                    drain: true,
                })
            }
        }
    }

    async fn on_signal(&mut self, signal: Signal<A>, actor: &mut A) -> Option<End> {
        match signal {
            Signal::Terminated { from, envelope } => {
                if self.ctx.take_watched(from) {
                    let outcome = self.handle(actor, envelope).await;
                    return self.after_handle(outcome);
                }
                None
            }
            Signal::System(SystemSignal::Stop { drain, reason }) => {
                let draining = self
                    .lifecycle
                    .as_ref()
                    .is_some_and(|state| state.draining.is_some());
                if drain && !draining {
                    self.consumer.close();
                    self.lifecycle_mut().draining = Some(reason);
                    None
                } else {
                    Some(End::Stopped {
                        reason,
                        drain: false,
                    })
                }
            }
            Signal::System(SystemSignal::Supervision(Supervision::Suspend { cause })) => {
                Some(End::Suspended(cause))
            }
            Signal::System(SystemSignal::Supervision(Supervision::Terminate { reason })) => {
                Some(End::Stopped {
                    reason,
                    drain: false,
                })
            }
            Signal::System(signal) => self.bookkeeping(signal).map(|failure| End::Failed {
                failure,
                keep_instance: true,
            }),
        }
    }
}

/// Counts a handled message; `started` is set if it was one of the timed samples, whose time
/// then also goes to the system's observer, if any.
#[inline]
fn record_handled<A: Actor>(cell: &ActorCell<A>, started: Option<Instant>) {
    let elapsed = started.map(|t| t.elapsed());
    cell.meta.stats.record_message(elapsed);
    if let Some(elapsed) = elapsed {
        if let Some(observer) = cell.meta.system.shared.observer.get() {
            observer.handler_time(std::any::type_name::<A>(), elapsed);
        }
    }
}

/// Runs `f` with the task's context when first polled.
fn with_context<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> impl Future<Output = R> {
    let mut f = Some(f);
    poll_fn(move |cx| match f.take() {
        Some(f) => Poll::Ready(f(cx)),
        // Polled again after it was ready: a contract violation of the caller; never ready.
        None => Poll::Pending,
    })
}

//! The task that runs one actor: lifecycle, message loop, panics, supervision, termination.
//!
//! ```text
//! life:  create instance ─► started ─► serve ─┬─ stopped from outside ─► stop_instance ─┐
//!          ▲                                  ├─ failed / killed / exited ─► ask parent  │
//!          │                                  │        Suspend ─► restarting hook       │
//!          └────────── Start (after backoff) ◄┘        Terminate/Stop ─► stop_instance ─┤
//!                                                                                       ▼
//!                                                               terminate (final cleanup)
//! ```
//!
//! Every call into user code (factory, handlers, hooks) runs under `catch_unwind`, so a panic
//! is a failure of this actor only. While user code is pending, the task also listens for
//! interrupts (kill, abort), which abandon it at its next `.await`.
//!
//! # Memory
//!
//! Every live actor is one of these tasks, and an `async fn` state machine is as large as its
//! largest suspension point. So only the message loop is awaited inline; every cold path
//! (lifecycle hooks, the restart protocol, stopping, cleanup, deadline-guarded waits) is
//! awaited through a `Box`, allocated only when that path runs. The runner keeps rarely used
//! state in a lazily allocated [`Extra`].

use crate::actor::{Actor, ActorId};
use crate::actor_ref::ActorRef;
use crate::ask::{abandon, with_abandon_reason};
use crate::backoff::WhileDown;
use crate::cell::{
    ActorCell, ActorMeta, ActorStatus, AnyCell, Signal, Stats, Supervision, SystemSignal,
    WatchNotify, Watcher,
};
use crate::context::{Context, Request};
use crate::dead_letters::DeadLetterReason;
use crate::dispatcher::PinnedThread;
use crate::envelope::Envelope;
use crate::error::{AskError, SpawnError};
use crate::lifecycle::{ExitReason, Failure};
use crate::mailbox::{Consumer, Inbox, Mailbox, Received, INTERRUPT_ABORT, INTERRUPT_KILL};
use crate::props::Props;
use crate::slot::{HandlerSlot, ParkedHandler, RunningHandler};
use crate::supervision::{ChildRecord, Restart, Supervisor};
use crate::system::{Guardian, SystemShared};
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How an instance's message loop ended.
enum End {
    /// Stopped from outside (or told to terminate by the parent): no restart.
    Stopped { reason: ExitReason, drain: bool },
    /// Failed, exited normally, or was killed: the supervisor decides. `keep_instance` is false
    /// for kills (no hooks run for a killed instance).
    Failed {
        failure: Failure,
        keep_instance: bool,
    },
    /// The parent restarts this actor because a sibling failed.
    Suspended(Failure),
    /// Shutdown deadline: terminate now, no hooks, no restart.
    Aborted,
}

/// What to do after the parent's decision.
enum Next {
    Restart,
    Exit(ExitReason),
}

/// What `poll_batch` hands back to the async part of the loop.
enum Batch<A: Actor> {
    /// Something other than a message (boxed: rare, and kept small in the task's state).
    Other(Box<Received<Envelope<A>, Signal<A>>>),
    /// A handler is waiting; its future is parked in the slot. With its timing sample.
    Parked(ParkedHandler, Option<Instant>),
    /// The instance ends.
    End(End),
}

/// Result of polling a handler in place.
enum FirstPoll {
    Finished(Outcome<()>),
    Parked(ParkedHandler),
}

/// Polls a handler once under `catch_unwind`. Finished, panicked or interrupted (kill, abort),
/// the future is dropped here — in the last two cases with the matching answer for any asker
/// whose reply handle it owned. Otherwise it is parked in its slot.
fn first_poll<A: Actor>(
    mut running: RunningHandler<'_>,
    cx: &mut std::task::Context<'_>,
    consumer: &ActorConsumer<A>,
) -> FirstPoll {
    let (outcome, reason) = match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut running).poll(cx)))
    {
        Ok(Poll::Ready(())) => {
            drop(running);
            return FirstPoll::Finished(Outcome::Done(()));
        }
        Ok(Poll::Pending) => {
            consumer.on_user_code_pending(cx);
            if consumer.interrupts() == 0 {
                return FirstPoll::Parked(running.park());
            }
            (Outcome::Interrupted, AskError::Stopped)
        }
        Err(panic) => (
            Outcome::Panicked(Failure::from_panic(&*panic)),
            AskError::Panicked,
        ),
    };
    // The future's destructor is user code too.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        with_abandon_reason(reason, || drop(running));
    }));
    FirstPoll::Finished(outcome)
}

/// Result of running user code under [`guarded`].
enum Outcome<T> {
    Done(T),
    Panicked(Failure),
    Interrupted,
}

type ActorConsumer<A> = Consumer<ActorCell<A>>;

/// Boxes a cold path's future, so that awaiting it keeps one pointer in the actor's task
/// instead of the whole state machine. (An `async fn` wrapper would not do: it would store
/// its unboxed argument in its own state.)
fn cold<F: Future>(future: F) -> Pin<Box<F>> {
    Box::pin(future)
}

/// An actor ready to be started: created, registered, not yet running.
pub(crate) struct Prepared<A: Actor> {
    pub(crate) actor_ref: ActorRef<A>,
    runner: Runner<A>,
    restart: Restart,
    shutdown_timeout: Duration,
    /// The dedicated thread of a blocking actor.
    thread: Option<PinnedThread>,
}

impl<A: Actor> Prepared<A> {
    /// The record the parent keeps for this child.
    pub(crate) fn record(&self) -> ChildRecord {
        ChildRecord::new(
            self.actor_ref.cell().clone(),
            self.restart,
            self.shutdown_timeout,
        )
    }

    /// Starts the actor's task: on its own thread if it is blocking, else on its dispatcher
    /// (kept in its context, where its children find it too), else on the system's runtime.
    pub(crate) fn start(self) {
        if let Some(thread) = self.thread {
            return thread.run(Box::pin(self.runner.run()));
        }
        if let Some(dispatcher) = self.runner.ctx.dispatcher() {
            // The runner's context holds the dispatcher, so the task keeps its runtime alive.
            let runtime = dispatcher.handle().clone();
            runtime.spawn(self.runner.run());
            return;
        }
        let runtime = self.runner.cell().meta.system.shared.runtime.clone();
        runtime.spawn(self.runner.run());
    }

    /// Undoes `prepare` for an actor that will never start.
    pub(crate) fn cancel(mut self) {
        self.runner.release_identity();
        self.runner.terminated = true;
    }
}

fn validate_name(name: &str) -> Result<(), SpawnError> {
    if name.is_empty() || name.len() > 255 || name.contains('/') || name.starts_with('$') {
        return Err(SpawnError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Creates an actor's cell and runner under `parent` and enters it in the actor table.
pub(crate) fn prepare<A: Actor>(
    system: &Arc<SystemShared>,
    parent: Arc<dyn AnyCell>,
    props: Props<A>,
) -> Result<Prepared<A>, SpawnError> {
    let id = system.next_id();
    // First, before the actor is entered anywhere: failing to get a thread undoes nothing.
    let thread = if props.blocking {
        let name = format!("postbox-blocking-{}", id.get());
        let thread =
            PinnedThread::spawn(name).map_err(|e| SpawnError::ThreadUnavailable(e.to_string()))?;
        Some(thread)
    } else {
        None
    };
    let name: Option<Arc<str>> = match props.name {
        Some(name) => {
            validate_name(&name)?;
            let name: Arc<str> = Arc::from(name);
            match system.child_names.entry((parent.meta().id, name.clone())) {
                dashmap::Entry::Occupied(_) => return Err(SpawnError::NameTaken(name.to_string())),
                dashmap::Entry::Vacant(slot) => {
                    slot.insert(id);
                }
            }
            Some(name)
        }
        None => None,
    };
    let cell = Arc::new(ActorCell {
        inbox: Inbox::new(props.mailbox.unwrap_or(system.config.default_mailbox)),
        meta: ActorMeta {
            id,
            name,
            parent: Some(parent),
            system: crate::ActorSystem::from_shared(system.clone()),
            stats: Stats::default(),
        },
    });
    system.actors.insert(id, cell.clone());
    system.counters.started.fetch_add(1, Relaxed);
    let mut runner = Runner::new(
        cell.clone(),
        props.factory,
        props.restart,
        props.supervisor,
        true,
    );
    runner.while_down = props.while_down;
    if props.dispatcher.is_some() || props.breaker.is_some() {
        runner.ctx.extras = Some(Box::new(crate::context::Extras {
            dispatcher: props.dispatcher,
            breaker: props.breaker,
            ..Default::default()
        }));
    }
    Ok(Prepared {
        actor_ref: ActorRef::from_cell(cell),
        runner,
        restart: props.restart,
        shutdown_timeout: props
            .shutdown_timeout
            .unwrap_or(system.config.shutdown_timeout),
        thread,
    })
}

/// Creates and starts the root guardian (`/user`).
pub(crate) fn start_guardian(system: &Arc<SystemShared>) {
    let id = system.next_id();
    let cell = Arc::new(ActorCell {
        inbox: Inbox::new(Mailbox::bounded(1)),
        meta: ActorMeta {
            id,
            name: Some(Arc::from("user")),
            parent: None,
            system: crate::ActorSystem::from_shared(system.clone()),
            stats: Stats::default(),
        },
    });
    let any: Arc<dyn AnyCell> = cell.clone();
    let _ = system.guardian.set(Arc::downgrade(&any));
    system.actors.insert(id, any);
    let strategy = system.config.default_strategy.clone();
    let runner = Runner::new(
        cell,
        Box::new(|| Guardian),
        Restart::Permanent,
        Some(strategy),
        false,
    );
    system.runtime.spawn(runner.run());
}

/// Resolves when `cell`'s actor has terminated.
pub(crate) fn wait_for_termination(cell: &Arc<dyn AnyCell>) -> impl Future<Output = ExitReason> {
    let (tx, rx) = oneshot::channel();
    let watcher = Watcher {
        watcher: ActorId(0),
        notify: WatchNotify::Waiter(tx),
    };
    let registered = cell.send_system(SystemSignal::Watch(watcher)).is_ok();
    async move {
        if registered {
            rx.await.unwrap_or(ExitReason::AlreadyTerminated)
        } else {
            ExitReason::AlreadyTerminated
        }
    }
}

pub(crate) struct Runner<A: Actor> {
    /// The inbox's consumer token; also how the runner reaches its cell.
    consumer: ActorConsumer<A>,
    factory: Box<dyn FnMut() -> A + Send>,
    ctx: Context<A>,
    slot: HandlerSlot,
    /// Rarely used state, allocated on first use.
    extra: Option<Box<Extra<A>>>,
    restart: Restart,
    /// What becomes of user messages while the actor waits to be restarted.
    while_down: WhileDown,
    /// Set once cleanup has run (the `Drop` guard checks it).
    terminated: bool,
}

/// The runner's rarely used state.
struct Extra<A: Actor> {
    /// Who to notify when this actor terminates.
    watchers: Vec<Watcher>,
    /// `Terminated` notifications that arrived while no instance was running.
    deferred: Vec<Envelope<A>>,
    /// Reason of a drain in progress (`drain_and_stop` / shutdown).
    draining: Option<ExitReason>,
}

impl<A: Actor> Runner<A> {
    fn new(
        cell: Arc<ActorCell<A>>,
        factory: Box<dyn FnMut() -> A + Send>,
        restart: Restart,
        strategy: Option<crate::SupervisorStrategy>,
        escalate: bool,
    ) -> Self {
        // SAFETY: this runner is the only consumer ever created for this cell's inbox: cells
        // are created together with exactly one runner (in `prepare` / `start_guardian`).
        let ctx = Context::new(
            ActorRef::from_cell(cell.clone()),
            Supervisor::new(strategy, escalate),
        );
        let consumer = unsafe { Consumer::new(cell) };
        Self {
            consumer,
            factory,
            ctx,
            slot: HandlerSlot::new(),
            extra: None,
            restart,
            while_down: WhileDown::Keep,
            terminated: false,
        }
    }

    fn cell(&self) -> &Arc<ActorCell<A>> {
        self.consumer.owner()
    }

    fn meta(&self) -> &ActorMeta {
        &self.cell().meta
    }

    fn system(&self) -> &SystemShared {
        &self.cell().meta.system.shared
    }

    fn extra(&mut self) -> &mut Extra<A> {
        self.extra.get_or_insert_with(|| {
            Box::new(Extra {
                watchers: Vec::new(),
                deferred: Vec::new(),
                draining: None,
            })
        })
    }

    fn defer(&mut self, envelope: Envelope<A>) {
        self.extra().deferred.push(envelope);
    }

    /// Puts back the rest of a batch of signals when one of them ended the current state:
    /// they are handled by the next state (the final cleanup collects watchers from them), so
    /// a watch, a child's termination or a stop that arrived together with the ending signal
    /// is never lost.
    fn requeue(&self, signals: crate::mailbox::Drain<Signal<A>>) {
        for signal in signals {
            // The lane closes only in `finish`, after the runner stops receiving.
            let _ = self.cell().inbox.send_signal(signal);
        }
    }

    fn take_deferred(&mut self) -> Vec<Envelope<A>> {
        self.extra
            .as_mut()
            .map(|extra| std::mem::take(&mut extra.deferred))
            .unwrap_or_default()
    }

    fn set_status(&self, status: ActorStatus) {
        self.meta().stats.set_status(status);
    }

    /// The actor's whole life. Written as a function returning an `async move` block, not as
    /// an `async fn` taking `self` by value: the latter would keep a second copy of the runner
    /// in its state.
    // Deliberately not an `async fn`, which would store its arguments twice (module docs).
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl Future<Output = ()> + Send {
        async move {
            let reason = self.life().await;
            cold(self.terminate(reason)).await;
        }
    }

    // Deliberately not an `async fn`, which would store its arguments twice (module docs).
    #[allow(clippy::manual_async_fn)]
    fn life(&mut self) -> impl Future<Output = ExitReason> + Send + '_ {
        async move {
            loop {
                self.set_status(ActorStatus::Starting);
                // A match on a temporary, not a named local: the temporary's storage ends with the
                // match, so it is not kept in the state machine next to `actor` (see module docs).
                let mut actor = match self.create_instance() {
                    Ok(actor) => actor,
                    Err(failure) => match cold(self.after_exit(None, failure)).await {
                        Next::Restart => continue,
                        Next::Exit(reason) => return reason,
                    },
                };
                // `start` answers with a boxed ending (one word) so that nothing larger is kept
                // across the message loop.
                let end = match cold(self.start(&mut actor)).await {
                    Some(end) => *end,
                    None => self.serve(&mut actor).await,
                };
                match cold(self.end_instance(actor, end)).await {
                    Next::Restart => continue,
                    Next::Exit(reason) => return reason,
                }
            }
        }
    }

    fn create_instance(&mut self) -> Result<A, Failure> {
        catch_unwind(AssertUnwindSafe(&mut self.factory))
            .map_err(|panic| Failure::from_panic(&*panic))
    }

    /// What happens after an instance's message loop ended.
    async fn end_instance(&mut self, actor: A, end: End) -> Next {
        match end {
            End::Stopped { reason, drain } => {
                self.stop_instance(Some(actor), &reason, drain).await;
                Next::Exit(reason)
            }
            End::Aborted => {
                drop_quietly(actor);
                self.ctx.supervisor.abort_all();
                self.wait_for_children().await;
                Next::Exit(ExitReason::Shutdown)
            }
            End::Failed {
                failure,
                keep_instance,
            } => {
                let instance = if keep_instance {
                    Some(actor)
                } else {
                    drop_quietly(actor);
                    None
                };
                self.after_exit(instance, failure).await
            }
            End::Suspended(cause) => {
                self.suspend(Some(actor), &cause).await;
                self.await_directive(None).await
            }
        }
    }

    /// Runs `started`, then reports a restart to the parent and handles deferred notifications.
    async fn start(&mut self, actor: &mut A) -> Option<Box<End>> {
        match guarded(actor.started(&mut self.ctx), &self.consumer).await {
            Outcome::Done(Ok(())) => {}
            Outcome::Done(Err(error)) => {
                return Some(Box::new(End::Failed {
                    failure: Failure::Error(Arc::from(error.to_string().as_str())),
                    keep_instance: true,
                }))
            }
            Outcome::Panicked(failure) => {
                return Some(Box::new(End::Failed {
                    failure,
                    keep_instance: true,
                }))
            }
            Outcome::Interrupted => return Some(Box::new(self.interrupted())),
        }
        if let Some(end) = self.take_request() {
            return Some(Box::new(end));
        }
        self.set_status(ActorStatus::Running);
        if self.ctx.incarnation > 0 {
            self.notify_parent(Supervision::ChildStarted {
                child: self.meta().id,
                incarnation: self.ctx.incarnation,
            });
        }
        for envelope in self.take_deferred() {
            let outcome = self.handle(actor, envelope).await;
            if let Some(end) = self.after_handle(outcome) {
                return Some(Box::new(end));
            }
        }
        None
    }

    /// The hot loop: takes messages and runs their handlers until the instance ends.
    ///
    /// Messages are handled inside one synchronous poll ([`poll_batch`](Self::poll_batch)):
    /// take a message, start its handler in the slot, poll it once, take the next. Only when a
    /// handler has to wait, or something other than a message arrives, does the loop come back
    /// out here to `.await`. This keeps the per-message cost to the work itself rather than the
    /// construction and teardown of nested futures.
    // Deliberately not an `async fn`, which would store its arguments twice (module docs).
    #[allow(clippy::manual_async_fn)]
    fn serve<'a>(&'a mut self, actor: &'a mut A) -> impl Future<Output = End> + Send + 'a {
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
                let (parked, started) = match poll_fn(|cx| self.poll_batch(cx, actor)).await {
                    Batch::End(end) => return end,
                    Batch::Other(received) => {
                        if let Some(end) = cold(self.on_other(*received, actor)).await {
                            return end;
                        }
                        continue;
                    }
                    Batch::Parked(parked, started) => (parked, started),
                };
                // The handler waits on something: await it here. Between the park in
                // `poll_batch` and the end of this await, neither `actor` nor `self.ctx` is
                // touched, which is what makes resuming the parked future sound.
                let outcome = self.finish_parked(parked).await;
                self.record(started);
                if let Some(end) = self.after_handle(outcome) {
                    return end;
                }
            }
        }
    }

    /// Handles messages until one of them waits, something else arrives, or the instance ends.
    fn poll_batch(&mut self, cx: &mut std::task::Context<'_>, actor: &mut A) -> Poll<Batch<A>> {
        loop {
            let envelope = match std::task::ready!(self.consumer.poll_recv(cx)) {
                Received::Message(envelope) => envelope,
                other => return Poll::Ready(Batch::Other(Box::new(other))),
            };
            let started = self.meta().stats.sample_next().then(Instant::now);
            // Dispatch runs the synchronous part of `Handler::handle_reply`, user code.
            // Matched as a temporary, so its borrow of the slot ends with the match.
            let outcome = match catch_unwind(AssertUnwindSafe(|| {
                envelope.dispatch(actor, &mut self.ctx, &mut self.slot)
            })) {
                Ok(running) => match first_poll(running, cx, &self.consumer) {
                    FirstPoll::Finished(outcome) => outcome,
                    FirstPoll::Parked(parked) => {
                        return Poll::Ready(Batch::Parked(parked, started))
                    }
                },
                Err(panic) => Outcome::Panicked(Failure::from_panic(&*panic)),
            };
            self.record(started);
            if let Some(end) = self.after_handle(outcome) {
                return Poll::Ready(Batch::End(end));
            }
        }
    }

    /// Awaits a handler parked by `poll_batch` until it finishes (or panics, or is interrupted).
    fn finish_parked(&mut self, parked: ParkedHandler) -> impl Future<Output = Outcome<()>> + '_ {
        let slot = &mut self.slot;
        let consumer = &self.consumer;
        let mut parked = Some(parked);
        poll_fn(move |cx| {
            let Some(handler) = parked.take() else {
                return Poll::Ready(Outcome::Interrupted);
            };
            // SAFETY: `handler` was parked in this slot by `poll_batch`, and nothing has been
            // started in it since (this future holds the only access to the slot). What the
            // handler borrows — the actor and the context — stays alive and unmoved in the
            // actor's task, and `serve` does not touch either until this future has finished.
            let running = unsafe { handler.resume(slot) };
            match first_poll(running, cx, consumer) {
                FirstPoll::Finished(outcome) => Poll::Ready(outcome),
                FirstPoll::Parked(handler) => {
                    parked = Some(handler);
                    Poll::Pending
                }
            }
        })
    }

    fn record(&self, started: Option<Instant>) {
        record_handled(self.cell(), started);
    }

    /// Everything `receive` yields besides a message.
    async fn on_other(
        &mut self,
        received: Received<Envelope<A>, Signal<A>>,
        actor: &mut A,
    ) -> Option<End> {
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
                    .extra
                    .as_mut()
                    .and_then(|extra| extra.draining.take())
                    .unwrap_or(ExitReason::Stopped);
                Some(End::Stopped {
                    reason,
                    drain: true,
                })
            }
        }
    }

    /// One message or event while a child's stop or suspension has a deadline.
    async fn step_with_deadline(&mut self, actor: &mut A) -> Option<End> {
        match self.receive_until_deadlines().await {
            Received::Message(envelope) => {
                let outcome = self.handle(actor, envelope).await;
                self.after_handle(outcome)
            }
            other => self.on_other(other, actor).await,
        }
    }

    /// Like `receive`, while enforcing the deadline of a child being stopped or suspended.
    async fn receive_until_deadlines(&mut self) -> Received<Envelope<A>, Signal<A>> {
        loop {
            let Some(deadline) = self.ctx.supervisor.deadline() else {
                return poll_fn(|cx| self.consumer.poll_recv(cx)).await;
            };
            let mut sleep = pin!(tokio::time::sleep_until(deadline));
            let received = poll_fn(|cx| match self.consumer.poll_recv(cx) {
                Poll::Ready(received) => Poll::Ready(Some(received)),
                Poll::Pending => sleep.as_mut().poll(cx).map(|()| None),
            })
            .await;
            match received {
                Some(received) => return received,
                None => self.ctx.supervisor.on_deadline(),
            }
        }
    }

    /// Like `receive`, but leaves user messages queued (no instance is running), and reports
    /// only the interrupts in `interrupt_mask`.
    async fn receive_signals(&mut self, interrupt_mask: usize) -> Received<Envelope<A>, Signal<A>> {
        loop {
            let Some(deadline) = self.ctx.supervisor.deadline() else {
                return poll_fn(|cx| self.consumer.poll_signals(cx, interrupt_mask)).await;
            };
            let mut sleep = pin!(tokio::time::sleep_until(deadline));
            let received = poll_fn(|cx| match self.consumer.poll_signals(cx, interrupt_mask) {
                Poll::Ready(received) => Poll::Ready(Some(received)),
                Poll::Pending => sleep.as_mut().poll(cx).map(|()| None),
            })
            .await;
            match received {
                Some(received) => return received,
                None => self.ctx.supervisor.on_deadline(),
            }
        }
    }

    /// Runs one message's handler; returns how the instance ends if it does.
    ///
    /// Not an `async fn`: its parameters would be kept in the state machine for the whole call.
    /// The envelope is dispatched right away, and only the handler guard is awaited.
    fn handle<'a>(
        &'a mut self,
        actor: &'a mut A,
        envelope: Envelope<A>,
    ) -> impl Future<Output = Outcome<()>> + Send + 'a {
        let started = self.meta().stats.sample_next().then(Instant::now);
        // Dispatch runs the synchronous part of `Handler::handle_reply`, user code.
        let dispatched = catch_unwind(AssertUnwindSafe(|| {
            envelope.dispatch(actor, &mut self.ctx, &mut self.slot)
        }));
        let (mut running, failed) = match dispatched {
            Ok(running) => (Some(running), None),
            Err(panic) => (None, Some(Failure::from_panic(&*panic))),
        };
        let consumer = &self.consumer;
        async move {
            if let Some(failure) = failed {
                record_handled(consumer.owner(), started);
                return Outcome::Panicked(failure);
            }
            // Polled in place (the handler future lives in the slot).
            let outcome = poll_fn(|cx| poll_guarded(Pin::new(&mut running), cx, consumer)).await;
            drop(running);
            record_handled(consumer.owner(), started);
            outcome
        }
    }

    /// How the instance ends after a handler, if it does.
    fn after_handle(&mut self, outcome: Outcome<()>) -> Option<End> {
        match outcome {
            Outcome::Done(()) => self.take_request(),
            Outcome::Panicked(failure) => Some(End::Failed {
                failure,
                keep_instance: true,
            }),
            Outcome::Interrupted => Some(self.interrupted()),
        }
    }

    fn take_request(&mut self) -> Option<End> {
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

    fn interrupted(&mut self) -> End {
        let bits = self.cell().inbox.interrupts();
        if bits & INTERRUPT_ABORT != 0 {
            End::Aborted
        } else {
            self.cell().inbox.clear_interrupts(INTERRUPT_KILL);
            End::Failed {
                failure: Failure::Killed,
                keep_instance: false,
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
                let draining = self.extra.as_ref().is_some_and(|e| e.draining.is_some());
                if drain && !draining {
                    self.consumer.close();
                    self.extra().draining = Some(reason);
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

    /// Signals handled the same way whatever the actor is doing: watch registrations and
    /// supervision of children. Returns an escalation failure, if any.
    fn bookkeeping(&mut self, signal: SystemSignal) -> Option<Failure> {
        match signal {
            SystemSignal::Watch(watcher) => self.extra().watchers.push(watcher),
            SystemSignal::Unwatch { watcher } => {
                if let Some(extra) = self.extra.as_mut() {
                    extra.watchers.retain(|w| w.watcher != watcher);
                }
            }
            SystemSignal::Supervision(signal) => {
                let default = &self
                    .consumer
                    .owner()
                    .meta
                    .system
                    .shared
                    .config
                    .default_strategy;
                if let Some(escalation) = self.ctx.supervisor.on_signal(signal, default) {
                    return Some(escalation.0);
                }
            }
            SystemSignal::Stop { .. } => {}
        }
        None
    }

    /// The instance ended with `failure`: restart if the restart type allows and the parent
    /// agrees, otherwise stop.
    async fn after_exit(&mut self, instance: Option<A>, failure: Failure) -> Next {
        self.log_failure(&failure);
        let restartable = match self.restart {
            Restart::Permanent => true,
            Restart::Transient => failure.is_abnormal(),
            Restart::Temporary => false,
        };
        let reason = match failure {
            Failure::ExitedNormally => ExitReason::Normal,
            ref failure => ExitReason::Failed(failure.clone()),
        };
        let asked = restartable
            && self.meta().parent.as_ref().is_some_and(|parent| {
                parent
                    .send_system(SystemSignal::Supervision(Supervision::ChildExited {
                        child: self.meta().id,
                        incarnation: self.ctx.incarnation,
                        failure,
                    }))
                    .is_ok()
            });
        if !asked {
            self.stop_instance(instance, &reason, false).await;
            return Next::Exit(reason);
        }
        self.set_status(ActorStatus::Restarting);
        self.await_directive(instance).await
    }

    /// Waits for the parent's directive while no instance runs (only signals are handled).
    async fn await_directive(&mut self, mut instance: Option<A>) -> Next {
        loop {
            match self.receive_signals(INTERRUPT_ABORT | INTERRUPT_KILL).await {
                Received::Interrupted => {
                    if self.cell().inbox.interrupts() & INTERRUPT_ABORT != 0 {
                        if let Some(actor) = instance.take() {
                            drop_quietly(actor);
                        }
                        self.ctx.supervisor.abort_all();
                        self.wait_for_children().await;
                        return Next::Exit(ExitReason::Shutdown);
                    }
                    // Killing an actor that is already down changes nothing.
                    self.cell().inbox.clear_interrupts(INTERRUPT_KILL);
                }
                Received::Signals(mut signals) => {
                    while let Some(signal) = signals.next() {
                        match signal {
                            Signal::System(SystemSignal::Supervision(Supervision::Suspend {
                                cause,
                            })) => {
                                self.suspend(instance.take(), &cause).await;
                            }
                            Signal::System(SystemSignal::Supervision(Supervision::Start {
                                delay,
                            })) => {
                                self.requeue(signals);
                                if let Some(actor) = instance.take() {
                                    // Start without Suspend: finish the old instance first.
                                    self.suspend(Some(actor), &Failure::ExitedNormally).await;
                                }
                                return self.delayed_start(delay).await;
                            }
                            Signal::System(SystemSignal::Supervision(Supervision::Terminate {
                                reason,
                            }))
                            | Signal::System(SystemSignal::Stop { reason, .. }) => {
                                self.requeue(signals);
                                self.stop_instance(instance.take(), &reason, false).await;
                                return Next::Exit(reason);
                            }
                            Signal::Terminated { from, envelope } => {
                                if self.ctx.take_watched(from) {
                                    self.defer(envelope);
                                }
                            }
                            Signal::System(signal) => {
                                // An escalation from a child while we are already down needs no
                                // second failure; our restart or stop handles the children.
                                let _ = self.bookkeeping(signal);
                            }
                        }
                    }
                }
                Received::Message(_) | Received::Drained => {
                    unreachable!("poll_signals yields only signals and interrupts")
                }
            }
        }
    }

    /// Ends an instance that is being restarted: `restarting` hook, children stopped, ack.
    async fn suspend(&mut self, instance: Option<A>, cause: &Failure) {
        self.set_status(ActorStatus::Restarting);
        if let Some(mut actor) = instance {
            if let Outcome::Panicked(failure) =
                guarded(actor.restarting(&mut self.ctx, cause), &self.consumer).await
            {
                self.log_hook_panic("restarting", &failure);
            }
            drop_quietly(actor);
        }
        self.ctx.request = None;
        self.ctx.supervisor.stop_all(ExitReason::Stopped, false);
        self.wait_for_children().await;
        self.ctx.supervisor.reset();
        self.ctx.stopping = false;
        self.notify_parent(Supervision::ChildSuspended {
            child: self.meta().id,
        });
    }

    /// Sleeps the backoff delay (still answering stop and abort), then restarts.
    async fn delayed_start(&mut self, delay: Duration) -> Next {
        let dead_letter = self.while_down == WhileDown::DeadLetter;
        if dead_letter {
            while let Some(envelope) = self.consumer.try_recv() {
                self.drop_while_down(envelope);
            }
        }
        if !delay.is_zero() {
            let mut sleep = pin!(tokio::time::sleep(delay));
            loop {
                let received = poll_fn(|cx| {
                    let polled = if dead_letter {
                        self.consumer.poll_recv(cx)
                    } else {
                        self.consumer.poll_signals(cx, usize::MAX)
                    };
                    match polled {
                        Poll::Ready(received) => Poll::Ready(Some(received)),
                        Poll::Pending => sleep.as_mut().poll(cx).map(|()| None),
                    }
                })
                .await;
                let Some(received) = received else { break };
                match received {
                    Received::Interrupted => {
                        if self.cell().inbox.interrupts() & INTERRUPT_ABORT != 0 {
                            return Next::Exit(ExitReason::Shutdown);
                        }
                        self.cell().inbox.clear_interrupts(INTERRUPT_KILL);
                    }
                    Received::Signals(mut signals) => {
                        while let Some(signal) = signals.next() {
                            match signal {
                                Signal::System(SystemSignal::Stop { reason, .. })
                                | Signal::System(SystemSignal::Supervision(
                                    Supervision::Terminate { reason },
                                )) => {
                                    self.requeue(signals);
                                    return Next::Exit(reason);
                                }
                                Signal::Terminated { from, envelope } => {
                                    if self.ctx.take_watched(from) {
                                        self.defer(envelope);
                                    }
                                }
                                Signal::System(signal) => {
                                    let _ = self.bookkeeping(signal);
                                }
                            }
                        }
                    }
                    Received::Message(envelope) => self.drop_while_down(envelope),
                    Received::Drained => {
                        unreachable!("the mailbox of an actor waiting to restart stays open")
                    }
                }
            }
        }
        self.ctx.incarnation += 1;
        self.system().counters.restarts.fetch_add(1, Relaxed);
        Next::Restart
    }

    /// The graceful end of an instance: `stopping`, children stopped, `stopped`.
    async fn stop_instance(&mut self, instance: Option<A>, reason: &ExitReason, drain: bool) {
        self.set_status(ActorStatus::Stopping);
        self.ctx.stopping = true;
        self.consumer.close();
        let mut aborted = false;
        let mut actor = instance;
        if let Some(a) = actor.as_mut() {
            match guarded(a.stopping(&mut self.ctx), &self.consumer).await {
                Outcome::Done(()) => {}
                Outcome::Panicked(failure) => self.log_hook_panic("stopping", &failure),
                Outcome::Interrupted => aborted = true,
            }
        }
        let child_reason = match reason {
            ExitReason::Shutdown => ExitReason::Shutdown,
            _ => ExitReason::Stopped,
        };
        self.ctx.supervisor.stop_all(child_reason, drain);
        self.wait_for_children().await;
        if let (Some(a), false) = (actor.as_mut(), aborted) {
            if self.cell().inbox.interrupts() & INTERRUPT_ABORT == 0 {
                if let Outcome::Panicked(failure) =
                    guarded(a.stopped(&mut self.ctx, reason), &self.consumer).await
                {
                    self.log_hook_panic("stopped", &failure);
                }
            }
        }
        if let Some(a) = actor {
            drop_quietly(a);
        }
    }

    /// Handles signals until every child has terminated (after `stop_all` / `abort_all`).
    async fn wait_for_children(&mut self) {
        let mut aborted = false;
        while !self.ctx.supervisor.is_empty() {
            // A kill changes nothing for an actor that is already winding down.
            self.cell().inbox.clear_interrupts(INTERRUPT_KILL);
            if !aborted && self.cell().inbox.interrupts() & INTERRUPT_ABORT != 0 {
                self.ctx.supervisor.abort_all();
                aborted = true;
            }
            // After reacting to an abort, stop listening for it (the bit stays set): the
            // children's terminations arrive as signals.
            let mask = if aborted { 0 } else { INTERRUPT_ABORT };
            match self.receive_signals(mask).await {
                Received::Interrupted => {}
                Received::Signals(signals) => self.absorb(signals),
                Received::Message(_) | Received::Drained => {
                    unreachable!("poll_signals yields only signals and interrupts")
                }
            }
        }
    }

    /// Signals that arrive while the actor is winding down.
    fn absorb(&mut self, signals: crate::mailbox::Drain<Signal<A>>) {
        for signal in signals {
            match signal {
                Signal::Terminated { from, envelope } => {
                    if self.ctx.take_watched(from) {
                        self.defer(envelope);
                    }
                }
                Signal::System(signal) => {
                    let _ = self.bookkeeping(signal);
                }
            }
        }
    }

    /// Final cleanup: dead-letter what is left, release names, tell watchers and the parent.
    async fn terminate(&mut self, reason: ExitReason) {
        self.set_status(ActorStatus::Stopped);
        self.consumer.close();
        while let Some(envelope) = poll_fn(|cx| self.consumer.poll_remaining(cx)).await {
            self.dead_letter(envelope);
        }
        self.finish(reason);
    }

    /// A message that arrived while the actor was down, for an actor spawned with
    /// [`WhileDown::DeadLetter`].
    fn drop_while_down(&self, envelope: Envelope<A>) {
        self.meta().stats.record_skipped();
        self.dead_letter_for(envelope, DeadLetterReason::ActorDown);
    }

    fn dead_letter(&self, envelope: Envelope<A>) {
        self.dead_letter_for(envelope, DeadLetterReason::DroppedAtStop);
    }

    fn dead_letter_for(&self, envelope: Envelope<A>, reason: DeadLetterReason) {
        self.system().dead_letters.record_envelope(
            self.meta().id,
            std::any::type_name::<A>(),
            &envelope,
            reason,
        );
        abandon(envelope, AskError::Stopped);
    }

    /// The synchronous part of termination (also run by `Drop` if the task is cancelled).
    fn finish(&mut self, reason: ExitReason) {
        if self.terminated {
            return;
        }
        self.terminated = true;
        self.set_status(ActorStatus::Stopped);
        // Before the signal lane closes: whoever learns of the termination from a closed lane
        // (a late `wait_for_stop`, a late watch) finds the actor gone from the table and the
        // registry too.
        self.release_identity();
        while let Some(envelope) = self.consumer.try_recv() {
            self.dead_letter(envelope);
        }
        let mut watchers = self
            .extra
            .as_mut()
            .map(|extra| std::mem::take(&mut extra.watchers))
            .unwrap_or_default();
        for signal in self.consumer.close_signals() {
            match signal {
                Signal::System(SystemSignal::Watch(watcher)) => watchers.push(watcher),
                Signal::Terminated { envelope, .. } => self.dead_letter(envelope),
                Signal::System(_) => {}
            }
        }
        for envelope in self.take_deferred() {
            self.dead_letter(envelope);
        }
        self.system().counters.stopped.fetch_add(1, Relaxed);
        if let Some(observer) = self.system().observer.get() {
            // After `release_identity`: an exporter summing live actors plus stopped ones
            // then undercounts for a moment rather than counting this actor twice.
            let processed = self.meta().stats.processed();
            observer.actor_stopped(std::any::type_name::<A>(), processed);
        }
        let id = self.meta().id;
        for watcher in watchers {
            watcher.notify(id, reason.clone());
        }
        self.notify_parent(Supervision::ChildTerminated { child: id });
    }

    /// Removes the actor from the actor table, the registry and its parent's names.
    fn release_identity(&mut self) {
        let meta = &self.consumer.owner().meta;
        let system = &meta.system.shared;
        system.registry.remove_actor(meta.id);
        if let (Some(name), Some(parent)) = (&meta.name, &meta.parent) {
            system
                .child_names
                .remove_if(&(parent.meta().id, name.clone()), |_, id| *id == meta.id);
        }
        system.actors.remove(&meta.id);
        if meta.stats.publishes_in_flight() {
            system.in_flight.remove(meta.id);
        }
    }

    fn notify_parent(&self, signal: Supervision) {
        if let Some(parent) = &self.meta().parent {
            let _ = parent.send_system(SystemSignal::Supervision(signal));
        }
    }

    fn log_failure(&self, failure: &Failure) {
        if let Failure::Panicked(_) = failure {
            self.system().counters.panics.fetch_add(1, Relaxed);
        }
        if failure.is_abnormal() {
            tracing::warn!(
                target: "postbox::actor",
                actor = %self.meta().path(),
                actor.id = self.meta().id.get(),
                %failure,
                "actor failed"
            );
        }
    }

    fn log_hook_panic(&self, hook: &str, failure: &Failure) {
        self.system().counters.panics.fetch_add(1, Relaxed);
        tracing::warn!(
            target: "postbox::actor",
            actor = %self.meta().path(),
            hook,
            %failure,
            "lifecycle hook panicked"
        );
    }
}

impl<A: Actor> Drop for Runner<A> {
    fn drop(&mut self) {
        // The task was dropped before terminating (its runtime shut down): still release the
        // actor's identity, dead-letter its mailbox and tell its watchers.
        if !self.terminated {
            self.consumer.close();
            self.finish(ExitReason::Shutdown);
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

/// Runs a lifecycle hook (or any user future) under [`poll_guarded`].
async fn guarded<F: Future, A: Actor>(
    future: F,
    consumer: &ActorConsumer<A>,
) -> Outcome<F::Output> {
    let mut future = pin!(Some(future));
    poll_fn(|cx| poll_guarded(future.as_mut(), cx, consumer)).await
}

/// Polls user code under `catch_unwind`, giving up at the next pending poll once an interrupt
/// (kill or abort) is set. On completion, a panic or an interrupt the future is dropped right
/// here — in the last two cases with the matching answer for any asker whose reply handle it
/// owned. Returns `Interrupted` if polled again after that.
fn poll_guarded<F: Future, A: Actor>(
    mut future: Pin<&mut Option<F>>,
    cx: &mut std::task::Context<'_>,
    consumer: &ActorConsumer<A>,
) -> Poll<Outcome<F::Output>> {
    let Some(running) = future.as_mut().as_pin_mut() else {
        return Poll::Ready(Outcome::Interrupted);
    };
    let (outcome, reason) = match catch_unwind(AssertUnwindSafe(|| running.poll(cx))) {
        Ok(Poll::Ready(value)) => {
            future.set(None);
            return Poll::Ready(Outcome::Done(value));
        }
        Ok(Poll::Pending) => {
            consumer.on_user_code_pending(cx);
            if consumer.interrupts() == 0 {
                return Poll::Pending;
            }
            (Outcome::Interrupted, AskError::Stopped)
        }
        Err(panic) => (
            Outcome::Panicked(Failure::from_panic(&*panic)),
            AskError::Panicked,
        ),
    };
    // The future's destructor is user code too.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        with_abandon_reason(reason, || future.set(None));
    }));
    Poll::Ready(outcome)
}

/// Drops an actor instance, containing a panic in its destructor.
fn drop_quietly<A>(actor: A) {
    if catch_unwind(AssertUnwindSafe(move || drop(actor))).is_err() {
        tracing::warn!(target: "postbox::actor", "an actor's destructor panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle actor is one runner future in a Tokio task; keep it small (see the module
    /// docs). The bound leaves room for an actor of up to 64 bytes. Settings few actors use
    /// (watched set, dispatcher, breaker) share one boxed `Extras` in the context.
    #[test]
    fn an_idle_actor_s_task_state_stays_small() {
        struct Idle(#[allow(dead_code)] [u64; 8]);
        impl Actor for Idle {}
        let runtime = crate::testkit::runtime();
        let system = crate::ActorSystem::builder()
            .runtime(runtime.handle().clone())
            .build();
        let guardian = system
            .shared
            .guardian
            .get()
            .and_then(std::sync::Weak::upgrade);
        let guardian = guardian.expect("the guardian is running");
        let prepared =
            prepare(&system.shared, guardian, Props::new(|| Idle([0; 8]))).expect("spawn");
        let future = prepared.runner.run();
        let size = std::mem::size_of_val(&future);
        assert!(size <= 320, "runner future is {size} bytes");
        drop(future);
    }
}

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

use crate::actor::{Actor, ActorId};
use crate::actor_ref::ActorRef;
use crate::ask::{abandon, with_abandon_reason};
use crate::cell::{
    ActorCell, ActorMeta, ActorStatus, AnyCell, Signal, Stats, Supervision, SystemSignal,
    WatchNotify, Watcher,
};
use crate::context::{Context, Request};
use crate::dead_letters::DeadLetterReason;
use crate::envelope::Envelope;
use crate::error::{AskError, SpawnError};
use crate::lifecycle::{ExitReason, Failure};
use crate::mailbox::{Consumer, Inbox, Mailbox, Received, INTERRUPT_ABORT, INTERRUPT_KILL};
use crate::props::Props;
use crate::slot::HandlerSlot;
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

/// Result of running user code under [`guarded`].
enum Outcome<T> {
    Done(T),
    Panicked(Failure),
    Interrupted,
}

type ActorConsumer<A> = Consumer<Envelope<A>, Signal<A>>;

/// An actor ready to be started: created, registered, not yet running.
pub(crate) struct Prepared<A: Actor> {
    pub(crate) actor_ref: ActorRef<A>,
    runner: Runner<A>,
    restart: Restart,
    shutdown_timeout: Duration,
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

    /// Starts the actor's task.
    pub(crate) fn start(self) {
        let runtime = self.runner.cell.meta.system.runtime.clone();
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
            system: system.clone(),
            stats: Stats::default(),
        },
    });
    system.actors.insert(id, cell.clone());
    system.counters.started.fetch_add(1, Relaxed);
    let runner = Runner::new(
        cell.clone(),
        props.factory,
        props.restart,
        props.supervisor,
        true,
    );
    Ok(Prepared {
        actor_ref: ActorRef::from_cell(cell),
        runner,
        restart: props.restart,
        shutdown_timeout: props
            .shutdown_timeout
            .unwrap_or(system.config.shutdown_timeout),
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
            system: system.clone(),
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
    cell: Arc<ActorCell<A>>,
    consumer: ActorConsumer<A>,
    factory: Box<dyn FnMut() -> A + Send>,
    restart: Restart,
    ctx: Context<A>,
    slot: HandlerSlot,
    /// Who to notify when this actor terminates.
    watchers: Vec<Watcher>,
    /// `Terminated` notifications that arrived while no instance was running.
    deferred: Vec<Envelope<A>>,
    /// Reason of a drain in progress (`drain_and_stop` / shutdown).
    draining: Option<ExitReason>,
    /// Set once cleanup has run (the `Drop` guard checks it).
    terminated: bool,
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
        let consumer = unsafe { Consumer::new(cell.clone()) };
        let ctx = Context::new(
            ActorRef::from_cell(cell.clone()),
            Supervisor::new(strategy, escalate),
        );
        Self {
            cell,
            consumer,
            factory,
            restart,
            ctx,
            slot: HandlerSlot::new(),
            watchers: Vec::new(),
            deferred: Vec::new(),
            draining: None,
            terminated: false,
        }
    }

    fn meta(&self) -> &ActorMeta {
        &self.cell.meta
    }

    fn system(&self) -> &SystemShared {
        &self.cell.meta.system
    }

    fn set_status(&self, status: ActorStatus) {
        self.meta().stats.set_status(status);
    }

    async fn run(mut self) {
        let reason = self.life().await;
        self.terminate(reason).await;
    }

    async fn life(&mut self) -> ExitReason {
        loop {
            self.set_status(ActorStatus::Starting);
            let mut actor = match catch_unwind(AssertUnwindSafe(&mut self.factory)) {
                Ok(actor) => actor,
                Err(panic) => {
                    let failure = Failure::from_panic(&*panic);
                    match self.after_exit(None, failure).await {
                        Next::Restart => continue,
                        Next::Exit(reason) => return reason,
                    }
                }
            };
            match self.start_and_serve(&mut actor).await {
                End::Stopped { reason, drain } => {
                    self.stop_instance(Some(actor), &reason, drain).await;
                    return reason;
                }
                End::Aborted => {
                    drop_quietly(actor);
                    self.ctx.supervisor.abort_all();
                    self.wait_for_children().await;
                    return ExitReason::Shutdown;
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
                    match self.after_exit(instance, failure).await {
                        Next::Restart => continue,
                        Next::Exit(reason) => return reason,
                    }
                }
                End::Suspended(cause) => {
                    self.suspend(Some(actor), &cause).await;
                    match self.await_directive(None).await {
                        Next::Restart => continue,
                        Next::Exit(reason) => return reason,
                    }
                }
            }
        }
    }

    /// Runs `started`, reports a restart to the parent, then handles messages until the
    /// instance ends.
    async fn start_and_serve(&mut self, actor: &mut A) -> End {
        match guarded(actor.started(&mut self.ctx), &self.consumer).await {
            Outcome::Done(Ok(())) => {}
            Outcome::Done(Err(error)) => {
                return End::Failed {
                    failure: Failure::Error(Arc::from(error.to_string().as_str())),
                    keep_instance: true,
                }
            }
            Outcome::Panicked(failure) => {
                return End::Failed {
                    failure,
                    keep_instance: true,
                }
            }
            Outcome::Interrupted => return self.interrupted(),
        }
        if let Some(end) = self.take_request() {
            return end;
        }
        self.set_status(ActorStatus::Running);
        if self.ctx.incarnation > 0 {
            self.notify_parent(Supervision::ChildStarted {
                child: self.meta().id,
                incarnation: self.ctx.incarnation,
            });
        }
        for envelope in std::mem::take(&mut self.deferred) {
            if let Some(end) = self.handle(actor, envelope).await {
                return end;
            }
        }
        self.serve(actor).await
    }

    async fn serve(&mut self, actor: &mut A) -> End {
        loop {
            match self.receive().await {
                Received::Message(envelope) => {
                    if let Some(end) = self.handle(actor, envelope).await {
                        return end;
                    }
                }
                Received::Signals(signals) => {
                    for signal in signals {
                        if let Some(end) = self.on_signal(signal, actor).await {
                            return end;
                        }
                    }
                }
                Received::Interrupted => return self.interrupted(),
                Received::Drained => {
                    let reason = self.draining.take().unwrap_or(ExitReason::Stopped);
                    return End::Stopped {
                        reason,
                        drain: true,
                    };
                }
            }
        }
    }

    /// Next message or signal batch; meanwhile, enforces the deadline of a child being stopped.
    async fn receive(&mut self) -> Received<Envelope<A>, Signal<A>> {
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
    async fn handle(&mut self, actor: &mut A, envelope: Envelope<A>) -> Option<End> {
        let started = self.cell.meta.stats.sample_next().then(Instant::now);
        let mut running = Some(envelope.dispatch(actor, &mut self.ctx, &mut self.slot));
        let consumer = &self.consumer;
        // Polled in place (the handler future lives in the slot) rather than through a nested
        // async fn, which would move a large state machine on every message.
        let outcome = poll_fn(|cx| poll_guarded(Pin::new(&mut running), cx, consumer)).await;
        drop(running);
        self.cell
            .meta
            .stats
            .record_message(started.map(|t| t.elapsed()));
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
        match self.ctx.request.take()? {
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
        let bits = self.cell.inbox.interrupts();
        if bits & INTERRUPT_ABORT != 0 {
            End::Aborted
        } else {
            self.cell.inbox.clear_interrupts(INTERRUPT_KILL);
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
                    return self.handle(actor, envelope).await;
                }
                None
            }
            Signal::System(SystemSignal::Stop { drain, reason }) => {
                if drain && self.draining.is_none() {
                    self.consumer.close();
                    self.draining = Some(reason);
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
            SystemSignal::Watch(watcher) => self.watchers.push(watcher),
            SystemSignal::Unwatch { watcher } => self.watchers.retain(|w| w.watcher != watcher),
            SystemSignal::Supervision(signal) => {
                let default = &self.cell.meta.system.config.default_strategy;
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
                    if self.cell.inbox.interrupts() & INTERRUPT_ABORT != 0 {
                        if let Some(actor) = instance.take() {
                            drop_quietly(actor);
                        }
                        self.ctx.supervisor.abort_all();
                        self.wait_for_children().await;
                        return Next::Exit(ExitReason::Shutdown);
                    }
                    // Killing an actor that is already down changes nothing.
                    self.cell.inbox.clear_interrupts(INTERRUPT_KILL);
                }
                Received::Signals(signals) => {
                    for signal in signals {
                        match signal {
                            Signal::System(SystemSignal::Supervision(Supervision::Suspend {
                                cause,
                            })) => {
                                self.suspend(instance.take(), &cause).await;
                            }
                            Signal::System(SystemSignal::Supervision(Supervision::Start {
                                delay,
                            })) => {
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
                                self.stop_instance(instance.take(), &reason, false).await;
                                return Next::Exit(reason);
                            }
                            Signal::Terminated { from, envelope } => {
                                if self.ctx.take_watched(from) {
                                    self.deferred.push(envelope);
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
        if !delay.is_zero() {
            let mut sleep = pin!(tokio::time::sleep(delay));
            loop {
                let received = poll_fn(|cx| match self.consumer.poll_signals(cx, usize::MAX) {
                    Poll::Ready(received) => Poll::Ready(Some(received)),
                    Poll::Pending => sleep.as_mut().poll(cx).map(|()| None),
                })
                .await;
                let Some(received) = received else { break };
                match received {
                    Received::Interrupted => {
                        if self.cell.inbox.interrupts() & INTERRUPT_ABORT != 0 {
                            return Next::Exit(ExitReason::Shutdown);
                        }
                        self.cell.inbox.clear_interrupts(INTERRUPT_KILL);
                    }
                    Received::Signals(signals) => {
                        for signal in signals {
                            match signal {
                                Signal::System(SystemSignal::Stop { reason, .. })
                                | Signal::System(SystemSignal::Supervision(
                                    Supervision::Terminate { reason },
                                )) => return Next::Exit(reason),
                                Signal::Terminated { from, envelope } => {
                                    if self.ctx.take_watched(from) {
                                        self.deferred.push(envelope);
                                    }
                                }
                                Signal::System(signal) => {
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
            if self.cell.inbox.interrupts() & INTERRUPT_ABORT == 0 {
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
            self.cell.inbox.clear_interrupts(INTERRUPT_KILL);
            if !aborted && self.cell.inbox.interrupts() & INTERRUPT_ABORT != 0 {
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
                        self.deferred.push(envelope);
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

    fn dead_letter(&self, envelope: Envelope<A>) {
        self.system().dead_letters.record_envelope(
            self.meta().id,
            std::any::type_name::<A>(),
            &envelope,
            DeadLetterReason::DroppedAtStop,
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
        while let Some(envelope) = self.consumer.try_recv() {
            self.dead_letter(envelope);
        }
        for signal in self.consumer.close_signals() {
            match signal {
                Signal::System(SystemSignal::Watch(watcher)) => self.watchers.push(watcher),
                Signal::Terminated { envelope, .. } => self.dead_letter(envelope),
                Signal::System(_) => {}
            }
        }
        for envelope in std::mem::take(&mut self.deferred) {
            self.dead_letter(envelope);
        }
        self.release_identity();
        self.system().counters.stopped.fetch_add(1, Relaxed);
        let id = self.meta().id;
        for watcher in self.watchers.drain(..) {
            watcher.notify(id, reason.clone());
        }
        self.notify_parent(Supervision::ChildTerminated { child: id });
    }

    /// Removes the actor from the actor table, the registry and its parent's names.
    fn release_identity(&mut self) {
        let meta = &self.cell.meta;
        let system = &meta.system;
        system.registry.remove_actor(meta.id);
        if let (Some(name), Some(parent)) = (&meta.name, &meta.parent) {
            system
                .child_names
                .remove_if(&(parent.meta().id, name.clone()), |_, id| *id == meta.id);
        }
        system.actors.remove(&meta.id);
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

//! Stopping: the graceful end of an instance, waiting for children, and the final cleanup that
//! dead-letters what is left, releases the actor's identity and tells its watchers and parent.

use super::receive::Listen;
use super::user_code::{drop_quietly, guarded, Outcome};
use super::Runner;
use crate::actor::{Actor, ActorId};
use crate::ask::abandon;
use crate::cell::{ActorStatus, AnyCell, Signal, Supervision, SystemSignal, WatchNotify, Watcher};
use crate::dead_letters::DeadLetterReason;
use crate::error::AskError;
use crate::letter::Letter;
use crate::lifecycle::{ExitReason, Failure};
use crate::mailbox::{Drain, Received, INTERRUPT_ABORT, INTERRUPT_KILL};
use std::future::{poll_fn, Future};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::oneshot;

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

impl<A: Actor> Runner<A> {
    /// The graceful end of an instance: `stopping`, children stopped, `stopped`.
    pub(super) async fn stop_instance(
        &mut self,
        instance: Option<A>,
        reason: &ExitReason,
        drain: bool,
    ) {
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
            if self.cell().mailbox.interrupts() & INTERRUPT_ABORT == 0 {
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
    pub(super) async fn wait_for_children(&mut self) {
        let mut aborted = false;
        while !self.ctx.supervisor.is_empty() {
            // A kill changes nothing for an actor that is already winding down.
            self.cell().mailbox.clear_interrupts(INTERRUPT_KILL);
            if !aborted && self.cell().mailbox.interrupts() & INTERRUPT_ABORT != 0 {
                self.ctx.supervisor.abort_all();
                aborted = true;
            }
            // After reacting to an abort, stop listening for it (the bit stays set): the
            // children's terminations arrive as signals.
            let interrupts = if aborted { 0 } else { INTERRUPT_ABORT };
            match self.receive(Listen::Signals { interrupts }).await {
                Received::Interrupted => {}
                Received::Signals(signals) => self.absorb(signals),
                Received::Message(_) | Received::Drained => {
                    unreachable!("poll_signals yields only signals and interrupts")
                }
            }
        }
    }

    /// Signals that arrive while the actor is winding down.
    fn absorb(&mut self, signals: Drain<Signal<A>>) {
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
    pub(super) async fn terminate(&mut self, reason: ExitReason) {
        self.set_status(ActorStatus::Stopped);
        self.consumer.close();
        while let Some(envelope) = poll_fn(|cx| self.consumer.poll_remaining(cx)).await {
            self.dead_letter(envelope);
        }
        self.finish(reason);
    }

    /// A message that arrived while the actor was down, for an actor spawned with
    /// [`WhileDown::DeadLetter`](crate::WhileDown::DeadLetter).
    pub(super) fn drop_while_down(&self, envelope: Letter<A>) {
        self.meta().stats.record_skipped();
        self.dead_letter_for(envelope, DeadLetterReason::ActorDown);
    }

    fn dead_letter(&self, envelope: Letter<A>) {
        self.dead_letter_for(envelope, DeadLetterReason::DroppedAtStop);
    }

    fn dead_letter_for(&self, envelope: Letter<A>, reason: DeadLetterReason) {
        self.system().dead_letters.record_envelope(
            self.meta().id,
            std::any::type_name::<A>(),
            &envelope,
            reason,
        );
        abandon(envelope, AskError::Stopped);
    }

    /// The synchronous part of termination (also run by `Drop` if the task is cancelled).
    pub(super) fn finish(&mut self, reason: ExitReason) {
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
            .lifecycle
            .as_mut()
            .map(|state| std::mem::take(&mut state.watchers))
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
    pub(super) fn release_identity(&mut self) {
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

    pub(super) fn log_hook_panic(&self, hook: &str, failure: &Failure) {
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

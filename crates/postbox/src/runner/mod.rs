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
//! One [`Runner`], its methods split by concern:
//!
//! - this file: the runner's state and an actor's life (`run`, `life`): create an instance,
//!   start it, serve it, end it, over and over until the actor exits;
//! - `spawn.rs`: spawn preparation — the cell, the name, the actor-table entry, the executor
//!   ([`prepare`], [`Prepared::start`](spawn::Prepared::start)) — and the root guardian;
//! - `serve.rs`: the message loop of one instance, the one place a message is dispatched to
//!   its handler ([`Runner::start_handler`]) and the handler's end is recorded;
//! - `user_code.rs`: polling user code under `catch_unwind` and interrupts;
//! - `receive.rs`: the one receive loop that enforces the deadlines of children being stopped
//!   or suspended;
//! - `supervised.rs`: the child side of supervision — after a failure, the parent's
//!   directive, suspension, the delayed restart;
//! - `stop.rs`: the graceful stop of an instance, the final cleanup, dead letters.
//!
//! # Memory
//!
//! Every live actor is one of these tasks, and an `async fn` state machine is as large as its
//! largest suspension point. So only the message loop is awaited inline; every cold path
//! (lifecycle hooks, the restart protocol, stopping, cleanup, deadline-guarded waits) is
//! awaited through a `Box`, allocated only when that path runs. The runner keeps rarely used
//! state in a lazily allocated [`LifecycleState`]. Splitting the `impl Runner` blocks over
//! files changes no layout: a future's size depends on what it holds across awaits, not on
//! where its methods are written.

mod receive;
mod serve;
mod spawn;
mod stop;
mod supervised;
mod user_code;

pub(crate) use spawn::{prepare, start_guardian};
pub(crate) use stop::wait_for_termination;

use crate::actor::Actor;
use crate::backoff::WhileDown;
use crate::cell::{ActorCell, ActorMeta, ActorStatus, Signal, Supervision, SystemSignal, Watcher};
use crate::context::Context;
use crate::letter::Letter;
use crate::lifecycle::{ExitReason, Failure};
use crate::mailbox::{Consumer, Drain};
use crate::slot::HandlerSlot;
use crate::supervision::Restart;
use crate::system::SystemShared;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use user_code::{drop_quietly, guarded, Outcome};

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

type ActorConsumer<A> = Consumer<ActorCell<A>>;

/// Boxes a cold path's future, so that awaiting it keeps one pointer in the actor's task
/// instead of the whole state machine. (An `async fn` wrapper would not do: it would store
/// its unboxed argument in its own state.)
fn cold<F: Future>(future: F) -> Pin<Box<F>> {
    Box::pin(future)
}

pub(crate) struct Runner<A: Actor> {
    /// The mailbox's consumer token; also how the runner reaches its cell.
    consumer: ActorConsumer<A>,
    factory: Box<dyn FnMut() -> A + Send>,
    ctx: Context<A>,
    slot: HandlerSlot,
    /// Rarely used state, allocated on first use.
    lifecycle: Option<Box<LifecycleState<A>>>,
    restart: Restart,
    /// What becomes of user messages while the actor waits to be restarted.
    while_down: WhileDown,
    /// Set once cleanup has run (the `Drop` guard checks it).
    terminated: bool,
}

/// What the runner keeps about its actor's life that most actors never need: who watches it,
/// the `Terminated` notifications held back while no instance runs, and a drain in progress.
struct LifecycleState<A: Actor> {
    /// Who to notify when this actor terminates.
    watchers: Vec<Watcher>,
    /// `Terminated` notifications that arrived while no instance was running.
    deferred: Vec<Letter<A>>,
    /// Reason of a drain in progress (`drain_and_stop` / shutdown).
    draining: Option<ExitReason>,
}

impl<A: Actor> Runner<A> {
    fn cell(&self) -> &Arc<ActorCell<A>> {
        self.consumer.owner()
    }

    fn meta(&self) -> &ActorMeta {
        &self.cell().meta
    }

    fn system(&self) -> &SystemShared {
        &self.cell().meta.system.shared
    }

    fn lifecycle_mut(&mut self) -> &mut LifecycleState<A> {
        self.lifecycle.get_or_insert_with(|| {
            Box::new(LifecycleState {
                watchers: Vec::new(),
                deferred: Vec::new(),
                draining: None,
            })
        })
    }

    fn defer(&mut self, envelope: Letter<A>) {
        self.lifecycle_mut().deferred.push(envelope);
    }

    fn take_deferred(&mut self) -> Vec<Letter<A>> {
        self.lifecycle
            .as_mut()
            .map(|state| std::mem::take(&mut state.deferred))
            .unwrap_or_default()
    }

    /// Puts back the rest of a batch of signals when one of them ended the current state:
    /// they are handled by the next state (the final cleanup collects watchers from them), so
    /// a watch, a child's termination or a stop that arrived together with the ending signal
    /// is never lost.
    fn requeue(&self, signals: Drain<Signal<A>>) {
        for signal in signals {
            // The lane closes only in `finish`, after the runner stops receiving.
            let _ = self.cell().mailbox.send_signal(signal);
        }
    }

    fn set_status(&self, status: ActorStatus) {
        self.meta().stats.set_status(status);
    }

    fn notify_parent(&self, signal: Supervision) {
        if let Some(parent) = &self.meta().parent {
            let _ = parent.send_system(SystemSignal::Supervision(signal));
        }
    }

    /// Signals handled the same way whatever the actor is doing: watch registrations and
    /// supervision of children. Returns an escalation failure, if any.
    fn bookkeeping(&mut self, signal: SystemSignal) -> Option<Failure> {
        match signal {
            SystemSignal::Watch(watcher) => self.lifecycle_mut().watchers.push(watcher),
            SystemSignal::Unwatch { watcher } => {
                if let Some(state) = self.lifecycle.as_mut() {
                    state.watchers.retain(|w| w.watcher != watcher);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::props::Props;

    /// Every idle actor is one runner future in a Tokio task; keep it small (see the module
    /// docs). The bound leaves room for an actor of up to 64 bytes. Settings few actors use
    /// (watched set, dispatcher, breaker) share one boxed `WatchesAndSettings` in the context.
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

//! The context an actor's handlers and hooks run with.

use crate::actor::{Actor, ActorId, Handler};
use crate::actor_ref::{ActorRef, WatchTarget, Watchable};
use crate::breaker::CircuitBreaker;
use crate::cell::{SystemSignal, TerminatedSink, WatchNotify, Watcher};
use crate::dead_letters::DeadLetterReason;
use crate::dispatcher::Dispatcher;
use crate::error::SpawnError;
use crate::lifecycle::{ExitReason, Failure, Terminated};
use crate::props::Props;
use crate::supervision::Supervisor;
use crate::system::ActorSystem;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// What the running actor asked for during a handler or hook; applied after it returns.
#[derive(Debug)]
pub(crate) enum Request {
    Stop,
    Fail(Failure),
}

/// An actor's view of itself and the runtime: its reference, its children, death watch, and
/// the means to stop or fail itself. Passed to every handler and lifecycle hook.
pub struct Context<A: Actor> {
    myself: ActorRef<A>,
    /// Boxed: it lives in every actor's context and is rarely set.
    pub(crate) request: Option<Box<Request>>,
    pub(crate) incarnation: u32,
    pub(crate) supervisor: Supervisor,
    /// What few actors use. Boxed on purpose: every idle actor carries its context, so one
    /// pointer beats the inline fields (an empty set alone is six words).
    pub(crate) watches_and_settings: Option<Box<WatchesAndSettings>>,
    /// Set once the actor begins to stop: no new children.
    pub(crate) stopping: bool,
}

/// The part of a context few actors use: whom the actor watches, and the dispatcher and
/// breaker its props gave it.
#[derive(Default)]
pub(crate) struct WatchesAndSettings {
    /// Actors this actor watches; `Terminated` from others is dropped (it may race an unwatch).
    pub(crate) watching: HashSet<ActorId>,
    /// The dispatcher this actor runs on, which its children inherit (for a blocking actor:
    /// the one its children run on). `None`: the system's runtime. Held here, by the actor's
    /// own task, it keeps the dispatcher's runtime alive exactly as long as the actor runs.
    pub(crate) dispatcher: Option<Dispatcher>,
    /// The breaker its props gave it: one per actor, kept across restarts.
    pub(crate) breaker: Option<CircuitBreaker>,
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(myself: ActorRef<A>, supervisor: Supervisor) -> Self {
        Self {
            myself,
            request: None,
            incarnation: 0,
            supervisor,
            watches_and_settings: None,
            stopping: false,
        }
    }

    fn watches_and_settings(&mut self) -> &mut WatchesAndSettings {
        self.watches_and_settings
            .get_or_insert_with(Default::default)
    }

    /// The dispatcher this actor runs on (`None`: the system's runtime).
    pub(crate) fn dispatcher(&self) -> Option<&Dispatcher> {
        self.watches_and_settings.as_ref()?.dispatcher.as_ref()
    }

    /// The circuit breaker given to this actor with
    /// [`Props::circuit_breaker`](crate::Props::circuit_breaker), for its calls to the
    /// dependency it guards. The same breaker serves every incarnation, so a restart does not
    /// forget that the dependency is down.
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker> {
        self.watches_and_settings.as_ref()?.breaker.as_ref()
    }

    /// A reference to this actor.
    pub fn myself(&self) -> &ActorRef<A> {
        &self.myself
    }

    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.myself.id()
    }

    /// This actor's path, e.g. `/user/bank/account-42`.
    pub fn path(&self) -> String {
        self.myself.path()
    }

    /// The system this actor runs in.
    pub fn system(&self) -> &ActorSystem {
        &self.myself.cell().meta.system
    }

    /// This actor's [`InFlight`](crate::InFlight) counter: messages it has handed on
    /// elsewhere and not finished, published as part of its depth (see the type's docs).
    /// Created on the first call; every incarnation of the actor gets the same one.
    pub fn in_flight(&mut self) -> crate::InFlight {
        let counter = self.system().shared.in_flight.publish(self.id());
        // Published after the counter exists, so a reader that sees the flag finds it.
        self.myself.cell().meta.stats.set_publishes_in_flight();
        counter
    }

    /// How many times this actor has been restarted (0 for the first instance).
    pub fn restarts(&self) -> u32 {
        self.incarnation
    }

    /// Spawns a child supervised by this actor with this actor's
    /// [`SupervisorStrategy`](crate::SupervisorStrategy). Children are stopped before their
    /// parent, in reverse start order. A child whose props choose no
    /// [`dispatcher`](Props::dispatcher) runs on this actor's.
    pub fn spawn<C: Actor>(
        &mut self,
        props: impl Into<Props<C>>,
    ) -> Result<ActorRef<C>, SpawnError> {
        if self.stopping {
            return Err(SpawnError::ParentStopping);
        }
        let parent: Arc<dyn crate::cell::AnyCell> = self.myself.cell().clone();
        let system = self.myself.cell().meta.system.shared.clone();
        let mut props = props.into();
        if props.dispatcher.is_none() {
            // Children inherit the dispatcher (never `blocking`); see `dispatcher.rs`.
            props.dispatcher = self.dispatcher().cloned();
        }
        let prepared = crate::runner::prepare(&system, parent, props)?;
        let child = prepared.actor_ref.clone();
        self.supervisor.add_child(prepared.record());
        prepared.start();
        Ok(child)
    }

    /// Ids of this actor's live children, in start order.
    pub fn children(&self) -> Vec<ActorId> {
        self.supervisor.child_ids()
    }

    /// Watches `target`: when it terminates, this actor receives a [`Terminated`] message
    /// (delivered on the priority lane). Watching an actor that has already terminated delivers
    /// `Terminated` with [`ExitReason::AlreadyTerminated`] at once. Watching twice is the same
    /// as once.
    pub fn watch<T: Watchable + ?Sized>(&mut self, target: &T)
    where
        A: Handler<Terminated>,
    {
        let WatchTarget(cell) = target.watch_target();
        let id = cell.meta().id;
        if id == self.id() {
            return;
        }
        if !self.watches_and_settings().watching.insert(id) {
            return;
        }
        let sink: Arc<dyn TerminatedSink> = self.myself.cell().clone();
        let watcher = Watcher {
            watcher: self.id(),
            notify: WatchNotify::Actor(sink),
        };
        if let Err(SystemSignal::Watch(watcher)) = cell.send_system(SystemSignal::Watch(watcher)) {
            watcher.notify(id, ExitReason::AlreadyTerminated);
        }
    }

    /// Stops watching `target`. No `Terminated` from it is delivered afterwards, even if it
    /// terminated concurrently.
    pub fn unwatch<T: Watchable + ?Sized>(&mut self, target: &T) {
        let WatchTarget(cell) = target.watch_target();
        let id = cell.meta().id;
        if let Some(state) = &mut self.watches_and_settings {
            if state.watching.remove(&id) {
                let _ = cell.send_system(SystemSignal::Unwatch { watcher: self.id() });
            }
        }
    }

    /// Whether this actor currently watches `id`.
    pub fn is_watching(&self, id: ActorId) -> bool {
        self.watches_and_settings
            .as_ref()
            .is_some_and(|state| state.watching.contains(&id))
    }

    /// Consumes a `Terminated` for `from`: true if it is still watched (and then no longer is).
    pub(crate) fn take_watched(&mut self, from: ActorId) -> bool {
        self.watches_and_settings
            .as_mut()
            .is_some_and(|state| state.watching.remove(&from))
    }

    /// Stops this actor after the current handler returns (a normal exit). Queued messages
    /// become dead letters. Permanent children of a supervisor are restarted even after a normal
    /// exit (Erlang semantics); transient and temporary ones are not.
    pub fn stop(&mut self) {
        if self.request.is_none() {
            self.request = Some(Box::new(Request::Stop));
        }
    }

    /// Fails this actor after the current handler returns, as if it had panicked with
    /// `reason`: its supervisor applies its strategy.
    pub fn fail(&mut self, reason: impl fmt::Display) {
        self.request = Some(Box::new(Request::Fail(Failure::Error(Arc::from(
            reason.to_string().as_str(),
        )))));
    }

    /// Counts a reply that could not be delivered because the asker gave up.
    pub(crate) fn reply_undeliverable<R>(&self) {
        self.system().shared.dead_letters.record(crate::DeadLetter {
            recipient: self.id(),
            recipient_type: std::any::type_name::<A>(),
            message_type: std::any::type_name::<R>(),
            reason: DeadLetterReason::ReplyUndeliverable,
        });
    }
}

impl<A: Actor> fmt::Debug for Context<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("actor", &self.myself)
            .field("restarts", &self.incarnation)
            .field("children", &self.supervisor.len())
            .finish_non_exhaustive()
    }
}

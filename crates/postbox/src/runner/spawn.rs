//! Spawn preparation: an actor's cell, name and actor-table entry, its runner, and the
//! executor its task starts on; and the root guardian.

use super::Runner;
use crate::actor::Actor;
use crate::actor_ref::ActorRef;
use crate::backoff::WhileDown;
use crate::cell::{ActorCell, ActorMeta, AnyCell, Stats};
use crate::context::{Context, WatchesAndSettings};
use crate::dispatcher::PinnedThread;
use crate::error::SpawnError;
use crate::mailbox::{Consumer, Mailbox, MailboxCapacity};
use crate::props::Props;
use crate::slot::HandlerSlot;
use crate::supervision::{ChildRecord, Restart, Supervisor};
use crate::system::{Guardian, SystemShared};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// An actor ready to be started: created, registered, not yet running.
pub(crate) struct Prepared<A: Actor> {
    pub(crate) actor_ref: ActorRef<A>,
    pub(super) runner: Runner<A>,
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
        mailbox: Mailbox::new(props.mailbox.unwrap_or(system.config.default_mailbox)),
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
        runner.ctx.watches_and_settings = Some(Box::new(WatchesAndSettings {
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
        mailbox: Mailbox::new(MailboxCapacity::bounded(1)),
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

impl<A: Actor> Runner<A> {
    fn new(
        cell: Arc<ActorCell<A>>,
        factory: Box<dyn FnMut() -> A + Send>,
        restart: Restart,
        strategy: Option<crate::SupervisorStrategy>,
        escalate: bool,
    ) -> Self {
        let ctx = Context::new(
            ActorRef::from_cell(cell.clone()),
            Supervisor::new(strategy, escalate),
        );
        // SAFETY: this runner is the only consumer ever created for this cell's mailbox: cells
        // are created together with exactly one runner (in `prepare` / `start_guardian`).
        let consumer = unsafe { Consumer::new(cell) };
        Self {
            consumer,
            factory,
            ctx,
            slot: HandlerSlot::new(),
            lifecycle: None,
            restart,
            while_down: WhileDown::Keep,
            terminated: false,
        }
    }
}

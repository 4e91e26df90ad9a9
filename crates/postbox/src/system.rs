//! The actor system: root guardian, actor table, registry, dead letters, shutdown.

use crate::actor::{Actor, ActorId};
use crate::actor_ref::ActorRef;
use crate::cell::{ActorStats, AnyCell, Supervision, SystemSignal};
use crate::dead_letters::{DeadLetterReason, DeadLetters};
use crate::deadline::AskTimers;
use crate::error::SpawnError;
use crate::lifecycle::ExitReason;
use crate::mailbox::{MailboxCapacity, INTERRUPT_ABORT};
use crate::observe::{Observer, ObserverAlreadySet};
use crate::props::Props;
use crate::registry::Registry;
use crate::supervision::SupervisorStrategy;
use dashmap::DashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// System-wide settings. Build one with [`ActorSystem::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SystemConfig {
    /// Shown in logs and paths of diagnostics. Default `"postbox"`.
    pub name: String,
    /// Mailbox of actors whose props do not choose one. Default: bounded, 1024.
    pub default_mailbox: MailboxCapacity,
    /// Deadline of asks without an explicit `.timeout(..)`. Default 30 s, so an ask whose
    /// handler never finishes still resolves.
    pub ask_timeout: Duration,
    /// Strategy of supervisors that do not choose one, including the root guardian.
    /// Default: one-for-one, 3 restarts within 5 s, no backoff.
    pub default_strategy: SupervisorStrategy,
    /// How long a parent waits for a child to stop before aborting it. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Deadline of [`ActorSystem::shutdown`]; actors still running then are aborted. Default 10 s.
    pub shutdown_deadline: Duration,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            name: "postbox".into(),
            default_mailbox: MailboxCapacity::default(),
            ask_timeout: Duration::from_secs(30),
            default_strategy: SupervisorStrategy::default(),
            shutdown_timeout: Duration::from_secs(5),
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

/// Builds an [`ActorSystem`].
#[derive(Debug, Default)]
pub struct ActorSystemBuilder {
    config: SystemConfig,
    runtime: Option<tokio::runtime::Handle>,
}

impl ActorSystemBuilder {
    /// See [`SystemConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`SystemConfig::default_mailbox`].
    pub fn default_mailbox(mut self, mailbox: MailboxCapacity) -> Self {
        self.config.default_mailbox = mailbox;
        self
    }

    /// See [`SystemConfig::ask_timeout`].
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.config.ask_timeout = timeout;
        self
    }

    /// See [`SystemConfig::default_strategy`].
    pub fn default_strategy(mut self, strategy: SupervisorStrategy) -> Self {
        self.config.default_strategy = strategy;
        self
    }

    /// See [`SystemConfig::shutdown_timeout`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// See [`SystemConfig::shutdown_deadline`].
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.config.shutdown_deadline = deadline;
        self
    }

    /// Runs the actors on `handle` instead of the runtime the system is built in.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Starts the system.
    ///
    /// # Panics
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) handle was given, like
    /// `tokio::spawn`.
    pub fn build(self) -> ActorSystem {
        let runtime = self.runtime.unwrap_or_else(|| {
            tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
                panic!("ActorSystem must be built inside a Tokio runtime or given one with .runtime(handle)")
            })
        });
        let shared = Arc::new(SystemShared {
            config: self.config,
            next_id: AtomicU64::new(1),
            actors: DashMap::new(),
            child_names: DashMap::new(),
            registry: Registry::default(),
            dead_letters: DeadLetters::new(),
            guardian: OnceLock::new(),
            ask_timers: AskTimers::start(&runtime),
            runtime,
            shutting_down: AtomicBool::new(false),
            counters: Counters::default(),
            observer: OnceLock::new(),
            in_flight: Default::default(),
        });
        crate::runner::start_guardian(&shared);
        ActorSystem { shared }
    }
}

/// Lifetime counters of a system (all monotonic).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) started: AtomicU64,
    pub(crate) stopped: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) panics: AtomicU64,
}

/// A snapshot of the system's lifetime counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SystemCounters {
    /// Actors spawned.
    pub actors_started: u64,
    /// Actors terminated.
    pub actors_stopped: u64,
    /// Restarts performed by supervisors.
    pub restarts: u64,
    /// Panics caught in handlers and hooks.
    pub panics: u64,
    /// Asks that gave up at their deadline ([`AskError::Timeout`](crate::AskError::Timeout)).
    pub ask_timeouts: u64,
}

pub(crate) struct SystemShared {
    pub(crate) config: SystemConfig,
    pub(crate) next_id: AtomicU64,
    /// Every live actor by id (the guardian included).
    pub(crate) actors: DashMap<ActorId, Arc<dyn AnyCell>>,
    /// Names taken among the children of each parent.
    pub(crate) child_names: DashMap<(ActorId, Arc<str>), ActorId>,
    pub(crate) registry: Registry,
    pub(crate) dead_letters: DeadLetters,
    /// Weak: the guardian's own task keeps it alive; the system must not (that would be a
    /// reference cycle through the guardian's `meta.system`).
    pub(crate) guardian: OnceLock<Weak<dyn AnyCell>>,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Deadlines of pending asks, enforced by one sweeper.
    pub(crate) ask_timers: Arc<AskTimers>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) counters: Counters,
    /// Receives per-message samples (`observe` module); set at most once.
    pub(crate) observer: OnceLock<Arc<dyn Observer>>,
    /// Messages actors have handed on elsewhere, counted in their depth (`in_flight.rs`).
    pub(crate) in_flight: crate::in_flight::InFlightTable,
}

impl SystemShared {
    pub(crate) fn next_id(&self) -> ActorId {
        ActorId(self.next_id.fetch_add(1, Relaxed))
    }
}

/// A handle to a running actor system. Cheap to clone; all clones are the same system.
///
/// ```
/// use postbox::prelude::*;
///
/// struct Hello;
/// impl Actor for Hello {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), SpawnError> {
/// let system = ActorSystem::new();
/// let hello = system.spawn(Props::new(|| Hello).name("hello"))?;
/// assert_eq!(hello.path(), "/user/hello");
/// let report = system.shutdown().await;
/// assert!(report.completed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ActorSystem {
    pub(crate) shared: Arc<SystemShared>,
}

impl ActorSystem {
    /// A system with the default [`SystemConfig`], running on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime (see [`ActorSystemBuilder::build`]).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to configure the system.
    pub fn builder() -> ActorSystemBuilder {
        ActorSystemBuilder::default()
    }

    pub(crate) fn from_shared(shared: Arc<SystemShared>) -> Self {
        Self { shared }
    }

    /// The configuration the system runs with.
    pub fn config(&self) -> &SystemConfig {
        &self.shared.config
    }

    /// Spawns a top-level actor, supervised by the root guardian.
    ///
    /// Fails if the system is shutting down or a top-level actor already has the name.
    pub fn spawn<A: Actor>(&self, props: impl Into<Props<A>>) -> Result<ActorRef<A>, SpawnError> {
        if self.shared.shutting_down.load(Acquire) {
            return Err(SpawnError::ShuttingDown);
        }
        let guardian = self
            .shared
            .guardian
            .get()
            .and_then(Weak::upgrade)
            .ok_or(SpawnError::ShuttingDown)?;
        let prepared = crate::runner::prepare(&self.shared, guardian.clone(), props.into())?;
        if guardian
            .send_system(SystemSignal::Supervision(Supervision::Adopt(
                prepared.record(),
            )))
            .is_err()
        {
            prepared.cancel();
            return Err(SpawnError::ShuttingDown);
        }
        let actor = prepared.actor_ref.clone();
        prepared.start();
        Ok(actor)
    }

    /// The named registry.
    pub fn registry(&self) -> &crate::Registry {
        &self.shared.registry
    }

    /// The dead-letter office: counts by reason and a subscription.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.shared.dead_letters
    }

    /// Number of live actors (the root guardian included).
    pub fn actor_count(&self) -> usize {
        self.shared.actors.len()
    }

    /// A snapshot of one live actor.
    pub fn actor(&self, id: ActorId) -> Option<ActorInfo> {
        self.shared
            .actors
            .get(&id)
            .map(|cell| ActorInfo::of(&**cell))
    }

    /// A snapshot of every live actor (O(number of actors)).
    pub fn actors(&self) -> Vec<ActorInfo> {
        self.shared
            .actors
            .iter()
            .map(|cell| ActorInfo::of(&**cell.value()))
            .collect()
    }

    /// Depth of a live actor, by id: its mailbox plus what it has in flight (see
    /// [`InFlight`](crate::InFlight)). O(1).
    pub fn depth(&self, id: ActorId) -> Option<usize> {
        self.shared.actors.get(&id).map(|cell| cell.depth())
    }

    /// Lifetime counters.
    pub fn counters(&self) -> SystemCounters {
        let c = &self.shared.counters;
        SystemCounters {
            actors_started: c.started.load(Relaxed),
            actors_stopped: c.stopped.load(Relaxed),
            restarts: c.restarts.load(Relaxed),
            panics: c.panics.load(Relaxed),
            ask_timeouts: self.shared.ask_timers.timeouts(),
        }
    }

    /// Installs the observer that receives per-message samples (handler times, mailbox
    /// waits) and actor terminations; see [`Observer`]. A system has at most
    /// one: if it already has one, `observer` is handed back.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) -> Result<(), ObserverAlreadySet> {
        self.shared
            .observer
            .set(observer)
            .map_err(ObserverAlreadySet)?;
        crate::observe::enable_wait_sampling();
        Ok(())
    }

    /// Whether an observer is installed.
    pub fn has_observer(&self) -> bool {
        self.shared.observer.get().is_some()
    }

    /// Calls `visit` with a borrowed view of every live actor (the root guardian included),
    /// without allocating per actor: the way to aggregate over a million actors.
    ///
    /// The walk holds read locks on parts of the actor table while `visit` runs, so `visit`
    /// must be quick and must not spawn actors (that could deadlock); collect what you need
    /// and act afterwards. Actors spawned or stopped during the walk may or may not be seen.
    pub fn for_each_actor(&self, mut visit: impl FnMut(ActorView<'_>)) {
        for entry in self.shared.actors.iter() {
            visit(ActorView {
                cell: &**entry.value(),
            });
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Acquire)
    }

    /// Shuts down gracefully within [`SystemConfig::shutdown_deadline`].
    pub async fn shutdown(&self) -> ShutdownReport {
        self.shutdown_within(self.shared.config.shutdown_deadline)
            .await
    }

    /// Shuts down gracefully: refuses new top-level actors, then stops the top-level actors one
    /// at a time in reverse start order. Each one stops accepting messages, handles what is
    /// already in its mailbox, runs its `stopping` hook, stops its own children the same way
    /// (children before parents, reverse start order) and runs `stopped`. Actors still running
    /// at the deadline are aborted; what they left in their mailboxes becomes dead letters.
    /// Calling it again (or concurrently) waits for the same shutdown.
    pub async fn shutdown_within(&self, deadline: Duration) -> ShutdownReport {
        let started = tokio::time::Instant::now();
        let stopped_before = self.shared.counters.stopped.load(Relaxed);
        let dropped_before = self
            .shared
            .dead_letters
            .count(DeadLetterReason::DroppedAtStop);
        self.shared.shutting_down.store(true, Release);

        let mut aborted = Vec::new();
        let mut actors_aborted = 0;
        let mut completed = true;
        if let Some(guardian) = self.shared.guardian.get().and_then(Weak::upgrade) {
            let done = crate::runner::wait_for_termination(&guardian);
            let _ = guardian.send_system(SystemSignal::Stop {
                drain: true,
                reason: ExitReason::Shutdown,
            });
            drop(guardian);
            tokio::pin!(done);
            if tokio::time::timeout(deadline, &mut done).await.is_err() {
                completed = false;
                for cell in self.shared.actors.iter() {
                    if cell.meta().parent.is_some() {
                        actors_aborted += 1;
                        if aborted.len() < REPORTED_PATHS {
                            aborted.push(cell.meta().path());
                        }
                    }
                    cell.interrupt(INTERRUPT_ABORT);
                }
                aborted.sort();
                // Aborted actors terminate at their next `.await`; one stuck in a blocking loop
                // never does, and is reported instead of hanging the shutdown.
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut done).await;
            }
        }
        let unresponsive = self
            .shared
            .actors
            .iter()
            .take(REPORTED_PATHS)
            .map(|cell| cell.meta().path())
            .collect();
        ShutdownReport {
            elapsed: started.elapsed(),
            completed,
            actors_stopped: self.shared.counters.stopped.load(Relaxed) - stopped_before,
            actors_aborted,
            aborted,
            unresponsive,
            messages_dropped: self
                .shared
                .dead_letters
                .count(DeadLetterReason::DroppedAtStop)
                - dropped_before,
        }
    }
}

impl Default for ActorSystem {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ActorSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorSystem")
            .field("name", &self.shared.config.name)
            .field("actors", &self.shared.actors.len())
            .finish_non_exhaustive()
    }
}

/// What [`ActorSystem::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// How long the shutdown took.
    pub elapsed: Duration,
    /// Every actor stopped gracefully before the deadline.
    pub completed: bool,
    /// Actors that terminated during this shutdown (the root guardian included).
    pub actors_stopped: u64,
    /// Actors still running at the deadline, which were aborted.
    pub actors_aborted: u64,
    /// Paths of (at most 100 of) the aborted actors, sorted.
    pub aborted: Vec<String>,
    /// Paths of (at most 100) actors that had not terminated when the shutdown returned (stuck
    /// in blocking code that never yields).
    pub unresponsive: Vec<String>,
    /// Messages left in mailboxes and turned into dead letters during the shutdown.
    pub messages_dropped: u64,
}

/// How many paths a [`ShutdownReport`] lists (a million aborted actors are a count, not a list).
const REPORTED_PATHS: usize = 100;

/// A snapshot of one actor, from the system's actor table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActorInfo {
    /// Its id.
    pub id: ActorId,
    /// Its parent's id (`None` for the root guardian).
    pub parent: Option<ActorId>,
    /// Its path.
    pub path: String,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Its Rust type name.
    pub actor_type: &'static str,
    /// Mailbox depth, counters, status.
    pub stats: ActorStats,
}

impl ActorInfo {
    fn of(cell: &dyn AnyCell) -> Self {
        let meta = cell.meta();
        Self {
            id: meta.id,
            parent: meta.parent.as_ref().map(|p| p.meta().id),
            path: meta.path(),
            name: meta.name.as_ref().map(|n| n.to_string()),
            actor_type: cell.actor_type(),
            stats: cell.stats(),
        }
    }
}

/// A borrowed view of one live actor, handed out by [`ActorSystem::for_each_actor`]. Reading
/// it allocates nothing, except [`path`](Self::path).
#[derive(Clone, Copy)]
pub struct ActorView<'a> {
    cell: &'a dyn AnyCell,
}

impl<'a> ActorView<'a> {
    /// Its id.
    pub fn id(&self) -> ActorId {
        self.cell.meta().id
    }

    /// Its parent's id (`None` for the root guardian).
    pub fn parent(&self) -> Option<ActorId> {
        self.cell.meta().parent.as_ref().map(|p| p.meta().id)
    }

    /// Its name, if it was given one at spawn.
    pub fn name(&self) -> Option<&'a str> {
        self.cell.meta().name.as_deref()
    }

    /// Its Rust type name.
    pub fn actor_type(&self) -> &'static str {
        self.cell.actor_type()
    }

    /// Its depth: the mailbox plus what it has in flight (see [`InFlight`](crate::InFlight)).
    /// O(1).
    pub fn depth(&self) -> usize {
        self.cell.depth()
    }

    /// Its mailbox depth, counters and status.
    pub fn stats(&self) -> ActorStats {
        self.cell.stats()
    }

    /// Its path (allocates: computed from the names up the parent chain).
    pub fn path(&self) -> String {
        self.cell.meta().path()
    }

    /// A full snapshot, as [`ActorSystem::actor`] returns it.
    pub fn info(&self) -> ActorInfo {
        ActorInfo::of(self.cell)
    }
}

impl fmt::Debug for ActorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorView")
            .field("id", &self.id())
            .field("actor_type", &self.actor_type())
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

/// The root guardian: parent of all top-level actors. It has no handlers.
pub(crate) struct Guardian;

impl Actor for Guardian {}

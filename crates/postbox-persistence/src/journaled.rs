//! Event sourcing: [`Journaled`], an actor's state kept as the events that built it.
//!
//! # The model (Akka's `EventSourcedBehavior`, in postbox's terms)
//!
//! * A **state** type implements [`EventSourced`]: its event type, and how an event changes
//!   it ([`EventSourced::apply`], pure and infallible: no I/O, no randomness, no clock — it
//!   runs again at every recovery and must give the same state).
//! * The actor keeps a [`Journaled<S>`] and calls [`Journaled::recover`] in
//!   [`Actor::started`]. `started` runs before the first message of
//!   every instance — after spawn and after every supervised restart — and messages that
//!   arrive meanwhile wait in the mailbox, in order. Recovery reads the latest snapshot, then
//!   the events after it, and applies them.
//! * A handler decides, then calls [`Journaled::persist`] (or
//!   [`persist_all`](Journaled::persist_all) for several events stored atomically). When it
//!   returns `Ok`, the events are **durable** (committed by the store: fsynced) **and
//!   applied** to the state, and the handler may reply: a reply after `persist` means
//!   *accepted*.
//! * When a persist fails, nothing is applied and the error comes back to the handler, which
//!   returns it to the asker (use `Result<_, PersistError>` replies). The actor itself does
//!   not carry on with a state the store may disagree with: on a store failure it **fails**
//!   after the handler returns (its supervisor restarts it and the new instance recovers
//!   what the store holds); on a [`PersistError::Conflict`] — another live instance of the
//!   same id wrote first — it **stops**. Any further persist of that instance returns the
//!   same error without writing. Spawn persistent actors with
//!   [`Restart::Transient`](postbox::Restart::Transient) (or under a
//!   [`BackoffSupervisor::on_failure`](postbox::BackoffSupervisor::on_failure)): failures
//!   are restarted, and the stop after a conflict is final. A permanent child is restarted
//!   even after it stops itself, and would recover and compete with the other instance again.
//!
//! ```
//! use postbox::prelude::*;
//! use postbox_persistence::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! enum CounterEvent { Added(u64) }
//! impl Versioned for CounterEvent { const TAG: &'static str = "counter.event"; }
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Total(u64);
//! impl Versioned for Total { const TAG: &'static str = "counter.total"; }
//! impl EventSourced for Total {
//!     type Event = CounterEvent;
//!     fn apply(&mut self, CounterEvent::Added(n): &CounterEvent) { self.0 += n; }
//! }
//!
//! struct Counter { total: Journaled<Total> }
//! impl Actor for Counter {
//!     async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
//!         self.total.recover().await?;
//!         Ok(())
//!     }
//! }
//!
//! struct Add(u64);
//! impl Message for Add { type Reply = Result<u64, PersistError>; }
//! impl Handler<Add> for Counter {
//!     async fn handle(&mut self, Add(n): Add, ctx: &mut Context<Self>) -> Result<u64, PersistError> {
//!         self.total.persist(ctx, CounterEvent::Added(n)).await?;
//!         Ok(self.total.state().0) // durable and applied
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let system = ActorSystem::new();
//! let persistence = Persistence::in_memory();
//! let spawn = |p: Persistence| {
//!     Props::new(move || Counter { total: p.journaled(PersistenceId::of("counter", "a")) })
//!         .restart(Restart::Transient)
//! };
//! let counter = system.spawn(spawn(persistence.clone()))?;
//! assert_eq!(counter.ask(Add(40)).await??, 40);
//! counter.stop();
//! # counter.wait_for_stop().await;
//!
//! let again = system.spawn(spawn(persistence.clone()))?; // recovers 40 first
//! assert_eq!(again.ask(Add(2)).await??, 42);
//! # system.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Snapshots
//!
//! A snapshot stores the whole state as of a sequence number, so that recovery reads it and
//! only the events after it. Take one on demand ([`Journaled::snapshot`]) or every N events
//! ([`SnapshotPolicy`]); retention keeps the last k and can delete the events they cover.
//! Automatic snapshots are written after the event that triggers them is durable and
//! applied, before that `persist` returns; a failed snapshot is logged and counted but does
//! not fail the persist (the events are safe; recovery just reads more of them).

use crate::error::{PersistError, RecoveryError, StoreError};
use crate::id::PersistenceId;
use crate::persistence::Persistence;
use crate::store::Record;
use crate::Versioned;
use postbox::{Actor, Context};
use std::fmt;
use std::time::{Duration, Instant};

/// A state built from events: its event type and how an event changes it.
///
/// The state is also what snapshots store, so it is [`Versioned`] itself; `Default` is the
/// state before the first event.
pub trait EventSourced: Versioned + Default {
    /// What happened: the events persisted and replayed.
    type Event: Versioned;

    /// Applies `event`. Must be deterministic and must not fail: it runs when the event is
    /// persisted and again at every recovery.
    fn apply(&mut self, event: &Self::Event);
}

/// When snapshots are taken and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    every: u64,
    keep: usize,
    delete_events: bool,
}

impl Default for SnapshotPolicy {
    /// Snapshots on demand only; keep the last two; keep all events.
    fn default() -> Self {
        Self {
            every: 0,
            keep: 2,
            delete_events: false,
        }
    }
}

impl SnapshotPolicy {
    /// Snapshots on demand only (the default).
    pub fn on_demand() -> Self {
        Self::default()
    }

    /// A snapshot after every `events` events (0: on demand only).
    pub fn every(mut self, events: u64) -> Self {
        self.every = events;
        self
    }

    /// Keep the last `snapshots` snapshots (at least 1) and delete older ones (default 2).
    pub fn keep(mut self, snapshots: usize) -> Self {
        self.keep = snapshots.max(1);
        self
    }

    /// Also delete the events covered by the oldest kept snapshot (default: keep every
    /// event). Saves space; the events before it can then no longer be read.
    pub fn delete_events(mut self, delete: bool) -> Self {
        self.delete_events = delete;
        self
    }

    /// Events between automatic snapshots (0: none).
    pub fn interval(&self) -> u64 {
        self.every
    }

    /// How many snapshots are kept.
    pub fn kept(&self) -> usize {
        self.keep
    }

    /// Whether covered events are deleted.
    pub fn deletes_events(&self) -> bool {
        self.delete_events
    }
}

/// What a recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The sequence number of the snapshot it started from, if any.
    pub snapshot_seq: Option<u64>,
    /// Events applied after the snapshot.
    pub events_replayed: u64,
    /// The sequence number of the last event (0: none).
    pub seq: u64,
    /// How long it took.
    pub took: Duration,
}

#[derive(Debug, Clone)]
enum Phase {
    /// `recover` has not completed.
    NotRecovered,
    Ready,
    /// A write starting at this sequence number is in progress — or was abandoned, if this is
    /// still the phase when the next write begins.
    Writing(u64),
    /// A write failed: this instance writes no more.
    Failed(PersistError),
}

/// An actor's event-sourced state: the state, its sequence number, and where its events go.
/// See the [module docs](self).
pub struct Journaled<S: EventSourced> {
    persistence: Persistence,
    id: PersistenceId,
    state: S,
    seq: u64,
    since_snapshot: u64,
    policy: SnapshotPolicy,
    phase: Phase,
}

impl<S: EventSourced> Journaled<S> {
    /// The state of `id` in `persistence`, empty until [`recover`](Self::recover), with the
    /// persistence's default [`SnapshotPolicy`].
    pub fn new(persistence: &Persistence, id: impl Into<PersistenceId>) -> Self {
        Self {
            persistence: persistence.clone(),
            id: id.into(),
            state: S::default(),
            seq: 0,
            since_snapshot: 0,
            policy: persistence.default_snapshot_policy(),
            phase: Phase::NotRecovered,
        }
    }

    /// Uses `policy` instead of the persistence's default.
    pub fn snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A snapshot every `events` events (0: on demand only), keeping the rest of the policy.
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.policy = self.policy.every(events);
        self
    }

    /// The persistence id.
    pub fn id(&self) -> &PersistenceId {
        &self.id
    }

    /// The state: every acknowledged event applied.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The sequence number of the last event applied (0: none).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether [`recover`](Self::recover) has completed (and no write failed since).
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The policy in force.
    pub fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    /// Rebuilds the state from the store: the latest snapshot, then every event after it, in
    /// order. Call it from [`Actor::started`] and propagate its
    /// error (`?`), so the actor never handles a message with a partial history.
    ///
    /// Fails on a store error, on an event or snapshot this code cannot read (naming the id,
    /// the sequence number and the tag), and on a hole in the history.
    pub async fn recover(&mut self) -> Result<Recovery, RecoveryError> {
        let started = Instant::now();
        self.id.validate()?;
        let id = &self.id;
        let p = &self.persistence;
        let store = |error| RecoveryError::Store {
            id: id.clone(),
            error,
        };
        let mut state = S::default();
        let mut seq = 0;
        let mut snapshot_seq = None;
        if let Some(snapshot) = p.latest_snapshot(id).await.map_err(store)? {
            state = snapshot
                .record
                .decode()
                .map_err(|e| RecoveryError::UnreadableSnapshot {
                    id: id.clone(),
                    seq: snapshot.seq,
                    tag: snapshot.record.tag.clone(),
                    version: snapshot.record.version,
                    reason: e.to_string(),
                })?;
            seq = snapshot.seq;
            snapshot_seq = Some(seq);
        }
        let highest = p.highest_seq(id).await.map_err(store)?;
        if highest < seq {
            return Err(RecoveryError::Store {
                id: id.clone(),
                error: StoreError::Corrupt(format!(
                    "the snapshot covers seq {seq} but the journal ends at seq {highest}"
                )),
            });
        }
        let mut replayed = 0;
        let mut next = seq + 1;
        while next <= highest {
            let page = p.replay(id, next, highest).await.map_err(store)?;
            if page.is_empty() {
                return Err(RecoveryError::Gap {
                    id: id.clone(),
                    missing: next,
                    highest,
                });
            }
            for event in page {
                if event.seq != next {
                    return Err(RecoveryError::Gap {
                        id: id.clone(),
                        missing: next,
                        highest,
                    });
                }
                let decoded: S::Event =
                    event
                        .record
                        .decode()
                        .map_err(|e| RecoveryError::UnreadableEvent {
                            id: id.clone(),
                            seq: event.seq,
                            tag: event.record.tag.clone(),
                            version: event.record.version,
                            reason: e.to_string(),
                        })?;
                state.apply(&decoded);
                next += 1;
                replayed += 1;
            }
        }
        self.state = state;
        self.seq = highest;
        self.since_snapshot = highest - seq;
        self.phase = Phase::Ready;
        let took = started.elapsed();
        self.persistence
            .counters()
            .recovery_time
            .observe_duration(took);
        Ok(Recovery {
            snapshot_seq,
            events_replayed: replayed,
            seq: highest,
            took,
        })
    }

    /// Persists `event`: when this returns `Ok`, it is durable and applied. See
    /// [`persist_all`](Self::persist_all) for the failure cases.
    pub async fn persist<A: Actor>(
        &mut self,
        ctx: &mut Context<A>,
        event: S::Event,
    ) -> Result<(), PersistError> {
        self.persist_all(ctx, [event]).await
    }

    /// Persists `events` atomically (all or none) under consecutive sequence numbers; when
    /// this returns `Ok`, they are durable and applied in order.
    ///
    /// On error nothing is applied, and:
    /// * [`PersistError::Conflict`]: another live instance wrote first; `ctx`'s actor stops
    ///   after the handler returns;
    /// * [`PersistError::Store`], [`NotRecovered`](PersistError::NotRecovered),
    ///   [`Abandoned`](PersistError::Abandoned): the actor fails after the handler returns;
    /// * [`PersistError::Encode`]: nothing was written and the actor carries on.
    ///
    /// After a conflict or a failure, every further write of this instance returns the same
    /// error.
    pub async fn persist_all<A: Actor>(
        &mut self,
        ctx: &mut Context<A>,
        events: impl IntoIterator<Item = S::Event>,
    ) -> Result<(), PersistError> {
        self.ready(ctx)?;
        let events: Vec<S::Event> = events.into_iter().collect();
        if events.is_empty() {
            return Ok(());
        }
        let records = events
            .iter()
            .map(Record::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PersistError::Encode {
                id: self.id.clone(),
                tag: <S::Event as Versioned>::TAG,
                reason: e.to_string(),
            })?;
        let first = self.seq + 1;
        self.phase = Phase::Writing(first);
        let outcome = self.persistence.append(&self.id, self.seq, records).await;
        if let Err(error) = outcome {
            return Err(self.fail(ctx, first, error));
        }
        self.phase = Phase::Ready;
        for event in &events {
            self.state.apply(event);
        }
        let n = events.len() as u64;
        self.seq += n;
        self.since_snapshot += n;
        if self.policy.every > 0 && self.since_snapshot >= self.policy.every {
            if let Err(error) = self.save_snapshot().await {
                tracing::warn!(id = %self.id, seq = self.seq, %error, "automatic snapshot failed");
            }
        }
        Ok(())
    }

    /// Saves a snapshot of the state now, then applies the retention of the policy. A failed
    /// snapshot does not fail the actor: nothing was lost.
    pub async fn snapshot(&mut self) -> Result<(), PersistError> {
        match &self.phase {
            Phase::Ready => self.save_snapshot().await,
            Phase::Failed(error) => Err(error.clone()),
            Phase::NotRecovered | Phase::Writing(_) => Err(PersistError::NotRecovered {
                id: self.id.clone(),
            }),
        }
    }

    async fn save_snapshot(&mut self) -> Result<(), PersistError> {
        let seq = self.seq;
        let id = &self.id;
        let record = Record::encode(&self.state).map_err(|e| PersistError::Encode {
            id: id.clone(),
            tag: S::TAG,
            reason: e.to_string(),
        })?;
        let store = |error| PersistError::Store {
            id: id.clone(),
            seq,
            error,
        };
        let p = &self.persistence;
        p.save_snapshot(id, seq, record).await.map_err(store)?;
        self.since_snapshot = 0;
        let seqs = p.snapshot_seqs(id).await.map_err(store)?;
        let keep = self.policy.keep.max(1);
        if seqs.len() > keep {
            p.delete_snapshots(id, seqs[seqs.len() - keep - 1])
                .await
                .map_err(store)?;
        }
        if self.policy.delete_events {
            if let Some(&oldest_kept) = seqs.get(seqs.len().saturating_sub(keep)) {
                p.delete_events(id, oldest_kept).await.map_err(store)?;
            }
        }
        Ok(())
    }

    /// Whether a write may start; fails the actor if it must not.
    fn ready<A: Actor>(&mut self, ctx: &mut Context<A>) -> Result<(), PersistError> {
        let error = match &self.phase {
            Phase::Ready => return Ok(()),
            Phase::Failed(error) => return Err(error.clone()),
            Phase::NotRecovered => PersistError::NotRecovered {
                id: self.id.clone(),
            },
            &Phase::Writing(seq) => PersistError::Abandoned {
                id: self.id.clone(),
                seq,
            },
        };
        ctx.fail(&error);
        self.phase = Phase::Failed(error.clone());
        Err(error)
    }

    /// Turns a store error into the persist error, stopping or failing the actor.
    fn fail<A: Actor>(
        &mut self,
        ctx: &mut Context<A>,
        seq: u64,
        error: StoreError,
    ) -> PersistError {
        let error = settle(ctx, &self.id, seq, error);
        self.phase = Phase::Failed(error.clone());
        error
    }
}

/// The persist error for a store error, with the actor stopped (conflict) or failed.
pub(crate) fn settle<A: Actor>(
    ctx: &mut Context<A>,
    id: &PersistenceId,
    seq: u64,
    error: StoreError,
) -> PersistError {
    if error.is_conflict() {
        tracing::warn!(%id, seq, "another live instance wrote first; this one stops");
        ctx.stop();
        PersistError::Conflict {
            id: id.clone(),
            seq,
        }
    } else {
        let error = PersistError::Store {
            id: id.clone(),
            seq,
            error,
        };
        ctx.fail(&error);
        error
    }
}

impl<S: EventSourced> fmt::Debug for Journaled<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journaled")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .field("phase", &self.phase)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

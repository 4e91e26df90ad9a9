//! Durable state: [`DurableState`], an actor's state saved whole (Akka's
//! `DurableStateBehavior`, Orleans' grain storage), for when events are not wanted.
//!
//! The actor keeps a `DurableState<S>`, calls [`DurableState::recover`] in
//! [`Actor::started`] (before its first message, after every
//! restart), reads [`state`](DurableState::state), and replaces it with
//! [`save`](DurableState::save). When `save` returns `Ok` the new state is durable and is
//! the state; on error the old state stays, and the actor stops (conflict) or fails (store
//! failure) after the handler returns, exactly as with
//! [`Journaled::persist`](crate::Journaled::persist).
//!
//! Every save carries the revision it replaces, so a second live instance of the same id
//! gets a conflict on its first save instead of overwriting the first one's. A delete keeps
//! the revision (a tombstone), so an instance that fell behind cannot resurrect the state.
//!
//! ```
//! use postbox::prelude::*;
//! use postbox_persistence::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Default, Serialize, Deserialize)]
//! struct Profile { name: String }
//! impl Versioned for Profile { const TAG: &'static str = "user.profile"; }
//!
//! struct User { profile: DurableState<Profile> }
//! impl Actor for User {
//!     async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
//!         self.profile.recover().await?;
//!         Ok(())
//!     }
//! }
//!
//! struct Rename(String);
//! impl Message for Rename { type Reply = Result<(), PersistError>; }
//! impl Handler<Rename> for User {
//!     async fn handle(&mut self, Rename(name): Rename, ctx: &mut Context<Self>) -> Result<(), PersistError> {
//!         let mut next = self.profile.state().clone();
//!         next.name = name;
//!         self.profile.save(ctx, next).await
//!     }
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let system = ActorSystem::new();
//! # let persistence = Persistence::in_memory();
//! # let p = persistence.clone();
//! # let user = system.spawn(move || User { profile: p.durable_state("user|1") })?;
//! # user.ask(Rename("ada".into())).await??;
//! # system.shutdown().await;
//! # Ok(())
//! # }
//! ```

use crate::error::{PersistError, RecoveryError};
use crate::id::PersistenceId;
use crate::journaled::settle;
use crate::persistence::Persistence;
use crate::store::Record;
use crate::Versioned;
use postbox::{Actor, Context};
use std::fmt;
use std::time::Instant;

#[derive(Debug, Clone)]
enum Phase {
    NotRecovered,
    Ready,
    Writing(u64),
    Failed(PersistError),
}

/// An actor's durable state: the state, its revision, and where it is saved. See the
/// [module docs](self).
pub struct DurableState<S: Versioned + Default> {
    persistence: Persistence,
    id: PersistenceId,
    state: S,
    revision: u64,
    phase: Phase,
}

impl<S: Versioned + Default> DurableState<S> {
    /// The state of `id` in `persistence`; `S::default()` until [`recover`](Self::recover).
    pub fn new(persistence: &Persistence, id: impl Into<PersistenceId>) -> Self {
        Self {
            persistence: persistence.clone(),
            id: id.into(),
            state: S::default(),
            revision: 0,
            phase: Phase::NotRecovered,
        }
    }

    /// The persistence id.
    pub fn id(&self) -> &PersistenceId {
        &self.id
    }

    /// The state (the last one saved, or `S::default()` if none is, or it was deleted).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// How many saves and deletes the stored state has seen (0: never saved).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether [`recover`](Self::recover) has completed (and no write failed since).
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Loads the stored state. Call it from [`Actor::started`] and
    /// propagate its error. Fails on a store error and on a state this code cannot read
    /// (naming the id, the revision and the tag).
    pub async fn recover(&mut self) -> Result<(), RecoveryError> {
        let started = Instant::now();
        self.id.validate()?;
        let stored = self
            .persistence
            .load_state(&self.id)
            .await
            .map_err(|error| RecoveryError::Store {
                id: self.id.clone(),
                error,
            })?;
        let (revision, state) = match stored {
            None => (0, S::default()),
            Some(stored) => match stored.record {
                None => (stored.revision, S::default()),
                Some(record) => {
                    let state = record
                        .decode()
                        .map_err(|e| RecoveryError::UnreadableState {
                            id: self.id.clone(),
                            revision: stored.revision,
                            tag: record.tag.clone(),
                            version: record.version,
                            reason: e.to_string(),
                        })?;
                    (stored.revision, state)
                }
            },
        };
        self.state = state;
        self.revision = revision;
        self.phase = Phase::Ready;
        self.persistence
            .counters()
            .recovery_time
            .observe_duration(started.elapsed());
        Ok(())
    }

    /// Saves `state`: when this returns `Ok`, it is durable and is the state. On error the
    /// state is unchanged and the actor stops (conflict) or fails, as
    /// [`Journaled::persist_all`](crate::Journaled::persist_all) describes.
    pub async fn save<A: Actor>(
        &mut self,
        ctx: &mut Context<A>,
        state: S,
    ) -> Result<(), PersistError> {
        self.ready(ctx)?;
        let record = Record::encode(&state).map_err(|e| PersistError::Encode {
            id: self.id.clone(),
            tag: S::TAG,
            reason: e.to_string(),
        })?;
        self.write(ctx, Some(record)).await?;
        self.state = state;
        Ok(())
    }

    /// Deletes the stored state (the revision stays); the state becomes `S::default()`.
    pub async fn delete<A: Actor>(&mut self, ctx: &mut Context<A>) -> Result<(), PersistError> {
        self.ready(ctx)?;
        self.write(ctx, None).await?;
        self.state = S::default();
        Ok(())
    }

    async fn write<A: Actor>(
        &mut self,
        ctx: &mut Context<A>,
        record: Option<Record>,
    ) -> Result<(), PersistError> {
        let next = self.revision + 1;
        self.phase = Phase::Writing(next);
        match self
            .persistence
            .write_state(&self.id, self.revision, record)
            .await
        {
            Ok(()) => {
                self.revision = next;
                self.phase = Phase::Ready;
                Ok(())
            }
            Err(error) => {
                let error = settle(ctx, &self.id, next, error);
                self.phase = Phase::Failed(error.clone());
                Err(error)
            }
        }
    }

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
}

impl<S: Versioned + Default> fmt::Debug for DurableState<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableState")
            .field("id", &self.id)
            .field("revision", &self.revision)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

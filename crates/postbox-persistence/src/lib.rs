//! # postbox-persistence
//!
//! Persistent actors for postbox: an actor's reply can mean *durably accepted*, and an actor
//! that is restarted — or re-homed on another node — comes back with its state.
//!
//! Two ways to keep state, both as a field of an ordinary postbox actor (so everything else
//! about actors — supervision, routers, remote refs — is unchanged):
//!
//! * [`Journaled<S>`]: **event sourcing** ([`journaled`] module docs).
//!   Handlers `persist` events; the state is what the events built.
//! * [`DurableState<S>`]: the **whole state** saved on each change ([`durable`] module docs).
//!
//! Both recover in [`Actor::started`](postbox::Actor::started), which runs before any message
//! of every instance — after spawn and after every supervised restart; messages that arrive
//! meanwhile wait in the mailbox, in order. A write returns `Ok` only once it is durable
//! (committed by the store: fsynced) and applied, so a reply sent after it means accepted. A
//! failed write is returned to the handler, applies nothing, and takes the actor down (fails
//! it, or stops it on a conflict) so that it never carries on from a state the store does
//! not hold.
//!
//! # One writer per id, enforced by the store
//!
//! Every append carries the sequence number the writer expects to be the latest, and the
//! store checks it in the same transaction as the write. Two live instances of one
//! persistence id — two nodes that both believe they own an entity — cannot both write: the
//! second to write gets [`PersistError::Conflict`] and stops, and nothing of its write is
//! stored. This holds across processes sharing one SQLite file and across nodes sharing one
//! PostgreSQL database.
//!
//! # Stores
//!
//! The [`Journal`], [`SnapshotStore`] and [`DurableStateStore`] traits
//! ([`store`] module docs state the contract), with three implementations:
//!
//! * [`MemoryStore`] — for tests;
//! * [`SqliteStore`] — the embedded default: one file (WAL, `synchronous=FULL`) that several
//!   processes on one machine can share;
//! * [`PostgresStore`] — for clusters that span machines.
//!
//! The SQLite and PostgreSQL stores **group-commit**: one writer per store batches the
//! writes of all actors into one transaction and one fsync, committing as soon as it is free
//! ([`group_commit`](crate#group-commit)). [`Persistence`] bundles the stores with defaults
//! and counters ([`PersistenceStats`]).
//!
//! # Schema evolution
//!
//! Stored values carry a tag and a version ([`Versioned`]); an upcaster reads old versions
//! ([`codec`] module docs). A value the code cannot read fails recovery with an error naming
//! the persistence id, the sequence number and the tag: an actor never starts with silently
//! missing history.
//!
//! # Group commit
//!
//! A write is queued for the store's writer, which takes everything queued (up to a batch
//! limit), runs it in one transaction and commits once. There is no timer: an idle writer
//! commits a lone write at once, and a write never waits for more than the commit in
//! progress. The queue is bounded; when it is full, writers wait (backpressure), counted in
//! [`CommitStats::queue_full`].

pub mod codec;
pub mod durable;
mod error;
mod group_commit;
mod id;
pub mod journaled;
mod memory;
mod persistence;
pub mod postgres;
pub mod sqlite;
mod stats;
pub mod store;
#[cfg(feature = "tck")]
pub mod tck;

pub use codec::{DecodeError, EncodeError, Stored, Versioned};
pub use durable::DurableState;
pub use error::{PersistError, RecoveryError, StoreError, StoreErrorKind};
pub use id::{InvalidPersistenceId, PersistenceId};
pub use journaled::{EventSourced, Journaled, Recovery, SnapshotPolicy};
pub use memory::MemoryStore;
pub use persistence::Persistence;
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use stats::{CommitStats, Distribution, PersistenceStats};
pub use store::{
    DurableStateStore, Journal, Record, SnapshotStore, Store, StoredEvent, StoredSnapshot,
    StoredState,
};

/// The types persistent actors need.
pub mod prelude {
    pub use crate::{
        DurableState, EventSourced, Journaled, PersistError, Persistence, PersistenceId,
        RecoveryError, SnapshotPolicy, Versioned,
    };
}

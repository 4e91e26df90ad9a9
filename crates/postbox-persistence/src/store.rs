//! The store traits: [`Journal`] (events), [`SnapshotStore`] and [`DurableStateStore`].
//!
//! # Contract (the conformance suite, `tck`, checks every point against every store)
//!
//! * **Single writer.** [`Journal::append`] carries the sequence number the writer believes
//!   is the id's latest (`expected_seq`; 0 for a new id). The batch is stored as
//!   `expected_seq + 1 ..= expected_seq + n` if and only if that is still the latest — checked
//!   and written in one transaction — else nothing of it is stored and the answer is
//!   [`StoreError::Conflict`]. The latest sequence number never goes down, not even when
//!   events are deleted, so a writer that fell behind can never write again under a number
//!   that was used. Durable states follow the same rule with revisions.
//! * **Atomic batches.** An append's events are stored all or none.
//! * **Durable on `Ok`.** When `append` (or any write) returns `Ok`, the data is on stable
//!   storage (fsynced, or committed by the database) and every later read — from this
//!   process or another one sharing the store — sees it.
//! * **Replay in order.** [`Journal::replay`] returns stored events of `from..=to` in sequence
//!   order, at most `max` of them; deleted events are skipped.
//! * **Deletion keeps the head.** [`Journal::delete_events`] removes events up to a sequence
//!   number (clamped to the latest); [`Journal::highest_seq`] still answers the latest.
//!
//! Stores may batch writes from many callers into one transaction (group commit); that is
//! invisible here except in the latency of a call and in [`Journal::commit_stats`].

use crate::error::StoreError;
use crate::id::PersistenceId;
use crate::stats::CommitStats;
use async_trait::async_trait;

/// One stored value's parts: its tag, version and payload (see [`codec`](crate::codec)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The type's tag ([`Versioned::TAG`](crate::Versioned::TAG)).
    pub tag: String,
    /// The shape's version ([`Versioned::VERSION`](crate::Versioned::VERSION)).
    pub version: u32,
    /// The encoded value.
    pub payload: Vec<u8>,
}

impl Record {
    /// A record with these parts.
    pub fn new(tag: impl Into<String>, version: u32, payload: Vec<u8>) -> Self {
        Self {
            tag: tag.into(),
            version,
            payload,
        }
    }

    /// `value` encoded with its type's tag and version.
    pub fn encode<T: crate::Versioned>(value: &T) -> Result<Self, crate::codec::EncodeError> {
        Ok(Self::new(T::TAG, T::VERSION, crate::codec::encode(value)?))
    }

    /// Decodes the record as `T` (upcasting older tags and versions).
    pub fn decode<T: crate::Versioned>(&self) -> Result<T, crate::codec::DecodeError> {
        crate::codec::decode(&self.tag, self.version, &self.payload)
    }
}

/// An event as stored: its sequence number and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its sequence number (1 for an id's first event).
    pub seq: u64,
    /// The event.
    pub record: Record,
}

/// A snapshot as stored: the sequence number of the last event it covers, and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The last event the state includes.
    pub seq: u64,
    /// The state.
    pub record: Record,
}

/// A durable state as stored: its revision (1 after the first save) and the state, `None`
/// once deleted (the revision stays, so a writer that fell behind cannot resurrect it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// How many saves and deletes the state has seen.
    pub revision: u64,
    /// The state; `None` after a delete.
    pub record: Option<Record>,
}

/// Where events are kept: append-only, per persistence id, in sequence order. See the
/// [module docs](self) for the contract.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Stores `events` as `expected_seq + 1 ..` if `expected_seq` is still the id's highest
    /// sequence number (0: the id has none), atomically; else [`StoreError::Conflict`] and
    /// nothing is stored. An empty batch is a no-op. Durable when it returns `Ok`.
    async fn append(
        &self,
        id: &PersistenceId,
        expected_seq: u64,
        events: Vec<Record>,
    ) -> Result<(), StoreError>;

    /// The stored events of `from_seq..=to_seq`, in order, at most `max`.
    async fn replay(
        &self,
        id: &PersistenceId,
        from_seq: u64,
        to_seq: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The id's highest sequence number (0 if it never had an event), deleted events
    /// included.
    async fn highest_seq(&self, id: &PersistenceId) -> Result<u64, StoreError>;

    /// Deletes the id's events up to `up_to_seq` (clamped to the highest). The highest
    /// sequence number is kept.
    async fn delete_events(&self, id: &PersistenceId, up_to_seq: u64) -> Result<(), StoreError>;

    /// Counters of the store's group commit, if it has one.
    fn commit_stats(&self) -> Option<CommitStats> {
        None
    }
}

/// Where snapshots are kept: per persistence id, by the sequence number they cover.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores `snapshot` as covering events up to `seq` (replacing one at the same `seq`).
    /// Durable when it returns `Ok`.
    async fn save_snapshot(
        &self,
        id: &PersistenceId,
        seq: u64,
        snapshot: Record,
    ) -> Result<(), StoreError>;

    /// The snapshot with the highest sequence number, if any.
    async fn latest_snapshot(
        &self,
        id: &PersistenceId,
    ) -> Result<Option<StoredSnapshot>, StoreError>;

    /// The sequence numbers of the id's snapshots, ascending.
    async fn snapshot_seqs(&self, id: &PersistenceId) -> Result<Vec<u64>, StoreError>;

    /// Deletes the id's snapshots with sequence numbers up to `up_to_seq`.
    async fn delete_snapshots(&self, id: &PersistenceId, up_to_seq: u64) -> Result<(), StoreError>;
}

/// Where durable states are kept: one state per persistence id, replaced whole, guarded by
/// its revision.
#[async_trait]
pub trait DurableStateStore: Send + Sync + 'static {
    /// The id's state and revision, if it was ever saved.
    async fn load_state(&self, id: &PersistenceId) -> Result<Option<StoredState>, StoreError>;

    /// Replaces the state if its revision is still `expected_revision` (0: never saved),
    /// making it `expected_revision + 1`; else [`StoreError::Conflict`]. Durable on `Ok`.
    async fn save_state(
        &self,
        id: &PersistenceId,
        expected_revision: u64,
        state: Record,
    ) -> Result<(), StoreError>;

    /// Deletes the state under the same revision check; the revision stays (and grows by one).
    async fn delete_state(
        &self,
        id: &PersistenceId,
        expected_revision: u64,
    ) -> Result<(), StoreError>;
}

/// A store of all three kinds — what [`Persistence`](crate::Persistence) is built from.
pub trait Store: Journal + SnapshotStore + DurableStateStore {}

impl<T: Journal + SnapshotStore + DurableStateStore> Store for T {}

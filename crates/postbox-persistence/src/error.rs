//! Errors of stores, of persisting, and of recovery.
//!
//! One outcome has one name everywhere: a second writer is a [`StoreError::Conflict`] from
//! every store, and a [`PersistError::Conflict`] for the actor that lost; a database that
//! cannot be reached is `Unavailable` whether it is a SQLite file on a failed disk or a
//! PostgreSQL server that went away.

use crate::id::{InvalidPersistenceId, PersistenceId};
use std::fmt;

/// Why a store refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer got there first: the id's highest sequence number (or state revision)
    /// is no longer `expected`. Nothing of the refused write was stored.
    Conflict {
        /// Whose history.
        id: PersistenceId,
        /// The sequence number (or revision) the writer expected to be the latest.
        expected: u64,
    },
    /// The store cannot be reached or read (server down, connection lost, I/O error, the
    /// database locked by another process for too long). Worth retrying later.
    Unavailable(String),
    /// The store is out of space (disk full, or the configured size limit reached).
    Full(String),
    /// Stored data the store cannot make sense of (a damaged file, a schema from another
    /// version of this crate).
    Corrupt(String),
    /// A request the store refuses as such (an invalid persistence id, a sequence number out
    /// of range).
    Invalid(String),
    /// The store was shut down.
    Closed,
}

impl StoreError {
    /// What kind of failure this is (a label for metrics).
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Conflict { .. } => StoreErrorKind::Conflict,
            StoreError::Unavailable(_) => StoreErrorKind::Unavailable,
            StoreError::Full(_) => StoreErrorKind::Full,
            StoreError::Corrupt(_) => StoreErrorKind::Corrupt,
            StoreError::Invalid(_) => StoreErrorKind::Invalid,
            StoreError::Closed => StoreErrorKind::Closed,
        }
    }

    /// Whether another writer caused it.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

impl From<InvalidPersistenceId> for StoreError {
    fn from(e: InvalidPersistenceId) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict { id, expected } => write!(
                f,
                "conflict: another writer has written {id} past {expected} (this writer is not \
                 the only live instance)"
            ),
            StoreError::Unavailable(why) => write!(f, "store unavailable: {why}"),
            StoreError::Full(why) => write!(f, "store full: {why}"),
            StoreError::Corrupt(why) => write!(f, "store data unreadable: {why}"),
            StoreError::Invalid(why) => write!(f, "refused by the store: {why}"),
            StoreError::Closed => f.write_str("the store was shut down"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The kinds of [`StoreError`], for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// [`StoreError::Conflict`].
    Conflict,
    /// [`StoreError::Unavailable`].
    Unavailable,
    /// [`StoreError::Full`].
    Full,
    /// [`StoreError::Corrupt`].
    Corrupt,
    /// [`StoreError::Invalid`].
    Invalid,
    /// [`StoreError::Closed`].
    Closed,
}

impl StoreErrorKind {
    /// Every kind, in a stable order.
    pub const ALL: [StoreErrorKind; 6] = [
        StoreErrorKind::Conflict,
        StoreErrorKind::Unavailable,
        StoreErrorKind::Full,
        StoreErrorKind::Corrupt,
        StoreErrorKind::Invalid,
        StoreErrorKind::Closed,
    ];

    /// A short snake_case label, stable for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Conflict => "conflict",
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Full => "full",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Invalid => "invalid",
            StoreErrorKind::Closed => "closed",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `persist`, `persist_all`, `save`, `delete` or `snapshot` did not succeed.
///
/// Except for `Encode` and a failed on-demand snapshot, the actor does not go on with a state
/// the store may disagree with: on [`Conflict`](Self::Conflict) it stops, on the others it
/// fails (its supervisor restarts it, and the new instance recovers what the store holds).
/// Return the error to the asker (`Result<_, PersistError>` as the reply type, or an error
/// type with `From<PersistError>`): the write was not acknowledged, and nothing of it was
/// applied to the state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PersistError {
    /// Another live instance wrote this id first; this instance stops. Nothing was stored.
    Conflict {
        /// Whose history.
        id: PersistenceId,
        /// The sequence number (or revision) this instance tried to write.
        seq: u64,
    },
    /// The store failed; this instance fails and its supervisor decides. Whether the write
    /// reached the store is unknown only when the failure hit the commit itself; the
    /// restarted instance recovers whatever the store holds.
    Store {
        /// Whose history.
        id: PersistenceId,
        /// The first sequence number (or revision) of the write.
        seq: u64,
        /// What the store said.
        error: StoreError,
    },
    /// The event or state could not be encoded. Nothing was written; the actor carries on.
    Encode {
        /// Whose history.
        id: PersistenceId,
        /// The tag of the value that did not encode.
        tag: &'static str,
        /// Why.
        reason: String,
    },
    /// Called before `recover` completed (call it from `Actor::started`). The actor fails.
    NotRecovered {
        /// Whose history.
        id: PersistenceId,
    },
    /// An earlier write of this instance was abandoned before it finished (its future was
    /// dropped, e.g. by a `select!` with a timeout), so whether it was stored is unknown. The
    /// actor fails; the restarted instance recovers what the store holds.
    Abandoned {
        /// Whose history.
        id: PersistenceId,
        /// The first sequence number (or revision) of the abandoned write.
        seq: u64,
    },
}

impl PersistError {
    /// The id whose write failed.
    pub fn id(&self) -> &PersistenceId {
        match self {
            PersistError::Conflict { id, .. }
            | PersistError::Store { id, .. }
            | PersistError::Encode { id, .. }
            | PersistError::NotRecovered { id }
            | PersistError::Abandoned { id, .. } => id,
        }
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::Conflict { id, seq } => write!(
                f,
                "{id}: seq {seq} was not stored: another live instance wrote first (this one \
                 stops)"
            ),
            PersistError::Store { id, seq, error } => {
                write!(f, "{id}: seq {seq} was not stored: {error}")
            }
            PersistError::Encode { id, tag, reason } => {
                write!(f, "{id}: a {tag} was not stored: {reason}")
            }
            PersistError::NotRecovered { id } => write!(
                f,
                "{id}: write before recovery (call recover() in Actor::started)"
            ),
            PersistError::Abandoned { id, seq } => write!(
                f,
                "{id}: the write of seq {seq} was abandoned before it finished; its outcome is \
                 unknown, so the actor restarts to recover"
            ),
        }
    }
}

impl std::error::Error for PersistError {}

/// Why an actor's recovery failed. The actor does not start with a partial history: the
/// error is its `started` failure, and its supervisor decides.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The persistence id cannot be stored.
    InvalidId(InvalidPersistenceId),
    /// The store failed while reading.
    Store {
        /// Whose history.
        id: PersistenceId,
        /// What the store said.
        error: StoreError,
    },
    /// A stored event this code cannot read (unknown tag, newer version, no upcaster, a
    /// payload that does not decode).
    UnreadableEvent {
        /// Whose history.
        id: PersistenceId,
        /// Its sequence number.
        seq: u64,
        /// Its tag.
        tag: String,
        /// Its version.
        version: u32,
        /// Why it cannot be read.
        reason: String,
    },
    /// The latest snapshot cannot be read.
    UnreadableSnapshot {
        /// Whose history.
        id: PersistenceId,
        /// The sequence number it covers.
        seq: u64,
        /// Its tag.
        tag: String,
        /// Its version.
        version: u32,
        /// Why it cannot be read.
        reason: String,
    },
    /// The history has a hole: events that should be there are not (deleted without a
    /// snapshot covering them, or a damaged store).
    Gap {
        /// Whose history.
        id: PersistenceId,
        /// The sequence number that was missing.
        missing: u64,
        /// The store's highest sequence number for the id.
        highest: u64,
    },
    /// The durable state could not be read.
    UnreadableState {
        /// Whose state.
        id: PersistenceId,
        /// Its revision.
        revision: u64,
        /// Its tag.
        tag: String,
        /// Its version.
        version: u32,
        /// Why it cannot be read.
        reason: String,
    },
}

impl From<InvalidPersistenceId> for RecoveryError {
    fn from(e: InvalidPersistenceId) -> Self {
        RecoveryError::InvalidId(e)
    }
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::InvalidId(e) => write!(f, "recovery refused: {e}"),
            RecoveryError::Store { id, error } => write!(f, "recovery of {id} failed: {error}"),
            RecoveryError::UnreadableEvent {
                id,
                seq,
                tag,
                version,
                reason,
            } => write!(
                f,
                "recovery of {id} failed: event seq {seq} (tag {tag}, version {version}) is \
                 unreadable: {reason}"
            ),
            RecoveryError::UnreadableSnapshot {
                id,
                seq,
                tag,
                version,
                reason,
            } => write!(
                f,
                "recovery of {id} failed: the snapshot at seq {seq} (tag {tag}, version \
                 {version}) is unreadable: {reason}"
            ),
            RecoveryError::Gap {
                id,
                missing,
                highest,
            } => write!(
                f,
                "recovery of {id} failed: event seq {missing} is missing (highest stored seq \
                 {highest}) and no snapshot covers it"
            ),
            RecoveryError::UnreadableState {
                id,
                revision,
                tag,
                version,
                reason,
            } => write!(
                f,
                "recovery of {id} failed: its state at revision {revision} (tag {tag}, version \
                 {version}) is unreadable: {reason}"
            ),
        }
    }
}

impl std::error::Error for RecoveryError {}

//! Persistence ids: the name of one entity's history in a store.

use std::fmt;
use std::sync::Arc;

/// The identity of one persistent entity's history: its events, snapshots or durable state
/// are stored under this id, and only one live writer may append to it at a time (the store
/// enforces that with sequence numbers; see the crate docs).
///
/// Any string of 1 to [`MAX_LEN`](Self::MAX_LEN) bytes without control characters.
/// [`of`](Self::of) builds the conventional `type|id` form (`account|42`), so that entities
/// of different types never share a history. Construction does not check the string, so that
/// an actor factory (which cannot fail) can build one; the check happens where it is used —
/// recovery refuses an invalid id with [`RecoveryError::InvalidId`](crate::RecoveryError),
/// stores with [`StoreError::Invalid`](crate::StoreError).
///
/// ```
/// use postbox_persistence::PersistenceId;
///
/// let id = PersistenceId::of("account", "42");
/// assert_eq!(id.as_str(), "account|42");
/// assert!(id.validate().is_ok());
/// assert!(PersistenceId::new("").validate().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersistenceId(Arc<str>);

impl PersistenceId {
    /// The longest id, in bytes.
    pub const MAX_LEN: usize = 512;

    /// The id `id`, as given.
    pub fn new(id: impl Into<String>) -> Self {
        Self(Arc::from(id.into()))
    }

    /// `entity_type|entity_id`, the usual id of an entity of a type (Akka's convention).
    pub fn of(entity_type: &str, entity_id: &str) -> Self {
        Self::new(format!("{entity_type}|{entity_id}"))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the id can be stored: 1 to [`MAX_LEN`](Self::MAX_LEN) bytes, no control
    /// characters (PostgreSQL's text refuses NUL, and logs should not carry line breaks).
    pub fn validate(&self) -> Result<(), InvalidPersistenceId> {
        let reason = if self.0.is_empty() {
            "it is empty"
        } else if self.0.len() > Self::MAX_LEN {
            "it is longer than 512 bytes"
        } else if self.0.chars().any(char::is_control) {
            "it contains a control character"
        } else {
            return Ok(());
        };
        Err(InvalidPersistenceId {
            id: self.0.chars().take(64).collect(),
            reason,
        })
    }
}

impl From<&str> for PersistenceId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for PersistenceId {
    fn from(id: String) -> Self {
        Self::new(id)
    }
}

impl fmt::Display for PersistenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PersistenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersistenceId({:?})", &*self.0)
    }
}

/// A [`PersistenceId`] that cannot be stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPersistenceId {
    /// The id (its first 64 characters).
    pub id: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for InvalidPersistenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid persistence id {:?}: {}", self.id, self.reason)
    }
}

impl std::error::Error for InvalidPersistenceId {}

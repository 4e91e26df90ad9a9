//! Errors of the sharding API.

use std::fmt;

/// Why a sharding call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardingError {
    /// Entity type names are 1 to 200 bytes of ASCII letters, digits, `-`, `_` and `.`.
    InvalidName(String),
    /// A setting is out of range (which, and why).
    InvalidSetting(String),
    /// This actor type, or this name, is already registered on this node.
    AlreadyRegistered(String),
    /// This actor type is not registered on this node (register it on every node that sends
    /// to it, with a role on those that host it).
    NotRegistered(&'static str),
    /// The region, or an entity's [recipient](crate::EntityRef::recipient), could not be
    /// started (the actor system is shutting down).
    Spawn(postbox::SpawnError),
    /// The region is not running any more.
    Stopped,
}

impl fmt::Display for ShardingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardingError::InvalidName(name) => write!(
                f,
                "invalid entity type name {name:?}: 1 to 200 bytes of letters, digits, '-', '_', '.'"
            ),
            ShardingError::InvalidSetting(why) => write!(f, "invalid setting: {why}"),
            ShardingError::AlreadyRegistered(what) => write!(f, "{what} is already registered"),
            ShardingError::NotRegistered(what) => {
                write!(f, "{what} is not registered with this node's sharding")
            }
            ShardingError::Spawn(error) => write!(f, "cannot start a sharding actor: {error}"),
            ShardingError::Stopped => f.write_str("the region is not running"),
        }
    }
}

impl std::error::Error for ShardingError {}

//! Errors returned by the runtime.
//!
//! Send errors hand the message back, like tokio's channel errors, so nothing is lost by
//! accident; the refused send is also counted in dead letters (see
//! [`DeadLetterReason`](crate::DeadLetterReason)) because most callers drop it.

use std::fmt;
use std::time::Duration;

/// A boxed error, as returned by [`Actor::started`](crate::Actor::started).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `tell` failed because the actor is not running (stopped, or stopping and no longer
/// accepting). The message is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<M>(pub M);

impl<M> SendError<M> {
    /// The message that could not be delivered.
    pub fn into_inner(self) -> M {
        self.0
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").finish_non_exhaustive()
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the actor is not running; the message was handed back")
    }
}

impl<M> std::error::Error for SendError<M> {}

/// `try_tell` failed at once. The message is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<M> {
    /// The bounded mailbox is full. `tell` would have waited for room.
    Full(M),
    /// The actor is not running.
    Closed(M),
}

impl<M> TrySendError<M> {
    /// The message that could not be delivered.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }

    /// Whether the mailbox was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<M> From<SendError<M>> for TrySendError<M> {
    fn from(e: SendError<M>) -> Self {
        TrySendError::Closed(e.0)
    }
}

impl<M> fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<M> fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => {
                f.write_str("the mailbox is full; the message was handed back")
            }
            TrySendError::Closed(_) => {
                f.write_str("the actor is not running; the message was handed back")
            }
        }
    }
}

impl<M> std::error::Error for TrySendError<M> {}

/// Why an `ask` produced no reply. Every ask resolves exactly once, with the reply or with one
/// of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AskError {
    /// No reply within the ask's timeout. The message may still be handled later; its reply is
    /// then counted as a dead letter.
    Timeout(Duration),
    /// The actor was not running, or stopped (or was killed) before replying.
    Stopped,
    /// The handler panicked while handling this message.
    Panicked,
    /// The reply handle ([`ReplyTo`](crate::ReplyTo)) was dropped without sending a reply.
    NoReply,
    /// Sent through a router with no live routee.
    NoRoutees,
    /// The remote actor's node was lost before the reply came (or was unreachable).
    NodeDown,
    /// The remote node could not deliver or answer the message.
    Remote(crate::RemoteFailure),
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Timeout(d) => write!(f, "no reply within {d:?}"),
            AskError::Stopped => f.write_str("the actor stopped before replying"),
            AskError::Panicked => f.write_str("the actor panicked while handling the message"),
            AskError::NoReply => f.write_str("the reply handle was dropped without a reply"),
            AskError::NoRoutees => f.write_str("the router has no live routee"),
            AskError::NodeDown => f.write_str("the remote actor's node is unreachable"),
            AskError::Remote(failure) => write!(f, "remote failure: {failure}"),
        }
    }
}

impl std::error::Error for AskError {}

/// Why an actor could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnError {
    /// A sibling already has this name.
    NameTaken(String),
    /// Names must be non-empty, at most 255 bytes, without `/`, and must not start with `$`
    /// (reserved for generated names).
    InvalidName(String),
    /// The system is shutting down and accepts no new actors.
    ShuttingDown,
    /// The parent is stopping and accepts no new children.
    ParentStopping,
    /// A [`blocking`](crate::Props::blocking) actor's dedicated thread could not be started
    /// (the OS refused a thread); the message is the OS error.
    ThreadUnavailable(String),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NameTaken(n) => write!(f, "a sibling is already named {n:?}"),
            SpawnError::InvalidName(n) => write!(
                f,
                "invalid actor name {n:?}: names must be 1-255 bytes, contain no '/' and not start with '$'"
            ),
            SpawnError::ShuttingDown => f.write_str("the actor system is shutting down"),
            SpawnError::ParentStopping => f.write_str("the parent actor is stopping"),
            SpawnError::ThreadUnavailable(e) => {
                write!(f, "could not start the blocking actor's thread: {e}")
            }
        }
    }
}

impl std::error::Error for SpawnError {}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Another live actor is registered under this name.
    NameTaken(String),
    /// The actor to register is not running.
    NotRunning,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::NameTaken(n) => {
                write!(f, "another actor is already registered as {n:?}")
            }
            RegistryError::NotRunning => f.write_str("the actor is not running"),
        }
    }
}

impl std::error::Error for RegistryError {}

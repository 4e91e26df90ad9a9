//! Why actors stop and fail, and the `Terminated` notification of death watch.

use crate::actor::{ActorId, Message};
use std::fmt;
use std::sync::Arc;

/// Why an actor instance failed: the cause handed to supervisors and to
/// [`Actor::restarting`](crate::Actor::restarting).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// A handler or lifecycle hook panicked; the panic message.
    Panicked(Arc<str>),
    /// [`Context::fail`](crate::Context::fail) was called, or
    /// [`Actor::started`](crate::Actor::started) returned an error.
    Error(Arc<str>),
    /// [`ActorRef::kill`](crate::ActorRef::kill): the instance was terminated at once.
    Killed,
    /// This actor, as a supervisor, exceeded its restart intensity for a child and escalated.
    Escalated {
        /// The child whose failure exhausted the intensity.
        child: ActorId,
    },
    /// Restarted along with a failed sibling (all-for-one or rest-for-one strategy).
    SiblingFailed {
        /// The sibling whose failure triggered the restart.
        sibling: ActorId,
    },
    /// A permanent child stopped itself; permanent children are always restarted.
    ExitedNormally,
}

impl Failure {
    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message: Arc<str> = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Arc::from(*s)
        } else if let Some(s) = payload.downcast_ref::<String>() {
            Arc::from(s.as_str())
        } else {
            Arc::from("non-string panic payload")
        };
        Failure::Panicked(message)
    }

    /// Whether this failure is abnormal in Erlang's sense (everything but a normal exit).
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, Failure::ExitedNormally)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panicked(m) => write!(f, "panicked: {m}"),
            Failure::Error(m) => write!(f, "failed: {m}"),
            Failure::Killed => f.write_str("killed"),
            Failure::Escalated { child } => {
                write!(f, "restart intensity exceeded for child {child}")
            }
            Failure::SiblingFailed { sibling } => write!(f, "sibling {sibling} failed"),
            Failure::ExitedNormally => f.write_str("exited normally"),
        }
    }
}

/// Why an actor terminated (it will not run again).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// The actor stopped itself with [`Context::stop`](crate::Context::stop).
    Normal,
    /// Stopped from outside: [`ActorRef::stop`](crate::ActorRef::stop) or
    /// [`ActorRef::drain_and_stop`](crate::ActorRef::drain_and_stop), or its parent stopped.
    Stopped,
    /// Stopped by [`ActorSystem::shutdown`](crate::ActorSystem::shutdown).
    Shutdown,
    /// Failed, and its supervisor did not restart it.
    Failed(Failure),
    /// Sent to watchers of an actor that had already terminated when the watch was placed.
    AlreadyTerminated,
    /// A remote actor's node was lost (connection down and not restored): the actor may still
    /// run, but it is unreachable from here.
    NodeDown,
    /// A remote actor terminated; its node reported why.
    Remote(std::sync::Arc<str>),
}

impl ExitReason {
    /// Whether the actor ended abnormally (failed or killed).
    pub fn is_failure(&self) -> bool {
        matches!(self, ExitReason::Failed(_))
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("stopped itself"),
            ExitReason::Stopped => f.write_str("stopped"),
            ExitReason::Shutdown => f.write_str("system shutdown"),
            ExitReason::Failed(failure) => write!(f, "{failure}"),
            ExitReason::AlreadyTerminated => f.write_str("already terminated"),
            ExitReason::NodeDown => f.write_str("its node is unreachable"),
            ExitReason::Remote(reason) => write!(f, "terminated on its node: {reason}"),
        }
    }
}

/// Delivered to watchers when a watched actor terminates (see
/// [`Context::watch`](crate::Context::watch)).
///
/// It travels on the signal lane, so it is never stuck behind a full mailbox; it may therefore
/// arrive before ordinary messages the watched actor sent just before terminating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    /// The actor that terminated.
    pub id: ActorId,
    /// Why it terminated.
    pub reason: ExitReason,
}

impl Message for Terminated {
    type Reply = ();
}

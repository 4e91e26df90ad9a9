//! Backoff supervision: [`BackoffSupervisor`], a one-child parent with an unlimited,
//! backoff-delayed restart strategy, and [`WhileDown`]. Their docs state the semantics.

use crate::actor::{Actor, Message};
use crate::actor_ref::ActorRef;
use crate::context::Context;
use crate::error::SpawnError;
use crate::props::Props;
use crate::supervision::{Backoff, Restart, SupervisorStrategy};
use crate::system::ActorSystem;
use crate::Handler;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// What becomes of messages sent to an actor while it is down between a failure and its
/// restart. Set with [`Props::while_down`](crate::Props::while_down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhileDown {
    /// They wait in the mailbox and the next instance handles them (the default).
    #[default]
    Keep,
    /// They are dropped as dead letters ([`ActorDown`](crate::DeadLetterReason::ActorDown));
    /// an ask among them resolves at once with [`AskError::Stopped`](crate::AskError::Stopped).
    DeadLetter,
}

/// Keeps one child alive, restarting it after exponentially growing, jittered delays, for as
/// long as it takes. Build it with [`on_failure`](Self::on_failure) or
/// [`on_stop`](Self::on_stop), then [`spawn`](Self::spawn) it.
///
/// It spawns a small parent actor whose only job is its child. When the
/// child fails (or, with [`on_stop`](BackoffSupervisor::on_stop), also when it stops
/// normally), the parent restarts it after the next delay of its [`Backoff`]: `min`, then
/// `min × factor`, … up to `max`, each stretched by random jitter so that many children failing
/// together (a database restart) do not come back in lockstep. Once the child has stayed up for
/// the backoff's reset period, the next failure starts again from `min`. There is no restart
/// limit unless you set one.
///
/// The child's [`ActorRef`] stays valid across restarts (the mailbox belongs to the actor, not
/// to an instance), so callers keep talking to the same reference. What happens to messages
/// while the child is down is chosen by [`WhileDown`]: **stash** them in the mailbox for the
/// next instance (the default; a full mailbox pushes back on senders), or **dead-letter**
/// them with reason [`ActorDown`](crate::DeadLetterReason::ActorDown) so callers fail fast
/// instead of waiting for a dependency that is away.
///
/// ```
/// use postbox::prelude::*;
/// use postbox::{Backoff, BackoffSupervisor, WhileDown};
/// use std::time::Duration;
///
/// struct Connection;
/// impl Actor for Connection {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let system = ActorSystem::new();
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
///     .reset_after(Duration::from_secs(30));
/// let connection: ActorRef<Connection> =
///     BackoffSupervisor::on_failure(Props::new(|| Connection).name("db"), backoff)
///         .while_down(WhileDown::DeadLetter)
///         .spawn(&system)
///         .await?;
/// assert_eq!(connection.path(), "/user/db-backoff/db");
/// # system.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct BackoffSupervisor<A: Actor> {
    child: Props<A>,
    backoff: Backoff,
    restart: Restart,
    while_down: WhileDown,
    limit: Option<(u32, Duration)>,
}

impl<A: Actor> BackoffSupervisor<A> {
    /// Restarts the child after failures (panics, errors, kills); a normal stop is final.
    pub fn on_failure(child: Props<A>, backoff: Backoff) -> Self {
        Self::new(child, backoff, Restart::Transient)
    }

    /// Restarts the child after failures and after normal stops alike (a child that exits
    /// when its connection drops, say).
    pub fn on_stop(child: Props<A>, backoff: Backoff) -> Self {
        Self::new(child, backoff, Restart::Permanent)
    }

    fn new(child: Props<A>, backoff: Backoff, restart: Restart) -> Self {
        Self {
            child,
            backoff,
            restart,
            while_down: WhileDown::Keep,
            limit: None,
        }
    }

    /// What becomes of messages while the child is down (default: kept for the next instance).
    pub fn while_down(mut self, while_down: WhileDown) -> Self {
        self.while_down = while_down;
        self
    }

    /// Gives up after more than `max_restarts` restarts within `within`: the supervisor fails
    /// (logged, and `Terminated` to its watchers) and stops for good, its child with it.
    /// Default: never gives up.
    pub fn max_restarts(mut self, max_restarts: u32, within: Duration) -> Self {
        self.limit = Some((max_restarts, within));
        self
    }

    fn into_props(self) -> (Props<BackoffParent<A>>, Arc<OnceLock<ActorRef<A>>>) {
        let name = self.child.name.clone();
        let (max_restarts, within) = self.limit.unwrap_or((u32::MAX, Duration::from_secs(1)));
        let mut backoff = self.backoff;
        if backoff.reset_after.is_none() {
            // Healthy for twice the longest delay: the next failure starts from `min` again.
            let healthy = (backoff.max * 2).max(Duration::from_secs(1));
            backoff = backoff.reset_after(healthy);
        }
        let strategy = SupervisorStrategy::one_for_one()
            .max_restarts(max_restarts, within)
            .backoff(backoff);
        let child = Arc::new(Mutex::new(Some(
            self.child.restart(self.restart).while_down(self.while_down),
        )));
        let child_ref = Arc::new(OnceLock::new());
        let shared = child_ref.clone();
        let mut props = Props::new(move || BackoffParent {
            child: child.clone(),
            child_ref: shared.clone(),
        })
        .supervisor(strategy)
        // Its one child was handed over at the first start; a restart could not rebuild it.
        .restart(Restart::Temporary);
        if let Some(name) = name {
            props = props.name(format!("{name}-backoff"));
        }
        (props, child_ref)
    }

    /// Spawns the supervisor under the root guardian and returns its child once running. The
    /// supervisor is named `<child name>-backoff` when the child is named.
    pub async fn spawn(self, system: &ActorSystem) -> Result<ActorRef<A>, SpawnError> {
        let (props, child) = self.into_props();
        let parent = system.spawn(props)?;
        Self::child_of(parent, child).await
    }

    /// Like [`spawn`](Self::spawn), as a child of the actor owning `ctx`.
    pub async fn spawn_in<P: Actor>(self, ctx: &mut Context<P>) -> Result<ActorRef<A>, SpawnError> {
        let (props, child) = self.into_props();
        let parent = ctx.spawn(props)?;
        Self::child_of(parent, child).await
    }

    async fn child_of(
        parent: ActorRef<BackoffParent<A>>,
        child: Arc<OnceLock<ActorRef<A>>>,
    ) -> Result<ActorRef<A>, SpawnError> {
        match parent.ask(SpawnChild).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(SpawnError::ParentStopping),
        }
        child.get().cloned().ok_or(SpawnError::ParentStopping)
    }
}

impl<A: Actor> fmt::Debug for BackoffSupervisor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackoffSupervisor")
            .field("child", &self.child)
            .field("backoff", &self.backoff)
            .field("restart", &self.restart)
            .field("while_down", &self.while_down)
            .finish_non_exhaustive()
    }
}

/// The parent actor: spawns the child once, then only supervises.
struct BackoffParent<A: Actor> {
    child: Arc<Mutex<Option<Props<A>>>>,
    child_ref: Arc<OnceLock<ActorRef<A>>>,
}

impl<A: Actor> Actor for BackoffParent<A> {}

struct SpawnChild;

impl Message for SpawnChild {
    type Reply = Result<(), SpawnError>;
}

impl<A: Actor> Handler<SpawnChild> for BackoffParent<A> {
    async fn handle(&mut self, _: SpawnChild, ctx: &mut Context<Self>) -> Result<(), SpawnError> {
        let props = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match props {
            Some(props) => {
                let child = ctx.spawn(props)?;
                let _ = self.child_ref.set(child);
                Ok(())
            }
            // Already spawned (a second call is a no-op).
            None => Ok(()),
        }
    }
}

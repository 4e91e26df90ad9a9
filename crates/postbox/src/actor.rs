//! Actors, messages and handlers.
//!
//! An actor is a value that owns its state and is driven by one task: it handles one message at
//! a time, with `&mut self`, so its state needs no locks. It can handle any number of message
//! types, one [`Handler`] implementation each; handlers are `async` and return the message's
//! [`Message::Reply`].
//!
//! # Lifecycle
//!
//! ```text
//!  spawn ──► started ──► handle, handle, … ──┬─► stopping ──► (children stop) ──► stopped
//!               ▲                            │
//!               └── new instance ◄─ restarting ◄─ failure (panic, `ctx.fail`, kill) and the
//!                   from the factory              supervisor decides to restart
//! ```
//!
//! Every instance that starts gets exactly one ending: either [`Actor::restarting`] (it is
//! replaced by a fresh instance built by the factory given at spawn) or [`Actor::stopping`]
//! followed by [`Actor::stopped`]. A kill skips the hooks of the instance it ends. A panic in a
//! hook counts as a failure of the actor, like a panic in a handler.

use crate::ask::ReplyTo;
use crate::context::Context;
use crate::error::BoxError;
use crate::lifecycle::{ExitReason, Failure};
use std::fmt;
use std::future::Future;

/// A message type and the type of its reply.
///
/// ```
/// use postbox::Message;
///
/// struct Deposit { cents: u64 }
/// impl Message for Deposit {
///     type Reply = u64; // the new balance
/// }
/// ```
pub trait Message: Send + 'static {
    /// What a handler returns for this message and what `ask` resolves to. Use `()` for
    /// messages that are only ever told.
    type Reply: Send + 'static;

    /// How this message travels to actors on other nodes; `None` (the default) keeps it
    /// local. The transport crate's `remote_message!` macro writes this method.
    fn remote() -> Option<crate::remote::RemoteCodec<Self>>
    where
        Self: Sized,
    {
        None
    }
}

/// The behaviour shared by all actors: lifecycle hooks, all optional.
///
/// Hooks are `async` and get the actor's [`Context`]. Returning an error from
/// [`started`](Actor::started) (or panicking in any hook) is a failure of the actor, handled by
/// its supervisor like a panic in a handler.
///
/// ```
/// use postbox::prelude::*;
///
/// struct Logger { lines: Vec<String> }
///
/// impl Actor for Logger {
///     async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
///         self.lines.push(format!("{} up", ctx.path()));
///         Ok(())
///     }
/// }
/// ```
pub trait Actor: Sized + Send + 'static {
    /// Runs before the first message of every instance (after spawn and after each restart).
    fn started(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs when the actor begins to stop, before its children are stopped. The mailbox is
    /// already closed to new messages.
    fn stopping(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Runs last, after all children have terminated. `reason` says why the actor stops.
    fn stopped(
        &mut self,
        ctx: &mut Context<Self>,
        reason: &ExitReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// Runs on an instance that is about to be replaced by a fresh one (its supervisor decided
    /// to restart it). `cause` is why: its own failure, or a sibling's under all-for-one /
    /// rest-for-one. Its children are stopped after this hook returns.
    fn restarting(
        &mut self,
        ctx: &mut Context<Self>,
        cause: &Failure,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, cause);
        async {}
    }
}

/// Handling of one message type.
///
/// Handlers run one at a time per actor with exclusive access to its state. A handler may
/// `.await`; the actor handles nothing else meanwhile, so long waits belong in a spawned task —
/// use [`ActorRef::ask_with`](crate::ActorRef::ask_with) and reply from there to keep the
/// mailbox moving.
///
/// ```
/// use postbox::prelude::*;
///
/// #[derive(Default)]
/// struct Account { balance: u64 }
/// impl Actor for Account {}
///
/// struct Deposit(u64);
/// impl Message for Deposit { type Reply = u64; }
///
/// impl Handler<Deposit> for Account {
///     async fn handle(&mut self, msg: Deposit, _ctx: &mut Context<Self>) -> u64 {
///         self.balance += msg.0;
///         self.balance
///     }
/// }
/// ```
pub trait Handler<M: Message>: Actor {
    /// Handles `msg`; the returned value is the reply to an `ask` (and dropped for a `tell`).
    fn handle(&mut self, msg: M, ctx: &mut Context<Self>) -> impl Future<Output = M::Reply> + Send;

    /// What the runtime calls for each `msg`: handles it and answers `reply` (`None` for a
    /// `tell`). The default awaits [`handle`](Self::handle) and sends its value; leave it
    /// alone unless the reply is produced somewhere else.
    ///
    /// Override it to answer later from another task (an actor fronting a remote service or
    /// another runtime): hand `reply` over and return, and the actor takes its next message
    /// while the answer is on its way — the same effect as
    /// [`ActorRef::ask_with`](crate::ActorRef::ask_with), but for any message type, so that
    /// plain `ask`s, `Recipient`s, routers and remote senders all get it. The override owns
    /// the reply: dropping it unanswered resolves the asker with
    /// [`AskError::Stopped`](crate::AskError::Stopped), and a [`ReplyTo::send`] that fails
    /// (the asker gave up) is counted nowhere unless the override records it
    /// ([`DeadLetters::record`](crate::DeadLetters::record), reason `ReplyUndeliverable`).
    /// The actor's processed count and handling time then cover only this method, not the
    /// work done elsewhere.
    ///
    /// ```
    /// use postbox::prelude::*;
    ///
    /// /// Answers from a spawned task; never holds up its mailbox.
    /// struct Offload;
    /// impl Actor for Offload {}
    ///
    /// struct Square(u64);
    /// impl Message for Square { type Reply = u64; }
    ///
    /// impl Handler<Square> for Offload {
    ///     async fn handle(&mut self, Square(n): Square, _: &mut Context<Self>) -> u64 {
    ///         n * n
    ///     }
    ///
    ///     fn handle_reply(
    ///         &mut self,
    ///         Square(n): Square,
    ///         reply: Option<ReplyTo<u64>>,
    ///         _: &mut Context<Self>,
    ///     ) -> impl std::future::Future<Output = ()> + Send {
    ///         tokio::spawn(async move {
    ///             if let Some(reply) = reply {
    ///                 let _ = reply.send(n * n);
    ///             }
    ///         });
    ///         async {}
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let system = ActorSystem::new();
    /// let offload = system.spawn(|| Offload)?;
    /// assert_eq!(offload.ask(Square(12)).await?, 144);
    /// # system.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    fn handle_reply(
        &mut self,
        msg: M,
        reply: Option<ReplyTo<M::Reply>>,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = ()> + Send {
        async move {
            let value = self.handle(msg, &mut *ctx).await;
            if let Some(reply) = reply {
                if reply.send_unrecorded(value).is_err() {
                    ctx.reply_undeliverable::<M::Reply>();
                }
            }
        }
    }
}

/// Identity of an actor within its [`ActorSystem`](crate::ActorSystem).
///
/// Ids are unique for the lifetime of the system and never reused; a restarted actor keeps its
/// id (and its mailbox), so references to it stay valid across restarts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(pub(crate) u64);

impl ActorId {
    /// The numeric value of the id.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id with numeric value `raw` (as carried by another node's messages). Whether an
    /// actor has it is for [`ActorSystem`](crate::ActorSystem) lookups to say.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({})", self.0)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

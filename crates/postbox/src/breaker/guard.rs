//! Actor references guarded by a circuit breaker: [`GuardedRef`] and [`GuardedRecipient`],
//! their error types, and the shared send/ask logic. What counts as a failure for each kind of
//! send is documented on [`GuardedRef`].
//!
//! A guarded `tell` that times out cannot hand its message back: the waiting send owns it, and
//! the core has no "wait for room until a deadline" that returns the message. Such messages
//! are counted as dead letters here instead, so none disappears uncounted.

use super::bounded::{Bounded, Finished};
use super::{CallOutcome, CircuitBreaker};
use crate::actor::{Actor, Handler, Message};
use crate::actor_ref::{ActorRef, Recipient, Watchable};
use crate::dead_letters::{DeadLetter, DeadLetterReason};
use crate::error::{AskError, SendError, TrySendError};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A guarded `tell` failed.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardedSendError<M> {
    /// The breaker is open (or half-open with its trial running): nothing was sent. The
    /// message is handed back with the time until the breaker lets a trial through.
    Open {
        /// The message, not sent.
        msg: M,
        /// Time until the breaker half-opens (zero while a trial runs).
        remaining: Duration,
    },
    /// The actor is not running; the message is handed back. Counted as a failure.
    Closed(M),
    /// The mailbox stayed full for longer than the call timeout. The message was dropped
    /// (and counted as a `MailboxFull` dead letter). Counted as a failure.
    Timeout(Duration),
}

impl<M> GuardedSendError<M> {
    /// The message, unless it was dropped at the timeout.
    pub fn into_inner(self) -> Option<M> {
        match self {
            GuardedSendError::Open { msg, .. } | GuardedSendError::Closed(msg) => Some(msg),
            GuardedSendError::Timeout(_) => None,
        }
    }

    /// Whether the breaker refused the send without trying.
    pub fn is_rejected(&self) -> bool {
        matches!(self, GuardedSendError::Open { .. })
    }
}

impl<M> fmt::Debug for GuardedSendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedSendError::Open { remaining, .. } => f
                .debug_struct("Open")
                .field("remaining", remaining)
                .finish_non_exhaustive(),
            GuardedSendError::Closed(_) => f.write_str("Closed(..)"),
            GuardedSendError::Timeout(d) => f.debug_tuple("Timeout").field(d).finish(),
        }
    }
}

impl<M> fmt::Display for GuardedSendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedSendError::Open { remaining, .. } => write!(
                f,
                "the circuit breaker is open for another {remaining:?}; the message was handed back"
            ),
            GuardedSendError::Closed(_) => {
                f.write_str("the actor is not running; the message was handed back")
            }
            GuardedSendError::Timeout(d) => write!(
                f,
                "the mailbox stayed full for the breaker's call timeout ({d:?}); the message was dropped"
            ),
        }
    }
}

impl<M> std::error::Error for GuardedSendError<M> {}

/// A guarded `try_tell` failed. The message is always handed back.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardedTrySendError<M> {
    /// The breaker is open (or half-open with its trial running): nothing was sent.
    Open {
        /// The message, not sent.
        msg: M,
        /// Time until the breaker half-opens (zero while a trial runs).
        remaining: Duration,
    },
    /// The mailbox is full. Not counted either way.
    Full(M),
    /// The actor is not running. Counted as a failure.
    Closed(M),
}

impl<M> GuardedTrySendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            GuardedTrySendError::Open { msg, .. }
            | GuardedTrySendError::Full(msg)
            | GuardedTrySendError::Closed(msg) => msg,
        }
    }

    /// Whether the breaker refused the send without trying.
    pub fn is_rejected(&self) -> bool {
        matches!(self, GuardedTrySendError::Open { .. })
    }
}

impl<M> fmt::Debug for GuardedTrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedTrySendError::Open { remaining, .. } => f
                .debug_struct("Open")
                .field("remaining", remaining)
                .finish_non_exhaustive(),
            GuardedTrySendError::Full(_) => f.write_str("Full(..)"),
            GuardedTrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<M> fmt::Display for GuardedTrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedTrySendError::Open { remaining, .. } => write!(
                f,
                "the circuit breaker is open for another {remaining:?}; the message was handed back"
            ),
            GuardedTrySendError::Full(_) => {
                f.write_str("the mailbox is full; the message was handed back")
            }
            GuardedTrySendError::Closed(_) => {
                f.write_str("the actor is not running; the message was handed back")
            }
        }
    }
}

impl<M> std::error::Error for GuardedTrySendError<M> {}

/// A guarded `ask` produced no reply.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardedAskError<M> {
    /// The breaker is open (or half-open with its trial running): nothing was sent.
    Open {
        /// The message, not sent.
        msg: M,
        /// Time until the breaker half-opens (zero while a trial runs).
        remaining: Duration,
    },
    /// The ask was made and failed (counted as a failure); `Timeout` carries the breaker's
    /// call timeout.
    Ask(AskError),
}

impl<M> GuardedAskError<M> {
    /// The message, if the breaker refused to send it.
    pub fn into_inner(self) -> Option<M> {
        match self {
            GuardedAskError::Open { msg, .. } => Some(msg),
            GuardedAskError::Ask(_) => None,
        }
    }

    /// Whether the breaker refused the ask without trying.
    pub fn is_rejected(&self) -> bool {
        matches!(self, GuardedAskError::Open { .. })
    }
}

impl<M> fmt::Debug for GuardedAskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedAskError::Open { remaining, .. } => f
                .debug_struct("Open")
                .field("remaining", remaining)
                .finish_non_exhaustive(),
            GuardedAskError::Ask(e) => f.debug_tuple("Ask").field(e).finish(),
        }
    }
}

impl<M> fmt::Display for GuardedAskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedAskError::Open { remaining, .. } => write!(
                f,
                "the circuit breaker is open for another {remaining:?}; the message was handed back"
            ),
            GuardedAskError::Ask(e) => e.fmt(f),
        }
    }
}

impl<M> std::error::Error for GuardedAskError<M> {}

/// An [`ActorRef`] whose sends go through a [`CircuitBreaker`], from
/// [`CircuitBreaker::guard`]. Cheap to clone.
///
/// While the breaker is open, `tell`, `try_tell` and `ask` fail at once, handing the message
/// back. Otherwise, what the breaker counts:
///
/// * `tell`: delivered into the mailbox is a success. A closed mailbox (the actor is not
///   running) is a failure, and so is waiting for room in a full mailbox for longer than the
///   call timeout: that tell gives up with [`GuardedSendError::Timeout`]. Its message was
///   owned by the waiting send and is dropped with it, counted as a `MailboxFull` dead letter.
/// * `try_tell`: delivered is a success, closed a failure. A full mailbox is backpressure, not
///   an outage: it counts neither way ([`CallOutcome::Ignored`]).
/// * `ask`: the breaker's call timeout is the ask's timeout. A reply is a success (unless a
///   failure predicate says otherwise); any [`AskError`] is a failure (`Timeout` counted as a
///   timeout, `Panicked` as a panic).
///
/// For a failure predicate on replies kept with the handle, guard a
/// [`Recipient`] instead (`breaker.guard_recipient(actor.recipient())`) and use
/// [`GuardedRecipient::failure_if`]; here, use [`ask_classified`](Self::ask_classified).
///
/// ```
/// use postbox::prelude::*;
/// use postbox::{CircuitBreaker, GuardedAskError};
/// use std::time::Duration;
///
/// struct Quote;
/// impl Actor for Quote {}
///
/// #[derive(Debug, PartialEq)]
/// struct Price(&'static str);
/// impl Message for Price { type Reply = Result<u32, String>; }
/// impl Handler<Price> for Quote {
///     async fn handle(&mut self, msg: Price, _: &mut Context<Self>) -> Result<u32, String> {
///         if msg.0 == "ACME" { Ok(42) } else { Err("upstream down".into()) }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let system = ActorSystem::new();
/// let breaker = CircuitBreaker::builder("quotes")
///     .max_failures(1)
///     .reset_timeout(Duration::from_secs(10))
///     .build()?;
/// let quotes = breaker.guard(system.spawn(|| Quote)?);
///
/// // The reply is an error: count it as a failure (this trips the breaker).
/// let reply = quotes.ask_classified(Price("INITECH"), |r| r.is_err()).await;
/// assert_eq!(reply, Ok(Err("upstream down".to_string())));
///
/// // Open: the message comes back unsent.
/// match quotes.ask(Price("ACME")).await {
///     Err(GuardedAskError::Open { msg, .. }) => assert_eq!(msg.0, "ACME"),
///     other => panic!("expected a rejection, got {other:?}"),
/// }
/// # system.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct GuardedRef<A: Actor> {
    actor: ActorRef<A>,
    breaker: CircuitBreaker,
}

impl<A: Actor> GuardedRef<A> {
    pub(super) fn new(actor: ActorRef<A>, breaker: CircuitBreaker) -> Self {
        Self { actor, breaker }
    }

    /// The actor, unguarded.
    pub fn actor(&self) -> &ActorRef<A> {
        &self.actor
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Sends `msg` through the breaker, waiting up to the call timeout for mailbox room.
    pub async fn tell<M>(&self, msg: M) -> Result<(), GuardedSendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        guarded_tell(&self.breaker, &self.actor, msg, |msg| self.actor.tell(msg)).await
    }

    /// Sends `msg` through the breaker if the mailbox has room right now.
    pub fn try_tell<M>(&self, msg: M) -> Result<(), GuardedTrySendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        guarded_try_tell(&self.breaker, msg, |msg| self.actor.try_tell(msg))
    }

    /// Asks through the breaker, with the call timeout as the ask's timeout. Any
    /// [`AskError`] counts as a failure; any reply as a success.
    pub async fn ask<M>(&self, msg: M) -> Result<M::Reply, GuardedAskError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        self.ask_classified(msg, |_| false).await
    }

    /// Like [`ask`](Self::ask), with `is_failure` deciding whether a reply counts as a
    /// failure. The caller gets the reply either way.
    pub async fn ask_classified<M, P>(
        &self,
        msg: M,
        is_failure: P,
    ) -> Result<M::Reply, GuardedAskError<M>>
    where
        A: Handler<M>,
        M: Message,
        P: FnOnce(&M::Reply) -> bool,
    {
        let timeout = self.breaker.call_timeout();
        guarded_ask(&self.breaker, msg, is_failure, |msg| async move {
            self.actor.ask(msg).timeout(timeout).await
        })
        .await
    }
}

impl<A: Actor> Clone for GuardedRef<A> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            breaker: self.breaker.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for GuardedRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedRef")
            .field("actor", &self.actor)
            .field("breaker", &self.breaker.name())
            .finish()
    }
}

type ReplyPredicate<R> = Arc<dyn Fn(&R) -> bool + Send + Sync + 'static>;

/// A [`Recipient`] whose sends go through a [`CircuitBreaker`], from
/// [`CircuitBreaker::guard_recipient`]. What counts as a failure is described at
/// [`GuardedRef`]; in addition, a predicate kept with the handle
/// ([`failure_if`](Self::failure_if)) may count some replies as failures. Cheap to clone.
pub struct GuardedRecipient<M: Message> {
    recipient: Recipient<M>,
    breaker: CircuitBreaker,
    failure_if: Option<ReplyPredicate<M::Reply>>,
}

impl<M: Message> GuardedRecipient<M> {
    pub(super) fn new(recipient: Recipient<M>, breaker: CircuitBreaker) -> Self {
        Self {
            recipient,
            breaker,
            failure_if: None,
        }
    }

    /// Counts replies for which `is_failure` returns true as failures of
    /// [`ask`](Self::ask) (by default every reply is a success).
    pub fn failure_if(
        mut self,
        is_failure: impl Fn(&M::Reply) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.failure_if = Some(Arc::new(is_failure));
        self
    }

    /// The recipient, unguarded.
    pub fn recipient(&self) -> &Recipient<M> {
        &self.recipient
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Sends `msg` through the breaker, waiting up to the call timeout for mailbox room.
    pub async fn tell(&self, msg: M) -> Result<(), GuardedSendError<M>> {
        guarded_tell(&self.breaker, &self.recipient, msg, |msg| {
            self.recipient.tell(msg)
        })
        .await
    }

    /// Sends `msg` through the breaker if the mailbox has room right now.
    pub fn try_tell(&self, msg: M) -> Result<(), GuardedTrySendError<M>> {
        guarded_try_tell(&self.breaker, msg, |msg| self.recipient.try_tell(msg))
    }

    /// Asks through the breaker, with the call timeout as the ask's timeout. Any
    /// [`AskError`] counts as a failure, and so does a reply that the handle's
    /// [`failure_if`](Self::failure_if) predicate rejects.
    pub async fn ask(&self, msg: M) -> Result<M::Reply, GuardedAskError<M>> {
        match &self.failure_if {
            Some(is_failure) => self.ask_classified(msg, |reply| is_failure(reply)).await,
            None => self.ask_classified(msg, |_| false).await,
        }
    }

    /// Like [`ask`](Self::ask), with `is_failure` (instead of the handle's predicate) deciding
    /// whether a reply counts as a failure.
    pub async fn ask_classified<P>(
        &self,
        msg: M,
        is_failure: P,
    ) -> Result<M::Reply, GuardedAskError<M>>
    where
        P: FnOnce(&M::Reply) -> bool,
    {
        let timeout = self.breaker.call_timeout();
        guarded_ask(&self.breaker, msg, is_failure, |msg| async move {
            self.recipient.ask(msg).timeout(timeout).await
        })
        .await
    }
}

impl<M: Message> Clone for GuardedRecipient<M> {
    fn clone(&self) -> Self {
        Self {
            recipient: self.recipient.clone(),
            breaker: self.breaker.clone(),
            failure_if: self.failure_if.clone(),
        }
    }
}

impl<M: Message> fmt::Debug for GuardedRecipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedRecipient")
            .field("recipient", &self.recipient)
            .field("breaker", &self.breaker.name())
            .field("failure_if", &self.failure_if.is_some())
            .finish()
    }
}

async fn guarded_tell<M, T, F, Fut>(
    breaker: &CircuitBreaker,
    target: &T,
    msg: M,
    send: F,
) -> Result<(), GuardedSendError<M>>
where
    M: Message,
    T: Watchable,
    F: FnOnce(M) -> Fut,
    Fut: Future<Output = Result<(), SendError<M>>>,
{
    let permit = match breaker.admit() {
        Ok(permit) => permit,
        Err(remaining) => return Err(GuardedSendError::Open { msg, remaining }),
    };
    let timeout = breaker.call_timeout();
    match Bounded::new(send(msg), timeout).await {
        Finished::Done(Ok(())) => {
            permit.settle(CallOutcome::Success);
            Ok(())
        }
        Finished::Done(Err(SendError(msg))) => {
            permit.settle(CallOutcome::Failure);
            Err(GuardedSendError::Closed(msg))
        }
        // Sending runs no user code: a panic here is the runtime's own bug, and it goes on
        // unwinding (the permit, dropped on the way, counts the call as cancelled).
        Finished::Panicked(payload) => std::panic::resume_unwind(payload),
        Finished::TimedOut => {
            count_dropped::<M>(target);
            permit.settle(CallOutcome::Timeout);
            Err(GuardedSendError::Timeout(timeout))
        }
    }
}

/// Counts a message dropped with its timed-out send as a dead letter.
fn count_dropped<M>(target: &impl Watchable) {
    let cell = target.watch_target().0;
    let meta = cell.meta();
    meta.system.dead_letters().record(DeadLetter {
        recipient: meta.id,
        recipient_type: cell.actor_type(),
        message_type: std::any::type_name::<M>(),
        reason: DeadLetterReason::MailboxFull,
    });
}

fn guarded_try_tell<M>(
    breaker: &CircuitBreaker,
    msg: M,
    send: impl FnOnce(M) -> Result<(), TrySendError<M>>,
) -> Result<(), GuardedTrySendError<M>> {
    let permit = match breaker.admit() {
        Ok(permit) => permit,
        Err(remaining) => return Err(GuardedTrySendError::Open { msg, remaining }),
    };
    match send(msg) {
        Ok(()) => {
            permit.settle(CallOutcome::Success);
            Ok(())
        }
        Err(TrySendError::Full(msg)) => {
            permit.settle(CallOutcome::Ignored);
            Err(GuardedTrySendError::Full(msg))
        }
        Err(TrySendError::Closed(msg)) => {
            permit.settle(CallOutcome::Failure);
            Err(GuardedTrySendError::Closed(msg))
        }
    }
}

async fn guarded_ask<M, P, F, Fut>(
    breaker: &CircuitBreaker,
    msg: M,
    is_failure: P,
    ask: F,
) -> Result<M::Reply, GuardedAskError<M>>
where
    M: Message,
    P: FnOnce(&M::Reply) -> bool,
    F: FnOnce(M) -> Fut,
    Fut: Future<Output = Result<M::Reply, AskError>>,
{
    let permit = match breaker.admit() {
        Ok(permit) => permit,
        Err(remaining) => return Err(GuardedAskError::Open { msg, remaining }),
    };
    let result = ask(msg).await;
    let outcome = match &result {
        Ok(reply) if is_failure(reply) => CallOutcome::Failure,
        Ok(_) => CallOutcome::Success,
        Err(AskError::Timeout(_)) => CallOutcome::Timeout,
        Err(AskError::Panicked) => CallOutcome::Panicked,
        Err(_) => CallOutcome::Failure,
    };
    permit.settle(outcome);
    result.map_err(GuardedAskError::Ask)
}

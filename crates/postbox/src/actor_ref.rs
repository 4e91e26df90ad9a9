//! References to actors: typed [`ActorRef<A>`] and type-erased [`Recipient<M>`].
//!
//! Both are cheap to clone (one reference count), `Send + Sync`, and compare and hash by
//! [`ActorId`]. A reference stays valid across restarts of its actor; once the actor has
//! terminated, sends fail with `Closed` (and are counted as dead letters).
//!
//! # Sending
//!
//! * [`tell`](ActorRef::tell) waits while a bounded mailbox is full (backpressure) and fails
//!   only if the actor is not running, handing the message back.
//! * [`try_tell`](ActorRef::try_tell) never waits: `Full(msg)` or `Closed(msg)`.
//! * [`ask`](ActorRef::ask) sends and waits for the reply, up to a timeout (the system's
//!   default unless set with [`.timeout(d)`](crate::Ask::timeout)). It resolves exactly once.
//!
//! Messages from one sender to one actor are handled in the order they were sent.

use crate::actor::{Actor, ActorId, Handler, Message};
use crate::ask::{Ask, ReplyTo};
use crate::cell::{ActorCell, ActorStats, AnyCell, SystemSignal, WatchNotify, Watcher};
use crate::dead_letters::DeadLetterReason;
use crate::error::{SendError, TrySendError};
use crate::letter::Letter;
use crate::lifecycle::ExitReason;
use crate::mailbox::{PushError, INTERRUPT_KILL};
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A typed reference to an actor of type `A`.
///
/// ```
/// use postbox::prelude::*;
///
/// #[derive(Default)]
/// struct Counter(u64);
/// impl Actor for Counter {}
///
/// struct Add(u64);
/// impl Message for Add { type Reply = u64; }
/// impl Handler<Add> for Counter {
///     async fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
///         self.0 += msg.0;
///         self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let system = ActorSystem::new();
/// let counter = system.spawn(Counter::default)?;
/// counter.tell(Add(2)).await?;
/// assert_eq!(counter.ask(Add(3)).await?, 5);
/// # system.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct ActorRef<A: Actor> {
    cell: Arc<ActorCell<A>>,
}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn from_cell(cell: Arc<ActorCell<A>>) -> Self {
        Self { cell }
    }

    pub(crate) fn cell(&self) -> &Arc<ActorCell<A>> {
        &self.cell
    }

    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.meta.id
    }

    /// The actor's path, e.g. `/user/bank/account-42` (`$<id>` for unnamed actors).
    pub fn path(&self) -> String {
        self.cell.meta.path()
    }

    /// Messages waiting in the mailbox (plus any the actor has published as handed on
    /// elsewhere and not finished, see [`InFlight`](crate::InFlight)). O(1), lock-free for
    /// actors that publish nothing.
    pub fn depth(&self) -> usize {
        self.cell.depth()
    }

    /// Messages waiting plus the one being handled right now (0 for an idle actor): what a
    /// new message would queue behind. O(1), lock-free, approximate under concurrent change.
    /// Load-aware routing uses it.
    pub fn load(&self) -> usize {
        self.cell.load()
    }

    /// Mailbox depth, processed count, processing times, restarts and status.
    pub fn stats(&self) -> ActorStats {
        self.cell.stats()
    }

    /// Whether the actor still accepts messages (not stopping or stopped).
    pub fn is_alive(&self) -> bool {
        !self.cell.mailbox.is_closed()
    }

    /// Sends `msg`, waiting while the mailbox is full. Fails only if the actor is not running,
    /// handing the message back (and counting it as a dead letter).
    pub async fn tell<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        self.cell.tell(msg).await
    }

    /// Sends `msg` if there is room right now; otherwise hands it back at once with `Full` or
    /// `Closed` (counted as a dead letter either way).
    pub fn try_tell<M>(&self, msg: M) -> Result<(), TrySendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        self.cell.try_tell(msg)
    }

    /// Sends `msg` and waits for the handler's reply.
    ///
    /// Resolves exactly once: with the reply, or with [`AskError`](crate::AskError) `Timeout`
    /// (after [`Ask::timeout`], default from the system config), `Stopped` (the actor was not
    /// running or stopped before replying) or `Panicked` (the handler panicked).
    pub fn ask<M>(&self, msg: M) -> Ask<'_, A, M>
    where
        A: Handler<M>,
        M: Message,
    {
        Ask::new(self, msg)
    }

    /// Asks with a message that carries its own reply handle, so the handler can hand the
    /// reply to another task and return at once — the mailbox keeps moving while the reply is
    /// produced elsewhere (Akka's `ask(replyTo => ...)` pattern).
    ///
    /// ```
    /// use postbox::prelude::*;
    ///
    /// struct Db;
    /// impl Actor for Db {}
    ///
    /// struct Query { sql: String, reply: ReplyTo<usize> }
    /// impl Message for Query { type Reply = (); }
    ///
    /// impl Handler<Query> for Db {
    ///     async fn handle(&mut self, q: Query, _: &mut Context<Self>) {
    ///         // The slow part runs elsewhere; this handler returns immediately.
    ///         tokio::spawn(async move {
    ///             let _ = q.reply.send(q.sql.len());
    ///         });
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let system = ActorSystem::new();
    /// let db = system.spawn(|| Db)?;
    /// let rows = db.ask_with(|reply| Query { sql: "select 1".into(), reply }).await?;
    /// assert_eq!(rows, 8);
    /// # system.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn ask_with<M, R, F>(&self, make: F) -> crate::ask::AskWith<'_, A, M, R, F>
    where
        A: Handler<M>,
        M: Message,
        R: Send + 'static,
        F: FnOnce(ReplyTo<R>) -> M,
    {
        crate::ask::AskWith::new(self, make)
    }

    /// Stops the actor after the message it is handling (a signal, so it does not wait behind
    /// queued messages). Messages still queued become dead letters. It is not restarted.
    pub fn stop(&self) {
        let _ = self.cell.send_system(SystemSignal::Stop {
            drain: false,
            reason: ExitReason::Stopped,
        });
    }

    /// Stops the actor gracefully: it stops accepting messages at once, handles everything
    /// already queued, then stops. It is not restarted.
    pub fn drain_and_stop(&self) {
        let _ = self.cell.send_system(SystemSignal::Stop {
            drain: true,
            reason: ExitReason::Stopped,
        });
    }

    /// Kills the actor: the handler it is running is abandoned at its next `.await`, no hooks
    /// run for the instance, and its supervisor treats it as a failure (`Failure::Killed`), so
    /// permanent and transient actors are restarted (Erlang's `exit(Pid, kill)`).
    pub fn kill(&self) {
        self.cell.interrupt(INTERRUPT_KILL);
    }

    /// Waits until the actor has terminated and returns why. Returns at once with
    /// [`ExitReason::AlreadyTerminated`] if it already has.
    pub async fn wait_for_stop(&self) -> ExitReason {
        let (tx, rx) = oneshot::channel();
        let watcher = Watcher {
            watcher: ActorId(0),
            notify: WatchNotify::Waiter(tx),
        };
        if self.cell.send_system(SystemSignal::Watch(watcher)).is_err() {
            return ExitReason::AlreadyTerminated;
        }
        rx.await.unwrap_or(ExitReason::AlreadyTerminated)
    }

    /// A type-erased reference for one message type.
    pub fn recipient<M>(&self) -> Recipient<M>
    where
        A: Handler<M>,
        M: Message,
    {
        Recipient {
            sink: self.cell.clone(),
        }
    }
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        Self {
            cell: self.cell.clone(),
        }
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<A: Actor> Eq for ActorRef<A> {}

impl<A: Actor> Hash for ActorRef<A> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("id", &self.id())
            .field("type", &std::any::type_name::<A>())
            .finish()
    }
}

/// Anything that can be watched with [`Context::watch`](crate::Context::watch).
pub trait Watchable {
    /// The actor behind this reference.
    #[doc(hidden)]
    fn watch_target(&self) -> WatchTarget;
}

/// Opaque handle used by [`Watchable`].
#[doc(hidden)]
pub struct WatchTarget(pub(crate) Arc<dyn AnyCell>);

impl fmt::Debug for WatchTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WatchTarget")
            .field(&self.0.meta().id)
            .finish()
    }
}

impl<A: Actor> Watchable for ActorRef<A> {
    fn watch_target(&self) -> WatchTarget {
        WatchTarget(self.cell.clone())
    }
}

impl<M: Message> Watchable for Recipient<M> {
    fn watch_target(&self) -> WatchTarget {
        WatchTarget(self.sink.clone().any_cell())
    }
}

type SendFuture<'a, M> = Pin<Box<dyn Future<Output = Result<(), SendError<M>>> + Send + 'a>>;
type AskSendFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// How a [`Recipient<M>`] reaches its actor. Implemented by local cells; the remote transport
/// will implement it for actors on other nodes.
pub(crate) trait Sink<M: Message>: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    fn path(&self) -> String;
    fn depth(&self) -> usize;
    fn load(&self) -> usize;
    fn is_alive(&self) -> bool;
    fn try_tell(&self, msg: M) -> Result<(), TrySendError<M>>;
    /// Like `try_tell`, but a refusal is not counted as a dead letter: the caller (a router
    /// trying another routee) decides what becomes of the message.
    fn offer(&self, msg: M) -> Result<(), TrySendError<M>>;
    /// The waiting path of `offer`, boxed: only used when the mailbox was full.
    fn offer_waiting(&self, msg: M) -> SendFuture<'_, M>;
    /// The waiting path of `tell`, boxed: only used when the mailbox was full.
    fn tell_waiting(&self, msg: M) -> SendFuture<'_, M>;
    /// Sends an ask without waiting. A full mailbox hands both back for `send_ask`; a closed
    /// one drops the reply handle, which resolves the asker with `Stopped`.
    fn try_send_ask(&self, msg: M, reply: ReplyTo<M::Reply>) -> Option<(M, ReplyTo<M::Reply>)>;
    /// The waiting path of an ask, boxed: only used when the mailbox was full.
    fn send_ask(&self, msg: M, reply: ReplyTo<M::Reply>) -> AskSendFuture<'_>;
    fn system(&self) -> &Arc<crate::system::SystemShared>;
    fn any_cell(self: Arc<Self>) -> Arc<dyn AnyCell>;
}

impl<A: Handler<M>, M: Message> Sink<M> for ActorCell<A> {
    fn id(&self) -> ActorId {
        self.meta.id
    }

    fn path(&self) -> String {
        self.meta.path()
    }

    fn depth(&self) -> usize {
        ActorCell::depth(self)
    }

    fn load(&self) -> usize {
        ActorCell::load(self)
    }

    fn is_alive(&self) -> bool {
        !self.mailbox.is_closed()
    }

    fn try_tell(&self, msg: M) -> Result<(), TrySendError<M>> {
        ActorCell::try_tell(self, msg)
    }

    fn offer(&self, msg: M) -> Result<(), TrySendError<M>> {
        match self.mailbox.try_send(Letter::new(msg, None)) {
            Ok(()) => Ok(()),
            // SAFETY (both arms): built from an `M` just above.
            Err(PushError::Full(envelope)) => {
                Err(TrySendError::Full(unsafe { envelope.into_parts::<M>().0 }))
            }
            Err(PushError::Closed(envelope)) => Err(TrySendError::Closed(unsafe {
                envelope.into_parts::<M>().0
            })),
        }
    }

    fn offer_waiting(&self, msg: M) -> SendFuture<'_, M> {
        Box::pin(async move {
            self.mailbox
                .send(Letter::new(msg, None))
                .await
                // SAFETY: built from an `M` just above.
                .map_err(|envelope| SendError(unsafe { envelope.into_parts::<M>().0 }))
        })
    }

    fn tell_waiting(&self, msg: M) -> SendFuture<'_, M> {
        Box::pin(self.tell(msg))
    }

    fn try_send_ask(&self, msg: M, reply: ReplyTo<M::Reply>) -> Option<(M, ReplyTo<M::Reply>)> {
        self.try_send_ask(msg, reply)
    }

    fn send_ask(&self, msg: M, reply: ReplyTo<M::Reply>) -> AskSendFuture<'_> {
        Box::pin(self.send_ask(msg, reply))
    }

    fn system(&self) -> &Arc<crate::system::SystemShared> {
        &self.meta.system.shared
    }

    fn any_cell(self: Arc<Self>) -> Arc<dyn AnyCell> {
        self
    }
}

impl<A: Actor> ActorCell<A> {
    pub(crate) async fn tell<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        let envelope = match self.mailbox.try_send(Letter::new(msg, None)) {
            Ok(()) => return Ok(()),
            Err(PushError::Full(envelope)) => envelope,
            Err(PushError::Closed(envelope)) => {
                return Err(SendError(
                    self.refuse(envelope, DeadLetterReason::ActorStopped),
                ))
            }
        };
        match self.mailbox.send(envelope).await {
            Ok(()) => Ok(()),
            Err(envelope) => Err(SendError(
                self.refuse(envelope, DeadLetterReason::ActorStopped),
            )),
        }
    }

    pub(crate) fn try_tell<M>(&self, msg: M) -> Result<(), TrySendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        match self.mailbox.try_send(Letter::new(msg, None)) {
            Ok(()) => Ok(()),
            Err(PushError::Full(envelope)) => Err(TrySendError::Full(
                self.refuse(envelope, DeadLetterReason::MailboxFull),
            )),
            Err(PushError::Closed(envelope)) => Err(TrySendError::Closed(
                self.refuse(envelope, DeadLetterReason::ActorStopped),
            )),
        }
    }

    /// See [`Sink::try_send_ask`].
    pub(crate) fn try_send_ask<M>(
        &self,
        msg: M,
        reply: ReplyTo<M::Reply>,
    ) -> Option<(M, ReplyTo<M::Reply>)>
    where
        A: Handler<M>,
        M: Message,
    {
        match self.mailbox.try_send(Letter::new(msg, Some(reply))) {
            Ok(()) => None,
            // SAFETY: built from an `M` just above.
            Err(PushError::Full(envelope)) => match unsafe { envelope.into_parts::<M>() } {
                (msg, Some(reply)) => Some((msg, reply)),
                (_, None) => None,
            },
            Err(PushError::Closed(envelope)) => {
                self.refuse_ask(envelope);
                None
            }
        }
    }

    /// See [`Sink::send_ask`].
    pub(crate) async fn send_ask<M>(&self, msg: M, reply: ReplyTo<M::Reply>)
    where
        A: Handler<M>,
        M: Message,
    {
        if let Err(envelope) = self.mailbox.send(Letter::new(msg, Some(reply))).await {
            self.refuse_ask(envelope);
        }
    }

    /// Counts a refused send as a dead letter and hands the message back.
    fn refuse<M>(&self, envelope: Letter<A>, reason: DeadLetterReason) -> M
    where
        A: Handler<M>,
        M: Message,
    {
        self.meta.system.shared.dead_letters.record_envelope(
            self.meta.id,
            std::any::type_name::<A>(),
            &envelope,
            reason,
        );
        // SAFETY: every envelope passed here was built by the caller from an `M`.
        unsafe { envelope.into_parts::<M>() }.0
    }

    /// Counts a refused ask as a dead letter; dropping its reply handle resolves the asker.
    fn refuse_ask(&self, envelope: Letter<A>) {
        self.meta.system.shared.dead_letters.record_envelope(
            self.meta.id,
            std::any::type_name::<A>(),
            &envelope,
            DeadLetterReason::ActorStopped,
        );
        crate::ask::abandon(envelope, crate::AskError::Stopped);
    }
}

/// A type-erased reference to any actor that handles `M`.
///
/// Useful to hand out "something that accepts `M`" without exposing the actor's type, and as
/// the routee type of routers. Cloning, comparing and hashing work like [`ActorRef`].
pub struct Recipient<M: Message> {
    sink: Arc<dyn Sink<M>>,
}

impl<M: Message> Recipient<M> {
    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.sink.id()
    }

    /// The actor's path.
    pub fn path(&self) -> String {
        self.sink.path()
    }

    /// Like [`ActorRef::depth`]: messages waiting in the actor's mailbox (plus what it has in
    /// flight).
    pub fn depth(&self) -> usize {
        self.sink.depth()
    }

    /// Like [`ActorRef::load`]: messages waiting plus the one being handled.
    pub fn load(&self) -> usize {
        self.sink.load()
    }

    /// Whether the actor still accepts messages.
    pub fn is_alive(&self) -> bool {
        self.sink.is_alive()
    }

    /// `try_tell` without dead-letter accounting, for routers that try another routee.
    pub(crate) fn offer(&self, msg: M) -> Result<(), TrySendError<M>> {
        self.sink.offer(msg)
    }

    /// `tell` without dead-letter accounting, for routers that try another routee.
    pub(crate) async fn offer_waiting(&self, msg: M) -> Result<(), SendError<M>> {
        match self.sink.offer(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(msg)) => Err(SendError(msg)),
            Err(TrySendError::Full(msg)) => self.sink.offer_waiting(msg).await,
        }
    }

    /// Stops the actor after it has handled what is already in its mailbox.
    pub(crate) fn drain_and_stop(&self) {
        let _ = self
            .sink
            .clone()
            .any_cell()
            .send_system(crate::cell::SystemSignal::Stop {
                drain: true,
                reason: crate::ExitReason::Stopped,
            });
    }

    /// Like [`ActorRef::tell`].
    pub async fn tell(&self, msg: M) -> Result<(), SendError<M>> {
        // `offer` first: a full mailbox is not a dead letter for a sender that will wait.
        match self.sink.offer(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msg)) => self.sink.tell_waiting(msg).await,
            // Closed for good: `try_tell` counts the dead letter and hands the message back.
            Err(TrySendError::Closed(msg)) => match self.sink.try_tell(msg) {
                Err(TrySendError::Closed(msg) | TrySendError::Full(msg)) => Err(SendError(msg)),
                Ok(()) => Ok(()),
            },
        }
    }

    /// Like [`ActorRef::try_tell`].
    pub fn try_tell(&self, msg: M) -> Result<(), TrySendError<M>> {
        self.sink.try_tell(msg)
    }

    /// Like [`ActorRef::ask`].
    pub fn ask(&self, msg: M) -> crate::ask::RecipientAsk<'_, M> {
        crate::ask::RecipientAsk::new(&*self.sink, msg)
    }
}

impl<M: Message> Clone for Recipient<M> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
        }
    }
}

impl<M: Message> PartialEq for Recipient<M> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<M: Message> Eq for Recipient<M> {}

impl<M: Message> Hash for Recipient<M> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl<M: Message> fmt::Debug for Recipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipient")
            .field("id", &self.id())
            .field("message", &std::any::type_name::<M>())
            .finish()
    }
}

impl<A: Handler<M>, M: Message> From<ActorRef<A>> for Recipient<M> {
    fn from(actor: ActorRef<A>) -> Self {
        Recipient { sink: actor.cell }
    }
}

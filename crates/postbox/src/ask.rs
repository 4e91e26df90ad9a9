//! Request–response over messages: `ask`, its timeout, and reply handles.
//!
//! An ask puts the message in the mailbox together with a [`ReplyTo`] handle (a one-shot
//! channel) and waits for the reply with a deadline. It resolves exactly once:
//!
//! * the handler's return value, sent through the handle;
//! * `Timeout` when the deadline passes first (the default deadline is the system's
//!   [`ask_timeout`](crate::SystemConfig::ask_timeout); override with [`Ask::timeout`]). The
//!   timeout fires between 0 and 20 ms after the deadline, never before: one sweeper per
//!   system enforces all ask deadlines instead of each ask registering a timer (see
//!   `deadline.rs`);
//! * `Stopped` / `Panicked` when the handle is dropped unanswered because the actor stopped,
//!   was killed, or panicked while handling the message. The runtime tells the handle *why* it
//!   is being dropped (a thread-local set only around those drops), so the asker learns the
//!   real cause instead of a generic "channel closed".
//!
//! The fast path allocates only the one-shot channel (as does a raw `mpsc` + `oneshot` round
//! trip); the send is attempted synchronously, and only a full mailbox boxes a waiting future.

use crate::actor::{Actor, Handler, Message};
use crate::actor_ref::{ActorRef, Sink};
use crate::dead_letters::{DeadLetter, DeadLetterReason};
use crate::deadline::{AskTimer, AskTimers};
use crate::error::AskError;
use crate::letter::Letter;
use crate::mailbox::PushError;
use crate::system::SystemShared;
use std::cell::Cell;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

thread_local! {
    /// Why reply handles dropped on this thread right now go unanswered (see module docs).
    static ABANDON_REASON: Cell<Option<AskError>> = const { Cell::new(None) };
}

/// Runs `f` (which drops reply handles) with `reason` as the answer for unanswered handles.
pub(crate) fn with_abandon_reason<R>(reason: AskError, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<AskError>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ABANDON_REASON.set(self.0);
        }
    }
    let _restore = Restore(ABANDON_REASON.replace(Some(reason)));
    f()
}

/// Drops an undeliverable envelope, answering its asker (if any) with `reason`.
pub(crate) fn abandon<A: Actor>(envelope: Letter<A>, reason: AskError) {
    with_abandon_reason(reason, || drop(envelope));
}

/// The asker's error when a reply handle is dropped outside the runtime's own drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// A handle created by `ask`: only the runtime holds it, so an unanswered drop means the
    /// actor went away.
    Stopped,
    /// A handle given to user code by `ask_with`.
    NoReply,
}

/// Where to count a reply that could not be delivered (`ask_with` handles only).
struct DeadLetterTarget {
    system: Arc<SystemShared>,
    recipient: crate::ActorId,
}

/// The rarely used parts of a reply handle, boxed so that the handle stays three words.
enum Extra<T> {
    /// For handles given to user code (`ask_with`): where to count undeliverable replies.
    DeadLetters(DeadLetterTarget),
    /// The reply (or why there is none) goes to this function, called by whoever sends it or
    /// drops the handle, instead of through a channel to a waiting task: the transport
    /// encodes the reply to another node's ask right there, with no task to wake in between.
    Call(Box<dyn FnOnce(Result<T, AskError>) + Send + Sync>),
}

/// Where the reply to one ask goes. Send exactly one value with [`send`](ReplyTo::send);
/// dropping the handle unanswered resolves the asker with an error instead of leaving it
/// waiting.
///
/// Kept to three words, so that an asked message of up to 32 bytes still travels inline in its
/// envelope.
pub struct ReplyTo<T> {
    tx: Option<oneshot::Sender<Result<T, AskError>>>,
    extra: Option<Box<Extra<T>>>,
    unanswered: Unanswered,
}

impl<T: Send + 'static> ReplyTo<T> {
    pub(crate) fn channel(
        unanswered: Unanswered,
    ) -> (Self, oneshot::Receiver<Result<T, AskError>>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                tx: Some(tx),
                extra: None,
                unanswered,
            },
            rx,
        )
    }

    /// A handle whose reply (or, if it is dropped unanswered, `Stopped`) is passed to `call`
    /// by the task that sends it.
    pub(crate) fn calling(call: impl FnOnce(Result<T, AskError>) + Send + Sync + 'static) -> Self {
        Self {
            tx: None,
            extra: Some(Box::new(Extra::Call(Box::new(call)))),
            unanswered: Unanswered::Stopped,
        }
    }

    /// Sends the reply. Fails, handing the value back, if the asker stopped waiting (its ask
    /// timed out or was dropped); such a reply is counted as a dead letter.
    pub fn send(mut self, value: T) -> Result<(), T> {
        self.deliver(value).inspect_err(|_| {
            if let Some(Extra::DeadLetters(target)) = self.extra.as_deref() {
                target.system.dead_letters.record(DeadLetter {
                    recipient: target.recipient,
                    recipient_type: "",
                    message_type: std::any::type_name::<T>(),
                    reason: DeadLetterReason::ReplyUndeliverable,
                });
            }
        })
    }

    /// Answers with `error` instead of a value: the asker's ask resolves with it. For a
    /// [`handle_reply`](crate::Handler::handle_reply) that passes on the outcome of an ask of
    /// its own (a proxy, a bridge), so that its asker learns the real cause — `NodeDown`,
    /// `Timeout`, … — rather than the `Stopped` of a dropped handle. Fails, handing the error
    /// back, if the asker stopped waiting; unlike [`send`](Self::send), nothing is counted
    /// then (there was no reply to lose).
    pub fn fail(mut self, error: AskError) -> Result<(), AskError> {
        self.answer(Err(error)).map_err(|_| error)
    }

    /// Sends without counting a failure (the caller counts it).
    pub(crate) fn send_unrecorded(mut self, value: T) -> Result<(), T> {
        self.deliver(value)
    }

    fn deliver(&mut self, value: T) -> Result<(), T> {
        self.answer(Ok(value)).map_err(|back| match back {
            Ok(value) => value,
            Err(_) => unreachable!("an Ok outcome comes back as it went"),
        })
    }

    /// Passes `outcome` to the asker: through the channel, or to the function. Hands it back
    /// if the asker stopped waiting (or the handle was already answered).
    fn answer(&mut self, outcome: Result<T, AskError>) -> Result<(), Result<T, AskError>> {
        if let Some(tx) = self.tx.take() {
            return tx.send(outcome);
        }
        match self.extra.take().map(|extra| *extra) {
            Some(Extra::Call(call)) => {
                call(outcome);
                Ok(())
            }
            other => {
                self.extra = other.map(Box::new);
                Err(outcome)
            }
        }
    }

    /// Whether the asker has stopped waiting. (A handle that calls a function, for an ask
    /// from another node, cannot tell: it reports `false` until answered.)
    pub fn is_closed(&self) -> bool {
        match &self.tx {
            Some(tx) => tx.is_closed(),
            None => !self.calls(),
        }
    }

    #[cfg(test)]
    pub(crate) fn pair_for_test() -> (Self, oneshot::Receiver<Result<T, AskError>>) {
        Self::channel(Unanswered::Stopped)
    }
}

impl<T> ReplyTo<T> {
    fn calls(&self) -> bool {
        matches!(self.extra.as_deref(), Some(Extra::Call(_)))
    }
}

impl<T> Drop for ReplyTo<T> {
    fn drop(&mut self) {
        if self.tx.is_none() && self.extra.is_none() {
            // Answered (the common case).
            return;
        }
        let call = match self.extra.take().map(|extra| *extra) {
            Some(Extra::Call(call)) => Some(call),
            _ => None,
        };
        if self.tx.is_none() && call.is_none() {
            return;
        }
        // A handle dropped while its thread unwinds belonged to a handler that panicked:
        // the handler's future drops its live state on the way out of the panicking poll.
        let reason = ABANDON_REASON.get().unwrap_or(if std::thread::panicking() {
            AskError::Panicked
        } else {
            match self.unanswered {
                Unanswered::Stopped => AskError::Stopped,
                Unanswered::NoReply => AskError::NoReply,
            }
        });
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(reason));
        } else if let Some(call) = call {
            call(Err(reason));
        }
    }
}

impl<T> fmt::Debug for ReplyTo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo")
            .field("answered", &(self.tx.is_none() && !self.calls()))
            .finish_non_exhaustive()
    }
}

/// The future of an ask: the (rarely needed) waiting send, then the reply or the deadline.
pub struct AskFuture<'a, R> {
    sending: Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
    reply: oneshot::Receiver<Result<R, AskError>>,
    timeout: Duration,
    timers: &'a Arc<AskTimers>,
    /// Registered with the sweeper on the first poll that finds no reply yet.
    timer: Option<Arc<AskTimer>>,
}

impl<'a, R> AskFuture<'a, R> {
    fn new(
        sending: Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
        reply: oneshot::Receiver<Result<R, AskError>>,
        timeout: Duration,
        timers: &'a Arc<AskTimers>,
    ) -> Self {
        Self {
            sending,
            reply,
            timeout,
            timers,
            timer: None,
        }
    }
}

impl<R> AskFuture<'_, R> {
    /// Whether the message is in the mailbox yet: an ask whose mailbox was full when it was
    /// made waits for room when first polled.
    pub fn is_queued(&self) -> bool {
        self.sending.is_none()
    }
}

impl<R> Future for AskFuture<'_, R> {
    type Output = Result<R, AskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(sending) = this.sending.as_mut() {
            if sending.as_mut().poll(cx).is_ready() {
                this.sending = None;
            }
        }
        if let Poll::Ready(result) = Pin::new(&mut this.reply).poll(cx) {
            if let Some(timer) = &this.timer {
                timer.finish();
            }
            // A closed channel without a value means the handle was leaked; report it as the
            // actor not replying rather than hang.
            return Poll::Ready(result.unwrap_or(Err(AskError::Stopped)));
        }
        // The deadline is only set up when the reply is not already there (see `deadline.rs`
        // for why asks share one sweeper instead of owning a timer each).
        let timer = this
            .timer
            .get_or_insert_with(|| this.timers.register(this.timeout));
        timer.register(cx.waker());
        if timer.expired() {
            this.timers.count_timeout();
            return Poll::Ready(Err(AskError::Timeout(this.timeout)));
        }
        Poll::Pending
    }
}

impl<R> Drop for AskFuture<'_, R> {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.finish();
        }
    }
}

impl<R> fmt::Debug for AskFuture<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AskFuture")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// An ask to a typed [`ActorRef`], ready to be awaited. See [`ActorRef::ask`].
#[must_use = "an ask does nothing until it is awaited"]
pub struct Ask<'a, A: Handler<M>, M: Message> {
    actor: &'a ActorRef<A>,
    msg: M,
    timeout: Option<Duration>,
}

impl<'a, A: Handler<M>, M: Message> Ask<'a, A, M> {
    pub(crate) fn new(actor: &'a ActorRef<A>, msg: M) -> Self {
        Self {
            actor,
            msg,
            timeout: None,
        }
    }

    /// Gives up with [`AskError::Timeout`] if no reply arrives within `timeout` (measured from
    /// the first poll, including any wait for mailbox room).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a, A: Handler<M>, M: Message> IntoFuture for Ask<'a, A, M> {
    type Output = Result<M::Reply, AskError>;
    type IntoFuture = AskFuture<'a, M::Reply>;

    fn into_future(self) -> Self::IntoFuture {
        let cell = self.actor.cell();
        let timeout = self
            .timeout
            .unwrap_or(cell.meta.system.shared.config.ask_timeout);
        let (reply, rx) = ReplyTo::channel(Unanswered::Stopped);
        let sending = cell.try_send_ask(self.msg, reply).map(|(msg, reply)| {
            Box::pin(cell.send_ask(msg, reply)) as Pin<Box<dyn Future<Output = ()> + Send + 'a>>
        });
        AskFuture::new(sending, rx, timeout, &cell.meta.system.shared.ask_timers)
    }
}

impl<A: Handler<M>, M: Message> fmt::Debug for Ask<'_, A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ask")
            .field("actor", self.actor)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// An ask through a [`Recipient`](crate::Recipient). See [`Recipient::ask`](crate::Recipient::ask).
#[must_use = "an ask does nothing until it is awaited"]
pub struct RecipientAsk<'a, M: Message> {
    sink: &'a dyn Sink<M>,
    msg: M,
    timeout: Option<Duration>,
}

impl<'a, M: Message> RecipientAsk<'a, M> {
    pub(crate) fn new(sink: &'a dyn Sink<M>, msg: M) -> Self {
        Self {
            sink,
            msg,
            timeout: None,
        }
    }

    /// See [`Ask::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a, M: Message> IntoFuture for RecipientAsk<'a, M> {
    type Output = Result<M::Reply, AskError>;
    type IntoFuture = AskFuture<'a, M::Reply>;

    fn into_future(self) -> Self::IntoFuture {
        let timeout = self
            .timeout
            .unwrap_or(self.sink.system().config.ask_timeout);
        let (reply, rx) = ReplyTo::channel(Unanswered::Stopped);
        let sending = self
            .sink
            .try_send_ask(self.msg, reply)
            .map(|(msg, reply)| self.sink.send_ask(msg, reply));
        AskFuture::new(sending, rx, timeout, &self.sink.system().ask_timers)
    }
}

impl<M: Message> fmt::Debug for RecipientAsk<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientAsk")
            .field("actor", &self.sink.id())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// An ask whose message carries its own [`ReplyTo`]. See [`ActorRef::ask_with`].
#[must_use = "an ask does nothing until it is awaited"]
pub struct AskWith<'a, A: Handler<M>, M: Message, R, F> {
    actor: &'a ActorRef<A>,
    make: F,
    timeout: Option<Duration>,
    _types: std::marker::PhantomData<fn() -> (M, R)>,
}

impl<'a, A, M, R, F> AskWith<'a, A, M, R, F>
where
    A: Handler<M>,
    M: Message,
    R: Send + 'static,
    F: FnOnce(ReplyTo<R>) -> M,
{
    pub(crate) fn new(actor: &'a ActorRef<A>, make: F) -> Self {
        Self {
            actor,
            make,
            timeout: None,
            _types: std::marker::PhantomData,
        }
    }

    /// See [`Ask::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a, A, M, R, F> IntoFuture for AskWith<'a, A, M, R, F>
where
    A: Handler<M>,
    M: Message,
    R: Send + 'static,
    F: FnOnce(ReplyTo<R>) -> M,
{
    type Output = Result<R, AskError>;
    type IntoFuture = AskFuture<'a, R>;

    fn into_future(self) -> Self::IntoFuture {
        let cell = self.actor.cell();
        let timeout = self
            .timeout
            .unwrap_or(cell.meta.system.shared.config.ask_timeout);
        let (mut reply, rx) = ReplyTo::channel(Unanswered::NoReply);
        reply.extra = Some(Box::new(Extra::DeadLetters(DeadLetterTarget {
            system: cell.meta.system.shared.clone(),
            recipient: cell.meta.id,
        })));
        let envelope = Letter::new((self.make)(reply), None);
        let sending = match cell.mailbox.try_send(envelope) {
            Ok(()) => None,
            Err(PushError::Full(envelope)) => {
                let waiting = async move {
                    if let Err(envelope) = cell.mailbox.send(envelope).await {
                        refuse(cell, envelope);
                    }
                };
                Some(Box::pin(waiting) as Pin<Box<dyn Future<Output = ()> + Send + 'a>>)
            }
            Err(PushError::Closed(envelope)) => {
                refuse(cell, envelope);
                None
            }
        };
        AskFuture::new(sending, rx, timeout, &cell.meta.system.shared.ask_timers)
    }
}

fn refuse<A: Actor>(cell: &crate::cell::ActorCell<A>, envelope: Letter<A>) {
    cell.meta.system.shared.dead_letters.record_envelope(
        cell.meta.id,
        std::any::type_name::<A>(),
        &envelope,
        DeadLetterReason::ActorStopped,
    );
    abandon(envelope, AskError::Stopped);
}

impl<A: Handler<M>, M: Message, R, F> fmt::Debug for AskWith<'_, A, M, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AskWith")
            .field("actor", self.actor)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

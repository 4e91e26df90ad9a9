//! Sending to postbox actors from inside actix actors: [`SendFromActix`].
//!
//! A postbox `ask` borrows the ref it is made from, while actix wants the future a handler
//! returns to be `'static` (`ResponseFuture`) or an `ActorFuture` of the actor
//! (`ResponseActFuture`). The extension methods here take what they need by value (a
//! [`Recipient`] clone and the message) and return owned futures:
//!
//! * [`ask_owned`](SendFromActix::ask_owned) → [`OwnedAsk`], a `'static + Send + Unpin`
//!   future of `Result<Reply, AskError>`: `Box::pin` it into a `ResponseFuture`, or await it
//!   anywhere;
//! * [`ask_act`](SendFromActix::ask_act) → the same ask as an `ActorFuture` of the calling
//!   actix actor, to continue with `ActorFutureExt::map` (which gets `&mut self` and the
//!   context back) and return as a `ResponseActFuture`;
//! * [`tell_owned`](SendFromActix::tell_owned) → [`OwnedTell`], an owned `tell` (it waits
//!   while the postbox mailbox is full). `try_tell` needs no helper: it never waits.
//!
//! They work for local and remote refs alike: a remote ref's proxy is a local mailbox. They
//! need no Tokio context of postbox's: mailboxes and ask deadlines wake whichever task awaits
//! them, so they run on an actix arbiter as they would on postbox's runtime.
//!
//! Return the future from the handler rather than blocking on it: actix runs
//! `ResponseActFuture`s beside the mailbox (`ctx.spawn`), so the actix actor goes on with
//! other messages — including one the postbox side may send it while answering.

use postbox::{ActorRef, AskError, Handler, Message, Recipient, SendError};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Owned sends to a postbox actor, for code that needs `'static` futures (actix handlers).
/// Implemented for [`ActorRef`] and [`Recipient`].
///
/// ```no_run
/// use actix::prelude::*;
/// use postbox::{AskError, Recipient};
/// use postbox_actix::SendFromActix;
///
/// struct Lookup(String);
/// impl postbox::Message for Lookup { type Reply = Option<u64>; }
///
/// struct Resolve(String);
/// impl actix::Message for Resolve { type Result = Result<Option<u64>, AskError>; }
///
/// /// An actix actor that asks a postbox actor (local or remote) to answer its own callers.
/// struct Frontend { directory: Recipient<Lookup>, asked: u64 }
/// impl Actor for Frontend { type Context = actix::Context<Self>; }
///
/// impl Handler<Resolve> for Frontend {
///     type Result = ResponseActFuture<Self, Result<Option<u64>, AskError>>;
///     fn handle(&mut self, Resolve(name): Resolve, _: &mut Self::Context) -> Self::Result {
///         self.directory
///             .ask_act::<Self>(Lookup(name))
///             .map(|reply, this, _ctx| {
///                 this.asked += 1;
///                 reply
///             })
///             .boxed_local()
///     }
/// }
/// ```
pub trait SendFromActix<M: Message> {
    /// Asks with the system's default timeout, as an owned future.
    fn ask_owned(&self, msg: M) -> OwnedAsk<M>;

    /// Like [`ask_owned`](Self::ask_owned), as an `ActorFuture` of actix actor `A`.
    fn ask_act<A: actix::Actor>(&self, msg: M) -> actix::fut::future::FutureWrap<OwnedAsk<M>, A> {
        actix::fut::wrap_future(self.ask_owned(msg))
    }

    /// Tells (waiting while the mailbox is full), as an owned future.
    fn tell_owned(&self, msg: M) -> OwnedTell<M>;
}

impl<A: Handler<M>, M: Message> SendFromActix<M> for ActorRef<A> {
    fn ask_owned(&self, msg: M) -> OwnedAsk<M> {
        OwnedAsk::new(self.recipient(), msg)
    }

    fn tell_owned(&self, msg: M) -> OwnedTell<M> {
        OwnedTell::new(self.recipient(), msg)
    }
}

impl<M: Message> SendFromActix<M> for Recipient<M> {
    fn ask_owned(&self, msg: M) -> OwnedAsk<M> {
        OwnedAsk::new(self.clone(), msg)
    }

    fn tell_owned(&self, msg: M) -> OwnedTell<M> {
        OwnedTell::new(self.clone(), msg)
    }
}

/// An ask that owns its recipient and message: `'static`, `Send` and `Unpin`. Sends on the
/// first poll. From [`SendFromActix::ask_owned`].
#[must_use = "an ask does nothing until it is awaited"]
pub struct OwnedAsk<M: Message> {
    state: AskState<M>,
}

enum AskState<M: Message> {
    Ready {
        to: Recipient<M>,
        msg: M,
        timeout: Option<Duration>,
    },
    Running(Boxed<Result<M::Reply, AskError>>),
    Done,
}

impl<M: Message> OwnedAsk<M> {
    fn new(to: Recipient<M>, msg: M) -> Self {
        Self {
            state: AskState::Ready {
                to,
                msg,
                timeout: None,
            },
        }
    }

    /// Gives up with [`AskError::Timeout`] after `timeout` instead of the system's default
    /// (as `Ask::timeout`). Has no effect once the ask has been polled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let AskState::Ready { timeout: t, .. } = &mut self.state {
            *t = Some(timeout);
        }
        self
    }
}

// The message is only ever moved out of the state, never pinned.
impl<M: Message> Unpin for OwnedAsk<M> {}

impl<M: Message> Future for OwnedAsk<M> {
    type Output = Result<M::Reply, AskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let AskState::Ready { .. } = this.state {
            if let AskState::Ready { to, msg, timeout } =
                std::mem::replace(&mut this.state, AskState::Done)
            {
                this.state = AskState::Running(Box::pin(async move {
                    let ask = to.ask(msg);
                    match timeout {
                        Some(timeout) => ask.timeout(timeout).await,
                        None => ask.await,
                    }
                }));
            }
        }
        match &mut this.state {
            AskState::Running(running) => {
                let result = std::task::ready!(running.as_mut().poll(cx));
                this.state = AskState::Done;
                Poll::Ready(result)
            }
            // Polled after completion: the ask has already resolved once.
            AskState::Ready { .. } | AskState::Done => Poll::Ready(Err(AskError::Stopped)),
        }
    }
}

impl<M: Message> fmt::Debug for OwnedAsk<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            AskState::Ready { .. } => "ready",
            AskState::Running(_) => "running",
            AskState::Done => "done",
        };
        f.debug_struct("OwnedAsk")
            .field("message", &std::any::type_name::<M>())
            .field("state", &state)
            .finish()
    }
}

/// A tell that owns its recipient and message: `'static`, `Send` and `Unpin`. From
/// [`SendFromActix::tell_owned`]; fails only if the actor is not running, handing the message
/// back.
#[must_use = "a tell does nothing until it is awaited"]
pub struct OwnedTell<M: Message> {
    running: Boxed<Result<(), SendError<M>>>,
}

impl<M: Message> OwnedTell<M> {
    fn new(to: Recipient<M>, msg: M) -> Self {
        Self {
            running: Box::pin(async move { to.tell(msg).await }),
        }
    }
}

impl<M: Message> Future for OwnedTell<M> {
    type Output = Result<(), SendError<M>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.running.as_mut().poll(cx)
    }
}

impl<M: Message> fmt::Debug for OwnedTell<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedTell")
            .field("message", &std::any::type_name::<M>())
            .finish_non_exhaustive()
    }
}

//! The message type registry: which tags an exposed actor type answers, and how.

use crate::connection::AskReply;
use postbox::remote::{with_ref_codec, LocalActor, RefCodec, RemoteCodec, RemoteFailure};
use postbox::{Actor, ActorRef, Handler, Message};
use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// An actor type whose messages other nodes may send. Implement it with
/// [`remote_actor!`](crate::remote_actor).
pub trait RemoteActor: Actor {
    /// Lists the message types it answers from other nodes.
    fn register(handlers: &mut Handlers<Self>);
}

/// Why an ask from another node has no reply to send back.
pub(crate) enum ReplyFailure {
    /// The local ask failed, as a local asker would have been told.
    Ask(postbox::AskError),
    /// The reply could not be encoded (why).
    Unencodable(String),
}

/// How one actor type takes one message type from other nodes: bound to a live actor of that
/// type, it gives the [`Delivery`] that a run of messages to that actor goes through (`None`
/// if the actor is not of that type).
pub(crate) type Deliver = Arc<dyn Fn(&LocalActor) -> Option<Delivery> + Send + Sync>;

/// Decodes a payload and puts it in one actor's mailbox: at once when there is room (`None`),
/// else through a future that resolves once it is queued. An ask comes with its
/// [`AskReply`], which the answering task completes (the reply encoded where it is sent);
/// on `Err` the caller answers the ask with the failure. It holds the actor's typed
/// reference, so that a message costs no lookup or downcast of its own.
pub(crate) type Delivery = Box<
    dyn Fn(
            &[u8],
            Option<AskReply>,
            &Arc<dyn RefCodec>,
        ) -> Result<Option<BoxedEnqueue>, RemoteFailure>
        + Send
        + Sync,
>;
pub(crate) type BoxedEnqueue = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The handlers of one actor type, by message tag. Filled by [`RemoteActor::register`].
pub struct Handlers<A: Actor> {
    by_tag: HashMap<&'static str, Deliver>,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Actor> Handlers<A> {
    /// Accepts `M` from other nodes. `M` must have a codec
    /// ([`remote_message!`](crate::remote_message)); one without is skipped and logged.
    pub fn handle<M: Message>(&mut self)
    where
        A: Handler<M>,
    {
        let Some(codec) = M::remote() else {
            tracing::error!(
                message = std::any::type_name::<M>(),
                "not remotable (no remote_message!): other nodes cannot send it"
            );
            return;
        };
        self.by_tag
            .insert(codec.tag, deliver_fn::<A, M>(codec, None));
    }
}

/// A hook that sees the encoded payload of a message of one type for one actor type on the
/// connection's reader, before it is decoded and queued. See
/// [`Remote::intercept`](crate::Remote::intercept).
pub(crate) type Hook<A> = dyn Fn(&ActorRef<A>, &[u8], Arrival) -> Intercepted + Send + Sync;

/// What an intercepting hook did with a message.
pub enum Intercepted {
    /// It delivered the message itself.
    Delivered,
    /// It is delivering it: the connection reads its next message once this is done (so
    /// the connection's order holds, and a full mailbox slows the sender down).
    Pending(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Decode it and queue it in the target's mailbox, as without a hook.
    Queue,
}

impl fmt::Debug for Intercepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Intercepted::Delivered => "Delivered",
            Intercepted::Pending(_) => "Pending",
            Intercepted::Queue => "Queue",
        })
    }
}

/// How an intercepted message came: told, or asked (an asked message cannot be delivered by
/// the hook — it has no way to reply — and is queued whatever the hook returns, so that its
/// asker is answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A `tell`.
    Tell,
    /// An `ask`.
    Ask,
}

/// Decodes a payload into `M` and puts it in the actor's mailbox (after `hook`, if any).
fn deliver_fn<A, M>(codec: RemoteCodec<M>, hook: Option<Arc<Hook<A>>>) -> Deliver
where
    A: Actor + Handler<M>,
    M: Message,
{
    Arc::new(move |target| {
        let actor = target.downcast::<A>()?;
        let hook = hook.clone();
        Some(Box::new(
            move |payload: &[u8], mut ask: Option<AskReply>, refs: &Arc<dyn RefCodec>| {
                if let Some(hook) = &hook {
                    let arrival = if ask.is_some() {
                        Arrival::Ask
                    } else {
                        Arrival::Tell
                    };
                    match (hook(&actor, payload, arrival), ask) {
                        (Intercepted::Queue, again) => ask = again,
                        // Documented: an ask is always queued; a hook that kept it leaves its asker
                        // with `NoReply` rather than waiting for its timeout.
                        (Intercepted::Delivered | Intercepted::Pending(_), Some(ask)) => {
                            ask.send(Err(ReplyFailure::Ask(postbox::AskError::NoReply)));
                            return Ok(None);
                        }
                        (Intercepted::Delivered, None) => return Ok(None),
                        (Intercepted::Pending(delivering), None) => return Ok(Some(delivering)),
                    }
                }
                let msg = (codec.decode)(payload).map_err(|_| RemoteFailure::Undecodable)?;
                let Some(ask) = ask else {
                    // The common case, without a boxed future: room in the mailbox.
                    let msg = match postbox::remote::try_enqueue(&actor, msg) {
                        Ok(()) => return Ok(None),
                        Err(postbox::TrySendError::Full(msg)) => msg,
                        // `tell` below counts the dead letter.
                        Err(postbox::TrySendError::Closed(msg)) => msg,
                    };
                    let actor = actor.clone();
                    return Ok(Some(Box::pin(async move {
                        // Refusals are counted by the actor's own dead-letter accounting.
                        let _ = actor.tell(msg).await;
                    })));
                };
                let refs = refs.clone();
                // Runs in the task that answers: the reply goes into the connection's outbox from
                // there, with no task of the transport's to wake in between.
                let answer = move |reply: Result<M::Reply, postbox::AskError>| {
                    let encoded = match reply {
                        Ok(value) => with_ref_codec(&refs, || {
                            let mut out = Vec::with_capacity(128);
                            (codec.encode_reply)(&value, &mut out)
                                .map(|()| out)
                                .map_err(|e| ReplyFailure::Unencodable(e.to_string()))
                        }),
                        Err(error) => Err(ReplyFailure::Ask(error)),
                    };
                    ask.send(encoded);
                };
                Ok(
                    postbox::remote::try_enqueue_ask_calling(&actor, msg, answer)
                        .map(|waiting| Box::pin(waiting) as BoxedEnqueue),
                )
            },
        ) as Delivery)
    })
}

impl<A: Actor> fmt::Debug for Handlers<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("actor", &std::any::type_name::<A>())
            .field("tags", &self.by_tag.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Every exposed actor type's handlers.
#[derive(Default)]
pub(crate) struct TypeRegistry {
    types: dashmap::DashMap<TypeId, Arc<HashMap<&'static str, Deliver>>>,
}

impl TypeRegistry {
    pub(crate) fn expose<A: RemoteActor>(&self) {
        let mut handlers = Handlers::<A> {
            by_tag: HashMap::new(),
            _actor: std::marker::PhantomData,
        };
        A::register(&mut handlers);
        self.types
            .insert(TypeId::of::<A>(), Arc::new(handlers.by_tag));
    }

    /// How to deliver messages with `tag` to `target`.
    pub(crate) fn delivery(
        &self,
        target: &LocalActor,
        tag: &str,
    ) -> Result<Delivery, RemoteFailure> {
        let table = self
            .types
            .get(&target.actor_type_id())
            .map(|t| t.value().clone())
            .ok_or(RemoteFailure::UnknownTag)?;
        let deliver = table.get(tag).ok_or(RemoteFailure::UnknownTag)?;
        deliver(target).ok_or(RemoteFailure::UnknownTag)
    }

    /// Puts `hook` in front of `M`'s delivery to actors of type `A` (exposing `A` first if
    /// it is not yet).
    pub(crate) fn intercept<A, M>(&self, hook: Arc<Hook<A>>)
    where
        A: RemoteActor + Handler<M>,
        M: Message,
    {
        let Some(codec) = M::remote() else {
            tracing::error!(
                message = std::any::type_name::<M>(),
                "not remotable (no remote_message!): nothing to intercept"
            );
            return;
        };
        if !self.types.contains_key(&TypeId::of::<A>()) {
            self.expose::<A>();
        }
        if let Some(mut table) = self.types.get_mut(&TypeId::of::<A>()) {
            let mut by_tag = HashMap::clone(&table);
            by_tag.insert(codec.tag, deliver_fn::<A, M>(codec, Some(hook)));
            *table = Arc::new(by_tag);
        }
    }
}

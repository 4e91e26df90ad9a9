//! The message type registry: which tags an exposed actor type answers, and how.

use bytes::Bytes;
use postbox::remote::{with_ref_codec, LocalActor, RefCodec, RemoteFailure};
use postbox::{Actor, Handler, Message};
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

/// What a delivery produces: for an ask, the encoded reply (or why there is none).
pub(crate) type Delivered =
    Pin<Box<dyn Future<Output = Option<Result<Vec<u8>, ReplyFailure>>> + Send>>;

/// Why an ask from another node has no reply to send back.
pub(crate) enum ReplyFailure {
    /// The local ask failed, as a local asker would have been told.
    Ask(postbox::AskError),
    /// The reply could not be encoded (why).
    Unencodable(String),
}

/// Decodes a payload and puts it in the actor's mailbox: at once when there is room (`None`),
/// else through a future that resolves once it is queued — to the reply's future for an ask.
pub(crate) type Deliver = Arc<
    dyn Fn(
            &LocalActor,
            Bytes,
            bool,
            &Arc<dyn RefCodec>,
        ) -> Result<Option<BoxedEnqueue>, RemoteFailure>
        + Send
        + Sync,
>;
pub(crate) type BoxedEnqueue = Pin<Box<dyn Future<Output = Option<Delivered>> + Send>>;

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
        let deliver: Deliver = Arc::new(move |target, payload, ask, refs| {
            let actor = target.downcast::<A>().ok_or(RemoteFailure::UnknownTag)?;
            let msg = (codec.decode)(&payload).map_err(|_| RemoteFailure::Undecodable)?;
            let msg = if ask {
                msg
            } else {
                // The common case, without a boxed future: room in the mailbox.
                match postbox::remote::try_enqueue(&actor, msg) {
                    Ok(()) => return Ok(None),
                    Err(postbox::TrySendError::Full(msg)) => msg,
                    // `tell` below counts the dead letter.
                    Err(postbox::TrySendError::Closed(msg)) => msg,
                }
            };
            let refs = refs.clone();
            Ok(Some(Box::pin(async move {
                if ask {
                    let reply = postbox::remote::enqueue_ask(&actor, msg).await;
                    let delivered: Delivered = Box::pin(async move {
                        Some(match reply.await {
                            Ok(value) => with_ref_codec(&refs, || {
                                let mut out = Vec::with_capacity(128);
                                (codec.encode_reply)(&value, &mut out)
                                    .map(|()| out)
                                    .map_err(|e| ReplyFailure::Unencodable(e.to_string()))
                            }),
                            Err(error) => Err(ReplyFailure::Ask(error)),
                        })
                    });
                    Some(delivered)
                } else {
                    // Refusals are counted by the actor's own dead-letter accounting.
                    let _ = actor.tell(msg).await;
                    None
                }
            }) as BoxedEnqueue))
        });
        self.by_tag.insert(codec.tag, deliver);
    }
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

    /// How to deliver a message with `tag` to `target`.
    pub(crate) fn handler(&self, target: &LocalActor, tag: &str) -> Result<Deliver, RemoteFailure> {
        let table = self
            .types
            .get(&target.actor_type_id())
            .map(|t| t.value().clone())
            .ok_or(RemoteFailure::UnknownTag)?;
        table.get(tag).cloned().ok_or(RemoteFailure::UnknownTag)
    }
}

//! A message on its way to an entity, type-erased so that a region can buffer, deliver or
//! forward it: a `Parcel<A>`.
//!
//! Typed parcels come from this node's [`EntityRef`](crate::EntityRef)s; wire parcels from
//! other regions, decoded only when delivered (a region that forwards one again never
//! decodes it). A parcel that cannot be delivered is failed: a told message becomes a
//! dead letter with its reason, an asked one resolves its asker with the error.

use crate::entity::EntityMessages;
use crate::region::Region;
use crate::wire::{Bin, Deliver, DeliverAsk, Envelope, WireFailure, WireReply};
use crate::Entity;
use postbox::remote::enqueue_ask;
use postbox::{
    ActorId, ActorRef, ActorSystem, AskError, DeadLetter, DeadLetterReason, Handler, Message,
    RemoteFailure, ReplyTo,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Tells `to` the envelope: at once when its queue has room (no future to box), else once
/// there is room.
fn send_deliver<A: Entity>(to: &ActorRef<Region<A>>, envelope: Envelope) -> BoxFuture {
    // `try_enqueue`, not `try_tell`: a full queue is no dead letter here, the tell waits.
    match postbox::remote::try_enqueue(to, Deliver(envelope)) {
        Ok(()) => Box::pin(std::future::ready(())),
        Err(postbox::TrySendError::Full(deliver)) => {
            let to = to.clone();
            Box::pin(async move {
                let _ = to.tell(deliver).await;
            })
        }
        // Its node is gone: `tell` counts the dead letter.
        Err(postbox::TrySendError::Closed(deliver)) => {
            let to = to.clone();
            Box::pin(async move {
                let _ = to.tell(deliver).await;
            })
        }
    }
}

/// What an ask's caller receives from the region once its message is in a mailbox: the
/// reply, to await under the caller's own timeout.
pub(crate) type ReplyFuture<R> = Pin<Box<dyn Future<Output = Result<R, AskError>> + Send>>;

/// The outcome of handing a parcel to an entity.
pub(crate) enum Delivery<A: Entity> {
    /// In the mailbox.
    Done,
    /// The mailbox is full: this future puts it there once there is room.
    Wait(BoxFuture),
    /// The entity is no longer running: the parcel comes back, for its next instance.
    Closed(Box<dyn Parcel<A>>),
}

/// Why a parcel is failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failed {
    /// No home could take it (buffer full, region stopped).
    Unavailable,
    /// Its message type has no remote codec and its home is another node.
    NotRemotable,
    /// This node is down (or left): its entities are gone.
    NodeDown,
}

pub(crate) trait Parcel<A: Entity>: Send + 'static {
    /// Puts the message into `entity`'s mailbox.
    fn deliver(self: Box<Self>, entity: &ActorRef<A>) -> Delivery<A>;
    /// Sends it to another region (waiting for room in its queue).
    fn forward(
        self: Box<Self>,
        entity: &str,
        to: &ActorRef<Region<A>>,
        hops: u8,
        handed_off: bool,
    ) -> Result<BoxFuture, (Box<dyn Parcel<A>>, Failed)>;
    /// Gives up on it: a dead letter for a tell, an error for an ask.
    fn fail(self: Box<Self>, system: &ActorSystem, region: ActorId, why: Failed);
    /// Whether it is a sender's fence (see `region.rs`, *Order*): answered where it would
    /// be delivered, never handed to an entity.
    fn is_fence(&self) -> bool {
        false
    }
    /// Answers a fence that reached the end of its way.
    fn answer_fence(self: Box<Self>) {}
}

/// The tag of a fence's envelope: no entity handles it.
pub(crate) const FENCE_TAG: &str = "postbox.sharding.fence";

/// A sender's fence, from this node's region: sent to the shard's old home along the path its
/// earlier messages took, as an ask whose answer comes (`Parcel::answer_fence` of its wire
/// parcel, where it would be delivered) once it
/// has reached the end of that path behind them. Whatever the answer — or none within
/// [`FENCE_TIMEOUT`](crate::region::FENCE_TIMEOUT), the bound at which the region stops
/// waiting too — the region is then told to release what it held.
pub(crate) struct Fence<A: Entity> {
    pub(crate) region: ActorRef<Region<A>>,
    pub(crate) shard: u32,
    pub(crate) token: u64,
}

impl<A: Entity> Fence<A> {
    /// Sends the fence for `entity`'s shard to `to` and waits for it to come back.
    pub(crate) async fn send(self, entity: &str, to: &ActorRef<Region<A>>) {
        let envelope = Envelope {
            entity: entity.to_owned(),
            tag: FENCE_TAG.to_owned(),
            payload: Bin(Vec::new()),
            hops: 1,
            handed_off: false,
        };
        let answer = enqueue_ask(to, DeliverAsk(envelope)).await;
        let _ = tokio::time::timeout(crate::region::FENCE_TIMEOUT, answer).await;
        let done = crate::region::FenceDone {
            shard: self.shard,
            token: self.token,
        };
        let _ = self.region.tell(done).await;
    }
}

fn dead_letter(system: &ActorSystem, region: ActorId, message_type: &'static str, why: Failed) {
    let reason = match why {
        Failed::Unavailable | Failed::NodeDown => DeadLetterReason::ShardUnavailable,
        Failed::NotRemotable => DeadLetterReason::NotRemotable,
    };
    system.dead_letters().record(DeadLetter::new(
        region,
        "postbox_sharding::Region",
        message_type,
        reason,
    ));
}

fn ask_error(why: Failed) -> AskError {
    match why {
        Failed::Unavailable => AskError::Remote(RemoteFailure::Refused),
        Failed::NotRemotable => AskError::Remote(RemoteFailure::NotRemotable),
        Failed::NodeDown => AskError::NodeDown,
    }
}

/// `msg` as an envelope for `entity`: `NotRemotable` without a codec or if it does not
/// encode.
fn envelope<M: Message>(
    entity: &str,
    msg: &M,
    hops: u8,
    handed_off: bool,
) -> Result<Envelope, Failed> {
    let codec = M::remote().ok_or(Failed::NotRemotable)?;
    Envelope::encode(entity, &codec, msg, hops, handed_off).ok_or(Failed::NotRemotable)
}

/// A told message from this node.
pub(crate) struct Tell<M>(pub(crate) M);

impl<A, M> Parcel<A> for Tell<M>
where
    A: Entity + Handler<M>,
    M: Message,
{
    fn deliver(self: Box<Self>, entity: &ActorRef<A>) -> Delivery<A> {
        match postbox::remote::try_enqueue(entity, self.0) {
            Ok(()) => Delivery::Done,
            Err(postbox::TrySendError::Closed(msg)) => Delivery::Closed(Box::new(Tell(msg))),
            Err(postbox::TrySendError::Full(msg)) => {
                let entity = entity.clone();
                Delivery::Wait(Box::pin(async move {
                    // A refusal here (the entity stopped meanwhile) is counted by `tell`.
                    let _ = entity.tell(msg).await;
                }))
            }
        }
    }

    fn forward(
        self: Box<Self>,
        entity: &str,
        to: &ActorRef<Region<A>>,
        hops: u8,
        handed_off: bool,
    ) -> Result<BoxFuture, (Box<dyn Parcel<A>>, Failed)> {
        match envelope(entity, &self.0, hops, handed_off) {
            Ok(envelope) => Ok(send_deliver(to, envelope)),
            Err(why) => Err((self, why)),
        }
    }

    fn fail(self: Box<Self>, system: &ActorSystem, region: ActorId, why: Failed) {
        dead_letter(system, region, std::any::type_name::<M>(), why);
    }
}

/// An asked message from this node; the asker waits on `reply` for the reply's future.
pub(crate) struct Ask<M: Message> {
    pub(crate) msg: M,
    pub(crate) reply: oneshot::Sender<ReplyFuture<M::Reply>>,
}

impl<A, M> Parcel<A> for Ask<M>
where
    A: Entity + Handler<M>,
    M: Message,
{
    fn deliver(self: Box<Self>, entity: &ActorRef<A>) -> Delivery<A> {
        if !entity.is_alive() {
            return Delivery::Closed(self);
        }
        let entity = entity.clone();
        Delivery::Wait(Box::pin(async move {
            let Ask { msg, reply } = *self;
            let answer = enqueue_ask(&entity, msg).await;
            let _ = reply.send(Box::pin(answer));
        }))
    }

    fn forward(
        self: Box<Self>,
        entity: &str,
        to: &ActorRef<Region<A>>,
        hops: u8,
        handed_off: bool,
    ) -> Result<BoxFuture, (Box<dyn Parcel<A>>, Failed)> {
        let Some(codec) = M::remote() else {
            return Err((self, Failed::NotRemotable));
        };
        let envelope = match envelope(entity, &self.msg, hops, handed_off) {
            Ok(envelope) => envelope,
            Err(why) => return Err((self, why)),
        };
        let to = to.clone();
        let reply = self.reply;
        Ok(Box::pin(async move {
            let answer = enqueue_ask(&to, DeliverAsk(envelope)).await;
            let decoded: ReplyFuture<M::Reply> = Box::pin(async move {
                match answer.await {
                    Ok(Ok(Bin(bytes))) => (codec.decode_reply)(&bytes)
                        .map_err(|_| AskError::Remote(RemoteFailure::Undecodable)),
                    Ok(Err(failure)) => Err(failure.into()),
                    Err(error) => Err(error),
                }
            });
            let _ = reply.send(decoded);
        }))
    }

    fn fail(self: Box<Self>, system: &ActorSystem, region: ActorId, why: Failed) {
        dead_letter(system, region, std::any::type_name::<M>(), why);
        let _ = self
            .reply
            .send(Box::pin(async move { Err(ask_error(why)) }));
    }
}

/// A message from another region, still encoded; `reply` is set for an ask.
pub(crate) struct Wire<A: Entity> {
    pub(crate) envelope: Envelope,
    pub(crate) reply: Option<ReplyTo<WireReply>>,
    pub(crate) messages: Arc<EntityMessages<A>>,
}

impl<A: Entity> Parcel<A> for Wire<A> {
    fn deliver(self: Box<Self>, entity: &ActorRef<A>) -> Delivery<A> {
        if !entity.is_alive() {
            return Delivery::Closed(self);
        }
        let Wire {
            envelope,
            reply,
            messages,
        } = *self;
        match messages.decode(entity, &envelope.tag, &envelope.payload.0, reply) {
            Ok(delivery) => delivery,
            Err((failure, reply)) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(failure));
                }
                Delivery::Done
            }
        }
    }

    fn forward(
        self: Box<Self>,
        _entity: &str,
        to: &ActorRef<Region<A>>,
        hops: u8,
        handed_off: bool,
    ) -> Result<BoxFuture, (Box<dyn Parcel<A>>, Failed)> {
        let Wire {
            mut envelope,
            reply,
            ..
        } = *self;
        envelope.hops = hops;
        envelope.handed_off = handed_off;
        let to = to.clone();
        Ok(Box::pin(async move {
            match reply {
                None => send_deliver(&to, envelope).await,
                Some(reply) => {
                    let answer = enqueue_ask(&to, DeliverAsk(envelope)).await;
                    tokio::spawn(async move {
                        let _ = reply.send(answer.await.unwrap_or_else(|e| Err(e.into())));
                    });
                }
            }
        }))
    }

    fn fail(self: Box<Self>, system: &ActorSystem, region: ActorId, why: Failed) {
        if self.is_fence() {
            // Nothing of an entity's is lost: the sender just stops waiting.
            return self.answer_fence();
        }
        dead_letter(system, region, "postbox_sharding::Envelope", why);
        if let Some(reply) = self.reply {
            let _ = reply.send(Err(WireFailure::from(ask_error(why))));
        }
    }

    fn is_fence(&self) -> bool {
        self.envelope.tag == FENCE_TAG
    }

    fn answer_fence(self: Box<Self>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Ok(Bin(Vec::new())));
        }
    }
}

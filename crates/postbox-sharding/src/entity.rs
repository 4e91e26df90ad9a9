//! Entity types: the [`Entity`] trait (which messages other nodes may send an entity),
//! and [`EntityType`], how one type is sharded.

use crate::allocation::Allocation;
use crate::direct::{Fallback, Now};
use crate::parcel::{BoxFuture, Delivery, Failed, Parcel};
use crate::region::Region;
use crate::wire::{Bin, WireFailure, WireReply};
use postbox::remote::{enqueue_ask, RemoteCodec};
use postbox::{Actor, ActorId, ActorRef, ActorSystem, Handler, MailboxCapacity, Message, ReplyTo};
use postbox_persistence::Persistence;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An actor type that can be sharded: it lists the message types that may reach its
/// entities from any node. Implement it with [`entity!`](crate::entity!); each message type
/// needs a remote codec (`postbox_remote::remote_message!`).
pub trait Entity: Actor {
    /// Lists the message types.
    fn messages(messages: &mut EntityMessages<Self>);
}

/// Implements [`Entity`] for an actor type, listing the message types its entities receive
/// from other nodes: `entity!(Account: Deposit, Balance);`.
#[macro_export]
macro_rules! entity {
    ($actor:ty : $($message:ty),+ $(,)?) => {
        impl $crate::Entity for $actor {
            fn messages(messages: &mut $crate::EntityMessages<Self>) {
                $( messages.handle::<$message>(); )+
            }
        }
    };
}

type Decode<A> = Box<
    dyn Fn(
            &ActorRef<A>,
            &[u8],
            Option<ReplyTo<WireReply>>,
        ) -> Result<Delivery<A>, (WireFailure, Option<ReplyTo<WireReply>>)>
        + Send
        + Sync,
>;

/// Decodes a told message and puts it in the entity's mailbox: now if there is room, else
/// by a future that waits for room — and hands it to the region (`Fallback`) if the entity
/// stops meanwhile.
type DeliverNow<A> =
    Box<dyn Fn(&ActorRef<A>, &[u8], &dyn Fn() -> Fallback<A>) -> Now + Send + Sync>;

/// The message types of one entity type, by tag. Filled by [`Entity::messages`].
pub struct EntityMessages<A: Entity> {
    by_tag: HashMap<&'static str, Decode<A>>,
    /// Looked up for every told message that takes the inbound direct path: foldhash.
    now_by_tag: HashMap<&'static [u8], DeliverNow<A>, foldhash::fast::RandomState>,
}

impl<A: Entity> EntityMessages<A> {
    pub(crate) fn of() -> Self {
        let mut messages = Self {
            by_tag: HashMap::new(),
            now_by_tag: HashMap::default(),
        };
        A::messages(&mut messages);
        messages
    }

    /// Accepts `M` from other nodes. A type without a remote codec is skipped and logged (it
    /// still reaches entities hosted on the sender's own node).
    pub fn handle<M: Message>(&mut self)
    where
        A: Handler<M>,
    {
        let Some(codec) = M::remote() else {
            tracing::error!(
                message = std::any::type_name::<M>(),
                "not remotable (no remote_message!): only entities on the sender's node receive it"
            );
            return;
        };
        let decode: Decode<A> = Box::new(move |entity, payload, reply| {
            let msg = match (codec.decode)(payload) {
                Ok(msg) => msg,
                Err(_) => return Err((WireFailure::Undecodable, reply)),
            };
            let parcel: Box<dyn Parcel<A>> = match reply {
                None => Box::new(crate::parcel::Tell(msg)),
                Some(reply) => Box::new(RemoteAsk { msg, reply, codec }),
            };
            Ok(parcel.deliver(entity))
        });
        self.by_tag.insert(codec.tag, decode);
        let now: DeliverNow<A> = Box::new(move |entity, payload, fallback| {
            // A payload that does not decode takes the region's path, which reports it.
            let Ok(msg) = (codec.decode)(payload) else {
                return Now::Region;
            };
            let msg: M = match postbox::remote::try_enqueue(entity, msg) {
                Ok(()) => return Now::Delivered,
                Err(postbox::TrySendError::Full(msg) | postbox::TrySendError::Closed(msg)) => msg,
            };
            let entity = entity.clone();
            let fallback = fallback();
            Now::Pending(Box::pin(async move {
                if let Err(postbox::SendError(msg)) = entity.tell(msg).await {
                    // It stopped (passivated, handed off) while this waited for room.
                    fallback.reroute(Box::new(crate::parcel::Tell(msg))).await;
                }
            }))
        });
        self.now_by_tag.insert(codec.tag.as_bytes(), now);
    }

    /// Puts a told message in `entity`'s mailbox (see [`DeliverNow`]).
    pub(crate) fn deliver_now(
        &self,
        entity: &ActorRef<A>,
        tag: &[u8],
        payload: &[u8],
        fallback: &dyn Fn() -> Fallback<A>,
    ) -> Now {
        match self.now_by_tag.get(tag) {
            Some(deliver) => deliver(entity, payload, fallback),
            None => Now::Region,
        }
    }

    pub(crate) fn decode(
        &self,
        entity: &ActorRef<A>,
        tag: &str,
        payload: &[u8],
        reply: Option<ReplyTo<WireReply>>,
    ) -> Result<Delivery<A>, (WireFailure, Option<ReplyTo<WireReply>>)> {
        match self.by_tag.get(tag) {
            Some(decode) => decode(entity, payload, reply),
            None => Err((WireFailure::UnknownTag, reply)),
        }
    }
}

impl<A: Entity> fmt::Debug for EntityMessages<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityMessages")
            .field("entity", &std::any::type_name::<A>())
            .field("tags", &self.by_tag.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// An ask from another node, decoded: its reply goes back encoded.
struct RemoteAsk<M: Message> {
    msg: M,
    reply: ReplyTo<WireReply>,
    codec: RemoteCodec<M>,
}

impl<A, M> Parcel<A> for RemoteAsk<M>
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
            let RemoteAsk { msg, reply, codec } = *self;
            let answer = enqueue_ask(&entity, msg).await;
            tokio::spawn(async move {
                let encoded = match answer.await {
                    Ok(value) => {
                        let mut out = Vec::with_capacity(64);
                        (codec.encode_reply)(&value, &mut out)
                            .map(|()| Bin(out))
                            .map_err(|_| WireFailure::Unencodable)
                    }
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(encoded);
            });
        }))
    }

    fn forward(
        self: Box<Self>,
        entity: &str,
        to: &ActorRef<Region<A>>,
        hops: u8,
        handed_off: bool,
    ) -> Result<BoxFuture, (Box<dyn Parcel<A>>, Failed)> {
        let Some(envelope) =
            crate::wire::Envelope::encode(entity, &self.codec, &self.msg, hops, handed_off)
        else {
            return Err((self, Failed::NotRemotable));
        };
        let reply = self.reply;
        let to = to.clone();
        Ok(Box::pin(async move {
            let answer = enqueue_ask(&to, crate::wire::DeliverAsk(envelope)).await;
            tokio::spawn(async move {
                let _ = reply.send(answer.await.unwrap_or_else(|e| Err(e.into())));
            });
        }))
    }

    fn fail(self: Box<Self>, system: &ActorSystem, region: ActorId, why: Failed) {
        let message_type = std::any::type_name::<M>();
        system.dead_letters().record(postbox::DeadLetter::new(
            region,
            std::any::type_name::<Region<A>>(),
            message_type,
            match why {
                Failed::Unavailable | Failed::NodeDown => {
                    postbox::DeadLetterReason::ShardUnavailable
                }
                Failed::NotRemotable => postbox::DeadLetterReason::NotRemotable,
            },
        ));
        let _ = self.reply.send(Err(match why {
            Failed::Unavailable => WireFailure::Refused,
            Failed::NotRemotable => WireFailure::NotRemotable,
            Failed::NodeDown => WireFailure::NodeDown,
        }));
    }
}

type Factory<A> = Arc<dyn Fn(&str) -> A + Send + Sync>;

/// How one entity type is sharded: its name, the factory of its entities, where they may
/// live and how many may be active. Give it to [`Sharding::register`](crate::Sharding::register).
///
/// Every node that registers the type can reach its entities; those with the
/// [`role`](Self::role) (every node, without one) host them.
pub struct EntityType<A: Entity> {
    pub(crate) name: String,
    pub(crate) factory: Factory<A>,
    pub(crate) role: Option<String>,
    pub(crate) shards: u32,
    pub(crate) allocation: Allocation,
    pub(crate) buffer: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_active: usize,
    pub(crate) max_handoffs: usize,
    pub(crate) ask_timeout: Option<Duration>,
    pub(crate) mailbox: Option<MailboxCapacity>,
    pub(crate) rebalance_interval: Duration,
    /// Entities activated as soon as their shard is homed here (a singleton's).
    pub(crate) eager: Vec<String>,
    /// Where the remembered entities of each shard are kept (remember entities on).
    pub(crate) remember: Option<Persistence>,
}

impl<A: Entity> EntityType<A> {
    /// An entity type named `name` (the same on every node; 1 to 200 bytes of letters,
    /// digits, `-`, `_` and `.`), whose entities `factory` makes from their id.
    ///
    /// Defaults: 100 shards, [`Allocation::LeastShards`], 1 000 messages buffered per shard
    /// while it moves, passivation after 2 minutes idle, at most 100 000 active entities per
    /// node, 16 shards handed off at a time, the system's ask timeout.
    pub fn new(
        name: impl Into<String>,
        factory: impl Fn(&str) -> A + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            factory: Arc::new(factory),
            role: None,
            shards: 100,
            allocation: Allocation::LeastShards,
            buffer: 1_000,
            idle_timeout: Some(Duration::from_secs(120)),
            max_active: 100_000,
            max_handoffs: 16,
            ask_timeout: None,
            mailbox: None,
            rebalance_interval: Duration::from_secs(10),
            eager: Vec::new(),
            remember: None,
        }
    }

    /// Only members with `role` host entities of this type.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// How many shards (1 to 65 536; the same on every node). More shards spread better and
    /// move in smaller steps; each costs a little bookkeeping.
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// How shards are placed.
    pub fn allocation(mut self, allocation: Allocation) -> Self {
        self.allocation = allocation;
        self
    }

    /// How many messages one shard buffers while it has no home to deliver to (being
    /// allocated or handed off); more are dead letters (`ShardUnavailable`).
    pub fn buffer(mut self, messages: usize) -> Self {
        self.buffer = messages;
        self
    }

    /// Passivates (stops) an entity after `idle` without messages; `None` never does.
    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// At most `entities` active on one node; activating one more passivates the least
    /// recently used.
    pub fn max_active(mut self, entities: usize) -> Self {
        self.max_active = entities.max(1);
        self
    }

    /// At most `shards` handed off at a time by one node when rebalancing.
    pub fn max_handoffs(mut self, shards: usize) -> Self {
        self.max_handoffs = shards.max(1);
        self
    }

    /// The timeout of [`EntityRef::ask`](crate::EntityRef::ask) (the system's ask timeout
    /// by default).
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = Some(timeout);
        self
    }

    /// The mailbox of each entity (the system's default otherwise).
    pub fn mailbox(mut self, mailbox: MailboxCapacity) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// **Remember entities**: record in `persistence`, per shard, which entities are active,
    /// so that whenever a shard becomes active on a node — first placement, after a hand-off
    /// (a join, a graceful leave), after its node was lost and downed — that node starts
    /// them at once, without waiting for a message; each recovers its own state as usual.
    /// Off by default.
    ///
    /// An entity is remembered when it starts and forgotten when it is passivated (idle or
    /// least recently used) or stops on its own; stopping for a hand-off or with its node
    /// keeps it remembered. The set is written (one durable state per shard,
    /// `postbox.sharding.remember/<type>/<shard>`) when entities start and stop, never per
    /// message, in the background: a message is never held for it, and a store failure is
    /// logged, counted ([`RegionCounts::remember_failures`](crate::RegionCounts)) and retried
    /// while the entity serves. With it on, a node acquires every shard placed on it as
    /// soon as it sees the placement (not on a shard's first message). Remembered entities
    /// started on a node stop at [`max_active`](Self::max_active): the rest stay remembered
    /// and start on their first message.
    pub fn remember_entities(mut self, persistence: &Persistence) -> Self {
        self.remember = Some(persistence.clone());
        self
    }

    /// How often [`Allocation::LoadAware`] re-reads the gossiped loads.
    pub fn rebalance_interval(mut self, every: Duration) -> Self {
        self.rebalance_interval = every;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::ShardingError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 200
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(crate::ShardingError::InvalidName(self.name.clone()));
        }
        if self.shards == 0 || self.shards > 65_536 {
            return Err(crate::ShardingError::InvalidSetting(format!(
                "shards must be 1 to 65536, not {}",
                self.shards
            )));
        }
        if self.buffer == 0 {
            return Err(crate::ShardingError::InvalidSetting(
                "buffer must be at least 1 message".into(),
            ));
        }
        Ok(())
    }
}

impl<A: Entity> fmt::Debug for EntityType<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityType")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("shards", &self.shards)
            .field("allocation", &self.allocation)
            .field("remember_entities", &self.remember.is_some())
            .finish_non_exhaustive()
    }
}

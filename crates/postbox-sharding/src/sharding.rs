//! `Sharding`: registering entity types on a node, and `EntityRef`, the reference to one
//! entity from anywhere.

use crate::direct::{Direct, Sending};
use crate::entity::{EntityMessages, EntityType};
use crate::error::ShardingError;
use crate::region::{
    Downed, Leave, LeftCluster, PassivationTick, Region, Route, RouteAsk, Snapshot, TypeShared,
    ViewChanged,
};
use crate::stats::{RegionCounters, RegionSnapshot};
use crate::wire::{Bin, Deliver, DeliverAsk, DeliverAskDirect, DeliverDirect, ThinId};
use crate::Entity;
use postbox::remote::RemoteCodec;
use postbox::{
    ActorRef, ActorSystem, AskError, Handler, Message, Props, Recipient, SendError, TrySendError,
};
use postbox_cluster::{Cluster, EventsError};
use postbox_remote::{Intercepted, Remote};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// An ask ready for its direct path: the home's region, the message in its envelope, its
/// codec (see [`EntityRef::direct_ask`]).
type DirectAsk<'a, A, M> = (
    ActorRef<Region<A>>,
    DeliverAskDirect<M>,
    RemoteCodec<M>,
    Sending<'a>,
);

/// What waits for the reply to an ask already in line (see [`EntityRef::enqueue_ask`]).
pub(crate) type PendingReply<R> = Pin<Box<dyn Future<Output = Result<R, AskError>> + Send>>;

type SnapshotFn =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Option<RegionSnapshot>> + Send>> + Send + Sync>;

struct Registered {
    /// `Entities<A>`, type-erased.
    entities: Box<dyn Any + Send + Sync>,
    name: String,
    leave: Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
    snapshot: SnapshotFn,
}

/// Sharded entities on this node: register entity types, reach entities by id. Cheap to
/// clone. See the [crate docs](crate).
#[derive(Clone)]
pub struct Sharding {
    inner: Arc<Inner>,
}

struct Inner {
    system: ActorSystem,
    remote: Remote,
    cluster: Cluster,
    types: Mutex<HashMap<TypeId, Registered>>,
}

impl Sharding {
    /// Sharding on this node, over its cluster membership and transport.
    pub fn new(system: &ActorSystem, remote: &Remote, cluster: &Cluster) -> Self {
        Sharding {
            inner: Arc::new(Inner {
                system: system.clone(),
                remote: remote.clone(),
                cluster: cluster.clone(),
                types: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Registers an entity type on this node: starts its region (`sharding/<name>`, exposed
    /// to the other nodes' regions) and returns the handle to its entities. Register it on
    /// every node that sends to its entities; it is hosted on those with its role.
    pub fn register<A: Entity>(
        &self,
        entity_type: EntityType<A>,
    ) -> Result<Entities<A>, ShardingError> {
        entity_type.validate()?;
        let mut types = self
            .inner
            .types
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if types.contains_key(&TypeId::of::<A>()) {
            return Err(ShardingError::AlreadyRegistered(
                std::any::type_name::<A>().to_owned(),
            ));
        }
        if types.values().any(|t| t.name == entity_type.name) {
            return Err(ShardingError::AlreadyRegistered(format!(
                "entity type {:?}",
                entity_type.name
            )));
        }
        let name = entity_type.name.clone();
        let ask_timeout = entity_type
            .ask_timeout
            .unwrap_or(self.inner.system.config().ask_timeout);
        let idle = entity_type.idle_timeout;
        let rebalance = (entity_type.allocation == crate::Allocation::LoadAware)
            .then_some(entity_type.rebalance_interval);
        let direct = Arc::new(Direct::<A>::new(entity_type.shards));
        let shared = Arc::new(TypeShared {
            direct: direct.clone(),
            messages: Arc::new(EntityMessages::<A>::of()),
            settings: entity_type,
            remote: self.inner.remote.clone(),
            cluster: self.inner.cluster.clone(),
            counters: Arc::new(RegionCounters::default()),
            registered_as: format!("sharding/{name}"),
        });
        self.inner.remote.expose::<Region<A>>();
        install_direct_hooks(&self.inner.remote, &shared);
        let region = self
            .inner
            .system
            .spawn(
                Props::new({
                    let shared = shared.clone();
                    move || Region::new(shared.clone())
                })
                .name(format!("sharding-{name}")),
            )
            .map_err(ShardingError::Spawn)?;
        if self
            .inner
            .system
            .registry()
            .register(shared.registered_as.clone(), &region)
            .is_err()
        {
            region.stop();
            return Err(ShardingError::AlreadyRegistered(
                shared.registered_as.clone(),
            ));
        }
        spawn_feeds(&self.inner.cluster, &region, idle, rebalance);
        let entities = Entities {
            region: region.clone(),
            system: self.inner.system.clone(),
            ask_timeout,
            name: Arc::from(name.as_str()),
            direct,
        };
        let leaving = region.clone();
        let snapshotting = region.clone();
        types.insert(
            TypeId::of::<A>(),
            Registered {
                entities: Box::new(entities.clone()),
                name,
                leave: Box::new(move || {
                    let region = leaving.clone();
                    Box::pin(async move {
                        let _ = region.ask(Leave).timeout(Duration::from_secs(3_600)).await;
                    })
                }),
                snapshot: Box::new(move || {
                    let region = snapshotting.clone();
                    Box::pin(async move { region.ask(Snapshot).await.ok() })
                }),
            },
        );
        Ok(entities)
    }

    /// Registers a **cluster singleton**: one entity of type `A`, made by `factory`, running
    /// on the oldest up member with `role` (any member without one), started as soon as that
    /// member's region has acquired it, moved on leave or down. The returned
    /// [`EntityRef`] is its proxy from this node: it buffers (bounded) while the singleton
    /// moves. Register it on every node that talks to it.
    pub fn register_singleton<A: Entity>(
        &self,
        name: impl Into<String>,
        role: Option<&str>,
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> Result<EntityRef<A>, ShardingError> {
        let mut entity_type = EntityType::new(name, move |_| factory())
            .shards(1)
            .allocation(crate::Allocation::Oldest)
            .idle_timeout(None);
        if let Some(role) = role {
            entity_type = entity_type.role(role);
        }
        entity_type.eager = vec![SINGLETON_ID.to_owned()];
        Ok(self.register(entity_type)?.entity_ref(SINGLETON_ID))
    }

    /// The entities of type `A` (registered on this node).
    pub fn entities<A: Entity>(&self) -> Result<Entities<A>, ShardingError> {
        let types = self
            .inner
            .types
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        types
            .get(&TypeId::of::<A>())
            .and_then(|t| t.entities.downcast_ref::<Entities<A>>())
            .cloned()
            .ok_or(ShardingError::NotRegistered(std::any::type_name::<A>()))
    }

    /// A reference to the entity of type `A` with id `id`, wherever it lives or will live.
    pub fn entity_ref<A: Entity>(
        &self,
        id: impl AsRef<str>,
    ) -> Result<EntityRef<A>, ShardingError> {
        Ok(self.entities::<A>()?.entity_ref(id))
    }

    /// What this node hosts, per registered entity type (sorted by name).
    pub async fn snapshot(&self) -> Vec<RegionSnapshot> {
        let asks: Vec<_> = {
            let types = self
                .inner
                .types
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            types.values().map(|t| (t.snapshot)()).collect()
        };
        let mut snapshots = Vec::with_capacity(asks.len());
        for ask in asks {
            if let Some(snapshot) = ask.await {
                snapshots.push(snapshot);
            }
        }
        snapshots.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
        snapshots
    }

    /// Hands every shard of every type off to the other nodes and returns once none is
    /// hosted here: entities stop (their state is as durable as they made it), messages
    /// that arrive meanwhile are buffered and then forwarded, in order, to the new homes.
    /// Call it before [`Cluster::leave`]; this node keeps forwarding messages sent to it
    /// until its transport shuts down.
    pub async fn leave(&self) {
        let leaves: Vec<_> = {
            let types = self
                .inner
                .types
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            types.values().map(|t| (t.leave)()).collect()
        };
        for leave in leaves {
            leave.await;
        }
    }
}

impl fmt::Debug for Sharding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types = self
            .inner
            .types
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Sharding")
            .field("node", self.inner.cluster.node())
            .field(
                "types",
                &types.values().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The id of a singleton's one entity.
const SINGLETON_ID: &str = "singleton";

/// Tasks that feed a region: membership changes, this node's downing, passivation ticks,
/// and, for load-aware allocation, fresh loads. Each ends when the region stops.
fn spawn_feeds<A: Entity>(
    cluster: &Cluster,
    region: &ActorRef<Region<A>>,
    idle: Option<Duration>,
    rebalance: Option<Duration>,
) {
    let mut events = cluster.events();
    let feed_cluster = cluster.clone();
    let feed_region = region.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(_) | Err(EventsError::Lagged(_)) => {}
                Err(_) => {
                    // This node is out of the cluster: down, it hosts nothing at once (the
                    // downing watch below says so too); left, it hands off what it still
                    // hosts and keeps forwarding by its last view while its transport runs.
                    if feed_cluster.is_down() {
                        let _ = feed_region.tell(Downed).await;
                    } else {
                        let _ = feed_region.tell(LeftCluster).await;
                    }
                    return;
                }
            }
            let members = feed_cluster.members_by_age();
            if feed_region.tell(ViewChanged(members)).await.is_err() {
                return;
            }
        }
    });
    let down_cluster = cluster.clone();
    let down_region = region.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = down_cluster.downed() => { let _ = down_region.tell(Downed).await; }
            _ = down_region.wait_for_stop() => {}
        }
    });
    if let Some(idle) = idle {
        let every = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        let tick_region = region.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if tick_region.tell(PassivationTick).await.is_err() {
                    return;
                }
            }
        });
    }
    if let Some(every) = rebalance {
        let load_cluster = cluster.clone();
        let load_region = region.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let members = load_cluster.members_by_age();
                if load_region.tell(ViewChanged(members)).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The entities of one type, as seen from this node. Cheap to clone.
pub struct Entities<A: Entity> {
    pub(crate) region: ActorRef<Region<A>>,
    system: ActorSystem,
    ask_timeout: Duration,
    name: Arc<str>,
    direct: Arc<Direct<A>>,
}

impl<A: Entity> Clone for Entities<A> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            system: self.system.clone(),
            ask_timeout: self.ask_timeout,
            name: self.name.clone(),
            direct: self.direct.clone(),
        }
    }
}

impl<A: Entity> Entities<A> {
    /// A reference to the entity with id `id`.
    pub fn entity_ref(&self, id: impl AsRef<str>) -> EntityRef<A> {
        let id: Arc<str> = Arc::from(id.as_ref());
        EntityRef {
            shard: self.direct.shard_of(&id),
            thin_id: Arc::new(id.clone()),
            id,
            region: self.region.clone(),
            system: self.system.clone(),
            ask_timeout: self.ask_timeout,
            direct: self.direct.clone(),
        }
    }

    /// The entity type's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What this node hosts of the type now.
    pub async fn snapshot(&self) -> Result<RegionSnapshot, ShardingError> {
        self.region
            .ask(Snapshot)
            .await
            .map_err(|_| ShardingError::Stopped)
    }
}

impl<A: Entity> fmt::Debug for Entities<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entities")
            .field("name", &self.name)
            .finish()
    }
}

/// A reference to one entity, from any node, whether it is active or not and wherever it
/// lives: the same `tell` / `try_tell` / `ask` as an [`ActorRef`], with the same errors.
///
/// Messages go through this node's region, which delivers them to the entity (activating it)
/// or forwards them to the region of the node that hosts it — or, for a `tell` once the
/// entity's place is settled, skip the regions (see the crate docs' *Direct paths*). From
/// one `EntityRef`'s sender, messages arrive in send order.
///
/// - `tell` waits for room in this node's region (backpressure), then returns: whatever
///   happens after (the entity's node lost, a buffer full) is a counted dead letter. `tell`
///   is at-most-once across the loss of a node.
/// - `ask` resolves exactly once: the reply; `NodeDown` if the node hosting the entity is
///   lost before the reply; `Timeout` after the type's ask timeout (activation, acquisition
///   and hand-off included); `Remote(Refused)` if the message was given up (see
///   [`RegionCounts::dropped`](crate::RegionCounts)); `Stopped` if this node's region
///   stopped, or if the message was already in the mailbox of an entity instance that
///   stopped on its own (a stale instance whose write the store refused stops, and what was
///   queued behind that write goes with it; the next message starts a fresh instance).
pub struct EntityRef<A: Entity> {
    id: Arc<str>,
    /// The id again, behind a thin pointer, for the direct paths' messages.
    thin_id: ThinId,
    shard: u32,
    pub(crate) region: ActorRef<Region<A>>,
    /// Where [`recipient`](Self::recipient) starts its forwarder.
    system: ActorSystem,
    ask_timeout: Duration,
    direct: Arc<Direct<A>>,
}

impl<A: Entity> Clone for EntityRef<A> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            thin_id: self.thin_id.clone(),
            shard: self.shard,
            region: self.region.clone(),
            system: self.system.clone(),
            ask_timeout: self.ask_timeout,
            direct: self.direct.clone(),
        }
    }
}

impl<A: Entity> EntityRef<A> {
    /// The entity's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long an [`ask`](Self::ask) waits for its reply: the entity type's ask timeout.
    pub fn ask_timeout(&self) -> Duration {
        self.ask_timeout
    }

    /// Sends `msg`, waiting for room in this node's region; hands it back if the region is
    /// not running.
    pub async fn tell<M>(&self, mut msg: M) -> Result<(), SendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        if M::remote().is_some() {
            let direct = DeliverDirect {
                entity: self.thin_id.clone(),
                msg,
            };
            // Room in the home's queue now: no reference taken, no waiting.
            let sent = self
                .direct
                .with_route(self.shard, direct, |home, direct, count| {
                    postbox::remote::try_enqueue(home, direct).map_err(|e| match e {
                        // Waited for after the lock, counted until it is in the queue.
                        TrySendError::Full(direct) => (Some((home.clone(), count())), direct),
                        TrySendError::Closed(direct) => (None, direct),
                    })
                });
            match sent {
                Ok(Ok(())) => {
                    self.direct.count_direct();
                    return Ok(());
                }
                // Full: wait for room there, in line behind what is queued.
                Ok(Err((Some((home, _sending)), direct))) => match home.tell(direct).await {
                    Ok(()) => {
                        self.direct.count_direct();
                        return Ok(());
                    }
                    Err(SendError(direct)) => msg = direct.msg,
                },
                Ok(Err((None, direct))) | Err(direct) => msg = direct.msg,
            }
        }
        let route = Route {
            entity: self.id.clone(),
            msg,
        };
        let entered = self.direct.enter_outbound(self.shard);
        self.region
            .tell(route)
            .await
            .map(|()| entered.passed())
            .map_err(|SendError(route)| SendError(route.msg))
    }

    /// Sends `msg` if this node's region has room right now; hands it back otherwise.
    pub fn try_tell<M>(&self, mut msg: M) -> Result<(), TrySendError<M>>
    where
        A: Handler<M>,
        M: Message,
    {
        if M::remote().is_some() {
            let direct = DeliverDirect {
                entity: self.thin_id.clone(),
                msg,
            };
            // Under the route's read lock, as `tell`: nothing here waits.
            let sent = self
                .direct
                .with_route(self.shard, direct, |home, direct, _| home.try_tell(direct));
            match sent {
                Ok(Ok(())) => {
                    self.direct.count_direct();
                    return Ok(());
                }
                Ok(Err(TrySendError::Full(direct) | TrySendError::Closed(direct)))
                | Err(direct) => {
                    msg = direct.msg;
                }
            }
        }
        let route = Route {
            entity: self.id.clone(),
            msg,
        };
        let entered = self.direct.enter_outbound(self.shard);
        self.region
            .try_tell(route)
            .map(|()| entered.passed())
            .map_err(|error| match error {
                TrySendError::Full(route) => TrySendError::Full(route.msg),
                TrySendError::Closed(route) => TrySendError::Closed(route.msg),
            })
    }

    /// Sends `msg` and waits for the reply, at most the type's ask timeout.
    pub async fn ask<M>(&self, msg: M) -> Result<M::Reply, AskError>
    where
        A: Handler<M>,
        M: Message,
    {
        self.ask_within(msg, self.ask_timeout).await
    }

    /// Sends `msg` and waits for the reply, at most `timeout`.
    pub async fn ask_within<M>(&self, msg: M, timeout: Duration) -> Result<M::Reply, AskError>
    where
        A: Handler<M>,
        M: Message,
    {
        let msg = match self.direct_ask(msg) {
            Ok((home, direct, codec, sending)) => {
                let asked = home.ask(direct).timeout(timeout).into_future();
                // Counted until it is in the home's queue (a full queue: until answered).
                let sending = (!asked.is_queued()).then_some(sending);
                let answer = asked.await;
                drop(sending);
                return direct_reply(codec, answer);
            }
            Err(msg) => msg,
        };
        let asked = async move { self.enqueue_ask_via_region(msg).await?.await };
        tokio::time::timeout(timeout, asked)
            .await
            .unwrap_or(Err(AskError::Timeout(timeout)))
    }

    /// Puts an ask in line — after every message sent through this reference before it, and
    /// waiting for room like `tell` — and returns what waits for its reply (without the ask
    /// timeout: the caller bounds it). The two halves of [`ask_within`](Self::ask_within),
    /// for a forwarder that must keep its senders' order but not wait for each reply in turn.
    pub(crate) async fn enqueue_ask<M>(&self, msg: M) -> Result<PendingReply<M::Reply>, AskError>
    where
        A: Handler<M>,
        M: Message,
    {
        let msg = match self.direct_ask(msg) {
            Ok((home, direct, codec, sending)) => {
                let reply = postbox::remote::enqueue_ask(&home, direct).await;
                drop(sending);
                return Ok(Box::pin(async move { direct_reply(codec, reply.await) }));
            }
            Err(msg) => msg,
        };
        let reply = self.enqueue_ask_via_region(msg).await?;
        Ok(Box::pin(reply))
    }

    /// An ask's direct path, when it is open: the home's region and the message in its direct
    /// envelope (counted as direct), straight there in line with this sender's direct tells.
    /// Otherwise the message back, for the regions' path.
    fn direct_ask<M>(&self, msg: M) -> Result<DirectAsk<'_, A, M>, M>
    where
        A: Handler<M>,
        M: Message,
    {
        let Some(codec) = M::remote() else {
            return Err(msg);
        };
        let Some((home, sending)) = self.direct.outbound_route(self.shard) else {
            return Err(msg);
        };
        self.direct.count_direct();
        let direct = DeliverAskDirect {
            entity: self.thin_id.clone(),
            msg,
        };
        Ok((home, direct, codec, sending))
    }

    /// An ask through this node's region, once it is in the region's mailbox: what waits for
    /// the region to pass it on, then for the reply.
    async fn enqueue_ask_via_region<M>(
        &self,
        msg: M,
    ) -> Result<impl Future<Output = Result<M::Reply, AskError>> + Send + 'static, AskError>
    where
        A: Handler<M>,
        M: Message,
    {
        let (reply, answer) = oneshot::channel();
        let route = RouteAsk {
            entity: self.id.clone(),
            msg,
            reply,
        };
        // Counted, so that a later tell cannot overtake it by a direct path.
        let entered = self.direct.enter_outbound(self.shard);
        self.region
            .tell(route)
            .await
            .map_err(|_| AskError::Stopped)?;
        entered.passed();
        Ok(async move {
            let reply = answer.await.map_err(|_| AskError::Stopped)?;
            reply.await
        })
    }

    /// This entity as a [`Recipient<M>`]: a local actor that passes every `M` it gets on to
    /// the entity, so that an entity can be a router's routee, a breaker's guarded recipient
    /// (`breaker.guard_recipient(..)`; for a single call, `breaker.call(entity.ask(msg))`
    /// needs none), or anything else that takes a recipient.
    ///
    /// The forwarder keeps its senders' order (tells and asks are put in line in mailbox
    /// order) without waiting for each reply: up to
    /// [`FORWARDER_MAX_ASKS`](crate::FORWARDER_MAX_ASKS) asks at once, counted in its depth
    /// (so smallest-mailbox routing sees an entity's outstanding work); at the bound it takes
    /// no further message until a reply comes back, and its own mailbox fills, which holds its
    /// senders back. An ask resolves as through [`ask`](Self::ask), with the same errors and
    /// the type's ask timeout. A tell the region refuses (it stopped) is a dead letter
    /// (`ActorStopped`) and the forwarder stops; it also stops when this node's region does,
    /// which takes it out of any router. Each call starts a new forwarder: keep the recipient.
    pub fn recipient<M>(&self) -> Result<Recipient<M>, ShardingError>
    where
        A: Handler<M>,
        M: Message,
    {
        let entity = self.clone();
        let forwarder = self
            .system
            .spawn(move || crate::recipient::Forwarder::<A, M>::new(entity.clone()))
            .map_err(ShardingError::Spawn)?;
        Ok(forwarder.recipient())
    }
}

/// The reply to an ask that took the direct path: the home region's answer, decoded.
fn direct_reply<M: Message>(
    codec: RemoteCodec<M>,
    answer: Result<crate::wire::WireReply, AskError>,
) -> Result<M::Reply, AskError> {
    match answer {
        Ok(Ok(Bin(bytes))) => (codec.decode_reply)(&bytes)
            .map_err(|_| AskError::Remote(postbox::RemoteFailure::Undecodable)),
        Ok(Err(failure)) => Err(failure.into()),
        Err(error) => Err(error),
    }
}

impl<A: Entity> fmt::Debug for EntityRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityRef")
            .field("entity_type", &std::any::type_name::<A>())
            .field("id", &self.id)
            .finish()
    }
}

/// The inbound direct path: the transport's reader hands a told message for an entity
/// whose place is settled straight to it, and counts what goes to the region instead.
fn install_direct_hooks<A: Entity>(remote: &Remote, shared: &Arc<TypeShared<A>>) {
    let tells = shared.clone();
    remote.intercept::<Region<A>, Deliver>(move |region, payload, _| {
        tells
            .direct
            .deliver_inbound(region, payload, &tells.messages)
    });
    let asks = shared.clone();
    remote.intercept::<Region<A>, DeliverAsk>(move |_, payload, _| {
        asks.direct.count_inbound_ask(payload);
        Intercepted::Queue
    });
}

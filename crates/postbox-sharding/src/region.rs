//! The region: one actor per entity type per node, through which every message for the
//! type's entities passes on this node.
//!
//! A region knows the membership view (fed by a task, `ViewChanged`), computes where each
//! shard lives ([`Allocation`]), and for each message either delivers it to a local entity
//! (activating it), buffers it (its shard is being acquired or handed off), or forwards it
//! to the home's region. It is the only sender to its entities and the only one that stops
//! them, so passivation and hand-off never race a delivery.
//!
//! # Shard states here
//!
//! ```text
//!  (absent) ──home is here──► Acquiring ──every other region answered Free──► Active
//!      ▲                        │  (buffers)                                   │
//!      │                        └──home moved: buffer forwarded──► (absent)    │ home moved (view
//!      │                                                                       ▼ change, leave)
//!      └──────────── buffer forwarded to the new home, Nudge ◄── HandingOff (entities
//!                                                                 drain and stop; buffers)
//! ```
//!
//! *Acquire*: before a region activates a shard it asks every other region of the type on
//! a member that is not gone whether it holds the shard. A region answers `Held` while it
//! hosts the shard (starting its hand-off if the shard's home is now elsewhere) and `Free`
//! otherwise. A member that cannot be asked is waited for until it answers or membership
//! declares it down or gone. So while views agree a shard is active in at most one region;
//! while they disagree two regions may both activate it, and the persistence store's
//! single-writer check keeps the second from acknowledging a write.
//!
//! *Order*: a region delivers what it forwards and buffers in arrival order. After a
//! hand-off the old home forwards its buffer (marked `handed_off`) and tells the new home
//! how many it sent in its `Free` answer; the new home delivers those before what it
//! buffered itself. That keeps the order of everything the old home's region accepted. Two
//! more rules keep each sender's order when its own node's view changes in the middle:
//!
//! - *Fence.* A region remembers, per shard, the region it last sent this node's messages
//!   to (`sent_to`: by forwarding, or the direct route it opened). When the shard's home
//!   moves away from it, or one of the shard's messages comes back here (views disagreeing),
//!   this node's earlier messages may still be on the old way. The region then sends a
//!   fence the old way — after any direct send that read the old route — and holds this
//!   node's next messages of the shard (`fences`, bounded like any buffer) until the fence
//!   comes back. The fence travels as a message of the shard would (buffered, handed off,
//!   forwarded, parked) and is answered where it would be delivered, so everything sent
//!   before it is then ahead of what is released. A fence that does not come back within
//!   [`FENCE_TIMEOUT`] (its way lost with a node) releases them anyway: order across a node
//!   loss is best effort, as delivery is.
//! - *No loops.* A message sent here by another node as to the shard's home, while this
//!   region counts a third node or the sender as the home, is parked here in line instead
//!   of being sent on (`RegionCounts::bounced`): sent back, it would circle between regions
//!   whose views disagree, and later messages would pass it. It moves on when this view
//!   changes, when the home's acquire asks, or after a short wait. A leaving region, the
//!   home of nothing, sends everything on.

use crate::allocation::{shard_of, Candidate};
use crate::direct::{Direct, DirectEntity};
use crate::entity::{EntityMessages, EntityType};
use crate::parcel::{Ask, Delivery, Failed, Fence, Parcel, Tell};
use crate::remember::{self, RememberedSet, ShardMemory};
use crate::stats::{RegionCounters, RegionCounts, RegionSnapshot};
use crate::wire::{
    Acquire, AcquireAnswer, Deliver, DeliverAsk, DeliverAskDirect, DeliverDirect, Leaving, Nudge,
    WireReply,
};
use crate::Entity;
use postbox::{
    Actor, ActorId, ActorRef, BoxError, Context, Handler, Message, Props, ReplyTo, Restart,
    Terminated,
};
use postbox_cluster::{Cluster, Member, MemberStatus};
use postbox_remote::{Handlers, NodeAddr, Remote, RemoteActor, RemoteError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How many regions a message may pass through before it parks (views disagreeing about
/// its shard's home: what a region still sends on — a leaving region's forwards, a parked
/// message's retry — see *No loops* above).
const MAX_HOPS: u8 = 4;
/// How long an acquire waits for one region's answer, and a lookup of a region.
const ASK_REGION: Duration = Duration::from_secs(2);
/// How long a new home waits for the messages the old home handed off before it delivers
/// its own (they normally arrive with or before the `Free` answer).
const HANDED_WAIT: Duration = Duration::from_secs(1);
/// How soon parked messages are first routed again without a change of view, and the most
/// the wait grows to while they stay parked. A message parks after bouncing between regions
/// whose views disagreed; the region that parked it may have had the current view all
/// along, so no change of its own view is coming to send it on.
const PARKED_RETRY_FIRST: Duration = Duration::from_millis(50);
const PARKED_RETRY_MAX: Duration = Duration::from_secs(1);

/// How long a sender's fence may take before the region releases what it held anyway (the
/// old home lost, the fence lost with it): ordering is then best effort, as across any loss.
pub(crate) const FENCE_TIMEOUT: Duration = Duration::from_secs(5);

type Identity = (u64, u64);

fn identity(node: &NodeAddr) -> Identity {
    (node.node_id, node.incarnation)
}

/// What every region of one type on this node shares with the [`Sharding`](crate::Sharding)
/// handle.
pub(crate) struct TypeShared<A: Entity> {
    pub(crate) settings: EntityType<A>,
    pub(crate) messages: Arc<EntityMessages<A>>,
    pub(crate) remote: Remote,
    pub(crate) cluster: Cluster,
    pub(crate) counters: Arc<RegionCounters>,
    /// The name the region is registered under (`sharding/<type>`).
    pub(crate) registered_as: String,
    /// The direct paths past the regions, and what the region publishes for them.
    pub(crate) direct: Arc<Direct<A>>,
}

/// A message on its way, with its entity id.
pub(crate) struct Pending<A: Entity> {
    entity: Arc<str>,
    parcel: Box<dyn Parcel<A>>,
    handed_off: bool,
    /// Sent by an `EntityRef` of this node (not come from another region): what a fence of
    /// this region holds back (module docs, *Order*).
    local: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Home {
    Me,
    Node(usize),
    Nobody,
}

enum ShardState {
    Acquiring {
        /// An acquire round is out.
        in_flight: bool,
        /// A nudge came while it was out: go again at once if it fails.
        nudged: bool,
        attempts: u32,
        /// Handed-off messages announced by the `Free` answers (`None` until all answered).
        expected: Option<u64>,
        received: u64,
    },
    Active,
    HandingOff {
        remaining: usize,
    },
}

struct Slot<A: Entity> {
    actor: ActorRef<A>,
    last_used: Instant,
    /// Set by direct deliveries, which do not pass the region (see `direct.rs`).
    touched: Arc<AtomicBool>,
    /// In the inbound direct table.
    published: bool,
    stopping: bool,
    /// It stops for good (passivated, or it stopped on its own): no longer remembered.
    forget: bool,
    /// Messages that came while it was stopping (passivation), for its next instance.
    buffer: VecDeque<Pending<A>>,
}

struct Shard<A: Entity> {
    state: ShardState,
    epoch: u64,
    entities: HashMap<Arc<str>, Slot<A>>,
    buffer: VecDeque<Pending<A>>,
}

impl<A: Entity> Shard<A> {
    fn acquiring() -> Self {
        Shard {
            state: ShardState::Acquiring {
                in_flight: false,
                nudged: false,
                attempts: 0,
                expected: None,
                received: 0,
            },
            epoch: 0,
            entities: HashMap::new(),
            buffer: VecDeque::new(),
        }
    }
}

pub(crate) struct Region<A: Entity> {
    shared: Arc<TypeShared<A>>,
    me: NodeAddr,
    members: Vec<Member>,
    candidates: Vec<Candidate>,
    homes: Vec<Option<usize>>,
    my_index: Option<usize>,
    /// Members with the role other than this node, not gone: whom an acquire asks.
    peers: Vec<NodeAddr>,
    regions: HashMap<Identity, ActorRef<Region<A>>>,
    resolving: HashSet<Identity>,
    shards: HashMap<u32, Shard<A>>,
    by_actor: HashMap<ActorId, (u32, Arc<str>)>,
    /// Messages for shards with no reachable home yet.
    parked: HashMap<u32, VecDeque<Pending<A>>>,
    /// A [`RetryParked`] is scheduled.
    parked_retry: bool,
    /// The wait the next scheduled retry gets (doubles while messages stay parked).
    parked_backoff: Duration,
    /// Handed-off messages forwarded to a node per shard, announced in the next `Free`.
    handed: HashMap<(u32, Identity), u64>,
    active: usize,
    handing: usize,
    /// The most hand-offs at once so far (`RegionSnapshot::most_handing_off`).
    most_handing: usize,
    epoch: u64,
    leaving: bool,
    /// Members that told this region they are leaving: no longer homes.
    excluded: HashSet<Identity>,
    leave_waiters: Vec<ReplyTo<()>>,
    downed: bool,
    /// Entities delivered to in this handler, whose direct paths may open at its end.
    delivered: Vec<(u32, Arc<str>)>,
    /// Shards forwarded to their home in this handler, whose routes may open at its end.
    routes_to_open: Vec<u32>,
    /// Remembered entities of the active shards (remember entities on).
    memory: HashMap<u32, ShardMemory>,
    memory_generation: u64,
    /// By shard: the region this one last forwarded the shard's messages to.
    sent_to: Vec<Option<Identity>>,
    /// Shards whose messages wait here for a fence to come back (module docs, *Order*).
    fences: HashMap<u32, Fenced<A>>,
    next_fence: u64,
}

/// A shard's messages held while its fence is out.
struct Fenced<A: Entity> {
    token: u64,
    held: VecDeque<(Pending<A>, u8)>,
}

impl<A: Entity> Region<A> {
    pub(crate) fn new(shared: Arc<TypeShared<A>>) -> Self {
        let me = shared.cluster.node().clone();
        let shards = shared.settings.shards as usize;
        Region {
            shared,
            me,
            members: Vec::new(),
            candidates: Vec::new(),
            homes: Vec::new(),
            my_index: None,
            peers: Vec::new(),
            regions: HashMap::new(),
            resolving: HashSet::new(),
            shards: HashMap::new(),
            by_actor: HashMap::new(),
            parked: HashMap::new(),
            parked_retry: false,
            parked_backoff: PARKED_RETRY_FIRST,
            handed: HashMap::new(),
            active: 0,
            handing: 0,
            most_handing: 0,
            epoch: 0,
            leaving: false,
            excluded: HashSet::new(),
            leave_waiters: Vec::new(),
            downed: false,
            delivered: Vec::new(),
            routes_to_open: Vec::new(),
            memory: HashMap::new(),
            memory_generation: 0,
            sent_to: vec![None; shards],
            fences: HashMap::new(),
            next_fence: 0,
        }
    }

    fn home(&self, shard: u32) -> Home {
        match self.homes.get(shard as usize).copied().flatten() {
            None => Home::Nobody,
            Some(index) if Some(index) == self.my_index => Home::Me,
            Some(index) => Home::Node(index),
        }
    }

    fn settings(&self) -> &EntityType<A> {
        &self.shared.settings
    }

    fn fail(&self, ctx: &Context<Self>, parcel: Box<dyn Parcel<A>>, why: Failed) {
        self.shared.counters.add_dropped();
        parcel.fail(ctx.system(), ctx.id(), why);
    }

    fn buffered(&self) -> usize {
        let in_shards: usize = self
            .shards
            .values()
            .map(|s| s.buffer.len() + s.entities.values().map(|e| e.buffer.len()).sum::<usize>())
            .sum();
        in_shards
            + self.parked.values().map(VecDeque::len).sum::<usize>()
            + self.fences.values().map(|f| f.held.len()).sum::<usize>()
    }

    /// Routes one message: deliver here, buffer, or forward.
    async fn dispatch(&mut self, ctx: &mut Context<Self>, pending: Pending<A>, hops: u8) {
        if self.downed {
            return self.fail(ctx, pending.parcel, Failed::NodeDown);
        }
        let shard = shard_of(&pending.entity, self.settings().shards);
        let home = self.home(shard);
        let limit = self.settings().buffer;
        let max_handoffs = self.settings().max_handoffs;
        let pending = if pending.local {
            match self.hold(ctx, shard, pending, hops) {
                Some(pending) => pending,
                None => return,
            }
        } else {
            pending
        };
        if self.parked.get(&shard).is_some_and(|p| !p.is_empty()) {
            // The shard's parked messages go first, when they are routed again: this one
            // waits behind them rather than overtake them by a route found meanwhile.
            return self.park(ctx, shard, pending);
        }
        let pending = if pending.local {
            match self.fence_if_moved(ctx, shard, home, pending, hops) {
                Some(pending) => pending,
                None => return,
            }
        } else {
            pending
        };
        if let Some(state) = self.shards.get_mut(&shard) {
            match &mut state.state {
                ShardState::Active if home == Home::Me => {
                    return self.deliver_local(ctx, shard, pending).await;
                }
                ShardState::Active => {
                    if self.handing < max_handoffs || self.leaving {
                        state.buffer.push_back(pending);
                        if self.begin_handoff(shard) {
                            self.complete_handoff(ctx, shard).await;
                        }
                        return;
                    }
                    // Its turn to move has not come: it keeps serving here meanwhile.
                    return self.deliver_local(ctx, shard, pending).await;
                }
                ShardState::HandingOff { .. } => {
                    if state.buffer.len() >= limit {
                        return self.fail(ctx, pending.parcel, Failed::Unavailable);
                    }
                    state.buffer.push_back(pending);
                    return;
                }
                ShardState::Acquiring {
                    expected, received, ..
                } if home == Home::Me => {
                    if state.buffer.len() >= limit {
                        return self.fail(ctx, pending.parcel, Failed::Unavailable);
                    }
                    if pending.handed_off {
                        *received += 1;
                    }
                    let ready = expected.is_some_and(|e| *received >= e);
                    state.buffer.push_back(pending);
                    if ready {
                        self.activate_shard(ctx, shard).await;
                    }
                    return;
                }
                ShardState::Acquiring { .. } => {
                    self.abandon(ctx, shard).await;
                }
            }
        }
        match home {
            Home::Me => {
                let state = self.shards.entry(shard).or_insert_with(Shard::acquiring);
                state.buffer.push_back(pending);
                self.start_acquire(ctx, shard);
            }
            // Sent here by another node's region or `EntityRef` that counts this node as
            // the home, while this one counts another: the views disagree, and sending it
            // on could send it round in a loop, passed by later ones. It waits here in line
            // for this view to change, or for a short while (`RetryParked`). A leaving
            // region sends everything on: it is no one's home.
            Home::Node(_) if hops > 0 && !pending.local && !self.leaving => {
                self.shared.counters.add_bounced();
                self.park(ctx, shard, pending)
            }
            Home::Node(index) => self.forward(ctx, shard, index, pending, hops).await,
            Home::Nobody => self.park(ctx, shard, pending),
        }
    }

    /// Starts a fence when `shard`'s messages from this node would now go elsewhere than the
    /// region it last sent them to (see [`start_fence`](Self::start_fence)). `None`: `pending`
    /// is held.
    fn fence_if_moved(
        &mut self,
        ctx: &Context<Self>,
        shard: u32,
        home: Home,
        pending: Pending<A>,
        hops: u8,
    ) -> Option<Pending<A>> {
        let Some(old) = self.sent_to.get(shard as usize).copied().flatten() else {
            return Some(pending);
        };
        let moved = match home {
            Home::Me => true,
            Home::Node(index) => self.candidates.get(index).map(|c| identity(&c.node)) != Some(old),
            // Nowhere to go yet: it parks, and the question comes back when it has a home.
            Home::Nobody => false,
        };
        if !moved || !self.start_fence(ctx, shard, &pending.entity) {
            return Some(pending);
        }
        self.hold(ctx, shard, pending, hops)
    }

    /// Holds `pending` behind its shard's fence, if one is out (a full hold is a counted
    /// dead letter, as any full buffer); hands it back otherwise.
    fn hold(
        &mut self,
        ctx: &Context<Self>,
        shard: u32,
        pending: Pending<A>,
        hops: u8,
    ) -> Option<Pending<A>> {
        let limit = self.settings().buffer;
        let Some(fence) = self.fences.get_mut(&shard) else {
            return Some(pending);
        };
        if fence.held.len() >= limit {
            self.fail(ctx, pending.parcel, Failed::Unavailable);
        } else {
            fence.held.push_back((pending, hops));
        }
        None
    }

    /// Sends a fence after this node's messages of `shard` that may still be on their way
    /// to the region it last sent them to — because the shard's home moved, or because one
    /// of them came back here (views disagreeing) — and holds this node's next messages of
    /// the shard until it comes back ([`FenceDone`]) or [`FENCE_TIMEOUT`] passes. The fence
    /// goes the way they went, behind them and behind any direct send that read the old
    /// route, and is answered where it would be delivered: so what is released after it
    /// cannot overtake them. False if there is nothing to fence (no such region, or it is
    /// gone, and what was on the way with it).
    fn start_fence(&mut self, ctx: &Context<Self>, shard: u32, entity: &Arc<str>) -> bool {
        if self.fences.contains_key(&shard) {
            return true;
        }
        let Some(old) = self.sent_to.get_mut(shard as usize).and_then(Option::take) else {
            return false;
        };
        // Across a cut, or to a node on its way out of the cluster, a fence would only hold
        // this node's messages until its timeout: what went that way may be lost anyway
        // (at-most-once across a node loss).
        let reachable = self
            .members
            .iter()
            .any(|m| identity(&m.node) == old && m.status == MemberStatus::Up);
        let region = self.regions.get(&old).filter(|r| r.is_alive()).cloned();
        let Some(region) = region.filter(|_| reachable) else {
            return false;
        };
        // No direct send of the shard starts after this; those that read the route before
        // are waited for.
        self.shared.direct.clear_route(shard);
        self.next_fence += 1;
        let token = self.next_fence;
        let fence = Fence {
            region: ctx.myself().clone(),
            shard,
            token,
        };
        let drained = self.shared.direct.sends_drained(shard);
        let entity = entity.clone();
        // Sent from a task: nothing of this node's goes to that region for the shard
        // meanwhile (it is held here), so the fence is still behind all of it.
        tokio::spawn(async move {
            drained.await;
            fence.send(&entity, &region).await;
        });
        self.shared.counters.add_fence();
        self.fences.insert(
            shard,
            Fenced {
                token,
                held: VecDeque::new(),
            },
        );
        Self::schedule(ctx, FENCE_TIMEOUT, FenceDone { shard, token });
        true
    }

    fn park(&mut self, ctx: &Context<Self>, shard: u32, pending: Pending<A>) {
        // Later messages of the shard must not pass this one by the direct path.
        self.shared.direct.clear_route(shard);
        let limit = self.settings().buffer;
        // This node's earlier messages of the shard may be on their way back here behind
        // it (views disagreeing): its own wait behind a fence, which comes back with them.
        let pending = if self.start_fence(ctx, shard, &pending.entity) && pending.local {
            match self.hold(ctx, shard, pending, 0) {
                Some(pending) => pending,
                None => return,
            }
        } else {
            pending
        };
        let parked = self.parked.entry(shard).or_default();
        if parked.len() >= limit {
            return self.fail(ctx, pending.parcel, Failed::Unavailable);
        }
        parked.push_back(pending);
        if !self.parked_retry {
            let after = self.parked_backoff;
            self.parked_retry = true;
            self.parked_backoff = (after * 2).min(PARKED_RETRY_MAX);
            Self::schedule(ctx, after, RetryParked);
        }
    }

    async fn forward(
        &mut self,
        ctx: &mut Context<Self>,
        shard: u32,
        index: usize,
        pending: Pending<A>,
        hops: u8,
    ) {
        if hops >= MAX_HOPS {
            // Regions disagree on the shard's home (one has not yet seen a member leave, say):
            // the message waits here for the next change of view, bounded like any parked one.
            tracing::debug!(entity = %pending.entity, shard, "regions disagree on the shard's home: message parked");
            self.shared.counters.add_bounced();
            return self.park(ctx, shard, pending);
        }
        let Some(node) = self.candidates.get(index).map(|c| c.node.clone()) else {
            return self.park(ctx, shard, pending);
        };
        let id = identity(&node);
        let region = self.regions.get(&id).filter(|r| r.is_alive()).cloned();
        let Some(region) = region else {
            self.regions.remove(&id);
            self.park(ctx, shard, pending);
            self.resolve(ctx, node);
            return;
        };
        let handed_off = pending.handed_off;
        let local = pending.local;
        match pending
            .parcel
            .forward(&pending.entity, &region, hops + 1, handed_off)
        {
            Ok(sending) => {
                sending.await;
                if local {
                    if let Some(sent_to) = self.sent_to.get_mut(shard as usize) {
                        *sent_to = Some(id);
                    }
                }
                if !self.shared.direct.has_route(shard) {
                    self.routes_to_open.push(shard);
                }
                if handed_off {
                    *self.handed.entry((shard, id)).or_default() += 1;
                }
            }
            Err((parcel, why)) => self.fail(ctx, parcel, why),
        }
    }

    /// Looks the region of `node` up in the background, until found or the node is gone.
    fn resolve(&mut self, ctx: &Context<Self>, node: NodeAddr) {
        if !self.resolving.insert(identity(&node)) {
            return;
        }
        let myself = ctx.myself().clone();
        let remote = self.shared.remote.clone();
        let cluster = self.shared.cluster.clone();
        let name = self.shared.registered_as.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(20);
            loop {
                let found =
                    tokio::time::timeout(ASK_REGION, remote.lookup_node::<Region<A>>(&node, &name))
                        .await;
                if let Ok(Ok(region)) = found {
                    let _ = myself
                        .tell(Resolved {
                            node,
                            region: Some(region),
                        })
                        .await;
                    return;
                }
                if gone(&cluster, &node) || !myself.is_alive() {
                    let _ = myself.tell(Resolved { node, region: None }).await;
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        });
    }

    async fn deliver_local(&mut self, ctx: &mut Context<Self>, shard: u32, pending: Pending<A>) {
        if pending.parcel.is_fence() {
            // Everything ahead of it on its way is in its entities' mailboxes, or buffered here
            // ahead of what comes next.
            return pending.parcel.answer_fence();
        }
        let limit = self.settings().buffer;
        let exists = self
            .shards
            .get(&shard)
            .is_some_and(|s| s.entities.contains_key(&pending.entity));
        if !exists {
            if let Err(error) = self.activate(ctx, shard, pending.entity.clone()) {
                tracing::warn!(entity = %pending.entity, %error, "entity could not be started");
                return self.fail(ctx, pending.parcel, Failed::Unavailable);
            }
        }
        let Some(slot) = self
            .shards
            .get_mut(&shard)
            .and_then(|s| s.entities.get_mut(&pending.entity))
        else {
            return self.fail(ctx, pending.parcel, Failed::Unavailable);
        };
        if slot.stopping {
            if slot.buffer.len() >= limit {
                return self.fail(ctx, pending.parcel, Failed::Unavailable);
            }
            slot.buffer.push_back(pending);
            return;
        }
        slot.last_used = Instant::now();
        let actor = slot.actor.clone();
        // Its inbound direct path may open once this handler is done (`open_direct_paths`).
        let published = slot.published;
        match pending.parcel.deliver(&actor) {
            Delivery::Done if !published => {
                self.delivered.push((shard, pending.entity.clone()));
            }
            Delivery::Done => {}
            Delivery::Wait(waiting) => {
                waiting.await;
                if !published {
                    self.delivered.push((shard, pending.entity.clone()));
                }
            }
            Delivery::Closed(parcel) => {
                // It stopped on its own (a persistence conflict, say): its `Terminated` is on
                // the way, and starts a new instance for this message.
                if let Some(slot) = self
                    .shards
                    .get_mut(&shard)
                    .and_then(|s| s.entities.get_mut(&pending.entity))
                {
                    if slot.published {
                        slot.published = false;
                        self.shared.direct.unpublish(&pending.entity);
                    }
                    slot.stopping = true;
                    slot.forget = true;
                    slot.buffer.push_back(Pending {
                        entity: pending.entity,
                        parcel,
                        handed_off: false,
                        local: pending.local,
                    });
                }
            }
        }
    }

    /// Opens the direct paths this handler's deliveries and forwards allow: inbound to the
    /// entities it delivered to, outbound to the homes it forwarded to. Only between
    /// handlers: in the middle of one, messages of the same entity or shard may still wait
    /// in a local list (a buffer being delivered or forwarded), and a direct message would
    /// pass them. Closing a path, by contrast, is done at once.
    fn open_direct_paths(&mut self) {
        for (shard, entity) in std::mem::take(&mut self.delivered) {
            self.publish(shard, &entity);
        }
        for shard in std::mem::take(&mut self.routes_to_open) {
            // Still forwarded there by the view of now, and nothing of it held here (parked,
            // or buffered in a shard state of its own).
            let Home::Node(index) = self.home(shard) else {
                continue;
            };
            if self.shards.contains_key(&shard)
                || self.fences.contains_key(&shard)
                || self.parked.get(&shard).is_some_and(|p| !p.is_empty())
            {
                continue;
            }
            let Some(id) = self.candidates.get(index).map(|c| identity(&c.node)) else {
                continue;
            };
            if let Some(region) = self.regions.get(&id).filter(|r| r.is_alive()) {
                self.shared.direct.set_route(shard, region);
                // This node's messages of the shard now go there directly.
                if let Some(sent_to) = self.sent_to.get_mut(shard as usize) {
                    *sent_to = Some(id);
                }
            }
        }
    }

    /// Opens the inbound direct path to `entity` if its place is settled: its shard is
    /// active and at home here, it is not stopping and nothing of it is buffered.
    fn publish(&mut self, shard: u32, entity: &Arc<str>) {
        let home = self.home(shard);
        let Some(state) = self.shards.get_mut(&shard) else {
            return;
        };
        if !matches!(state.state, ShardState::Active) || home != Home::Me {
            return;
        }
        let Some(slot) = state.entities.get_mut(entity) else {
            return;
        };
        if slot.published || slot.stopping || !slot.buffer.is_empty() {
            return;
        }
        slot.published = true;
        self.shared.direct.publish(DirectEntity {
            id: entity.clone(),
            actor: slot.actor.clone(),
            touched: slot.touched.clone(),
        });
    }

    fn activate(
        &mut self,
        ctx: &mut Context<Self>,
        shard: u32,
        entity: Arc<str>,
    ) -> Result<(), postbox::SpawnError> {
        if self.active >= self.settings().max_active {
            self.passivate_least_recent();
        }
        let factory = self.shared.settings.factory.clone();
        let id = entity.clone();
        let mut props = Props::new(move || factory(&id)).restart(Restart::Transient);
        if let Some(mailbox) = self.settings().mailbox {
            props = props.mailbox(mailbox);
        }
        let actor = ctx.spawn(props)?;
        ctx.watch(&actor);
        self.by_actor.insert(actor.id(), (shard, entity.clone()));
        self.active += 1;
        self.shared.counters.add_activation();
        if let Some(state) = self.shards.get_mut(&shard) {
            state.entities.insert(
                entity.clone(),
                Slot {
                    actor,
                    last_used: Instant::now(),
                    touched: Arc::new(AtomicBool::new(false)),
                    published: false,
                    stopping: false,
                    forget: false,
                    buffer: VecDeque::new(),
                },
            );
        }
        self.note_memory(ctx, shard, entity, true);
        Ok(())
    }

    /// Notes that `entity` of `shard` started (`true`) or stopped for good, to be written
    /// in the background (remember entities).
    fn note_memory(&mut self, ctx: &Context<Self>, shard: u32, entity: Arc<str>, remembered: bool) {
        let bound = self.settings().max_active;
        let Some(memory) = self.memory.get_mut(&shard) else {
            return;
        };
        if !memory.note(entity.clone(), remembered, bound) {
            self.shared.counters.add_remember_failure();
            tracing::warn!(%entity, shard, "too many remembered-entity changes wait for the store: this one is not recorded");
        }
        self.write_memory(ctx, shard);
    }

    /// Starts the shard's next write of its remembered set, if one is due.
    fn write_memory(&mut self, ctx: &Context<Self>, shard: u32) {
        let Some(persistence) = self.settings().remember.clone() else {
            return;
        };
        let Some(memory) = self.memory.get_mut(&shard) else {
            return;
        };
        let Some((revision, record)) = memory.next_write() else {
            return;
        };
        let generation = memory.generation;
        let id = remember::persistence_id(&self.settings().name, shard);
        let myself = ctx.myself().clone();
        tokio::spawn(async move {
            let result = persistence
                .state_store()
                .save_state(&id, revision, record)
                .await;
            let _ = myself
                .tell(RememberWritten {
                    shard,
                    generation,
                    result,
                })
                .await;
        });
    }

    /// Reads the shard's remembered set in the background.
    fn load_memory(&self, ctx: &Context<Self>, shard: u32) {
        let Some(persistence) = self.settings().remember.clone() else {
            return;
        };
        let Some(generation) = self.memory.get(&shard).map(|m| m.generation) else {
            return;
        };
        let id = remember::persistence_id(&self.settings().name, shard);
        let myself = ctx.myself().clone();
        tokio::spawn(async move {
            let result = match persistence.state_store().load_state(&id).await {
                Ok(None) => Ok((0, Vec::new())),
                Ok(Some(stored)) => match stored.record {
                    None => Ok((stored.revision, Vec::new())),
                    Some(record) => match record.decode::<RememberedSet>() {
                        Ok(set) => Ok((stored.revision, set.entities)),
                        // Unreadable: start from an empty set (the next write replaces it)
                        // rather than never remember again.
                        Err(error) => Err((stored.revision, error.to_string())),
                    },
                },
                Err(error) => Err((u64::MAX, error.to_string())),
            };
            let _ = myself
                .tell(RememberLoaded {
                    shard,
                    generation,
                    result,
                })
                .await;
        });
    }

    /// Starts remembered entities of `shard` that are not running, while there is room
    /// under `max_active`.
    fn start_remembered(&mut self, ctx: &mut Context<Self>, shard: u32, ids: Vec<Arc<str>>) {
        let max = self.settings().max_active;
        let mut deferred = 0usize;
        for id in ids {
            let running = self
                .shards
                .get(&shard)
                .is_some_and(|s| s.entities.contains_key(&id));
            if running {
                continue;
            }
            if self.active >= max {
                deferred += 1;
                continue;
            }
            match self.activate(ctx, shard, id.clone()) {
                Ok(()) => self.shared.counters.add_remembered_start(),
                Err(error) => {
                    tracing::warn!(entity = %id, %error, "remembered entity could not be started");
                }
            }
        }
        if deferred > 0 {
            tracing::info!(
                shard,
                deferred,
                max_active = max,
                "remembered entities not started: this node is at max_active; they start on their first message"
            );
        }
    }

    /// A hand-off that waited for the shard's remembered set to be written completes.
    async fn memory_settled(&mut self, ctx: &mut Context<Self>, shard: u32) {
        let waiting = self
            .memory
            .get(&shard)
            .is_some_and(|m| m.handoff_waiting && m.settled());
        let drained = self
            .shards
            .get(&shard)
            .is_some_and(|s| matches!(s.state, ShardState::HandingOff { remaining: 0 }));
        if waiting && drained && self.complete_handoff(ctx, shard).await {
            self.rebalance(ctx).await;
        }
    }

    /// Schedules the next try of `shard`'s remembered set after the store failed
    /// `memory.failures` times in a row (100 ms, doubling, at most 5 s); returns the wait.
    fn retry_memory(ctx: &Context<Self>, shard: u32, memory: &mut ShardMemory) -> Duration {
        let after =
            Duration::from_millis(100u64 << memory.failures.min(6)).min(Duration::from_secs(5));
        memory.retry_scheduled = true;
        let generation = memory.generation;
        Self::schedule(ctx, after, RememberRetry { shard, generation });
        after
    }

    fn passivate_least_recent(&mut self) {
        let now = Instant::now();
        let oldest = self
            .shards
            .values_mut()
            .filter(|s| matches!(s.state, ShardState::Active))
            .flat_map(|s| s.entities.iter_mut())
            .filter(|(_, slot)| !slot.stopping)
            .map(|(id, slot)| {
                if slot.touched.swap(false, Relaxed) {
                    slot.last_used = now;
                }
                (id, slot)
            })
            .min_by_key(|(_, slot)| slot.last_used);
        if let Some((id, slot)) = oldest {
            slot.forget = true;
            stop_slot(&self.shared.direct, id, slot);
            self.shared.counters.add_passivation();
        }
    }

    fn passivate_idle(&mut self, idle: Duration) {
        let now = Instant::now();
        let eager = &self.shared.settings.eager;
        for state in self.shards.values_mut() {
            if !matches!(state.state, ShardState::Active) {
                continue;
            }
            for (id, slot) in &mut state.entities {
                if slot.touched.swap(false, Relaxed) {
                    slot.last_used = now;
                }
                if !slot.stopping
                    && now.duration_since(slot.last_used) >= idle
                    && !eager.iter().any(|e| **e == **id)
                {
                    slot.forget = true;
                    stop_slot(&self.shared.direct, id, slot);
                    self.shared.counters.add_passivation();
                }
            }
        }
    }

    /// Asks every other region whether it holds `shard` (in the background).
    fn start_acquire(&mut self, ctx: &Context<Self>, shard: u32) {
        self.epoch += 1;
        let epoch = self.epoch;
        let Some(state) = self.shards.get_mut(&shard) else {
            return;
        };
        let ShardState::Acquiring {
            in_flight, nudged, ..
        } = &mut state.state
        else {
            return;
        };
        *in_flight = true;
        *nudged = false;
        state.epoch = epoch;
        let peers: Vec<(NodeAddr, Option<ActorRef<Region<A>>>)> = self
            .peers
            .iter()
            .map(|peer| {
                let cached = self
                    .regions
                    .get(&identity(peer))
                    .filter(|r| r.is_alive())
                    .cloned();
                (peer.clone(), cached)
            })
            .collect();
        let myself = ctx.myself().clone();
        let remote = self.shared.remote.clone();
        let cluster = self.shared.cluster.clone();
        let name = self.shared.registered_as.clone();
        let from = identity(&self.me);
        tokio::spawn(async move {
            let mut asks = tokio::task::JoinSet::new();
            for (peer, cached) in peers {
                let remote = remote.clone();
                let cluster = cluster.clone();
                let name = name.clone();
                asks.spawn(async move {
                    ask_to_acquire(&remote, &cluster, &name, peer, cached, shard, from).await
                });
            }
            let mut handed = 0;
            let mut free = true;
            while let Some(answer) = asks.join_next().await {
                match answer {
                    Ok(Some(count)) => handed += count,
                    _ => free = false,
                }
            }
            let outcome = free.then_some(handed);
            let _ = myself
                .tell(Acquired {
                    shard,
                    epoch,
                    outcome,
                })
                .await;
        });
    }

    /// The shard is ours: deliver what waited (handed-off messages first), start eager
    /// entities.
    async fn activate_shard(&mut self, ctx: &mut Context<Self>, shard: u32) {
        let Some(state) = self.shards.get_mut(&shard) else {
            return;
        };
        state.state = ShardState::Active;
        let waiting = std::mem::take(&mut state.buffer);
        if self.settings().remember.is_some() {
            // Read before the waiting messages start entities, so that their starts are noted.
            self.memory_generation += 1;
            self.memory
                .insert(shard, ShardMemory::new(self.memory_generation));
            self.load_memory(ctx, shard);
        }
        let (handed, own): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|p| p.handed_off);
        for pending in handed.into_iter().chain(own) {
            self.deliver_local(ctx, shard, pending).await;
        }
        let shards = self.settings().shards;
        let eager: Vec<Arc<str>> = self
            .settings()
            .eager
            .iter()
            .filter(|id| shard_of(id, shards) == shard)
            .map(|id| Arc::from(id.as_str()))
            .collect();
        for id in eager {
            let active = self
                .shards
                .get(&shard)
                .is_some_and(|s| s.entities.contains_key(&id));
            if !active {
                if let Err(error) = self.activate(ctx, shard, id.clone()) {
                    tracing::warn!(entity = %id, %error, "eager entity could not be started");
                }
            }
        }
    }

    /// Gives up acquiring `shard` (its home moved): what it buffered goes to the new home.
    async fn abandon(&mut self, ctx: &mut Context<Self>, shard: u32) {
        let Some(state) = self.shards.remove(&shard) else {
            return;
        };
        for pending in state.buffer {
            self.send_away(ctx, shard, pending).await;
        }
    }

    /// Sends a message of a shard this region does not host to the shard's home (or parks
    /// it); if the home is this region after all, it waits for the shard to be acquired.
    async fn send_away(&mut self, ctx: &mut Context<Self>, shard: u32, pending: Pending<A>) {
        match self.home(shard) {
            Home::Node(index) => self.forward(ctx, shard, index, pending, 0).await,
            Home::Nobody => self.park(ctx, shard, pending),
            Home::Me => {
                let fresh = !self.shards.contains_key(&shard);
                let state = self.shards.entry(shard).or_insert_with(Shard::acquiring);
                state.buffer.push_back(pending);
                if fresh {
                    self.start_acquire(ctx, shard);
                }
            }
        }
    }

    /// Starts handing `shard` off: its entities drain and stop. True if it has none, so the
    /// hand-off can complete at once.
    fn begin_handoff(&mut self, shard: u32) -> bool {
        let Some(state) = self.shards.get_mut(&shard) else {
            return false;
        };
        if !matches!(state.state, ShardState::Active) {
            return false;
        }
        for (id, slot) in &mut state.entities {
            if !slot.stopping {
                stop_slot(&self.shared.direct, id, slot);
            }
        }
        state.state = ShardState::HandingOff {
            remaining: state.entities.len(),
        };
        self.handing += 1;
        self.most_handing = self.most_handing.max(self.handing);
        state.entities.is_empty()
    }

    /// Every entity of `shard` stopped: once its remembered set is written, forward what it
    /// buffered to the new home (marked handed off), then nudge the new home. False if it
    /// waits for the store.
    async fn complete_handoff(&mut self, ctx: &mut Context<Self>, shard: u32) -> bool {
        if let Some(memory) = self.memory.get_mut(&shard) {
            if !memory.settled() {
                memory.handoff_waiting = true;
                return false;
            }
            if memory.unwritten() > 0 || memory.writing() {
                self.shared.counters.add_remember_failure();
                tracing::warn!(
                    shard,
                    unwritten = memory.unwritten(),
                    "shard handed off with remembered-entity changes its failing store did not take"
                );
            }
        }
        self.memory.remove(&shard);
        let Some(state) = self.shards.remove(&shard) else {
            return true;
        };
        self.handing = self.handing.saturating_sub(1);
        self.shared.counters.add_handoff();
        for mut pending in state.buffer {
            pending.handed_off = true;
            self.send_away(ctx, shard, pending).await;
        }
        if let Home::Node(index) = self.home(shard) {
            if let Some(region) = self
                .candidates
                .get(index)
                .and_then(|c| self.regions.get(&identity(&c.node)))
            {
                let _ = region.tell(Nudge { shard }).await;
            }
        }
        true
    }

    /// Starts hand-offs of the shards whose home is elsewhere, a bounded number at a time.
    async fn rebalance(&mut self, ctx: &mut Context<Self>) {
        let max = self.settings().max_handoffs;
        loop {
            let moving: Vec<u32> = self
                .shards
                .iter()
                .filter(|(_, s)| matches!(s.state, ShardState::Active))
                .map(|(shard, _)| *shard)
                .filter(|shard| self.home(*shard) != Home::Me)
                .collect();
            let mut completed = false;
            for shard in moving {
                if self.handing >= max {
                    break;
                }
                if self.begin_handoff(shard) && self.complete_handoff(ctx, shard).await {
                    completed = true;
                }
            }
            if !completed {
                break;
            }
        }
        self.check_left();
    }

    fn check_left(&mut self) {
        if self.leaving && self.shards.is_empty() {
            for waiter in self.leave_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn schedule<M>(ctx: &Context<Self>, after: Duration, msg: M)
    where
        M: Message,
        Self: Handler<M>,
    {
        let myself = ctx.myself().clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = myself.tell(msg).await;
        });
    }

    async fn apply_view(&mut self, ctx: &mut Context<Self>, members: Vec<Member>) {
        // Homes may move: direct sends go through the region again until it forwards.
        self.shared.direct.clear_routes();
        let role = self.shared.settings.role.clone();
        let with_role = |m: &Member| role.as_deref().is_none_or(|r| m.has_role(r));
        self.candidates = members
            .iter()
            .filter(|m| matches!(m.status, MemberStatus::Up | MemberStatus::Unreachable))
            .filter(|m| with_role(m))
            .filter(|m| !(self.leaving && m.node == self.me))
            .filter(|m| !self.excluded.contains(&identity(&m.node)))
            .map(|m| Candidate {
                node: m.node.clone(),
                depth: m.load.total_depth,
            })
            .collect();
        self.peers = members
            .iter()
            .filter(|m| with_role(m) && m.node != self.me)
            .map(|m| m.node.clone())
            .collect();
        self.members = members;
        self.my_index = self.candidates.iter().position(|c| c.node == self.me);
        self.homes = self
            .settings()
            .allocation
            .allocate(self.settings().shards, &self.candidates);
        let peers: HashSet<Identity> = self.peers.iter().map(identity).collect();
        self.excluded.retain(|id| peers.contains(id));
        self.regions
            .retain(|id, region| peers.contains(id) && region.is_alive());
        self.handed.retain(|(_, id), _| peers.contains(id));
        for node in self
            .candidates
            .iter()
            .map(|c| c.node.clone())
            .collect::<Vec<_>>()
        {
            if node != self.me && !self.regions.contains_key(&identity(&node)) {
                self.resolve(ctx, node);
            }
        }
        // Acquisitions: give up those whose home moved, retry the others now.
        let acquiring: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, s)| matches!(s.state, ShardState::Acquiring { .. }))
            .map(|(shard, _)| *shard)
            .collect();
        for shard in acquiring {
            if self.home(shard) != Home::Me {
                self.abandon(ctx, shard).await;
            } else if let Some(Shard {
                state:
                    ShardState::Acquiring {
                        in_flight, nudged, ..
                    },
                ..
            }) = self.shards.get_mut(&shard)
            {
                if *in_flight {
                    *nudged = true;
                } else {
                    self.start_acquire(ctx, shard);
                }
            }
        }
        self.rebalance(ctx).await;
        self.flush_parked(ctx).await;
        self.start_eager(ctx);
        self.check_left();
    }

    fn start_eager(&mut self, ctx: &Context<Self>) {
        if self.leaving || self.downed {
            return;
        }
        let shards = self.settings().shards;
        let eager: Vec<u32> = if self.settings().remember.is_some() {
            // Any shard may have remembered entities: each is acquired when placed here.
            (0..shards).collect()
        } else {
            self.settings()
                .eager
                .iter()
                .map(|id| shard_of(id, shards))
                .collect()
        };
        for shard in eager {
            if self.home(shard) == Home::Me && !self.shards.contains_key(&shard) {
                self.shards.insert(shard, Shard::acquiring());
                self.start_acquire(ctx, shard);
            }
        }
    }

    async fn flush_parked(&mut self, ctx: &mut Context<Self>) {
        let mut shards: Vec<u32> = self.parked.keys().copied().collect();
        shards.sort_unstable();
        for shard in shards {
            self.flush_parked_shard(ctx, shard).await;
        }
    }

    /// Routes again, by the current view, what waits for `shard`: its hop count starts over
    /// (the view it bounced on is gone).
    async fn flush_parked_shard(&mut self, ctx: &mut Context<Self>, shard: u32) {
        let Some(messages) = self.parked.remove(&shard) else {
            return;
        };
        for pending in messages {
            self.dispatch(ctx, pending, 0).await;
        }
    }

    fn stop_hosting(&mut self, ctx: &Context<Self>) {
        self.shared.direct.clear_inbound();
        self.shared.direct.clear_routes();
        for (_, state) in self.shards.drain() {
            for (_, slot) in state.entities {
                slot.actor.stop();
                for pending in slot.buffer {
                    self.shared.counters.add_dropped();
                    pending
                        .parcel
                        .fail(ctx.system(), ctx.id(), Failed::NodeDown);
                }
            }
            for pending in state.buffer {
                self.shared.counters.add_dropped();
                pending
                    .parcel
                    .fail(ctx.system(), ctx.id(), Failed::NodeDown);
            }
        }
        for (_, messages) in self.parked.drain() {
            for pending in messages {
                self.shared.counters.add_dropped();
                pending
                    .parcel
                    .fail(ctx.system(), ctx.id(), Failed::NodeDown);
            }
        }
        // A downed node writes nothing: what it hosted stays remembered for the next homes.
        self.memory.clear();
        self.by_actor.clear();
        self.active = 0;
        self.handing = 0;
    }

    fn snapshot(&self) -> RegionSnapshot {
        let mut shards: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, s)| matches!(s.state, ShardState::Active | ShardState::HandingOff { .. }))
            .map(|(shard, _)| *shard)
            .collect();
        shards.sort_unstable();
        RegionSnapshot {
            node: self.me.clone(),
            entity_type: self.settings().name.clone(),
            shards,
            allocated: match self.my_index {
                Some(mine) => self.homes.iter().filter(|h| **h == Some(mine)).count(),
                None => 0,
            },
            entities: self.active,
            remembered: self.memory.values().map(ShardMemory::remembered).sum(),
            buffered: self.buffered(),
            handing_off: self.handing,
            most_handing_off: self.most_handing,
            acquiring: self
                .shards
                .values()
                .filter(|s| matches!(s.state, ShardState::Acquiring { .. }))
                .count(),
            counters: RegionCounts {
                direct: self.shared.direct.delivered(),
                ..self.shared.counters.read()
            },
        }
    }
}

/// Stops an entity (drain: it handles what is queued), closing its direct path first.
fn stop_slot<A: Entity>(direct: &Direct<A>, id: &str, slot: &mut Slot<A>) {
    if slot.published {
        slot.published = false;
        direct.unpublish(id);
    }
    slot.stopping = true;
    slot.actor.drain_and_stop();
}

/// One region's answer to an acquire: `Some(handed)` if free, `None` to try again.
async fn ask_to_acquire<A: Entity>(
    remote: &Remote,
    cluster: &Cluster,
    name: &str,
    peer: NodeAddr,
    cached: Option<ActorRef<Region<A>>>,
    shard: u32,
    from: Identity,
) -> Option<u64> {
    let region = match cached {
        Some(region) => region,
        None => {
            match tokio::time::timeout(ASK_REGION, remote.lookup_node::<Region<A>>(&peer, name))
                .await
            {
                Ok(Ok(region)) => region,
                // No region of the type there: it hosts nothing.
                Ok(Err(RemoteError::NotFound(_))) => return Some(0),
                _ => return gone(cluster, &peer).then_some(0),
            }
        }
    };
    match region
        .ask(Acquire { shard, from })
        .timeout(ASK_REGION)
        .await
    {
        Ok(AcquireAnswer::Free { handed }) => Some(handed),
        Ok(AcquireAnswer::Held) => None,
        Err(_) => gone(cluster, &peer).then_some(0),
    }
}

/// Whether `node` is no longer a member (down or left): it hosts nothing any more.
fn gone(cluster: &Cluster, node: &NodeAddr) -> bool {
    !cluster.members().iter().any(|m| m.node == *node)
}

impl<A: Entity> Actor for Region<A> {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        // A restarted region starts from nothing: so do the direct paths.
        self.shared.direct.clear_inbound();
        self.shared.direct.clear_routes();
        let members = self.shared.cluster.members_by_age();
        self.apply_view(ctx, members).await;
        Ok(())
    }
}

impl<A: Entity> RemoteActor for Region<A> {
    fn register(handlers: &mut Handlers<Self>) {
        handlers.handle::<Deliver>();
        handlers.handle::<DeliverAsk>();
        handlers.handle::<Acquire>();
        handlers.handle::<Nudge>();
        handlers.handle::<Leaving>();
    }
}

/// A told message from this node's [`EntityRef`](crate::EntityRef).
pub(crate) struct Route<M> {
    pub(crate) entity: Arc<str>,
    pub(crate) msg: M,
}

impl<M: Message> Message for Route<M> {
    type Reply = ();
}

impl<A, M> Handler<Route<M>> for Region<A>
where
    A: Entity + Handler<M>,
    M: Message,
{
    async fn handle(&mut self, route: Route<M>, ctx: &mut Context<Self>) {
        let shard = self.shared.direct.shard_of(&route.entity);
        let pending = Pending {
            entity: route.entity,
            parcel: Box::new(Tell(route.msg)),
            handed_off: false,
            local: true,
        };
        self.dispatch(ctx, pending, 0).await;
        self.open_direct_paths();
        self.shared.direct.outbound_queued.leave(shard);
    }
}

/// A told message sent by an `EntityRef` of another node straight to this region (see
/// `direct.rs`). It arrives as a [`Deliver`] (the same bytes); this handler serves a
/// reference that happens to be local.
impl<A, M> Handler<DeliverDirect<M>> for Region<A>
where
    A: Entity + Handler<M>,
    M: Message,
{
    async fn handle(&mut self, direct: DeliverDirect<M>, ctx: &mut Context<Self>) {
        let pending = Pending {
            entity: Arc::clone(&direct.entity),
            parcel: Box::new(Tell(direct.msg)),
            handed_off: false,
            local: true,
        };
        self.dispatch(ctx, pending, 1).await;
        self.open_direct_paths();
    }
}

/// An asked message from this node's [`EntityRef`](crate::EntityRef).
pub(crate) struct RouteAsk<M: Message> {
    pub(crate) entity: Arc<str>,
    pub(crate) msg: M,
    pub(crate) reply: oneshot::Sender<crate::parcel::ReplyFuture<M::Reply>>,
}

impl<M: Message> Message for RouteAsk<M> {
    type Reply = ();
}

impl<A, M> Handler<RouteAsk<M>> for Region<A>
where
    A: Entity + Handler<M>,
    M: Message,
{
    async fn handle(&mut self, route: RouteAsk<M>, ctx: &mut Context<Self>) {
        let shard = self.shared.direct.shard_of(&route.entity);
        let pending = Pending {
            entity: route.entity,
            parcel: Box::new(Ask {
                msg: route.msg,
                reply: route.reply,
            }),
            handed_off: false,
            local: true,
        };
        self.dispatch(ctx, pending, 0).await;
        self.open_direct_paths();
        self.shared.direct.outbound_queued.leave(shard);
    }
}

impl<A: Entity> Handler<Deliver> for Region<A> {
    async fn handle(&mut self, Deliver(envelope): Deliver, ctx: &mut Context<Self>) {
        let hops = envelope.hops;
        let shard = self.shared.direct.shard_of(&envelope.entity);
        let pending = Pending {
            entity: Arc::from(envelope.entity.as_str()),
            handed_off: envelope.handed_off,
            parcel: Box::new(crate::parcel::Wire {
                envelope,
                reply: None,
                messages: self.shared.messages.clone(),
            }),
            local: false,
        };
        self.dispatch(ctx, pending, hops).await;
        self.open_direct_paths();
        self.shared.direct.inbound_queued.leave(shard);
    }
}

impl<A: Entity> Handler<DeliverAsk> for Region<A> {
    async fn handle(&mut self, _: DeliverAsk, _: &mut Context<Self>) -> WireReply {
        // Never called: `handle_reply` below takes the reply along.
        Err(crate::wire::WireFailure::NoReply)
    }

    async fn handle_reply(
        &mut self,
        DeliverAsk(envelope): DeliverAsk,
        reply: Option<ReplyTo<WireReply>>,
        ctx: &mut Context<Self>,
    ) {
        let hops = envelope.hops;
        let shard = self.shared.direct.shard_of(&envelope.entity);
        let pending = Pending {
            entity: Arc::from(envelope.entity.as_str()),
            handed_off: envelope.handed_off,
            parcel: Box::new(crate::parcel::Wire {
                envelope,
                reply,
                messages: self.shared.messages.clone(),
            }),
            local: false,
        };
        self.dispatch(ctx, pending, hops).await;
        self.open_direct_paths();
        self.shared.direct.inbound_queued.leave(shard);
    }
}

/// An asked message sent by an `EntityRef` of another node straight to this region (see
/// `direct.rs`). It arrives as a [`DeliverAsk`] (the same bytes); this handler serves a
/// reference that happens to be local, by the same path.
impl<A, M> Handler<DeliverAskDirect<M>> for Region<A>
where
    A: Entity + Handler<M>,
    M: Message,
{
    async fn handle(&mut self, _: DeliverAskDirect<M>, _: &mut Context<Self>) -> WireReply {
        // Never called: `handle_reply` below takes the reply along.
        Err(crate::wire::WireFailure::NoReply)
    }

    async fn handle_reply(
        &mut self,
        direct: DeliverAskDirect<M>,
        reply: Option<ReplyTo<WireReply>>,
        ctx: &mut Context<Self>,
    ) {
        let Some(codec) = M::remote() else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(crate::wire::WireFailure::NotRemotable));
            }
            return;
        };
        let Some(envelope) =
            crate::wire::Envelope::encode(&direct.entity, &codec, &direct.msg, 1, false)
        else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(crate::wire::WireFailure::Unencodable));
            }
            return;
        };
        let pending = Pending {
            entity: Arc::clone(&direct.entity),
            handed_off: false,
            parcel: Box::new(crate::parcel::Wire {
                envelope,
                reply,
                messages: self.shared.messages.clone(),
            }),
            local: true,
        };
        self.dispatch(ctx, pending, 1).await;
        self.open_direct_paths();
    }
}

impl<A: Entity> Handler<Acquire> for Region<A> {
    async fn handle(
        &mut self,
        Acquire { shard, from }: Acquire,
        ctx: &mut Context<Self>,
    ) -> AcquireAnswer {
        self.open_direct_paths();
        let home = self.home(shard);
        let max_handoffs = self.settings().max_handoffs;
        let state = self.shards.get(&shard).map(|s| match s.state {
            ShardState::Active => 0,
            ShardState::HandingOff { .. } => 1,
            ShardState::Acquiring { .. } => 2,
        });
        if self.parked.get(&shard).is_some_and(|p| !p.is_empty()) {
            // Messages of the shard wait here (for a way to the asker, or after bouncing
            // between regions that disagreed): send them on by the current view, and hold the
            // asker back while any still wait, so that it never starts before they are on
            // their way.
            self.flush_parked_shard(ctx, shard).await;
            if self.parked.get(&shard).is_some_and(|p| !p.is_empty()) {
                return AcquireAnswer::Held;
            }
        }
        match state {
            None => AcquireAnswer::Free {
                handed: self.handed.remove(&(shard, from)).unwrap_or(0),
            },
            Some(0) if home != Home::Me => {
                if (self.handing < max_handoffs || self.leaving) && self.begin_handoff(shard) {
                    self.complete_handoff(ctx, shard).await;
                }
                if self.shards.contains_key(&shard) {
                    AcquireAnswer::Held
                } else {
                    AcquireAnswer::Free {
                        handed: self.handed.remove(&(shard, from)).unwrap_or(0),
                    }
                }
            }
            Some(2) if home != Home::Me => {
                self.abandon(ctx, shard).await;
                AcquireAnswer::Free {
                    handed: self.handed.remove(&(shard, from)).unwrap_or(0),
                }
            }
            Some(_) => AcquireAnswer::Held,
        }
    }
}

impl<A: Entity> Handler<Nudge> for Region<A> {
    async fn handle(&mut self, Nudge { shard }: Nudge, ctx: &mut Context<Self>) {
        if let Some(Shard {
            state: ShardState::Acquiring {
                in_flight, nudged, ..
            },
            ..
        }) = self.shards.get_mut(&shard)
        {
            if *in_flight {
                *nudged = true;
            } else {
                self.start_acquire(ctx, shard);
            }
        }
    }
}

/// The membership changed: the members not gone, oldest first.
pub(crate) struct ViewChanged(pub(crate) Vec<Member>);

impl Message for ViewChanged {
    type Reply = ();
}

impl<A: Entity> Handler<ViewChanged> for Region<A> {
    async fn handle(&mut self, ViewChanged(members): ViewChanged, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        if !self.downed {
            self.apply_view(ctx, members).await;
        }
    }
}

/// A region of another node was looked up (`None`: that node is gone).
struct Resolved<A: Entity> {
    node: NodeAddr,
    region: Option<ActorRef<Region<A>>>,
}

impl<A: Entity> Message for Resolved<A> {
    type Reply = ();
}

impl<A: Entity> Handler<Resolved<A>> for Region<A> {
    async fn handle(&mut self, resolved: Resolved<A>, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        let id = identity(&resolved.node);
        self.resolving.remove(&id);
        if let Some(region) = resolved.region {
            if self.peers.iter().any(|p| identity(p) == id) {
                if self.leaving {
                    // Before anything this region forwards to it: a region that still counts
                    // this node as a home would send its messages straight back.
                    let _ = region
                        .tell(Leaving {
                            node: identity(&self.me),
                        })
                        .await;
                }
                self.regions.insert(id, region);
            }
        }
        self.flush_parked(ctx).await;
    }
}

/// The outcome of an acquire round.
struct Acquired {
    shard: u32,
    epoch: u64,
    outcome: Option<u64>,
}

impl Message for Acquired {
    type Reply = ();
}

impl<A: Entity> Handler<Acquired> for Region<A> {
    async fn handle(&mut self, acquired: Acquired, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        let shard = acquired.shard;
        let home = self.home(shard);
        let Some(state) = self.shards.get_mut(&shard) else {
            return;
        };
        if state.epoch != acquired.epoch {
            return;
        }
        let ShardState::Acquiring {
            in_flight,
            nudged,
            attempts,
            expected,
            received,
        } = &mut state.state
        else {
            return;
        };
        *in_flight = false;
        if home != Home::Me {
            return self.abandon(ctx, shard).await;
        }
        match acquired.outcome {
            Some(handed) => {
                *expected = Some(handed);
                if *received >= handed {
                    self.activate_shard(ctx, shard).await;
                    self.open_direct_paths();
                } else {
                    let epoch = state.epoch;
                    Self::schedule(ctx, HANDED_WAIT, HandedWait { shard, epoch });
                }
            }
            None if *nudged => self.start_acquire(ctx, shard),
            None => {
                *attempts += 1;
                let backoff = Duration::from_millis(10 << (*attempts).min(7));
                let epoch = state.epoch;
                Self::schedule(ctx, backoff, RetryAcquire { shard, epoch });
            }
        }
    }
}

struct RetryAcquire {
    shard: u32,
    epoch: u64,
}

impl Message for RetryAcquire {
    type Reply = ();
}

impl<A: Entity> Handler<RetryAcquire> for Region<A> {
    async fn handle(&mut self, retry: RetryAcquire, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        let due = self.shards.get(&retry.shard).is_some_and(|s| {
            s.epoch == retry.epoch
                && matches!(
                    s.state,
                    ShardState::Acquiring {
                        in_flight: false,
                        ..
                    }
                )
        });
        if due {
            if self.home(retry.shard) == Home::Me {
                self.start_acquire(ctx, retry.shard);
            } else {
                self.abandon(ctx, retry.shard).await;
            }
        }
    }
}

/// A fence came back (or its time is up): release what the shard held, in order.
pub(crate) struct FenceDone {
    pub(crate) shard: u32,
    pub(crate) token: u64,
}

impl Message for FenceDone {
    type Reply = ();
}

impl<A: Entity> Handler<FenceDone> for Region<A> {
    async fn handle(&mut self, FenceDone { shard, token }: FenceDone, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        if self.fences.get(&shard).is_none_or(|f| f.token != token) {
            return;
        }
        let Some(fence) = self.fences.remove(&shard) else {
            return;
        };
        for (pending, hops) in fence.held {
            self.dispatch(ctx, pending, hops).await;
        }
        self.open_direct_paths();
    }
}

/// Time to route parked messages again by the current view (see [`PARKED_RETRY_FIRST`]).
struct RetryParked;

impl Message for RetryParked {
    type Reply = ();
}

impl<A: Entity> Handler<RetryParked> for Region<A> {
    async fn handle(&mut self, _: RetryParked, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        self.parked_retry = false;
        // Whatever parks again schedules the next retry, with a longer wait.
        self.flush_parked(ctx).await;
        if self.parked.values().all(VecDeque::is_empty) {
            self.parked.clear();
            self.parked_backoff = PARKED_RETRY_FIRST;
        }
        self.open_direct_paths();
    }
}

/// The handed-off messages announced did not all come in time: deliver anyway.
struct HandedWait {
    shard: u32,
    epoch: u64,
}

impl Message for HandedWait {
    type Reply = ();
}

impl<A: Entity> Handler<HandedWait> for Region<A> {
    async fn handle(&mut self, wait: HandedWait, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        let due = self.shards.get(&wait.shard).is_some_and(|s| {
            s.epoch == wait.epoch
                && matches!(
                    s.state,
                    ShardState::Acquiring {
                        expected: Some(_),
                        ..
                    }
                )
        });
        if due {
            self.activate_shard(ctx, wait.shard).await;
            self.open_direct_paths();
        }
    }
}

/// Time to look for idle entities.
pub(crate) struct PassivationTick;

impl Message for PassivationTick {
    type Reply = ();
}

impl<A: Entity> Handler<PassivationTick> for Region<A> {
    async fn handle(&mut self, _: PassivationTick, _: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        if let Some(idle) = self.settings().idle_timeout {
            self.passivate_idle(idle);
        }
    }
}

impl<A: Entity> Handler<Terminated> for Region<A> {
    async fn handle(&mut self, terminated: Terminated, ctx: &mut Context<Self>) {
        // What an earlier handler delivered (see `open_direct_paths`).
        self.open_direct_paths();
        let Some((shard, entity)) = self.by_actor.remove(&terminated.id) else {
            return;
        };
        self.active = self.active.saturating_sub(1);
        let Some(state) = self.shards.get_mut(&shard) else {
            return;
        };
        let Some(slot) = state.entities.remove(&entity) else {
            return;
        };
        if slot.published {
            self.shared.direct.unpublish(&entity);
        }
        // Passivated or stopped on its own: forgotten. Stopped for a hand-off: remembered.
        let forget = slot.forget || !slot.stopping;
        match &mut state.state {
            ShardState::HandingOff { remaining } => {
                *remaining = remaining.saturating_sub(1);
                let done = *remaining == 0;
                for pending in slot.buffer.into_iter().rev() {
                    state.buffer.push_front(pending);
                }
                if forget {
                    self.note_memory(ctx, shard, entity, false);
                }
                if done && self.complete_handoff(ctx, shard).await {
                    self.rebalance(ctx).await;
                }
            }
            _ => {
                if forget {
                    self.note_memory(ctx, shard, entity, false);
                }
                for pending in slot.buffer {
                    self.dispatch(ctx, pending, 0).await;
                }
            }
        }
    }
}

/// A shard's remembered set was read: `(revision, ids)`, or the error (with the revision
/// when the stored set was unreadable, `u64::MAX` when the store failed).
struct RememberLoaded {
    shard: u32,
    generation: u64,
    result: Result<(u64, Vec<String>), (u64, String)>,
}

impl Message for RememberLoaded {
    type Reply = ();
}

impl<A: Entity> Handler<RememberLoaded> for Region<A> {
    async fn handle(&mut self, loaded: RememberLoaded, ctx: &mut Context<Self>) {
        let shard = loaded.shard;
        let Some(memory) = self
            .memory
            .get_mut(&shard)
            .filter(|m| m.generation == loaded.generation)
        else {
            return;
        };
        let ids = match loaded.result {
            Ok((revision, ids)) => memory.loaded(revision, ids),
            Err((revision, error)) if revision != u64::MAX => {
                self.shared.counters.add_remember_failure();
                tracing::error!(shard, %error, "remembered entities unreadable: starting from none");
                memory.loaded(revision, Vec::new())
            }
            Err((_, error)) => {
                memory.failures += 1;
                let after = Self::retry_memory(ctx, shard, memory);
                self.shared.counters.add_remember_failure();
                tracing::warn!(shard, %error, retry_in = ?after, "remembered entities could not be read");
                return;
            }
        };
        let active_here = self
            .shards
            .get(&shard)
            .is_some_and(|s| matches!(s.state, ShardState::Active))
            && self.home(shard) == Home::Me
            && !self.leaving;
        if active_here {
            self.start_remembered(ctx, shard, ids);
        }
        self.write_memory(ctx, shard);
        self.memory_settled(ctx, shard).await;
    }
}

/// A write of a shard's remembered set ended.
struct RememberWritten {
    shard: u32,
    generation: u64,
    result: Result<(), postbox_persistence::StoreError>,
}

impl Message for RememberWritten {
    type Reply = ();
}

impl<A: Entity> Handler<RememberWritten> for Region<A> {
    async fn handle(&mut self, written: RememberWritten, ctx: &mut Context<Self>) {
        let shard = written.shard;
        let Some(memory) = self
            .memory
            .get_mut(&shard)
            .filter(|m| m.generation == written.generation)
        else {
            return;
        };
        memory.written(&written.result);
        match &written.result {
            Ok(()) => self.write_memory(ctx, shard),
            Err(error) => {
                self.shared.counters.add_remember_failure();
                if memory.needs_load() {
                    tracing::warn!(shard, %error, "remembered entities written elsewhere meanwhile: reading them again");
                    self.load_memory(ctx, shard);
                } else {
                    let after = Self::retry_memory(ctx, shard, memory);
                    tracing::warn!(shard, %error, retry_in = ?after, "remembered entities could not be written; the entities serve meanwhile");
                }
            }
        }
        self.memory_settled(ctx, shard).await;
    }
}

/// Time to try the store again for a shard's remembered set.
struct RememberRetry {
    shard: u32,
    generation: u64,
}

impl Message for RememberRetry {
    type Reply = ();
}

impl<A: Entity> Handler<RememberRetry> for Region<A> {
    async fn handle(&mut self, retry: RememberRetry, ctx: &mut Context<Self>) {
        let Some(memory) = self
            .memory
            .get_mut(&retry.shard)
            .filter(|m| m.generation == retry.generation)
        else {
            return;
        };
        memory.retry_scheduled = false;
        if memory.needs_load() {
            self.load_memory(ctx, retry.shard);
        } else {
            self.write_memory(ctx, retry.shard);
        }
    }
}

/// A message that took the inbound direct path and found its entity stopping (see
/// `direct.rs`): routed as if it had come to the region.
pub(crate) struct Reroute<A: Entity> {
    pub(crate) entity: Arc<str>,
    pub(crate) parcel: Box<dyn Parcel<A>>,
}

impl<A: Entity> Message for Reroute<A> {
    type Reply = ();
}

impl<A: Entity> Handler<Reroute<A>> for Region<A> {
    async fn handle(&mut self, reroute: Reroute<A>, ctx: &mut Context<Self>) {
        let shard = self.shared.direct.shard_of(&reroute.entity);
        let pending = Pending {
            entity: reroute.entity,
            parcel: reroute.parcel,
            handed_off: false,
            local: false,
        };
        self.dispatch(ctx, pending, 0).await;
        self.open_direct_paths();
        self.shared.direct.inbound_queued.leave(shard);
    }
}

/// Hand every shard off and answer once none is left (graceful leave).
pub(crate) struct Leave;

impl Message for Leave {
    type Reply = ();
}

impl<A: Entity> Handler<Leave> for Region<A> {
    async fn handle(&mut self, _: Leave, _: &mut Context<Self>) {}

    async fn handle_reply(
        &mut self,
        _: Leave,
        reply: Option<ReplyTo<()>>,
        ctx: &mut Context<Self>,
    ) {
        self.leaving = true;
        if let Some(reply) = reply {
            self.leave_waiters.push(reply);
        }
        let me = identity(&self.me);
        for region in self.regions.values() {
            let _ = region.tell(Leaving { node: me }).await;
        }
        // Regions not looked up yet are told when they are found (`Resolved`).
        for peer in self.peers.clone() {
            if !self.regions.contains_key(&identity(&peer)) {
                self.resolve(ctx, peer);
            }
        }
        let members = self.members.clone();
        self.apply_view(ctx, members).await;
    }
}

impl<A: Entity> Handler<Leaving> for Region<A> {
    async fn handle(&mut self, Leaving { node }: Leaving, ctx: &mut Context<Self>) {
        if node != identity(&self.me) && self.excluded.insert(node) {
            let members = self.members.clone();
            self.apply_view(ctx, members).await;
        }
    }
}

/// This node left the cluster (without [`Leave`] first, or after it): host nothing, forward
/// by the last view.
pub(crate) struct LeftCluster;

impl Message for LeftCluster {
    type Reply = ();
}

impl<A: Entity> Handler<LeftCluster> for Region<A> {
    async fn handle(&mut self, _: LeftCluster, ctx: &mut Context<Self>) {
        if !self.leaving && !self.downed {
            self.leaving = true;
            let members = self.members.clone();
            self.apply_view(ctx, members).await;
        }
    }
}

/// This node was downed: stop hosting at once.
pub(crate) struct Downed;

impl Message for Downed {
    type Reply = ();
}

impl<A: Entity> Handler<Downed> for Region<A> {
    async fn handle(&mut self, _: Downed, ctx: &mut Context<Self>) {
        self.downed = true;
        tracing::warn!(entity_type = %self.settings().name, "this node is down: its entities stop");
        self.stop_hosting(ctx);
        for (_, fence) in std::mem::take(&mut self.fences) {
            for (pending, _) in fence.held {
                self.fail(ctx, pending.parcel, Failed::NodeDown);
            }
        }
        for waiter in self.leave_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}

/// What the region hosts now.
pub(crate) struct Snapshot;

impl Message for Snapshot {
    type Reply = RegionSnapshot;
}

impl<A: Entity> Handler<Snapshot> for Region<A> {
    async fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> RegionSnapshot {
        self.snapshot()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

    use super::*;
    use crate::wire::Envelope;
    use crate::{entity, Sharding};
    use postbox_remote::remote_message;
    use postbox_testkit::{until, until_async, TestCluster};
    use serde::{Deserialize, Serialize};
    use std::sync::Mutex;

    const BOUND: Duration = Duration::from_secs(20);

    struct Marker {
        node: String,
        marks: Arc<Mutex<Vec<u64>>>,
    }
    impl Actor for Marker {}

    #[derive(Serialize, Deserialize)]
    struct Mark(u64);
    impl Message for Mark {
        type Reply = ();
        remote_message!("test.region.Mark");
    }
    impl Handler<Mark> for Marker {
        async fn handle(&mut self, Mark(n): Mark, _: &mut Context<Self>) {
            self.marks.lock().unwrap().push(n);
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Where;
    impl Message for Where {
        type Reply = String;
        remote_message!("test.region.Where");
    }
    impl Handler<Where> for Marker {
        async fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
            self.node.clone()
        }
    }

    entity!(Marker: Mark, Where);

    /// A message parked after bouncing between regions goes on to its home by itself once
    /// the regions agree, even when the region that parked it sees no change of view: it
    /// had the current view all along (the one that disagreed was the other). Without the
    /// retry it waited for the next membership change, and an ask behind it timed out and
    /// was still applied later.
    /// Two nodes with the marker type registered, and an entity whose home is the second
    /// node by both regions' (settled) views.
    async fn an_entity_on_the_second_of_two_nodes() -> (
        TestCluster,
        Vec<crate::Entities<Marker>>,
        Arc<Mutex<Vec<u64>>>,
        String,
    ) {
        let nodes = TestCluster::start(2).await;
        let marks = Arc::new(Mutex::new(Vec::new()));
        let mut entities = Vec::new();
        for node in nodes.nodes() {
            let sharding = Sharding::new(&node.system, &node.remote, &node.cluster);
            let name = node.name().to_owned();
            let marks = marks.clone();
            let entity_type = EntityType::new("marker", move |_: &str| Marker {
                node: name.clone(),
                marks: marks.clone(),
            })
            .shards(8);
            entities.push(sharding.register(entity_type).unwrap());
        }
        let other = nodes.node(1).name().to_owned();
        let mut id = None;
        for i in 0..64 {
            let candidate = format!("e{i}");
            let host = until_async(BOUND, "the entity answers", async || {
                entities[0].entity_ref(&candidate).ask(Where).await.ok()
            })
            .await;
            if host == other {
                id = Some(candidate);
                break;
            }
        }
        let id = id.expect("some entity lives on the other node");
        (nodes, entities, marks, id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_parked_after_bouncing_reaches_its_home_without_a_change_of_view() {
        let (_nodes, entities, marks, id) = an_entity_on_the_second_of_two_nodes().await;

        // As if it had already passed through as many regions as a message may.
        let codec = Mark::remote().unwrap();
        let envelope = Envelope::encode(&id, &codec, &Mark(7), MAX_HOPS, false).unwrap();
        entities[0].region.tell(Deliver(envelope)).await.unwrap();
        until_async(BOUND, "the bounced count", async || {
            let snapshot = entities[0].snapshot().await.ok()?;
            (snapshot.counters.bounced == 1).then_some(())
        })
        .await;
        until(BOUND, "the parked message reaches its home", || {
            marks.lock().unwrap().contains(&7)
        })
        .await;
        let snapshot = entities[0].snapshot().await.unwrap();
        assert_eq!(snapshot.buffered, 0, "nothing left parked");
    }

    /// A message another node sent here as to its shard's home, while this region counts
    /// another node, waits here in line (counted as bounced) instead of being sent on at
    /// once — between two regions whose views disagree it would circle, passed by later
    /// messages — and reaches its home with the ones behind it, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_sent_here_by_a_disagreeing_view_waits_in_line_instead_of_circling() {
        let (_nodes, entities, marks, id) = an_entity_on_the_second_of_two_nodes().await;

        // As if another node's region had sent them here, counting this node as the home.
        let codec = Mark::remote().unwrap();
        for n in 1..=3 {
            let envelope = Envelope::encode(&id, &codec, &Mark(n), 1, false).unwrap();
            entities[0].region.tell(Deliver(envelope)).await.unwrap();
        }
        // The first parks for the disagreement, the next two behind it; and this node's
        // next messages of the shard would wait behind the fence its region sent after its
        // own earlier ones (the asks above), which might be circling too.
        let snapshot = entities[0].snapshot().await.unwrap();
        assert_eq!(snapshot.counters.bounced, 1, "{snapshot:?}");
        assert_eq!(snapshot.counters.fences, 1, "{snapshot:?}");
        until(BOUND, "all three reach the home", || {
            marks.lock().unwrap().len() == 3
        })
        .await;
        assert_eq!(*marks.lock().unwrap(), vec![1, 2, 3]);
        let snapshot = entities[0].snapshot().await.unwrap();
        assert_eq!(snapshot.buffered, 0, "nothing left parked or held");
    }
}

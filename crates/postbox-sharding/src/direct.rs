//! The direct paths: a message for an entity whose place is settled skips the regions.
//!
//! Every message for an entity can go through two region actors — the sender's, which finds
//! the home, and the home's, which finds (or starts) the entity. Both are single actors, so
//! under a stream of tells each is a queue and a task hop that a direct remote `ActorRef`
//! does not pay. Once nothing is moving, neither has anything to decide, and two tables
//! published by the regions let the message skip them:
//!
//! - **Outbound** (the sender's node): per shard, the region of its home node, set by this
//!   node's region when it forwards a message of the shard there and cleared when its view
//!   changes or the shard becomes its own. An [`EntityRef`](crate::EntityRef) that finds an
//!   entry sends the encoded message — a tell or an ask — straight to that region (the same
//!   remote reference the region uses, so the same connection and queue).
//! - **Inbound** (the home node): the entities that are active here in an active shard, not
//!   stopping and with nothing buffered, set by the region when it delivers to one and
//!   removed before it stops one or its shard starts moving. The transport's reader
//!   ([`Remote::intercept`](postbox_remote::Remote::intercept)) puts a told message for such
//!   an entity straight into its mailbox. Asks pass the home's region, which answers them.
//!
//! **Order.** A sender's messages must not overtake each other by taking different paths.
//! Each table comes with a count per shard of messages on their way through the region — put
//! in its queue by this node's `EntityRef`s (outbound) or by the transport (inbound) and not
//! yet dispatched. A message takes a direct path only while its shard's count is zero: an
//! earlier message of the same sender is then already where the direct path puts this one
//! (the remote region's queue; the entity's mailbox). The region decrements a count only
//! after it dispatched the message. And it opens a path only between two of its own
//! messages (`Region::open_direct_paths`), re-checking it then: in the middle of one, other
//! messages of the same shard may still sit in a local list it is delivering or forwarding
//! (a shard's buffer on activation, parked messages on a view change).
//!
//! **Moves.** Clearing an entry is what sends messages back through the regions. A sender
//! that read an outbound entry just before it was cleared sends to the old home, whose region
//! forwards or buffers it like any message that was on its way when the view changed. Such a
//! send is counted (`Direct::sending`, taken under the table's read lock, released once the
//! message is in the home's queue), and the region's fence for the shard (`region.rs`,
//! *Order*) waits for the count to fall to zero before it goes the same way, so the fence is
//! behind it. An inbound entry is removed before its entity is
//! told to stop; a message put into its mailbox before the stop is handled by it (a drain
//! stop handles everything queued), one that finds the mailbox closed goes to the region,
//! which buffers it for the next instance or the new home.

use crate::allocation::{shard_of, shard_of_bytes};
use crate::entity::EntityMessages;
use crate::parcel::Parcel;
use crate::region::{Region, Reroute};
use crate::wire::read_envelope;
use crate::Entity;
use postbox::ActorRef;
use postbox_remote::Intercepted;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// What the inbound direct path did with a message.
pub(crate) enum Now {
    Delivered,
    /// Waiting for room in the entity's mailbox (the connection waits for it).
    Pending(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// It must go through the region.
    Region,
}

/// The way back to the region for a message that took the inbound direct path and found
/// its entity stopping.
pub(crate) struct Fallback<A: Entity> {
    region: ActorRef<Region<A>>,
    entity: Arc<str>,
    shard: u32,
    direct: Arc<Direct<A>>,
}

impl<A: Entity> Fallback<A> {
    pub(crate) async fn reroute(self, parcel: Box<dyn Parcel<A>>) {
        self.direct.inbound_queued.enter(self.shard);
        let rerouted = Reroute {
            entity: self.entity,
            parcel,
        };
        if self.region.tell(rerouted).await.is_err() {
            // The region stopped (its node is shutting down): `tell` counted the dead letter.
            self.direct.inbound_queued.leave(self.shard);
        }
    }
}

/// One active entity, as the inbound table has it.
pub(crate) struct DirectEntity<A: Entity> {
    pub(crate) id: Arc<str>,
    pub(crate) actor: ActorRef<A>,
    /// Set by every direct delivery: the region reads (and clears) it for idle passivation.
    pub(crate) touched: Arc<AtomicBool>,
}

/// An entity id as the inbound table keys it: by its bytes, so that the transport's hook
/// looks an id up as it lies in the envelope, without checking it is UTF-8.
#[derive(Clone, PartialEq, Eq)]
struct EntityKey(Arc<str>);

impl std::hash::Hash for EntityKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for EntityKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Messages of one shard on their way through the region, one counter per shard.
pub(crate) struct InRegion {
    counts: Box<[AtomicU32]>,
}

impl InRegion {
    fn new(shards: u32) -> Self {
        Self {
            counts: (0..shards).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn is_clear(&self, shard: u32) -> bool {
        self.counts
            .get(shard as usize)
            .is_none_or(|c| c.load(Ordering::Acquire) == 0)
    }

    /// One more message of `shard` is being put in the region's queue.
    pub(crate) fn enter(&self, shard: u32) {
        if let Some(count) = self.counts.get(shard as usize) {
            count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The region dispatched one message of `shard` (or it never reached the region).
    pub(crate) fn leave(&self, shard: u32) {
        self.leave_last(shard);
    }

    /// [`leave`](Self::leave), telling whether it was the last one counted.
    fn leave_last(&self, shard: u32) -> bool {
        let Some(count) = self.counts.get(shard as usize) else {
            return false;
        };
        // Never below zero: a region restarted with messages counted for its old
        // instance would otherwise wrap and close the direct path for good.
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1)) == Ok(1)
    }
}

/// A direct send that found its route and may still wait for room in the home's queue (see
/// [`Direct::sending`]): uncounted when dropped, once the message is in that queue or given up.
pub(crate) struct Sending<'a> {
    sending: &'a InRegion,
    drained: &'a tokio::sync::Notify,
    shard: u32,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.sending.leave_last(self.shard) {
            self.drained.notify_waiters();
        }
    }
}

/// A message counted into the region's queue (see [`Direct::enter_outbound`]).
pub(crate) struct Entered<'a> {
    queued: &'a InRegion,
    shard: u32,
    armed: bool,
}

impl Entered<'_> {
    /// It is in the region's queue: the region uncounts it once dispatched.
    pub(crate) fn passed(mut self) {
        self.armed = false;
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.queued.leave(self.shard);
        }
    }
}

/// The direct paths of one entity type on one node (shared by its region, its `EntityRef`s
/// and the transport's hook).
pub(crate) struct Direct<A: Entity> {
    shards: u32,
    /// Seeded foldhash: entity ids may come from users, so not an unseeded hash; not
    /// SipHash either, which costs as much as the rest of the lookup.
    inbound: RwLock<HashMap<EntityKey, DirectEntity<A>, foldhash::fast::RandomState>>,
    pub(crate) inbound_queued: InRegion,
    /// By shard.
    outbound: RwLock<Vec<Option<ActorRef<Region<A>>>>>,
    pub(crate) outbound_queued: InRegion,
    /// Direct sends that read their shard's route and are not yet in the home's queue: a
    /// route cleared under the write lock may still have these on their way to the old home,
    /// and the region's fence must go after them ([`sends_drained`](Self::sends_drained)).
    sending: InRegion,
    /// Told when a shard's `sending` count drops to zero.
    drained: tokio::sync::Notify,
    /// Messages that took a direct path (both ways), for the region's counters.
    delivered: AtomicU64,
}

impl<A: Entity> Direct<A> {
    pub(crate) fn new(shards: u32) -> Self {
        Self {
            shards,
            inbound: RwLock::new(HashMap::default()),
            inbound_queued: InRegion::new(shards),
            outbound: RwLock::new((0..shards).map(|_| None).collect()),
            outbound_queued: InRegion::new(shards),
            sending: InRegion::new(shards),
            drained: tokio::sync::Notify::new(),
            delivered: AtomicU64::new(0),
        }
    }

    pub(crate) fn shard_of(&self, entity: &str) -> u32 {
        shard_of(entity, self.shards)
    }

    fn shard_of_bytes(&self, entity: &[u8]) -> u32 {
        shard_of_bytes(entity, self.shards)
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    // Inbound.

    /// The transport's hook for a told message, read in place: delivered here (at once, or
    /// by a future the connection waits for), or through the region (counted as on its way
    /// there).
    pub(crate) fn deliver_inbound(
        self: &Arc<Self>,
        region: &ActorRef<Region<A>>,
        payload: &[u8],
        messages: &EntityMessages<A>,
    ) -> Intercepted {
        let Some(envelope) = read_envelope(payload) else {
            // The region's decode reports it; nothing to count against a shard.
            return Intercepted::Queue;
        };
        let shard = self.shard_of_bytes(envelope.entity);
        // Handed-off messages are counted by the new home as they arrive: the region's path.
        if !envelope.handed_off && self.inbound_queued.is_clear(shard) {
            let inbound = self.inbound.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = inbound.get(envelope.entity) {
                // Published ids are `str`s, so the bytes that found one are UTF-8.
                let fallback = || Fallback {
                    region: region.clone(),
                    entity: found.id.clone(),
                    shard,
                    direct: self.clone(),
                };
                // Under the read lock: the region cannot unpublish (and then stop) it midway.
                let now =
                    messages.deliver_now(&found.actor, envelope.tag, envelope.payload, &fallback);
                match now {
                    Now::Delivered => {
                        found.touched.store(true, Ordering::Relaxed);
                        self.count_direct();
                        return Intercepted::Delivered;
                    }
                    Now::Pending(delivering) => {
                        found.touched.store(true, Ordering::Relaxed);
                        self.count_direct();
                        return Intercepted::Pending(delivering);
                    }
                    Now::Region => {}
                }
            }
        }
        self.inbound_queued.enter(shard);
        Intercepted::Queue
    }

    /// The transport's hook for an asked message: it always goes through the region,
    /// counted so that a later tell of its sender cannot overtake it.
    pub(crate) fn count_inbound_ask(&self, payload: &[u8]) {
        if let Some(envelope) = read_envelope(payload) {
            self.inbound_queued
                .enter(self.shard_of_bytes(envelope.entity));
        }
    }

    pub(crate) fn publish(&self, direct: DirectEntity<A>) {
        self.inbound
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(EntityKey(direct.id.clone()), direct);
    }

    pub(crate) fn unpublish(&self, entity: &str) {
        self.inbound
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(entity.as_bytes());
    }

    // Outbound.

    /// The home region to send a message of `shard` to directly, if its way is settled and
    /// nothing of the shard is on its way through this node's region — with the send counted
    /// until the returned [`Sending`] is dropped, which must be once the message is in the
    /// home's queue (or given up).
    pub(crate) fn outbound_route(&self, shard: u32) -> Option<(ActorRef<Region<A>>, Sending<'_>)> {
        if !self.outbound_queued.is_clear(shard) {
            return None;
        }
        let routes = self.outbound.read().unwrap_or_else(PoisonError::into_inner);
        let home = routes
            .get(shard as usize)?
            .as_ref()
            .filter(|region| region.is_alive())?
            .clone();
        // Under the read lock: a region that clears the route afterwards sees this send.
        Some((home, self.count_sending(shard)))
    }

    fn count_sending(&self, shard: u32) -> Sending<'_> {
        self.sending.enter(shard);
        Sending {
            sending: &self.sending,
            drained: &self.drained,
            shard,
        }
    }

    /// Resolves once no direct send of `shard` that read its route before now is still on
    /// its way into the old home's queue. Called after the route is cleared, so the count
    /// only falls.
    pub(crate) fn sends_drained(
        self: &Arc<Self>,
        shard: u32,
    ) -> impl Future<Output = ()> + Send + 'static {
        let direct = Arc::clone(self);
        async move {
            loop {
                let notified = direct.drained.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if direct.sending.is_clear(shard) {
                    return;
                }
                notified.await;
            }
        }
    }

    /// `send(home, message, count)` for the home region of `shard`, under the table's read
    /// lock, if its way is settled and nothing of the shard is on its way through this
    /// node's region; the message back otherwise. `send` must not wait; if it leaves the
    /// message to be sent after the lock (waiting for room), it counts that send with `count`
    /// (see [`outbound_route`](Self::outbound_route)).
    pub(crate) fn with_route<'s, T, R>(
        &'s self,
        shard: u32,
        message: T,
        send: impl FnOnce(&ActorRef<Region<A>>, T, &dyn Fn() -> Sending<'s>) -> R,
    ) -> Result<R, T> {
        if !self.outbound_queued.is_clear(shard) {
            return Err(message);
        }
        let routes = self.outbound.read().unwrap_or_else(PoisonError::into_inner);
        match routes
            .get(shard as usize)
            .and_then(Option::as_ref)
            .filter(|region| region.is_alive())
        {
            Some(home) => Ok(send(home, message, &|| self.count_sending(shard))),
            None => Err(message),
        }
    }

    /// Counts a message of this node's `EntityRef`s on its way into the region; dropped
    /// before [`Entered::passed`] (the queue refused it, or the sender gave up waiting for
    /// room), it is uncounted again.
    pub(crate) fn enter_outbound(&self, shard: u32) -> Entered<'_> {
        self.outbound_queued.enter(shard);
        Entered {
            queued: &self.outbound_queued,
            shard,
            armed: true,
        }
    }

    pub(crate) fn count_direct(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_route(&self, shard: u32, region: &ActorRef<Region<A>>) {
        let mut routes = self
            .outbound
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = routes.get_mut(shard as usize) {
            if route.as_ref().is_none_or(|r| r.id() != region.id()) {
                *route = Some(region.clone());
            }
        }
    }

    pub(crate) fn has_route(&self, shard: u32) -> bool {
        self.outbound
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(shard as usize)
            .is_some_and(Option::is_some)
    }

    pub(crate) fn clear_route(&self, shard: u32) {
        if let Some(route) = self
            .outbound
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(shard as usize)
        {
            *route = None;
        }
    }

    pub(crate) fn clear_routes(&self) {
        self.outbound
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
            .for_each(|route| *route = None);
    }

    /// Forgets everything (a region starting, or stopping hosting).
    pub(crate) fn clear_inbound(&self) {
        self.inbound
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

//! Group routers over the cluster: a `postbox` [`Router`] whose routees are the actors
//! registered under a service key on every up member, kept up to date as the listing
//! changes (members coming, going, registering, deregistering).
//!
//! ## Smallest mailbox across nodes
//!
//! A remote routee's local ref is a proxy: its own mailbox only holds messages not yet
//! forwarded, usually none, so plain [`Routing::smallest_mailbox`] would see every remote
//! actor as idle. [`ClusterRouterBuilder::smallest_mailbox`] routes by an estimate instead:
//!
//! - a **local** routee: its real load (mailbox depth plus the message in hand), as usual;
//! - a **remote** routee: `proxy backlog + reported depth + forwarded since the report`, where
//!   *reported depth* is the actor's mailbox depth its node gossiped at its last load refresh
//!   (every `load_refresh`, 1 s by default), and *forwarded since the report* counts the
//!   messages this node has sent it since that report arrived.
//!
//! The last term keeps a stale report from drawing every message to the node that looked
//! idle a second ago: each message sent raises that routee's estimate until its node reports
//! again. It over-estimates by what the far actor processed meanwhile, which only makes this
//! node spread its messages more evenly; messages other nodes sent are only seen at the next
//! report. Ties rotate, as for local routers.

use crate::cluster::Cluster;
use crate::membership::ReportedLoad;
use crate::receptionist::{Instance, ServiceKey};
use dashmap::DashMap;
use postbox::{Actor, ActorId, ActorRef, Handler, Message, Recipient, Router, Routing, SpawnError};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// What this node knows about a remote routee's far-side queue.
struct FarSide {
    reported: Arc<ReportedLoad>,
    /// Messages the proxy has forwarded so far.
    forwarded: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The report sequence number the baseline was taken at.
    seen_seq: AtomicU64,
    /// `forwarded` when that report arrived.
    baseline: AtomicU64,
}

impl FarSide {
    fn estimate(&self) -> usize {
        let seq = self.reported.seq.load(Relaxed);
        let forwarded = (self.forwarded)();
        if self.seen_seq.swap(seq, Relaxed) != seq {
            self.baseline.store(forwarded, Relaxed);
        }
        let since = forwarded.saturating_sub(self.baseline.load(Relaxed));
        self.reported
            .depth
            .load(Relaxed)
            .saturating_add(usize::try_from(since).unwrap_or(usize::MAX))
    }
}

type Board = Arc<DashMap<ActorId, FarSide>>;

/// The load the smallest-mailbox cluster router routes by (see the module docs).
fn estimated_load<M: Message>(board: &Board, routee: &Recipient<M>) -> usize {
    let local = routee.load();
    match board.get(&routee.id()) {
        Some(far) => local.saturating_add(far.estimate()),
        None => local,
    }
}

enum Choice<M: Message> {
    Given(Routing<M>),
    SmallestMailbox,
}

/// Builds a cluster group router; from [`Cluster::router`].
pub struct ClusterRouterBuilder<A: Actor, M: Message> {
    cluster: Cluster,
    key: ServiceKey<A>,
    routing: Choice<M>,
    name: Option<String>,
    _message: PhantomData<fn(M)>,
}

impl<A, M> ClusterRouterBuilder<A, M>
where
    A: Actor + Handler<M>,
    M: Message,
{
    pub(crate) fn new(cluster: Cluster, key: ServiceKey<A>) -> Self {
        Self {
            cluster,
            key,
            routing: Choice::Given(Routing::round_robin()),
            name: None,
            _message: PhantomData,
        }
    }

    /// Routes with `routing` (round-robin by default). Load-based strategies read only local
    /// refs' loads; use [`smallest_mailbox`](Self::smallest_mailbox) to take the gossiped
    /// load of remote routees into account.
    pub fn routing(mut self, routing: Routing<M>) -> Self {
        self.routing = Choice::Given(routing);
        self
    }

    /// Routes each message to the routee with the smallest estimated load, local or remote
    /// (see the [module docs](self)).
    pub fn smallest_mailbox(mut self) -> Self {
        self.routing = Choice::SmallestMailbox;
        self
    }

    /// Names the router's manager actor.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Spawns the router with the current listing as its routees, and a task that follows
    /// the listing until the router stops or this node leaves the cluster.
    pub async fn spawn(self) -> Result<Router<M>, SpawnError> {
        let board: Board = Arc::new(DashMap::new());
        let routing = match self.routing {
            Choice::Given(routing) => routing,
            Choice::SmallestMailbox => {
                let board = board.clone();
                Routing::smallest_load(move |routee: &Recipient<M>| estimated_load(&board, routee))
            }
        };
        let mut group = Router::group(Vec::<Recipient<M>>::new()).routing(routing);
        if let Some(name) = self.name {
            group = group.name(name);
        }
        let system = self.cluster.inner.system.clone();
        let router = group.spawn(&system).await?;
        let mut subscription = self.cluster.receptionist().subscribe(&self.key);
        let mut routees = HashMap::new();
        if let Some(listing) = subscription.next().await {
            follow(&router, &board, &mut routees, listing.into_instances());
        }
        let follower = router.clone();
        tokio::spawn(async move {
            while let Some(listing) = subscription.next().await {
                if system.actor(follower.id()).is_none() {
                    break;
                }
                follow(&follower, &board, &mut routees, listing.into_instances());
            }
        });
        Ok(router)
    }
}

/// Makes the router's routees the listed instances.
fn follow<A, M>(
    router: &Router<M>,
    board: &Board,
    routees: &mut HashMap<ActorId, ()>,
    instances: Vec<Instance<A>>,
) where
    A: Actor + Handler<M>,
    M: Message,
{
    let listed: HashMap<ActorId, Instance<A>> =
        instances.into_iter().map(|i| (i.actor.id(), i)).collect();
    routees.retain(|id, ()| {
        let keep = listed.contains_key(id);
        if !keep {
            router.remove_routee(*id);
            board.remove(id);
        }
        keep
    });
    for (id, instance) in listed {
        if routees.insert(id, ()).is_some() {
            continue;
        }
        if let Some(reported) = instance.reported.clone() {
            let proxy: ActorRef<A> = instance.actor.clone();
            board.insert(
                id,
                FarSide {
                    reported,
                    forwarded: Box::new(move || proxy.stats().processed),
                    seen_seq: AtomicU64::new(u64::MAX),
                    baseline: AtomicU64::new(0),
                },
            );
        }
        router.add_routee(instance.actor.recipient::<M>());
    }
}

impl<A: Actor, M: Message> fmt::Debug for ClusterRouterBuilder<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRouterBuilder")
            .field("key", &self.key)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_estimate_adds_what_was_forwarded_since_the_last_report() {
        let reported = Arc::new(ReportedLoad::default());
        reported.depth.store(5, Relaxed);
        reported.seq.store(1, Relaxed);
        let forwarded = Arc::new(AtomicUsize::new(100));
        let far = FarSide {
            reported: reported.clone(),
            forwarded: Box::new({
                let forwarded = forwarded.clone();
                move || forwarded.load(Relaxed) as u64
            }),
            seen_seq: AtomicU64::new(u64::MAX),
            baseline: AtomicU64::new(0),
        };
        assert_eq!(far.estimate(), 5, "first look: the report alone");
        forwarded.store(103, Relaxed);
        assert_eq!(far.estimate(), 8, "three sent since the report");
        reported.depth.store(1, Relaxed);
        reported.seq.store(2, Relaxed);
        assert_eq!(far.estimate(), 1, "a new report resets the count");
        forwarded.store(104, Relaxed);
        assert_eq!(far.estimate(), 2);
    }
}

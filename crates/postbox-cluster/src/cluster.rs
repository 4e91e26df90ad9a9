//! `Cluster`: joining, the background tasks (membership driver, load refresh, seed
//! resolution), leaving.

use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::member::{ClusterEvent, Member, MemberStatus, NodeLoad};
use crate::membership::{ClusterEvents, Membership, Observer};
use crate::meta;
use crate::receptionist::{ProxyKey, Receptionist, Registrations};
use crate::router::ClusterRouterBuilder;
use crate::transport::{FirstAnswer, GossipState, GossipStats, GossipTransport};
use crate::ServiceKey;
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
};
use postbox::{Actor, ActorSystem, Handler, Message};
use postbox_remote::{NodeAddr, Remote};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const RUNNING: u8 = 0;
const LEAVING: u8 = 1;
const STOPPED: u8 = 2;

/// This node's membership in a cluster. Cheap to clone. See the [crate docs](crate).
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
}

/// The gossip service: chitchat's state and its server handle.
pub(crate) struct Gossip {
    pub(crate) chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    handle: Mutex<Option<ChitchatHandle>>,
}

impl Gossip {
    /// Starts a gossip exchange with `addr` now, out of the regular rounds.
    pub(crate) fn gossip_with(&self, addr: SocketAddr) {
        if let Some(handle) = &*self.handle.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = handle.gossip(addr);
        }
    }

    fn take(&self) -> Option<ChitchatHandle> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

pub(crate) struct Inner {
    pub(crate) system: ActorSystem,
    pub(crate) remote: Remote,
    pub(crate) node: NodeAddr,
    gossip_addr: SocketAddr,
    config: ClusterConfig,
    pub(crate) gossip: Arc<Gossip>,
    pub(crate) membership: Arc<Membership>,
    transport: Arc<GossipState>,
    pub(crate) registrations: Arc<Registrations>,
    /// Remote refs the receptionist looked up, reused while they live.
    pub(crate) proxies: dashmap::DashMap<ProxyKey, Box<dyn std::any::Any + Send + Sync>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    state: AtomicU8,
}

impl Inner {
    pub(crate) fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) != STOPPED
    }

    /// Stops every task and the gossip server at once.
    fn stop(&self) -> Option<ChitchatHandle> {
        self.state.store(STOPPED, Ordering::Release);
        for task in std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
        {
            task.abort();
        }
        self.registrations.abort_watchers();
        self.gossip.take()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(handle) = self.stop() {
            handle.abort();
        }
    }
}

/// Resolves seeds to socket addresses: literal addresses as they are, names to every
/// address they resolve to. Names that do not resolve now are logged and skipped (they are
/// tried again at the next refresh).
pub(crate) async fn resolve_seeds(seeds: &[String]) -> Vec<SocketAddr> {
    let mut resolved = Vec::new();
    for seed in seeds {
        if let Ok(addr) = seed.parse::<SocketAddr>() {
            resolved.push(addr);
            continue;
        }
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => resolved.extend(addrs),
            Err(error) => tracing::warn!(%seed, %error, "seed does not resolve (yet)"),
        }
    }
    let mut seen = HashSet::new();
    resolved.retain(|addr| seen.insert(*addr));
    resolved
}

/// The load of `system`'s actors (remote refs' proxies and the root guardian, which have no
/// parent, excluded).
fn measure(system: &ActorSystem) -> NodeLoad {
    let mut load = NodeLoad::default();
    for actor in system.actors() {
        if actor.parent.is_none() {
            continue;
        }
        load.actors += 1;
        load.total_depth += actor.stats.depth;
        load.max_depth = load.max_depth.max(actor.stats.depth);
    }
    load
}

impl Cluster {
    /// Joins (or starts) the cluster: binds the gossip socket, publishes this node (its
    /// [`Remote`] address, roles and load), contacts the seeds, and starts gossiping.
    ///
    /// Waits for a first answer from a seed, at most
    /// [`join_timeout`](ClusterConfig::join_timeout); if none answers the node goes on alone
    /// and keeps trying them. Fails if the configuration is invalid, the socket cannot be
    /// bound, or a seed refuses us (another cluster name or secret) before anyone accepts us.
    pub async fn join(
        system: &ActorSystem,
        remote: &Remote,
        config: ClusterConfig,
    ) -> Result<Cluster, ClusterError> {
        config.validate()?;
        let socket = tokio::net::UdpSocket::bind(config.gossip_listen)
            .await
            .map_err(ClusterError::Bind)?;
        let bound = socket.local_addr().map_err(ClusterError::Bind)?;
        let gossip_addr = config.gossip_advertise.unwrap_or(bound);
        let transport =
            GossipState::new(&config.cluster, &config.secret).map_err(ClusterError::Start)?;
        let node = remote.node().clone();
        let seeds: Vec<SocketAddr> = resolve_seeds(&config.seeds)
            .await
            .into_iter()
            .filter(|addr| *addr != gossip_addr && *addr != bound)
            .collect();

        let fd = &config.failure_detection;
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(
                meta::node_id_text(node.node_id),
                node.incarnation,
                gossip_addr,
            ),
            cluster_id: config.cluster.clone(),
            gossip_interval: fd.gossip_interval,
            listen_addr: bound,
            seed_nodes: seeds.iter().map(ToString::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: fd.phi_threshold,
                sampling_window_size: fd.sampling_window,
                max_interval: fd.max_interval,
                initial_interval: fd.gossip_interval,
                dead_node_grace_period: fd.dead_node_grace_period,
            },
            marked_for_deletion_grace_period: fd.dead_node_grace_period,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let load = measure(system);
        let roles: Vec<&str> = config.roles.iter().map(String::as_str).collect();
        let up_since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let initial = vec![
            (meta::REMOTE.to_owned(), node.addr.clone()),
            (meta::ROLES.to_owned(), roles.join(",")),
            (meta::STATUS.to_owned(), meta::STATUS_UP.to_owned()),
            (meta::LOAD.to_owned(), meta::load_value(0, &load)),
            (meta::UP_SINCE.to_owned(), up_since.to_string()),
        ];
        let mut first_answer = transport.first_answer();
        let handle = spawn_chitchat(
            chitchat_config,
            initial,
            &GossipTransport::new(
                socket,
                transport.clone(),
                #[cfg(feature = "fault-injection")]
                remote.link_cuts(),
            ),
        )
        .await
        .map_err(|e| ClusterError::Start(e.to_string()))?;
        let gossip = Arc::new(Gossip {
            chitchat: handle.chitchat(),
            handle: Mutex::new(Some(handle)),
        });
        let myself = Member {
            node: node.clone(),
            gossip_addr,
            roles: config.roles.clone(),
            load,
            status: MemberStatus::Up,
        };
        let joining_for = fd.gossip_interval.mul_f64(fd.phi_threshold) + fd.down_after;
        let membership = Arc::new(Membership::new(
            myself,
            up_since,
            fd.down_after,
            joining_for,
            config.downing.clone(),
        ));
        remote.set_admission(Arc::new(MembershipAdmission(Arc::downgrade(&membership))));
        let inner = Arc::new(Inner {
            system: system.clone(),
            remote: remote.clone(),
            node,
            gossip_addr,
            gossip,
            membership,
            transport,
            registrations: Arc::new(Registrations::default()),
            proxies: dashmap::DashMap::new(),
            tasks: Mutex::new(Vec::new()),
            state: AtomicU8::new(RUNNING),
            config,
        });
        inner.start_tasks();
        tracing::info!(node = %inner.node, gossip = %gossip_addr, seeds = ?seeds, "joining the cluster");

        if !seeds.is_empty() {
            let answer = tokio::time::timeout(
                inner.config.join_timeout,
                first_answer.wait_for(|answer| *answer != FirstAnswer::Nothing),
            )
            .await;
            if let Ok(Ok(answer)) = answer {
                if let FirstAnswer::Refused(seed, reason) = *answer {
                    if let Some(handle) = inner.stop() {
                        handle.abort();
                    }
                    return Err(ClusterError::Refused { seed, reason });
                }
            } else {
                tracing::warn!(seeds = ?seeds, timeout = ?inner.config.join_timeout, "no seed answered; running alone until one does");
            }
        }
        Ok(Cluster { inner })
    }

    /// This node's address, node id and incarnation (its [`Remote`]'s).
    pub fn node(&self) -> &NodeAddr {
        &self.inner.node
    }

    /// Where this node gossips.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.gossip_addr
    }

    /// This node as a member.
    pub fn myself(&self) -> Member {
        self.inner
            .membership
            .myself()
            .unwrap_or_else(|| unreachable_self(&self.inner))
    }

    /// The members that are not gone (joining, up, unreachable; this node included), sorted by
    /// address.
    pub fn members(&self) -> Vec<Member> {
        self.inner.membership.members()
    }

    /// The members that are not gone, oldest first (by when each joined, as it published;
    /// equal times by address): what a cluster singleton's placement ("the oldest up member
    /// with the role") and keep-oldest downing go by.
    pub fn members_by_age(&self) -> Vec<Member> {
        self.inner.membership.members_by_age()
    }

    /// Membership events: first the current members (one event each, for their current
    /// status), then every change, in order. Ends after this node leaves or stops.
    pub fn events(&self) -> ClusterEvents {
        self.inner.membership.subscribe()
    }

    /// The cluster-wide registry of services.
    pub fn receptionist(&self) -> Receptionist {
        Receptionist {
            inner: self.inner.clone(),
        }
    }

    /// A group router over the actors registered under `key` on all up members, kept up to
    /// date as they come and go. See [`ClusterRouterBuilder`].
    pub fn router<A, M>(&self, key: &ServiceKey<A>) -> ClusterRouterBuilder<A, M>
    where
        A: Actor + Handler<M>,
        M: Message,
    {
        ClusterRouterBuilder::new(self.clone(), key.clone())
    }

    /// Whether this node is down: the downing strategy took its side of a partition down,
    /// or another member declared it down (it was paused, or cut off). A down node no
    /// longer gossips, is listed nowhere, and every member's transport refuses it; it is to
    /// be restarted as a new incarnation.
    pub fn is_down(&self) -> bool {
        self.inner.membership.downed().borrow().is_some()
    }

    /// Resolves once this node is down (see [`is_down`](Self::is_down)), saying why. Never
    /// resolves for a node that leaves gracefully.
    pub async fn downed(&self) -> String {
        let mut downed = self.inner.membership.downed();
        loop {
            if let Some(why) = downed.borrow_and_update().clone() {
                return why;
            }
            if downed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// What split-brain resolution has done on this node: decisions by outcome, members
    /// downed, pauses detected, and whether this node is down.
    pub fn downing_stats(&self) -> crate::DowningStats {
        self.inner
            .membership
            .downing_counters
            .snapshot(self.is_down())
    }

    /// Counters of the gossip transport (datagrams, rejections, refusals).
    pub fn gossip_stats(&self) -> GossipStats {
        self.inner.transport.stats()
    }

    /// Leaves gracefully: announces it, waits until every joining or up member has
    /// acknowledged (at most [`leave_timeout`](ClusterConfig::leave_timeout)), then stops
    /// gossiping. The
    /// others see this node `Left`, never `Down`; its registry entries disappear from their
    /// listings at once. Local subscribers get `MemberLeft` for this node, then their streams
    /// end. The actor system and the remote transport keep running: shut them down after.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let inner = &self.inner;
        if inner
            .state
            .compare_exchange(RUNNING, LEAVING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(ClusterError::Stopped);
        }
        // Everyone this node has heard of so far must hear of the departure.
        let every = inner.config.failure_detection.gossip_interval / 2;
        let _ = tokio::time::timeout(every * 8, inner.membership.catch_up()).await;
        let mut waiting = inner.membership.reachable_peers();
        inner
            .gossip
            .chitchat
            .lock()
            .await
            .self_node_state()
            .set(meta::STATUS, meta::STATUS_LEAVING);
        let deadline = Instant::now() + inner.config.leave_timeout;
        loop {
            waiting.retain(|(peer, _)| inner.membership.awaiting_ack(*peer));
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    unacknowledged = waiting.len(),
                    "leaving without every member's acknowledgement"
                );
                break;
            }
            for (_, addr) in &waiting {
                inner.gossip.gossip_with(*addr);
            }
            tokio::time::sleep(every).await;
        }
        inner.membership.finish(true);
        inner.registrations.release_names(&inner.system);
        if let Some(handle) = inner.stop() {
            if let Err(error) = handle.shutdown().await {
                tracing::debug!(%error, "gossip server ended with an error");
            }
        }
        tracing::info!(node = %inner.node, "left the cluster");
        Ok(())
    }

    /// Stops gossiping at once, telling no one, as a crash would: the others see this node
    /// unreachable, then down. For tests and for processes about to die anyway; use
    /// [`leave`](Self::leave) otherwise.
    pub fn kill(&self) {
        if let Some(handle) = self.inner.stop() {
            handle.abort();
        }
        self.inner.membership.finish(false);
    }
}

fn unreachable_self(inner: &Inner) -> Member {
    // The membership always holds this node's record; this is only a fallback.
    Member {
        node: inner.node.clone(),
        gossip_addr: inner.gossip_addr,
        roles: inner.config.roles.clone(),
        load: NodeLoad::default(),
        status: MemberStatus::Up,
    }
}

impl Inner {
    fn start_tasks(self: &Arc<Self>) {
        let interval = self.config.failure_detection.gossip_interval;
        let driver = tokio::spawn(drive(
            self.gossip.chitchat.clone(),
            self.membership.clone(),
            interval / 2,
            self.config.failure_detection.down_after,
        ));
        let load = tokio::spawn(refresh_load(
            self.system.clone(),
            self.gossip.chitchat.clone(),
            self.registrations.clone(),
            self.config.load_refresh,
        ));
        let seeds = tokio::spawn(refresh_seeds(
            self.config.seeds.clone(),
            self.gossip.clone(),
            self.membership.clone(),
            self.gossip_addr,
            self.config.seed_refresh,
        ));
        let down = tokio::spawn(quarantine_the_down(
            self.membership.subscribe(),
            self.remote.clone(),
            self.node.clone(),
        ));
        let refused = tokio::spawn({
            let remote = self.remote.clone();
            let membership = self.membership.clone();
            async move {
                let by = remote.quarantined().await;
                membership.down_self(format!(
                    "{by} refused this node: the cluster declared it down"
                ));
            }
        });
        let stopper = tokio::spawn(stop_when_down(Arc::downgrade(self)));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([driver, load, seeds, down, refused, stopper]);
    }
}

/// The membership layer's say in the transport's handshakes (see `Membership::admit`).
struct MembershipAdmission(std::sync::Weak<Membership>);

impl postbox_remote::Admission for MembershipAdmission {
    fn check(&self, node: &NodeAddr) -> Result<(), (postbox_remote::RefuseReason, String)> {
        match self.0.upgrade() {
            Some(membership) => membership.admit(node),
            None => Ok(()),
        }
    }
}

/// A node that is down stops gossiping at once, as a crashed one would, and its local
/// listings and event streams end.
async fn stop_when_down(inner: std::sync::Weak<Inner>) {
    let Some(mut downed) = inner.upgrade().map(|inner| inner.membership.downed()) else {
        return;
    };
    if downed.wait_for(Option::is_some).await.is_err() {
        return;
    }
    if let Some(inner) = inner.upgrade() {
        inner.membership.finish(false);
        inner.registrations.release_names(&inner.system);
        // Last: this task is one of those `stop` aborts.
        if let Some(handle) = inner.stop() {
            handle.abort();
        }
    }
}

/// A member declared down is quarantined in the transport: its connection is told why and
/// closed at once (asks in flight to it fail with `NodeDown` and refs to it end, even if the
/// node hangs with its socket open), and it is refused from then on, so that it learns it is
/// no longer a member if it comes back.
async fn quarantine_the_down(mut events: ClusterEvents, remote: Remote, me: NodeAddr) {
    loop {
        match events.recv().await {
            Ok(ClusterEvent::MemberDown(member)) if member.node != me => {
                if remote.quarantine(&member.node) {
                    tracing::info!(node = %member.node, "down: quarantined, connection closed");
                }
            }
            Ok(_) | Err(crate::membership::EventsError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

/// How many of the incarnations this node declared down it keeps publishing …
const DOWN_MARKERS_MAX: usize = 256;
/// … and for how long.
const DOWN_MARKERS_FOR: Duration = Duration::from_secs(3_600);

/// The membership driver: observe chitchat, apply, write acknowledgements and verdicts back.
/// A round that comes much later than planned means this node was paused (see `downing.rs`).
async fn drive(
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    membership: Arc<Membership>,
    every: Duration,
    down_after: Duration,
) {
    let mut observer = Observer::default();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pause = down_after.max(every * 10);
    let mut last = Instant::now();
    let mut markers: VecDeque<(meta::Identity, Instant)> = VecDeque::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = membership.poke.notified() => {}
        }
        let now = Instant::now();
        let gap = now.duration_since(last);
        last = now;
        if gap > pause {
            membership.paused(now, gap);
        }
        let observation = observer.observe(&*chitchat.lock().await);
        let writes = membership.apply(observation, now);
        let expired = markers
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > DOWN_MARKERS_FOR);
        if writes.ack.is_empty() && writes.unack.is_empty() && writes.downed.is_empty() && !expired
        {
            continue;
        }
        let mut chitchat = chitchat.lock().await;
        let state = chitchat.self_node_state();
        for identity in writes.ack {
            state.set(meta::ack_key(identity), "");
        }
        for identity in writes.unack {
            state.delete(&meta::ack_key(identity));
        }
        for identity in writes.downed {
            state.set(meta::down_key(identity), "");
            markers.push_back((identity, now));
        }
        while markers.len() > DOWN_MARKERS_MAX
            || markers
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) > DOWN_MARKERS_FOR)
        {
            if let Some((identity, _)) = markers.pop_front() {
                state.delete(&meta::down_key(identity));
            }
        }
    }
}

/// Measures the load every `every` and publishes it, with each registered actor's depth.
async fn refresh_load(
    system: ActorSystem,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    registrations: Arc<Registrations>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        ticks.tick().await;
        seq += 1;
        let load = measure(&system);
        let depths = registrations.depths(&system);
        let mut chitchat = chitchat.lock().await;
        let state = chitchat.self_node_state();
        for (key, value) in depths {
            // Setting an unchanged value is a no-op: only changed depths are gossiped.
            state.set(key, value);
        }
        state.set(meta::LOAD, meta::load_value(seq, &load));
    }
}

/// Resolves the seeds every `every` and contacts those that are not members yet.
async fn refresh_seeds(
    seeds: Vec<String>,
    gossip: Arc<Gossip>,
    membership: Arc<Membership>,
    me: SocketAddr,
    every: Duration,
) {
    if seeds.is_empty() {
        return;
    }
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await; // `join` resolved them just now.
    loop {
        ticks.tick().await;
        let known = membership.gossip_addrs();
        for addr in resolve_seeds(&seeds).await {
            if addr != me && !known.contains(&addr) {
                tracing::debug!(%addr, "contacting a seed that is not a member");
                gossip.gossip_with(addr);
            }
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.node)
            .field("gossip_addr", &self.inner.gossip_addr)
            .field("members", &self.inner.membership.members().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::split_host_port;

    #[tokio::test]
    async fn seeds_resolve_to_every_address_of_a_name() {
        let resolved = resolve_seeds(&[
            "127.0.0.1:7001".into(),
            "localhost:7002".into(),
            "127.0.0.1:7001".into(),
        ])
        .await;
        assert_eq!(
            resolved[0],
            "127.0.0.1:7001".parse().unwrap(),
            "literal first, deduplicated"
        );
        assert_eq!(resolved.iter().filter(|a| a.port() == 7001).count(), 1);
        let localhost: Vec<_> = resolved.iter().filter(|a| a.port() == 7002).collect();
        assert!(!localhost.is_empty(), "{resolved:?}");
        assert!(
            localhost.iter().all(|a| a.ip().is_loopback()),
            "{resolved:?}"
        );
        let unknown = resolve_seeds(&["no-such-host.invalid:7000".into()]).await;
        assert!(unknown.is_empty());
    }

    #[test]
    fn seeds_are_host_and_port() {
        assert_eq!(split_host_port("db.local:7000"), Ok(("db.local", 7000)));
        assert_eq!(split_host_port("[::1]:7000"), Ok(("[::1]", 7000)));
        assert!(split_host_port("db.local").is_err());
    }
}

//! The membership view: chitchat's node states and failure detector, turned into members with
//! statuses, events in order, and the receptionist's listings.
//!
//! A driver task observes chitchat every half gossip interval (node states, re-parsed only
//! when their version changed, and the live set) and applies the observation here, under one
//! write lock, in which it also sends the events — so a subscriber that snapshots under the
//! read lock and then listens sees every change exactly once.

use crate::downing::{Counted, Decision, DowningCounters, DowningStrategy};
use crate::member::{ClusterEvent, Member, MemberStatus};
use crate::meta::{self, EntryInfo, Identity, NodeInfo};
use chitchat::{Chitchat, ChitchatId};
use postbox_remote::{NodeAddr, RefuseReason};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Notify};

/// How many events a subscriber may fall behind before it is told it lagged.
const EVENT_BUFFER: usize = 1_024;
/// Retired identities (down or left) are remembered this long, so that late gossip about
/// them never brings them back …
const RETIRED_FOR: Duration = Duration::from_secs(3_600);
/// … and at most this many.
const RETIRED_MAX: usize = 65_536;

/// The load a remote actor's node last gossiped for it.
#[derive(Debug, Default)]
pub(crate) struct ReportedLoad {
    /// Messages waiting in its mailbox, as of the report.
    pub(crate) depth: AtomicUsize,
    /// The node's load report sequence number when it was measured.
    pub(crate) seq: AtomicU64,
}

/// A receptionist entry on an up member.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) node: NodeAddr,
    pub(crate) name: String,
    pub(crate) actor_type: String,
    /// On this node.
    pub(crate) local: bool,
    pub(crate) load: Arc<ReportedLoad>,
}

struct Record {
    member: Member,
    first_seen: Instant,
    acks: HashSet<Identity>,
    entries: Vec<EntryInfo>,
    load_seq: u64,
    /// When it joined, as it published (ms since the Unix epoch).
    up_since: u64,
}

#[derive(Default)]
struct View {
    members: HashMap<Identity, Record>,
    /// Identities that are gone, with when and how (down or left).
    retired: HashMap<Identity, (Instant, MemberStatus)>,
    /// Service key → entries on up members, sorted by node address and name.
    listings: BTreeMap<String, Vec<Entry>>,
    loads: HashMap<(Identity, String), Arc<ReportedLoad>>,
    /// The members the downing strategy last saw unreachable (sorted) …
    unreachable: Vec<Identity>,
    /// … and since when that set has not changed.
    stable_since: Option<Instant>,
    /// No downing decision before this (this node was paused and its failure detector is
    /// stale).
    quiet_until: Option<Instant>,
}

/// Whether a member in `status` can be expected to answer (to acknowledge a departure).
fn reachable(status: MemberStatus) -> bool {
    matches!(status, MemberStatus::Joining | MemberStatus::Up)
}

/// What the driver read from chitchat.
pub(crate) struct Observation {
    nodes: Vec<Observed>,
}

struct Observed {
    id: ChitchatId,
    live: bool,
    info: Arc<Result<NodeInfo, String>>,
}

/// What the driver must write back into this node's gossip state.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// Nodes seen leaving: acknowledge.
    pub(crate) ack: Vec<Identity>,
    /// Acknowledgements no longer needed (the leaver is gone).
    pub(crate) unack: Vec<Identity>,
    /// Incarnations this node just declared down: published, so that they learn it.
    pub(crate) downed: Vec<Identity>,
}

pub(crate) struct Membership {
    me: Identity,
    down_after: Duration,
    /// How long a member may stay `Joining` without ever being confirmed alive; also how
    /// long a paused node waits before it decides anything.
    joining_for: Duration,
    strategy: DowningStrategy,
    /// What the strategy decided so far, and pauses seen.
    pub(crate) downing_counters: DowningCounters,
    /// Why this node is down, once it is (by the downing strategy, or a peer's verdict).
    downed: watch::Sender<Option<String>>,
    view: RwLock<View>,
    events: Mutex<Option<broadcast::Sender<ClusterEvent>>>,
    listings_changed: Mutex<Option<watch::Sender<u64>>>,
    listings_rx: watch::Receiver<u64>,
    /// Wakes the driver early (a local registration changed).
    pub(crate) poke: Notify,
    /// Counts the driver's applied observations.
    applied: watch::Sender<u64>,
}

impl Membership {
    pub(crate) fn new(
        myself: Member,
        up_since: u64,
        down_after: Duration,
        joining_for: Duration,
        strategy: DowningStrategy,
    ) -> Self {
        let me = (myself.node.node_id, myself.node.incarnation);
        let mut view = View::default();
        view.members.insert(
            me,
            Record {
                member: myself,
                first_seen: Instant::now(),
                acks: HashSet::new(),
                entries: Vec::new(),
                load_seq: 0,
                up_since,
            },
        );
        let (listings_tx, listings_rx) = watch::channel(0);
        Self {
            me,
            down_after,
            joining_for,
            strategy,
            downing_counters: DowningCounters::default(),
            downed: watch::channel(None).0,
            view: RwLock::new(view),
            events: Mutex::new(Some(broadcast::channel(EVENT_BUFFER).0)),
            listings_changed: Mutex::new(Some(listings_tx)),
            listings_rx,
            poke: Notify::new(),
            applied: watch::channel(0).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Members that are not gone (this node included), sorted by address.
    pub(crate) fn members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .read()
            .members
            .values()
            .filter(|r| !r.member.status.is_final())
            .map(|r| r.member.clone())
            .collect();
        members.sort_by(|a, b| a.node.addr.cmp(&b.node.addr));
        members
    }

    /// Members that are not gone (this node included), oldest first: by the time each
    /// published that it joined, equal times by address.
    pub(crate) fn members_by_age(&self) -> Vec<Member> {
        let view = self.read();
        let mut members: Vec<(u64, Member)> = view
            .members
            .values()
            .filter(|r| !r.member.status.is_final())
            .map(|r| (r.up_since, r.member.clone()))
            .collect();
        members.sort_by(|(a_age, a), (b_age, b)| (a_age, &a.node.addr).cmp(&(b_age, &b.node.addr)));
        members.into_iter().map(|(_, member)| member).collect()
    }

    pub(crate) fn myself(&self) -> Option<Member> {
        self.read().members.get(&self.me).map(|r| r.member.clone())
    }

    /// Members other than this node that are joining or up (those a departure must reach),
    /// with their gossip addresses.
    pub(crate) fn reachable_peers(&self) -> Vec<(Identity, SocketAddr)> {
        self.read()
            .members
            .iter()
            .filter(|(id, r)| **id != self.me && reachable(r.member.status))
            .map(|(id, r)| (*id, r.member.gossip_addr))
            .collect()
    }

    /// Gossip addresses of every member that is not gone.
    pub(crate) fn gossip_addrs(&self) -> HashSet<SocketAddr> {
        self.read()
            .members
            .values()
            .filter(|r| !r.member.status.is_final())
            .map(|r| r.member.gossip_addr)
            .collect()
    }

    /// Whether `peer` is still joining or up and has not yet acknowledged our departure.
    pub(crate) fn awaiting_ack(&self, peer: Identity) -> bool {
        self.read()
            .members
            .get(&peer)
            .is_some_and(|r| reachable(r.member.status) && !r.acks.contains(&self.me))
    }

    pub(crate) fn is_up(&self, identity: Identity) -> bool {
        self.read()
            .members
            .get(&identity)
            .is_some_and(|r| r.member.status == MemberStatus::Up)
    }

    /// Why this node is down, once it is.
    pub(crate) fn downed(&self) -> watch::Receiver<Option<String>> {
        self.downed.subscribe()
    }

    /// Whether `node` may hold a transport connection to this node: not an incarnation
    /// declared down, and not claiming the address of another member that is up.
    pub(crate) fn admit(&self, node: &NodeAddr) -> Result<(), (RefuseReason, String)> {
        let view = self.read();
        let identity = (node.node_id, node.incarnation);
        if let Some((_, MemberStatus::Down)) = view.retired.get(&identity) {
            return Err((
                RefuseReason::Quarantined,
                format!("{node} was declared down by the cluster; restart as a new incarnation"),
            ));
        }
        let holder = view.members.iter().find(|(id, r)| {
            **id != identity
                && r.member.status == MemberStatus::Up
                && r.member.node.addr == node.addr
        });
        if let Some((_, holder)) = holder {
            return Err((
                RefuseReason::AddressInUse,
                format!(
                    "{} belongs to member {}, which is up",
                    node.addr, holder.member.node
                ),
            ));
        }
        Ok(())
    }

    /// This node was paused (its driver did not run for `gap`): its failure detector is
    /// stale, so it decides nothing until fresh gossip has had time to arrive.
    pub(crate) fn paused(&self, now: Instant, gap: Duration) {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        view.quiet_until = Some(now + self.joining_for);
        view.stable_since = Some(now);
        self.downing_counters.paused();
        tracing::warn!(
            paused_for = ?gap,
            quiet_for = ?self.joining_for,
            "this node was paused; no member is declared down until its view is fresh"
        );
    }

    /// Declares this node down (`why`): tells local subscribers, and whoever waits on
    /// [`downed`](Self::downed). The caller stops the node's gossip.
    pub(crate) fn down_self(&self, why: String) {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let mut events = Vec::new();
        self.mark_self_down(&mut view, why, &mut events);
        drop(view);
        self.send(events);
    }

    fn mark_self_down(&self, view: &mut View, why: String, events: &mut Vec<ClusterEvent>) {
        let Some(me) = view.members.get_mut(&self.me) else {
            return;
        };
        if me.member.status.is_final() {
            return;
        }
        me.member.status = MemberStatus::Down;
        events.push(ClusterEvent::MemberDown(me.member.clone()));
        tracing::error!(node = %me.member.node, reason = %why, "this node is down: it is no longer a member of the cluster");
        self.downed.send_replace(Some(why));
    }

    fn send(&self, events: Vec<ClusterEvent>) {
        if let Some(sender) = &*self.events.lock().unwrap_or_else(PoisonError::into_inner) {
            for event in events {
                let _ = sender.send(event);
            }
        }
    }

    /// Entries for `service` on up members.
    pub(crate) fn entries(&self, service: &str) -> Vec<Entry> {
        self.read()
            .listings
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Changes whenever any service's listing changes; closed when this node stops.
    pub(crate) fn listings_changed(&self) -> watch::Receiver<u64> {
        self.listings_rx.clone()
    }

    /// A stream of events that starts with the current state (one event per member).
    pub(crate) fn subscribe(&self) -> ClusterEvents {
        let view = self.read();
        let receiver = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(broadcast::Sender::subscribe);
        let mut current: Vec<Member> = view
            .members
            .values()
            .filter(|r| !r.member.status.is_final())
            .map(|r| r.member.clone())
            .collect();
        current.sort_by(|a, b| a.node.addr.cmp(&b.node.addr));
        ClusterEvents {
            initial: current.into_iter().map(ClusterEvent::of).collect(),
            receiver,
        }
    }

    /// Returns once the driver has applied an observation made after this call (or the
    /// driver is gone).
    pub(crate) async fn catch_up(&self) {
        let mut applied = self.applied.subscribe();
        let start = *applied.borrow_and_update();
        self.poke.notify_one();
        // The apply in progress may have observed before this call: wait for the next one.
        let _ = applied.wait_for(|count| *count >= start + 2).await;
    }

    /// Marks this node as left (after a graceful leave): tells local subscribers, then closes
    /// the event stream and the listings.
    pub(crate) fn finish(&self, left: bool) {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let events = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(record) = view.members.get_mut(&self.me) {
            if left && !record.member.status.is_final() {
                record.member.status = MemberStatus::Left;
                if let Some(events) = &events {
                    let _ = events.send(ClusterEvent::MemberLeft(record.member.clone()));
                }
            }
        }
        view.listings.clear();
        drop(view);
        if let Some(changed) = self
            .listings_changed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            changed.send_modify(|v| *v += 1);
        }
    }

    /// Applies what the driver observed; returns what must be written back.
    pub(crate) fn apply(&self, observation: Observation, now: Instant) -> Writes {
        let mut writes = Writes::default();
        let mut events = Vec::new();
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let view = &mut *view;
        if view
            .members
            .get(&self.me)
            .is_none_or(|me| me.member.status.is_final())
        {
            // Down or left: this node no longer has a say.
            return writes;
        }
        let mut present = HashSet::new();
        let mut verdict: Option<String> = None;
        for observed in observation.nodes {
            let Some(identity) = meta::identity_of(&observed.id) else {
                continue;
            };
            present.insert(identity);
            let Ok(info) = &*observed.info else {
                continue;
            };
            // Another node's verdict on this one counts whoever it comes from: a node that
            // was downed and passed no verdict of its own (see `downing.rs`).
            if identity != self.me && verdict.is_none() && info.downed.contains(&self.me) {
                verdict = Some(format!("{} declared this node down", info.node));
            }
            if identity == self.me {
                if let Some(me) = view.members.get_mut(&identity) {
                    me.member.load = info.load;
                    me.load_seq = info.load_seq;
                    me.entries.clone_from(&info.entries);
                    // Acknowledgements we hold for nodes that are gone can go.
                    writes.unack.extend(info.acks.iter().copied());
                }
                continue;
            }
            if view.retired.contains_key(&identity) {
                continue;
            }
            let record = view.members.entry(identity).or_insert_with(|| {
                let member = Member {
                    node: info.node.clone(),
                    gossip_addr: observed.id.gossip_advertise_addr,
                    roles: info.roles.clone(),
                    load: info.load,
                    status: MemberStatus::Joining,
                };
                events.push(ClusterEvent::MemberJoined(member.clone()));
                Record {
                    member,
                    first_seen: now,
                    acks: HashSet::new(),
                    entries: Vec::new(),
                    load_seq: 0,
                    up_since: info.up_since,
                }
            });
            record.up_since = info.up_since;
            record.member.load = info.load;
            record.load_seq = info.load_seq;
            record.entries.clone_from(&info.entries);
            record.acks.clone_from(&info.acks);
            let status = record.member.status;
            let next = if info.leaving {
                writes.ack.push(identity);
                Some(MemberStatus::Left)
            } else {
                match (status, observed.live) {
                    (MemberStatus::Joining | MemberStatus::Unreachable, true) => {
                        Some(MemberStatus::Up)
                    }
                    (MemberStatus::Up, false) => Some(MemberStatus::Unreachable),
                    (MemberStatus::Joining, false)
                        if now.duration_since(record.first_seen) >= self.joining_for =>
                    {
                        Some(MemberStatus::Down)
                    }
                    _ => None,
                }
            };
            if let Some(next) = next {
                record.member.status = next;
                events.push(ClusterEvent::of(record.member.clone()));
                if next == MemberStatus::Down {
                    writes.downed.push(identity);
                }
                if next == MemberStatus::Up {
                    let replaced = record.member.clone();
                    self.replace_older_incarnations(view, identity, &replaced, &mut events);
                }
            }
        }
        // A node chitchat no longer knows (forgotten after its grace period) is gone.
        for (identity, record) in view.members.iter_mut() {
            if *identity != self.me
                && !present.contains(identity)
                && !record.member.status.is_final()
            {
                record.member.status = MemberStatus::Down;
                events.push(ClusterEvent::MemberDown(record.member.clone()));
            }
        }
        // A new node at this node's own address is an older incarnation of us.
        if let Some(me) = view.members.get(&self.me).map(|r| r.member.clone()) {
            self.replace_older_incarnations(view, self.me, &me, &mut events);
        }
        match verdict {
            Some(why) => self.mark_self_down(view, why, &mut events),
            None => self.resolve(view, now, &mut writes, &mut events),
        }
        // Retire the gone; forget retirements long past.
        let gone: Vec<Identity> = view
            .members
            .iter()
            .filter(|(id, r)| **id != self.me && r.member.status.is_final())
            .map(|(id, _)| *id)
            .collect();
        for identity in gone {
            if let Some(record) = view.members.remove(&identity) {
                view.retired.insert(identity, (now, record.member.status));
            }
        }
        view.retired
            .retain(|_, (at, _)| now.duration_since(*at) < RETIRED_FOR);
        if view.retired.len() > RETIRED_MAX {
            let mut oldest: Vec<(Identity, Instant)> = view
                .retired
                .iter()
                .map(|(id, (at, _))| (*id, *at))
                .collect();
            oldest.sort_by_key(|(_, at)| *at);
            for (identity, _) in oldest.iter().take(view.retired.len() - RETIRED_MAX) {
                view.retired.remove(identity);
            }
        }
        writes.unack.retain(|identity| !present.contains(identity));
        let listings_changed = self.rebuild_listings(view);
        for event in &events {
            tracing::info!(member = %event.member().node, status = ?event.member().status, "cluster membership");
        }
        self.send(events);
        self.applied.send_modify(|count| *count += 1);
        if listings_changed {
            if let Some(changed) = &*self
                .listings_changed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
            {
                changed.send_modify(|v| *v += 1);
            }
        }
        writes
    }

    /// Split-brain resolution (see `downing.rs`): once the unreachable members have been the
    /// same for `down_after`, the strategy decides which side goes.
    fn resolve(
        &self,
        view: &mut View,
        now: Instant,
        writes: &mut Writes,
        events: &mut Vec<ClusterEvent>,
    ) {
        let mut unreachable: Vec<Identity> = view
            .members
            .iter()
            .filter(|(_, r)| r.member.status == MemberStatus::Unreachable)
            .map(|(id, _)| *id)
            .collect();
        unreachable.sort_unstable();
        if unreachable != view.unreachable {
            view.unreachable.clone_from(&unreachable);
            view.stable_since = Some(now);
        }
        if unreachable.is_empty()
            || view.quiet_until.is_some_and(|until| now < until)
            || view
                .stable_since
                .is_some_and(|since| now.duration_since(since) < self.down_after)
        {
            return;
        }
        let counted = |r: &Record| Counted {
            addr: r.member.node.addr.clone(),
            up_since: r.up_since,
        };
        let reachable: Vec<Counted> = view
            .members
            .values()
            .filter(|r| r.member.status == MemberStatus::Up)
            .map(counted)
            .collect();
        let cut_off: Vec<Counted> = unreachable
            .iter()
            .filter_map(|id| view.members.get(id))
            .map(counted)
            .collect();
        let decision = self.strategy.decide(&reachable, &cut_off);
        tracing::warn!(
            strategy = ?self.strategy,
            reachable = reachable.len(),
            unreachable = cut_off.len(),
            ?decision,
            "downing decision"
        );
        let downed_before = writes.downed.len();
        if matches!(decision, Decision::KeepThisSide | Decision::DownEveryone) {
            for identity in &unreachable {
                if let Some(record) = view.members.get_mut(identity) {
                    record.member.status = MemberStatus::Down;
                    events.push(ClusterEvent::MemberDown(record.member.clone()));
                    writes.downed.push(*identity);
                }
            }
        }
        // Counted before this node marks itself down: whoever learns that it is down (its
        // `downed()` watchers) finds the decision that took it down already counted.
        self.downing_counters
            .decided(decision, writes.downed.len() - downed_before);
        if matches!(decision, Decision::DownThisSide | Decision::DownEveryone) {
            let why = format!(
                "the downing strategy ({:?}) took this side of the partition down: {} of {} members reachable",
                self.strategy,
                reachable.len(),
                reachable.len() + cut_off.len()
            );
            self.mark_self_down(view, why, events);
        }
        view.unreachable.clear();
        view.stable_since = None;
    }

    /// An address hosts one incarnation: once `newer` is up, every other member at its remote
    /// or gossip address is down.
    fn replace_older_incarnations(
        &self,
        view: &mut View,
        newer: Identity,
        member: &Member,
        events: &mut Vec<ClusterEvent>,
    ) {
        for (identity, record) in view.members.iter_mut() {
            if *identity == newer || *identity == self.me || record.member.status.is_final() {
                continue;
            }
            if record.member.node.addr == member.node.addr
                || record.member.gossip_addr == member.gossip_addr
            {
                record.member.status = MemberStatus::Down;
                events.push(ClusterEvent::MemberDown(record.member.clone()));
            }
        }
    }

    /// Recomputes the listings from the up members; true if any listing changed (entries
    /// added or removed; depths alone are not a change).
    fn rebuild_listings(&self, view: &mut View) -> bool {
        let mut listings: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        let mut used = HashSet::new();
        for (identity, record) in &view.members {
            if record.member.status != MemberStatus::Up {
                continue;
            }
            for info in &record.entries {
                let key = (*identity, info.name.clone());
                let load = view.loads.entry(key.clone()).or_default().clone();
                load.depth.store(info.depth, Relaxed);
                load.seq.store(record.load_seq, Relaxed);
                used.insert(key);
                listings
                    .entry(info.service.clone())
                    .or_default()
                    .push(Entry {
                        node: record.member.node.clone(),
                        name: info.name.clone(),
                        actor_type: info.actor_type.clone(),
                        local: *identity == self.me,
                        load,
                    });
            }
        }
        view.loads.retain(|key, _| used.contains(key));
        for entries in listings.values_mut() {
            entries.sort_by(|a, b| (&a.node.addr, &a.name).cmp(&(&b.node.addr, &b.name)));
        }
        let shape = |listings: &BTreeMap<String, Vec<Entry>>| {
            listings
                .iter()
                .map(|(service, entries)| {
                    let names: Vec<(u64, u64, &str, &str)> = entries
                        .iter()
                        .map(|e| {
                            (
                                e.node.node_id,
                                e.node.incarnation,
                                e.name.as_str(),
                                e.actor_type.as_str(),
                            )
                        })
                        .collect();
                    (service.clone(), format!("{names:?}"))
                })
                .collect::<Vec<_>>()
        };
        let changed = shape(&view.listings) != shape(&listings);
        view.listings = listings;
        changed
    }
}

/// Reads chitchat's state for [`Membership::apply`], parsing a node's keys only when its
/// version changed since the last observation.
#[derive(Default)]
pub(crate) struct Observer {
    parsed: HashMap<ChitchatId, (u64, Arc<Result<NodeInfo, String>>)>,
}

impl Observer {
    pub(crate) fn observe(&mut self, chitchat: &Chitchat) -> Observation {
        let me = chitchat.self_chitchat_id();
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut nodes = Vec::new();
        let mut seen = HashSet::new();
        for (id, state) in chitchat.node_states() {
            let version = state.max_version();
            let info = match self.parsed.get(id) {
                Some((parsed_at, info)) if *parsed_at == version => info.clone(),
                _ => {
                    let info = Arc::new(meta::read_node(id, state));
                    if let Err(why) = &*info {
                        tracing::debug!(node = ?id, %why, "gossip state not usable yet");
                    }
                    self.parsed.insert(id.clone(), (version, info.clone()));
                    info
                }
            };
            seen.insert(id.clone());
            nodes.push(Observed {
                id: id.clone(),
                live: id == me || live.contains(id),
                info,
            });
        }
        self.parsed.retain(|id, _| seen.contains(id));
        Observation { nodes }
    }
}

/// Membership events of one subscriber: first one event per current member (its current
/// status), then every change as it happens. See [`Cluster::events`](crate::Cluster::events).
#[derive(Debug)]
pub struct ClusterEvents {
    initial: VecDeque<ClusterEvent>,
    receiver: Option<broadcast::Receiver<ClusterEvent>>,
}

/// Why no event came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventsError {
    /// The subscriber fell more than 1024 events behind; that many were skipped. Read
    /// [`Cluster::members`](crate::Cluster::members) to catch up, then go on receiving.
    Lagged(u64),
    /// This node left the cluster or stopped: no more events.
    Closed,
}

impl std::fmt::Display for EventsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventsError::Lagged(n) => write!(f, "{n} cluster events skipped (subscriber too slow)"),
            EventsError::Closed => f.write_str("this node left the cluster"),
        }
    }
}

impl std::error::Error for EventsError {}

impl ClusterEvents {
    /// The next event.
    pub async fn recv(&mut self) -> Result<ClusterEvent, EventsError> {
        if let Some(event) = self.initial.pop_front() {
            return Ok(event);
        }
        let Some(receiver) = &mut self.receiver else {
            return Err(EventsError::Closed);
        };
        match receiver.recv().await {
            Ok(event) => Ok(event),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(EventsError::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => Err(EventsError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::NodeLoad;
    use std::collections::BTreeSet;

    /// Member `i` of a cluster on loopback, as this node would read it from gossip.
    fn node(i: u64) -> (ChitchatId, NodeInfo) {
        let gossip: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16));
        let info = NodeInfo {
            node: NodeAddr {
                addr: format!("127.0.0.1:{}", 4000 + i),
                node_id: i + 1,
                incarnation: 1,
            },
            roles: BTreeSet::new(),
            leaving: false,
            load_seq: 0,
            load: NodeLoad::default(),
            entries: Vec::new(),
            acks: HashSet::new(),
            up_since: i,
            downed: HashSet::new(),
        };
        (ChitchatId::new(meta::node_id_text(i + 1), 1, gossip), info)
    }

    /// Every node, `cut` ones not live.
    fn seen(nodes: &[(ChitchatId, NodeInfo)], cut: &[usize]) -> Observation {
        Observation {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, (id, info))| Observed {
                    id: id.clone(),
                    live: !cut.contains(&i),
                    info: Arc::new(Ok(info.clone())),
                })
                .collect(),
        }
    }

    /// The membership of node `me`, keep-majority after `down_after`.
    fn keeping_majority(me: &(ChitchatId, NodeInfo), down_after: Duration) -> Membership {
        let (id, info) = me;
        Membership::new(
            Member {
                node: info.node.clone(),
                gossip_addr: id.gossip_advertise_addr,
                roles: BTreeSet::new(),
                load: NodeLoad::default(),
                status: MemberStatus::Up,
            },
            0,
            down_after,
            Duration::from_secs(60),
            DowningStrategy::KeepMajority,
        )
    }

    fn unreachable(membership: &Membership) -> usize {
        membership
            .members()
            .iter()
            .filter(|m| m.status == MemberStatus::Unreachable)
            .count()
    }

    /// Akka's stable-after: no decision until the unreachable members have stayed the same
    /// for `down_after`, and a change of that set starts the wait again.
    #[test]
    fn downing_waits_until_the_unreachable_set_has_held_still_for_down_after() {
        let nodes: Vec<_> = (0..5).map(node).collect();
        let down_after = Duration::from_secs(1);
        let membership = keeping_majority(&nodes[0], down_after);
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        membership.apply(seen(&nodes, &[]), at(0));
        assert_eq!(membership.members().len(), 5);
        assert_eq!(unreachable(&membership), 0);

        // Node 3 is cut off; half a period later node 4 too: the wait starts again.
        membership.apply(seen(&nodes, &[3]), at(1_000));
        assert_eq!(unreachable(&membership), 1);
        membership.apply(seen(&nodes, &[3, 4]), at(1_500));
        assert_eq!(unreachable(&membership), 2);
        // A full period after the first cut, but not after the second: nothing decided.
        let writes = membership.apply(seen(&nodes, &[3, 4]), at(2_200));
        assert!(writes.downed.is_empty());
        assert_eq!(membership.members().len(), 5);
        assert_eq!(unreachable(&membership), 2);
        assert_eq!(
            membership.downing_counters.snapshot(false).kept_this_side,
            0
        );

        // Stable for `down_after`: keep-majority keeps the three, downs the two.
        let writes = membership.apply(seen(&nodes, &[3, 4]), at(2_600));
        assert_eq!(writes.downed.len(), 2);
        let members = membership.members();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| m.status == MemberStatus::Up));
        assert!(membership.downed().borrow().is_none(), "this side stays");
        let stats = membership.downing_counters.snapshot(false);
        assert_eq!((stats.kept_this_side, stats.members_downed), (1, 2));
    }

    /// A member that comes back before `down_after` is not downed, and the wait for the
    /// next cut starts from that cut, not from the first.
    #[test]
    fn a_member_back_within_down_after_is_not_downed() {
        let nodes: Vec<_> = (0..3).map(node).collect();
        let membership = keeping_majority(&nodes[0], Duration::from_secs(1));
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        membership.apply(seen(&nodes, &[]), at(0));
        membership.apply(seen(&nodes, &[2]), at(100));
        membership.apply(seen(&nodes, &[]), at(900));
        assert_eq!(unreachable(&membership), 0);
        membership.apply(seen(&nodes, &[2]), at(1_000));
        let writes = membership.apply(seen(&nodes, &[2]), at(1_800));
        assert!(writes.downed.is_empty(), "cut again 0.8 s ago, not 1 s");
        assert_eq!(membership.members().len(), 3);
        let writes = membership.apply(seen(&nodes, &[2]), at(2_050));
        assert_eq!(writes.downed.len(), 1);
        assert_eq!(membership.members().len(), 2);
    }
}

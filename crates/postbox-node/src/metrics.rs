//! The cluster as the metrics endpoint shows it (`/members`, with each member's shard count,
//! and `postbox_cluster_members`), persistence's counters (`postbox_persist_*`) and the
//! sharded entity types' (`postbox_sharding_*`).

use crate::admin::{ListShards, NodeAdmin};
use postbox::ActorRef;
use postbox_cluster::{Cluster, MemberStatus};
use postbox_metrics::{
    ClusterSource, DowningCounters, GossipCounters, Member, MemberStatus as Shown,
};
use postbox_metrics::{Distribution, PersistenceSource, PersistenceStats};
use postbox_metrics::{ShardingSource, ShardingStats};
use postbox_persistence::Persistence;
use postbox_remote::Remote;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A [`ClusterSource`] reading a [`Cluster`]'s members. A member's load is the total depth of
/// its mailboxes as it last gossiped it.
#[derive(Debug, Clone)]
pub struct ClusterMembers {
    cluster: Cluster,
    shards: Option<ShardingGauges>,
}

impl ClusterMembers {
    /// The members of `cluster`.
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            cluster: cluster.clone(),
            shards: None,
        }
    }

    /// Shows each member's shard count as `gauges` last gathered it.
    pub fn with_shards(mut self, gauges: &ShardingGauges) -> Self {
        self.shards = Some(gauges.clone());
        self
    }
}

impl ClusterSource for ClusterMembers {
    fn members(&self) -> Vec<Member> {
        let me = self.cluster.node().clone();
        self.cluster
            .members()
            .into_iter()
            .map(|member| {
                let status = match member.status {
                    MemberStatus::Joining => Shown::Joining,
                    MemberStatus::Up => Shown::Up,
                    MemberStatus::Unreachable => Shown::Suspect,
                    MemberStatus::Down | MemberStatus::Left => Shown::Down,
                };
                let shown = Member::new(
                    format!("{:016x}", member.node.node_id),
                    member.node.addr.clone(),
                    status,
                )
                .with_load(member.load.total_depth as f64);
                let shown = match self
                    .shards
                    .as_ref()
                    .and_then(|g| g.shards_of(&member.node.addr))
                {
                    Some((shards, allocated)) => {
                        shown.with_shards(shards).with_allocated_shards(allocated)
                    }
                    None => shown,
                };
                if member.node == me {
                    shown.this_node()
                } else {
                    shown
                }
            })
            .collect()
    }

    fn gossip(&self) -> Option<GossipCounters> {
        let g = self.cluster.gossip_stats();
        Some(GossipCounters::new(
            g.datagrams_in,
            g.datagrams_out,
            g.malformed,
            g.wrong_cluster,
            g.auth_failures,
            g.refusals_received,
            g.refusals_ignored,
            g.oversized,
        ))
    }

    fn downing(&self) -> Option<DowningCounters> {
        let d = self.cluster.downing_stats();
        Some(DowningCounters::new(
            d.kept_this_side,
            d.downed_this_side,
            d.downed_everyone,
            d.members_downed,
            d.pauses,
            d.this_node_down,
        ))
    }
}

/// A [`PersistenceSource`] reading a [`Persistence`]'s counters.
#[derive(Debug, Clone)]
pub struct PersistenceCounters {
    persistence: Persistence,
}

impl PersistenceCounters {
    /// The counters of `persistence`.
    pub fn new(persistence: &Persistence) -> Self {
        Self {
            persistence: persistence.clone(),
        }
    }
}

fn shown(d: &postbox_persistence::Distribution) -> Distribution {
    Distribution::new(d.buckets.clone(), d.sum)
}

impl PersistenceSource for PersistenceCounters {
    fn persistence_stats(&self) -> PersistenceStats {
        let s = self.persistence.stats();
        let mut stats = PersistenceStats::default();
        stats.events_written = s.events_written;
        stats.snapshots_written = s.snapshots_written;
        stats.states_written = s.states_written;
        stats.events_replayed = s.events_replayed;
        stats.conflicts = s.conflicts;
        stats.errors = s
            .errors
            .iter()
            .map(|(kind, n)| (kind.as_str(), *n))
            .collect();
        stats.persist_latency = shown(&s.persist_latency);
        stats.recovery_time = shown(&s.recovery_time);
        if let Some(commit) = &s.commit {
            stats.commits = commit.commits;
            stats.queue_full = commit.queue_full;
            stats.batch_size = shown(&commit.batch_size);
        }
        stats
    }
}

/// A [`ShardingSource`] over the node's sharded entity types, and the shard count of every
/// up member for `/members` (the dashboard's shards per node). A scrape must not wait for
/// actors or other nodes, so it reads what a background task last gathered, every second:
/// this node's regions, and each up member's `postbox.admin` (`ListShards`, at most a second
/// each; a member that does not answer is shown without a count).
#[derive(Debug, Clone, Default)]
pub struct ShardingGauges {
    last: Arc<Mutex<Vec<ShardingStats>>>,
    /// Per member address: (shards active, shards allocated).
    per_member: Arc<Mutex<HashMap<String, (u64, u64)>>>,
}

impl ShardingGauges {
    /// Follows `sharding`'s regions and the members of `cluster` (asked through `remote`)
    /// until the returned task is aborted.
    pub fn follow(
        sharding: &postbox_sharding::Sharding,
        cluster: &Cluster,
        remote: &Remote,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let gauges = Self::default();
        let (last, per_member) = (gauges.last.clone(), gauges.per_member.clone());
        let (sharding, cluster, remote) = (sharding.clone(), cluster.clone(), remote.clone());
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut admins: HashMap<(u64, u64), ActorRef<NodeAdmin>> = HashMap::new();
            loop {
                ticks.tick().await;
                let regions = sharding.snapshot().await;
                let mine: u64 = regions.iter().map(|r| r.shards.len() as u64).sum();
                let mine_allocated: u64 = regions.iter().map(|r| r.allocated as u64).sum();
                let stats: Vec<ShardingStats> = regions.into_iter().map(stats_of).collect();
                if let Ok(mut last) = last.lock() {
                    *last = stats;
                }
                let mut counts = HashMap::new();
                counts.insert(cluster.node().addr.clone(), (mine, mine_allocated));
                let members = cluster.members();
                admins.retain(|id, admin| {
                    admin.is_alive()
                        && members
                            .iter()
                            .any(|m| (m.node.node_id, m.node.incarnation) == *id)
                });
                for member in members {
                    if member.status != MemberStatus::Up || member.node == *cluster.node() {
                        continue;
                    }
                    let id = (member.node.node_id, member.node.incarnation);
                    let admin = match admins.get(&id) {
                        Some(admin) => admin.clone(),
                        None => {
                            let found = tokio::time::timeout(
                                Duration::from_secs(1),
                                remote.lookup_node::<NodeAdmin>(&member.node, crate::admin::ADMIN),
                            )
                            .await;
                            let Ok(Ok(admin)) = found else { continue };
                            admins.insert(id, admin.clone());
                            admin
                        }
                    };
                    if let Ok(entries) = admin.ask(ListShards).timeout(Duration::from_secs(1)).await
                    {
                        let shards = entries.iter().map(|e| e.shards.len() as u64).sum();
                        let allocated = entries.iter().map(|e| e.allocated as u64).sum();
                        counts.insert(member.node.addr.clone(), (shards, allocated));
                    }
                }
                if let Ok(mut per_member) = per_member.lock() {
                    *per_member = counts;
                }
            }
        });
        (gauges, task)
    }

    /// (active, allocated) shards of the member at `addr`.
    fn shards_of(&self, addr: &str) -> Option<(u64, u64)> {
        self.per_member.lock().ok()?.get(addr).copied()
    }
}

fn stats_of(region: postbox_sharding::RegionSnapshot) -> ShardingStats {
    let mut stats = ShardingStats::new(region.entity_type);
    stats.shards = region.shards.len() as u64;
    stats.allocated = region.allocated as u64;
    stats.remembered = region.remembered as u64;
    stats.remembered_starts = region.counters.remembered_starts;
    stats.remember_failures = region.counters.remember_failures;
    stats.entities = region.entities as u64;
    stats.buffered = region.buffered as u64;
    stats.handoffs = region.counters.handoffs;
    stats.passivations = region.counters.passivations;
    stats.activations = region.counters.activations;
    stats.dropped = region.counters.dropped;
    stats.bounced = region.counters.bounced;
    stats.fences = region.counters.fences;
    stats.direct = region.counters.direct;
    stats
}

impl ShardingSource for ShardingGauges {
    fn sharding_stats(&self) -> Vec<ShardingStats> {
        self.last
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default()
    }
}

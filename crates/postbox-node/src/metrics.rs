//! The cluster as the metrics endpoint shows it (`/members`, `postbox_cluster_members`), and
//! persistence's counters (`postbox_persist_*`).

use postbox_cluster::{Cluster, MemberStatus};
use postbox_metrics::{
    ClusterSource, DowningCounters, GossipCounters, Member, MemberStatus as Shown,
};
use postbox_metrics::{Distribution, PersistenceSource, PersistenceStats};
use postbox_persistence::Persistence;

/// A [`ClusterSource`] reading a [`Cluster`]'s members. A member's load is the total depth of
/// its mailboxes as it last gossiped it.
#[derive(Debug, Clone)]
pub struct ClusterMembers {
    cluster: Cluster,
}

impl ClusterMembers {
    /// The members of `cluster`.
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            cluster: cluster.clone(),
        }
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

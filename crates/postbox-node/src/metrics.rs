//! The cluster as the metrics endpoint shows it (`/members`, `postbox_cluster_members`).

use postbox_cluster::{Cluster, MemberStatus};
use postbox_metrics::{ClusterSource, GossipCounters, Member, MemberStatus as Shown};

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
}

//! Members of the cluster and the events that tell their story.

use postbox_remote::NodeAddr;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

/// One node of the cluster, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Its remote transport address, node id and incarnation. A restarted node has a new
    /// incarnation (and node id): it is a new member.
    pub node: NodeAddr,
    /// Where it gossips.
    pub gossip_addr: SocketAddr,
    /// Its roles.
    pub roles: BTreeSet<String>,
    /// Its load, as it last reported it.
    pub load: NodeLoad,
    /// Its status.
    pub status: MemberStatus,
}

impl Member {
    /// Whether it has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.node, self.status)
    }
}

/// A node's load: the mailboxes of its actors (remote refs' outbound queues excluded), as the
/// node measured them at its last load refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeLoad {
    /// Live actors.
    pub actors: usize,
    /// Messages waiting in all their mailboxes.
    pub total_depth: usize,
    /// Messages waiting in the deepest mailbox.
    pub max_depth: usize,
}

impl NodeLoad {
    /// A load of `actors` actors with `total_depth` messages waiting, at most `max_depth` in
    /// one mailbox.
    pub fn new(actors: usize, total_depth: usize, max_depth: usize) -> Self {
        Self {
            actors,
            total_depth,
            max_depth,
        }
    }
}

/// Where a member is in its life, as this node sees it.
///
/// `Joining → Up ⇄ Unreachable → Down`, or `… → Left` after a graceful leave. `Down` and
/// `Left` are final: that incarnation never comes back (a restarted node is a new member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Heard of in gossip, not yet usable: its metadata is incomplete or it has not been
    /// heard from directly enough for the failure detector to vouch for it.
    Joining,
    /// Alive and usable: its registry entries are listed and routed to.
    Up,
    /// The failure detector suspects it; its entries are not listed meanwhile. It is `Up`
    /// again if it is heard from before it is declared down.
    Unreachable,
    /// Declared down: unreachable for longer than `down_after`, or replaced by a new
    /// incarnation at the same address.
    Down,
    /// Left gracefully.
    Left,
}

impl MemberStatus {
    /// Whether the member is gone for good (`Down` or `Left`).
    pub fn is_final(self) -> bool {
        matches!(self, MemberStatus::Down | MemberStatus::Left)
    }
}

/// A change in membership. Each member's events come in the order of its life (see
/// [`MemberStatus`]); the member carried is the member as of the event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A member was heard of for the first time.
    MemberJoined(Member),
    /// A member became usable — for the first time, or again after being unreachable.
    MemberUp(Member),
    /// A member is suspected to have failed.
    MemberUnreachable(Member),
    /// A member was declared down (crashed, partitioned away for too long, or restarted).
    MemberDown(Member),
    /// A member left gracefully.
    MemberLeft(Member),
}

impl ClusterEvent {
    /// The member the event is about.
    pub fn member(&self) -> &Member {
        match self {
            ClusterEvent::MemberJoined(m)
            | ClusterEvent::MemberUp(m)
            | ClusterEvent::MemberUnreachable(m)
            | ClusterEvent::MemberDown(m)
            | ClusterEvent::MemberLeft(m) => m,
        }
    }

    /// The event for a member's current status.
    pub(crate) fn of(member: Member) -> Self {
        match member.status {
            MemberStatus::Joining => ClusterEvent::MemberJoined(member),
            MemberStatus::Up => ClusterEvent::MemberUp(member),
            MemberStatus::Unreachable => ClusterEvent::MemberUnreachable(member),
            MemberStatus::Down => ClusterEvent::MemberDown(member),
            MemberStatus::Left => ClusterEvent::MemberLeft(member),
        }
    }
}

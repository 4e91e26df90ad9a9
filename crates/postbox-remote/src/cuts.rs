//! Link cuts, for fault-injection tests (feature `fault-injection`, off by default; only
//! test harnesses such as `postbox-testkit` turn it on).
//!
//! A node's [`LinkCuts`] is the set of peers it is cut off from, shared by every transport of
//! the node: this crate's TCP connections and the membership layer's gossip datagrams. A peer
//! is named by a [`LinkPeer`]: its transport address (`host:port`, as it advertises it —
//! every incarnation at that address alike, as with a real network cut) and, optionally, the
//! socket address it gossips from.
//!
//! Cutting a peer ([`Remote::cut_link`](crate::Remote::cut_link)) means, from the moment the
//! call returns:
//!
//! - no new connection to or from it: a dial to its address fails at once (as an outage,
//!   retried and then given up like one), an inbound connection that says it is that peer is
//!   hung up on right after its `Hello`, and a connection whose handshake was already under
//!   way is closed the moment it is registered;
//! - the open connection to it is closed, as if it had been lost (asks in flight fail with
//!   `NodeDown`, remote refs through it end), and its reader has stopped: no frame from it is
//!   delivered after the call returns;
//! - no datagram to or from its gossip address passes the gossip transport (checked on every
//!   datagram; one already handed to the gossip library may still be processed).
//!
//! One side's cut is enough to stop its own traffic; a test cuts both sides for a partition
//! (the testkit's `TestCluster::cut` does). Healing lets the peers reconnect as after a real
//! outage. Checking costs one atomic load while nothing is cut; the set is consulted per
//! datagram and per connection (dial, accept, registration), never per message.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{PoisonError, RwLock};

/// A peer as the link cuts name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkPeer {
    /// The peer's transport address (`host:port`), as it advertises it.
    pub addr: String,
    /// The address the peer gossips from and at, if the membership layer runs.
    pub gossip: Option<SocketAddr>,
}

impl LinkPeer {
    /// The peer at transport address `addr`, gossiping at `gossip` if it does.
    pub fn new(addr: impl Into<String>, gossip: Option<SocketAddr>) -> Self {
        Self {
            addr: addr.into(),
            gossip,
        }
    }
}

/// The peers this node is cut off from (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct LinkCuts {
    /// Whether anything is cut: the fast path of every check.
    any: AtomicBool,
    cut: RwLock<Cut>,
}

#[derive(Debug, Default)]
struct Cut {
    addrs: HashSet<String>,
    gossip: HashSet<SocketAddr>,
}

impl LinkCuts {
    /// Whether the peer at transport address `addr` is cut off.
    pub fn is_addr_cut(&self, addr: &str) -> bool {
        self.any.load(SeqCst) && self.read().addrs.contains(addr)
    }

    /// Whether datagrams to or from `addr` are cut off.
    #[inline]
    pub fn is_gossip_cut(&self, addr: SocketAddr) -> bool {
        self.any.load(SeqCst) && self.read().gossip.contains(&addr)
    }

    pub(crate) fn cut(&self, peer: &LinkPeer) {
        let mut cut = self.write();
        cut.addrs.insert(peer.addr.clone());
        cut.gossip.extend(peer.gossip);
        self.any.store(true, SeqCst);
    }

    pub(crate) fn heal(&self, peer: &LinkPeer) {
        let mut cut = self.write();
        cut.addrs.remove(&peer.addr);
        if let Some(gossip) = peer.gossip {
            cut.gossip.remove(&gossip);
        }
        self.any
            .store(!cut.addrs.is_empty() || !cut.gossip.is_empty(), SeqCst);
    }

    pub(crate) fn heal_all(&self) {
        let mut cut = self.write();
        cut.addrs.clear();
        cut.gossip.clear();
        self.any.store(false, SeqCst);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cut> {
        self.cut.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cut> {
        self.cut.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_and_heal_by_address_and_gossip_address() {
        let cuts = LinkCuts::default();
        let gossip: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let peer = LinkPeer::new("127.0.0.1:7000", Some(gossip));
        let other = LinkPeer::new("127.0.0.1:8000", None);
        assert!(!cuts.is_addr_cut(&peer.addr));
        assert!(!cuts.is_gossip_cut(gossip));
        cuts.cut(&peer);
        cuts.cut(&other);
        assert!(cuts.is_addr_cut(&peer.addr));
        assert!(cuts.is_gossip_cut(gossip));
        assert!(!cuts.is_gossip_cut("127.0.0.1:7002".parse().unwrap()));
        cuts.heal(&peer);
        assert!(!cuts.is_addr_cut(&peer.addr));
        assert!(!cuts.is_gossip_cut(gossip));
        assert!(cuts.is_addr_cut(&other.addr), "healing one heals only it");
        cuts.heal_all();
        assert!(!cuts.is_addr_cut(&other.addr));
        assert!(!cuts.any.load(SeqCst));
    }
}

//! Counters and snapshots of regions, for metrics and the `shards` command.

use postbox_remote::NodeAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one region (one entity type on one node), since it started.
#[derive(Debug, Default)]
pub(crate) struct RegionCounters {
    activations: AtomicU64,
    passivations: AtomicU64,
    handoffs: AtomicU64,
    dropped: AtomicU64,
    bounced: AtomicU64,
    fences: AtomicU64,
    remembered_starts: AtomicU64,
    remember_failures: AtomicU64,
}

impl RegionCounters {
    pub(crate) fn add_activation(&self) {
        self.activations.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_passivation(&self) {
        self.passivations.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_handoff(&self) {
        self.handoffs.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_bounced(&self) {
        self.bounced.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_fence(&self) {
        self.fences.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_remembered_start(&self) {
        self.remembered_starts.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_remember_failure(&self) {
        self.remember_failures.fetch_add(1, Relaxed);
    }
    pub(crate) fn read(&self) -> RegionCounts {
        RegionCounts {
            activations: self.activations.load(Relaxed),
            passivations: self.passivations.load(Relaxed),
            handoffs: self.handoffs.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            bounced: self.bounced.load(Relaxed),
            fences: self.fences.load(Relaxed),
            remembered_starts: self.remembered_starts.load(Relaxed),
            remember_failures: self.remember_failures.load(Relaxed),
            direct: 0,
        }
    }
}

/// What a region counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionCounts {
    /// Entities started (first message, after passivation, after a move).
    pub activations: u64,
    /// Entities stopped for being idle or least recently used.
    pub passivations: u64,
    /// Shards handed off to another node.
    pub handoffs: u64,
    /// Messages given up (`ShardUnavailable` / `NotRemotable` dead letters, or asks
    /// failed): buffer full, node down.
    pub dropped: u64,
    /// Messages parked here because the regions' views disagreed: another node sent one
    /// here as to its shard's home while this region counts another node as the home (or it
    /// passed through four regions). They wait in line, to be routed again on the next
    /// change of view or after a short wait (from 50 ms, growing to 1 s while they stay
    /// parked).
    pub bounced: u64,
    /// Fences sent: a shard's home moved (or one of its messages came back here) while
    /// this node's earlier messages for it may still have been on their way, so its next
    /// ones waited here until a fence sent the old way came back behind them (or 5 s passed)
    /// — each sender's order kept across the move.
    pub fences: u64,
    /// Entities started because they were remembered, without a message
    /// ([`EntityType::remember_entities`](crate::EntityType::remember_entities)).
    pub remembered_starts: u64,
    /// Store failures while reading or writing remembered entities (each retried; the
    /// entities served meanwhile), and changes left unwritten at a bound or a hand-off.
    pub remember_failures: u64,
    /// Messages that skipped a region by a direct path: told from this node straight to
    /// the home's region, or put by the transport straight into an active entity here.
    pub direct: u64,
}

/// One region now: what one node hosts of one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionSnapshot {
    /// The node.
    pub node: NodeAddr,
    /// The entity type's name.
    pub entity_type: String,
    /// The shards it hosts (active or being handed off), ascending: those activated here
    /// (by a message, a singleton or remember entities).
    pub shards: Vec<u32>,
    /// The shards the placement puts on this node by its current membership view, active
    /// here or not (a shard of the type becomes active on its first message).
    pub allocated: usize,
    /// Active entities.
    pub entities: usize,
    /// Entities recorded as remembered in the store, in the shards active here (as last
    /// read or written; 0 without remember entities).
    pub remembered: usize,
    /// Messages waiting in its buffers (shards being acquired or handed off, entities being
    /// passivated, homes not reachable yet).
    pub buffered: usize,
    /// Shards being handed off.
    pub handing_off: usize,
    /// The most shards it has handed off at once since it started: at most
    /// [`max_handoffs`](crate::EntityType::max_handoffs), except while this node leaves
    /// (a graceful leave hands every shard off at once).
    pub most_handing_off: usize,
    /// Shards being acquired.
    pub acquiring: usize,
    /// Its counters.
    pub counters: RegionCounts,
}

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
    pub(crate) fn read(&self) -> RegionCounts {
        RegionCounts {
            activations: self.activations.load(Relaxed),
            passivations: self.passivations.load(Relaxed),
            handoffs: self.handoffs.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            bounced: self.bounced.load(Relaxed),
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
    /// Messages that passed through four regions without reaching their shard's home
    /// (the regions' views disagreed) and were parked here until the view changed.
    pub bounced: u64,
}

/// One region now: what one node hosts of one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionSnapshot {
    /// The node.
    pub node: NodeAddr,
    /// The entity type's name.
    pub entity_type: String,
    /// The shards it hosts (active or being handed off), ascending.
    pub shards: Vec<u32>,
    /// Active entities.
    pub entities: usize,
    /// Messages waiting in its buffers (shards being acquired or handed off, entities being
    /// passivated, homes not reachable yet).
    pub buffered: usize,
    /// Shards being handed off.
    pub handing_off: usize,
    /// Shards being acquired.
    pub acquiring: usize,
    /// Its counters.
    pub counters: RegionCounts,
}

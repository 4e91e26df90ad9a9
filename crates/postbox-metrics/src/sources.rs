//! Where the endpoint reads state that lives outside the core runtime: the transport's counters
//! and the cluster's members. Both are small traits so that this crate depends on neither the
//! transport's internals nor the cluster crate; the node wires the real ones in.

use postbox::ActorSystem;
use serde::Serialize;
use std::fmt;

/// Counters of a transport between nodes, read at every scrape.
///
/// Fields documented as "now" are gauges; the others are monotonic counts since the transport
/// started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// Authenticated connections open now.
    pub connections: u64,
    /// Inbound connections in their handshake now.
    pub unauthenticated: u64,
    /// Failed `accept` calls (out of file descriptors, say).
    pub accept_errors: u64,
    /// Inbound connections accepted (before the handshake).
    pub connections_accepted: u64,
    /// Frames read.
    pub frames_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Connection attempts after the first to the same peer.
    pub reconnects: u64,
    /// Handshakes that failed authentication.
    pub auth_failures: u64,
    /// Inbound connections refused (limit, version, cluster, bad handshake).
    pub refused: u64,
    /// Refusals by reason: a fixed set of short snake_case labels (bounded cardinality),
    /// each with its count, zeros included.
    pub refused_by: Vec<(&'static str, u64)>,
    /// Connections closed for malformed or oversized frames.
    pub protocol_errors: u64,
    /// Messages whose trace context was malformed (delivered without it).
    pub invalid_trace_contexts: u64,
    /// Asks from other nodes in flight now.
    pub inbound_asks: u64,
    /// Times a connection stopped reading: its peer had the most asks in flight, or the
    /// requests it read ahead filled `REQUEST_BACKLOG`.
    pub reads_paused: u64,
    /// Watches held for other nodes now.
    pub watches: u64,
    /// Watches refused at the per-connection limit.
    pub watches_refused: u64,
    /// Frames not sent for being over the frame limit.
    pub too_large: u64,
    /// Connections closed because the peer stopped reading.
    pub write_stalls: u64,
    /// Lookups unanswered within their timeout.
    pub lookup_timeouts: u64,
    /// Incarnations quarantined (declared down) now.
    pub quarantined: u64,
}

/// Something that can report [`TransportStats`]: `postbox_remote::Remote` (with the `remote`
/// feature), or a test double.
pub trait TransportSource: Send + Sync + 'static {
    /// The counters now. Called once per scrape; must be quick.
    fn transport_stats(&self) -> TransportStats;
}

#[cfg(feature = "remote")]
impl TransportSource for postbox_remote::Remote {
    fn transport_stats(&self) -> TransportStats {
        let s = self.stats();
        TransportStats {
            connections: s.connections,
            unauthenticated: s.unauthenticated,
            accept_errors: s.accept_errors,
            connections_accepted: s.connections_accepted,
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            reconnects: s.reconnects,
            auth_failures: s.auth_failures,
            refused: s.refused,
            refused_by: postbox_remote::Refusal::ALL
                .iter()
                .map(|why| (why.label(), s.refused_by(*why)))
                .collect(),
            protocol_errors: s.protocol_errors,
            invalid_trace_contexts: s.invalid_trace_contexts,
            inbound_asks: s.inbound_asks,
            reads_paused: s.reads_paused,
            watches: s.watches,
            watches_refused: s.watches_refused,
            too_large: s.too_large,
            write_stalls: s.write_stalls,
            lookup_timeouts: s.lookup_timeouts,
            quarantined: s.quarantined,
        }
    }
}

/// Where a member is in its life in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemberStatus {
    /// Joining: known, not yet serving.
    Joining,
    /// A serving member.
    Up,
    /// Suspected unreachable by the failure detector.
    Suspect,
    /// Leaving gracefully.
    Leaving,
    /// Declared down (left or failed).
    Down,
}

impl MemberStatus {
    /// Every status, in a stable order (for metrics: each gets a series, zeros included).
    pub const ALL: [MemberStatus; 5] = [
        MemberStatus::Joining,
        MemberStatus::Up,
        MemberStatus::Suspect,
        MemberStatus::Leaving,
        MemberStatus::Down,
    ];

    /// A short snake_case label, stable for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Joining => "joining",
            MemberStatus::Up => "up",
            MemberStatus::Suspect => "suspect",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Down => "down",
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of the cluster, as shown by `/members` and counted by status in `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Member {
    /// The member's node id.
    pub id: String,
    /// Where it listens.
    pub address: String,
    /// Its status.
    pub status: MemberStatus,
    /// The load it reports (for postbox nodes: messages waiting in all its mailboxes), if known.
    pub load: Option<f64>,
    /// Shards of sharded entity types active on it, if known.
    pub shards: Option<u64>,
    /// Shards of sharded entity types the placement puts on it (active or not), if known.
    pub allocated_shards: Option<u64>,
    /// Whether this is the node serving the endpoint.
    pub is_self: bool,
}

impl Member {
    /// A member with no known load that is not this node.
    pub fn new(id: impl Into<String>, address: impl Into<String>, status: MemberStatus) -> Self {
        Self {
            id: id.into(),
            address: address.into(),
            status,
            load: None,
            shards: None,
            allocated_shards: None,
            is_self: false,
        }
    }

    /// Sets the reported load.
    pub fn with_load(mut self, load: f64) -> Self {
        self.load = Some(load);
        self
    }

    /// Sets how many shards are active on it.
    pub fn with_shards(mut self, shards: u64) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Sets how many shards the placement puts on it.
    pub fn with_allocated_shards(mut self, shards: u64) -> Self {
        self.allocated_shards = Some(shards);
        self
    }

    /// Marks the member as the node serving the endpoint.
    pub fn this_node(mut self) -> Self {
        self.is_self = true;
        self
    }
}

/// The cluster's view of its members. The cluster crate implements it; without a cluster,
/// [`SingleNode`] reports this node alone.
pub trait ClusterSource: Send + Sync + 'static {
    /// The members now. Called once per scrape and per `/members` request; must be quick.
    fn members(&self) -> Vec<Member>;

    /// Counters of the gossip transport, if there is one. Called once per scrape.
    fn gossip(&self) -> Option<GossipCounters> {
        None
    }

    /// What split-brain resolution has done on this node, if there is a cluster. Called once
    /// per scrape.
    fn downing(&self) -> Option<DowningCounters> {
        None
    }
}

/// What a node's downing strategy has done (counters monotonic since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DowningCounters {
    /// Decisions that kept this side and downed the unreachable members.
    pub kept_this_side: u64,
    /// Decisions that took this side down.
    pub downed_this_side: u64,
    /// Down-all decisions.
    pub downed_everyone: u64,
    /// Members this node declared down.
    pub members_downed: u64,
    /// Pauses of this node detected.
    pub pauses: u64,
    /// Whether this node is down now.
    pub this_node_down: bool,
}

impl DowningCounters {
    /// Counters with every field given (the struct is non-exhaustive).
    pub fn new(
        kept_this_side: u64,
        downed_this_side: u64,
        downed_everyone: u64,
        members_downed: u64,
        pauses: u64,
        this_node_down: bool,
    ) -> Self {
        Self {
            kept_this_side,
            downed_this_side,
            downed_everyone,
            members_downed,
            pauses,
            this_node_down,
        }
    }
}

/// Counters of a cluster's gossip transport (monotonic since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipCounters {
    /// Authenticated datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams refused: not ours or undecodable.
    pub malformed: u64,
    /// Datagrams refused: from another cluster.
    pub wrong_cluster: u64,
    /// Datagrams refused: failed authentication.
    pub auth_failures: u64,
    /// Refusals received that echoed a datagram this node sent (genuine).
    pub refusals_received: u64,
    /// Refusals received that did not (forged or stale; ignored).
    pub refusals_ignored: u64,
    /// Gossip too large to send once framed.
    pub oversized: u64,
}

impl GossipCounters {
    /// Counters with every field given (the struct is non-exhaustive).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        datagrams_in: u64,
        datagrams_out: u64,
        malformed: u64,
        wrong_cluster: u64,
        auth_failures: u64,
        refusals_received: u64,
        refusals_ignored: u64,
        oversized: u64,
    ) -> Self {
        Self {
            datagrams_in,
            datagrams_out,
            malformed,
            wrong_cluster,
            auth_failures,
            refusals_received,
            refusals_ignored,
            oversized,
        }
    }
}

/// The membership of a node that is not in a cluster: itself, `Up`, with its total mailbox
/// depth as its load.
#[derive(Debug, Clone)]
pub struct SingleNode {
    system: ActorSystem,
    id: String,
    address: String,
}

impl SingleNode {
    /// This node, named `id`, reachable at `address` (informational).
    pub fn new(system: &ActorSystem, id: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            system: system.clone(),
            id: id.into(),
            address: address.into(),
        }
    }
}

impl ClusterSource for SingleNode {
    fn members(&self) -> Vec<Member> {
        let mut waiting = 0u64;
        self.system
            .for_each_actor(|actor| waiting += actor.depth() as u64);
        vec![
            Member::new(self.id.clone(), self.address.clone(), MemberStatus::Up)
                .with_load(waiting as f64)
                .this_node(),
        ]
    }
}

/// A distribution as a source reports it: bucket counts (each bucket alone, not cumulative),
/// the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Distribution {
    /// `(upper bound, observations in this bucket alone)`; the last bound is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl Distribution {
    /// A distribution with these buckets (each counting its own observations) and sum.
    pub fn new(buckets: Vec<(f64, u64)>, sum: f64) -> Self {
        let count = buckets.iter().map(|(_, n)| n).sum();
        Self {
            buckets,
            sum,
            count,
        }
    }
}

/// What persistence (event journals, snapshots, durable states) did, read at every scrape.
/// Every count is monotonic since the store was opened.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PersistenceStats {
    /// Events acknowledged as durable.
    pub events_written: u64,
    /// Snapshots saved.
    pub snapshots_written: u64,
    /// Durable states saved or deleted.
    pub states_written: u64,
    /// Events read back by recoveries.
    pub events_replayed: u64,
    /// Writes refused because another writer of the same id got there first.
    pub conflicts: u64,
    /// Failed store operations by kind (`unavailable`, `full`, ...), conflicts excluded.
    pub errors: Vec<(&'static str, u64)>,
    /// Transactions the store's group commit committed.
    pub commits: u64,
    /// Writes that waited because the group commit's queue was full.
    pub queue_full: u64,
    /// Seconds from a persist call to its acknowledgement.
    pub persist_latency: Distribution,
    /// Events per committed transaction.
    pub batch_size: Distribution,
    /// Seconds per completed recovery.
    pub recovery_time: Distribution,
}

/// One sharded entity type on this node (`postbox-sharding`'s region), read at every scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardingStats {
    /// The entity type.
    pub entity_type: String,
    /// Shards active here (activated by a message, a singleton or remember entities).
    pub shards: u64,
    /// Shards the placement puts on this node, active or not.
    pub allocated: u64,
    /// Active entities here.
    pub entities: u64,
    /// Messages waiting in its buffers (shards moving, entities passivating, homes unknown).
    pub buffered: u64,
    /// Shards handed off to other nodes (monotonic).
    pub handoffs: u64,
    /// Entities passivated (monotonic).
    pub passivations: u64,
    /// Entities started (monotonic).
    pub activations: u64,
    /// Messages given up at a bound (monotonic).
    pub dropped: u64,
    /// Messages parked because the regions' views disagreed on their shard's home
    /// (monotonic).
    pub bounced: u64,
    /// Fences sent: a shard's home moved (or one of its messages came back to the region)
    /// while this node's earlier messages for it were on their way, so its next ones waited
    /// until the fence came back behind them (monotonic).
    pub fences: u64,
    /// Told messages that skipped a region by a direct path (monotonic).
    pub direct: u64,
    /// Entities recorded as remembered in the shards active here (remember entities).
    pub remembered: u64,
    /// Entities started because they were remembered, without a message (monotonic).
    pub remembered_starts: u64,
    /// Store failures while reading or writing remembered entities (monotonic).
    pub remember_failures: u64,
}

impl ShardingStats {
    /// The stats of `entity_type`, all zero.
    pub fn new(entity_type: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            ..Self::default()
        }
    }
}

/// Something that can report [`ShardingStats`]: the node wires in its regions.
pub trait ShardingSource: Send + Sync + 'static {
    /// One entry per entity type. Called once per scrape; must be quick.
    fn sharding_stats(&self) -> Vec<ShardingStats>;
}

/// Something that can report [`PersistenceStats`]: the node wires in its store's counters.
pub trait PersistenceSource: Send + Sync + 'static {
    /// The counters now. Called once per scrape; must be quick.
    fn persistence_stats(&self) -> PersistenceStats;
}

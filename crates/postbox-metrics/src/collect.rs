//! One scrape: walk the actor table once, aggregate by actor type, read the other sources, and
//! encode it all with prometheus-client (OpenMetrics text).
//!
//! # Cardinality
//!
//! Series are per actor *type* (a handful per program), per dead-letter reason, per breaker,
//! router and member status — never per anonymous actor. Named actors (given a name at spawn,
//! or registered) get a depth gauge each, up to `max_named_actors` of them, the oldest first
//! (lowest ids, so the chosen set does not flap between scrapes); the rest are counted in
//! `postbox_named_actors_unexported`. A million actors cost a walk, not a million series.

use crate::histogram::HistogramSnapshot;
use crate::http::HttpSnapshot;
use crate::sources::{
    DowningCounters, GossipCounters, Member, MemberStatus, PersistenceStats, TransportStats,
};
use crate::{Inner, RegisteredRouter};
use postbox::{ActorId, BreakerStats, DeadLetterReason, SystemCounters};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Error;
use std::sync::Arc;
use std::time::Instant;

/// Live actors of one type, summed over the walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) actors: u64,
    pub(crate) depth_sum: u64,
    pub(crate) depth_max: u64,
    /// Messages handled by the live actors of the group.
    pub(crate) processed: u64,
}

/// A named actor's depth gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedDepth {
    pub(crate) actor_type: &'static str,
    pub(crate) path: String,
    pub(crate) depth: u64,
}

/// Per actor type, what the observer has gathered.
#[derive(Debug, Clone)]
pub(crate) struct TypeSnapshot {
    pub(crate) handler_time: HistogramSnapshot,
    pub(crate) mailbox_wait: HistogramSnapshot,
}

/// Everything one exposition shows, computed before any of it is encoded.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) live: u64,
    pub(crate) groups: BTreeMap<&'static str, Group>,
    /// Monotonic processed totals per type (live actors plus stopped ones).
    pub(crate) processed: BTreeMap<&'static str, u64>,
    pub(crate) named: Vec<NamedDepth>,
    pub(crate) named_unexported: u64,
    pub(crate) types: BTreeMap<&'static str, TypeSnapshot>,
    pub(crate) counters: SystemCounters,
    pub(crate) dead_letters: Vec<(DeadLetterReason, u64)>,
    pub(crate) breakers: Vec<(String, BreakerStats)>,
    pub(crate) routers: Vec<(String, u64)>,
    pub(crate) transport: Option<TransportStats>,
    pub(crate) members: Option<Vec<Member>>,
    pub(crate) gossip: Option<GossipCounters>,
    pub(crate) downing: Option<DowningCounters>,
    /// The HTTP server's counters, once [`Metrics::serve`](crate::Metrics::serve) runs.
    pub(crate) http: Option<HttpSnapshot>,
    pub(crate) persistence: Option<PersistenceStats>,
    pub(crate) sharding: Option<Vec<crate::sources::ShardingStats>>,
    pub(crate) walk_seconds: f64,
}

impl Inner {
    /// Reads every source. The only O(actors) part is one walk of the actor table.
    pub(crate) fn snapshot(&self) -> Snapshot {
        // Read the stopped actors' totals *before* the walk: an actor that stops during the
        // walk is then either seen live or not at all, never twice (see `clamp_processed`).
        let mut retired: HashMap<&'static str, u64> = HashMap::new();
        let mut types = BTreeMap::new();
        self.samples.for_each(|actor_type, samples| {
            retired.insert(
                actor_type,
                samples
                    .retired_processed
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            types.insert(
                actor_type,
                TypeSnapshot {
                    handler_time: samples.handler_time.snapshot(),
                    mailbox_wait: samples.mailbox_wait.snapshot(),
                },
            );
        });

        let registered: HashSet<ActorId> = {
            let registry = self.system.registry();
            registry
                .names()
                .iter()
                .filter_map(|name| registry.lookup_id(name))
                .collect()
        };
        let started = Instant::now();
        let mut groups: HashMap<&'static str, Group> = HashMap::new();
        let mut named: Vec<(ActorId, &'static str, u64)> = Vec::new();
        let mut live = 0;
        self.system.for_each_actor(|actor| {
            live += 1;
            let stats = actor.stats();
            let depth = stats.depth as u64;
            let group = groups.entry(actor.actor_type()).or_default();
            group.actors += 1;
            group.depth_sum += depth;
            group.depth_max = group.depth_max.max(depth);
            group.processed += stats.processed;
            if actor.name().is_some() || registered.contains(&actor.id()) {
                named.push((actor.id(), actor.actor_type(), depth));
            }
        });
        let walk_seconds = started.elapsed().as_secs_f64();

        let limit = self.config.max_named_actors;
        let named_unexported = named.len().saturating_sub(limit) as u64;
        if named.len() > limit {
            named.select_nth_unstable_by_key(limit, |(id, ..)| *id);
            named.truncate(limit);
        }
        named.sort_unstable_by_key(|(id, ..)| *id);
        // Paths are built after the walk, for the chosen few only (they allocate).
        let named = named
            .into_iter()
            .filter_map(|(id, actor_type, depth)| {
                let info = self.system.actor(id)?;
                Some(NamedDepth {
                    actor_type,
                    path: info.path,
                    depth,
                })
            })
            .collect();

        let processed = self.clamp_processed(&groups, &retired);
        let dead_letters = DeadLetterReason::ALL
            .iter()
            .map(|&reason| (reason, self.system.dead_letters().count(reason)))
            .collect();
        Snapshot {
            live,
            groups: groups.into_iter().collect(),
            processed,
            named,
            named_unexported,
            types,
            counters: self.system.counters(),
            dead_letters,
            breakers: self.breaker_stats(),
            routers: self.router_sizes(),
            transport: self.transport.as_ref().map(|t| t.transport_stats()),
            members: self.cluster.as_ref().map(|c| c.members()),
            gossip: self.cluster.as_ref().and_then(|c| c.gossip()),
            downing: self.cluster.as_ref().and_then(|c| c.downing()),
            http: Some(self.http.snapshot()).filter(|http| http.max_connections > 0),
            persistence: self.persistence.as_ref().map(|p| p.persistence_stats()),
            sharding: self.sharding.as_ref().map(|s| s.sharding_stats()),
            walk_seconds,
        }
    }

    /// Messages processed per type: stopped actors' totals plus the live actors' counts,
    /// never below what an earlier scrape reported. The sum can dip for a moment when an
    /// actor stops during a walk (it left the table before its total was added); a counter
    /// must never go down, so the last exported value holds until the sum catches up.
    fn clamp_processed(
        &self,
        groups: &HashMap<&'static str, Group>,
        retired: &HashMap<&'static str, u64>,
    ) -> BTreeMap<&'static str, u64> {
        let mut exported = self
            .processed_exported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let types: HashSet<&'static str> = groups
            .keys()
            .chain(retired.keys())
            .chain(exported.keys())
            .copied()
            .collect();
        let mut totals = BTreeMap::new();
        for actor_type in types {
            let now = groups.get(actor_type).map_or(0, |g| g.processed)
                + retired.get(actor_type).copied().unwrap_or(0);
            let last = exported.entry(actor_type).or_insert(0);
            *last = (*last).max(now);
            totals.insert(actor_type, *last);
        }
        totals
    }

    fn breaker_stats(&self) -> Vec<(String, BreakerStats)> {
        let breakers = self
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        breakers
            .into_iter()
            .map(|(name, breaker)| (name, breaker.stats()))
            .collect()
    }

    /// Sizes of the registered routers still running; stopped ones are forgotten.
    fn router_sizes(&self) -> Vec<(String, u64)> {
        let mut routers = self
            .routers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routers.retain(|_, router: &mut RegisteredRouter| router.is_running());
        routers
            .iter()
            .map(|(name, router)| (name.clone(), router.routees() as u64))
            .collect()
    }
}

/// Encodes a fresh snapshot at every scrape.
#[derive(Debug)]
pub(crate) struct SystemCollector {
    pub(crate) inner: Arc<Inner>,
}

impl Collector for SystemCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), Error> {
        encode_snapshot(&self.inner.snapshot(), &mut encoder)
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A family of one metric type whose series differ by their labels.
fn family<'e, L: EncodeLabelSet>(
    encoder: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    metric_type: MetricType,
    series: impl IntoIterator<Item = (L, Value)>,
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in series {
        let mut labelled = metric.encode_family(&labels)?;
        match value {
            Value::Counter(v) => ConstCounter::new(v).encode(labelled)?,
            Value::Gauge(v) => ConstGauge::new(v).encode(labelled)?,
            Value::Histogram(h) => labelled
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum_seconds,
                    h.count,
                    &h.buckets,
                    None,
                )?,
        }
    }
    Ok(())
}

enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram(HistogramSnapshot),
}

fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn encode_snapshot(
    snapshot: &Snapshot,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), Error> {
    use MetricType::{Counter, Gauge, Histogram};
    let counters = &snapshot.counters;

    // Actors and their lifecycle.
    gauge(
        encoder,
        "postbox_actors_live",
        "Actors alive now, the root guardian included.",
        as_gauge(snapshot.live),
    )?;
    counter(
        encoder,
        "postbox_actors_started",
        "Actors spawned.",
        counters.actors_started,
    )?;
    counter(
        encoder,
        "postbox_actors_stopped",
        "Actors terminated.",
        counters.actors_stopped,
    )?;
    counter(
        encoder,
        "postbox_actor_restarts",
        "Restarts performed by supervisors.",
        counters.restarts,
    )?;
    counter(
        encoder,
        "postbox_actor_panics",
        "Panics caught in handlers and lifecycle hooks.",
        counters.panics,
    )?;
    counter(
        encoder,
        "postbox_ask_timeouts",
        "Asks that gave up at their deadline.",
        counters.ask_timeouts,
    )?;
    family(
        encoder,
        "postbox_dead_letters",
        "Messages that could not be delivered, by reason.",
        Counter,
        snapshot
            .dead_letters
            .iter()
            .map(|(reason, n)| ([("reason", reason.as_str())], Value::Counter(*n))),
    )?;

    // Mailboxes, per actor type.
    let by_type = |f: fn(&Group) -> u64| {
        snapshot
            .groups
            .iter()
            .map(move |(t, g)| ([("actor_type", *t)], Value::Gauge(as_gauge(f(g)))))
    };
    family(
        encoder,
        "postbox_group_actors",
        "Live actors of each actor type.",
        Gauge,
        by_type(|g| g.actors),
    )?;
    family(
        encoder,
        "postbox_group_mailbox_depth",
        "Messages waiting in the mailboxes of all live actors of each type (sum of depths).",
        Gauge,
        by_type(|g| g.depth_sum),
    )?;
    family(
        encoder,
        "postbox_group_mailbox_depth_max",
        "Deepest mailbox among the live actors of each type.",
        Gauge,
        by_type(|g| g.depth_max),
    )?;
    family(
        encoder,
        "postbox_actor_mailbox_depth",
        "Mailbox depth of each named actor (at most max_named_actors of them, oldest first).",
        Gauge,
        snapshot.named.iter().map(|n| {
            (
                [("actor_type", n.actor_type), ("actor", n.path.as_str())],
                Value::Gauge(as_gauge(n.depth)),
            )
        }),
    )?;
    gauge(
        encoder,
        "postbox_named_actors_unexported",
        "Named actors beyond max_named_actors, which have no depth gauge of their own.",
        as_gauge(snapshot.named_unexported),
    )?;
    family(
        encoder,
        "postbox_messages_processed",
        "Messages handled, by actor type (live and stopped actors).",
        Counter,
        snapshot
            .processed
            .iter()
            .map(|(t, n)| ([("actor_type", *t)], Value::Counter(*n))),
    )?;
    family(
        encoder,
        "postbox_handler_duration_seconds",
        "Handler run time, sampled: one message in 16 per actor. _count counts samples; \
         postbox_messages_processed counts messages.",
        Histogram,
        snapshot.types.iter().map(|(t, s)| {
            (
                [("actor_type", *t)],
                Value::Histogram(s.handler_time.clone()),
            )
        }),
    )?;
    family(
        encoder,
        "postbox_mailbox_wait_seconds",
        "Time from a message's enqueue to its actor taking it, sampled: one message in 16 \
         per mailbox.",
        Histogram,
        snapshot.types.iter().map(|(t, s)| {
            (
                [("actor_type", *t)],
                Value::Histogram(s.mailbox_wait.clone()),
            )
        }),
    )?;

    // The endpoint's own HTTP server.
    if let Some(http) = &snapshot.http {
        gauge(
            encoder,
            "postbox_http_connections",
            "HTTP connections to this endpoint open now.",
            as_gauge(http.open),
        )?;
        gauge(
            encoder,
            "postbox_http_connections_max",
            "Most HTTP connections served at once (max_connections).",
            as_gauge(http.max_connections),
        )?;
        counter(
            encoder,
            "postbox_http_connections_accepted",
            "HTTP connections accepted and served.",
            http.accepted,
        )?;
        counter(
            encoder,
            "postbox_http_connections_refused",
            "HTTP connections answered 503 and closed because max_connections were open.",
            http.refused,
        )?;
        counter(
            encoder,
            "postbox_http_header_timeouts",
            "HTTP connections closed because a request head did not arrive within \
             header_read_timeout (slow clients, idle keep-alive).",
            http.header_timeouts,
        )?;
        counter(
            encoder,
            "postbox_http_write_timeouts",
            "HTTP connections closed because the client read nothing of a response for \
             write_timeout.",
            http.write_timeouts,
        )?;
        counter(
            encoder,
            "postbox_http_accept_errors",
            "Failed accepts (such as EMFILE: out of file descriptors), each followed by a pause.",
            http.accept_errors,
        )?;
    }

    // Patterns.
    if !snapshot.breakers.is_empty() {
        family(
            encoder,
            "postbox_breaker_state",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            Gauge,
            snapshot.breakers.iter().flat_map(|(name, stats)| {
                [
                    postbox::BreakerState::Closed,
                    postbox::BreakerState::Open,
                    postbox::BreakerState::HalfOpen,
                ]
                .into_iter()
                .map(move |state| {
                    (
                        [("breaker", name.as_str()), ("state", state.as_str())],
                        Value::Gauge(i64::from(stats.state == state)),
                    )
                })
            }),
        )?;
        family(
            encoder,
            "postbox_breaker_calls",
            "Calls through each circuit breaker, by outcome.",
            Counter,
            snapshot.breakers.iter().flat_map(|(name, s)| {
                [
                    ("success", s.successes),
                    ("failure", s.failures),
                    ("timeout", s.timeouts),
                    ("panicked", s.panics),
                    ("rejected", s.rejections),
                    ("cancelled", s.cancelled),
                    ("ignored", s.ignored),
                ]
                .into_iter()
                .map(move |(outcome, n)| {
                    (
                        [("breaker", name.as_str()), ("outcome", outcome)],
                        Value::Counter(n),
                    )
                })
            }),
        )?;
        family(
            encoder,
            "postbox_breaker_opened",
            "Times each circuit breaker has opened.",
            Counter,
            snapshot
                .breakers
                .iter()
                .map(|(name, s)| ([("breaker", name.as_str())], Value::Counter(s.times_opened))),
        )?;
    }
    if !snapshot.routers.is_empty() {
        family(
            encoder,
            "postbox_router_routees",
            "Routees of each registered router.",
            Gauge,
            snapshot
                .routers
                .iter()
                .map(|(name, n)| ([("router", name.as_str())], Value::Gauge(as_gauge(*n)))),
        )?;
    }

    // Transport.
    if let Some(t) = &snapshot.transport {
        gauge(
            encoder,
            "postbox_remote_connections",
            "Authenticated connections to other nodes open now.",
            as_gauge(t.connections),
        )?;
        counter(
            encoder,
            "postbox_remote_connections_accepted",
            "Inbound connections accepted (before the handshake).",
            t.connections_accepted,
        )?;
        family(
            encoder,
            "postbox_remote_bytes",
            "Bytes read from (in) and written to (out) other nodes.",
            Counter,
            [
                ([("direction", "in")], Value::Counter(t.bytes_in)),
                ([("direction", "out")], Value::Counter(t.bytes_out)),
            ],
        )?;
        family(
            encoder,
            "postbox_remote_frames",
            "Frames read from (in) and written to (out) other nodes.",
            Counter,
            [
                ([("direction", "in")], Value::Counter(t.frames_in)),
                ([("direction", "out")], Value::Counter(t.frames_out)),
            ],
        )?;
        counter(
            encoder,
            "postbox_remote_reconnects",
            "Connection attempts after the first to the same peer.",
            t.reconnects,
        )?;
        counter(
            encoder,
            "postbox_remote_auth_failures",
            "Handshakes that failed authentication.",
            t.auth_failures,
        )?;
        family(
            encoder,
            "postbox_remote_refused",
            "Connections refused or cut off by this node, by reason.",
            Counter,
            t.refused_by
                .iter()
                .map(|(reason, n)| ([("reason", *reason)], Value::Counter(*n))),
        )?;
        counter(
            encoder,
            "postbox_remote_protocol_errors",
            "Connections closed for malformed or oversized frames.",
            t.protocol_errors,
        )?;
        gauge(
            encoder,
            "postbox_remote_unauthenticated",
            "Inbound connections in their handshake now.",
            as_gauge(t.unauthenticated),
        )?;
        counter(
            encoder,
            "postbox_remote_accept_errors",
            "Failed accepts on the listener (out of file descriptors, say).",
            t.accept_errors,
        )?;
        gauge(
            encoder,
            "postbox_remote_inbound_asks",
            "Asks from other nodes in flight now.",
            as_gauge(t.inbound_asks),
        )?;
        counter(
            encoder,
            "postbox_remote_reads_paused",
            "Times a connection stopped reading: its peer had the most asks in flight, or its read-ahead requests filled the backlog.",
            t.reads_paused,
        )?;
        gauge(
            encoder,
            "postbox_remote_watches",
            "Watches held for other nodes now.",
            as_gauge(t.watches),
        )?;
        counter(
            encoder,
            "postbox_remote_watches_refused",
            "Watches refused at the per-connection limit.",
            t.watches_refused,
        )?;
        counter(
            encoder,
            "postbox_remote_too_large",
            "Frames not sent for being over the frame limit.",
            t.too_large,
        )?;
        counter(
            encoder,
            "postbox_remote_write_stalls",
            "Connections closed because the peer stopped reading.",
            t.write_stalls,
        )?;
        counter(
            encoder,
            "postbox_remote_lookup_timeouts",
            "Lookups unanswered within their timeout.",
            t.lookup_timeouts,
        )?;
        counter(
            encoder,
            "postbox_remote_invalid_trace_contexts",
            "Messages whose trace context was malformed (delivered without it).",
            t.invalid_trace_contexts,
        )?;
        gauge(
            encoder,
            "postbox_remote_quarantined",
            "Incarnations quarantined (declared down) now.",
            as_gauge(t.quarantined),
        )?;
    }

    // Gossip.
    if let Some(g) = &snapshot.gossip {
        family(
            encoder,
            "postbox_cluster_gossip_datagrams",
            "Authenticated gossip datagrams received (in) and datagrams sent (out).",
            Counter,
            [
                ([("direction", "in")], Value::Counter(g.datagrams_in)),
                ([("direction", "out")], Value::Counter(g.datagrams_out)),
            ],
        )?;
        family(
            encoder,
            "postbox_cluster_gossip_rejected",
            "Gossip datagrams rejected, by reason.",
            Counter,
            [
                ([("reason", "malformed")], Value::Counter(g.malformed)),
                (
                    [("reason", "wrong_cluster")],
                    Value::Counter(g.wrong_cluster),
                ),
                (
                    [("reason", "authentication_failed")],
                    Value::Counter(g.auth_failures),
                ),
            ],
        )?;
        family(
            encoder,
            "postbox_cluster_gossip_refusals",
            "Refusals of this node's gossip received: genuine (echoing a datagram it sent) or ignored.",
            Counter,
            [
                ([("kind", "genuine")], Value::Counter(g.refusals_received)),
                ([("kind", "ignored")], Value::Counter(g.refusals_ignored)),
            ],
        )?;
        counter(
            encoder,
            "postbox_cluster_gossip_oversized",
            "Gossip too large to send once framed.",
            g.oversized,
        )?;
    }

    if let Some(d) = &snapshot.downing {
        family(
            encoder,
            "postbox_cluster_downing_decisions",
            "Split-brain decisions this node took, by outcome.",
            Counter,
            [
                (
                    [("decision", "keep_this_side")],
                    Value::Counter(d.kept_this_side),
                ),
                (
                    [("decision", "down_this_side")],
                    Value::Counter(d.downed_this_side),
                ),
                (
                    [("decision", "down_everyone")],
                    Value::Counter(d.downed_everyone),
                ),
            ],
        )?;
        counter(
            encoder,
            "postbox_cluster_members_downed",
            "Members this node declared down by its downing decisions.",
            d.members_downed,
        )?;
        counter(
            encoder,
            "postbox_cluster_pauses",
            "Pauses of this node detected (its gossip driver ran far later than planned).",
            d.pauses,
        )?;
        gauge(
            encoder,
            "postbox_cluster_this_node_down",
            "1 once this node is down (it no longer acts as a member), else 0.",
            i64::from(d.this_node_down),
        )?;
    }

    if let Some(p) = &snapshot.persistence {
        encode_persistence(p, encoder)?;
    }
    if let Some(s) = &snapshot.sharding {
        encode_sharding(s, encoder)?;
    }

    // Cluster.
    if let Some(members) = &snapshot.members {
        family(
            encoder,
            "postbox_cluster_members",
            "Cluster members by status.",
            Gauge,
            MemberStatus::ALL.iter().map(|status| {
                let n = members.iter().filter(|m| m.status == *status).count();
                (
                    [("status", status.as_str())],
                    Value::Gauge(as_gauge(n as u64)),
                )
            }),
        )?;
    }

    let walk = prometheus_client::metrics::gauge::ConstGauge::new(snapshot.walk_seconds);
    walk.encode(encoder.encode_descriptor(
        "postbox_metrics_actor_walk_seconds",
        "How long this scrape took to walk the actor table.",
        None,
        walk.metric_type(),
    )?)?;
    Ok(())
}

/// A histogram without labels.
fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    d: &crate::sources::Distribution,
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // A histogram always has its +Inf bucket, even before the first observation.
    let empty = [(f64::INFINITY, 0)];
    let buckets = if d.buckets.is_empty() {
        &empty[..]
    } else {
        &d.buckets
    };
    metric
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(d.sum, d.count, buckets, None)
}

fn encode_sharding(
    types: &[crate::sources::ShardingStats],
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), Error> {
    use MetricType::{Counter, Gauge};
    type Read = fn(&crate::sources::ShardingStats) -> u64;
    let series: [(&str, &str, MetricType, Read); 14] = [
        ("postbox_sharding_shards", "Shards active on this node (activated by a message, a singleton or remember entities), by entity type.", Gauge, |s| s.shards),
        (
            "postbox_sharding_allocated_shards",
            "Shards the placement puts on this node by its membership view, active or not, by entity type.",
            Gauge,
            |s| s.allocated,
        ),
        ("postbox_sharding_entities", "Active entities on this node, by entity type.", Gauge, |s| s.entities),
        (
            "postbox_sharding_buffered_messages",
            "Messages waiting in sharding buffers (shards moving, entities passivating, homes unknown).",
            Gauge,
            |s| s.buffered,
        ),
        ("postbox_sharding_handoffs", "Shards handed off to other nodes.", Counter, |s| s.handoffs),
        ("postbox_sharding_passivations", "Entities passivated (idle, or least recently used at the cap).", Counter, |s| s.passivations),
        ("postbox_sharding_activations", "Entities started.", Counter, |s| s.activations),
        (
            "postbox_sharding_dropped",
            "Messages for entities given up at a bound (ShardUnavailable dead letters).",
            Counter,
            |s| s.dropped,
        ),
        (
            "postbox_sharding_bounced",
            "Messages parked because the regions disagreed on their shard's home (they wait for the next view change or a short retry).",
            Counter,
            |s| s.bounced,
        ),
        (
            "postbox_sharding_fences",
            "Fences sent: this node's next messages for a moving shard waited until a fence sent the old way came back behind its earlier ones (each sender's order kept).",
            Counter,
            |s| s.fences,
        ),
        (
            "postbox_sharding_direct",
            "Told messages that skipped a region by a direct path (from this node straight to the home's region, or from the connection straight into an active entity here).",
            Counter,
            |s| s.direct,
        ),
        (
            "postbox_sharding_remembered_entities",
            "Entities recorded as remembered in the shards active on this node (remember entities).",
            Gauge,
            |s| s.remembered,
        ),
        (
            "postbox_sharding_remembered_starts",
            "Entities started because they were remembered, without a message.",
            Counter,
            |s| s.remembered_starts,
        ),
        (
            "postbox_sharding_remember_failures",
            "Store failures while reading or writing remembered entities (retried; the entities serve meanwhile).",
            Counter,
            |s| s.remember_failures,
        ),
    ];
    for (name, help, metric_type, read) in series {
        family(
            encoder,
            name,
            help,
            metric_type,
            types.iter().map(|s| {
                let value = match metric_type {
                    Counter => Value::Counter(read(s)),
                    _ => Value::Gauge(as_gauge(read(s))),
                };
                ([("entity_type", s.entity_type.as_str())], value)
            }),
        )?;
    }
    Ok(())
}

fn encode_persistence(
    p: &PersistenceStats,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), Error> {
    use MetricType::Counter;
    histogram(
        encoder,
        "postbox_persist_latency_seconds",
        "Time from a persist (or durable-state save) call to its acknowledgement as durable.",
        &p.persist_latency,
    )?;
    histogram(
        encoder,
        "postbox_persist_batch_events",
        "Events per transaction committed by the store's group commit.",
        &p.batch_size,
    )?;
    histogram(
        encoder,
        "postbox_persist_recovery_seconds",
        "Time of each completed recovery of a persistent actor.",
        &p.recovery_time,
    )?;
    family(
        encoder,
        "postbox_persist_written",
        "Events, snapshots and durable states acknowledged as durable, by what.",
        Counter,
        [
            ([("what", "event")], Value::Counter(p.events_written)),
            ([("what", "snapshot")], Value::Counter(p.snapshots_written)),
            ([("what", "state")], Value::Counter(p.states_written)),
        ],
    )?;
    counter(
        encoder,
        "postbox_persist_events_replayed",
        "Events read back by recoveries.",
        p.events_replayed,
    )?;
    counter(
        encoder,
        "postbox_persist_conflicts",
        "Writes refused because another live instance of the same persistence id wrote first.",
        p.conflicts,
    )?;
    family(
        encoder,
        "postbox_persist_errors",
        "Failed store operations, by kind (conflicts excluded).",
        Counter,
        p.errors
            .iter()
            .map(|(kind, n)| ([("kind", *kind)], Value::Counter(*n))),
    )?;
    counter(
        encoder,
        "postbox_persist_commits",
        "Transactions committed by the store's group commit.",
        p.commits,
    )?;
    counter(
        encoder,
        "postbox_persist_queue_full",
        "Writes that waited because the group commit's queue was full (backpressure).",
        p.queue_full,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::DurationHistogram;
    use std::time::Duration;

    /// Encodes a fixed snapshot, as a scrape would.
    #[derive(Debug)]
    struct Fixed(Snapshot);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), Error> {
            encode_snapshot(&self.0, &mut encoder)
        }
    }

    fn exposition(snapshot: Snapshot) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Fixed(snapshot)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        text
    }

    fn snapshot() -> Snapshot {
        let handler_time = DurationHistogram::default();
        handler_time.observe(Duration::from_micros(3));
        handler_time.observe(Duration::from_millis(2));
        let mailbox_wait = DurationHistogram::default();
        let mut counters = SystemCounters::default();
        counters.actors_started = 12;
        counters.ask_timeouts = 4;
        Snapshot {
            live: 11,
            groups: [(
                "app::Worker",
                Group {
                    actors: 10,
                    depth_sum: 25,
                    depth_max: 9,
                    processed: 70,
                },
            )]
            .into_iter()
            .collect(),
            processed: [("app::Worker", 100)].into_iter().collect(),
            named: vec![NamedDepth {
                actor_type: "app::Worker",
                path: "/user/ledger".into(),
                depth: 9,
            }],
            named_unexported: 3,
            types: [(
                "app::Worker",
                TypeSnapshot {
                    handler_time: handler_time.snapshot(),
                    mailbox_wait: mailbox_wait.snapshot(),
                },
            )]
            .into_iter()
            .collect(),
            counters,
            dead_letters: vec![(DeadLetterReason::MailboxFull, 5)],
            breakers: Vec::new(),
            routers: vec![("pool".into(), 4)],
            transport: Some(TransportStats {
                refused_by: vec![("evicted", 3), ("quarantined", 0)],
                watches: 7,
                ..TransportStats::default()
            }),
            members: Some(vec![Member::new("a", "x", MemberStatus::Leaving)]),
            gossip: Some(GossipCounters::new(10, 11, 1, 0, 2, 0, 4, 0)),
            downing: Some(DowningCounters::new(2, 0, 0, 3, 1, false)),
            http: Some(HttpSnapshot {
                max_connections: 64,
                open: 2,
                refused: 7,
                accept_errors: 3,
                ..HttpSnapshot::default()
            }),
            persistence: None,
            sharding: None,
            walk_seconds: 0.0,
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn a_snapshot_becomes_these_series() {
        let text = exposition(snapshot());
        let lines = lines(&text);
        for expected in [
            "postbox_actors_live 11",
            "postbox_actors_started_total 12",
            "postbox_ask_timeouts_total 4",
            "postbox_dead_letters_total{reason=\"mailbox_full\"} 5",
            "postbox_group_actors{actor_type=\"app::Worker\"} 10",
            "postbox_group_mailbox_depth{actor_type=\"app::Worker\"} 25",
            "postbox_group_mailbox_depth_max{actor_type=\"app::Worker\"} 9",
            "postbox_actor_mailbox_depth{actor_type=\"app::Worker\",actor=\"/user/ledger\"} 9",
            "postbox_named_actors_unexported 3",
            "postbox_messages_processed_total{actor_type=\"app::Worker\"} 100",
            "postbox_handler_duration_seconds_count{actor_type=\"app::Worker\"} 2",
            "postbox_handler_duration_seconds_bucket{le=\"0.000001\",actor_type=\"app::Worker\"} 0",
            "postbox_handler_duration_seconds_bucket{le=\"0.000005\",actor_type=\"app::Worker\"} 1",
            "postbox_handler_duration_seconds_bucket{le=\"0.0025\",actor_type=\"app::Worker\"} 2",
            "postbox_handler_duration_seconds_bucket{le=\"+Inf\",actor_type=\"app::Worker\"} 2",
            "postbox_mailbox_wait_seconds_count{actor_type=\"app::Worker\"} 0",
            "postbox_router_routees{router=\"pool\"} 4",
            "postbox_cluster_members{status=\"leaving\"} 1",
            "postbox_cluster_members{status=\"up\"} 0",
            "postbox_remote_refused_total{reason=\"evicted\"} 3",
            "postbox_remote_refused_total{reason=\"quarantined\"} 0",
            "postbox_remote_watches 7",
            "postbox_cluster_gossip_rejected_total{reason=\"authentication_failed\"} 2",
            "postbox_cluster_gossip_refusals_total{kind=\"ignored\"} 4",
            "postbox_cluster_gossip_datagrams_total{direction=\"out\"} 11",
            "postbox_cluster_downing_decisions_total{decision=\"keep_this_side\"} 2",
            "postbox_cluster_downing_decisions_total{decision=\"down_everyone\"} 0",
            "postbox_cluster_members_downed_total 3",
            "postbox_cluster_pauses_total 1",
            "postbox_cluster_this_node_down 0",
            "postbox_http_connections 2",
            "postbox_http_connections_max 64",
            "postbox_http_connections_refused_total 7",
            "postbox_http_accept_errors_total 3",
            "# TYPE postbox_messages_processed counter",
            "# TYPE postbox_group_mailbox_depth gauge",
            "# TYPE postbox_handler_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn absent_sources_add_no_families() {
        let text = exposition(Snapshot {
            routers: Vec::new(),
            members: None,
            transport: None,
            gossip: None,
            downing: None,
            http: None,
            ..snapshot()
        });
        assert!(!text.contains("postbox_breaker_"), "no breaker registered");
        assert!(!text.contains("postbox_router_"), "no router registered");
        assert!(!text.contains("postbox_remote_"), "no transport");
        assert!(!text.contains("postbox_cluster_"), "no cluster source");
        assert!(!text.contains("postbox_http_"), "not served");
        assert!(!text.contains("postbox_sharding_"), "no sharding source");
    }

    #[test]
    fn sharded_entity_types_become_labelled_series() {
        let mut counter = crate::sources::ShardingStats::new("counter");
        counter.shards = 34;
        counter.allocated = 40;
        counter.remembered = 110;
        counter.remembered_starts = 12;
        counter.remember_failures = 4;
        counter.entities = 120;
        counter.buffered = 3;
        counter.handoffs = 7;
        counter.passivations = 9;
        counter.activations = 130;
        counter.dropped = 1;
        counter.bounced = 2;
        counter.fences = 6;
        counter.direct = 5_000;
        let text = exposition(Snapshot {
            sharding: Some(vec![counter, crate::sources::ShardingStats::new("account")]),
            ..snapshot()
        });
        let lines = lines(&text);
        for expected in [
            "postbox_sharding_shards{entity_type=\"counter\"} 34",
            "postbox_sharding_shards{entity_type=\"account\"} 0",
            "postbox_sharding_entities{entity_type=\"counter\"} 120",
            "postbox_sharding_buffered_messages{entity_type=\"counter\"} 3",
            "postbox_sharding_handoffs_total{entity_type=\"counter\"} 7",
            "postbox_sharding_passivations_total{entity_type=\"counter\"} 9",
            "postbox_sharding_activations_total{entity_type=\"counter\"} 130",
            "postbox_sharding_dropped_total{entity_type=\"counter\"} 1",
            "postbox_sharding_bounced_total{entity_type=\"counter\"} 2",
            "postbox_sharding_fences_total{entity_type=\"counter\"} 6",
            "postbox_sharding_direct_total{entity_type=\"counter\"} 5000",
            "postbox_sharding_allocated_shards{entity_type=\"counter\"} 40",
            "postbox_sharding_allocated_shards{entity_type=\"account\"} 0",
            "postbox_sharding_remembered_entities{entity_type=\"counter\"} 110",
            "postbox_sharding_remembered_starts_total{entity_type=\"counter\"} 12",
            "postbox_sharding_remember_failures_total{entity_type=\"counter\"} 4",
            "# TYPE postbox_sharding_allocated_shards gauge",
            "# TYPE postbox_sharding_remembered_starts counter",
            "# TYPE postbox_sharding_shards gauge",
            "# TYPE postbox_sharding_handoffs counter",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
        }
    }
}

//! # postbox-metrics
//!
//! The observability endpoint of a postbox node: an HTTP server that shows an
//! [`ActorSystem`] from outside. It only reads; it never touches an
//! actor.
//!
//! | path | what |
//! | --- | --- |
//! | `/metrics` | Prometheus scrape, OpenMetrics text (prometheus-client) |
//! | `/actors` | JSON: the deepest mailboxes, per-type groups, the supervision tree (`?top=N&tree=N`) |
//! | `/members` | JSON: cluster members with status and load |
//! | `/health/live` | 200 while the endpoint serves |
//! | `/health/ready` | 200 once marked ready (and the readiness check passes), else 503 |
//! | `/` | a live dashboard: members, actor tree, a chart of mailbox depths (self-contained) |
//!
//! ```no_run
//! use postbox::prelude::*;
//! use postbox_metrics::Metrics;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let system = ActorSystem::new();
//! let metrics = Metrics::builder(&system).build()?;
//! let server = metrics.serve(postbox_metrics::DEFAULT_ADDR).await?;
//! println!("dashboard at http://{}/", server.local_addr());
//! metrics.readiness().set_ready(true); // once the node serves
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Bounds on HTTP clients
//!
//! [`Metrics::serve`] speaks HTTP/1.1 only and holds every client to [`HttpLimits`], so no
//! client — slow, idle or hostile — can hold file descriptors or memory without bound:
//!
//! | bound (default) | at the bound | counted in |
//! | --- | --- | --- |
//! | `max_connections` (64) | one more connection is answered `503` with `connection: close` at once, without reading it, and closed (after at most 1 s in which its input is discarded, so that it reads the 503 rather than a reset; at once when 16 refusals linger already) | `postbox_http_connections_refused` |
//! | `header_read_timeout` (5 s): a request head must arrive within it, on a new connection and between requests on a kept-alive one | the connection is closed (slowloris clients and idle keep-alive alike) | `postbox_http_header_timeouts` |
//! | `write_timeout` (10 s): a response write may stay blocked that long | the connection is closed (a client that stopped reading) | `postbox_http_write_timeouts` |
//! | request heads: 16 KiB | hyper answers `431` and closes | — |
//!
//! A failed `accept` (`EMFILE` when the process is out of file descriptors) is counted in
//! `postbox_http_accept_errors`, logged at most once per 10 s (with how many were not), and
//! followed by a pause doubling from 10 ms to 1 s while failures go on, so the loop never
//! spins and resumes by itself. `postbox_http_connections` shows the connections open now.
//! [`MetricsServer::shutdown`] stops accepting and lets requests in progress finish, for at
//! most 5 s.
//!
//! # What the metrics mean
//!
//! Everything is read at scrape time from the runtime's own lock-free counters, by one walk of
//! the actor table, except two distributions that only exist per message and are sampled as
//! they happen by the observer this crate installs ([`postbox::Observer`]):
//!
//! * `postbox_handler_duration_seconds{actor_type}`: handler run time of one message in 16 per
//!   actor. Its `_count` counts samples; `postbox_messages_processed_total` counts messages.
//! * `postbox_mailbox_wait_seconds{actor_type}`: from the sender claiming a mailbox slot to the
//!   actor taking the message out, for one message in 16 per mailbox (chosen by position).
//!
//! Mailbox depths are gauges per actor type — `postbox_group_mailbox_depth` (sum),
//! `postbox_group_mailbox_depth_max`, `postbox_group_actors` — plus one gauge per *named*
//! actor (`postbox_actor_mailbox_depth{actor_type, actor=path}`), at most
//! [`max_named_actors`](MetricsBuilder::max_named_actors) of them. There is never a series per
//! anonymous actor, so cardinality stays bounded with a million actors; `/actors` gives the
//! deepest mailboxes by name instead.
//!
//! `postbox_messages_processed_total{actor_type}` adds the live actors' processed counts to
//! those of stopped actors (reported to the observer as they stop); it never decreases.
//! Lifecycle counters, dead letters by reason and ask timeouts come from
//! [`ActorSystem::counters`](postbox::ActorSystem::counters) and
//! [`DeadLetters`](postbox::DeadLetters). Circuit breakers and routers appear once
//! registered ([`Metrics::register_breaker`], [`Metrics::register_router`]); the transport's
//! counters, the cluster's members and persistence's counters once a source is given
//! ([`MetricsBuilder::with_remote`], [`MetricsBuilder::with_transport`],
//! [`MetricsBuilder::with_cluster`], [`MetricsBuilder::with_persistence`]).
//!
//! # Cost
//!
//! A scrape (and an `/actors` request) walks every live actor once, on a blocking thread:
//! O(actors), allocation-free per actor for `/metrics`. Between scrapes the runtime pays for
//! the samples only: one observer call per 16 messages for each histogram, and a clock read
//! per 16 messages by senders. `benches/metrics.rs` measures the difference.
//!
//! # Traces
//!
//! With the `otlp` feature (not default), the `otlp` module exports `tracing` spans to an
//! OpenTelemetry collector over OTLP/HTTP, postbox's `handle` spans with the very trace and
//! span ids that travel between nodes (see [`postbox::trace`]).

mod collect;
mod histogram;
mod http;
#[cfg(feature = "otlp")]
pub mod otlp;
mod samples;
mod server;
mod sources;
mod views;

pub use http::{
    HttpLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_WRITE_TIMEOUT,
    MAX_HTTP_TIMEOUT, MAX_MAX_CONNECTIONS, MIN_HTTP_TIMEOUT,
};
pub use server::MetricsServer;
pub use sources::{
    ClusterSource, Distribution, DowningCounters, GossipCounters, Member, MemberStatus,
    PersistenceSource, PersistenceStats, ShardingSource, ShardingStats, SingleNode,
    TransportSource, TransportStats,
};
pub use views::{ActorNode, ActorsView, GroupView, MembersView, TreeView};

use postbox::{ActorSystem, CircuitBreaker, Message, Router};
use samples::Samples;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where [`Metrics::serve`] listens unless told otherwise: loopback only, port 9464.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// Why [`MetricsBuilder::build`] or a registration failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsError {
    /// The system already has an observer (another `Metrics`, or one of your own), so handler
    /// times and mailbox waits could not be collected.
    ObserverTaken,
    /// A breaker or router is already registered under this name (series would collide).
    NameTaken(String),
    /// A bound of the HTTP server ([`HttpLimits`]) is out of its range.
    InvalidLimit {
        /// The bound, as [`HttpLimits`]' method names it (`max_connections`, ...).
        setting: &'static str,
        /// Its range, and the value given.
        reason: String,
    },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::ObserverTaken => f.write_str(
                "the actor system already has an observer; build one Metrics per system",
            ),
            MetricsError::NameTaken(name) => {
                write!(f, "a breaker or router is already registered as {name:?}")
            }
            MetricsError::InvalidLimit { setting, reason } => {
                write!(f, "HTTP limit {setting}: {reason}")
            }
        }
    }
}

impl std::error::Error for MetricsError {}

/// Settings of the views.
#[derive(Debug, Clone)]
struct Config {
    max_named_actors: usize,
    default_top: usize,
    default_tree: usize,
    http: HttpLimits,
}

/// Builds [`Metrics`] for one actor system.
pub struct MetricsBuilder {
    system: ActorSystem,
    config: Config,
    transport: Option<Arc<dyn TransportSource>>,
    cluster: Option<Arc<dyn ClusterSource>>,
    persistence: Option<Arc<dyn PersistenceSource>>,
    sharding: Option<Arc<dyn ShardingSource>>,
    ready_check: Option<Arc<ReadyCheck>>,
}

type ReadyCheck = dyn Fn() -> bool + Send + Sync;

impl fmt::Debug for MetricsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsBuilder")
            .field("config", &self.config)
            .field("transport", &self.transport.is_some())
            .field("cluster", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}

impl MetricsBuilder {
    /// At most this many named actors get a depth gauge of their own (default 100). The rest
    /// are counted in `postbox_named_actors_unexported` and included in their type's group.
    pub fn max_named_actors(mut self, limit: usize) -> Self {
        self.config.max_named_actors = limit;
        self
    }

    /// How many deepest mailboxes `/actors` lists without `?top=` (default 20).
    pub fn default_top(mut self, top: usize) -> Self {
        self.config.default_top = top.min(MAX_TOP);
        self
    }

    /// How many tree nodes `/actors` lists without `?tree=` (default 500).
    pub fn default_tree(mut self, nodes: usize) -> Self {
        self.config.default_tree = nodes.min(MAX_TREE);
        self
    }

    /// The bounds [`Metrics::serve`] holds HTTP clients to (default: [`HttpLimits::default`]).
    /// Checked by [`build`](Self::build).
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.config.http = limits;
        self
    }

    /// Reads the transport's counters from this node's `Remote`.
    #[cfg(feature = "remote")]
    pub fn with_remote(self, remote: postbox_remote::Remote) -> Self {
        self.with_transport(remote)
    }

    /// Reads the transport's counters from `source`.
    pub fn with_transport(mut self, source: impl TransportSource) -> Self {
        self.transport = Some(Arc::new(source));
        self
    }

    /// Reads cluster members from `source` (shown by `/members` and counted by status). Without
    /// one, `/members` reports this node alone ([`SingleNode`]).
    pub fn with_cluster(mut self, source: impl ClusterSource) -> Self {
        self.cluster = Some(Arc::new(source));
        self
    }

    /// Reads persistence's counters from `source` (`postbox_persist*` series).
    pub fn with_persistence(mut self, source: impl PersistenceSource) -> Self {
        self.persistence = Some(Arc::new(source));
        self
    }

    /// Reads sharded entity types' gauges and counters from `source` (`postbox_sharding_*`
    /// series, labelled by entity type).
    pub fn with_sharding(mut self, source: impl ShardingSource) -> Self {
        self.sharding = Some(Arc::new(source));
        self
    }

    /// `/health/ready` also requires `check()` to return true (evaluated per request; keep it
    /// quick), besides the flag set with [`Readiness::set_ready`].
    pub fn ready_when(mut self, check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.ready_check = Some(Arc::new(check));
        self
    }

    /// Installs the sampling observer in the system and returns the endpoint's state.
    ///
    /// Fails with [`MetricsError::InvalidLimit`] if an [`HttpLimits`] bound is out of its
    /// range, and with [`MetricsError::ObserverTaken`] if the system already has an observer.
    pub fn build(self) -> Result<Metrics, MetricsError> {
        self.config.http.validate()?;
        let samples = Arc::new(Samples::default());
        self.system
            .set_observer(samples.clone())
            .map_err(|_| MetricsError::ObserverTaken)?;
        let cluster = self.cluster.unwrap_or_else(|| {
            Arc::new(SingleNode::new(
                &self.system,
                self.system.config().name.clone(),
                "local",
            ))
        });
        Ok(Metrics {
            inner: Arc::new(Inner {
                system: self.system,
                config: self.config,
                samples,
                transport: self.transport,
                cluster: Some(cluster),
                persistence: self.persistence,
                sharding: self.sharding,
                breakers: Mutex::new(Vec::new()),
                routers: Mutex::new(BTreeMap::new()),
                processed_exported: Mutex::new(Default::default()),
                http: Arc::default(),
                readiness: Readiness::default(),
                ready_check: self.ready_check,
            }),
        })
    }
}

/// Most deepest mailboxes `/actors` lists on request.
pub const MAX_TOP: usize = 1_000;
/// Most tree nodes `/actors` lists on request.
pub const MAX_TREE: usize = 10_000;

/// The metrics of one actor system: what `/metrics`, `/actors` and `/members` show, and the
/// readiness flag. Cheap to clone. Build with [`Metrics::builder`], serve with
/// [`Metrics::serve`].
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// A registered router, type-erased.
pub(crate) struct RegisteredRouter {
    routees: Box<dyn Fn() -> usize + Send + Sync>,
    running: Box<dyn Fn() -> bool + Send + Sync>,
}

impl RegisteredRouter {
    pub(crate) fn routees(&self) -> usize {
        (self.routees)()
    }

    pub(crate) fn is_running(&self) -> bool {
        (self.running)()
    }
}

pub(crate) struct Inner {
    pub(crate) system: ActorSystem,
    config: Config,
    pub(crate) samples: Arc<Samples>,
    pub(crate) transport: Option<Arc<dyn TransportSource>>,
    pub(crate) cluster: Option<Arc<dyn ClusterSource>>,
    pub(crate) persistence: Option<Arc<dyn PersistenceSource>>,
    pub(crate) sharding: Option<Arc<dyn ShardingSource>>,
    pub(crate) breakers: Mutex<Vec<(String, CircuitBreaker)>>,
    pub(crate) routers: Mutex<BTreeMap<String, RegisteredRouter>>,
    /// The last `postbox_messages_processed_total` per type (see `collect::clamp_processed`).
    pub(crate) processed_exported: Mutex<std::collections::HashMap<&'static str, u64>>,
    /// The counters of the HTTP server [`Metrics::serve`] runs.
    pub(crate) http: Arc<http::HttpStats>,
    readiness: Readiness,
    ready_check: Option<Arc<ReadyCheck>>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("system", &self.system)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Metrics {
    /// Starts configuring the metrics of `system`.
    pub fn builder(system: &ActorSystem) -> MetricsBuilder {
        MetricsBuilder {
            system: system.clone(),
            config: Config {
                max_named_actors: 100,
                default_top: 20,
                default_tree: 500,
                http: HttpLimits::default(),
            },
            transport: None,
            cluster: None,
            persistence: None,
            sharding: None,
            ready_check: None,
        }
    }

    /// The system it shows.
    pub fn system(&self) -> &ActorSystem {
        &self.inner.system
    }

    /// Shows `breaker`'s state and call outcomes, labelled with its name. Fails if a breaker
    /// with that name is registered already.
    pub fn register_breaker(&self, breaker: &CircuitBreaker) -> Result<(), MetricsError> {
        let mut breakers = lock(&self.inner.breakers);
        let name = breaker.name().to_owned();
        if breakers.iter().any(|(n, _)| *n == name) {
            return Err(MetricsError::NameTaken(name));
        }
        breakers.push((name, breaker.clone()));
        Ok(())
    }

    /// Shows how many routees `router` has, labelled `name`, until the router stops. Fails if
    /// a running router is registered under that name already.
    pub fn register_router<M: Message>(
        &self,
        name: impl Into<String>,
        router: &Router<M>,
    ) -> Result<(), MetricsError> {
        let name = name.into();
        let mut routers = lock(&self.inner.routers);
        if routers.get(&name).is_some_and(RegisteredRouter::is_running) {
            return Err(MetricsError::NameTaken(name));
        }
        let sized = router.clone();
        let system = self.inner.system.clone();
        let id = router.id();
        routers.insert(
            name,
            RegisteredRouter {
                routees: Box::new(move || sized.len()),
                // The router runs while its manager actor does.
                running: Box::new(move || system.actor(id).is_some()),
            },
        );
        Ok(())
    }

    /// The readiness flag behind `/health/ready`.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// Whether `/health/ready` answers 200 now, and if not, why.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.inner.system.is_shutting_down() {
            return Err("the actor system is shutting down");
        }
        if !self.inner.readiness.is_set() {
            return Err("not marked ready yet");
        }
        if let Some(check) = &self.inner.ready_check {
            if !check() {
                return Err("the readiness check failed");
            }
        }
        Ok(())
    }

    /// The OpenMetrics exposition `/metrics` serves, computed now. Walks every actor once:
    /// call it from a blocking context with many actors.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(collect::SystemCollector {
            inner: self.inner.clone(),
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }

    /// The `/actors` view with at most `top` deepest mailboxes and `tree` tree nodes.
    pub fn actors(&self, top: usize, tree: usize) -> ActorsView {
        views::actors_view(&self.inner.system, top.min(MAX_TOP), tree.min(MAX_TREE))
    }

    /// The `/members` view.
    pub fn members(&self) -> MembersView {
        MembersView {
            members: self
                .inner
                .cluster
                .as_ref()
                .map(|c| c.members())
                .unwrap_or_default(),
        }
    }

    fn default_top(&self) -> usize {
        self.inner.config.default_top
    }

    fn default_tree(&self) -> usize {
        self.inner.config.default_tree
    }

    fn http_limits(&self) -> HttpLimits {
        self.inner.config.http
    }

    fn http_stats(&self) -> Arc<http::HttpStats> {
        self.inner.http.clone()
    }
}

/// The flag behind `/health/ready`. A node sets it once it has joined its cluster and
/// serves; it starts unset. Cheap to clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
}

impl Readiness {
    /// Marks the node ready (or not ready, e.g. while it leaves).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! A running node: actor system, transport, cluster membership, services, metrics endpoint,
//! and the order in which they start and stop.

use crate::admin::{self, GoneMembers, Invoker, NodeAdmin};
use crate::config::NodeConfig;
use crate::service::{json_entry, JsonService, Service, StartService};
use crate::services::{Count, CounterEntity, Counters, Echo, EchoService, COUNTER_ROLE};
use postbox::prelude::*;
use postbox::ShutdownReport;
use postbox_cluster::Cluster;
use postbox_metrics::{Metrics, MetricsServer};
use postbox_persistence::Persistence;
use postbox_remote::{Remote, RemoteActor, RemoteConfig};
use postbox_sharding::Sharding;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Why a node could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeError {
    /// The config was refused.
    Config(crate::ConfigError),
    /// The transport could not start (address in use, unreadable TLS files, ...).
    Remote(String),
    /// Joining the cluster failed (refused by a seed: wrong secret or cluster name, ...).
    Cluster(String),
    /// The metrics endpoint could not start.
    Metrics(String),
    /// A service could not start.
    Service(String),
    /// The persistence store could not be opened (`[persistence]`).
    Persistence(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Config(e) => write!(f, "{e}"),
            NodeError::Remote(e) => write!(f, "transport: {e}"),
            NodeError::Cluster(e) => write!(f, "cluster: {e}"),
            NodeError::Metrics(e) => write!(f, "metrics endpoint: {e}"),
            NodeError::Service(e) => write!(f, "{e}"),
            NodeError::Persistence(e) => write!(f, "persistence: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

impl From<crate::ConfigError> for NodeError {
    fn from(error: crate::ConfigError) -> Self {
        NodeError::Config(error)
    }
}

/// Builds a [`Node`]: its config, the actor types other nodes may message, its services.
pub struct NodeBuilder {
    config: NodeConfig,
    exposed: Vec<fn(&Remote)>,
    services: Vec<Box<dyn StartService>>,
    builtins: bool,
    persistence: Option<Persistence>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field(
                "services",
                &self.services.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("builtins", &self.builtins)
            .field("persistence", &self.persistence)
            .finish()
    }
}

impl NodeBuilder {
    fn new() -> Self {
        Self {
            config: NodeConfig::default(),
            exposed: Vec::new(),
            services: Vec::new(),
            builtins: false,
            persistence: None,
        }
    }

    /// Uses `persistence` instead of opening the store `[persistence]` names — for services
    /// whose props need the store before the node starts.
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = Some(persistence);
        self
    }

    /// Uses `config` (by default, [`NodeConfig::default`]: a single node on loopback).
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// Lets other nodes message actors of type `A` (see
    /// [`Remote::expose`](postbox_remote::Remote::expose)).
    pub fn expose<A: RemoteActor>(mut self) -> Self {
        self.exposed.push(|remote| remote.expose::<A>());
        self
    }

    /// Offers `service` to the cluster once the node has joined.
    pub fn service<A: RemoteActor>(mut self, service: Service<A>) -> Self {
        self.services.push(Box::new(service));
        self
    }

    /// Also hosts the built-in services named in the config's `node.services` (`echo`,
    /// `counter`), as the `postbox-node` binary does.
    pub fn builtin_services(mut self) -> Self {
        self.builtins = true;
        self
    }

    /// Starts the node: actor system, transport, cluster (joining through the seeds), the
    /// services, the admin actors, then the metrics endpoint, which reports ready last.
    pub async fn start(self) -> Result<Node, NodeError> {
        let NodeBuilder {
            config,
            exposed,
            mut services,
            builtins,
            persistence,
        } = self;
        config.validate()?;
        let started = Instant::now();
        let persistence = match persistence {
            Some(persistence) => Some(persistence),
            None => open_persistence(&config).await?,
        };

        let mut remote_config = RemoteConfig::new(
            config.remote.listen,
            config.node.cluster.clone(),
            config.node.secret.as_bytes(),
        );
        if let Some(advertise) = config.remote.advertise {
            remote_config = remote_config.advertise(advertise.to_string());
        }
        if let Some(tls) = config.tls().map_err(|e| NodeError::Remote(e.to_string()))? {
            remote_config = remote_config.tls(tls);
        }

        let system = ActorSystem::builder()
            .name(
                config
                    .node
                    .name
                    .clone()
                    .unwrap_or_else(|| config.remote_address().to_string()),
            )
            .shutdown_deadline(config.node.shutdown_timeout)
            .build();
        let remote = Remote::start(&system, remote_config)
            .await
            .map_err(|e| NodeError::Remote(format!("{} ({})", e, config.remote.listen)))?;
        for expose in &exposed {
            expose(&remote);
        }

        let hosts_counter = builtins && config.node.services.iter().any(|s| s == "counter");
        let mut cluster_config = config.cluster_config();
        if hosts_counter {
            // The members that host `counter` entities are those with the service.
            cluster_config = cluster_config.role(COUNTER_ROLE);
        }
        let cluster = match Cluster::join(&system, &remote, cluster_config).await {
            Ok(cluster) => cluster,
            Err(error) => {
                remote.shutdown().await;
                system.shutdown().await;
                return Err(NodeError::Cluster(error.to_string()));
            }
        };
        let gone = GoneMembers::default();
        let follower = gone.follow(&cluster);
        let sharding = Sharding::new(&system, &remote, &cluster);

        if builtins {
            let me = remote.addr().to_owned();
            for name in &config.node.services {
                let service: Box<dyn StartService> = match name.as_str() {
                    "echo" => Box::new(Service::new(
                        "echo",
                        Props::new({
                            let me = me.clone();
                            move || EchoService::new(me.clone())
                        }),
                    )),
                    "counter" => {
                        let mut entity_type =
                            CounterEntity::entity_type(me.clone(), persistence.clone());
                        // `validate` refuses the setting without a store.
                        if let (true, Some(store)) =
                            (config.sharding.remember_entities, &persistence)
                        {
                            entity_type = entity_type.remember_entities(store);
                        }
                        let counters = sharding
                            .register(entity_type)
                            .map_err(|e| NodeError::Service(format!("service `counter`: {e}")))?;
                        Box::new(Service::new(
                            "counter",
                            Props::new(move || Counters::new(counters.clone())),
                        ))
                    }
                    other => {
                        return Err(NodeError::Config(crate::ConfigError {
                            key: "node.services".into(),
                            source: None,
                            reason: format!("unknown service `{other}`"),
                        }))
                    }
                };
                services.push(service);
            }
        }
        // Every node can invoke the built-in services wherever they run, hosted here or not.
        let mut json: Vec<Arc<dyn JsonService>> = builtin_json();
        for service in &services {
            if let Some(entry) = service.json() {
                json.retain(|known| known.name() != entry.name());
                json.push(entry);
            }
        }
        let json = Arc::new(json);

        let node = Node {
            config,
            system,
            remote,
            cluster,
            sharding,
            persistence,
            metrics: None,
            follower: Some(follower),
            sharding_gauges: None,
            started,
        };
        for service in services {
            if let Err(error) = service
                .start(&node.system, &node.remote, &node.cluster)
                .await
            {
                node.abandon().await;
                return Err(NodeError::Service(error));
            }
        }
        if let Err(error) = node.start_admin(&json, &gone) {
            node.abandon().await;
            return Err(NodeError::Service(error));
        }
        node.with_metrics().await
    }
}

/// Opens the store `[persistence]` names (`None` for `store = "none"`).
async fn open_persistence(config: &NodeConfig) -> Result<Option<Persistence>, NodeError> {
    let p = &config.persistence;
    let opened = match p.store.as_str() {
        "none" => return Ok(None),
        "memory" => Ok(Persistence::in_memory()),
        "postgres" => Persistence::postgres(p.url.as_deref().unwrap_or_default()).await,
        _ => Persistence::sqlite(&p.path).await,
    };
    match opened {
        Ok(persistence) => Ok(Some(persistence.snapshot_every(p.snapshot_every))),
        Err(error) => Err(NodeError::Persistence(format!(
            "{} store: {error}",
            p.store
        ))),
    }
}

/// The JSON entries of the built-in services, so that any node can send to them.
fn builtin_json() -> Vec<Arc<dyn JsonService>> {
    vec![
        json_entry::<EchoService, Echo>("echo"),
        json_entry::<Counters, Count>("counter"),
    ]
}

/// A running node. Stop it with [`run_until_signal`](Self::run_until_signal) or
/// [`shutdown`](Self::shutdown); dropping it stops nothing gracefully.
pub struct Node {
    config: NodeConfig,
    system: ActorSystem,
    remote: Remote,
    cluster: Cluster,
    sharding: Sharding,
    persistence: Option<Persistence>,
    metrics: Option<(Metrics, MetricsServer)>,
    follower: Option<JoinHandle<()>>,
    sharding_gauges: Option<JoinHandle<()>>,
    started: Instant,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("node", &self.cluster.node())
            .field("gossip", &self.cluster.gossip_addr())
            .field("metrics", &self.metrics_addr())
            .finish()
    }
}

/// How a node stopped.
#[derive(Debug)]
#[non_exhaustive]
pub struct NodeShutdown {
    /// Whether the leave was acknowledged, the transport drained and every actor stopped
    /// within `node.shutdown_timeout`.
    pub completed: bool,
    /// Whether the other members acknowledged the leave in time.
    pub left_cleanly: bool,
    /// The actor system's report.
    pub actors: Option<ShutdownReport>,
    /// How long it took.
    pub elapsed: Duration,
    /// Why the node stopped on its own, if it did: the cluster declared it down (its side of
    /// a partition lost, or it was paused and the others downed it). It is no longer a member
    /// and must be restarted as a new incarnation.
    pub downed: Option<String>,
}

impl Node {
    /// A builder with the default config.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// The config it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Its actor system.
    pub fn system(&self) -> &ActorSystem {
        &self.system
    }

    /// Its transport.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Its cluster membership.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Its sharded entities: register entity types on it (the built-in `counter` is one).
    pub fn sharding(&self) -> &Sharding {
        &self.sharding
    }

    /// The store its persistent actors use (`None` with `store = "none"`), opened at start:
    /// give clones to the factories of `Journaled` and `DurableState` actors.
    pub fn persistence(&self) -> Option<&Persistence> {
        self.persistence.as_ref()
    }

    /// Where its metrics endpoint listens, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, server)| server.local_addr())
    }

    /// How long since it began to start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn start_admin(
        &self,
        json: &Arc<Vec<Arc<dyn JsonService>>>,
        gone: &GoneMembers,
    ) -> Result<(), String> {
        self.remote.expose::<NodeAdmin>();
        self.remote.expose::<Invoker>();
        let admin = self
            .system
            .spawn(
                Props::new({
                    let (cluster, json, gone) = (self.cluster.clone(), json.clone(), gone.clone());
                    let sharding = self.sharding.clone();
                    move || {
                        NodeAdmin::new(
                            cluster.clone(),
                            sharding.clone(),
                            json.clone(),
                            gone.clone(),
                        )
                    }
                })
                .name(admin::ADMIN),
            )
            .map_err(|e| format!("cannot start the admin actor: {e}"))?;
        self.system
            .registry()
            .register(admin::ADMIN, &admin)
            .map_err(|e| format!("cannot register the admin actor: {e}"))?;
        Ok(())
    }

    async fn with_metrics(mut self) -> Result<Node, NodeError> {
        if !self.config.metrics.enabled {
            return Ok(self);
        }
        let (gauges, follower) =
            crate::metrics::ShardingGauges::follow(&self.sharding, &self.cluster, &self.remote);
        self.sharding_gauges = Some(follower);
        let mut builder = Metrics::builder(&self.system)
            .with_remote(self.remote.clone())
            .with_cluster(crate::metrics::ClusterMembers::new(&self.cluster).with_shards(&gauges))
            .http_limits(self.config.metrics.http_limits());
        if let Some(persistence) = &self.persistence {
            builder =
                builder.with_persistence(crate::metrics::PersistenceCounters::new(persistence));
        }
        builder = builder.with_sharding(gauges);
        let built = builder.build();
        let metrics = match built {
            Ok(metrics) => metrics,
            Err(error) => {
                self.abandon().await;
                return Err(NodeError::Metrics(error.to_string()));
            }
        };
        match metrics.serve(self.config.metrics.listen).await {
            Ok(server) => {
                metrics.readiness().set_ready(true);
                self.metrics = Some((metrics, server));
                Ok(self)
            }
            Err(error) => {
                self.abandon().await;
                Err(NodeError::Metrics(format!(
                    "cannot listen on {}: {error}",
                    self.config.metrics.listen
                )))
            }
        }
    }

    /// Stops what a failed start had started, without the graceful steps.
    async fn abandon(&self) {
        if let Some(gauges) = &self.sharding_gauges {
            gauges.abort();
        }
        self.cluster.kill();
        self.remote.shutdown().await;
        self.system.shutdown_within(Duration::from_secs(1)).await;
    }

    /// Serves until SIGTERM or SIGINT (Ctrl-C), then [`shutdown`](Self::shutdown)s — or
    /// until the cluster declares this node down ([`Cluster::downed`]): then it stops at once
    /// without leaving (it is no longer a member), and the report says why in `downed`.
    pub async fn run_until_signal(self) -> NodeShutdown {
        self.run_until(wait_for_signal()).await
    }

    /// Serves until `stop` resolves (to what stopped it, for the log), then
    /// [`shutdown`](Self::shutdown)s — or until the cluster declares this node down, as
    /// [`run_until_signal`](Self::run_until_signal) does.
    pub async fn run_until<F>(self, stop: F) -> NodeShutdown
    where
        F: std::future::Future,
        F::Output: fmt::Display,
    {
        let cluster = self.cluster.clone();
        tokio::select! {
            signal = stop => {
                tracing::info!(%signal, "stopping: leaving the cluster, then draining");
                self.shutdown().await
            }
            why = cluster.downed() => {
                tracing::error!(
                    node = %cluster.node(),
                    reason = %why,
                    "this node was declared down by the cluster; stopping so that it can be restarted as a new incarnation"
                );
                let mut report = self.shutdown().await;
                report.downed = Some(why);
                report
            }
        }
    }

    /// Stops gracefully within `node.shutdown_timeout`: not ready any more (load balancers
    /// stop sending), leave the cluster (others see `left`, not `down`), drain the transport,
    /// stop every actor (children before parents), close the metrics endpoint.
    pub async fn shutdown(mut self) -> NodeShutdown {
        let started = Instant::now();
        let deadline = self.config.node.shutdown_timeout;
        if let Some((metrics, _)) = &self.metrics {
            metrics.readiness().set_ready(false);
        }
        let steps = async {
            let left = if self.cluster.is_down() {
                // Not a member any more: nothing to leave.
                false
            } else {
                // Shards first: their entities stop here and start again elsewhere.
                self.sharding.leave().await;
                match self.cluster.leave().await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(%error, "leave not acknowledged by every member");
                        false
                    }
                }
            };
            self.remote.shutdown().await;
            let remaining = deadline.saturating_sub(started.elapsed());
            let report = self.system.shutdown_within(remaining).await;
            (left, report)
        };
        let (completed, left_cleanly, actors) = match tokio::time::timeout(deadline, steps).await {
            Ok((left, report)) => (report.completed, left, Some(report)),
            Err(_) => {
                tracing::warn!(?deadline, "shutdown deadline passed; stopping what is left");
                self.cluster.kill();
                (false, false, None)
            }
        };
        if let Some((_, server)) = self.metrics.take() {
            server.shutdown().await;
        }
        if let Some(gauges) = self.sharding_gauges.take() {
            gauges.abort();
        }
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        NodeShutdown {
            completed,
            left_cleanly,
            actors,
            elapsed: started.elapsed(),
            downed: None,
        }
    }
}

/// Which signal asked the node to stop.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

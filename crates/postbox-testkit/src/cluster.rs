//! `TestCluster`: N nodes — actor system, transport and cluster membership each — in one
//! process, on loopback.
//!
//! ```no_run
//! use postbox_cluster::MemberStatus;
//! use postbox_testkit::TestCluster;
//!
//! # async fn run() {
//! let mut nodes = TestCluster::start(3).await;     // every node sees every node up
//! let victim = nodes.node(2).node().clone();
//! nodes.kill(2).await;                             // crash: no leave, no goodbye to gossip
//! nodes.wait_seen(&victim, MemberStatus::Down).await;
//! let restarted = nodes.restart(2).await.node().clone(); // same addresses, new incarnation
//! assert_ne!(restarted.incarnation, victim.incarnation);
//! nodes.wait_all_up().await;
//! nodes.shutdown().await;
//! # }
//! ```
//!
//! # Nodes
//!
//! Node `i` is named `n<i>`. It listens for the transport (TCP) and for gossip (UDP) on free
//! loopback ports, chosen at its first start and kept across [restarts](TestCluster::restart),
//! so a restarted node is a new incarnation at the same addresses, as after a process
//! restart. The first node seeds itself; each later one is seeded with every running node's
//! gossip address. Transport settings are [`remote_config`](crate::remote_config)'s;
//! membership settings are fast, for tests: gossip every 50 ms, unreachable after about
//! 0.4 s of silence, down 200 ms later, load refreshed every 100 ms, 2 s join and leave
//! timeouts. [`TestClusterBuilder`] changes any of them and runs a setup function on every
//! node as it starts (exposing actor types, spawning services), restarts included.
//!
//! # Waiting for membership
//!
//! Each node's membership events are recorded from the moment it joined (its first events
//! are its view at that moment), so waits never miss an event that happened before they
//! began: [`wait_all_up`](TestCluster::wait_all_up) (every running node sees every running
//! node up, as its latest status), [`wait_seen`](TestCluster::wait_seen) (every running
//! node has seen a given incarnation reach a status) and
//! [`ClusterNode::wait_for`]. Each waits at most the cluster's patience
//! ([`PATIENCE`] unless changed) and then panics with what it waited for
//! and what the node saw.
//!
//! # Cutting links
//!
//! [`cut`](TestCluster::cut), [`partition`](TestCluster::partition),
//! [`heal`](TestCluster::heal) and [`heal_all`](TestCluster::heal_all) cut and restore the
//! links between nodes, deterministically, through the transport's link cuts (the
//! `fault-injection` feature of `postbox-remote` and `postbox-cluster`, which this crate
//! turns on): once a call returns, no gossip datagram and no transport frame passes between
//! the two nodes in either direction — their connection is closed, new ones are refused —
//! so each side's failure detector sees the other unreachable and the downing strategy
//! decides, as in a real partition. A cut is between node *indices*: it holds for a
//! restarted node's new incarnation too (same addresses), until healed. Healing lets them
//! reconnect; a node the cluster declared down stays down (restart it, as an orchestrator
//! would). A node that is down no longer counts as [running](ClusterNode::is_running), so
//! the cluster-wide waits leave it out.
//!
//! ```no_run
//! use postbox_cluster::MemberStatus;
//! use postbox_testkit::TestCluster;
//!
//! # async fn run() {
//! let mut nodes = TestCluster::start(5).await;
//! let (three, four) = (nodes.node(3).node().clone(), nodes.node(4).node().clone());
//! nodes.partition(&[0, 1, 2], &[3, 4]).await;      // keep-majority: 3 and 4 go down
//! nodes.wait_seen(&three, MemberStatus::Down).await; // as seen by 0, 1 and 2
//! nodes.wait_seen(&four, MemberStatus::Down).await;
//! nodes.heal_all();
//! nodes.restart(3).await;                            // new incarnations rejoin
//! nodes.restart(4).await;
//! # }
//! ```
//!
//! # Ending
//!
//! [`kill`](TestCluster::kill) is a crash as far as membership can tell: gossip stops without
//! a word, and the node's transport shuts down (its peers see their connections to it close).
//! [`leave`](TestCluster::leave) leaves gracefully first. Neither stops the node's actor
//! system; [`shutdown`](TestCluster::shutdown) ends everything. Dropping the cluster stops
//! every node's gossip; the rest ends with the test's runtime.

use crate::node::{loopback, test_remote_config, TEST_CLUSTER, TEST_SECRET};
use crate::wait::PATIENCE;
use crate::wire::FakeNode;
use postbox::ActorSystem;
use postbox_cluster::{
    Cluster, ClusterConfig, ClusterError, ClusterEvent, EventsError, FailureDetection, Member,
    MemberStatus,
};
use postbox_remote::{LinkPeer, NodeAddr, Remote, RemoteConfig};
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::panic::Location;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

type RemoteTuning = Arc<dyn Fn(RemoteConfig) -> RemoteConfig + Send + Sync>;
type ClusterTuning = Arc<dyn Fn(ClusterConfig) -> ClusterConfig + Send + Sync>;
type Setup = Arc<dyn Fn(&ClusterNode) + Send + Sync>;

/// The failure detection of test clusters: gossip every 50 ms, unreachable after about
/// 0.4 s without heartbeats, down 200 ms after that.
pub fn fast_failure_detection() -> FailureDetection {
    FailureDetection::default()
        .gossip_interval(Duration::from_millis(50))
        .down_after(Duration::from_millis(200))
}

/// How the nodes of a [`TestCluster`] are configured.
#[derive(Clone)]
struct Settings {
    cluster: String,
    secret: Vec<u8>,
    failure_detection: FailureDetection,
    remote: Option<RemoteTuning>,
    membership: Option<ClusterTuning>,
    setup: Option<Setup>,
    patience: Duration,
}

/// Builds a [`TestCluster`]; see the [module docs](self) for the defaults.
pub struct TestClusterBuilder {
    nodes: usize,
    settings: Settings,
}

impl TestClusterBuilder {
    /// How many nodes to start (3 unless told otherwise).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// The cluster's name and secret (for the transport and the gossip alike).
    pub fn cluster(mut self, name: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        self.settings.cluster = name.into();
        self.settings.secret = secret.as_ref().to_vec();
        self
    }

    /// The failure detection tuning (instead of [`fast_failure_detection`]).
    pub fn failure_detection(mut self, tuning: FailureDetection) -> Self {
        self.settings.failure_detection = tuning;
        self
    }

    /// Adjusts every node's transport settings (after the testkit's: listen address, cluster,
    /// secret, reconnects, handshake timeout).
    pub fn remote_config(
        mut self,
        tune: impl Fn(RemoteConfig) -> RemoteConfig + Send + Sync + 'static,
    ) -> Self {
        self.settings.remote = Some(Arc::new(tune));
        self
    }

    /// Adjusts every node's membership settings (after the testkit's: gossip address, seeds,
    /// failure detection, load refresh, join and leave timeouts).
    pub fn cluster_config(
        mut self,
        tune: impl Fn(ClusterConfig) -> ClusterConfig + Send + Sync + 'static,
    ) -> Self {
        self.settings.membership = Some(Arc::new(tune));
        self
    }

    /// Runs `setup` on every node once it has joined, restarted ones included (expose actor
    /// types, spawn and register actors).
    pub fn setup(mut self, setup: impl Fn(&ClusterNode) + Send + Sync + 'static) -> Self {
        self.settings.setup = Some(Arc::new(setup));
        self
    }

    /// How long the cluster's waits wait before they fail ([`PATIENCE`] unless told).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.settings.patience = patience;
        self
    }

    /// Starts the nodes one after the other and waits until every node sees all of them up.
    pub async fn start(self) -> TestCluster {
        let cluster = self.start_unsettled().await;
        cluster.wait_all_up().await;
        cluster
    }

    /// Starts the nodes without waiting for them to see each other.
    pub async fn start_unsettled(self) -> TestCluster {
        let mut cluster = TestCluster {
            settings: self.settings,
            nodes: Vec::with_capacity(self.nodes),
            cuts: Mutex::new(BTreeSet::new()),
        };
        for _ in 0..self.nodes {
            cluster.push_node().await;
        }
        cluster
    }
}

impl fmt::Debug for TestClusterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClusterBuilder")
            .field("nodes", &self.nodes)
            .field("cluster", &self.settings.cluster)
            .field("failure_detection", &self.settings.failure_detection)
            .finish_non_exhaustive()
    }
}

/// N nodes on loopback. See the [module docs](self).
pub struct TestCluster {
    settings: Settings,
    nodes: Vec<ClusterNode>,
    /// The cut links, as pairs of node indices (smaller first).
    cuts: Mutex<BTreeSet<(usize, usize)>>,
}

/// Where a node is in its life, as the harness drove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Killed,
    Left,
}

impl TestCluster {
    /// Starts `nodes` nodes with the default settings and waits until every node sees all of
    /// them up.
    pub async fn start(nodes: usize) -> TestCluster {
        Self::builder().nodes(nodes).start().await
    }

    /// A builder, for other settings.
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder {
            nodes: 3,
            settings: Settings {
                cluster: TEST_CLUSTER.to_owned(),
                secret: TEST_SECRET.to_vec(),
                failure_detection: fast_failure_detection(),
                remote: None,
                membership: None,
                setup: None,
                patience: PATIENCE,
            },
        }
    }

    /// Node `index`. Panics if there is no such node.
    #[track_caller]
    pub fn node(&self, index: usize) -> &ClusterNode {
        self.nodes
            .get(index)
            .unwrap_or_else(|| panic!("no node {index}: the cluster has {}", self.nodes.len()))
    }

    /// Every node, running or not, in index order.
    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// The nodes that are running (not killed, not left).
    pub fn running(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|node| node.is_running())
    }

    /// How many nodes the cluster has had (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A fake member of this cluster (its name and secret) for a
    /// [`WireClient`](crate::wire::WireClient).
    pub fn fake_node(&self) -> FakeNode {
        FakeNode::new(self.settings.cluster.clone(), &self.settings.secret)
    }

    /// Starts one more node, seeded with every running node, and waits until every running
    /// node sees every running node up. Returns the new node.
    pub async fn add_node(&mut self) -> &ClusterNode {
        let index = self.push_node().await;
        self.wait_all_up().await;
        &self.nodes[index]
    }

    /// Starts one more node, seeded with every running node, without waiting for anyone to
    /// see it up (it has joined, but may not have heard of every member yet: e.g. to make it
    /// leave at once). Returns the new node.
    pub async fn add_node_unsettled(&mut self) -> &ClusterNode {
        let index = self.push_node().await;
        &self.nodes[index]
    }

    async fn push_node(&mut self) -> usize {
        let index = self.nodes.len();
        let seeds = self.seeds();
        let node = start_node(
            &self.settings,
            index,
            loopback(),
            loopback(),
            seeds,
            Vec::new(),
            self.settings.patience,
        )
        .await;
        self.nodes.push(node);
        index
    }

    fn seeds(&self) -> Vec<SocketAddr> {
        self.running().map(ClusterNode::gossip_addr).collect()
    }

    /// Crashes node `index` as far as membership can tell: its gossip stops without a word
    /// and its transport shuts down. Its actor system keeps running (test code may still
    /// inspect it). Does nothing to a node that is not running.
    #[track_caller]
    pub fn kill(&mut self, index: usize) -> impl std::future::Future<Output = ()> + '_ {
        let at = Location::caller();
        async move {
            let node = self.node_mut(index, at);
            if node.state == State::Running {
                node.state = State::Killed;
                node.cluster.kill();
                node.remote.shutdown().await;
            }
        }
    }

    /// Makes node `index` leave gracefully (the others see it `Left`), then shuts its
    /// transport down. Panics if leaving fails.
    #[track_caller]
    pub fn leave(&mut self, index: usize) -> impl std::future::Future<Output = ()> + '_ {
        let at = Location::caller();
        async move {
            let patience = self.settings.patience;
            let node = self.node_mut(index, at);
            if node.state != State::Running {
                return;
            }
            node.state = State::Left;
            let left = tokio::time::timeout(patience, node.cluster.leave()).await;
            match left {
                Ok(Ok(())) => node.remote.shutdown().await,
                Ok(Err(error)) => panic!("{}: cannot leave: {error} (at {at})", node.name),
                Err(_) => panic!(
                    "{}: leaving took longer than {patience:?} (at {at})",
                    node.name
                ),
            }
        }
    }

    /// Restarts node `index` as a new incarnation at the same addresses (killing it first if
    /// it is running), seeded with every running node, and waits until every running node
    /// sees every running node up. Returns the new node. Its old `NodeAddr` is gone with the
    /// old node: keep a clone to wait for the old incarnation's `Down`.
    #[track_caller]
    pub fn restart(
        &mut self,
        index: usize,
    ) -> impl std::future::Future<Output = &ClusterNode> + '_ {
        let at = Location::caller();
        async move {
            self.kill(index).await;
            let old = self.node_mut(index, at);
            let (remote_addr, gossip_addr) = (old.remote_addr, old.gossip_addr);
            let seeds = self.seeds();
            let cut_from = self
                .cut_peers_of(index)
                .map(|peer| self.nodes[peer].link_peer())
                .collect();
            // The old sockets close as their tasks wind down: binding may have to wait.
            let node = start_node(
                &self.settings,
                index,
                remote_addr,
                gossip_addr,
                seeds,
                cut_from,
                self.settings.patience,
            )
            .await;
            self.nodes[index] = node;
            self.wait_all_up().await;
            &self.nodes[index]
        }
    }

    /// Cuts the links between nodes `a` and `b`, both ways (see the
    /// [module docs](self#cutting-links)): when this returns, their connection is closed
    /// and no datagram or frame passes between them until [`heal`](Self::heal)ed. The cut
    /// holds across restarts of either. Panics if there is no such node or `a == b`.
    #[track_caller]
    pub fn cut(&self, a: usize, b: usize) -> impl std::future::Future<Output = ()> + '_ {
        let at = Location::caller();
        async move {
            let pair = self.pair(a, b, at);
            self.cuts_mut().insert(pair);
            let (one, other) = (&self.nodes[a], &self.nodes[b]);
            one.remote.cut_link(&other.link_peer()).await;
            other.remote.cut_link(&one.link_peer()).await;
        }
    }

    /// Cuts every link between a node of `one` and a node of `other` (see
    /// [`cut`](Self::cut)); links within each side stay. Returns once every cut is in force.
    #[track_caller]
    pub fn partition<'a>(
        &'a self,
        one: &'a [usize],
        other: &'a [usize],
    ) -> impl std::future::Future<Output = ()> + 'a {
        let at = Location::caller();
        async move {
            for &a in one {
                for &b in other {
                    let pair = self.pair(a, b, at);
                    self.cuts_mut().insert(pair);
                }
            }
            for &a in one {
                for &b in other {
                    let (x, y) = (&self.nodes[a], &self.nodes[b]);
                    x.remote.cut_link(&y.link_peer()).await;
                    y.remote.cut_link(&x.link_peer()).await;
                }
            }
        }
    }

    /// Restores the links between nodes `a` and `b`: they reconnect as after a real outage
    /// (the next gossip round, the next connection someone needs).
    #[track_caller]
    pub fn heal(&self, a: usize, b: usize) {
        let at = Location::caller();
        let pair = self.pair(a, b, at);
        self.cuts_mut().remove(&pair);
        let (one, other) = (&self.nodes[a], &self.nodes[b]);
        one.remote.heal_link(&other.link_peer());
        other.remote.heal_link(&one.link_peer());
    }

    /// Restores every cut link.
    pub fn heal_all(&self) {
        let cut = std::mem::take(&mut *self.cuts_mut());
        for (a, b) in cut {
            let (one, other) = (&self.nodes[a], &self.nodes[b]);
            one.remote.heal_link(&other.link_peer());
            other.remote.heal_link(&one.link_peer());
        }
    }

    /// Whether the links between nodes `a` and `b` are cut.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cuts_mut().contains(&(a.min(b), a.max(b)))
    }

    fn cuts_mut(&self) -> std::sync::MutexGuard<'_, BTreeSet<(usize, usize)>> {
        self.cuts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The nodes whose links to `index` are cut.
    fn cut_peers_of(&self, index: usize) -> impl Iterator<Item = usize> {
        let cuts: Vec<(usize, usize)> = self.cuts_mut().iter().copied().collect();
        cuts.into_iter().filter_map(move |(a, b)| {
            if a == index {
                Some(b)
            } else if b == index {
                Some(a)
            } else {
                None
            }
        })
    }

    fn pair(&self, a: usize, b: usize, at: &Location<'_>) -> (usize, usize) {
        let count = self.nodes.len();
        assert!(
            a < count && b < count,
            "no link {a}–{b}: the cluster has {count} nodes (at {at})"
        );
        assert_ne!(a, b, "a node has no link to itself (at {at})");
        (a.min(b), a.max(b))
    }

    /// Waits until every running node sees every running node (this very incarnation) `Up`
    /// as its latest status.
    #[track_caller]
    pub fn wait_all_up(&self) -> impl std::future::Future<Output = ()> + '_ {
        let at = Location::caller();
        async move {
            let everyone: Vec<NodeAddr> = self.running().map(|n| n.node().clone()).collect();
            for observer in self.running() {
                observer.wait_all_up_at(&everyone, at).await;
            }
        }
    }

    /// Waits until every running node has seen incarnation `subject` reach `status`.
    #[track_caller]
    pub fn wait_seen<'a>(
        &'a self,
        subject: &'a NodeAddr,
        status: MemberStatus,
    ) -> impl std::future::Future<Output = ()> + 'a {
        let at = Location::caller();
        async move {
            for observer in self.running() {
                observer.wait_for_at(subject, status, at).await;
            }
        }
    }

    /// Ends every node: gossip stops, transports shut down, actor systems shut down (each
    /// within the cluster's patience).
    pub async fn shutdown(&mut self) {
        let patience = self.settings.patience;
        for node in &mut self.nodes {
            if node.state == State::Running {
                node.state = State::Killed;
                node.cluster.kill();
                node.remote.shutdown().await;
            }
            let _ = tokio::time::timeout(patience, node.system.shutdown()).await;
        }
    }

    fn node_mut(&mut self, index: usize, at: &Location<'_>) -> &mut ClusterNode {
        let count = self.nodes.len();
        self.nodes
            .get_mut(index)
            .unwrap_or_else(|| panic!("no node {index}: the cluster has {count} (at {at})"))
    }
}

impl fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCluster")
            .field("cluster", &self.settings.cluster)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Starts node `index` at the given addresses, retrying while they are still taken by a
/// previous incarnation, for at most `patience`.
async fn start_node(
    settings: &Settings,
    index: usize,
    remote_at: SocketAddr,
    gossip_at: SocketAddr,
    seeds: Vec<SocketAddr>,
    cut_from: Vec<LinkPeer>,
    patience: Duration,
) -> ClusterNode {
    let name = format!("n{index}");
    let deadline = Instant::now() + patience;
    let (system, remote, cluster) = loop {
        let system = ActorSystem::new();
        let mut remote_config = test_remote_config(remote_at, &settings.cluster, &settings.secret);
        if let Some(tune) = &settings.remote {
            remote_config = tune(remote_config);
        }
        let remote = match Remote::start(&system, remote_config).await {
            Ok(remote) => remote,
            // A restart: the previous incarnation's sockets close as its tasks wind down.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(error) => panic!("{name}: cannot start the transport at {remote_at}: {error}"),
        };
        // Before it gossips or dials anyone: the cuts hold for the new incarnation too.
        for peer in &cut_from {
            remote.cut_link(peer).await;
        }
        let mut config = ClusterConfig::new(settings.cluster.clone(), &settings.secret, gossip_at)
            .seeds(seeds.iter().map(ToString::to_string))
            .failure_detection(settings.failure_detection.clone())
            .load_refresh(Duration::from_millis(100))
            .join_timeout(Duration::from_secs(2))
            .leave_timeout(Duration::from_secs(2));
        if let Some(tune) = &settings.membership {
            config = tune(config);
        }
        match Cluster::join(&system, &remote, config).await {
            Ok(cluster) => break (system, remote, cluster),
            Err(ClusterError::Bind(_)) if Instant::now() < deadline => {
                remote.shutdown().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{name}: cannot join the cluster: {error}"),
        }
    };
    let history = Arc::new(History::default());
    let recorder = tokio::spawn(record(cluster.events(), history.clone()));
    let remote_addr = remote
        .addr()
        .parse()
        .unwrap_or_else(|error| panic!("{name}: transport address {}: {error}", remote.addr()));
    let node = ClusterNode {
        gossip_addr: cluster.gossip_addr(),
        remote_addr,
        name,
        system,
        remote,
        cluster,
        history,
        recorder,
        state: State::Running,
        patience,
    };
    if let Some(setup) = &settings.setup {
        setup(&node);
    }
    node
}

/// A node's membership events, as they came.
#[derive(Default)]
struct History {
    events: Mutex<Vec<ClusterEvent>>,
    changed: Notify,
}

impl History {
    fn events(&self) -> std::sync::MutexGuard<'_, Vec<ClusterEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn record(mut events: postbox_cluster::ClusterEvents, history: Arc<History>) {
    loop {
        match events.recv().await {
            Ok(event) => {
                history.events().push(event);
                history.changed.notify_waiters();
            }
            // Catch up from the current view: one event per member, as a new subscriber gets.
            Err(EventsError::Lagged(_)) => continue,
            Err(_) => {
                history.changed.notify_waiters();
                return;
            }
        }
    }
}

/// One node of a [`TestCluster`]: its actor system, transport and membership.
pub struct ClusterNode {
    /// The node's actor system.
    pub system: ActorSystem,
    /// The node's transport.
    pub remote: Remote,
    /// The node's membership.
    pub cluster: Cluster,
    name: String,
    remote_addr: SocketAddr,
    gossip_addr: SocketAddr,
    history: Arc<History>,
    recorder: JoinHandle<()>,
    state: State,
    patience: Duration,
}

impl ClusterNode {
    /// The node's name: `n<index>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This incarnation: transport address, node id, incarnation.
    pub fn node(&self) -> &NodeAddr {
        self.cluster.node()
    }

    /// Where the transport listens (`host:port`).
    pub fn addr(&self) -> &str {
        self.remote.addr()
    }

    /// Where the node gossips.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// Whether the node runs as a member: it was neither killed nor made to leave, and the
    /// cluster has not declared it down (the losing side of a partition, say).
    pub fn is_running(&self) -> bool {
        self.state == State::Running && !self.cluster.is_down()
    }

    /// Whether the cluster declared this node down (it downed itself as the losing side of a
    /// partition, or learned another member's verdict). A down node no longer acts as a
    /// member; [restart](TestCluster::restart) it for a new incarnation.
    pub fn is_down(&self) -> bool {
        self.cluster.is_down()
    }

    /// This node as the link cuts name it: its transport and gossip addresses.
    fn link_peer(&self) -> LinkPeer {
        LinkPeer::new(self.remote.addr(), Some(self.gossip_addr))
    }

    /// The members this node sees `Up` now.
    pub fn up_members(&self) -> Vec<Member> {
        self.cluster
            .members()
            .into_iter()
            .filter(|member| member.status == MemberStatus::Up)
            .collect()
    }

    /// Every membership event this node has had since it joined, in order.
    pub fn events_seen(&self) -> Vec<ClusterEvent> {
        self.history.events().clone()
    }

    /// Waits until this node has seen incarnation `subject` reach `status` (at any time since
    /// it joined); returns that event.
    #[track_caller]
    pub fn wait_for<'a>(
        &'a self,
        subject: &'a NodeAddr,
        status: MemberStatus,
    ) -> impl std::future::Future<Output = ClusterEvent> + 'a {
        let at = Location::caller();
        self.wait_for_at(subject, status, at)
    }

    async fn wait_for_at(
        &self,
        subject: &NodeAddr,
        status: MemberStatus,
        at: &Location<'_>,
    ) -> ClusterEvent {
        let what = format!("{subject} {status:?}");
        self.wait_until(&what, at, |events| {
            events
                .iter()
                .find(|event| event.member().node == *subject && event.member().status == status)
                .cloned()
        })
        .await
    }

    async fn wait_all_up_at(&self, everyone: &[NodeAddr], at: &Location<'_>) {
        let what = format!(
            "all of {} up",
            everyone
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.wait_until(&what, at, |events| {
            everyone
                .iter()
                .all(|node| {
                    events
                        .iter()
                        .rev()
                        .find(|event| event.member().node == *node)
                        .is_some_and(|event| event.member().status == MemberStatus::Up)
                })
                .then_some(())
        })
        .await
    }

    /// Waits until `found` finds something in the history, at most the cluster's patience.
    async fn wait_until<T>(
        &self,
        what: &str,
        at: &Location<'_>,
        mut found: impl FnMut(&[ClusterEvent]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + self.patience;
        loop {
            let changed = self.history.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = found(&self.history.events()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let seen: Vec<String> = self
                    .history
                    .events()
                    .iter()
                    .map(|event| format!("{} {:?}", event.member().node, event.member().status))
                    .collect();
                panic!(
                    "{}: did not see {what} within {:?} (waited at {at}); it saw: [{}]",
                    self.name,
                    self.patience,
                    seen.join(", ")
                );
            }
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.recorder.abort();
        if self.state == State::Running {
            self.cluster.kill();
        }
    }
}

impl fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterNode")
            .field("name", &self.name)
            .field("node", self.node())
            .field("gossip_addr", &self.gossip_addr)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

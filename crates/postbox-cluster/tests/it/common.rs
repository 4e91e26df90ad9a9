//! Nodes, a worker actor, and waiting on events with a deadline.

use postbox::prelude::*;
use postbox_cluster::{
    Cluster, ClusterConfig, ClusterEvent, ClusterEvents, FailureDetection, Member, MemberStatus,
    ServiceKey,
};
use postbox_remote::{remote_actor, remote_message, NodeAddr, Remote, RemoteConfig};
use serde::{Deserialize, Serialize};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) const CLUSTER: &str = "it";
pub(crate) const SECRET: &[u8] = b"cluster test secret";

/// Hang guard for anything a test waits on.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) async fn within<F: IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("timed out")
}

/// Fast failure detection for tests: 50 ms gossip, unreachable after ~0.4 s of silence,
/// down 200 ms later.
pub(crate) fn fast() -> FailureDetection {
    FailureDetection::default()
        .gossip_interval(Duration::from_millis(50))
        .down_after(Duration::from_millis(200))
}

pub(crate) fn config(seeds: &[SocketAddr]) -> ClusterConfig {
    ClusterConfig::new(CLUSTER, SECRET, "127.0.0.1:0".parse().unwrap())
        .seeds(seeds.iter().map(ToString::to_string))
        .failure_detection(fast())
        .load_refresh(Duration::from_millis(100))
        .join_timeout(Duration::from_secs(2))
}

/// One node: its system, transport and membership.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) system: ActorSystem,
    pub(crate) remote: Remote,
    pub(crate) cluster: Cluster,
}

impl Node {
    pub(crate) async fn start(name: &str, config: ClusterConfig) -> Node {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap(), config).await
    }

    /// A node whose remote transport listens on `remote_addr`.
    pub(crate) async fn start_at(
        name: &str,
        remote_addr: SocketAddr,
        config: ClusterConfig,
    ) -> Node {
        let system = ActorSystem::new();
        let remote = Remote::start(&system, RemoteConfig::new(remote_addr, CLUSTER, SECRET))
            .await
            .expect("remote transport");
        let cluster = Cluster::join(&system, &remote, config).await.expect("join");
        Node {
            name: name.into(),
            system,
            remote,
            cluster,
        }
    }

    pub(crate) fn gossip(&self) -> SocketAddr {
        self.cluster.gossip_addr()
    }

    pub(crate) fn addr(&self) -> NodeAddr {
        self.cluster.node().clone()
    }

    /// Spawns a worker named after this node and registers it under `key`.
    pub(crate) async fn serve(&self, key: &ServiceKey<Worker>) -> ActorRef<Worker> {
        let name = self.name.clone();
        let worker = self
            .system
            .spawn(Props::new(move || Worker { node: name.clone() }))
            .unwrap();
        self.cluster
            .receptionist()
            .register(key, &worker)
            .await
            .unwrap();
        worker
    }

    /// Vanishes as a crash would: gossip stops without a word, connections drop.
    pub(crate) async fn crash(&self) {
        self.cluster.kill();
        self.remote.shutdown().await;
    }
}

/// Waits until `events` shows `member` (by identity) reaching `status`; returns the events
/// seen on the way, that one included.
pub(crate) async fn wait_for(
    events: &mut ClusterEvents,
    node: &NodeAddr,
    status: MemberStatus,
) -> Vec<ClusterEvent> {
    within(async {
        let mut seen = Vec::new();
        loop {
            let event = events.recv().await.expect("event stream");
            let done = event.member().node == *node && event.member().status == status;
            seen.push(event);
            if done {
                return seen;
            }
        }
    })
    .await
}

/// Waits until `events` has shown every node in `nodes` up.
pub(crate) async fn wait_all_up(events: &mut ClusterEvents, nodes: &[NodeAddr]) {
    within(async {
        let mut up = std::collections::HashSet::new();
        while !nodes.iter().all(|n| up.contains(n)) {
            let event = events.recv().await.expect("event stream");
            if let ClusterEvent::MemberUp(member) = &event {
                up.insert(member.node.clone());
            }
        }
    })
    .await
}

/// Starts `n` nodes, the first one the seed of the others, and waits until each sees all up.
pub(crate) async fn cluster_of(n: usize) -> Vec<Node> {
    let first = Node::start("n0", config(&[])).await;
    let seed = first.gossip();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(Node::start(&format!("n{i}"), config(&[seed])).await);
    }
    let all: Vec<NodeAddr> = nodes.iter().map(Node::addr).collect();
    for node in &nodes {
        wait_all_up(&mut node.cluster.events(), &all).await;
    }
    nodes
}

pub(crate) fn up_members(node: &Node) -> Vec<Member> {
    node.cluster
        .members()
        .into_iter()
        .filter(|m| m.status == MemberStatus::Up)
        .collect()
}

/// Replies with the name of its node; `Stall` keeps it busy.
pub(crate) struct Worker {
    node: String,
}
impl Actor for Worker {}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct WhereAreYou;
impl Message for WhereAreYou {
    type Reply = String;
    remote_message!("it.WhereAreYou");
}
impl Handler<WhereAreYou> for Worker {
    async fn handle(&mut self, _: WhereAreYou, _: &mut Context<Self>) -> String {
        self.node.clone()
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Stall(pub u64);
impl Message for Stall {
    type Reply = ();
    remote_message!("it.Stall");
}
impl Handler<Stall> for Worker {
    async fn handle(&mut self, Stall(ms): Stall, _: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

remote_actor!(Worker: WhereAreYou, Stall);

/// An actor of another type, for typed-key checks.
pub(crate) struct Other;
impl Actor for Other {}
remote_actor!(Other: WhereAreYou);
impl Handler<WhereAreYou> for Other {
    async fn handle(&mut self, _: WhereAreYou, _: &mut Context<Self>) -> String {
        "other".into()
    }
}

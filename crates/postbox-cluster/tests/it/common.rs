//! The worker the tests register and route to, and nodes for the tests that configure
//! membership themselves. Clusters of N nodes, bounded waits and fast failure detection are
//! postbox-testkit's (`TestCluster`, `within`, `fast_failure_detection`).

use postbox::prelude::*;
use postbox_cluster::{Cluster, ClusterConfig, ServiceKey};
use postbox_remote::{remote_actor, remote_message, NodeAddr, Remote};
use postbox_testkit::cluster::fast_failure_detection;
use postbox_testkit::node::loopback;
use postbox_testkit::{ClusterNode, RemoteNode, TEST_CLUSTER, TEST_SECRET};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) use postbox_testkit::{within, TestCluster, PATIENCE};

/// Membership settings for a test node seeded with `seeds`: the testkit cluster's name and
/// secret, its fast failure detection, a 2 s join timeout.
pub(crate) fn config(seeds: &[SocketAddr]) -> ClusterConfig {
    ClusterConfig::new(TEST_CLUSTER, TEST_SECRET, loopback())
        .seeds(seeds.iter().map(ToString::to_string))
        .failure_detection(fast_failure_detection())
        .load_refresh(Duration::from_millis(100))
        .join_timeout(Duration::from_secs(2))
}

/// One node joined with membership settings of the test's own (where a `TestCluster`'s
/// uniform settings do not fit): a testkit transport, then `Cluster::join`.
pub(crate) struct Node {
    pub(crate) name: String,
    /// Kept so that the node's actors live as long as the node.
    _system: ActorSystem,
    pub(crate) remote: Remote,
    pub(crate) cluster: Cluster,
}

impl Node {
    pub(crate) async fn start(name: &str, config: ClusterConfig) -> Node {
        let RemoteNode { system, remote, .. } = RemoteNode::start().await;
        let cluster = Cluster::join(&system, &remote, config).await.expect("join");
        Node {
            name: name.into(),
            _system: system,
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
}

/// Spawns a worker named after `node` and registers it under `key`.
pub(crate) async fn serve(node: &ClusterNode, key: &ServiceKey<Worker>) -> ActorRef<Worker> {
    let name = node.name().to_owned();
    let worker = node
        .system
        .spawn(Props::new(move || Worker { node: name.clone() }))
        .unwrap();
    node.cluster
        .receptionist()
        .register(key, &worker)
        .await
        .unwrap();
    worker
}

/// Replies with the name of its node; `Stall` keeps it busy.
pub(crate) struct Worker {
    pub(crate) node: String,
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

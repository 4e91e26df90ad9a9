//! `RemoteNode`: an actor system with a transport on loopback, for tests across nodes in one
//! process.
//!
//! Every node the testkit starts listens on `127.0.0.1` on a free port (port 0: the kernel
//! picks one, so tests never collide) and belongs to the cluster [`TEST_CLUSTER`] with the
//! secret [`TEST_SECRET`], unless given another [`RemoteConfig`]. [`remote_config`] is that
//! configuration: loopback, the test cluster, three connection attempts 20 ms apart and a 2 s
//! handshake timeout, so that a test about an unreachable peer fails fast.
//!
//! A [`FakeNode`] of the same cluster ([`RemoteNode::fake_node`]) lets a
//! [`WireClient`](crate::wire::WireClient) authenticate with the node as a member would.

use crate::wait::PATIENCE;
use crate::wire::FakeNode;
use postbox::ActorSystem;
use postbox_remote::{NodeAddr, Remote, RemoteConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// The cluster name of the nodes the testkit starts.
pub const TEST_CLUSTER: &str = "postbox-testkit";

/// The cluster secret of the nodes the testkit starts. For loopback tests only.
pub const TEST_SECRET: &[u8] = b"postbox-testkit: a secret for loopback tests only";

/// A free loopback port: `127.0.0.1:0`.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The transport settings of a test node: listening on a free loopback port, in
/// [`TEST_CLUSTER`] with [`TEST_SECRET`], three connection attempts 20 ms apart, a 2 s
/// handshake timeout; everything else as [`RemoteConfig::new`] has it.
pub fn remote_config() -> RemoteConfig {
    remote_config_at(loopback())
}

/// [`remote_config`] listening on `listen`.
pub fn remote_config_at(listen: SocketAddr) -> RemoteConfig {
    test_remote_config(listen, TEST_CLUSTER, TEST_SECRET)
}

/// The test settings for a node of `cluster` with `secret`, listening on `listen`.
pub(crate) fn test_remote_config(listen: SocketAddr, cluster: &str, secret: &[u8]) -> RemoteConfig {
    RemoteConfig::new(listen, cluster, secret)
        .reconnect(3, Duration::from_millis(20))
        .handshake_timeout(Duration::from_secs(2))
}

/// An actor system and its transport, on loopback.
#[derive(Debug)]
pub struct RemoteNode {
    /// The node's actor system.
    pub system: ActorSystem,
    /// The node's transport.
    pub remote: Remote,
    cluster: String,
    secret: Vec<u8>,
}

impl RemoteNode {
    /// Starts a node with [`remote_config`]. Panics if it cannot listen.
    pub async fn start() -> Self {
        Self::start_with(remote_config()).await
    }

    /// Starts a node with `config`. Panics if it cannot listen.
    pub async fn start_with(config: RemoteConfig) -> Self {
        let system = ActorSystem::new();
        let (cluster, secret) = (config.cluster().to_owned(), config.secret().to_vec());
        let remote = Remote::start(&system, config)
            .await
            .unwrap_or_else(|error| panic!("cannot start a test node's transport: {error}"));
        Self {
            system,
            remote,
            cluster,
            secret,
        }
    }

    /// Where the node listens (`host:port`).
    pub fn addr(&self) -> &str {
        self.remote.addr()
    }

    /// The node's address, id and incarnation.
    pub fn node(&self) -> &NodeAddr {
        self.remote.node()
    }

    /// A fake member of this node's cluster (its name and secret), for a
    /// [`WireClient`](crate::wire::WireClient).
    pub fn fake_node(&self) -> FakeNode {
        FakeNode::new(self.cluster.clone(), &self.secret)
    }

    /// Shuts the transport down (draining it), then the actor system; panics if that takes
    /// longer than [`PATIENCE`].
    pub async fn shutdown(&self) {
        crate::within(PATIENCE, async {
            self.remote.shutdown().await;
            self.system.shutdown().await;
        })
        .await;
    }
}

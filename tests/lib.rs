//! Workspace-level scenarios: whole-system behaviour that crosses crate and process
//! boundaries. The tests live in `scenarios/` and `actix/`; this library holds what they share
//! with the peer processes they start (`bin/`): the test actors, and how a node of the test
//! cluster is configured. (The peers are binaries of this package, so they cannot use a
//! dev-dependency such as postbox-testkit; the test side talks to them with these settings.)

#![allow(missing_docs)] // test fixtures

use postbox::prelude::*;
use postbox_remote::{Remote, RemoteConfig};
use std::time::Duration;

// The actors are postbox-remote's test actors, compiled here too so that a peer process hosts
// the very same types and tags as the tests that talk to it.
#[path = "../crates/postbox-remote/tests/it/actors.rs"]
mod actors;
pub use actors::*;

pub const CLUSTER: &str = "test-cluster";
pub const SECRET: &[u8] = b"correct horse battery staple";

/// A node of `CLUSTER` with `secret` on a free loopback port, failing fast when a peer is
/// unreachable (three connection attempts 20 ms apart, a 2 s handshake timeout).
pub fn config(secret: &[u8]) -> RemoteConfig {
    RemoteConfig::new("127.0.0.1:0".parse().expect("address"), CLUSTER, secret)
        .reconnect(3, Duration::from_millis(20))
        .handshake_timeout(Duration::from_secs(2))
}

/// A node hosting a `Journal` registered as "journal" (transient: `Quit` ends it for good).
pub async fn host() -> (ActorSystem, Remote, ActorRef<Journal>) {
    let (system, remote) = client().await;
    let journal = serve_journal(&system, &remote);
    (system, remote, journal)
}

/// A node with nothing on it.
pub async fn client() -> (ActorSystem, Remote) {
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config(SECRET))
        .await
        .expect("listen");
    (system, remote)
}

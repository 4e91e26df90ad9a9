//! The hostile-input suite: what a misbehaving, malicious or merely paused peer can do to a
//! node, and the bound that holds each time (issue 12's findings). Every test drives a real
//! transport on loopback — most through `postbox-testkit`'s `WireClient`, which speaks the
//! protocol byte by byte — and asserts both that the bound holds (a counter, a refusal with
//! its reason) and that the node keeps serving a well-behaved client. The findings that need
//! a cluster or another process (accept, gossip, identity) are in the workspace's `tests/`.

mod admission;
mod backlog;
mod errors;
mod logs;
mod lookups;
mod quarantine;
mod replies;
mod watches;

pub(crate) use crate::actors::*;
use postbox::prelude::*;
use postbox_remote::{Remote, RemoteConfig};
use postbox_testkit::{remote_config, RemoteNode, WireClient};
use std::time::Duration;

/// A node hosting a `Prey` registered as "prey" (restarted if it panics, not if it stops),
/// with `config`.
pub(crate) async fn prey_node(config: RemoteConfig) -> (RemoteNode, ActorRef<Prey>) {
    let node = RemoteNode::start_with(config).await;
    node.remote.expose::<Prey>();
    let prey = node
        .system
        .spawn(Props::new(|| Prey).restart(Restart::Transient))
        .expect("spawn");
    node.system
        .registry()
        .register("prey", &prey)
        .expect("register");
    (node, prey)
}

/// A client node that looks the prey up; the node still serves it (used after every attack).
pub(crate) async fn still_serving(addr: &str) {
    let client = RemoteNode::start_with(remote_config()).await;
    let prey: ActorRef<Prey> = postbox_testkit::within(
        postbox_testkit::PATIENCE,
        client.remote.lookup(addr, "prey"),
    )
    .await
    .expect("a well-behaved client is served");
    let answer = postbox_testkit::within(postbox_testkit::PATIENCE, prey.ask(Ping(42)))
        .await
        .expect("answered");
    assert_eq!(answer, 42);
    client.shutdown().await;
}

/// A wire client that has completed the handshake with `node` as a fake member.
pub(crate) async fn member_client(node: &RemoteNode) -> WireClient {
    WireClient::connect_as(node.addr(), &node.fake_node())
        .await
        .expect("handshake")
}

/// The transport's counters, for assertions.
pub(crate) fn stats(remote: &Remote) -> postbox_remote::RemoteStats {
    remote.stats()
}

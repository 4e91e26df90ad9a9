//! The hostile-input suite: what a misbehaving, malicious or merely paused peer can do to a
//! node, and the bound that holds each time (issue 12's findings). Every test drives a real
//! transport on loopback — most through `postbox-testkit`'s `WireClient`, which speaks the
//! protocol byte by byte — and asserts both that the bound holds (a counter, a refusal with
//! its reason) and that the node keeps serving a well-behaved client.

mod accept;
mod admission;
mod errors;
mod gossip;
mod identity;
mod logs;
mod quarantine;
mod replies;
mod watches;

use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message, Remote, RemoteConfig};
use postbox_testkit::{remote_config, RemoteNode, WireClient};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The actor the hostile peers aim at, registered as `"prey"`.
#[derive(Default)]
pub(crate) struct Prey;

impl Actor for Prey {}

/// Answers with `n` bytes.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Blob(pub(crate) usize);
impl Message for Blob {
    type Reply = Vec<u8>;
    remote_message!("hostile.Blob");
}
impl Handler<Blob> for Prey {
    async fn handle(&mut self, Blob(n): Blob, _: &mut Context<Self>) -> Vec<u8> {
        vec![7; n]
    }
}

/// Answers with its number.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Ping(pub(crate) u64);
impl Message for Ping {
    type Reply = u64;
    remote_message!("hostile.Ping");
}
impl Handler<Ping> for Prey {
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> u64 {
        n
    }
}

/// Panics in its handler.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Boom;
impl Message for Boom {
    type Reply = ();
    remote_message!("hostile.Boom");
}
impl Handler<Boom> for Prey {
    async fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
        panic!("boom (on purpose)");
    }
}

/// Stops the actor (for good: it is transient).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Vanish;
impl Message for Vanish {
    type Reply = ();
    remote_message!("hostile.Vanish");
}
impl Handler<Vanish> for Prey {
    async fn handle(&mut self, _: Vanish, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Takes `ms` milliseconds.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Slow(pub(crate) u64);
impl Message for Slow {
    type Reply = u64;
    remote_message!("hostile.Slow");
}
impl Handler<Slow> for Prey {
    async fn handle(&mut self, Slow(ms): Slow, _: &mut Context<Self>) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

/// Takes bytes, answers how many.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Swallow(pub(crate) Vec<u8>);
impl Message for Swallow {
    type Reply = usize;
    remote_message!("hostile.Swallow");
}
impl Handler<Swallow> for Prey {
    async fn handle(&mut self, Swallow(bytes): Swallow, _: &mut Context<Self>) -> usize {
        bytes.len()
    }
}

remote_actor!(Prey: Blob, Ping, Boom, Vanish, Slow, Swallow);

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

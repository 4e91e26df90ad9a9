//! Bad peers are refused with specific reasons, and the node keeps serving the good ones.

use super::common::*;
use postbox::prelude::*;
use postbox_remote::{ConnectError, Refusal, RemoteConfig, RemoteError};
use postbox_testkit::node::loopback;
use postbox_testkit::wire::{CloseReason, FakeNode, WireClient};
use postbox_testkit::{TEST_CLUSTER, TEST_SECRET};
use postbox_wire::{Frame, Proof, RefuseReason};
use std::time::Duration;

/// The host still answers a well-behaved client.
async fn still_serving(addr: &str) {
    let (_system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(addr, "journal"))
        .await
        .unwrap();
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("alive".into())))
            .await
            .unwrap(),
        "alive"
    );
}

/// Reads until the host closes the connection; returns why it did.
async fn closed_by_host(client: &mut WireClient) -> CloseReason {
    match client.wait_closed().await {
        Ok(reason) => reason,
        Err(error) => panic!("the host did not close the connection: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_secret_is_refused_on_both_sides() {
    let (_host_system, host, _journal) = host().await;
    // The testkit's settings, but another secret.
    let wrong_secret = RemoteConfig::new(loopback(), TEST_CLUSTER, b"wrong secret")
        .reconnect(3, Duration::from_millis(20))
        .handshake_timeout(Duration::from_secs(2));
    let (_intruder_system, intruder) = client_with(wrong_secret).await;
    match within(PATIENCE, intruder.lookup::<Journal>(host.addr(), "journal")).await {
        // The host's proof fails against the intruder's secret first.
        Err(RemoteError::Connect(ConnectError::AuthenticationFailed)) => {}
        other => panic!("expected an authentication failure, got {other:?}"),
    }
    assert_eq!(intruder.stats().auth_failures, 1);
    still_serving(host.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_fails_the_proof_is_refused_by_the_host() {
    let (_host_system, host, _journal) = host().await;
    // Speak the protocol by hand: a hello, then a bogus proof, without waiting for the
    // challenge.
    let member = FakeNode::new(TEST_CLUSTER, TEST_SECRET);
    let mut client = WireClient::connect(host.addr()).await.unwrap();
    client
        .send_all(&[
            member.hello([7; 32]),
            Frame::Proof(Proof { proof: [0; 32] }),
        ])
        .await
        .unwrap();
    match closed_by_host(&mut client).await {
        CloseReason::Refused {
            reason: RefuseReason::AuthenticationFailed,
            ..
        } => {}
        other => panic!("expected an authentication refusal, got {other}"),
    }
    assert_eq!(host.stats().auth_failures, 1);
    still_serving(host.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_before_it_is_read() {
    let (_host_system, host, _journal) = host().await;
    let mut client = WireClient::connect(host.addr()).await.unwrap();
    // Announce a 1 GiB frame: refused on the length alone.
    client.announce_frame(1 << 30).await.unwrap();
    closed_by_host(&mut client).await;
    assert_eq!(host.stats().refused, 1);
    still_serving(host.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_refused_and_the_node_keeps_serving() {
    let (_host_system, host, _journal) = host().await;
    for seed in 0..5u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let garbage: Vec<u8> = (0..512)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let mut client = WireClient::connect(host.addr()).await.unwrap();
        // The host may close before it has taken all of it.
        let _ = client.write_raw(&garbage).await;
        closed_by_host(&mut client).await;
    }
    assert_eq!(host.stats().refused, 5);
    still_serving(host.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_and_do_not_take_authenticated_slots() {
    let (_host_system, host, _journal) = host_with(
        remote_config()
            .handshake_timeout(Duration::from_millis(300))
            .max_connections(1),
    )
    .await;
    // A silent connection is pending, not authenticated...
    let mut silent = WireClient::connect(host.addr()).await.unwrap();
    // (once the host has accepted it: the kernel completes a connect before `accept` runs)
    until(PATIENCE, "the silent connection's accept", || {
        host.stats().unauthenticated == 1
    })
    .await;
    // ...so it does not take the only authenticated slot: a client gets in.
    let (_client_system, first) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, first.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("in".into())))
            .await
            .unwrap(),
        "in"
    );
    // The silent one is dropped when its handshake time is up, and counted as such.
    closed_by_host(&mut silent).await;
    until(PATIENCE, "the timeout to be counted", || {
        host.stats().refused_by(Refusal::HandshakeTimeout) == 1
    })
    .await;
    assert_eq!(host.stats().unauthenticated, 0);
    // The slot is taken: a second authenticated peer is refused, saying why.
    let (_other_system, other) = client().await;
    match within(PATIENCE, other.lookup::<Journal>(host.addr(), "journal")).await {
        Err(RemoteError::Connect(ConnectError::Refused {
            reason: RefuseReason::TooManyConnections,
            ..
        })) => {}
        other => panic!("expected TooManyConnections, got {other:?}"),
    }
    assert_eq!(host.stats().refused_by(Refusal::TooManyConnections), 1);
}

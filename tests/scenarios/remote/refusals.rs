//! Bad peers are refused with specific reasons, and the node keeps serving the good ones.

use super::common::*;
use postbox::prelude::*;
use postbox_remote::{ConnectError, Refusal, Remote, RemoteError};
use postbox_wire::RefuseReason;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The host still answers a well-behaved client.
async fn still_serving(addr: &str) {
    let (_system, client) = client().await;
    let journal: ActorRef<Journal> = within(client.lookup(addr, "journal")).await.unwrap();
    assert_eq!(
        within(journal.ask(Echo("alive".into()))).await.unwrap(),
        "alive"
    );
}

/// Reads until the peer closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    within(stream.read_to_end(&mut got)).await.ok();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_secret_is_refused_on_both_sides() {
    let (_host_system, host, _journal) = host().await;
    let intruder_system = ActorSystem::new();
    let intruder = Remote::start(&intruder_system, config(b"wrong secret"))
        .await
        .unwrap();
    match within(intruder.lookup::<Journal>(host.addr(), "journal")).await {
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
    // Speak the protocol by hand: a hello, then a bogus proof.
    let mut stream = TcpStream::connect(host.addr()).await.unwrap();
    let hello = postbox_wire::Frame::Hello(postbox_wire::Hello {
        version: postbox_wire::PROTOCOL_VERSION,
        cluster: CLUSTER.into(),
        node: postbox_wire::NodeAddr {
            addr: "127.0.0.1:1".into(),
            node_id: 1,
            incarnation: 1,
        },
        nonce: [7; 32],
    });
    let mut buf = bytes::BytesMut::new();
    postbox_wire::encode_frame(&hello, &mut buf).unwrap();
    postbox_wire::encode_frame(
        &postbox_wire::Frame::Proof(postbox_wire::Proof { proof: [0; 32] }),
        &mut buf,
    )
    .unwrap();
    stream.write_all(&buf).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    let mut answer = bytes::BytesMut::from(&answer[..]);
    let mut codec = postbox_wire::FrameCodec::default();
    use tokio_util::codec::Decoder;
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut answer) {
        frames.push(frame);
    }
    assert!(
        matches!(
            frames.last(),
            Some(postbox_wire::Frame::Refused {
                reason: RefuseReason::AuthenticationFailed,
                ..
            })
        ),
        "{frames:?}"
    );
    assert_eq!(host.stats().auth_failures, 1);
    still_serving(host.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_before_it_is_read() {
    let (_host_system, host, _journal) = host().await;
    let mut stream = TcpStream::connect(host.addr()).await.unwrap();
    // Announce a 1 GiB frame: refused on the length alone.
    stream.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    read_until_closed(&mut stream).await;
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
        let mut stream = TcpStream::connect(host.addr()).await.unwrap();
        let _ = stream.write_all(&garbage).await;
        read_until_closed(&mut stream).await;
    }
    assert_eq!(host.stats().refused, 5);
    still_serving(host.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_and_do_not_take_authenticated_slots() {
    let (_host_system, host, _journal) = host_with(
        config(SECRET)
            .handshake_timeout(Duration::from_millis(300))
            .max_connections(1),
    )
    .await;
    // A silent connection is pending, not authenticated...
    let mut silent = TcpStream::connect(host.addr()).await.unwrap();
    // (once the host has accepted it: the kernel completes a connect before `accept` runs)
    until("the silent connection's accept", || {
        host.stats().unauthenticated == 1
    })
    .await;
    // ...so it does not take the only authenticated slot: a client gets in.
    let (_client_system, first) = client().await;
    let journal: ActorRef<Journal> = within(first.lookup(host.addr(), "journal")).await.unwrap();
    assert_eq!(within(journal.ask(Echo("in".into()))).await.unwrap(), "in");
    // The silent one is dropped when its handshake time is up, and counted as such.
    read_until_closed(&mut silent).await;
    until("the timeout to be counted", || {
        host.stats().refused_by(Refusal::HandshakeTimeout) == 1
    })
    .await;
    assert_eq!(host.stats().unauthenticated, 0);
    // The slot is taken: a second authenticated peer is refused, saying why.
    let (_other_system, other) = client().await;
    match within(other.lookup::<Journal>(host.addr(), "journal")).await {
        Err(RemoteError::Connect(ConnectError::Refused {
            reason: RefuseReason::TooManyConnections,
            ..
        })) => {}
        other => panic!("expected TooManyConnections, got {other:?}"),
    }
    assert_eq!(host.stats().refused_by(Refusal::TooManyConnections), 1);
}

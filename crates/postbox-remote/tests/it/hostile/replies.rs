//! Finding 1: replies have backpressure. Asks from one peer in flight are bounded; at the
//! bound the node stops reading that peer's requests (TCP pushes back) instead of queueing
//! more, and a peer that reads late still gets every reply.

use super::*;
use postbox_testkit::{until, within, PATIENCE};
use postbox_wire::{Frame, Target};

const MAX_ASKS: usize = 64;

fn bounded() -> RemoteConfig {
    remote_config()
        .max_inbound_asks(MAX_ASKS)
        .outbound(4096, 256 * 1024)
}

async fn flooder(node: &RemoteNode) -> WireClient {
    let mut client = WireClient::options()
        .recv_buffer(4096)
        .connect(node.addr())
        .await
        .expect("connect");
    client
        .handshake(&node.fake_node())
        .await
        .expect("handshake");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_its_replies_is_held_to_its_bound() {
    let (node, _prey) = prey_node(bounded()).await;
    let mut flood = flooder(&node).await;
    const ASKS: usize = 20_000;
    // Sends until TCP pushes back, then waits forever: it never reads a reply.
    let flooding = tokio::spawn(async move {
        for _ in 0..ASKS {
            if flood
                .send_ask(Target::Name("prey".into()), &Blob(4096))
                .await
                .is_err()
            {
                break;
            }
        }
        std::future::pending::<()>().await;
        drop(flood);
    });
    until(PATIENCE, "the node to stop reading the flood", || {
        let s = stats(&node.remote);
        s.reads_paused >= 1 && s.inbound_asks == MAX_ASKS as u64
    })
    .await;
    let s = stats(&node.remote);
    assert!(s.inbound_asks <= MAX_ASKS as u64, "{s:?}");
    assert!(
        s.frames_in < ASKS as u64,
        "the node read {} of {ASKS} asks: it must stop reading",
        s.frames_in
    );
    // Everyone else is still served.
    still_serving(node.addr()).await;
    // The flood's connection goes, and everything it held with it.
    flooding.abort();
    until(PATIENCE, "the flood's connection to be gone", || {
        let s = stats(&node.remote);
        s.connections == 0 && s.inbound_asks == 0
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_reads_late_gets_every_reply() {
    let (node, _prey) = prey_node(bounded()).await;
    let mut late = flooder(&node).await;
    const ASKS: usize = 1_000;
    let mut asked = Vec::with_capacity(ASKS);
    for _ in 0..ASKS {
        asked.push(
            late.send_ask(Target::Name("prey".into()), &Blob(4096))
                .await
                .expect("send"),
        );
    }
    until(PATIENCE, "the node to pause the reader", || {
        stats(&node.remote).reads_paused >= 1
    })
    .await;
    // Now it reads: every ask is answered, none lost.
    let mut answered = std::collections::HashSet::new();
    within(PATIENCE, async {
        while answered.len() < ASKS {
            match late.recv().await.expect("a reply") {
                Frame::Reply {
                    correlation,
                    payload,
                } => {
                    let bytes: Vec<u8> =
                        postbox_testkit::wire::decode_reply::<Blob>(&payload).expect("decode");
                    assert_eq!(bytes.len(), 4096);
                    assert!(answered.insert(correlation), "answered twice");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let mut asked_set: Vec<u64> = asked;
    asked_set.sort_unstable();
    let mut got: Vec<u64> = answered.into_iter().collect();
    got.sort_unstable();
    assert_eq!(got, asked_set);
    assert_eq!(stats(&node.remote).inbound_asks, 0);
    node.shutdown().await;
}

//! Findings 3 and 6: connections that have not authenticated have a small budget of their
//! own (the oldest gives way to the newest, per source and in all), so idle sockets never
//! lock members and clients out; and before authentication a frame may be 4 KiB at most, so
//! announcing 8 MiB costs the node nothing.

use super::*;
use postbox_remote::{Refusal, RefuseReason};
use postbox_testkit::{until, within, CloseReason, PATIENCE};
use std::net::SocketAddr;
use tokio::net::{TcpSocket, TcpStream};

/// An idle TCP connection to `addr` from the loopback address `source`.
async fn idle_from(source: [u8; 4], addr: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source");
    socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_never_lock_members_or_clients_out() {
    // Few authenticated slots, as on a busy node; the pending budget is the default.
    const PENDING: u64 = 64;
    let (node, _prey) = prey_node(
        remote_config()
            .max_connections(4)
            .max_unauthenticated(PENDING as usize, 8),
    )
    .await;
    // Far more idle sockets than any budget, from one source and from ten more.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(idle_from([127, 0, 0, 1], node.addr()).await);
    }
    for source in 2..12u8 {
        for _ in 0..10 {
            idle.push(idle_from([127, 0, 0, source], node.addr()).await);
        }
    }
    until(PATIENCE, "every idle socket to be accepted", || {
        stats(&node.remote).connections_accepted >= 300
    })
    .await;
    let s = stats(&node.remote);
    assert!(s.unauthenticated <= PENDING, "{s:?}");
    assert!(s.refused_by(Refusal::Evicted) >= 300 - PENDING);
    // While the flood holds on, a member and a client still get in.
    still_serving(node.addr()).await;
    let mut member = member_client(&node).await;
    assert!(member.lookup("prey").await.expect("lookup").is_some());
    drop(idle);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_before_authentication_is_refused_unread() {
    let (node, _prey) = prey_node(remote_config()).await;
    for round in 0..48 {
        let mut client = WireClient::connect(node.addr()).await.expect("connect");
        // An 8 MiB `Hello`, announced; its body never comes. (Written raw: the client's own
        // codec would refuse to announce it.)
        client
            .write_raw(&[0x00, 0x80, 0x00, 0x00, 0x01])
            .await
            .expect("announce");
        match within(PATIENCE, client.wait_closed()).await {
            Ok(CloseReason::Refused { reason, message }) => {
                assert_eq!(reason, RefuseReason::Malformed, "round {round}: {message}");
                assert!(message.contains("over the limit of 4096"), "{message}");
            }
            other => panic!("round {round}: expected a refusal, got {other:?}"),
        }
    }
    // Just over the handshake limit is refused too; a real handshake is far under it.
    let mut client = WireClient::connect(node.addr()).await.expect("connect");
    let just_over = (postbox_wire::MAX_HANDSHAKE_FRAME as u32 + 1).to_be_bytes();
    client.write_raw(&just_over).await.expect("announce");
    assert!(matches!(
        within(PATIENCE, client.wait_closed()).await,
        Ok(CloseReason::Refused { .. })
    ));
    assert_eq!(stats(&node.remote).refused_by(Refusal::Malformed), 49);
    still_serving(node.addr()).await;
    node.shutdown().await;
}

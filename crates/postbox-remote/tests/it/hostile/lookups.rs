//! Finding 15, the library's half: a lookup that gets no answer — from a node that completed
//! the handshake and then says nothing, or from a socket that accepts and never speaks — ends
//! at the lookup's deadline instead of hanging.

use super::*;
use postbox_remote::RemoteError;
use postbox_testkit::wire::FakeNode;
use postbox_testkit::{within, PATIENCE};

/// A server that completes the handshake (it knows the secret) and then answers nothing.
async fn mute_server(cluster: &str, secret: &[u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let me = FakeNode::new(cluster, secret).addr(addr.clone());
    tokio::spawn(async move {
        loop {
            let Ok(mut conn) = WireClient::accept(&listener).await else {
                continue;
            };
            let me = me.clone();
            tokio::spawn(async move {
                if conn.serve_handshake(&me).await.is_err() {
                    return;
                }
                // Then silence: read (keeping the socket open), answer nothing, not even a
                // heartbeat.
                conn.pass_heartbeats(true);
                while matches!(conn.wait_closed().await, Err(error) if error.is_timeout()) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_gets_no_answer_ends_at_its_deadline() {
    let limit = Duration::from_millis(500);
    let node = RemoteNode::start_with(remote_config().lookup_timeout(limit)).await;
    // Authenticated, then silent.
    let mute = mute_server(postbox_testkit::TEST_CLUSTER, postbox_testkit::TEST_SECRET).await;
    let silent = within(PATIENCE, node.remote.lookup::<Prey>(&mute, "prey")).await;
    assert!(
        matches!(silent, Err(RemoteError::Timeout(l)) if l == limit),
        "{silent:?}"
    );
    // Accepting, never speaking: the handshake would take 2 s; the lookup ends at 0.5 s.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mute_tcp = within(PATIENCE, node.remote.lookup::<Prey>(&addr, "prey")).await;
    assert!(
        matches!(mute_tcp, Err(RemoteError::Timeout(_))),
        "{mute_tcp:?}"
    );
    assert!(node.remote.stats().lookup_timeouts >= 2);
    node.shutdown().await;
}

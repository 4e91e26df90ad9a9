//! Finding 15, the library's half: a lookup that gets no answer — from a node that completed
//! the handshake and then says nothing, or from a socket that accepts and never speaks — ends
//! at the lookup's deadline instead of hanging.

use super::*;
use bytes::BytesMut;
use postbox_remote::RemoteError;
use postbox_testkit::{within, PATIENCE};
use postbox_wire::auth::{self, Role};
use postbox_wire::{Challenge, Frame, FrameCodec, NodeAddr, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

/// A server that completes the handshake (it knows the secret) and then answers nothing.
async fn mute_server(cluster: &str, secret: &[u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (cluster, secret, me) = (
        cluster.to_owned(),
        secret.to_vec(),
        NodeAddr {
            addr: addr.clone(),
            node_id: fastrand::u64(..),
            incarnation: fastrand::u64(..),
        },
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (cluster, secret, me) = (cluster.clone(), secret.clone(), me.clone());
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let mut codec = FrameCodec::new(4096);
                let hello = loop {
                    if let Ok(Some(Frame::Hello(hello))) = codec.decode(&mut buf) {
                        break hello;
                    }
                    if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                };
                let nonce = [9u8; 32];
                let proof = auth::prove(&secret, Role::Server, &me, &cluster, &hello.nonce, &nonce);
                let mut out = BytesMut::new();
                let challenge = Frame::Challenge(Challenge {
                    version: PROTOCOL_VERSION,
                    cluster: cluster.clone(),
                    node: me.clone(),
                    nonce,
                    proof,
                });
                postbox_wire::encode_frame(&challenge, &mut out).unwrap();
                postbox_wire::encode_frame(&Frame::Welcome, &mut out).unwrap();
                let _ = stream.write_all(&out).await;
                // Then silence (reading keeps the socket open).
                let mut sink = vec![0; 4096];
                while stream.read(&mut sink).await.unwrap_or(0) > 0 {}
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

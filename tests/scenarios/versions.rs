//! Rolling upgrades: a node speaks every protocol version from `MIN_PROTOCOL_VERSION` to
//! `PROTOCOL_VERSION`, and a connection uses the highest both sides speak. An older peer
//! (emulated here byte for byte with the testkit's wire client, as a client or as a server) is
//! served at its own version and never sent a code it cannot read.

use postbox::prelude::*;
use postbox_testkit::wire::FakeNode;
use postbox_testkit::{
    remote_config, until, within, CloseReason, RemoteNode, WireClient, PATIENCE, TEST_CLUSTER,
    TEST_SECRET,
};
use postbox_tests::{Echo, Journal, Pad};
use postbox_wire::{
    ErrorKind, Frame, NodeAddr, RefuseReason, Target, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

async fn journal_node(max_frame: usize) -> RemoteNode {
    let node = RemoteNode::start_with(remote_config().max_frame(max_frame)).await;
    node.remote.expose::<Journal>();
    let journal = node.system.spawn(Props::new(Journal::default)).unwrap();
    node.system
        .registry()
        .register("journal", &journal)
        .unwrap();
    node
}

async fn speaking(node: &RemoteNode, version: u16) -> WireClient {
    WireClient::connect_as(node.addr(), &node.fake_node().version(version))
        .await
        .unwrap_or_else(|e| panic!("version {version}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_is_served_at_the_highest_version_both_speak() {
    assert_eq!((MIN_PROTOCOL_VERSION, PROTOCOL_VERSION), (1, 2));
    let node = journal_node(4096).await;
    let big = Pad(8_000);
    for (speaks, gets, too_large) in [
        (1, 1, ErrorKind::Refused), // version 1 has no TooLarge: the nearest older kind
        (2, 2, ErrorKind::TooLarge),
        (9, 2, ErrorKind::TooLarge), // a newer peer comes down to ours
    ] {
        let mut peer = speaking(&node, speaks).await;
        assert_eq!(peer.peer_version(), Some(gets), "speaking {speaks}");
        let reply = peer
            .ask(Target::Name("journal".into()), &Echo("hi".into()))
            .await;
        assert_eq!(reply.unwrap(), Ok("hi".to_owned()));
        let error = peer
            .ask(Target::Name("journal".into()), &big)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(error.kind, too_large, "speaking {speaks}: {error}");
        assert!(error.message.contains("over the frame limit"), "{error}");
    }
    // Older than the oldest we speak: refused, with the code every version knows.
    let mut ancient = WireClient::connect(node.addr()).await.unwrap();
    let refused = ancient
        .handshake(&node.fake_node().version(MIN_PROTOCOL_VERSION - 1))
        .await
        .unwrap_err();
    assert_eq!(
        refused.refusal(),
        Some(&RefuseReason::VersionMismatch),
        "{refused}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_peer_is_never_sent_a_refusal_it_cannot_read() {
    let node = journal_node(postbox_wire::DEFAULT_MAX_FRAME).await;
    let (as_old, as_new) = (node.fake_node().version(1), node.fake_node().version(2));
    let mut old = WireClient::connect_as(node.addr(), &as_old).await.unwrap();
    let mut new = WireClient::connect_as(node.addr(), &as_new).await.unwrap();
    // A client's handshake ends when it is welcomed; the node registers the connection just
    // after. Quarantine both once they are registered, so that each is closed as an open
    // connection (the refusal is what this test is about).
    until(PATIENCE, "both connections registered", || {
        node.remote.stats().connections == 2
    })
    .await;
    for me in [&as_old, &as_new] {
        assert!(node.remote.quarantine(&me.node));
    }
    // Version 2 is told why; version 1, which has no refusal after the handshake, only sees
    // the connection close.
    assert!(matches!(
        within(PATIENCE, new.wait_closed()).await,
        Ok(CloseReason::Refused {
            reason: RefuseReason::Quarantined,
            ..
        })
    ));
    assert!(matches!(
        within(PATIENCE, old.wait_closed()).await,
        Ok(CloseReason::Eof)
    ));
    node.shutdown().await;
}

/// A node of version 1 only: completes the handshake at version 1, answers a lookup for
/// "journal" with id 7, and echoes every `Echo` ask. Checks that nothing it receives is of a
/// later version.
async fn old_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let me = FakeNode::new(TEST_CLUSTER, TEST_SECRET)
        .node(NodeAddr {
            addr: addr.clone(),
            node_id: 0x01d,
            incarnation: 1,
        })
        .version(1);
    tokio::spawn(async move {
        let mut conn = WireClient::accept(&listener).await.unwrap();
        let hello = conn.serve_handshake(&me).await.unwrap();
        assert_eq!(
            hello.version, PROTOCOL_VERSION,
            "a client says the highest it speaks"
        );
        // Heartbeats are answered by the wire client as it reads; everything else is shown.
        loop {
            let frame = match conn.recv().await {
                Ok(frame) => frame,
                Err(error) if error.is_timeout() => continue,
                Err(_) => return,
            };
            assert!(
                frame.kind().since() <= 1,
                "sent {frame:?} to a version-1 node"
            );
            let answer = match frame {
                Frame::Lookup { correlation, .. } => Frame::Found {
                    correlation,
                    id: Some(7),
                },
                Frame::Message(envelope) if envelope.correlation.is_some() => {
                    let Echo(text) = postbox_wire::from_payload(&envelope.payload).unwrap();
                    let mut payload = Vec::new();
                    postbox_wire::to_payload(&text, &mut payload).unwrap();
                    Frame::Reply {
                        correlation: envelope.correlation.unwrap(),
                        payload: payload.into(),
                    }
                }
                _ => continue,
            };
            if conn.send(&answer).await.is_err() {
                return;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_talks_to_an_older_node_at_its_version() {
    let old = old_server().await;
    let node = RemoteNode::start_with(remote_config()).await;
    let journal: ActorRef<Journal> = within(PATIENCE, node.remote.lookup(&old, "journal"))
        .await
        .expect("a version-1 node is reached");
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("across versions".into()))).await,
        Ok("across versions".to_owned())
    );
    node.shutdown().await;
}

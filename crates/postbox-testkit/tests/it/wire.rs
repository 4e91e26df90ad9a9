//! `WireClient` against a real transport on loopback: the handshake as a fake member,
//! typed asks and lookups, refusals with their reasons, raw bytes, heartbeats, and the
//! server's side of the handshake with a node that dials.

use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message, RemoteConfig};
use postbox_testkit::wire::{envelope, ClientError, CloseReason, FakeNode, WireClient};
use postbox_testkit::{
    remote_config, until, until_async, within, RemoteNode, PATIENCE, TEST_CLUSTER,
};
use postbox_wire::{ErrorKind, Frame, NodeAddr, RefuseReason, Target};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Keeps what it is told; answers what it is asked.
#[derive(Default)]
struct Journal {
    log: Vec<u64>,
}
impl Actor for Journal {}

#[derive(Serialize, Deserialize, Debug)]
struct Record(u64);
impl Message for Record {
    type Reply = ();
    remote_message!("testkit.Record");
}
impl Handler<Record> for Journal {
    async fn handle(&mut self, Record(n): Record, _: &mut Context<Self>) {
        self.log.push(n);
    }
}

#[derive(Serialize, Deserialize, Debug)]
struct ReadLog;
impl Message for ReadLog {
    type Reply = Vec<u64>;
    remote_message!("testkit.ReadLog");
}
impl Handler<ReadLog> for Journal {
    async fn handle(&mut self, _: ReadLog, _: &mut Context<Self>) -> Vec<u64> {
        self.log.clone()
    }
}

#[derive(Serialize, Deserialize, Debug)]
struct Echo(String);
impl Message for Echo {
    type Reply = String;
    remote_message!("testkit.Echo");
}
impl Handler<Echo> for Journal {
    async fn handle(&mut self, Echo(text): Echo, _: &mut Context<Self>) -> String {
        text
    }
}

/// Registered, but not exposed by `Journal`.
#[derive(Serialize, Deserialize, Debug)]
struct Unexposed;
impl Message for Unexposed {
    type Reply = ();
    remote_message!("testkit.Unexposed");
}

remote_actor!(Journal: Record, ReadLog, Echo);

/// A node with a `Journal` registered as "journal".
async fn host_with(config: RemoteConfig) -> (RemoteNode, ActorRef<Journal>) {
    let node = RemoteNode::start_with(config).await;
    node.remote.expose::<Journal>();
    let journal = node.system.spawn(Props::new(Journal::default)).unwrap();
    node.system
        .registry()
        .register("journal", &journal)
        .unwrap();
    (node, journal)
}

async fn host() -> (RemoteNode, ActorRef<Journal>) {
    host_with(remote_config()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_member_shakes_hands_and_talks_to_actors_by_name_and_id() {
    let (node, journal) = host().await;
    let mut client = WireClient::connect_as(node.addr(), &node.fake_node())
        .await
        .unwrap();
    assert_eq!(client.peer(), Some(node.node()));

    assert_eq!(
        client.lookup("journal").await.unwrap(),
        Some(journal.id().get())
    );
    assert_eq!(client.lookup("nobody").await.unwrap(), None);

    let answer = client.ask("journal", &Echo("hello".into())).await.unwrap();
    assert_eq!(answer.unwrap(), "hello");
    client.tell(journal.id().get(), &Record(1)).await.unwrap();
    client.tell("journal", &Record(2)).await.unwrap();
    let log = client.ask(journal.id().get(), &ReadLog).await.unwrap();
    assert_eq!(log.unwrap(), [1, 2]);

    // What the node cannot deliver is answered with an error frame, on an open connection.
    let mut unknown_tag = envelope("journal", &Unexposed).unwrap();
    unknown_tag.correlation = Some(client.next_correlation());
    let correlation = unknown_tag.correlation.unwrap();
    client.send(&Frame::Message(unknown_tag)).await.unwrap();
    let error = client.recv_reply(correlation).await.unwrap().unwrap_err();
    assert_eq!(error.kind, ErrorKind::UnknownTag, "{error}");
    // An id with no live actor (ids are never reused): stopped, as a local asker is told.
    let error = client
        .ask(Target::Id(u64::MAX), &Echo("anyone?".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Stopped, "{error}");
    // A name nobody registered: unknown.
    let error = client
        .ask(Target::Name("nobody".into()), &Echo("anyone?".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::UnknownTarget, "{error}");

    // A goodbye ends the connection; the node closes its side without a word.
    client.send(&Frame::Goodbye).await.unwrap();
    assert!(matches!(
        client.wait_closed().await.unwrap(),
        CloseReason::Eof
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_with_their_reason() {
    let (node, _journal) = host().await;
    let member = node.fake_node();

    let stranger = FakeNode::new("another-cluster", &member.secret);
    let error = WireClient::connect_as(node.addr(), &stranger)
        .await
        .unwrap_err();
    assert_eq!(
        error.refusal(),
        Some(&RefuseReason::WrongCluster),
        "{error}"
    );

    // A newer peer is served at our version; one older than the oldest we speak is refused.
    let from_the_future = member.clone().version(u16::MAX);
    let client = WireClient::connect_as(node.addr(), &from_the_future)
        .await
        .unwrap();
    assert_eq!(client.peer_version(), Some(postbox_wire::PROTOCOL_VERSION));
    let from_the_past = member.clone().version(0);
    let error = WireClient::connect_as(node.addr(), &from_the_past)
        .await
        .unwrap_err();
    assert_eq!(
        error.refusal(),
        Some(&RefuseReason::VersionMismatch),
        "{error}"
    );

    // With the wrong secret the node's proof fails our check first...
    let guesser = FakeNode::new(TEST_CLUSTER, b"a guess");
    let error = WireClient::connect_as(node.addr(), &guesser)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Handshake(why) if why.contains("does not verify")),
        "{error}"
    );
    // ...and when we go on regardless, the node refuses our proof.
    let error = WireClient::connect_as(node.addr(), &guesser.skip_server_verification())
        .await
        .unwrap_err();
    assert_eq!(
        error.refusal(),
        Some(&RefuseReason::AuthenticationFailed),
        "{error}"
    );
    assert!(matches!(
        error,
        ClientError::Closed(CloseReason::Refused { ref message, .. }) if !message.is_empty()
    ));
    assert_eq!(node.remote.stats().auth_failures, 1);
    until(PATIENCE, "four refusals counted", || {
        node.remote.stats().refused == 4
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_unauthenticated_connection_is_closed_at_the_handshake_timeout() {
    let (node, _journal) =
        host_with(remote_config().handshake_timeout(Duration::from_millis(300))).await;
    let mut idle = WireClient::connect(node.addr()).await.unwrap();
    let reason = idle.wait_closed().await.unwrap();
    assert!(matches!(reason, CloseReason::Eof), "{reason}");
    assert_eq!(node.remote.stats().refused, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_reach_the_node_as_written() {
    let (node, _journal) = host().await;

    // A length prefix announcing a frame far over the limit, and nothing more.
    let mut huge = WireClient::connect(node.addr()).await.unwrap();
    huge.announce_frame(1 << 30).await.unwrap();
    let reason = huge.wait_closed().await.unwrap();
    assert!(matches!(reason, CloseReason::Refused { .. }), "{reason}");

    // After the handshake, a frame of an unknown kind ends the connection.
    let mut broken = WireClient::connect_as(node.addr(), &node.fake_node())
        .await
        .unwrap();
    broken.write_raw(&[0, 0, 0, 1, 0xEE]).await.unwrap();
    let reason = broken.wait_closed().await.unwrap();
    assert!(matches!(reason, CloseReason::Eof), "{reason}");
    assert_eq!(node.remote.stats().protocol_errors, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_claims_the_identity_it_is_given() {
    let (node, _journal) = host().await;
    let claimed = NodeAddr {
        addr: "127.0.0.1:9".into(),
        node_id: 0x5EED,
        incarnation: 42,
    };
    let mut client = WireClient::connect_as(node.addr(), &node.fake_node().node(claimed.clone()))
        .await
        .unwrap();
    // The client's handshake ends with the node's `Welcome`; the node registers the
    // connection just after sending it.
    until(PATIENCE, "the node holds the connection", || {
        node.remote.stats().connections == 1
    })
    .await;
    // The node holds a connection to exactly that incarnation, and can close it.
    assert!(!node.remote.disconnect(&NodeAddr {
        incarnation: 43,
        ..claimed.clone()
    }));
    assert!(node.remote.disconnect(&claimed));
    let reason = client.wait_closed().await.unwrap();
    assert!(matches!(reason, CloseReason::Eof), "{reason}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_while_reading_or_passed_on_when_asked() {
    let (node, _journal) = host().await;
    let mut client = WireClient::connect_as(node.addr(), &node.fake_node())
        .await
        .unwrap();
    // The node sends a heartbeat after a second of silence.
    client.pass_heartbeats(true);
    let frame = client.recv().await.unwrap();
    assert!(matches!(frame, Frame::Heartbeat { .. }), "{frame:?}");

    // Answered and hidden by default: while the client reads, the node reads our answers.
    client.pass_heartbeats(false);
    let read_before = node.remote.stats().frames_in;
    until_async(
        PATIENCE,
        "our answer to a heartbeat, read by the node",
        async || {
            let quiet = client.recv_within(Duration::from_millis(100)).await;
            assert!(quiet.is_err_and(|error| error.is_timeout()));
            node.remote.stats().frames_in > read_before
        },
    )
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_late_gets_every_reply_in_order() {
    let (node, _journal) = host().await;
    let mut client = WireClient::options()
        .recv_buffer(4096)
        .connect(node.addr())
        .await
        .unwrap();
    client.handshake(&node.fake_node()).await.unwrap();
    let text = "x".repeat(16 * 1024);
    let mut asks = Vec::new();
    for n in 0..32 {
        let correlation = client
            .send_ask("journal", &Echo(format!("{n}{text}")))
            .await
            .unwrap();
        asks.push((n, correlation));
    }
    for (n, correlation) in asks {
        let payload = client.recv_reply(correlation).await.unwrap().unwrap();
        let answer: String = postbox_wire::from_payload(&payload).unwrap();
        assert!(answer.starts_with(&n.to_string()));
        assert_eq!(answer.len(), n.to_string().len() + text.len());
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_server_shakes_hands_with_a_node_that_dials_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = RemoteNode::start().await;
    // An older node at that address: version 1, answering one lookup.
    let me = node.fake_node().addr(addr.clone()).version(1);
    let server = tokio::spawn(async move {
        let mut conn = WireClient::accept(&listener).await.unwrap();
        let hello = conn.serve_handshake(&me).await.unwrap();
        let Frame::Lookup { correlation, name } = conn.recv().await.unwrap() else {
            panic!("expected a lookup");
        };
        conn.send(&Frame::Found {
            correlation,
            id: Some(7),
        })
        .await
        .unwrap();
        (hello, name, conn.peer_version())
    });
    let found: ActorRef<Journal> = within(PATIENCE, node.remote.lookup(&addr, "journal"))
        .await
        .unwrap();
    assert!(
        found.path().starts_with(&format!("postbox://{addr}")),
        "{}",
        found.path()
    );
    let (hello, name, version) = within(PATIENCE, server).await.unwrap();
    assert_eq!(&hello.node, node.node());
    assert_eq!(hello.version, postbox_wire::PROTOCOL_VERSION);
    assert_eq!((name.as_str(), version), ("journal", Some(1)));

    // A fake server with another secret: the node does not believe its proof, and the
    // handshake ends in an error on both sides.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let strict =
        FakeNode::new(TEST_CLUSTER, b"another secret, for this server only").addr(addr.clone());
    let server = tokio::spawn(async move {
        let mut conn = WireClient::accept(&listener).await.unwrap();
        conn.serve_handshake(&strict).await
    });
    assert!(
        within(PATIENCE, node.remote.lookup::<Journal>(&addr, "journal"))
            .await
            .is_err()
    );
    let refused = within(PATIENCE, server).await.unwrap();
    assert!(refused.is_err(), "{refused:?}");
    node.shutdown().await;
}

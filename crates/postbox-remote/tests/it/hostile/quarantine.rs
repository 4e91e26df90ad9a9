//! Finding 2, the transport's part: an incarnation declared down is quarantined. Its open
//! connection is told why (`Refused { Quarantined }`) before it closes, the node learns that
//! it is no longer a member, and every later handshake is refused with the same reason.

use super::*;
use postbox_remote::{Admission, ConnectError, NodeAddr, Refusal, RefuseReason, RemoteError};
use postbox_testkit::{until, within, CloseReason, PATIENCE};
use postbox_wire::{Frame, Target};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_incarnation_is_told_why_and_refused_from_then_on() {
    let (host, _prey) = prey_node(remote_config()).await;
    let slowpoke = host.system.spawn(Props::new(|| Prey)).expect("spawn");
    host.system
        .registry()
        .register("slowpoke", &slowpoke)
        .expect("register");
    let zombie = RemoteNode::start_with(remote_config()).await;
    let prey: ActorRef<Prey> = within(PATIENCE, zombie.remote.lookup(host.addr(), "slowpoke"))
        .await
        .expect("lookup");
    assert_eq!(within(PATIENCE, prey.ask(Ping(1))).await, Ok(1));
    assert_eq!(zombie.remote.quarantined_by(), None);
    let in_flight = tokio::spawn({
        let prey = prey.clone();
        async move {
            prey.ask(Slow(60_000))
                .timeout(Duration::from_secs(60))
                .await
        }
    });
    until(PATIENCE, "the ask to be in flight", || {
        zombie.remote.pending_asks(host.addr()) == 1
    })
    .await;

    // The cluster declares the zombie down: the host quarantines it.
    assert!(host.remote.quarantine(zombie.node()));
    assert!(host.remote.is_quarantined(zombie.node()));
    let told_by = within(PATIENCE, zombie.remote.quarantined()).await;
    assert_eq!(&told_by, host.node());
    // Its refs through that connection end; asks in flight fail as for a lost node.
    assert_eq!(
        within(PATIENCE, in_flight).await.unwrap(),
        Err(AskError::NodeDown)
    );
    within(PATIENCE, prey.wait_for_stop()).await;
    // It is refused from then on, saying why.
    match within(PATIENCE, zombie.remote.lookup::<Prey>(host.addr(), "prey")).await {
        Err(RemoteError::Connect(ConnectError::Refused {
            reason: RefuseReason::Quarantined,
            message,
        })) => assert!(message.contains("declared down"), "{message}"),
        other => panic!("expected Quarantined, got {other:?}"),
    }
    until(PATIENCE, "the refusal to be counted", || {
        host.remote.stats().refused_by(Refusal::Quarantined) >= 1
    })
    .await;
    assert_eq!(host.remote.stats().quarantined, 1);
    // A wire client claiming the quarantined incarnation is refused too.
    let mut claimant = WireClient::connect(host.addr()).await.expect("connect");
    let claim = host.fake_node().node(zombie.node().clone());
    match claimant.handshake(&claim).await {
        Err(error) => assert_eq!(error.refusal(), Some(&RefuseReason::Quarantined), "{error}"),
        Ok(_) => panic!("a quarantined incarnation was welcomed"),
    }
    // Another incarnation is a new node: served.
    still_serving(host.addr()).await;
    zombie.shutdown().await;
    host.shutdown().await;
}

/// Quarantines every node it is asked to admit, then admits it: the quarantine lands after
/// the handshake checked the incarnation and before the connection is registered — the window
/// a downed incarnation reconnecting at the moment it is declared down falls into.
struct QuarantineWhileAdmitting(std::sync::OnceLock<Remote>);

impl Admission for QuarantineWhileAdmitting {
    fn check(&self, node: &NodeAddr) -> Result<(), (RefuseReason, String)> {
        if let Some(remote) = self.0.get() {
            // No connection of it is registered yet: nothing to close.
            assert!(!remote.quarantine(node));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incarnation_quarantined_during_its_handshake_is_not_served() {
    let (host, _prey) = prey_node(remote_config()).await;
    let journal = serve_journal(&host.system, &host.remote);
    let admission = Arc::new(QuarantineWhileAdmitting(std::sync::OnceLock::new()));
    let _ = admission.0.set(host.remote.clone());
    host.remote.set_admission(admission.clone());
    let me = host.fake_node();
    // Welcomed — the handshake had passed its quarantine check — and then told, as the
    // connection is registered, that it was declared down. The record it pipelined behind
    // its proof is already in the node's read buffer then, and is never delivered.
    let mut zombie = WireClient::connect(host.addr()).await.expect("connect");
    let pipelined = postbox_testkit::wire::envelope(Target::Name("journal".into()), &Record(7))
        .expect("an envelope");
    within(
        PATIENCE,
        zombie.handshake_pipelining(&me, &[Frame::Message(pipelined)]),
    )
    .await
    .expect("welcomed");
    assert!(matches!(
        within(PATIENCE, zombie.wait_closed()).await,
        Ok(CloseReason::Refused {
            reason: RefuseReason::Quarantined,
            ..
        })
    ));
    assert!(host.remote.is_quarantined(&me.node));
    until(PATIENCE, "the connection to be gone", || {
        host.remote.stats().connections == 0
    })
    .await;
    assert_eq!(
        within(PATIENCE, journal.ask(ReadLog)).await,
        Ok(Vec::new()),
        "nothing from the quarantined incarnation was delivered"
    );
    // Later claims of that incarnation are refused in the handshake.
    let mut claimant = WireClient::connect(host.addr()).await.expect("connect");
    match claimant.handshake(&me).await {
        Err(error) => assert_eq!(error.refusal(), Some(&RefuseReason::Quarantined), "{error}"),
        Ok(_) => panic!("a quarantined incarnation was welcomed"),
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_server_proved_itself_is_no_verdict() {
    // A server that refuses with `Quarantined` in place of its challenge has proven nothing:
    // the client fails to connect but does not believe it is down.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut conn = WireClient::accept(&listener).await.unwrap();
        let _ = conn
            .send(&postbox_wire::Frame::Refused {
                reason: RefuseReason::Quarantined,
                message: "forged".into(),
            })
            .await;
        std::future::pending::<()>().await;
        drop(conn);
    });
    let node = RemoteNode::start_with(remote_config()).await;
    let refused = within(PATIENCE, node.remote.lookup::<Prey>(&addr, "prey")).await;
    assert!(
        matches!(refused, Err(RemoteError::Connect(_))),
        "{refused:?}"
    );
    assert_eq!(node.remote.quarantined_by(), None);
    let _ = CloseReason::Eof;
    node.shutdown().await;
}

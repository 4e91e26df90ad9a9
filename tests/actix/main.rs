//! postbox-actix across OS processes: an `actix-peer` process hosts an actix actor behind an
//! `ActixHost`; this test, another node, asks and watches it over loopback TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod fixture;
#[allow(dead_code)] // the scenarios' shared helpers; this binary uses some of them
#[path = "../scenarios/support.rs"]
mod support;

use fixture::{Count, History, Retire, Tally};
use postbox::prelude::*;
use postbox_actix::ActixHost;
use postbox_testkit::{within, TestProbe};
use postbox_tests::client;
use support::{start_process, PATIENCE};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_asks_and_watches_an_actix_actor_hosted_by_a_peer() {
    let command = Command::new(env!("CARGO_BIN_EXE_actix-peer"));
    let (mut peer, addr) = start_process(command, "LISTENING ").await;
    let (system, remote) = client().await;
    let tally: ActorRef<ActixHost<Tally>> = within(PATIENCE, remote.lookup(&addr, "tally"))
        .await
        .unwrap();

    // Tells keep their order into the actix mailbox; asks carry the actix result back.
    for n in 1..=500 {
        tally.tell(Count(n)).await.unwrap();
    }
    assert_eq!(
        within(PATIENCE, tally.ask(Count(0))).await.unwrap(),
        125_250
    );
    let mut expected: Vec<u64> = (1..=500).collect();
    expected.push(0);
    assert_eq!(
        within(PATIENCE, tally.ask(History)).await.unwrap(),
        expected
    );

    // The actix actor stops (asked to, from here): its host on the peer stops, and this
    // node's watcher of the remote ref hears of it.
    let mut watcher = TestProbe::watcher(&system).with_deadline(PATIENCE);
    watcher.watch(&tally).await;
    tally.tell(Retire).await.unwrap();
    let t = watcher.expect_terminated(&tally).await;
    assert_eq!(t.id, tally.id());
    assert_ne!(t.reason, ExitReason::NodeDown);
    assert!(matches!(
        within(PATIENCE, remote.lookup::<ActixHost<Tally>>(&addr, "tally")).await,
        Err(postbox_remote::RemoteError::NotFound(_))
    ));

    drop(peer.stdin.take());
    within(PATIENCE, peer.wait())
        .await
        .expect("the peer exits when its stdin closes");
    remote.shutdown().await;
    system.shutdown().await;
}

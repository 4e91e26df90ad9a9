//! Two OS processes: this test and a `remote-peer` it starts, over loopback.

use crate::support::PATIENCE;
use postbox::prelude::*;
use postbox_testkit::{until, within, TestProbe};
use postbox_tests::{client, stalled_ask, Echo, Journal, ReadLog, Record};
use tokio::process::{Child, Command};

/// Starts a peer process; returns it and the address it listens on.
async fn start_peer() -> (Child, String) {
    let command = Command::new(env!("CARGO_BIN_EXE_remote-peer"));
    crate::support::start_process(command, "LISTENING ").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_ask_and_watch_across_processes_and_a_killed_peer_is_noticed_at_once() {
    let (mut peer, addr) = start_peer().await;
    let (system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(&addr, "journal"))
        .await
        .unwrap();

    for i in 0..1_000 {
        journal.tell(Record(i)).await.unwrap();
    }
    assert_eq!(
        within(PATIENCE, journal.ask(ReadLog)).await.unwrap(),
        (0..1_000).collect::<Vec<_>>()
    );

    let mut watcher = TestProbe::watcher(&system).with_deadline(PATIENCE);
    watcher.watch(&journal).await;
    within(PATIENCE, journal.ask(Echo("sync".into())))
        .await
        .unwrap();

    // An ask in flight when the peer process is killed fails with NodeDown, long before its
    // timeout; the watcher learns the node is gone.
    let stalled = stalled_ask(&journal);
    until(PATIENCE, "the ask to be in flight", || {
        client.pending_asks(&addr) > 0
    })
    .await;
    peer.kill().await.expect("kill the peer");
    assert_eq!(
        within(PATIENCE, stalled).await.unwrap(),
        Err(AskError::NodeDown)
    );
    assert_eq!(
        watcher.expect_terminated(&journal).await.reason,
        ExitReason::NodeDown
    );
    assert_eq!(client.pending_asks(&addr), 0);

    // A new peer process is reached afresh.
    let (mut peer, addr) = start_peer().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(&addr, "journal"))
        .await
        .unwrap();
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("again".into())))
            .await
            .unwrap(),
        "again"
    );
    drop(peer.stdin.take());
    within(PATIENCE, peer.wait())
        .await
        .expect("the peer exits when its stdin closes");
}

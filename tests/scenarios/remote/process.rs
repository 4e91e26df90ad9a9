//! Two OS processes: this test and a `remote-peer` it starts, over loopback.

use super::common::*;
use postbox::prelude::*;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts a peer process; returns it and the address it listens on.
async fn start_peer() -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_remote-peer"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start remote-peer");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = within(async {
        while let Some(line) = lines.next_line().await.expect("read peer output") {
            if let Some(addr) = line.strip_prefix("LISTENING ") {
                return addr.to_owned();
            }
        }
        panic!("the peer exited before listening");
    })
    .await;
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_ask_and_watch_across_processes_and_a_killed_peer_is_noticed_at_once() {
    let (mut peer, addr) = start_peer().await;
    let (system, client) = client().await;
    let journal: ActorRef<Journal> = within(client.lookup(&addr, "journal")).await.unwrap();

    for i in 0..1_000 {
        journal.tell(Record(i)).await.unwrap();
    }
    assert_eq!(
        within(journal.ask(ReadLog)).await.unwrap(),
        (0..1_000).collect::<Vec<_>>()
    );

    let mut rx = watch(&system, &journal);
    within(journal.ask(Echo("sync".into()))).await.unwrap();

    // An ask in flight when the peer process is killed fails with NodeDown, long before its
    // timeout; the watcher learns the node is gone.
    let stalled = tokio::spawn({
        let journal = journal.clone();
        async move {
            journal
                .ask(Stall(60_000))
                .timeout(Duration::from_secs(60))
                .await
        }
    });
    within(async {
        while client.pending_asks(&addr) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    peer.kill().await.expect("kill the peer");
    assert_eq!(within(stalled).await.unwrap(), Err(AskError::NodeDown));
    assert_eq!(
        within(rx.recv()).await.unwrap().reason,
        ExitReason::NodeDown
    );
    assert_eq!(client.pending_asks(&addr), 0);

    // A new peer process is reached afresh.
    let (mut peer, addr) = start_peer().await;
    let journal: ActorRef<Journal> = within(client.lookup(&addr, "journal")).await.unwrap();
    assert_eq!(
        within(journal.ask(Echo("again".into()))).await.unwrap(),
        "again"
    );
    drop(peer.stdin.take());
    within(peer.wait())
        .await
        .expect("the peer exits when its stdin closes");
}

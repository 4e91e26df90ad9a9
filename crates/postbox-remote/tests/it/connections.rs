//! Connection management: one connection per pair of nodes, and a shutdown that drains.

use super::common::*;
use postbox::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_dialing_each_other_at_once_share_one_connection() {
    // Each round, two fresh nodes look each other up at the same moment. Whichever way the
    // race goes, each ends up with exactly one connection, and it carries both directions.
    for round in 0..10 {
        let (_system_a, a, _journal_a) = host().await;
        let (_system_b, b, _journal_b) = host().await;
        let (from_a, from_b) = tokio::join!(
            within(PATIENCE, a.lookup::<Journal>(b.addr(), "journal")),
            within(PATIENCE, b.lookup::<Journal>(a.addr(), "journal")),
        );
        let (at_b, at_a) = (from_a.unwrap(), from_b.unwrap());
        at_b.tell(Record(round)).await.unwrap();
        at_a.tell(Record(round)).await.unwrap();
        assert_eq!(
            within(PATIENCE, at_b.ask(ReadLog)).await.unwrap(),
            vec![round]
        );
        assert_eq!(
            within(PATIENCE, at_a.ask(ReadLog)).await.unwrap(),
            vec![round]
        );
        assert_eq!(a.stats().connections, 1, "round {round}: {:?}", a.stats());
        assert_eq!(b.stats().connections, 1, "round {round}: {:?}", b.stats());
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_out_what_remote_refs_hold_before_leaving() {
    let (_host_system, host, journal) = host().await;
    let (system, client) = client().await;
    let remote_journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    // Stall the journal so the tells pile up: in the proxy's mailbox, the outbound queue and
    // the socket buffers, when shutdown begins.
    remote_journal.tell(Stall(50)).await.unwrap();
    const TELLS: u64 = 3_000;
    for n in 0..TELLS {
        remote_journal.tell(Record(n)).await.unwrap();
    }
    within(PATIENCE, client.shutdown()).await;
    // The ref has ended, and it says why.
    let ended = within(PATIENCE, remote_journal.wait_for_stop()).await;
    assert!(
        matches!(ended, ExitReason::Shutdown | ExitReason::AlreadyTerminated),
        "{ended:?}"
    );
    assert_eq!(
        system.dead_letters().total(),
        0,
        "nothing queued before the shutdown was dropped"
    );
    // Later sends are refused, and counted.
    assert!(remote_journal.tell(Record(TELLS)).await.is_err());
    assert_eq!(system.dead_letters().total(), 1);
    // The host saw the client leave, after every message that was queued.
    until(PATIENCE, "the host to close the connection", || {
        host.stats().connections == 0
    })
    .await;
    let log = within(PATIENCE, journal.ask(ReadLog)).await.unwrap();
    assert_eq!(log, (0..TELLS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shut_down_is_not_reachable_and_asks_say_so() {
    let (_host_system, host, _journal) = host().await;
    let (_system, client) = client().await;
    let remote_journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    within(PATIENCE, host.shutdown()).await;
    // The client learns of the goodbye: its ref ends with NodeDown, and a fresh lookup fails
    // because nothing listens there any more.
    let ended = within(PATIENCE, remote_journal.wait_for_stop()).await;
    assert!(
        matches!(ended, ExitReason::NodeDown | ExitReason::AlreadyTerminated),
        "{ended:?}"
    );
    assert!(
        within(PATIENCE, client.lookup::<Journal>(host.addr(), "journal"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_a_node_fails_its_asks_and_ends_its_refs_at_once() {
    let (_host_system, host, _journal) = host().await;
    let (_system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    // An ask the host will not answer for a long time (as if the host hung).
    let stalled = stalled_ask(&journal);
    until(PATIENCE, "the ask to be in flight", || {
        client.pending_asks(host.addr()) == 1
    })
    .await;
    // Another incarnation at that address is not this connection.
    let mut other = host.node().clone();
    other.incarnation ^= 1;
    assert!(!client.disconnect(&other));
    assert!(client.disconnect(host.node()));
    assert_eq!(
        within(PATIENCE, stalled).await.unwrap(),
        Err(AskError::NodeDown)
    );
    let ended = within(PATIENCE, journal.wait_for_stop()).await;
    assert!(
        matches!(ended, ExitReason::NodeDown | ExitReason::AlreadyTerminated),
        "{ended:?}"
    );
    // A later lookup connects afresh (the journal itself is still busy with the stall).
    let again: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    assert!(again.is_alive());
    assert_eq!(client.stats().connections, 1);
}

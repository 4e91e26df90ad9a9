//! Two nodes in one process, over real loopback TCP.

use super::common::*;
use postbox::prelude::*;
use postbox::remote::RemoteFailure;
use postbox::DeadLetterReason;
use postbox_remote::RemoteError;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_and_asks_reach_a_remote_actor_in_send_order() {
    let (_host_system, host, _journal) = host().await;
    let (_system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    assert!(journal.path().starts_with("postbox://127.0.0.1:"));

    // Two refs (two senders) interleave; each one's messages stay in order.
    let other: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    let a = tokio::spawn({
        let journal = journal.clone();
        async move {
            for i in 0..2_000 {
                journal.tell(Record(i)).await.unwrap();
            }
        }
    });
    let b = tokio::spawn(async move {
        for i in 0..2_000 {
            other.tell(Record(1_000_000 + i)).await.unwrap();
        }
        other
    });
    a.await.unwrap();
    let other = b.await.unwrap();
    // An ask after the tells, through each ref, sees all of that ref's tells.
    within(PATIENCE, other.ask(ReadLog)).await.unwrap();
    let log = within(PATIENCE, journal.ask(ReadLog)).await.unwrap();
    let firsts: Vec<u64> = log.iter().copied().filter(|n| *n < 1_000_000).collect();
    let seconds: Vec<u64> = log.iter().copied().filter(|n| *n >= 1_000_000).collect();
    assert_eq!(firsts, (0..2_000).collect::<Vec<_>>());
    assert_eq!(seconds, (1_000_000..1_002_000).collect::<Vec<_>>());

    assert_eq!(
        within(PATIENCE, journal.ask(Echo("héllo".into())))
            .await
            .unwrap(),
        "héllo"
    );
    assert_eq!(
        client.pending_asks(host.addr()),
        0,
        "answered asks leave the pending map"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_times_out_and_its_pending_entry_is_swept() {
    let (_host_system, host, _journal) = host().await;
    let (client_system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    let timeout = Duration::from_millis(100);
    assert_eq!(
        within(PATIENCE, journal.ask(Stall(3_000)).timeout(timeout)).await,
        Err(AskError::Timeout(timeout))
    );
    // The entry goes with the next sweep (every second), not with the late reply.
    until(PATIENCE, "the sweep", || {
        client.pending_asks(host.addr()) == 0
    })
    .await;
    let _ = client_system;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_asks_fail_with_node_down_when_the_peer_goes() {
    let (host_system, host, _journal) = host().await;
    let (_system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    let stalled = stalled_ask(&journal);
    // Wait until the ask is in flight, then take the host down.
    until(PATIENCE, "the ask to be in flight", || {
        client.pending_asks(host.addr()) > 0
    })
    .await;
    host.shutdown().await;
    host_system
        .shutdown_within(Duration::from_millis(100))
        .await;
    // Promptly: long before the ask's own timeout.
    assert_eq!(
        within(PATIENCE, stalled).await.unwrap(),
        Err(AskError::NodeDown)
    );
    // The ref has ended: later sends are refused and counted.
    let ended = journal.wait_for_stop().await;
    assert!(
        matches!(ended, ExitReason::NodeDown | ExitReason::AlreadyTerminated),
        "{ended:?}"
    );
    assert!(journal.tell(Record(1)).await.is_err());
    assert_eq!(client.pending_asks(host.addr()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_tags_and_local_only_messages_are_refused_with_reasons() {
    let (host_system, host, _journal) = host().await;
    let (system, client) = client().await;
    match within(PATIENCE, client.lookup::<Journal>(host.addr(), "nobody")).await {
        Err(RemoteError::NotFound(name)) => assert_eq!(name, "nobody"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    // `Secret` has a codec but Journal does not expose it to other nodes.
    assert_eq!(
        within(PATIENCE, journal.ask(Secret)).await,
        Err(AskError::Remote(RemoteFailure::UnknownTag))
    );
    assert_eq!(
        host_system
            .dead_letters()
            .count(DeadLetterReason::RemoteRejected),
        1
    );
    // `LocalOnly` cannot leave this node at all.
    assert_eq!(
        within(PATIENCE, journal.ask(LocalOnly)).await,
        Err(AskError::Remote(RemoteFailure::NotRemotable))
    );
    assert_eq!(
        system.dead_letters().count(DeadLetterReason::NotRemotable),
        1
    );
    // The connection and the ref are still fine.
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("ok".into())))
            .await
            .unwrap(),
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_remote_actor_delivers_terminated_when_it_stops() {
    let (_host_system, host, _journal) = host().await;
    let (system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    let mut watcher = TestProbe::watcher(&system);
    watcher.watch(&journal).await;
    // Make sure the watch has reached the host before the actor stops.
    within(PATIENCE, journal.ask(Echo("sync".into())))
        .await
        .unwrap();
    journal.tell(Quit).await.unwrap();
    let terminated = watcher.expect_terminated(&journal).await;
    assert_eq!(terminated.id, journal.id());
    assert!(
        matches!(&terminated.reason, ExitReason::Remote(why) if why.contains("stopped itself")),
        "{:?}",
        terminated.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_learn_of_node_loss_and_a_restarted_node_is_reached_afresh() {
    let (host_system, host, _journal) = host().await;
    let addr = host.addr().to_owned();
    let (system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(&addr, "journal"))
        .await
        .unwrap();
    let mut watcher = TestProbe::watcher(&system);
    watcher.watch(&journal).await;
    within(PATIENCE, journal.ask(Echo("sync".into())))
        .await
        .unwrap();

    host.shutdown().await;
    host_system.shutdown().await;
    assert_eq!(
        watcher.expect_terminated(&journal).await.reason,
        ExitReason::NodeDown
    );

    // The node comes back on the same address, as a new incarnation.
    let restarted = ActorSystem::new();
    let config = remote_config().listen(addr.parse().unwrap());
    let remote = within(PATIENCE, postbox_remote::Remote::start(&restarted, config))
        .await
        .unwrap();
    remote.expose::<Journal>();
    let fresh = restarted.spawn(Props::new(Journal::default)).unwrap();
    restarted.registry().register("journal", &fresh).unwrap();

    // The old ref stays dead; a new lookup reconnects and reaches the new actor.
    assert!(journal.tell(Record(1)).await.is_err());
    let again: ActorRef<Journal> = within(PATIENCE, client.lookup(&addr, "journal"))
        .await
        .unwrap();
    again.tell(Record(7)).await.unwrap();
    assert_eq!(within(PATIENCE, again.ask(ReadLog)).await.unwrap(), vec![7]);
    assert_ne!(remote.node().incarnation, 0);
}

//! `ActorRef`s inside messages and replies: they travel as addresses and resolve on arrival —
//! to the local actor, to a proxy of an actor on the sending node, or of one on a third node.

use super::common::*;
use postbox::prelude::*;
use postbox::DeadLetterReason;
use postbox_testkit::until_async;

/// Asks `journal` for its log until it is `expected`.
async fn until_logged(journal: &ActorRef<Journal>, expected: &[u64]) {
    until_async(
        PATIENCE,
        format!("the log to be {expected:?}"),
        async || {
            let log = journal.ask(ReadLog).await.unwrap();
            if log == expected {
                Ok(())
            } else {
                Err(format!("log is {log:?}"))
            }
        },
    )
    .await;
}

fn local_journal(system: &ActorSystem) -> ActorRef<Journal> {
    system.spawn(Props::new(Journal::default)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_sent_to_another_node_reaches_back_to_its_actor() {
    let (_host_system, host, _journal) = host().await;
    let (system, client) = client().await;
    let remote_journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    // Other nodes may send this node's journals their messages.
    client.expose::<Journal>();
    let mine = local_journal(&system);
    // The host's journal gets a ref to `mine` and tells it through that ref.
    remote_journal
        .tell(Forward {
            to: mine.clone(),
            n: 7,
        })
        .await
        .unwrap();
    until_logged(&mine, &[7]).await;
    // In a reply, the same ref comes back as the local actor itself, not a proxy of a proxy.
    let back = within(PATIENCE, remote_journal.ask(Reflect(mine.clone())))
        .await
        .unwrap();
    assert_eq!(back.id(), mine.id());
    assert_eq!(back.path(), mine.path());
    // And a ref to the remote journal, sent to it, is the host's journal itself there:
    // forwarding through it lands in its own log.
    remote_journal
        .tell(Forward {
            to: remote_journal.clone(),
            n: 8,
        })
        .await
        .unwrap();
    until_logged(&remote_journal, &[8]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_to_a_third_node_is_reached_from_the_node_it_was_sent_to() {
    let (_third_system, third, third_journal) = host().await;
    let (_host_system, first, _journal) = host().await;
    let (_system, client) = client().await;
    let at_host: ActorRef<Journal> = within(PATIENCE, client.lookup(first.addr(), "journal"))
        .await
        .unwrap();
    let at_third: ActorRef<Journal> = within(PATIENCE, client.lookup(third.addr(), "journal"))
        .await
        .unwrap();
    // The host has never talked to the third node: it connects when the ref arrives.
    at_host.tell(Forward { to: at_third, n: 9 }).await.unwrap();
    until_logged(&third_journal, &[9]).await;
    assert_eq!(third.stats().connections, 2, "the client's and the host's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_to_a_stopped_actor_resolves_and_its_messages_are_counted() {
    let (_host_system, host, _journal) = host().await;
    let (system, client) = client().await;
    let remote_journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    client.expose::<Journal>();
    let gone = local_journal(&system);
    gone.stop();
    gone.wait_for_stop().await;
    // The host resolves the address to a proxy; the client refuses what comes through it.
    remote_journal
        .tell(Forward { to: gone, n: 1 })
        .await
        .unwrap();
    // Counted on the client: the actor is gone from its table, so the message is refused as
    // for an unknown target.
    until(PATIENCE, "a dead letter", || {
        system.dead_letters().total() > 0
    })
    .await;
    assert_eq!(
        system
            .dead_letters()
            .count(DeadLetterReason::RemoteRejected),
        1
    );
}

#[test]
fn a_ref_cannot_be_serialized_outside_a_remote_message() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let system = runtime.block_on(async { ActorSystem::new() });
    let mine = runtime.block_on(async { local_journal(&system) });
    let mut out = Vec::new();
    let error = postbox_wire::to_payload(&mine, &mut out).unwrap_err();
    assert!(
        error.to_string().contains("only inside a message"),
        "{error}"
    );
}

//! Entities where an `ActorRef` goes: as a router's routees and behind a circuit breaker,
//! through `EntityRef::recipient`.

use crate::common::{Add, Record, Seen, Sharded, Slow};
use postbox::prelude::*;
use postbox::{BreakerError, CircuitBreaker, GuardedAskError, Router, Routing};
use postbox_testkit::{until, within, TestCluster, PATIENCE};
use std::time::Duration;

/// A group router over three entities of a two-node cluster: told messages go round-robin
/// and each entity gets its share in the order they were routed; asks are answered through
/// the router, whichever node hosts the entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_are_routees_of_a_group_router_in_their_senders_order() {
    let cluster = Sharded::start(2).await;
    let system = &cluster.nodes.node(0).system;
    let ids: Vec<String> = (0..3).map(|i| format!("routed-{i}")).collect();
    let entities: Vec<_> = ids
        .iter()
        .map(|id| cluster.counters[0].entity_ref(id))
        .collect();

    let records = Router::group(entities.iter().map(|e| e.recipient::<Record>().unwrap()))
        .routing(Routing::round_robin())
        .spawn(system)
        .await
        .unwrap();
    for n in 0..300u64 {
        within(PATIENCE, records.tell(Record(n))).await.unwrap();
    }
    let mut homes = Vec::new();
    for (index, entity) in entities.iter().enumerate() {
        let (seen, home) = until_seen(entity, 100).await;
        // Round-robin starts with some routee; each one's share is every third, in order.
        let first = seen[0];
        assert_eq!(
            seen,
            (0..100).map(|k| first + 3 * k).collect::<Vec<_>>(),
            "{}",
            ids[index]
        );
        homes.push(home);
    }

    let adds = Router::group(entities.iter().map(|e| e.recipient::<Add>().unwrap()))
        .spawn(system)
        .await
        .unwrap();
    for _ in 0..30 {
        let (_, home) = within(PATIENCE, adds.ask(Add(1))).await.unwrap().unwrap();
        assert!(homes.contains(&home), "answered by {home}, not a home");
    }
    for id in &ids {
        assert_eq!(
            cluster.add(1, id, 0).await.0,
            10,
            "{id}: a third of the adds"
        );
    }
}

async fn until_seen(
    entity: &postbox_sharding::EntityRef<crate::common::Counter>,
    n: usize,
) -> (Vec<u64>, String) {
    postbox_testkit::until_async(PATIENCE, format!("{n} recorded"), async || {
        let (seen, home) = entity.ask(Seen).await.unwrap();
        (seen.len() == n).then_some((seen, home))
    })
    .await
}

/// A breaker guarding an entity: the entity's own failures (here its ask timeout, passed on
/// as such by the recipient) open it, and then nothing more is sent to the entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_guards_an_entity_and_opens_on_its_failures() {
    let ask_timeout = Duration::from_millis(200);
    let cluster = Sharded::start_with(TestCluster::builder().nodes(2), move |t| {
        t.ask_timeout(ask_timeout)
    })
    .await;
    let entity = cluster.counters[0].entity_ref("guarded");
    let breaker = CircuitBreaker::builder("guarded")
        .max_failures(2)
        .call_timeout(PATIENCE)
        .reset_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let guarded = breaker.guard_recipient(entity.recipient::<Slow>().unwrap());
    for _ in 0..2 {
        // Far longer than the ask timeout: the asker hears Timeout, not Stopped.
        match within(PATIENCE, guarded.ask(Slow(2_000))).await {
            Err(GuardedAskError::Ask(AskError::Timeout(t))) => assert_eq!(t, ask_timeout),
            other => panic!("expected the entity's ask timeout, got {other:?}"),
        }
    }
    let refused = within(PATIENCE, guarded.ask(Slow(2_000))).await;
    assert!(
        refused.as_ref().is_err_and(GuardedAskError::is_rejected),
        "{refused:?}"
    );
    // A single call needs no recipient.
    assert!(matches!(
        breaker.call(entity.ask(Seen)).await,
        Err(BreakerError::Open { .. })
    ));
    // The two slow asks reached the entity (their askers gave up); the refused one did not:
    // it would be queued before this ask.
    until(PATIENCE, "both slow asks started", || {
        cluster.lives.slow_started() == 2
    })
    .await;
    within(PATIENCE, entity.ask_within(Seen, PATIENCE))
        .await
        .unwrap();
    assert_eq!(cluster.lives.slow_started(), 2);
}

/// An ask waiting for the entity's reply counts in the recipient's depth (what
/// smallest-mailbox routing reads), and leaves it when answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_counts_the_entitys_unanswered_asks_in_its_depth() {
    let cluster = Sharded::start(2).await;
    let recipient = cluster.counters[1]
        .entity_ref("measured")
        .recipient::<Slow>()
        .unwrap();
    assert_eq!(recipient.depth(), 0);
    let asking = {
        let recipient = recipient.clone();
        tokio::spawn(async move { recipient.ask(Slow(1_500)).await })
    };
    until(PATIENCE, "the slow ask in flight", || {
        recipient.depth() == 1
    })
    .await;
    let home = within(PATIENCE, asking).await.unwrap().unwrap();
    assert!(
        (0..2).any(|i| cluster.nodes.node(i).name() == home),
        "answered by {home}"
    );
    until(PATIENCE, "nothing in flight", || recipient.depth() == 0).await;
}

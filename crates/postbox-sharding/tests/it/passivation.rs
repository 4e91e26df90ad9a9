use crate::common::*;
use postbox_testkit::{until, until_async, TestCluster, PATIENCE};
use std::time::Duration;

/// An idle entity is passivated; its next message starts it again, from its journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_entities_are_passivated_and_come_back_with_their_state() {
    let cluster = Sharded::start_with(TestCluster::builder().nodes(1), |t| {
        t.idle_timeout(Some(Duration::from_millis(200)))
    })
    .await;
    let sleepy = cluster.counters[0].entity_ref("sleepy");
    assert_eq!(sleepy.ask(Add(5)).await.unwrap().unwrap().0, 5);
    assert_eq!(cluster.lives.live("sleepy").len(), 1);
    until(PATIENCE, "the idle entity stopped", || {
        cluster.lives.live("sleepy").is_empty()
    })
    .await;
    let snapshot = cluster.counters[0].snapshot().await.unwrap();
    assert_eq!(snapshot.entities, 0);
    assert_eq!(snapshot.counters.passivations, 1);
    assert_eq!(sleepy.ask(Add(1)).await.unwrap().unwrap().0, 6, "recovered");
    assert_eq!(cluster.lives.started("sleepy"), 2);
}

/// At most `max_active` entities per node: the least recently used is passivated first,
/// and messages sent to it while it stops are delivered to its next instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_entity_is_passivated_at_the_cap() {
    let cluster = Sharded::start_with(TestCluster::builder().nodes(1), |t| {
        t.max_active(3).idle_timeout(None)
    })
    .await;
    let counters = &cluster.counters[0];
    for id in ["a", "b", "c"] {
        counters.entity_ref(id).ask(Add(1)).await.unwrap().unwrap();
    }
    // Touch "a": "b" is now the least recently used.
    counters.entity_ref("a").ask(Add(1)).await.unwrap().unwrap();
    counters.entity_ref("d").ask(Add(1)).await.unwrap().unwrap();
    until(PATIENCE, "b passivated", || {
        cluster.lives.live("b").is_empty()
    })
    .await;
    for id in ["a", "c", "d"] {
        assert_eq!(cluster.lives.live(id).len(), 1, "{id} still active");
    }
    // Messages for b right away: buffered while it stops, delivered to the new instance.
    for _ in 0..10 {
        counters.entity_ref("b").tell(Add(1)).await.unwrap();
    }
    let value = until_async(PATIENCE, "b counted all", async || {
        let (value, _) = counters.entity_ref("b").ask(Add(0)).await.unwrap().unwrap();
        (value == 11).then_some(value)
    })
    .await;
    assert_eq!(value, 11);
    let snapshot = counters.snapshot().await.unwrap();
    assert!(snapshot.entities <= 3, "{snapshot:?}");
    assert!(snapshot.counters.passivations >= 2, "{snapshot:?}");
}

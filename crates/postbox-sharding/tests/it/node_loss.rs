use crate::common::*;
use postbox::AskError;
use postbox_cluster::MemberStatus;
use postbox_testkit::{within, PATIENCE};
use std::time::Duration;

/// The node hosting an entity is lost: an ask in flight to it fails with `NodeDown` (it
/// never hangs); once the node is down, the entity starts elsewhere and continues from its
/// last acknowledged value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss_fails_asks_in_flight_and_reactivates_from_the_journal() {
    let mut cluster = Sharded::start(3).await;
    let victim_name = cluster.nodes.node(2).name().to_owned();
    let mut on_victim = None;
    for i in 0..64 {
        let id = format!("lost-{i}");
        let (_, node) = cluster.add(0, &id, 1).await;
        if node == victim_name {
            on_victim = Some(id);
            break;
        }
    }
    let id = on_victim.expect("an entity on node 2");
    for _ in 0..4 {
        cluster.add(1, &id, 1).await;
    }
    let entity = cluster.counters[0].entity_ref(&id);
    let in_flight = tokio::spawn({
        let entity = entity.clone();
        async move { entity.ask(Slow(60_000)).await }
    });
    // The slow ask is in the entity's hands before the node goes.
    postbox_testkit::until(PATIENCE, "the slow ask is being handled", || {
        cluster.lives.slow_started() == 1
    })
    .await;
    let victim = cluster.nodes.node(2).node().clone();
    cluster.nodes.kill(2).await;
    let outcome = within(PATIENCE, in_flight).await.unwrap();
    assert_eq!(outcome, Err(AskError::NodeDown));

    cluster.nodes.wait_seen(&victim, MemberStatus::Down).await;
    let (value, node) = within(PATIENCE, entity.ask_within(Add(1), Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, 6, "continued from the last acknowledged value");
    assert_ne!(node, victim_name);
}

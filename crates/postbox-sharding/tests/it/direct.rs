//! The direct paths past the regions (`src/direct.rs`): once an entity's place is settled,
//! a tell from another node goes from the `EntityRef` straight to the home's region and from
//! the connection straight into the entity — and still keeps its sender's order, mixed with
//! asks (which always pass the home's region), across a hand-off, and counts as use for idle
//! passivation.

use crate::common::{Record, Seen, Sharded};
use postbox_testkit::{until_async, within, TestCluster, PATIENCE};
use std::time::{Duration, Instant};

/// An id whose entity node `on` hosts, asked through node `from`.
async fn id_hosted_on(cluster: &Sharded, from: usize, on: usize, prefix: &str) -> String {
    let want = cluster.nodes.node(on).name().to_owned();
    for i in 0..10_000 {
        let id = format!("{prefix}-{i}");
        let (_, node) = within(PATIENCE, cluster.counters[from].entity_ref(&id).ask(Seen))
            .await
            .unwrap();
        if node == want {
            return id;
        }
    }
    panic!("no entity of 10 000 lives on {want}");
}

async fn direct_count(cluster: &Sharded, node: usize) -> u64 {
    cluster.counters[node]
        .snapshot()
        .await
        .unwrap()
        .counters
        .direct
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_mixed_with_asks_take_the_direct_paths_in_their_senders_order() {
    let cluster = Sharded::start(2).await;
    let id = id_hosted_on(&cluster, 0, 1, "direct").await;
    let entity = cluster.counters[0].entity_ref(&id);
    let (sent_before, received_before) = (
        direct_count(&cluster, 0).await,
        direct_count(&cluster, 1).await,
    );
    for i in 0..2_000u64 {
        if i % 97 == 0 {
            // An ask passes both regions; the tells after it must not overtake it.
            let (seen, _) = within(PATIENCE, entity.ask(Seen)).await.unwrap();
            assert_eq!(seen, (0..i).collect::<Vec<_>>());
        }
        within(PATIENCE, entity.tell(Record(i))).await.unwrap();
    }
    let seen = until_async(PATIENCE, "all 2 000 recorded", async || {
        let (seen, _) = entity.ask(Seen).await.unwrap();
        (seen.len() == 2_000).then_some(seen)
    })
    .await;
    assert_eq!(seen, (0..2_000).collect::<Vec<_>>());
    // Both paths were taken (not every time: after each ask, the tells wait for it).
    let sent = direct_count(&cluster, 0).await - sent_before;
    let received = direct_count(&cluster, 1).await - received_before;
    assert!(
        sent > 1_000,
        "{sent} of 2 000 tells skipped the sender's region"
    );
    assert!(
        received > 1_000,
        "{received} of 2 000 skipped the home's region"
    );
}

/// Streams of tells to entities nobody has sent to yet: the first of each pass the regions
/// (no route, no entity), the later ones switch to the direct paths while earlier ones may
/// still be queued in a region — and none overtakes another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_from_the_regions_to_the_direct_paths_keeps_the_order() {
    let cluster = Sharded::start(2).await;
    let refs: Vec<_> = (0..24)
        .map(|i| cluster.counters[0].entity_ref(format!("fresh-{i}")))
        .collect();
    for n in 0..300u64 {
        for entity in &refs {
            within(PATIENCE, entity.tell(Record(n))).await.unwrap();
        }
    }
    for entity in &refs {
        let seen = until_async(PATIENCE, "all 300 recorded", async || {
            let (seen, _) = entity.ask(Seen).await.unwrap();
            (seen.len() >= 300).then_some(seen)
        })
        .await;
        assert_eq!(seen, (0..300).collect::<Vec<_>>(), "{}", entity.id());
    }
    // A sender that keeps its region busy keeps the regions' path (the direct path opens
    // only once nothing of the shard is queued there); now that all is delivered, the next
    // round takes the direct paths, on both sides for the remote entities.
    let (sent, received) = (
        direct_count(&cluster, 0).await,
        direct_count(&cluster, 1).await,
    );
    for entity in &refs {
        within(PATIENCE, entity.tell(Record(300))).await.unwrap();
    }
    for entity in &refs {
        let seen = until_async(PATIENCE, "the last round recorded", async || {
            let (seen, _) = entity.ask(Seen).await.unwrap();
            (seen.len() > 300).then_some(seen)
        })
        .await;
        assert_eq!(seen, (0..=300).collect::<Vec<_>>(), "{}", entity.id());
    }
    assert!(
        direct_count(&cluster, 0).await > sent,
        "no tell skipped the sender's region"
    );
    assert!(
        direct_count(&cluster, 1).await > received,
        "no tell skipped the home's region"
    );
}

/// A stream of direct tells while the entities' shards move to a joining node: every tell
/// arrives exactly once, at one instance or the next, and in the sender's order — though the
/// sender's own view changes during the hand-off, its messages still on the old path are
/// fenced (the next ones wait until a fence sent the old way comes back behind them), and a
/// message that comes back to a region whose view disagrees waits there instead of going
/// round again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_under_a_stream_of_direct_tells_loses_nothing_and_keeps_order() {
    // Buffers large enough for the whole stream: a bound reached is a counted dead letter
    // (`buffer_overflow_is_a_counted_dead_letter`), not what this test is about.
    let mut cluster =
        Sharded::start_with(TestCluster::builder().nodes(2), |t| t.buffer(100_000)).await;
    // Node 0 sends; the entities live on node 1, so both direct paths are open before the
    // join moves some of their shards to node 2.
    // Enough entities that some of them surely move (about a third of node 1's shards do).
    let mut ids = Vec::new();
    for prefix in 0..24 {
        ids.push(id_hosted_on(&cluster, 0, 1, &format!("moving-{prefix}")).await);
    }
    let refs: Vec<_> = ids
        .iter()
        .map(|id| cluster.counters[0].entity_ref(id))
        .collect();
    for entity in &refs {
        within(PATIENCE, entity.tell(Record(0))).await.unwrap();
    }
    let sender = {
        let refs = refs.clone();
        tokio::spawn(async move {
            for i in 1..800u64 {
                for entity in &refs {
                    entity.tell(Record(i)).await.unwrap();
                }
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    cluster.add_node().await;
    within(PATIENCE, sender).await.unwrap();
    for entity in &refs {
        let seen = until_async(PATIENCE, "all 800 recorded", async || {
            let (seen, _) = entity.ask(Seen).await.unwrap();
            (seen.len() >= 800).then_some(seen)
        })
        .await;
        assert_eq!(seen, (0..800).collect::<Vec<_>>(), "{}", entity.id());
    }
    let moved = within(PATIENCE, cluster.counters[1].snapshot())
        .await
        .unwrap()
        .counters
        .handoffs;
    assert!(moved > 0, "the join moved no shard");
    // Bounded-load rendezvous may move a shard of node 1 to node 0 as well as to the new
    // node: either is a hand-off under the stream (to node 0, the sender's own).
    let old_home = cluster.nodes.node(1).name().to_owned();
    let mut rehomed = 0;
    for entity in &refs {
        let (_, node) = within(PATIENCE, entity.ask(Seen)).await.unwrap();
        rehomed += usize::from(node != old_home);
    }
    assert!(rehomed > 0, "none of the 24 entities moved");
    for node in 0..3 {
        let counters = within(PATIENCE, cluster.counters[node].snapshot())
            .await
            .unwrap()
            .counters;
        assert_eq!(counters.dropped, 0, "node {node} gave messages up");
    }
}

/// Idle passivation counts direct deliveries as use: an entity fed only by the direct path
/// for several idle timeouts stays the same instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_fed_only_by_direct_tells_is_not_idle() {
    let idle = Duration::from_millis(600);
    let cluster = Sharded::start_with(TestCluster::builder().nodes(2), move |t| {
        t.idle_timeout(Some(idle))
    })
    .await;
    let id = id_hosted_on(&cluster, 0, 1, "busy").await;
    let entity = cluster.counters[0].entity_ref(&id);
    let received_before = direct_count(&cluster, 1).await;
    let starts = cluster.lives.started(&id);
    // Four idle timeouts of tells, a few milliseconds apart.
    let until = Instant::now() + idle * 4;
    let mut sent = 0u64;
    while Instant::now() < until {
        within(PATIENCE, entity.tell(Record(sent))).await.unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = until_async(PATIENCE, "every tell recorded", async || {
        let (seen, _) = entity.ask(Seen).await.unwrap();
        (seen.len() as u64 >= sent).then_some(seen)
    })
    .await;
    assert_eq!(seen.len() as u64, sent);
    assert!(
        direct_count(&cluster, 1).await - received_before > sent / 2,
        "the tells did not take the inbound direct path"
    );
    assert_eq!(
        cluster.lives.started(&id),
        starts,
        "passivated while busy: direct deliveries were not counted as use"
    );
    // And once the tells stop, it is idle again.
    until_async(PATIENCE, "passivated once idle", async || {
        (cluster.counters[1]
            .snapshot()
            .await
            .unwrap()
            .counters
            .passivations
            > 0)
        .then_some(())
    })
    .await;
}

use crate::common::*;
use postbox_testkit::{until_async, within, PATIENCE};

/// The ids (of `candidates`) hosted on node `index` now.
async fn hosted_on(cluster: &Sharded, index: usize, candidates: &[String]) -> Vec<String> {
    let wanted = cluster.nodes.node(index).name().to_owned();
    let mut on = Vec::new();
    for id in candidates {
        let (_, node) = cluster.add(0, id, 0).await;
        if node == wanted {
            on.push(id.clone());
        }
    }
    on
}

/// A node leaves gracefully while messages stream to entities it hosts, from its own node
/// and from another: every message is delivered exactly once at the new home, in each
/// sender's order — those the leaving node's region accepted are buffered while the
/// entities stop and forwarded ahead of anything the new home buffered, and the other
/// node's region, seeing the shard move, holds its next messages until a fence sent the
/// old way has come back behind its earlier ones. No entity is ever live twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_hands_off_with_buffering_and_order() {
    const LOCAL: u64 = 100_000;
    // Buffers large enough for both streams to every moving entity of a shard (the bound
    // itself is tested in `buffer_overflow_is_a_counted_dead_letter`).
    let mut cluster = Sharded::start_with(postbox_testkit::TestCluster::builder().nodes(3), |t| {
        t.buffer(20_000)
    })
    .await;
    let ids: Vec<String> = (0..24).map(|i| format!("stream-{i}")).collect();
    let moving = hosted_on(&cluster, 2, &ids).await;
    assert!(!moving.is_empty(), "node 2 hosts some of {ids:?}");

    let stream = |counters: postbox_sharding::Entities<Counter>, base: u64, ids: Vec<String>| {
        tokio::spawn(async move {
            for i in 0..300u64 {
                for id in &ids {
                    counters
                        .entity_ref(id)
                        .tell(Record(base + i))
                        .await
                        .unwrap();
                }
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let remote_stream = stream(cluster.counters[0].clone(), 0, moving.clone());
    let local_stream = stream(cluster.counters[2].clone(), LOCAL, moving.clone());
    // Leave in the middle of the streams.
    until_async(PATIENCE, "some messages recorded", async || {
        let (seen, _) = cluster.counters[0]
            .entity_ref(&moving[0])
            .ask(Seen)
            .await
            .unwrap();
        seen.len() >= 20
    })
    .await;
    within(PATIENCE, cluster.shardings[2].leave()).await;
    assert_eq!(
        cluster.counters[2].snapshot().await.unwrap().shards,
        Vec::<u32>::new()
    );
    within(PATIENCE, remote_stream).await.unwrap();
    within(PATIENCE, local_stream).await.unwrap();
    // Everything the leaving region accepted is on its way before the node leaves (the
    // snapshot is answered after every message before it).
    let snapshot = cluster.counters[2].snapshot().await.unwrap();
    assert_eq!(snapshot.buffered, 0, "{snapshot:?}");
    assert!(snapshot.counters.handoffs > 0, "{snapshot:?}");
    assert_eq!(snapshot.counters.dropped, 0, "{snapshot:?}");
    cluster.nodes.leave(2).await;

    for id in &moving {
        let (seen, node) = until_async(PATIENCE, "both streams recorded", async || {
            let (seen, node) = cluster.counters[0]
                .entity_ref(id)
                .ask_within(Seen, PATIENCE / 4)
                .await
                .map_err(|e| format!("{id}: {e}"))?;
            if seen.len() >= 600 {
                Ok((seen, node))
            } else {
                Err(format!("{id}: {} of 600 on {node}", seen.len()))
            }
        })
        .await;
        let local: Vec<u64> = seen.iter().copied().filter(|n| *n >= LOCAL).collect();
        assert_eq!(
            local,
            (LOCAL..LOCAL + 300).collect::<Vec<_>>(),
            "{id}: in order"
        );
        let remote: Vec<u64> = seen.iter().copied().filter(|n| *n < LOCAL).collect();
        assert_eq!(
            remote,
            (0..300).collect::<Vec<_>>(),
            "{id}: each once, in order, from the other node too"
        );
        assert_ne!(node, cluster.nodes.node(2).name(), "{id} moved");
        assert_eq!(cluster.lives.most_at_once(id), 1, "{id} never live twice");
    }
}

/// A node joins: shards move to it (a bounded number at a time), entities continue from
/// their journal at the new home, and none is ever live on two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalancing_on_join_moves_shards_to_the_new_node() {
    let mut cluster = Sharded::start_with(postbox_testkit::TestCluster::builder().nodes(2), |t| {
        t.max_handoffs(2)
    })
    .await;
    let ids: Vec<String> = (0..60).map(|i| format!("bal-{i}")).collect();
    for id in &ids {
        cluster.add(0, id, 1).await;
    }
    assert_eq!(cluster.hosted().await[..2].iter().sum::<usize>(), ids.len());
    let joined = cluster.add_node().await;

    // Shards move as the old homes see the new member; messages find the new homes.
    let hosted = until_async(PATIENCE, "the new node hosts entities", async || {
        for id in &ids {
            let (_, _) = cluster.add(0, id, 0).await;
        }
        let hosted = cluster.hosted().await;
        (hosted[joined] > 0 && hosted.iter().sum::<usize>() == ids.len()).then_some(hosted)
    })
    .await;
    assert!(hosted[joined] >= ids.len() / 6, "{hosted:?}");
    for id in &ids {
        let (value, _) = cluster.add(joined, id, 1).await;
        assert_eq!(value, 2, "{id} continued from its journal");
        assert_eq!(cluster.lives.most_at_once(id), 1, "{id} never live twice");
    }
    let shards_joined = cluster.counters[joined]
        .snapshot()
        .await
        .unwrap()
        .shards
        .len();
    assert!(
        (4..=6).contains(&shards_joined),
        "16 shards over 3 nodes: {shards_joined}"
    );
    let mut handoffs = 0;
    for counters in &cluster.counters[..2] {
        let snapshot = counters.snapshot().await.unwrap();
        handoffs += snapshot.counters.handoffs;
        // The type's bound on concurrent hand-offs held on each old home.
        assert!(
            (1..=2).contains(&snapshot.most_handing_off) || snapshot.counters.handoffs == 0,
            "{} hand-offs at once on {}",
            snapshot.most_handing_off,
            snapshot.node
        );
    }
    assert!(handoffs >= shards_joined as u64, "{handoffs} hand-offs");
    // Allocated: every shard is placed on exactly one node, whether active there or not.
    let mut allocated = Vec::new();
    for counters in &cluster.counters {
        allocated.push(counters.snapshot().await.unwrap().allocated);
    }
    assert_eq!(allocated.iter().sum::<usize>(), 16, "{allocated:?}");
    assert_eq!(allocated[joined], shards_joined, "{allocated:?}");
}

/// While a shard has no home (no member has the type's role), its messages wait in a
/// bounded buffer; beyond it they are `ShardUnavailable` dead letters, asks fail at once
/// with `Remote(Refused)`, and the region counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_overflow_is_a_counted_dead_letter() {
    let cluster = Sharded::start_with(postbox_testkit::TestCluster::builder().nodes(2), |t| {
        t.role("nobody-has-this").buffer(5)
    })
    .await;
    let system = &cluster.nodes.node(0).system;
    let before = system
        .dead_letters()
        .count(postbox::DeadLetterReason::ShardUnavailable);
    let homeless = cluster.counters[0].entity_ref("homeless");
    for i in 0..10 {
        homeless.tell(Record(i)).await.unwrap();
    }
    assert_eq!(
        homeless.ask(Seen).await.unwrap_err(),
        postbox::AskError::Remote(postbox::RemoteFailure::Refused)
    );
    let snapshot = cluster.counters[0].snapshot().await.unwrap();
    assert_eq!(snapshot.buffered, 5, "{snapshot:?}");
    assert_eq!(snapshot.counters.dropped, 6, "{snapshot:?}");
    let after = system
        .dead_letters()
        .count(postbox::DeadLetterReason::ShardUnavailable);
    assert_eq!(after - before, 6);
}

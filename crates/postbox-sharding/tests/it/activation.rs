use crate::common::*;
use postbox_testkit::{within, PATIENCE};

/// Every node asks every entity at once, before any of them exists: each entity is started
/// exactly once in the whole cluster, on one node, and counts every add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_activation_under_concurrent_first_messages_from_every_node() {
    let cluster = Sharded::start(3).await;
    let ids: Vec<String> = (0..40).map(|i| format!("acct-{i}")).collect();
    let mut asks = tokio::task::JoinSet::new();
    for counters in &cluster.counters {
        for id in &ids {
            let entity = counters.entity_ref(id);
            asks.spawn(async move { entity.ask(Add(1)).await });
        }
    }
    let mut homes = std::collections::HashMap::<String, Vec<String>>::new();
    let mut answered = 0;
    while let Some(done) = within(PATIENCE * 3, asks.join_next()).await {
        let (_, node) = done.unwrap().unwrap().unwrap();
        answered += 1;
        let _ = homes.entry(node).or_default();
    }
    assert_eq!(answered, 3 * ids.len());
    for id in &ids {
        let (value, node) = cluster.add(0, id, 0).await;
        assert_eq!(value, 3, "{id}: every node's add counted once");
        assert_eq!(cluster.lives.started(id), 1, "{id} started once");
        assert_eq!(cluster.lives.most_at_once(id), 1, "{id} never live twice");
        assert_eq!(
            cluster.lives.live(id),
            vec![node.clone()],
            "{id} lives where it answers"
        );
        // The same home, whichever node asks.
        for counters in &cluster.counters {
            let (_, from_here) = counters.entity_ref(id).ask(Add(0)).await.unwrap().unwrap();
            assert_eq!(from_here, node);
        }
    }
    let hosted = cluster.hosted().await;
    assert_eq!(hosted.iter().sum::<usize>(), ids.len(), "{hosted:?}");
    assert!(
        hosted.iter().all(|n| *n > 0),
        "every node hosts some: {hosted:?}"
    );
    let mut shards: Vec<u32> = Vec::new();
    for counters in &cluster.counters {
        shards.extend(counters.snapshot().await.unwrap().shards);
    }
    let total = shards.len();
    shards.sort_unstable();
    shards.dedup();
    assert_eq!(shards.len(), total, "no shard hosted twice");
}

struct Unregistered;
impl postbox::Actor for Unregistered {}
impl postbox::Handler<Seen> for Unregistered {
    async fn handle(&mut self, _: Seen, _: &mut postbox::Context<Self>) -> (Vec<u64>, String) {
        (Vec::new(), String::new())
    }
}
postbox_sharding::entity!(Unregistered: Seen);

/// tell and try_tell from other nodes reach the entity in send order; a type that was not
/// registered is refused with a specific error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_from_another_node_arrive_in_order() {
    let cluster = Sharded::start(2).await;
    for i in 0..200 {
        cluster.counters[0]
            .entity_ref("ordered")
            .tell(Record(i))
            .await
            .unwrap();
        let entity = cluster.counters[1].entity_ref("ordered-too");
        if let Err(full) = entity.try_tell(Record(i)) {
            // No room in the region right now: wait for it; the order is unchanged.
            entity.tell(full.into_inner()).await.unwrap();
        }
    }
    for id in ["ordered", "ordered-too"] {
        let seen = postbox_testkit::until_async(PATIENCE, "all 200 recorded", async || {
            let (seen, _) = cluster.counters[0].entity_ref(id).ask(Seen).await.unwrap();
            (seen.len() == 200).then_some(seen)
        })
        .await;
        assert_eq!(seen, (0..200).collect::<Vec<_>>(), "{id}");
    }
    assert_eq!(
        cluster.shardings[0]
            .entity_ref::<Unregistered>("x")
            .unwrap_err(),
        postbox_sharding::ShardingError::NotRegistered(std::any::type_name::<Unregistered>())
    );
}

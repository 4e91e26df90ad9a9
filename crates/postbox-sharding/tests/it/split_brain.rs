use crate::common::*;
use postbox_persistence::{Journaled, Persistence, PersistenceId};
use postbox_sharding::{Entities, Sharding};
use postbox_testkit::{until, TestCluster, PATIENCE};
use std::sync::Arc;

/// One side of a split brain: a one-node cluster of its own that hosts every shard of the
/// counter type, writing to the store both sides share.
async fn side(
    name: &str,
    persistence: &Persistence,
    lives: &Arc<Lives>,
) -> (TestCluster, Entities<Counter>) {
    let nodes = TestCluster::builder()
        .nodes(1)
        .cluster(name, "split-brain-secret")
        .start()
        .await;
    let node = nodes.node(0);
    let sharding = Sharding::new(&node.system, &node.remote, &node.cluster);
    let counters = sharding
        .register(counter_type(node.name(), persistence, lives))
        .unwrap();
    (nodes, counters)
}

/// The worst case membership can produce: two sides that each believe they own the same
/// shard (two clusters that cannot see each other, as both halves of a partition before any
/// downing decision), so the same entity is live twice. The store's single-writer check is
/// what keeps the guarantee: whichever instance writes on stale state gets `Conflict` and
/// stops; it never acknowledges a write, never overwrites or interleaves with acknowledged
/// events, and every acknowledged write is in the journal exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_instances_of_one_entity_never_both_acknowledge_a_write() {
    let persistence = Persistence::in_memory();
    let lives = Arc::new(Lives::default());
    let (a_nodes, a) = side("side-a", &persistence, &lives).await;
    let (b_nodes, b) = side("side-b", &persistence, &lives).await;
    let (a_name, b_name) = (
        a_nodes.node(0).name().to_owned(),
        b_nodes.node(0).name().to_owned(),
    );
    let id = "acct";

    assert_eq!(
        a.entity_ref(id).ask(Add(1)).await.unwrap(),
        Ok((1, a_name.clone()))
    );
    assert_eq!(
        a.entity_ref(id).ask(Add(1)).await.unwrap(),
        Ok((2, a_name.clone()))
    );

    // Side B activates the same entity: it recovers what A acknowledged and writes after it.
    assert_eq!(
        b.entity_ref(id).ask(Add(10)).await.unwrap(),
        Ok((12, b_name.clone()))
    );
    let mut live = lives.live(id);
    live.sort();
    let mut both = vec![a_name.clone(), b_name.clone()];
    both.sort();
    assert_eq!(live, both, "the entity is live on both sides at once");

    // A's instance is now stale: its write is refused, not acknowledged, and it stops.
    let refused = a.entity_ref(id).ask(Add(100)).await.unwrap();
    let error = refused.expect_err("a stale instance acknowledged a write");
    assert!(
        error.contains("another live instance wrote first"),
        "{error}"
    );
    until(PATIENCE, "the stale instance stopped", || {
        lives.live(id) == vec![b_name.clone()]
    })
    .await;

    // B goes on from what was acknowledged; A, asked again, starts a fresh instance that
    // recovers everything, and then B is the stale one.
    assert_eq!(
        b.entity_ref(id).ask(Add(1)).await.unwrap(),
        Ok((13, b_name.clone()))
    );
    assert_eq!(
        a.entity_ref(id).ask(Add(1)).await.unwrap(),
        Ok((14, a_name.clone()))
    );
    let refused = b.entity_ref(id).ask(Add(1000)).await.unwrap();
    assert!(refused.is_err(), "{refused:?}");

    // The journal holds every acknowledged write once, in order, and nothing else.
    let mut recovered: Journaled<State> = persistence.journaled(PersistenceId::of("counter", id));
    recovered.recover().await.unwrap();
    assert_eq!(recovered.state().value, 14);
    drop((a_nodes, b_nodes));
}

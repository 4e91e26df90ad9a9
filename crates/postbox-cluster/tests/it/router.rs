//! Group routers over the members: routees follow the listing; smallest-mailbox reads the
//! gossiped load.

use crate::common::*;
use postbox_cluster::ServiceKey;
use postbox_testkit::{until, until_async};
use std::collections::HashMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_router_spans_the_members_and_follows_them() {
    let mut nodes = TestCluster::start(3).await;
    let key = ServiceKey::<Worker>::new("spread");
    for node in nodes.nodes() {
        serve(node, &key).await;
    }
    let router = nodes
        .node(0)
        .cluster
        .router::<Worker, WhereAreYou>(&key)
        .spawn()
        .await
        .unwrap();
    until(PATIENCE, "3 routees", || router.len() >= 3).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        *counts
            .entry(within(PATIENCE, router.ask(WhereAreYou)).await.unwrap())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&c| c == 10), "round-robin: {counts:?}");

    // A crashed member's routee leaves the router; a new member's joins it.
    nodes.kill(2).await;
    until(PATIENCE, "2 routees", || router.len() == 2).await;
    for _ in 0..10 {
        assert_ne!(
            within(PATIENCE, router.ask(WhereAreYou)).await.unwrap(),
            "n2"
        );
    }
    // The new member is n3.
    serve(nodes.add_node().await, &key).await;
    until(PATIENCE, "3 routees", || router.len() == 3).await;
    let mut answers = std::collections::HashSet::new();
    for _ in 0..6 {
        answers.insert(within(PATIENCE, router.ask(WhereAreYou)).await.unwrap());
    }
    assert!(answers.contains("n3"), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smallest_mailbox_across_nodes_avoids_a_node_that_reports_a_deep_mailbox() {
    let nodes = TestCluster::start(3).await;
    let key = ServiceKey::<Worker>::new("balanced");
    let busy = serve(nodes.node(1), &key).await;
    serve(nodes.node(2), &key).await;
    let router = nodes
        .node(0)
        .cluster
        .router::<Worker, WhereAreYou>(&key)
        .smallest_mailbox()
        .spawn()
        .await
        .unwrap();
    until(PATIENCE, "2 routees", || router.len() >= 2).await;
    // Keep n1's worker busy with a queue of stalls, then wait until n0 has heard of it.
    for _ in 0..50 {
        busy.tell(Stall(200)).await.unwrap();
    }
    let receptionist = nodes.node(0).cluster.receptionist();
    let n1 = nodes.node(1).node();
    until_async(PATIENCE, "n0 to hear of n1's queue", async || {
        let listing = receptionist.lookup(&key).await;
        let reported = listing
            .instances()
            .iter()
            .find(|i| i.node == *n1)
            .map(|i| i.reported_depth());
        reported.is_some_and(|d| d >= 30)
    })
    .await;
    // n2's estimate grows by one per message sent to it until it reports again (module docs
    // of `router`), so 20 messages cannot outweigh n1's 30 reported ones.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        *counts
            .entry(within(PATIENCE, router.ask(WhereAreYou)).await.unwrap())
            .or_default() += 1;
    }
    assert_eq!(counts.get("n2"), Some(&20), "{counts:?}");
}

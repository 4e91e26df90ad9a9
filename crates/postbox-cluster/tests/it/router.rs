//! Group routers over the members: routees follow the listing; smallest-mailbox reads the
//! gossiped load.

use crate::common::*;
use postbox_cluster::ServiceKey;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_router_spans_the_members_and_follows_them() {
    let nodes = cluster_of(3).await;
    let key = ServiceKey::<Worker>::new("spread");
    for node in &nodes {
        node.serve(&key).await;
    }
    let router = nodes[0]
        .cluster
        .router::<Worker, WhereAreYou>(&key)
        .spawn()
        .await
        .unwrap();
    within(async {
        while router.len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        *counts
            .entry(within(router.ask(WhereAreYou)).await.unwrap())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&c| c == 10), "round-robin: {counts:?}");

    // A crashed member's routee leaves the router; a new member's joins it.
    nodes[2].crash().await;
    within(async {
        while router.len() != 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for _ in 0..10 {
        assert_ne!(within(router.ask(WhereAreYou)).await.unwrap(), "n2");
    }
    let late = Node::start("late", config(&[nodes[0].gossip()])).await;
    late.serve(&key).await;
    within(async {
        while router.len() != 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut answers = std::collections::HashSet::new();
    for _ in 0..6 {
        answers.insert(within(router.ask(WhereAreYou)).await.unwrap());
    }
    assert!(answers.contains("late"), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smallest_mailbox_across_nodes_avoids_a_node_that_reports_a_deep_mailbox() {
    let nodes = cluster_of(3).await;
    let key = ServiceKey::<Worker>::new("balanced");
    let busy = nodes[1].serve(&key).await;
    nodes[2].serve(&key).await;
    let router = nodes[0]
        .cluster
        .router::<Worker, WhereAreYou>(&key)
        .smallest_mailbox()
        .spawn()
        .await
        .unwrap();
    within(async {
        while router.len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Keep n1's worker busy with a queue of stalls, then wait until n0 has heard of it.
    for _ in 0..50 {
        busy.tell(Stall(200)).await.unwrap();
    }
    let receptionist = nodes[0].cluster.receptionist();
    within(async {
        loop {
            let listing = receptionist.lookup(&key).await;
            let reported = listing
                .instances()
                .iter()
                .find(|i| i.node == nodes[1].addr())
                .map(|i| i.reported_depth());
            if reported.is_some_and(|d| d >= 30) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // n2's estimate grows by one per message sent to it until it reports again (module docs
    // of `router`), so 20 messages cannot outweigh n1's 30 reported ones.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        *counts
            .entry(within(router.ask(WhereAreYou)).await.unwrap())
            .or_default() += 1;
    }
    assert_eq!(counts.get("n2"), Some(&20), "{counts:?}");
}

//! Load-aware allocation in a running cluster: shares follow the mailbox depths the members
//! gossip.

use crate::common::Sharded;
use postbox::prelude::*;
use postbox_sharding::Allocation;
use postbox_testkit::{until_async, TestCluster, PATIENCE};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Holds its mailbox until its gate opens: a backlog that the node's load gossip reports.
struct Backlogged {
    gate: Arc<Semaphore>,
}
impl Actor for Backlogged {}

struct Hold;
impl Message for Hold {
    type Reply = ();
}
impl Handler<Hold> for Backlogged {
    async fn handle(&mut self, _: Hold, _: &mut Context<Self>) {
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
    }
}

/// Shards allocated to each node by its own view, and their sum.
async fn allocated(cluster: &Sharded) -> Vec<usize> {
    let mut allocated = Vec::new();
    for counters in &cluster.counters {
        allocated.push(counters.snapshot().await.unwrap().allocated);
    }
    allocated
}

/// A node whose actors fall behind gets fewer of the type's shards, the others take them,
/// and it gets its share back once it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_backlog_is_allocated_fewer_shards_until_it_catches_up() {
    let cluster = Sharded::start_with(TestCluster::builder().nodes(3), |t| {
        t.allocation(Allocation::LoadAware)
            .rebalance_interval(Duration::from_millis(100))
    })
    .await;
    // Equal loads: every node its share (the type's 16 shards in shares of 6, rounded up).
    let even = until_async(PATIENCE, "16 shards spread", async || {
        let allocated = allocated(&cluster).await;
        (allocated.iter().sum::<usize>() == 16 && allocated.iter().all(|n| (4..=6).contains(n)))
            .then_some(allocated)
    })
    .await;

    let gate = Arc::new(Semaphore::new(0));
    let busy = cluster
        .nodes
        .node(1)
        .system
        .spawn({
            let gate = gate.clone();
            move || Backlogged { gate: gate.clone() }
        })
        .unwrap();
    for _ in 0..600 {
        busy.tell(Hold).await.unwrap();
    }
    let shifted = until_async(PATIENCE, "the busy node's share shrinks", async || {
        let allocated = allocated(&cluster).await;
        (allocated.iter().sum::<usize>() == 16 && allocated[1] <= 2).then_some(allocated)
    })
    .await;
    // Only the busy node's shards move: the others keep theirs and take its surplus.
    assert!(
        shifted[0] >= even[0] && shifted[2] >= even[2],
        "the others take its shards: {even:?} → {shifted:?}"
    );

    gate.add_permits(1_000);
    until_async(PATIENCE, "its share back once it caught up", async || {
        (allocated(&cluster).await == even).then_some(())
    })
    .await;
}

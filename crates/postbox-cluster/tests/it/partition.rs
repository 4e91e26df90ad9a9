//! Partitions in one process, with the testkit's link cuts: no gossip datagram and no
//! transport frame passes between the two sides, so each side's failure detector sees the
//! other unreachable and the downing strategy decides, as with a real partition (the
//! process-level twin, on network namespaces, is `postbox-node`'s `tests/downing.rs`).

use crate::common::*;
use postbox::prelude::*;
use postbox::AskError;
use postbox_cluster::{DowningStrategy, MemberStatus};
use postbox_remote::NodeAddr;
use postbox_testkit::ClusterNode;

fn statuses_of(node: &ClusterNode, subject: &NodeAddr) -> Vec<MemberStatus> {
    node.events_seen()
        .iter()
        .filter(|event| event.member().node == *subject)
        .map(|event| event.member().status)
        .collect()
}

/// Waits until `node` is down and has stopped; its downing counters then.
async fn downs_itself(node: &ClusterNode) -> postbox_cluster::DowningStats {
    let why = within(PATIENCE, node.cluster.downed()).await;
    assert!(
        node.is_down() && !node.is_running(),
        "{}: {why}",
        node.name()
    );
    node.cluster.downing_stats()
}

/// A `Worker` started on node `on`, as node `from` reaches it.
async fn worker_across(nodes: &TestCluster, on: usize, from: usize) -> ActorRef<Worker> {
    let name = nodes.node(on).name().to_owned();
    let worker = nodes
        .node(on)
        .system
        .spawn(Props::new(move || Worker { node: name.clone() }))
        .unwrap();
    nodes
        .node(on)
        .system
        .registry()
        .register("worker", &worker)
        .unwrap();
    nodes
        .node(from)
        .remote
        .lookup(nodes.node(on).addr(), "worker")
        .await
        .unwrap()
}

/// 5 nodes split 3 | 2 under keep-majority (the default): the two are a minority and down
/// themselves, the three see them unreachable, then down, and keep serving; an ask in
/// flight across the cut fails with `NodeDown` when the cut is made. After the heal the
/// downed incarnations stay down (they learned it, and a downed incarnation never comes
/// back); restarted, the two join as new incarnations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_downs_the_minority_side_and_restarted_nodes_rejoin_after_the_heal() {
    let mut nodes = TestCluster::builder()
        .nodes(5)
        .setup(|node| node.remote.expose::<Worker>())
        .start()
        .await;
    let across = worker_across(&nodes, 3, 0).await;
    assert_eq!(across.ask(WhereAreYou).await.unwrap(), "n3");
    let stalled = tokio::spawn({
        let across = across.clone();
        async move { across.ask(Stall(60_000)).await }
    });
    postbox_testkit::until(PATIENCE, "the stalled ask reached n3", || {
        nodes.node(0).remote.pending_asks(nodes.node(3).addr()) == 1
    })
    .await;
    let (three, four) = (nodes.node(3).node().clone(), nodes.node(4).node().clone());

    nodes.partition(&[0, 1, 2], &[3, 4]).await;
    assert!(nodes.is_cut(0, 3) && nodes.is_cut(4, 2) && !nodes.is_cut(0, 1) && !nodes.is_cut(3, 4));
    // The cut is in force: the connection is gone, its ask failed, and no new one is made.
    assert_eq!(
        within(PATIENCE, stalled).await.unwrap(),
        Err(AskError::NodeDown)
    );
    assert_eq!(nodes.node(0).remote.pending_asks(nodes.node(3).addr()), 0);
    let refused = nodes
        .node(0)
        .remote
        .lookup::<Worker>(nodes.node(3).addr(), "worker")
        .await;
    assert!(refused.is_err(), "a lookup crossed the cut: {refused:?}");

    // The minority decides on its own (nothing reaches it from the three) to down itself:
    // one of the two at least (the other may have learned the verdict from its gossip).
    let mut decided = 0;
    for minority in [3, 4] {
        let node = nodes.node(minority);
        let stats = downs_itself(node).await;
        assert!(stats.this_node_down, "{stats:?}");
        assert_eq!(stats.kept_this_side, 0, "{stats:?}");
        decided += stats.downed_this_side;
    }
    assert!(decided >= 1, "no minority node decided");
    // The majority saw each of them unreachable, then down, and kept its side.
    for majority in 0..3 {
        let node = nodes.node(majority);
        for subject in [&three, &four] {
            node.wait_for(subject, MemberStatus::Down).await;
            let statuses = statuses_of(node, subject);
            assert_eq!(
                &statuses[statuses.len() - 2..],
                [MemberStatus::Unreachable, MemberStatus::Down],
                "{}",
                node.name()
            );
        }
        assert!(!node.is_down());
        let stats = node.cluster.downing_stats();
        assert_eq!(
            (stats.downed_this_side, stats.downed_everyone),
            (0, 0),
            "{stats:?}"
        );
    }
    let kept: u64 = (0..3)
        .map(|i| nodes.node(i).cluster.downing_stats().kept_this_side)
        .sum();
    assert!(kept >= 1, "no majority node decided");
    assert_eq!(nodes.running().count(), 3);
    nodes.wait_all_up().await;
    for node in nodes.running() {
        assert_eq!(node.up_members().len(), 3, "{}", node.name());
    }

    // Heal: the downed incarnations stay down; the orchestrator restarts them.
    nodes.heal_all();
    assert!(!nodes.is_cut(0, 3));
    for minority in [3, 4] {
        assert!(nodes.node(minority).is_down());
    }
    let new_three = nodes.restart(3).await.node().clone();
    let new_four = nodes.restart(4).await.node().clone();
    assert_ne!(new_three.incarnation, three.incarnation);
    assert_ne!(new_four.incarnation, four.incarnation);
    nodes.wait_all_up().await;
    for node in nodes.running() {
        let members = node.cluster.members();
        assert_eq!(node.up_members().len(), 5, "{}: {members:?}", node.name());
        assert!(
            members.iter().all(|m| m.node != three && m.node != four),
            "{}: an old incarnation is listed again: {members:?}",
            node.name()
        );
    }
    // And the transport crosses the healed links again.
    let across = worker_across(&nodes, 3, 0).await;
    assert_eq!(across.ask(WhereAreYou).await.unwrap(), "n3");
    nodes.shutdown().await;
}

/// A cut between two nodes closes their connection at once and refuses new ones; after the
/// heal they talk again over a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_and_heal_between_two_nodes_reconnects_them() {
    let nodes = TestCluster::builder()
        .nodes(3)
        .setup(|node| node.remote.expose::<Worker>())
        .start()
        .await;
    let worker = nodes
        .node(1)
        .system
        .spawn(Props::new(|| Worker { node: "n1".into() }))
        .unwrap();
    nodes
        .node(1)
        .system
        .registry()
        .register("worker", &worker)
        .unwrap();
    let lookup = || {
        nodes
            .node(0)
            .remote
            .lookup::<Worker>(nodes.node(1).addr(), "worker")
    };
    let before = lookup().await.unwrap();
    assert_eq!(before.ask(WhereAreYou).await.unwrap(), "n1");

    nodes.cut(0, 1).await;
    // The ref through the closed connection has ended (or is ending: its queued messages
    // fail `NodeDown`); a new lookup does not get through.
    let ended = before.ask(WhereAreYou).await;
    assert!(
        matches!(ended, Err(AskError::Stopped | AskError::NodeDown)),
        "{ended:?}"
    );
    assert!(lookup().await.is_err());
    nodes.heal(0, 1);
    let after = lookup().await.unwrap();
    assert_eq!(after.ask(WhereAreYou).await.unwrap(), "n1");
}

/// The index of the oldest member (up the longest), as node 0 sees it.
fn oldest(nodes: &TestCluster) -> usize {
    let oldest = nodes.node(0).cluster.members_by_age()[0].node.clone();
    (0..nodes.nodes().len())
        .find(|i| *nodes.node(*i).node() == oldest)
        .expect("the oldest member is one of the nodes")
}

/// Keep-oldest: the side with the oldest member stays whatever its size. The oldest cut off
/// alone from the three others keeps its side of one, and the three down themselves; with
/// `down_if_alone`, the same cut goes the other way — the oldest gives way and the three
/// stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_oldest_keeps_the_oldest_members_side_unless_it_is_alone_and_gives_way() {
    for down_if_alone in [false, true] {
        let mut nodes = TestCluster::builder()
            .nodes(4)
            .cluster_config(move |config| {
                config.downing(DowningStrategy::KeepOldest { down_if_alone })
            })
            .start()
            .await;
        let oldest = oldest(&nodes);
        let others: Vec<usize> = (0..4).filter(|i| *i != oldest).collect();
        nodes.partition(&[oldest], &others).await;
        let (gone, kept) = if down_if_alone {
            (vec![oldest], others)
        } else {
            (others, vec![oldest])
        };
        for &node in &gone {
            assert_eq!(downs_itself(nodes.node(node)).await.kept_this_side, 0);
        }
        for &node in &kept {
            let node = nodes.node(node);
            for &subject in &gone {
                node.wait_for(nodes.node(subject).node(), MemberStatus::Down)
                    .await;
            }
            assert!(
                !node.is_down(),
                "{} (down_if_alone {down_if_alone})",
                node.name()
            );
        }
        let kept_decisions: u64 = kept
            .iter()
            .map(|&i| nodes.node(i).cluster.downing_stats().kept_this_side)
            .sum();
        assert!(kept_decisions >= 1, "no node of the kept side decided");
        nodes.shutdown().await;
    }
}

/// Down-all: whatever the sides, every member downs itself — the three of a 3 | 2 split as
/// well as the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_all_downs_both_sides_of_a_partition() {
    let mut nodes = TestCluster::builder()
        .nodes(5)
        .cluster_config(|config| config.downing(DowningStrategy::DownAll))
        .start()
        .await;
    nodes.partition(&[0, 1, 2], &[3, 4]).await;
    let mut everyone = 0;
    let mut decisions = Vec::new();
    for index in 0..5 {
        let node = nodes.node(index);
        let stats = downs_itself(node).await;
        assert_eq!(stats.kept_this_side, 0, "{}: {stats:?}", node.name());
        everyone += stats.downed_everyone;
        decisions.push((node.name().to_owned(), stats.downed_everyone));
    }
    // Each side decides for itself, so two decisions at least (a node that learned the
    // verdict from its own side's gossip first counts none).
    assert!(everyone >= 2, "decisions per node: {decisions:?}");
    nodes.shutdown().await;
}

//! `TestCluster`: three nodes form a cluster; a crashed node is seen down and comes back as a
//! new incarnation; a node that leaves is seen left.

use postbox_cluster::MemberStatus;
use postbox_testkit::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_see_a_crash_and_a_restart() {
    let mut cluster = TestCluster::start(3).await;
    for node in cluster.nodes() {
        assert_eq!(node.up_members().len(), 3, "{node:?}");
    }

    let victim = cluster.node(2).node().clone();
    let (addr, gossip) = (
        cluster.node(2).addr().to_owned(),
        cluster.node(2).gossip_addr(),
    );
    cluster.kill(2).await;
    assert!(!cluster.node(2).is_running());
    cluster.wait_seen(&victim, MemberStatus::Down).await;
    for node in cluster.running() {
        assert!(node.cluster.members().iter().all(|m| m.node != victim));
        // The way there: up, unreachable, down, in that order.
        let story: Vec<MemberStatus> = node
            .events_seen()
            .iter()
            .filter(|event| event.member().node == victim)
            .map(|event| event.member().status)
            .collect();
        assert_eq!(
            story[story.len() - 3..],
            [
                MemberStatus::Up,
                MemberStatus::Unreachable,
                MemberStatus::Down
            ],
            "{story:?}"
        );
    }

    let restarted = cluster.restart(2).await;
    let new = restarted.node().clone();
    assert_eq!(
        (restarted.addr(), restarted.gossip_addr()),
        (addr.as_str(), gossip)
    );
    assert_ne!(new.incarnation, victim.incarnation);
    for node in cluster.nodes() {
        assert_eq!(node.up_members().len(), 3, "{node:?}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_is_seen_left_and_a_new_one_joins() {
    let mut cluster = TestCluster::builder().nodes(2).start().await;
    let leaver = cluster.node(1).node().clone();
    cluster.leave(1).await;
    cluster.wait_seen(&leaver, MemberStatus::Left).await;
    assert!(cluster
        .node(0)
        .events_seen()
        .iter()
        .all(|event| event.member().node != leaver || event.member().status != MemberStatus::Down));
    let joined = cluster.add_node().await.node().clone();
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.running().count(), 2);
    cluster.node(0).wait_for(&joined, MemberStatus::Up).await;
    cluster.shutdown().await;
}

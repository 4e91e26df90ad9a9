//! Forming a cluster, failures, restarts, leaving, refusals.

use crate::common::*;
use postbox_cluster::{Cluster, ClusterConfig, ClusterError, ClusterEvent, MemberStatus, Refusal};
use postbox_testkit::cluster::fast_failure_detection;
use postbox_testkit::{RemoteNode, TEST_CLUSTER, TEST_SECRET};
use std::time::{Duration, Instant};

/// The addresses of `nodes`.
fn addrs(nodes: &[&Node]) -> Vec<postbox_remote::NodeAddr> {
    nodes.iter().map(|node| node.addr()).collect()
}

/// Waits until `node` sees every one of `nodes` up.
async fn wait_all_up(node: &Node, nodes: &[postbox_remote::NodeAddr]) {
    let mut events = node.cluster.events();
    within(PATIENCE, async {
        let mut up = std::collections::HashSet::new();
        while !nodes.iter().all(|n| up.contains(n)) {
            let event = events.recv().await.expect("event stream");
            if let ClusterEvent::MemberUp(member) = &event {
                up.insert(member.node.clone());
            }
        }
    })
    .await
}

/// `node`'s history of `subject` up to the first time it reached `status` (which it has).
fn history_until(
    node: &postbox_testkit::ClusterNode,
    subject: &postbox_remote::NodeAddr,
    status: MemberStatus,
) -> Vec<MemberStatus> {
    let mut statuses = Vec::new();
    for event in node.events_seen() {
        if event.member().node == *subject {
            statuses.push(event.member().status);
            if event.member().status == status {
                break;
            }
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_with_their_metadata() {
    let a = Node::start("a", config(&[]).role("frontend")).await;
    let b = Node::start("b", config(&[a.gossip()]).role("backend").role("db")).await;
    let c = Node::start("c", config(&[b.gossip()])).await; // seeded by a non-first node
    let all = addrs(&[&a, &b, &c]);
    for node in [&a, &b, &c] {
        wait_all_up(node, &all).await;
        let members = node.cluster.members();
        assert!(
            members.iter().all(|m| m.status == MemberStatus::Up),
            "{}: {members:?}",
            node.name
        );
        assert_eq!(members.len(), 3, "{}: {members:?}", node.name);
    }
    let seen_by_c = c.cluster.members();
    let b_at_c = seen_by_c.iter().find(|m| m.node == b.addr()).unwrap();
    assert!(b_at_c.has_role("backend") && b_at_c.has_role("db"));
    assert_eq!(b_at_c.gossip_addr, b.gossip());
    assert_eq!(b_at_c.node.addr, b.remote.addr());
    let a_at_c = seen_by_c.iter().find(|m| m.node == a.addr()).unwrap();
    assert_eq!(a_at_c.roles.iter().collect::<Vec<_>>(), ["frontend"]);
    assert_eq!(c.cluster.myself().node, c.addr());
    assert_eq!(c.cluster.myself().status, MemberStatus::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscriber_first_gets_the_current_members() {
    let nodes = TestCluster::start(3).await;
    let mut events = nodes.node(1).cluster.events();
    let mut initial = Vec::new();
    for _ in 0..3 {
        initial.push(within(PATIENCE, events.recv()).await.unwrap());
    }
    assert!(
        initial
            .iter()
            .all(|e| matches!(e, ClusterEvent::MemberUp(_))),
        "{initial:?}"
    );
    let mut seen: Vec<_> = initial.iter().map(|e| e.member().node.clone()).collect();
    let mut expected: Vec<_> = nodes.nodes().iter().map(|n| n.node().clone()).collect();
    seen.sort_by(|a, b| a.addr.cmp(&b.addr));
    expected.sort_by(|a, b| a.addr.cmp(&b.addr));
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_is_unreachable_then_down_everywhere_within_the_bound() {
    let mut nodes = TestCluster::start(3).await;
    let victim = nodes.node(2).node().clone();
    let crashed_at = Instant::now();
    nodes.kill(2).await;
    for node in nodes.running() {
        node.wait_for(&victim, MemberStatus::Down).await;
        let statuses = history_until(node, &victim, MemberStatus::Down);
        assert_eq!(
            &statuses[statuses.len() - 2..],
            [MemberStatus::Unreachable, MemberStatus::Down]
        );
    }
    // Fast settings: ~0.4 s to suspect, 0.2 s more to declare down.
    assert!(
        crashed_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        crashed_at.elapsed()
    );
    for node in nodes.running() {
        assert!(node.cluster.members().iter().all(|m| m.node != victim));
    }
    // The survivors' downing counters tell it: at least one of them decided (the other may
    // have learned the verdict from its gossip first), and neither went down itself.
    let stats: Vec<_> = nodes.running().map(|n| n.cluster.downing_stats()).collect();
    assert!(
        stats.iter().map(|s| s.kept_this_side).sum::<u64>() >= 1,
        "{stats:?}"
    );
    assert!(
        stats.iter().map(|s| s.members_downed).sum::<u64>() >= 1,
        "{stats:?}"
    );
    assert!(
        stats
            .iter()
            .all(|s| s.downed_this_side == 0 && s.downed_everyone == 0 && !s.this_node_down),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_as_a_new_incarnation_and_the_old_one_is_down() {
    // Slow to declare down, so that only the restart can explain a quick `Down`.
    let mut nodes = TestCluster::builder()
        .nodes(2)
        .failure_detection(fast_failure_detection().down_after(Duration::from_secs(60)))
        .start()
        .await;
    let old = nodes.node(1).node().clone();
    // A crash, then the same addresses as a new incarnation.
    let new = nodes.restart(1).await.node().clone();
    assert_eq!(new.addr, old.addr);
    assert_ne!(new.incarnation, old.incarnation);

    let a = nodes.node(0);
    a.wait_for(&new, MemberStatus::Up).await;
    a.wait_for(&old, MemberStatus::Down).await;
    let members = a.cluster.members();
    assert!(members
        .iter()
        .any(|m| m.node == new && m.status == MemberStatus::Up));
    assert!(members.iter().all(|m| m.node != old), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_is_seen_as_left_never_down() {
    let nodes = TestCluster::start(3).await;
    let (stayers, leaving) = (&nodes.nodes()[..2], nodes.node(2));
    let leaver = leaving.node().clone();
    let mut watchers: Vec<_> = stayers.iter().map(|n| n.cluster.events()).collect();
    let mut own = leaving.cluster.events();
    let started = Instant::now();
    within(PATIENCE, leaving.cluster.leave()).await.unwrap();
    // Every member acknowledged well before the leave timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for node in stayers {
        node.wait_for(&leaver, MemberStatus::Left).await;
        let seen = history_until(node, &leaver, MemberStatus::Left);
        assert!(!seen.contains(&MemberStatus::Down), "{seen:?}");
    }
    // The leaver told its own subscribers, then closed their streams.
    let last = within(PATIENCE, async {
        loop {
            let event = own.recv().await.expect("event stream");
            if event.member().node == leaver && event.member().status == MemberStatus::Left {
                return event;
            }
        }
    })
    .await;
    assert!(matches!(last, ClusterEvent::MemberLeft(_)));
    assert!(own.recv().await.is_err());
    // Its gossip has stopped; watch for a Down long enough for the detector to have fired.
    for events in &mut watchers {
        let quiet = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let event = events.recv().await.unwrap();
                assert_ne!(
                    (event.member().node.clone(), event.member().status),
                    (leaver.clone(), MemberStatus::Down)
                );
            }
        })
        .await;
        assert!(quiet.is_err(), "only the observation window ends it");
    }
    assert!(matches!(
        leaving.cluster.leave().await,
        Err(ClusterError::Stopped)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_cluster_name_is_refused_with_a_clear_error() {
    let a = Node::start("a", config(&[])).await;
    let RemoteNode { system, remote, .. } = RemoteNode::start().await;
    let any = "127.0.0.1:0".parse().unwrap();

    let wrong_secret =
        ClusterConfig::new(TEST_CLUSTER, b"guessed", any).seed(a.gossip().to_string());
    match Cluster::join(&system, &remote, wrong_secret).await {
        Err(
            error @ ClusterError::Refused {
                reason: Refusal::AuthenticationFailed,
                seed,
            },
        ) => {
            assert_eq!(seed, a.gossip());
            assert!(error.to_string().contains("secret"), "{error}");
        }
        other => panic!("expected an authentication refusal, got {other:?}"),
    }
    let wrong_name = ClusterConfig::new("elsewhere", TEST_SECRET, any).seed(a.gossip().to_string());
    match Cluster::join(&system, &remote, wrong_name).await {
        Err(
            error @ ClusterError::Refused {
                reason: Refusal::WrongCluster,
                ..
            },
        ) => {
            assert!(error.to_string().contains("another cluster"), "{error}");
        }
        other => panic!("expected a wrong-cluster refusal, got {other:?}"),
    }
    let stats = a.cluster.gossip_stats();
    assert!(
        stats.auth_failures >= 1 && stats.wrong_cluster >= 1,
        "{stats:?}"
    );
    assert_eq!(a.cluster.members().len(), 1, "no intruder became a member");

    // Invalid configuration is refused before anything starts, naming the field.
    let invalid = config(&[]).role("has space");
    match Cluster::join(&system, &remote, invalid).await {
        Err(ClusterError::Config { field: "roles", .. }) => {}
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_seeds_are_silent_starts_alone_and_is_found_later() {
    // A seed nobody listens on yet: join gives up waiting and the node runs alone.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let later = silent.local_addr().unwrap();
    drop(silent);
    let lonely = Node::start(
        "lonely",
        config(&[later])
            .join_timeout(Duration::from_millis(200))
            .seed_refresh(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(lonely.cluster.members().len(), 1);
    // The seed comes up at that address; the lonely node's seed refresh finds it.
    let seed = Node::start(
        "seed",
        ClusterConfig::new(TEST_CLUSTER, TEST_SECRET, later)
            .failure_detection(fast_failure_detection()),
    )
    .await;
    let both = addrs(&[&seed, &lonely]);
    wait_all_up(&seed, &both).await;
    wait_all_up(&lonely, &both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_right_after_joining_is_still_seen_left() {
    let mut nodes = TestCluster::builder().nodes(1).start().await;
    // b may not have confirmed a as live yet: its departure must reach a all the same.
    let b = nodes.add_node_unsettled().await.node().clone();
    nodes.leave(1).await;
    let a = nodes.node(0);
    a.wait_for(&b, MemberStatus::Left).await;
    let seen = history_until(a, &b, MemberStatus::Left);
    assert!(!seen.contains(&MemberStatus::Down), "{seen:?}");
}

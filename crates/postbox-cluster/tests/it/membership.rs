//! Forming a cluster, failures, restarts, leaving, refusals.

use crate::common::*;
use postbox::prelude::*;
use postbox_cluster::{Cluster, ClusterConfig, ClusterError, ClusterEvent, MemberStatus, Refusal};
use postbox_remote::{Remote, RemoteConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_with_their_metadata() {
    let a = Node::start("a", config(&[]).role("frontend")).await;
    let b = Node::start("b", config(&[a.gossip()]).role("backend").role("db")).await;
    let c = Node::start("c", config(&[b.gossip()])).await; // seeded by a non-first node
    let all = [a.addr(), b.addr(), c.addr()];
    for node in [&a, &b, &c] {
        wait_all_up(&mut node.cluster.events(), &all).await;
        let members = up_members(node);
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
    let nodes = cluster_of(3).await;
    let mut events = nodes[1].cluster.events();
    let mut initial = Vec::new();
    for _ in 0..3 {
        initial.push(within(events.recv()).await.unwrap());
    }
    assert!(
        initial
            .iter()
            .all(|e| matches!(e, ClusterEvent::MemberUp(_))),
        "{initial:?}"
    );
    let mut seen: Vec<_> = initial.iter().map(|e| e.member().node.clone()).collect();
    let mut expected: Vec<_> = nodes.iter().map(Node::addr).collect();
    seen.sort_by(|a, b| a.addr.cmp(&b.addr));
    expected.sort_by(|a, b| a.addr.cmp(&b.addr));
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_is_unreachable_then_down_everywhere_within_the_bound() {
    let nodes = cluster_of(3).await;
    let victim = nodes[2].addr();
    let mut watchers: Vec<_> = nodes[..2].iter().map(|n| n.cluster.events()).collect();
    let crashed_at = Instant::now();
    nodes[2].crash().await;
    for events in &mut watchers {
        let seen = wait_for(events, &victim, MemberStatus::Down).await;
        let statuses: Vec<_> = seen
            .iter()
            .filter(|e| e.member().node == victim)
            .map(|e| e.member().status)
            .collect();
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
    for node in &nodes[..2] {
        assert!(node.cluster.members().iter().all(|m| m.node != victim));
    }
    // The survivors' downing counters tell it: at least one of them decided (the other may
    // have learned the verdict from its gossip first), and neither went down itself.
    let stats: Vec<_> = nodes[..2]
        .iter()
        .map(|n| n.cluster.downing_stats())
        .collect();
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
    let patient = || fast().down_after(Duration::from_secs(60));
    let a = Node::start("a", config(&[]).failure_detection(patient())).await;
    let b = Node::start("b", config(&[a.gossip()]).failure_detection(patient())).await;
    wait_all_up(&mut a.cluster.events(), &[a.addr(), b.addr()]).await;
    let old = b.addr();
    let (gossip_at, remote_at) = (b.gossip(), b.remote.addr().parse().unwrap());
    let mut events = a.cluster.events();
    b.crash().await;
    drop(b);

    // Same addresses, new incarnation. The old sockets close as their tasks wind down.
    let restarted = within(async {
        loop {
            let system = ActorSystem::new();
            let Ok(remote) =
                Remote::start(&system, RemoteConfig::new(remote_at, CLUSTER, SECRET)).await
            else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let config = ClusterConfig::new(CLUSTER, SECRET, gossip_at)
                .seed(a.gossip().to_string())
                .failure_detection(patient());
            match Cluster::join(&system, &remote, config).await {
                Ok(cluster) => return (system, remote, cluster),
                Err(ClusterError::Bind(_)) => {
                    remote.shutdown().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await;
    let new = restarted.2.node().clone();
    assert_eq!(new.addr, old.addr);
    assert_ne!(new.incarnation, old.incarnation);

    let seen = wait_for(&mut events, &new, MemberStatus::Up).await;
    let old_down = within(async {
        if seen
            .iter()
            .any(|e| e.member().node == old && e.member().status == MemberStatus::Down)
        {
            return;
        }
        wait_for(&mut events, &old, MemberStatus::Down).await;
    });
    old_down.await;
    let members = a.cluster.members();
    assert!(members
        .iter()
        .any(|m| m.node == new && m.status == MemberStatus::Up));
    assert!(members.iter().all(|m| m.node != old), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_is_seen_as_left_never_down() {
    let nodes = cluster_of(3).await;
    let leaver = nodes[2].addr();
    let mut watchers: Vec<_> = nodes[..2].iter().map(|n| n.cluster.events()).collect();
    let mut own = nodes[2].cluster.events();
    let started = Instant::now();
    within(nodes[2].cluster.leave()).await.unwrap();
    // Every member acknowledged well before the leave timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for events in &mut watchers {
        let seen = wait_for(events, &leaver, MemberStatus::Left).await;
        assert!(!seen
            .iter()
            .any(|e| e.member().node == leaver && e.member().status == MemberStatus::Down));
    }
    // The leaver told its own subscribers, then closed their streams.
    let seen = wait_for(&mut own, &leaver, MemberStatus::Left).await;
    assert!(matches!(seen.last(), Some(ClusterEvent::MemberLeft(_))));
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
        nodes[2].cluster.leave().await,
        Err(ClusterError::Stopped)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_cluster_name_is_refused_with_a_clear_error() {
    let a = Node::start("a", config(&[])).await;
    let system = ActorSystem::new();
    let remote = Remote::start(
        &system,
        RemoteConfig::new("127.0.0.1:0".parse().unwrap(), CLUSTER, SECRET),
    )
    .await
    .unwrap();
    let any = "127.0.0.1:0".parse().unwrap();

    let wrong_secret = ClusterConfig::new(CLUSTER, b"guessed", any).seed(a.gossip().to_string());
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
    let wrong_name = ClusterConfig::new("elsewhere", SECRET, any).seed(a.gossip().to_string());
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
        ClusterConfig::new(CLUSTER, SECRET, later).failure_detection(fast()),
    )
    .await;
    wait_all_up(&mut seed.cluster.events(), &[seed.addr(), lonely.addr()]).await;
    wait_all_up(&mut lonely.cluster.events(), &[seed.addr(), lonely.addr()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_right_after_joining_is_still_seen_left() {
    let a = Node::start("a", config(&[])).await;
    let mut events = a.cluster.events();
    let b = Node::start("b", config(&[a.gossip()])).await;
    // b may not have confirmed a as live yet: its departure must reach a all the same.
    within(b.cluster.leave()).await.unwrap();
    let seen = wait_for(&mut events, &b.addr(), MemberStatus::Left).await;
    assert!(!seen
        .iter()
        .any(|e| e.member().node == b.addr() && e.member().status == MemberStatus::Down));
}

//! Three nodes, one of them another process: crash, restart, graceful leave.

use crate::support::{start_process, PATIENCE};
use postbox::prelude::*;
use postbox_cluster::{
    Cluster, ClusterConfig, ClusterEvent, ClusterEvents, MemberStatus, ServiceKey,
};
use postbox_remote::{NodeAddr, Remote, RemoteConfig};
use postbox_testkit::{until, until_async, within};
use postbox_tests::{stalled_ask, Echo, Journal, CLUSTER, SECRET};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// What the issue promises for a killed node on loopback with the default tuning.
const DETECTION_BOUND: Duration = Duration::from_secs(5);

struct Peer {
    child: Child,
    gossip: SocketAddr,
    remote: SocketAddr,
    incarnation: u64,
}

async fn start_peer(gossip: &str, remote: &str, seed: SocketAddr) -> Peer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cluster-peer"));
    command.args([gossip, remote, &seed.to_string()]);
    let (child, ready) = start_process(command, "READY ").await;
    let fields: Vec<&str> = ready.split(' ').collect();
    Peer {
        child,
        gossip: fields[0].parse().unwrap(),
        remote: fields[1].parse().unwrap(),
        incarnation: fields[2].parse().unwrap(),
    }
}

struct LocalNode {
    _system: ActorSystem,
    remote: Remote,
    cluster: Cluster,
}

async fn local_node(seeds: &[SocketAddr]) -> LocalNode {
    let system = ActorSystem::new();
    let remote = Remote::start(
        &system,
        RemoteConfig::new("127.0.0.1:0".parse().unwrap(), CLUSTER, SECRET),
    )
    .await
    .unwrap();
    let config = ClusterConfig::new(CLUSTER, SECRET, "127.0.0.1:0".parse().unwrap())
        .seeds(seeds.iter().map(ToString::to_string));
    let cluster = Cluster::join(&system, &remote, config).await.unwrap();
    LocalNode {
        _system: system,
        remote,
        cluster,
    }
}

/// Waits for `status` of the member at `remote` (and, if given, with `incarnation`).
async fn wait_status(
    events: &mut ClusterEvents,
    remote: SocketAddr,
    incarnation: Option<u64>,
    status: MemberStatus,
) -> (NodeAddr, Vec<ClusterEvent>) {
    within(PATIENCE, async {
        let mut seen = Vec::new();
        loop {
            let event = events.recv().await.unwrap();
            let member = event.member().clone();
            seen.push(event);
            if member.node.addr == remote.to_string()
                && incarnation.is_none_or(|i| member.node.incarnation == i)
                && member.status == status
            {
                return (member.node, seen);
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_process_is_down_within_5_s_restarts_as_a_new_member_and_leaves_gracefully() {
    let a = local_node(&[]).await;
    let b = local_node(&[a.cluster.gossip_addr()]).await;
    let mut events_a = a.cluster.events();
    let mut events_b = b.cluster.events();
    let mut peer = start_peer("127.0.0.1:0", "127.0.0.1:0", a.cluster.gossip_addr()).await;
    for events in [&mut events_a, &mut events_b] {
        wait_status(
            events,
            peer.remote,
            Some(peer.incarnation),
            MemberStatus::Up,
        )
        .await;
    }
    assert_eq!(
        a.cluster
            .members()
            .iter()
            .filter(|m| m.status == MemberStatus::Up)
            .count(),
        3
    );

    // The peer's service is reachable from both local nodes.
    let key = ServiceKey::<Journal>::new("journal");
    let mut listing_a = a.cluster.receptionist().subscribe(&key);
    let journal = within(PATIENCE, async {
        loop {
            let listing = listing_a.next().await.unwrap();
            if let Some(instance) = listing.instances().first() {
                return instance.actor.clone();
            }
        }
    })
    .await;
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("hi".into())))
            .await
            .unwrap(),
        "hi"
    );
    let on_b = until_async(PATIENCE, "b to list the peer's journal", async || {
        let listing = b.cluster.receptionist().lookup(&key).await;
        listing.instances().first().map(|i| i.actor.clone())
    })
    .await;
    assert_eq!(
        within(PATIENCE, on_b.ask(Echo("there".into())))
            .await
            .unwrap(),
        "there"
    );

    // An ask in flight when the process is killed fails with NodeDown; both local nodes see
    // the peer down within the bound; its entry vanishes.
    let stalled = stalled_ask(&journal);
    let peer_addr = peer.remote.to_string();
    until(PATIENCE, "the ask to be in flight", || {
        a.remote.pending_asks(&peer_addr) > 0
    })
    .await;
    let killed_at = Instant::now();
    peer.child.kill().await.expect("SIGKILL the peer");
    assert_eq!(
        within(PATIENCE, stalled).await.unwrap(),
        Err(AskError::NodeDown)
    );
    for events in [&mut events_a, &mut events_b] {
        wait_status(
            events,
            peer.remote,
            Some(peer.incarnation),
            MemberStatus::Down,
        )
        .await;
    }
    let detected = killed_at.elapsed();
    assert!(
        detected < DETECTION_BOUND,
        "down seen by both after {detected:?}"
    );
    let empty = within(PATIENCE, async {
        loop {
            let listing = listing_a.next().await.unwrap();
            if listing.is_empty() {
                return listing;
            }
        }
    })
    .await;
    assert!(empty.is_empty());

    // Restarted at the same addresses: a new member, a new incarnation.
    let old = peer.incarnation;
    // (The kernel released the killed process's ports when it died.)
    let mut restarted = start_peer(
        &peer.gossip.to_string(),
        &peer.remote.to_string(),
        a.cluster.gossip_addr(),
    )
    .await;
    assert_eq!(restarted.remote, peer.remote);
    assert_ne!(restarted.incarnation, old);
    for events in [&mut events_a, &mut events_b] {
        wait_status(
            events,
            restarted.remote,
            Some(restarted.incarnation),
            MemberStatus::Up,
        )
        .await;
    }

    // Closing its stdin makes it leave: both local nodes see it Left, not Down.
    drop(restarted.child.stdin.take());
    for events in [&mut events_a, &mut events_b] {
        let (_, seen) = wait_status(
            events,
            restarted.remote,
            Some(restarted.incarnation),
            MemberStatus::Left,
        )
        .await;
        assert!(!seen
            .iter()
            .any(|e| e.member().node.incarnation == restarted.incarnation
                && e.member().status == MemberStatus::Down));
    }
    let status = within(PATIENCE, restarted.child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
}

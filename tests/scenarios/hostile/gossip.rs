//! Finding 7: an unauthenticated datagram never changes a node's decisions. Refusals sprayed
//! at a joining node's gossip port — in the old six-byte form, or with an echo of nothing it
//! sent — are counted as ignored, and the join succeeds.

use postbox::ActorSystem;
use postbox_cluster::{Cluster, ClusterConfig, MemberStatus};
use postbox_remote::Remote;
use postbox_testkit::cluster::fast_failure_detection;
use postbox_testkit::{remote_config, within, PATIENCE, TEST_CLUSTER, TEST_SECRET};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

async fn free_udp_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_refusals_never_abort_a_join() {
    let seed_at = free_udp_port().await;
    let joiner_at = free_udp_port().await;
    // The joiner waits for its seed, which does not exist yet.
    let joiner_system = ActorSystem::new();
    let joiner_remote = Remote::start(&joiner_system, remote_config())
        .await
        .unwrap();
    let config = |listen| {
        ClusterConfig::new(TEST_CLUSTER, TEST_SECRET, listen)
            .failure_detection(fast_failure_detection())
            .join_timeout(Duration::from_secs(10))
    };
    let joining = tokio::spawn({
        let (system, remote) = (joiner_system.clone(), joiner_remote.clone());
        async move {
            Cluster::join(
                &system,
                &remote,
                config(joiner_at).seed(seed_at.to_string()),
            )
            .await
        }
    });
    // Forged refusals, once its gossip port is bound (sends to it stop being refused by the
    // kernel): the old six-byte form, and the new form echoing nothing it sent.
    let sprayer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sprayer.connect(joiner_at).await.unwrap();
    let old_form: &[u8] = b"PBXC\x02\x02";
    within(PATIENCE, async {
        let mut accepted = 0;
        while accepted < 20 {
            match sprayer.send(old_form).await {
                Ok(_) => accepted += 1,
                Err(_) => accepted = 0,
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    for n in 0..100u64 {
        let mut echoed = b"PBXC\x02\x01".to_vec();
        echoed.extend_from_slice(&n.to_be_bytes());
        sprayer.send(&echoed).await.unwrap();
        sprayer.send(old_form).await.unwrap();
    }
    let seed_system = ActorSystem::new();
    let seed_remote = Remote::start(&seed_system, remote_config()).await.unwrap();
    let seed = Cluster::join(&seed_system, &seed_remote, config(seed_at))
        .await
        .expect("the seed starts");
    let joiner = within(PATIENCE, joining)
        .await
        .unwrap()
        .expect("the join succeeds under forged refusals");
    let stats = joiner.gossip_stats();
    assert!(stats.refusals_ignored > 0, "{stats:?}");
    assert_eq!(stats.refusals_received, 0, "{stats:?}");
    let mut events = seed.events();
    within(PATIENCE, async {
        loop {
            let event = events.recv().await.expect("event");
            if event.member().node == *joiner.node() && event.member().status == MemberStatus::Up {
                return;
            }
        }
    })
    .await;
    joiner.kill();
    seed.kill();
}

//! A hosted actix actor in the cluster-wide registry: registered under a `ServiceKey` on one
//! member, found and asked from another, gone from the listing once the actix actor stops.

use crate::common::*;
use postbox::prelude::*;
use postbox_actix::ActixHost;
use postbox_cluster::{
    Cluster, ClusterConfig, ClusterEvent, FailureDetection, Listing, ListingSubscription,
    ServiceKey,
};
use postbox_remote::{Remote, RemoteConfig};
use std::net::SocketAddr;
use std::time::Duration;

const CLUSTER: &str = "actix-cluster-it";
const SECRET: &[u8] = b"actix cluster test secret";

struct Node {
    system: ActorSystem,
    remote: Remote,
    cluster: Cluster,
}

async fn node(seeds: &[SocketAddr]) -> Node {
    let system = ActorSystem::new();
    let remote = Remote::start(
        &system,
        RemoteConfig::new("127.0.0.1:0".parse().unwrap(), CLUSTER, SECRET),
    )
    .await
    .unwrap();
    let config = ClusterConfig::new(CLUSTER, SECRET, "127.0.0.1:0".parse().unwrap())
        .seeds(seeds.iter().map(ToString::to_string))
        .failure_detection(
            FailureDetection::default()
                .gossip_interval(Duration::from_millis(50))
                .down_after(Duration::from_millis(200)),
        )
        .join_timeout(Duration::from_secs(2));
    let cluster = Cluster::join(&system, &remote, config).await.unwrap();
    Node {
        system,
        remote,
        cluster,
    }
}

async fn wait_listing<A: Actor>(sub: &mut ListingSubscription<A>, n: usize) -> Listing<A> {
    within(async {
        loop {
            let listing = sub.next().await.expect("subscription open");
            if listing.len() == n {
                return listing;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_registered_under_a_service_key_is_reached_from_another_member() {
    let a = node(&[]).await;
    let b = node(&[a.cluster.gossip_addr()]).await;
    let mut events = b.cluster.events();
    within(async {
        loop {
            if let ClusterEvent::MemberUp(member) = events.recv().await.unwrap() {
                if member.node == *a.cluster.node() {
                    return;
                }
            }
        }
    })
    .await;

    let addr = actix().start(|_| Counter::default());
    let host = a
        .system
        .spawn(
            ActixHost::builder(addr.clone())
                .liveness_interval(Duration::from_millis(20))
                .props(),
        )
        .unwrap();
    let key = ServiceKey::<ActixHost<Counter>>::new("counters");
    a.cluster
        .receptionist()
        .register(&key, &host)
        .await
        .unwrap();

    let mut sub = b.cluster.receptionist().subscribe(&key);
    let listing = wait_listing(&mut sub, 1).await;
    let instance = &listing.instances()[0];
    assert_eq!(instance.node, *a.cluster.node());
    assert_eq!(within(instance.actor.ask(Add(20))).await.unwrap(), 20);
    assert_eq!(within(instance.actor.ask(Add(22))).await.unwrap(), 42);
    assert_eq!(within(addr.send(ReadLog)).await.unwrap(), vec![20, 22]);

    // The actix actor stops: its host stops and leaves the listing everywhere.
    addr.do_send(Halt);
    let reason = within(host.wait_for_stop()).await;
    assert!(matches!(
        reason,
        ExitReason::Stopped | ExitReason::AlreadyTerminated
    ));
    wait_listing(&mut sub, 0).await;

    for n in [&b, &a] {
        n.cluster.leave().await.unwrap();
        n.remote.shutdown().await;
        n.system.shutdown().await;
    }
}

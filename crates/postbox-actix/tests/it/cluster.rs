//! A hosted actix actor in the cluster-wide registry: registered under a `ServiceKey` on one
//! member, found and asked from another, gone from the listing once the actix actor stops.

use crate::common::*;
use postbox::prelude::*;
use postbox_actix::ActixHost;
use postbox_cluster::{Listing, ListingSubscription, ServiceKey};
use postbox_testkit::TestCluster;
use std::time::Duration;

async fn wait_listing<A: Actor>(sub: &mut ListingSubscription<A>, n: usize) -> Listing<A> {
    within(PATIENCE, async {
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
    let mut nodes = TestCluster::start(2).await; // both see both up
    let (a, b) = (nodes.node(0), nodes.node(1));

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
    assert_eq!(
        within(PATIENCE, instance.actor.ask(Add(20))).await.unwrap(),
        20
    );
    assert_eq!(
        within(PATIENCE, instance.actor.ask(Add(22))).await.unwrap(),
        42
    );
    assert_eq!(
        within(PATIENCE, addr.send(ReadLog)).await.unwrap(),
        vec![20, 22]
    );

    // The actix actor stops: its host stops and leaves the listing everywhere.
    addr.do_send(Halt);
    let reason = within(PATIENCE, host.wait_for_stop()).await;
    assert!(matches!(
        reason,
        ExitReason::Stopped | ExitReason::AlreadyTerminated
    ));
    wait_listing(&mut sub, 0).await;

    nodes.leave(1).await;
    nodes.shutdown().await;
}

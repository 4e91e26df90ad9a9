//! The cluster-wide registry: register anywhere, look up from everywhere, entries follow the
//! members.

use crate::common::*;
use postbox::prelude::*;
use postbox::ActorStatus;
use postbox_cluster::{Listing, ListingSubscription, MemberStatus, RegisterError, ServiceKey};
use postbox_testkit::until;
use std::time::Duration;

/// Waits until the subscription's listing has `n` instances.
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
async fn a_service_registered_on_one_node_is_reachable_from_every_node() {
    let nodes = TestCluster::start(3).await;
    let key = ServiceKey::<Worker>::new("greeter");
    let local = serve(nodes.node(0), &key).await;
    for node in nodes.nodes() {
        let mut sub = node.cluster.receptionist().subscribe(&key);
        let listing = wait_listing(&mut sub, 1).await;
        let instance = &listing.instances()[0];
        assert_eq!(&instance.node, nodes.node(0).node());
        assert_eq!(
            within(PATIENCE, instance.actor.ask(WhereAreYou))
                .await
                .unwrap(),
            "n0"
        );
    }
    // On its own node the ref is the local one.
    let listing = nodes.node(0).cluster.receptionist().lookup(&key).await;
    assert_eq!(listing.refs(), std::slice::from_ref(&local));

    // A key of another actor type lists nothing, even with the same name.
    let other = ServiceKey::<Other>::new("greeter");
    assert!(nodes
        .node(1)
        .cluster
        .receptionist()
        .lookup(&other)
        .await
        .is_empty());

    // Deregistering removes it everywhere; the actor keeps running.
    let mut sub = nodes.node(2).cluster.receptionist().subscribe(&key);
    wait_listing(&mut sub, 1).await;
    assert!(
        nodes
            .node(0)
            .cluster
            .receptionist()
            .deregister(&key, &local)
            .await
    );
    wait_listing(&mut sub, 0).await;
    assert!(local.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_stopped_actor_or_a_crashed_node_vanish_and_in_flight_asks_fail() {
    let mut nodes = TestCluster::start(3).await;
    let key = ServiceKey::<Worker>::new("jobs");
    let stopping = serve(nodes.node(1), &key).await;
    serve(nodes.node(2), &key).await;
    let c = nodes.node(2).node().clone();
    let mut sub = nodes.node(0).cluster.receptionist().subscribe(&key);
    let listing = wait_listing(&mut sub, 2).await;

    // An actor that stops leaves the listing.
    stopping.stop();
    let listing_after_stop = wait_listing(&mut sub, 1).await;
    assert_eq!(listing_after_stop.instances()[0].node, c);

    // An ask in flight to the node that crashes fails with NodeDown, not a timeout.
    let on_c = listing
        .instances()
        .iter()
        .find(|i| i.node == c)
        .unwrap()
        .actor
        .clone();
    let stalled = tokio::spawn(async move {
        on_c.ask(Stall(60_000))
            .timeout(Duration::from_secs(60))
            .await
    });
    until(PATIENCE, "the ask to be in flight", || {
        nodes.node(0).remote.pending_asks(&c.addr) > 0
    })
    .await;
    nodes.kill(2).await;
    assert_eq!(
        within(PATIENCE, stalled).await.unwrap(),
        Err(AskError::NodeDown)
    );
    wait_listing(&mut sub, 0).await;
    assert!(nodes
        .node(1)
        .cluster
        .receptionist()
        .lookup(&key)
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_checked() {
    let nodes = TestCluster::start(2).await;
    let receptionist = nodes.node(0).cluster.receptionist();
    let key = ServiceKey::<Worker>::new("checked");
    let remote_worker = serve(nodes.node(1), &key).await;
    let mut sub = receptionist.subscribe(&key);
    let listing = wait_listing(&mut sub, 1).await;
    let proxy = listing.refs()[0].clone();
    assert_eq!(
        receptionist.register(&key, &proxy).await,
        Err(RegisterError::NotLocal)
    );
    let empty = ServiceKey::<Worker>::new("");
    let worker = serve(nodes.node(0), &key).await;
    assert!(matches!(
        receptionist.register(&empty, &worker).await,
        Err(RegisterError::InvalidKey(_))
    ));
    assert_eq!(
        receptionist.register(&key, &worker).await,
        Ok(()),
        "twice is fine"
    );
    worker.stop();
    worker.wait_for_stop().await;
    // `wait_for_stop` can return as the actor's cleanup begins, a moment before its status
    // says so.
    until(PATIENCE, "the worker's status to say stopped", || {
        worker.stats().status == ActorStatus::Stopped
    })
    .await;
    assert_eq!(
        receptionist.register(&key, &worker).await,
        Err(RegisterError::NotRunning)
    );
    drop(remote_worker);

    // After leaving, nothing can be registered and the subscription ends.
    nodes.node(0).cluster.leave().await.unwrap();
    let fresh = nodes.node(0).system.spawn(Props::new(|| Other)).unwrap();
    assert_eq!(
        receptionist
            .register(&ServiceKey::new("late"), &fresh)
            .await,
        Err(RegisterError::Stopped)
    );
    assert!(
        within(PATIENCE, async {
            loop {
                if sub.next().await.is_none() {
                    return true;
                }
            }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_declared_down_is_disconnected_and_its_asks_fail() {
    // Three nodes: the two that still hear each other are the majority that downs the third.
    let nodes = TestCluster::start(3).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let key = ServiceKey::<Worker>::new("hangs");
    serve(b, &key).await;
    let mut sub = a.cluster.receptionist().subscribe(&key);
    let listing = wait_listing(&mut sub, 1).await;
    let on_b = listing.instances()[0].actor.clone();
    let stalled = tokio::spawn(async move {
        on_b.ask(Stall(60_000))
            .timeout(Duration::from_secs(60))
            .await
    });
    until(PATIENCE, "the ask to be in flight", || {
        a.remote.pending_asks(b.addr()) > 0
    })
    .await;
    // The node stops gossiping but its transport keeps the connection open and answers
    // heartbeats: only the cluster's verdict can end the ask.
    b.cluster.kill();
    a.wait_for(b.remote.node(), MemberStatus::Down).await;
    assert_eq!(
        within(PATIENCE, stalled).await.unwrap(),
        Err(AskError::NodeDown)
    );
    assert_eq!(a.remote.pending_asks(b.addr()), 0);
}

//! Finding 8: a peer that knows the secret cannot take over the address of a live member,
//! and losing such an attempt changes nothing for the real member. (Finding 15's library half,
//! a lookup that gets no answer, is postbox-remote's `hostile::lookups`.)

use postbox::prelude::*;
use postbox_cluster::ServiceKey;
use postbox_remote::{Refusal, RefuseReason};
use postbox_testkit::{until_async, within, TestCluster, WireClient, PATIENCE};
use postbox_tests::{Ping, Prey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_take_over_a_live_members_address() {
    let cluster = TestCluster::start(3).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.remote.expose::<Prey>();
    let prey = a.system.spawn(Props::new(|| Prey)).expect("spawn");
    let key = ServiceKey::<Prey>::new("prey");
    a.cluster
        .receptionist()
        .register(&key, &prey)
        .await
        .expect("register");
    let mut listing = b.cluster.receptionist().subscribe(&key);
    let on_a = within(PATIENCE, async {
        loop {
            let found = listing.next().await.expect("listing");
            if let Some(instance) = found.instances().first() {
                return instance.actor.clone();
            }
        }
    })
    .await;
    assert_eq!(within(PATIENCE, on_a.ask(Ping(1))).await, Ok(1));

    // An impostor with the secret claims a's address under a fresh identity, at b.
    for _ in 0..3 {
        let impostor = cluster.fake_node().addr(a.addr());
        let mut client = WireClient::connect(b.addr()).await.expect("connect");
        match client.handshake(&impostor).await {
            Err(error) => assert_eq!(
                error.refusal(),
                Some(&RefuseReason::AddressInUse),
                "{error}"
            ),
            Ok(_) => panic!("an impostor took over a live member's address"),
        }
    }
    assert!(b.remote.stats().refused_by(Refusal::AddressInUse) >= 3);
    // b's link to a is the real one, before and after.
    assert_eq!(within(PATIENCE, on_a.ask(Ping(2))).await, Ok(2));
    let fresh = within(PATIENCE, b.cluster.receptionist().lookup(&key)).await;
    assert_eq!(fresh.len(), 1);
    assert_eq!(
        within(PATIENCE, fresh.instances()[0].actor.ask(Ping(3))).await,
        Ok(3)
    );
    // Losing the link (closed by b) leaves a reachable: the next lookup connects again.
    assert!(b.remote.disconnect(a.node()));
    within(PATIENCE, on_a.wait_for_stop()).await;
    let receptionist = b.cluster.receptionist();
    let again = until_async(PATIENCE, "b to reach a again", async || {
        receptionist.lookup(&key).await.instances().first().cloned()
    })
    .await;
    assert_eq!(within(PATIENCE, again.actor.ask(Ping(4))).await, Ok(4));
}

//! Another node (a second `ActorSystem` and `Remote` in this process, over loopback TCP)
//! reaches a hosted actix actor.

use crate::common::*;
use postbox::prelude::*;
use postbox::remote::RemoteFailure;
use postbox_actix::ActixHost;
use postbox_testkit::RemoteNode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_tells_asks_and_watches_a_hosted_actix_actor() {
    let host_node = RemoteNode::start().await;
    let (host_system, host_remote) = (&host_node.system, &host_node.remote);
    host_remote.expose::<ActixHost<Counter>>();
    let addr = actix().start(|_| Counter::default());
    let host = host_system
        .spawn(
            ActixHost::builder(addr.clone())
                .liveness_interval(Duration::from_millis(20))
                .props(),
        )
        .unwrap();
    host_system.registry().register("counter", &host).unwrap();

    let client = RemoteNode::start().await;
    let (system, remote) = (&client.system, &client.remote);
    let counter: ActorRef<ActixHost<Counter>> =
        within(PATIENCE, remote.lookup(host_remote.addr(), "counter"))
            .await
            .unwrap();
    for n in 1..=100 {
        counter.tell(Add(n)).await.unwrap();
    }
    // The ask's reply is the actix handler's result, decoded on this node.
    assert_eq!(within(PATIENCE, counter.ask(Add(0))).await.unwrap(), 5050);
    let mut expected: Vec<u64> = (1..=100).collect();
    expected.push(0);
    assert_eq!(
        within(PATIENCE, counter.ask(ReadLog)).await.unwrap(),
        expected
    );
    // Through a recipient too; the actix side saw it all.
    let recipient: Recipient<Add> = counter.recipient();
    assert_eq!(within(PATIENCE, recipient.ask(Add(1))).await.unwrap(), 5051);
    assert_eq!(within(PATIENCE, addr.send(Add(0))).await.unwrap(), 5051);

    // A message type the host does not accept from other nodes is refused there.
    let unlisted = counter.ask(Wait).await;
    assert_eq!(unlisted, Err(AskError::Remote(RemoteFailure::NotRemotable)));

    // A remote `Halt` stops the actix actor; the remote watcher hears of it.
    let mut probe = TestProbe::watcher(system);
    probe.watch(&counter).await;
    counter.tell(Halt).await.unwrap();
    let t = probe.expect_terminated(&counter).await;
    assert_eq!(t.id, counter.id());
    assert_eq!(
        within(PATIENCE, host.wait_for_stop()).await,
        ExitReason::AlreadyTerminated
    );

    client.shutdown().await;
    host_node.shutdown().await;
}

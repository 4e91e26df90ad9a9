//! Finding 9: watches belong to their connection. They are bounded per connection (a watch
//! beyond is answered with `Terminated` naming the limit), cost no task, end with the
//! connection, and `Unwatch` works both ways.

use super::*;
use postbox_testkit::{until, within, TestProbe, PATIENCE};
use postbox_wire::Frame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_bounded_per_connection_and_end_with_it() {
    const MAX: usize = 100;
    let (node, prey) = prey_node(remote_config().max_watches(MAX)).await;
    let mut peer = member_client(&node).await;
    let target = peer.lookup("prey").await.expect("lookup").expect("found");
    // 150 watchers of the prey, and one twice.
    for watcher in 1..=150u64 {
        peer.send(&Frame::Watch { watcher, target })
            .await
            .expect("watch");
    }
    peer.send(&Frame::Watch { watcher: 1, target })
        .await
        .expect("watch again");
    // The 50 beyond the bound are answered at once, naming the limit.
    let refused = within(PATIENCE, async {
        let mut refused = Vec::new();
        while refused.len() < 50 {
            match peer.recv().await.expect("frame") {
                Frame::Terminated {
                    watcher, reason, ..
                } => {
                    assert!(reason.contains("most watches (100)"), "{reason}");
                    refused.push(watcher);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        refused
    })
    .await;
    assert_eq!(refused, (101..=150).collect::<Vec<_>>());
    let s = stats(&node.remote);
    assert_eq!(s.watches, MAX as u64);
    assert_eq!(s.watches_refused, 50);
    // Unwatch works: ten fewer.
    for watcher in 1..=10u64 {
        peer.send(&Frame::Unwatch { watcher, target })
            .await
            .expect("unwatch");
    }
    until(PATIENCE, "the unwatches", || {
        stats(&node.remote).watches == 90
    })
    .await;
    // The rest learn of the prey's end, each once.
    prey.stop();
    let ended = within(PATIENCE, async {
        let mut ended = Vec::new();
        while ended.len() < 90 {
            if let Frame::Terminated { watcher, .. } = peer.recv().await.expect("frame") {
                ended.push(watcher);
            }
        }
        ended.sort_unstable();
        ended
    })
    .await;
    assert_eq!(ended, (11..=100).collect::<Vec<_>>());
    assert_eq!(stats(&node.remote).watches, 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_s_watches_end_with_it() {
    let (node, _prey) = prey_node(remote_config()).await;
    let mut peer = member_client(&node).await;
    let target = peer.lookup("prey").await.expect("lookup").expect("found");
    for watcher in 1..=1_000u64 {
        peer.send(&Frame::Watch { watcher, target })
            .await
            .expect("watch");
    }
    until(PATIENCE, "the watches", || {
        stats(&node.remote).watches == 1_000
    })
    .await;
    drop(peer);
    until(PATIENCE, "the watches to go with the connection", || {
        let s = stats(&node.remote);
        s.watches == 0 && s.connections == 0
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwatching_a_remote_ref_tells_its_node() {
    let (host, _prey) = prey_node(remote_config()).await;
    let client = RemoteNode::start_with(remote_config()).await;
    let prey: ActorRef<Prey> = within(PATIENCE, client.remote.lookup(host.addr(), "prey"))
        .await
        .expect("lookup");
    let probe = TestProbe::<postbox_testkit::NoMessage>::watcher(&client.system);
    probe.watch(&prey).await;
    until(PATIENCE, "the host to hold the watch", || {
        stats(&host.remote).watches == 1
    })
    .await;
    probe.unwatch(&prey).await;
    until(PATIENCE, "the host to drop the watch", || {
        stats(&host.remote).watches == 0
    })
    .await;
    client.shutdown().await;
    host.shutdown().await;
}

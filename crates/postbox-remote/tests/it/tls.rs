//! Mutual TLS: nodes with certificates from the cluster CA talk; anyone else is refused, and
//! the node keeps serving.

use super::common::*;
use postbox::prelude::*;
use postbox_remote::{ConnectError, RemoteError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_certificates_from_the_cluster_ca_talk_over_tls() {
    let (_host_system, host, _journal) = host_with(remote_config().tls(tls("node"))).await;
    let (system, client) = client_with(remote_config().tls(tls("node"))).await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    for n in 0..500 {
        journal.tell(Record(n)).await.unwrap();
    }
    assert_eq!(
        within(PATIENCE, journal.ask(ReadLog)).await.unwrap(),
        (0..500).collect::<Vec<_>>()
    );
    // Watch works over TLS too.
    let mut watcher = TestProbe::watcher(&system);
    watcher.watch(&journal).await;
    within(PATIENCE, journal.ask(Echo("sync".into())))
        .await
        .unwrap();
    journal.tell(Quit).await.unwrap();
    let seen = watcher.expect_terminated(&journal).await;
    assert_eq!(seen.id, journal.id());
    assert_eq!(host.stats().auth_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_on_both_sides() {
    let (_host_system, host, _journal) = host_with(remote_config().tls(tls("node"))).await;
    // The rogue node knows the secret but its certificate is not from the cluster CA (and it
    // does not trust the host's either).
    let (_rogue_system, rogue) = client_with(remote_config().tls(tls("rogue-node"))).await;
    match within(PATIENCE, rogue.lookup::<Journal>(host.addr(), "journal")).await {
        Err(RemoteError::Connect(ConnectError::Tls(why))) => {
            assert!(why.contains("certificate"), "{why}")
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert_eq!(rogue.stats().auth_failures, 1);
    // A client without TLS at all is refused too.
    let (_plain_system, plain) = client().await;
    assert!(
        within(PATIENCE, plain.lookup::<Journal>(host.addr(), "journal"))
            .await
            .is_err()
    );
    // Both counted by the host, which still serves a proper client.
    // The host counts a refusal once its side of the handshake gives up, which may be just
    // after the client has.
    until(PATIENCE, "the refusals to be counted", || {
        host.stats().refused >= 2
    })
    .await;
    assert!(host.stats().auth_failures >= 1, "{:?}", host.stats());
    let (_system, client) = client_with(remote_config().tls(tls("node"))).await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("alive".into())))
            .await
            .unwrap(),
        "alive"
    );
}

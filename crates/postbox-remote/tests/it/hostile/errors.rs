//! Finding 10: one error vocabulary. A remote ask fails with the same `AskError` a local one
//! would (panicked, stopped, too large, ...); a reply or a message over the frame limit is
//! never silently dropped: its asker learns why, and a tell is a counted dead letter.

use super::*;
use postbox::remote::RemoteFailure;
use postbox::DeadLetterReason;
use postbox_testkit::{until, within, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_ask_fails_as_a_local_one_would() {
    let (host, local) = prey_node(remote_config()).await;
    let client = RemoteNode::start_with(remote_config()).await;
    let remote: ActorRef<Prey> = within(PATIENCE, client.remote.lookup(host.addr(), "prey"))
        .await
        .expect("lookup");
    // A handler that panics (the actor is restarted).
    assert_eq!(
        within(PATIENCE, local.ask(Boom)).await,
        Err(AskError::Panicked)
    );
    assert_eq!(
        within(PATIENCE, remote.ask(Boom)).await,
        Err(AskError::Panicked)
    );
    // An actor that has stopped.
    local.tell(Vanish).await.expect("tell");
    within(PATIENCE, local.wait_for_stop()).await;
    assert_eq!(
        within(PATIENCE, local.ask(Ping(1))).await,
        Err(AskError::Stopped)
    );
    assert_eq!(
        within(PATIENCE, remote.ask(Ping(1))).await,
        Err(AskError::Stopped)
    );
    client.shutdown().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_frame_limit_fails_its_ask_saying_why() {
    let limit = 64 * 1024;
    let (host, _prey) = prey_node(remote_config().max_frame(limit)).await;
    let client = RemoteNode::start_with(remote_config().max_frame(limit)).await;
    let prey: ActorRef<Prey> = within(PATIENCE, client.remote.lookup(host.addr(), "prey"))
        .await
        .expect("lookup");
    assert_eq!(
        within(PATIENCE, prey.ask(Blob(2 * limit))).await,
        Err(AskError::Remote(RemoteFailure::TooLarge))
    );
    assert_eq!(host.remote.stats().too_large, 1);
    // The connection goes on.
    assert_eq!(
        within(PATIENCE, prey.ask(Blob(10))).await.map(|b| b.len()),
        Ok(10)
    );
    client.shutdown().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_frame_limit_is_refused_and_counted() {
    let limit = 64 * 1024;
    let (host, _prey) = prey_node(remote_config()).await;
    let client = RemoteNode::start_with(remote_config().max_frame(limit)).await;
    let prey: ActorRef<Prey> = within(PATIENCE, client.remote.lookup(host.addr(), "prey"))
        .await
        .expect("lookup");
    let big = vec![1u8; 2 * limit];
    assert_eq!(
        within(PATIENCE, prey.ask(Swallow(big.clone()))).await,
        Err(AskError::Remote(RemoteFailure::TooLarge))
    );
    prey.tell(Swallow(big)).await.expect("accepted by the ref");
    let dead = client.system.dead_letters();
    until(PATIENCE, "both to be counted", || {
        dead.count(DeadLetterReason::TooLarge) == 2
    })
    .await;
    // The ref goes on: the next message fits.
    assert_eq!(
        within(PATIENCE, prey.ask(Swallow(vec![0; 100]))).await,
        Ok(100)
    );
    client.shutdown().await;
    host.shutdown().await;
}

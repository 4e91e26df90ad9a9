//! The host follows its actix actor: an actix actor that stops ends its host (watchers get
//! `Terminated`), and a host that stops lets an actix actor nobody else addresses stop.

use crate::common::*;
use postbox::prelude::*;
use postbox::DeadLetterReason;
use postbox_actix::ActixHost;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_get_terminated_when_an_idle_actix_actor_stops() {
    let system = ActorSystem::new();
    let addr = actix().start(|_| Counter::default());
    let host = system
        .spawn(
            ActixHost::builder(addr.clone())
                .liveness_interval(Duration::from_millis(20))
                .props(),
        )
        .unwrap();
    system.registry().register("idle", &host).unwrap();
    let mut probe = TestProbe::watcher(&system);
    probe.watch(&host).await;
    assert_eq!(within(PATIENCE, host.ask(Add(1))).await.unwrap(), 1);

    // Nothing is in flight: the liveness probe notices.
    addr.do_send(Halt);
    let t = probe.expect_terminated(&host).await;
    assert_eq!((t.id, t.reason), (host.id(), ExitReason::Stopped));
    assert_eq!(
        within(PATIENCE, host.wait_for_stop()).await,
        ExitReason::AlreadyTerminated
    );
    assert!(system
        .registry()
        .lookup::<ActixHost<Counter>>("idle")
        .is_none());

    // Later sends are refused and counted.
    let refused = system.dead_letters().count(DeadLetterReason::ActorStopped);
    assert!(host.tell(Add(1)).await.is_err());
    assert_eq!(
        system.dead_letters().count(DeadLetterReason::ActorStopped),
        refused + 1
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_in_flight_when_the_actix_actor_stops_fails_and_ends_the_host_at_once() {
    let system = ActorSystem::new();
    let addr = actix().start(|_| Counter::default());
    // No probe within the test's time: only the failed delivery can end the host.
    let host = system
        .spawn(
            ActixHost::builder(addr.clone())
                .liveness_interval(Duration::from_secs(3600))
                .props(),
        )
        .unwrap();
    let mut probe = TestProbe::watcher(&system);
    probe.watch(&host).await;
    let mut dead = system.dead_letters().subscribe();
    let wait = tokio::spawn({
        let host = host.clone();
        async move { host.ask(Wait).await }
    });
    until(PATIENCE, "the wait to be in flight", || host.depth() == 1).await;

    addr.do_send(Halt);
    assert_eq!(
        within(PATIENCE, wait).await.unwrap(),
        Err(AskError::Stopped)
    );
    let letter = within(PATIENCE, dead.recv()).await.unwrap();
    assert_eq!(
        (letter.recipient, letter.message_type, letter.reason),
        (
            host.id(),
            std::any::type_name::<Wait>(),
            DeadLetterReason::ActorStopped
        )
    );
    let t = probe.expect_terminated(&host).await;
    assert_eq!((t.id, t.reason), (host.id(), ExitReason::Stopped));
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_lets_go_of_its_actix_actor() {
    let system = ActorSystem::new();
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
    // The host holds the only address.
    let host = system
        .spawn(ActixHost::props(actix().start(move |_| Counter {
            on_stop: Some(stopped_tx),
            ..Counter::default()
        })))
        .unwrap();
    assert_eq!(within(PATIENCE, host.ask(Add(2))).await.unwrap(), 2);
    let mut probe = TestProbe::watcher(&system);
    probe.watch(&host).await;
    host.stop();
    assert_eq!(
        probe.expect_terminated(&host).await.reason,
        ExitReason::Stopped
    );
    let stopped = tokio::task::spawn_blocking(move || stopped_rx.recv_timeout(PATIENCE));
    assert_eq!(within(PATIENCE, stopped).await.unwrap(), Ok(()));
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_host_waits_for_what_it_forwarded() {
    let system = ActorSystem::new();
    let addr = actix().start(|_| Counter::default());
    let host = system.spawn(ActixHost::props(addr.clone())).unwrap();
    let wait = tokio::spawn({
        let host = host.clone();
        async move { host.ask(Wait).await }
    });
    until(PATIENCE, "the wait to be in flight", || host.depth() == 1).await;
    let mut probe = TestProbe::watcher(&system);
    probe.watch(&host).await;
    host.drain_and_stop();
    // The host is stopping, but it terminates only once its forwarded `Wait` is answered
    // (which needs the `Release` below).
    until(PATIENCE, "the host to stop accepting", || !host.is_alive()).await;
    assert!(probe.drain_terminated().is_empty());
    assert_eq!(within(PATIENCE, addr.send(Release)).await.unwrap(), 1);
    assert_eq!(within(PATIENCE, wait).await.unwrap(), Ok("released"));
    assert_eq!(
        probe.expect_terminated(&host).await.reason,
        ExitReason::Stopped
    );
    system.shutdown().await;
}

//! `TestProbe`: expectations pass on what arrives, and fail — saying what, where and why —
//! on what does not.

use crate::common::{panic_message, Heard, Shout, Shouter};
use postbox::prelude::*;
use postbox_testkit::{NoMessage, TestProbe, PATIENCE};
use std::time::Duration;

fn shout(text: &'static str, probe: &TestProbe<Heard>) -> Shout {
    Shout {
        text,
        to: probe.recipient(),
    }
}

fn heard(text: &str) -> Heard {
    Heard(text.into())
}

#[tokio::test]
async fn a_probe_sees_what_an_actor_sends_in_order() {
    let system = ActorSystem::new();
    let shouter = system.spawn(Props::new(Shouter::default)).unwrap();
    let mut probe = TestProbe::new(&system);
    for text in ["a", "b", "c", "d", "e"] {
        shouter.tell(shout(text, &probe)).await.unwrap();
    }
    assert_eq!(probe.expect_msg().await, heard("A"));
    probe.expect_msg_eq(heard("B")).await;
    let c = probe.expect_msg_matching(|Heard(text)| text == "C").await;
    assert_eq!(c, heard("C"));
    assert_eq!(probe.receive_n(2).await, [heard("D"), heard("E")]);
    probe.expect_no_msg().await;
    assert!(probe.drain().is_empty());
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_message_fails_the_expectation_with_the_deadline_and_the_place() {
    let system = ActorSystem::new();
    let mut probe = TestProbe::<Heard>::new(&system);
    let name = probe.name().to_owned();
    let message = panic_message(async move {
        probe.expect_msg().within(Duration::from_millis(300)).await;
    })
    .await;
    assert!(message.starts_with(&name), "{message}");
    assert!(message.contains("probe of"), "{message}");
    assert!(message.contains("Heard"), "{message}");
    assert!(message.contains("no message within 300ms"), "{message}");
    assert!(message.contains("expect_msg at "), "{message}");
    assert!(message.contains("tests/it/probe.rs"), "{message}");
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn receive_n_fails_when_one_is_missing_and_says_how_many_came() {
    let system = ActorSystem::new();
    let shouter = system.spawn(Props::new(Shouter::default)).unwrap();
    let mut probe = TestProbe::new(&system).with_deadline(Duration::from_secs(2));
    shouter.tell(shout("only one", &probe)).await.unwrap();
    let message = panic_message(async move {
        probe.receive_n(2).await;
    })
    .await;
    assert!(
        message.contains("no message within 2s (got 1 of 2)"),
        "{message}"
    );
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unexpected_message_fails_expect_no_msg_and_a_wrong_one_fails_expect_msg_eq() {
    let system = ActorSystem::new();
    let shouter = system.spawn(Props::new(Shouter::default)).unwrap();

    let mut quiet = TestProbe::new(&system);
    shouter.tell(shout("psst", &quiet)).await.unwrap();
    let message = panic_message(async move { quiet.expect_no_msg().await }).await;
    assert!(
        message.contains("expected no message for 100ms, got Heard(\"PSST\")"),
        "{message}"
    );

    let mut picky = TestProbe::new(&system);
    shouter.tell(shout("hi", &picky)).await.unwrap();
    let message = panic_message(async move { picky.expect_msg_eq(heard("HELLO")).await }).await;
    assert!(
        message.contains("expected Heard(\"HELLO\"), got Heard(\"HI\")"),
        "{message}"
    );

    let mut matching = TestProbe::new(&system);
    shouter.tell(shout("no", &matching)).await.unwrap();
    let message = panic_message(async move {
        matching
            .expect_msg_matching(|Heard(text)| text == "YES")
            .await;
    })
    .await;
    assert!(
        message.contains("unexpected message Heard(\"NO\")"),
        "{message}"
    );
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fish_for_skips_until_the_wanted_message_and_lists_the_skipped_when_it_never_comes() {
    let system = ActorSystem::new();
    let shouter = system.spawn(Props::new(Shouter::default)).unwrap();
    let mut probe = TestProbe::new(&system);
    for text in ["x", "y", "target", "z"] {
        shouter.tell(shout(text, &probe)).await.unwrap();
    }
    let found = probe.fish_for(|Heard(text)| text == "TARGET").await;
    assert_eq!(found, heard("TARGET"));
    assert_eq!(probe.expect_msg().await, heard("Z"));

    shouter.tell(shout("w", &probe)).await.unwrap();
    let message = panic_message(async move {
        probe
            .fish_for(|Heard(text)| text == "NEVER")
            .within(Duration::from_secs(1))
            .await;
    })
    .await;
    assert!(
        message.contains("no message within 1s; skipped [Heard(\"W\")]"),
        "{message}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn an_expectation_returns_as_soon_as_its_message_arrives() {
    let system = ActorSystem::new();
    let shouter = system.spawn(Props::new(Shouter::default)).unwrap();
    let mut probe = TestProbe::new(&system);
    let to = probe.recipient();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        shouter.tell(Shout { text: "late", to }).await.unwrap();
    });
    let started = tokio::time::Instant::now();
    assert_eq!(probe.expect_msg().await, heard("LATE"));
    assert!(started.elapsed() < PATIENCE);
    late.await.unwrap();
    system.shutdown().await;
}

/// A question with an answer.
#[derive(Debug, PartialEq)]
struct Price(&'static str);
impl Message for Price {
    type Reply = u64;
}

#[tokio::test]
async fn a_probe_answers_asks_by_hand_or_by_autopilot() {
    let system = ActorSystem::new();
    let mut probe = TestProbe::<Price>::new(&system);
    let catalog = probe.recipient();

    // By hand: the asker waits until the test answers.
    let asking = tokio::spawn({
        let catalog = catalog.clone();
        async move { catalog.ask(Price("tea")).await }
    });
    let (question, reply) = probe.expect_ask().await;
    assert_eq!(question, Price("tea"));
    assert!(!asking.is_finished());
    reply.send(350).unwrap();
    assert_eq!(asking.await.unwrap(), Ok(350));

    // A dropped reply handle resolves the asker at once.
    let asking = tokio::spawn({
        let catalog = catalog.clone();
        async move { catalog.ask(Price("milk")).await }
    });
    drop(probe.expect_ask().await);
    assert_eq!(asking.await.unwrap(), Err(AskError::Stopped));

    // An autopilot answers every ask; the messages are still recorded.
    probe.reply_with(|Price(item)| item.len() as u64);
    assert_eq!(catalog.ask(Price("coffee")).await, Ok(6));
    assert_eq!(catalog.ask(Price("tea")).await, Ok(3));
    probe.expect_msg_eq(Price("coffee")).await;
    probe.expect_msg_eq(Price("tea")).await;

    // Without it again, asks wait for the test.
    probe.clear_autopilot();
    let asking = tokio::spawn({
        let catalog = catalog.clone();
        async move { catalog.ask(Price("cake")).await }
    });
    let (_, reply) = probe.expect_ask().await;
    reply.send(1).unwrap();
    assert_eq!(asking.await.unwrap(), Ok(1));
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_ask_taken_as_a_plain_message_stays_unanswered_until_its_timeout() {
    let system = ActorSystem::new();
    let mut probe = TestProbe::<Price>::new(&system);
    let catalog = probe.recipient();
    let asking = tokio::spawn(async move {
        catalog
            .ask(Price("bread"))
            .timeout(Duration::from_secs(5))
            .await
    });
    assert_eq!(probe.expect_msg().await, Price("bread"));
    assert_eq!(
        asking.await.unwrap(),
        Err(AskError::Timeout(Duration::from_secs(5)))
    );

    // expect_ask refuses a tell.
    probe.recipient().tell(Price("jam")).await.unwrap();
    let message = panic_message(async move {
        let _ = probe.expect_ask().await;
    })
    .await;
    assert!(message.contains("expected an ask, got a tell"), "{message}");
    system.shutdown().await;
}

/// Stops itself when told.
struct Quitter;
impl Actor for Quitter {}
struct Quit;
impl Message for Quit {
    type Reply = ();
}
impl Handler<Quit> for Quitter {
    async fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A `Quitter` that stays stopped once it quits.
fn quitter(system: &ActorSystem) -> ActorRef<Quitter> {
    system
        .spawn(Props::new(|| Quitter).restart(Restart::Transient))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_is_in_place_when_watch_returns_so_no_termination_is_missed() {
    let system = ActorSystem::new();
    let mut probe = TestProbe::watcher(&system);
    // Stopping right after `watch` returns, many times over: the termination is never lost
    // and never reported as "already terminated".
    for _ in 0..50 {
        let actor = quitter(&system);
        probe.watch(&actor).await;
        actor.tell(Quit).await.unwrap();
        let terminated = probe.expect_terminated(&actor).await;
        assert_eq!(terminated.reason, ExitReason::Normal, "{terminated:?}");
    }
    system.shutdown().await;
}

#[tokio::test]
async fn watching_an_actor_that_is_gone_reports_it_at_once_and_unwatch_silences_a_watch() {
    let system = ActorSystem::new();
    let mut probe = TestProbe::watcher(&system);
    let gone = quitter(&system);
    gone.tell(Quit).await.unwrap();
    gone.wait_for_stop().await;
    probe.watch(&gone).await;
    let terminated = probe.expect_terminated(&gone).await;
    assert_eq!(terminated.reason, ExitReason::AlreadyTerminated);

    // Unwatched before it stops: the next termination seen is the other actor's.
    let unwatched = quitter(&system);
    let watched = quitter(&system).recipient::<Quit>();
    probe.watch(&unwatched).await;
    probe.watch(&watched).await;
    probe.unwatch(&unwatched).await;
    unwatched.tell(Quit).await.unwrap();
    unwatched.wait_for_stop().await;
    assert!(probe.drain_terminated().is_empty());
    watched.tell(Quit).await.unwrap();
    probe.expect_terminated(&watched).await;
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn expect_terminated_fails_on_another_actor_s_termination_or_none() {
    let system = ActorSystem::new();
    let mut probe = TestProbe::<NoMessage>::watcher(&system);
    let expected = quitter(&system);
    let other = quitter(&system);
    probe.watch(&expected).await;
    probe.watch(&other).await;
    other.tell(Quit).await.unwrap();
    let (expected_id, other_id) = (expected.id(), other.id());
    let message = panic_message(async move {
        probe.expect_terminated(&expected).await;
    })
    .await;
    assert!(
        message.contains(&format!("expected the termination of {expected_id}")),
        "{message}"
    );
    assert!(message.contains(&format!("{other_id:?}")), "{message}");

    let mut probe = TestProbe::watcher(&system);
    let alive = quitter(&system);
    probe.watch(&alive).await;
    let id = alive.id();
    let message = panic_message(async move {
        probe.expect_terminated(&alive).await;
    })
    .await;
    assert!(
        message.contains(&format!("{id} did not terminate within 10s")),
        "{message}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_probe_whose_system_shut_down_says_so_instead_of_waiting() {
    let system = ActorSystem::new();
    let mut probe = TestProbe::<Heard>::new(&system);
    system.shutdown().await;
    let started = tokio::time::Instant::now();
    let message = panic_message(async move {
        probe.expect_msg().await;
    })
    .await;
    assert!(
        message.contains("the probe's actor has stopped"),
        "{message}"
    );
    assert!(started.elapsed() < PATIENCE);
}

#[tokio::test]
async fn dropping_a_probe_stops_its_actors() {
    let system = ActorSystem::new();
    let probe = TestProbe::<Heard>::new(&system);
    let actor = probe.actor_ref().clone();
    assert!(actor.is_alive());
    drop(probe);
    actor.wait_for_stop().await;
    system.shutdown().await;
}

//! Depth and counters read from refs and the actor table; tracing spans per message.

use crate::common::{until, within, PATIENCE};
use postbox::prelude::*;
use postbox::{ActorStatus, MailboxCapacity};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct Busy {
    gate: Arc<Notify>,
}
impl Actor for Busy {}

struct Hold;
impl Message for Hold {
    type Reply = ();
}
impl Handler<Hold> for Busy {
    async fn handle(&mut self, _: Hold, _: &mut Context<Self>) {
        self.gate.notified().await;
    }
}

struct Nap(u64);
impl Message for Nap {
    type Reply = ();
}
impl Handler<Nap> for Busy {
    async fn handle(&mut self, Nap(ms): Nap, _: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

#[tokio::test]
async fn depth_and_counters_are_visible_from_refs_and_the_actor_table() {
    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system
        .spawn(
            Props::new(move || Busy { gate: g.clone() })
                .name("busy")
                .mailbox(MailboxCapacity::bounded(100)),
        )
        .unwrap();
    actor.tell(Nap(5)).await.unwrap();
    actor.tell(Hold).await.unwrap();
    for _ in 0..10 {
        actor.tell(Nap(0)).await.unwrap();
    }
    until(PATIENCE, "ten queued behind the held one", || {
        actor.depth() == 10 && actor.stats().processed == 1
    })
    .await;
    let stats = actor.stats();
    assert_eq!(stats.depth, 10);
    assert_eq!(stats.capacity, Some(100));
    assert_eq!(stats.status, ActorStatus::Running);
    // The first message is always one of the timed samples.
    assert!(
        stats.last_processing >= Duration::from_millis(5),
        "{stats:?}"
    );
    assert!(
        stats.mean_processing >= Duration::from_millis(5),
        "{stats:?}"
    );

    assert_eq!(system.depth(actor.id()), Some(10));
    let info = system.actor(actor.id()).unwrap();
    assert_eq!(info.path, "/user/busy");
    assert_eq!(info.stats.depth, 10);
    assert!(info.actor_type.ends_with("Busy"));
    let listed = system.actors();
    assert!(listed
        .iter()
        .any(|i| i.id == actor.id() && i.stats.depth == 10));
    assert!(listed
        .iter()
        .any(|i| i.path == "/user" && i.parent.is_none()));

    gate.notify_one();
    until(PATIENCE, "all twelve processed", || {
        actor.stats().processed == 12
    })
    .await;
    assert_eq!(actor.depth(), 0);
    let counters = system.counters();
    assert_eq!(counters.actors_started, 1);
    system.shutdown().await;
    assert_eq!(system.counters().actors_stopped, 2);
}

/// Records what the runtime reports to an observer.
#[derive(Default)]
struct Recorder {
    handler_times: std::sync::Mutex<Vec<(&'static str, Duration)>>,
    mailbox_waits: std::sync::Mutex<Vec<(&'static str, Duration)>>,
    stopped: std::sync::Mutex<Vec<(&'static str, u64)>>,
}

impl postbox::Observer for Recorder {
    fn handler_time(&self, actor_type: &'static str, elapsed: Duration) {
        self.handler_times
            .lock()
            .unwrap()
            .push((actor_type, elapsed));
    }
    fn mailbox_wait(&self, actor_type: &'static str, waited: Duration) {
        self.mailbox_waits
            .lock()
            .unwrap()
            .push((actor_type, waited));
    }
    fn actor_stopped(&self, actor_type: &'static str, processed: u64) {
        self.stopped.lock().unwrap().push((actor_type, processed));
    }
}

#[tokio::test]
async fn an_observer_hears_sampled_handler_times_mailbox_waits_and_stops() {
    let system = ActorSystem::new();
    let recorder = Arc::new(Recorder::default());
    assert!(!system.has_observer());
    system.set_observer(recorder.clone()).unwrap();
    assert!(
        system.set_observer(recorder.clone()).is_err(),
        "one observer per system"
    );
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system
        .spawn(Props::new(move || Busy { gate: g.clone() }).mailbox(MailboxCapacity::bounded(100)))
        .unwrap();
    let hold_sent = std::time::Instant::now();
    actor.tell(Hold).await.unwrap(); // mailbox slot 0: a wait sample, and a timed handler
    for _ in 1..16 {
        actor.tell(Nap(0)).await.unwrap();
    }
    actor.tell(Nap(0)).await.unwrap(); // slot 16: the second wait sample
    let sixteenth_sent = std::time::Instant::now();
    for _ in 17..32 {
        actor.tell(Nap(0)).await.unwrap();
    }
    until(PATIENCE, "31 queued behind the held one", || {
        actor.depth() == 31
    })
    .await;
    // The held handler started before this (the mailbox holds everything after it).
    let all_queued = std::time::Instant::now();
    let released = std::time::Instant::now();
    gate.notify_one();
    until(PATIENCE, "all 32 processed", || {
        actor.stats().processed == 32
    })
    .await;
    let done = std::time::Instant::now();

    let this_type = std::any::type_name::<Busy>();
    let handler_times = recorder.handler_times.lock().unwrap().clone();
    // The 1st and the 17th messages are timed.
    assert_eq!(handler_times.len(), 2, "{handler_times:?}");
    assert!(handler_times.iter().all(|(t, _)| *t == this_type));
    assert!(handler_times[0].1 >= released - all_queued);
    assert!(handler_times[0].1 <= done - hold_sent);

    let waits = recorder.mailbox_waits.lock().unwrap().clone();
    // Slots 0 and 16 carry the senders' stamps.
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert!(waits.iter().all(|(t, _)| *t == this_type));
    assert!(
        waits[0].1 <= released - hold_sent,
        "slot 0 was taken at once"
    );
    assert!(
        waits[1].1 >= released - sixteenth_sent,
        "slot 16 waited behind the held handler: {:?}",
        waits[1].1
    );
    assert!(waits[1].1 <= done - hold_sent);

    actor.stop();
    within(PATIENCE, actor.wait_for_stop()).await;
    until(PATIENCE, "the observer told of the stop", || {
        !recorder.stopped.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*recorder.stopped.lock().unwrap(), vec![(this_type, 32)]);
    system.shutdown().await;
}

#[tokio::test]
async fn ask_timeouts_are_counted() {
    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system
        .spawn(Props::new(move || Busy { gate: g.clone() }))
        .unwrap();
    assert_eq!(system.counters().ask_timeouts, 0);
    let result = actor.ask(Hold).timeout(Duration::from_millis(20)).await;
    assert!(matches!(result, Err(AskError::Timeout(_))), "{result:?}");
    assert_eq!(system.counters().ask_timeouts, 1);
    gate.notify_one();
    assert_eq!(within(PATIENCE, actor.ask(Nap(0))).await, Ok(()));
    assert_eq!(
        system.counters().ask_timeouts,
        1,
        "answered asks are not timeouts"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn for_each_actor_walks_the_actor_table_without_snapshots() {
    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let named = system
        .spawn(Props::new(move || Busy { gate: g.clone() }).name("held"))
        .unwrap();
    let g = gate.clone();
    let anonymous = system
        .spawn(Props::new(move || Busy { gate: g.clone() }))
        .unwrap();
    named.tell(Hold).await.unwrap();
    named.tell(Nap(0)).await.unwrap();
    until(PATIENCE, "one queued behind the held one", || {
        named.depth() == 1
    })
    .await;
    let mut seen = Vec::new();
    system.for_each_actor(|actor| {
        seen.push((
            actor.id(),
            actor.parent(),
            actor.name().map(str::to_owned),
            actor.depth(),
            actor.actor_type(),
        ));
    });
    assert_eq!(seen.len(), system.actor_count());
    let busy = std::any::type_name::<Busy>();
    let named_view = seen.iter().find(|a| a.0 == named.id()).unwrap();
    assert_eq!(
        (named_view.2.as_deref(), named_view.3, named_view.4),
        (Some("held"), 1, busy)
    );
    let anonymous_view = seen.iter().find(|a| a.0 == anonymous.id()).unwrap();
    assert_eq!((anonymous_view.2.as_deref(), anonymous_view.3), (None, 0));
    let guardian = seen.iter().find(|a| a.1.is_none()).unwrap();
    assert_eq!(
        named_view.1,
        Some(guardian.0),
        "top-level actors are the guardian's children"
    );
    gate.notify_one();
    system.shutdown().await;
}

//! Lifecycle hooks, stop / drain / kill, death watch, spawning rules.

use crate::common::{events, until, within, Events, PATIENCE};
use postbox::prelude::*;
use postbox::{DeadLetterReason, Failure, MailboxCapacity};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Started(&'static str),
    Stopping(&'static str),
    Stopped(&'static str, ExitReason),
    Handled(&'static str, u32),
    Saw(ActorId, ExitReason),
}

/// Reports hooks and handled messages; handles `Terminated` for watch tests; can hold on a gate.
struct Probe {
    name: &'static str,
    events: Events<Ev>,
    gate: Option<Arc<Notify>>,
    children: Vec<&'static str>,
}

impl Probe {
    fn props(name: &'static str, events: &Events<Ev>) -> Props<Probe> {
        Self::props_with(name, events, None, Vec::new())
    }

    fn props_with(
        name: &'static str,
        events: &Events<Ev>,
        gate: Option<Arc<Notify>>,
        children: Vec<&'static str>,
    ) -> Props<Probe> {
        let events = events.clone();
        Props::new(move || Probe {
            name,
            events: events.clone(),
            gate: gate.clone(),
            children: children.clone(),
        })
        .name(name)
    }
}

impl Actor for Probe {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.events.emit(Ev::Started(self.name));
        for child in self.children.clone() {
            ctx.spawn(Probe::props(child, &self.events))?;
        }
        Ok(())
    }
    async fn stopping(&mut self, _: &mut Context<Self>) {
        self.events.emit(Ev::Stopping(self.name));
    }
    async fn stopped(&mut self, _: &mut Context<Self>, reason: &ExitReason) {
        self.events.emit(Ev::Stopped(self.name, reason.clone()));
    }
}

struct Work(u32);
impl Message for Work {
    type Reply = ();
}
impl Handler<Work> for Probe {
    async fn handle(&mut self, Work(n): Work, _: &mut Context<Self>) {
        if n == 0 {
            if let Some(gate) = &self.gate {
                gate.notified().await;
            }
        }
        self.events.emit(Ev::Handled(self.name, n));
    }
}

impl Handler<Terminated> for Probe {
    async fn handle(&mut self, t: Terminated, _: &mut Context<Self>) {
        self.events.emit(Ev::Saw(t.id, t.reason));
    }
}

struct Watch<A: Actor>(ActorRef<A>);
impl<A: Actor> Message for Watch<A> {
    type Reply = ();
}
impl<A: Actor> Handler<Watch<A>> for Probe {
    async fn handle(&mut self, Watch(target): Watch<A>, ctx: &mut Context<Self>) {
        ctx.watch(&target);
    }
}

struct Unwatch<A: Actor>(ActorRef<A>);
impl<A: Actor> Message for Unwatch<A> {
    type Reply = ();
}
impl<A: Actor> Handler<Unwatch<A>> for Probe {
    async fn handle(&mut self, Unwatch(target): Unwatch<A>, ctx: &mut Context<Self>) {
        ctx.unwatch(&target);
    }
}

struct StopSelf;
impl Message for StopSelf {
    type Reply = ();
}
impl Handler<StopSelf> for Probe {
    async fn handle(&mut self, _: StopSelf, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

struct Children;
impl Message for Children {
    type Reply = Vec<ActorId>;
}
impl Handler<Children> for Probe {
    async fn handle(&mut self, _: Children, ctx: &mut Context<Self>) -> Vec<ActorId> {
        ctx.children()
    }
}

#[tokio::test]
async fn hooks_run_in_order_and_children_stop_before_their_parent() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let parent = system
        .spawn(Probe::props_with("p", &events, None, vec!["x", "y"]))
        .unwrap();
    log.expect(&[Ev::Started("p"), Ev::Started("x"), Ev::Started("y")])
        .await;
    let kids = parent.ask(Children).await.unwrap();
    assert_eq!(kids.len(), 2);
    let x = system.actor(kids[0]).unwrap();
    assert_eq!(x.path, "/user/p/x");
    assert_eq!(x.parent, Some(parent.id()));

    parent.stop();
    log.expect(&[
        Ev::Stopping("p"),
        Ev::Stopping("y"),
        Ev::Stopped("y", ExitReason::Stopped),
        Ev::Stopping("x"),
        Ev::Stopped("x", ExitReason::Stopped),
        Ev::Stopped("p", ExitReason::Stopped),
    ])
    .await;
    assert_eq!(parent.wait_for_stop().await, ExitReason::AlreadyTerminated);
    assert!(system.actor(kids[0]).is_none());
    system.shutdown().await;
}

#[tokio::test]
async fn watchers_learn_why_an_actor_terminated() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let watcher = system.spawn(Probe::props("watcher", &events)).unwrap();
    let target = system
        .spawn(Probe::props("target", &events).restart(Restart::Transient))
        .unwrap();
    log.take(2).await;
    watcher.ask(Watch(target.clone())).await.unwrap();
    target.tell(StopSelf).await.unwrap();
    log.expect(&[
        Ev::Stopping("target"),
        Ev::Stopped("target", ExitReason::Normal),
        Ev::Saw(target.id(), ExitReason::Normal),
    ])
    .await;
    system.shutdown().await;
}

#[tokio::test]
async fn watching_a_dead_actor_delivers_terminated_at_once_and_twice_is_once() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let watcher = system.spawn(Probe::props("watcher", &events)).unwrap();
    let target = system.spawn(Probe::props("target", &events)).unwrap();
    log.take(2).await;
    watcher.ask(Watch(target.clone())).await.unwrap();
    watcher.ask(Watch(target.clone())).await.unwrap();
    target.stop();
    log.expect(&[
        Ev::Stopping("target"),
        Ev::Stopped("target", ExitReason::Stopped),
        Ev::Saw(target.id(), ExitReason::Stopped),
    ])
    .await;
    // Watching it again now answers at once.
    watcher.ask(Watch(target.clone())).await.unwrap();
    log.expect(&[Ev::Saw(target.id(), ExitReason::AlreadyTerminated)])
        .await;
    // No duplicate from the double watch.
    watcher.ask(Children).await.unwrap();
    assert!(log.drain_now().is_empty());
    system.shutdown().await;
}

#[tokio::test]
async fn unwatch_suppresses_the_notification() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let watcher = system.spawn(Probe::props("watcher", &events)).unwrap();
    let target = system.spawn(Probe::props("target", &events)).unwrap();
    log.take(2).await;
    watcher.ask(Watch(target.clone())).await.unwrap();
    watcher.ask(Unwatch(target.clone())).await.unwrap();
    target.stop();
    target.wait_for_stop().await;
    // Signals are handled before messages: a Terminated would be seen before this ask.
    watcher.ask(Children).await.unwrap();
    let seen = log.drain_now();
    assert!(
        !seen.iter().any(|e| matches!(e, Ev::Saw(..))),
        "unexpected notification in {seen:?}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn terminated_overtakes_a_full_mailbox() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let gate = Arc::new(Notify::new());
    let watcher = system
        .spawn(
            Probe::props_with("watcher", &events, Some(gate.clone()), Vec::new())
                .mailbox(MailboxCapacity::bounded(4)),
        )
        .unwrap();
    let target = system.spawn(Probe::props("target", &events)).unwrap();
    log.take(2).await;
    watcher.ask(Watch(target.clone())).await.unwrap();
    watcher.tell(Work(0)).await.unwrap(); // blocks on the gate
    for n in 1..=4 {
        watcher.tell(Work(n)).await.unwrap();
    }
    assert!(watcher.try_tell(Work(5)).unwrap_err().is_full());
    target.stop();
    log.take(2).await; // target stopping / stopped
    gate.notify_one();
    log.expect(&[
        Ev::Handled("watcher", 0),
        Ev::Saw(target.id(), ExitReason::Stopped),
        Ev::Handled("watcher", 1),
        Ev::Handled("watcher", 2),
        Ev::Handled("watcher", 3),
        Ev::Handled("watcher", 4),
    ])
    .await;
    system.shutdown().await;
}

#[tokio::test]
async fn stop_skips_the_queue_and_dead_letters_what_is_left() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let gate = Arc::new(Notify::new());
    let actor = system
        .spawn(Probe::props_with(
            "a",
            &events,
            Some(gate.clone()),
            Vec::new(),
        ))
        .unwrap();
    log.take(1).await;
    actor.tell(Work(0)).await.unwrap();
    // Wait until the actor holds Work(0) in its handler.
    until(PATIENCE, "Work(0) in the handler", || actor.depth() == 0).await;
    for n in 1..=5 {
        actor.tell(Work(n)).await.unwrap();
    }
    actor.stop();
    gate.notify_one();
    log.expect(&[
        Ev::Handled("a", 0),
        Ev::Stopping("a"),
        Ev::Stopped("a", ExitReason::Stopped),
    ])
    .await;
    actor.wait_for_stop().await;
    assert_eq!(
        system.dead_letters().count(DeadLetterReason::DroppedAtStop),
        5
    );
    system.shutdown().await;
}

#[tokio::test]
async fn drain_and_stop_handles_everything_queued_and_refuses_newcomers() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let gate = Arc::new(Notify::new());
    let actor = system
        .spawn(Probe::props_with(
            "a",
            &events,
            Some(gate.clone()),
            Vec::new(),
        ))
        .unwrap();
    log.take(1).await;
    actor.tell(Work(0)).await.unwrap();
    for n in 1..=3 {
        actor.tell(Work(n)).await.unwrap();
    }
    actor.drain_and_stop();
    gate.notify_one();
    log.expect(&[
        Ev::Handled("a", 0),
        Ev::Handled("a", 1),
        Ev::Handled("a", 2),
        Ev::Handled("a", 3),
        Ev::Stopping("a"),
        Ev::Stopped("a", ExitReason::Stopped),
    ])
    .await;
    assert!(actor.tell(Work(9)).await.is_err());
    assert_eq!(
        system.dead_letters().count(DeadLetterReason::DroppedAtStop),
        0
    );
    system.shutdown().await;
}

#[tokio::test]
async fn kill_interrupts_a_handler_stuck_in_an_await() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let gate = Arc::new(Notify::new()); // never opened
    let actor = system
        .spawn(Probe::props_with("a", &events, Some(gate), Vec::new()).restart(Restart::Temporary))
        .unwrap();
    log.take(1).await;
    actor.tell(Work(0)).await.unwrap();
    until(PATIENCE, "Work(0) in the handler", || actor.depth() == 0).await;
    actor.kill();
    // A killed instance runs no hooks; temporary, so not restarted.
    assert_eq!(
        within(PATIENCE, actor.wait_for_stop()).await,
        ExitReason::Failed(Failure::Killed)
    );
    assert!(log.drain_now().is_empty());
    system.shutdown().await;
}

#[tokio::test]
async fn spawn_refuses_bad_and_duplicate_names() {
    let system = ActorSystem::new();
    let (events, _log) = events();
    system.spawn(Probe::props("dup", &events)).unwrap();
    assert_eq!(
        system.spawn(Probe::props("dup", &events)).unwrap_err(),
        SpawnError::NameTaken("dup".into())
    );
    for bad in ["", "a/b", "$x"] {
        assert_eq!(
            system
                .spawn(Probe::props("ok", &events).name(bad))
                .unwrap_err(),
            SpawnError::InvalidName(bad.into())
        );
    }
    let long = "x".repeat(256);
    assert!(matches!(
        system.spawn(Probe::props("ok", &events).name(long)),
        Err(SpawnError::InvalidName(_))
    ));
    system.shutdown().await;
    assert_eq!(
        system.spawn(Probe::props("late", &events)).unwrap_err(),
        SpawnError::ShuttingDown
    );
}

#[tokio::test]
async fn a_name_is_free_again_once_its_actor_has_terminated() {
    let system = ActorSystem::new();
    let (events, _log) = events();
    let first = system.spawn(Probe::props("name", &events)).unwrap();
    first.stop();
    first.wait_for_stop().await;
    let second = system.spawn(Probe::props("name", &events)).unwrap();
    assert_ne!(first.id(), second.id());
    assert_eq!(second.path(), "/user/name");
    system.shutdown().await;
}

#[tokio::test]
async fn anonymous_actors_are_named_by_id() {
    let system = ActorSystem::new();
    let actor = system
        .spawn(|| Probe {
            name: "anon",
            events: events().0,
            gate: None,
            children: Vec::new(),
        })
        .unwrap();
    assert_eq!(actor.path(), format!("/user/${}", actor.id().get()));
    system.shutdown().await;
}

/// A watch registered while a stop waits in the signal lane — both taken in one batch —
/// still hears of the termination, and only once it has happened.
#[tokio::test]
async fn a_watch_that_arrives_with_a_stop_is_told_after_the_termination() {
    struct Gated(Arc<Notify>);
    impl Actor for Gated {}
    struct Wait;
    impl Message for Wait {
        type Reply = ();
    }
    impl Handler<Wait> for Gated {
        async fn handle(&mut self, _: Wait, _: &mut Context<Self>) {
            self.0.notified().await;
        }
    }

    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system.spawn(Props::new(move || Gated(g.clone()))).unwrap();
    actor.tell(Wait).await.unwrap();
    until(PATIENCE, "Wait in the handler", || {
        actor.depth() == 0 && actor.stats().status == postbox::ActorStatus::Running
    })
    .await;
    // The handler waits on the gate, so the stop and the watch queue up together.
    actor.stop();
    let mut stopped = std::pin::pin!(actor.wait_for_stop());
    std::future::poll_fn(|cx| {
        use std::future::Future;
        assert!(
            stopped.as_mut().poll(cx).is_pending(),
            "the actor is still running"
        );
        std::task::Poll::Ready(())
    })
    .await;
    gate.notify_one();
    assert_eq!(within(PATIENCE, stopped).await, ExitReason::Stopped);
    assert!(
        actor.tell(Wait).await.is_err(),
        "a terminated actor's mailbox is closed"
    );
    system.shutdown().await;
}

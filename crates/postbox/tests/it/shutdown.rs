//! Graceful shutdown: drain, order, deadline, report.

use crate::common::{events, Events};
use postbox::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Handled(&'static str, u32),
    Stopped(&'static str),
}

struct Node {
    name: &'static str,
    events: Events<Ev>,
    children: Vec<&'static str>,
}
impl Actor for Node {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        for child in self.children.clone() {
            ctx.spawn(node(child, &self.events, Vec::new()))?;
        }
        Ok(())
    }
    async fn stopped(&mut self, _: &mut Context<Self>, reason: &ExitReason) {
        assert_eq!(reason, &ExitReason::Shutdown);
        self.events.emit(Ev::Stopped(self.name));
    }
}

fn node(name: &'static str, events: &Events<Ev>, children: Vec<&'static str>) -> Props<Node> {
    let events = events.clone();
    Props::new(move || Node {
        name,
        events: events.clone(),
        children: children.clone(),
    })
    .name(name)
}

struct Job(u32);
impl Message for Job {
    type Reply = ();
}
impl Handler<Job> for Node {
    async fn handle(&mut self, Job(n): Job, _: &mut Context<Self>) {
        tokio::task::yield_now().await;
        self.events.emit(Ev::Handled(self.name, n));
    }
}

#[tokio::test]
async fn shutdown_drains_mailboxes_and_stops_children_first_in_reverse_start_order() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let a = system.spawn(node("a", &events, vec!["a1", "a2"])).unwrap();
    let b = system.spawn(node("b", &events, Vec::new())).unwrap();
    for n in 0..3 {
        a.tell(Job(n)).await.unwrap();
        b.tell(Job(n)).await.unwrap();
    }
    let report = system.shutdown().await;
    assert!(report.completed, "{report:?}");
    assert!(report.aborted.is_empty());
    assert_eq!(report.messages_dropped, 0);
    // 4 actors + the root guardian.
    assert_eq!(report.actors_stopped, 5);

    let all = log.drain_now();
    let handled = |name| {
        all.iter()
            .filter(|e| matches!(e, Ev::Handled(n, _) if *n == name))
            .count()
    };
    assert_eq!((handled("a"), handled("b")), (3, 3), "{all:?}");
    let stops: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            Ev::Stopped(n) => Some(*n),
            _ => None,
        })
        .collect();
    // Top level in reverse start order (b before a); children before their parent, the
    // later-started child first.
    assert_eq!(stops, ["b", "a2", "a1", "a"]);
    // Every message an actor handled came before its stop.
    let pos = |e: &Ev| all.iter().position(|x| x == e).unwrap();
    assert!(pos(&Ev::Handled("a", 2)) < pos(&Ev::Stopped("a")));
    assert!(pos(&Ev::Handled("b", 2)) < pos(&Ev::Stopped("b")));
    assert_eq!(system.actor_count(), 0);
}

struct Stuck {
    gate: Arc<Notify>,
}
impl Actor for Stuck {}
impl Handler<Job> for Stuck {
    async fn handle(&mut self, _: Job, _: &mut Context<Self>) {
        self.gate.notified().await;
    }
}

#[tokio::test]
async fn actors_still_busy_at_the_deadline_are_aborted_and_reported() {
    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new()); // never opened
    let g = gate.clone();
    let stuck = system
        .spawn(Props::new(move || Stuck { gate: g.clone() }).name("stuck"))
        .unwrap();
    for n in 0..4 {
        stuck.tell(Job(n)).await.unwrap();
    }
    let report = system.shutdown_within(Duration::from_millis(100)).await;
    assert!(!report.completed);
    assert_eq!(report.actors_aborted, 1);
    assert_eq!(report.aborted, vec!["/user/stuck".to_string()]);
    assert!(report.unresponsive.is_empty(), "{report:?}");
    // The three jobs still queued behind the stuck one became dead letters.
    assert_eq!(report.messages_dropped, 3);
    assert_eq!(stuck.wait_for_stop().await, ExitReason::AlreadyTerminated);
    assert_eq!(system.actor_count(), 0);
}

#[tokio::test]
async fn shutting_down_twice_is_harmless() {
    let system = ActorSystem::new();
    let (events, _log) = events();
    system.spawn(node("a", &events, Vec::new())).unwrap();
    let (first, second) = tokio::join!(system.shutdown(), system.shutdown());
    assert!(first.completed && second.completed);
    assert!(system.is_shutting_down());
    assert_eq!(system.shutdown().await.actors_stopped, 0);
}

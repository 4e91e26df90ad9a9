//! Depth and counters read from refs and the actor table; tracing spans per message.

use crate::common::within;
use postbox::prelude::*;
use postbox::{ActorStatus, Mailbox};
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
                .mailbox(Mailbox::bounded(100)),
        )
        .unwrap();
    actor.tell(Nap(5)).await.unwrap();
    actor.tell(Hold).await.unwrap();
    for _ in 0..10 {
        actor.tell(Nap(0)).await.unwrap();
    }
    within(async {
        while actor.depth() != 10 || actor.stats().processed != 1 {
            tokio::task::yield_now().await;
        }
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
    within(async {
        while actor.stats().processed != 12 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(actor.depth(), 0);
    let counters = system.counters();
    assert_eq!(counters.actors_started, 1);
    system.shutdown().await;
    assert_eq!(system.counters().actors_stopped, 2);
}

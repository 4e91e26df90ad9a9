//! The named registry: lookup by name and type, uniqueness, automatic cleanup.

use crate::common::{until, PATIENCE};
use postbox::prelude::*;
use postbox::RegistryError;

struct Db;
impl Actor for Db {}
struct Cache;
impl Actor for Cache {}

struct Ping;
impl Message for Ping {
    type Reply = &'static str;
}
impl Handler<Ping> for Db {
    async fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> &'static str {
        "db"
    }
}

#[tokio::test]
async fn lookup_finds_the_actor_by_name_and_type() {
    let system = ActorSystem::new();
    let db = system.spawn(|| Db).unwrap();
    let registry = system.registry();
    registry.register("db", &db).unwrap();
    let found = registry.lookup::<Db>("db").expect("registered");
    assert_eq!(found, db);
    assert_eq!(found.ask(Ping).await, Ok("db"));
    assert!(registry.lookup::<Cache>("db").is_none(), "wrong type");
    assert!(registry.lookup::<Db>("nope").is_none());
    assert_eq!(registry.lookup_id("db"), Some(db.id()));
    assert_eq!(registry.names(), vec!["db".to_string()]);
    system.shutdown().await;
}

#[tokio::test]
async fn names_are_unique_among_live_actors() {
    let system = ActorSystem::new();
    let db = system.spawn(|| Db).unwrap();
    let other = system.spawn(|| Db).unwrap();
    let registry = system.registry();
    registry.register("db", &db).unwrap();
    registry.register("db", &db).unwrap(); // idempotent for the same actor
    assert_eq!(
        registry.register("db", &other),
        Err(RegistryError::NameTaken("db".into()))
    );
    registry.register("primary", &db).unwrap();
    assert_eq!(registry.len(), 2);
    assert!(registry.unregister("primary"));
    assert!(!registry.unregister("primary"));
    assert_eq!(registry.len(), 1);
    system.shutdown().await;
}

#[tokio::test]
async fn names_are_released_when_the_actor_terminates() {
    let system = ActorSystem::new();
    let db = system.spawn(|| Db).unwrap();
    let registry = system.registry();
    registry.register("db", &db).unwrap();
    registry.register("db-alias", &db).unwrap();
    db.stop();
    db.wait_for_stop().await;
    assert!(registry.lookup::<Db>("db").is_none());
    assert!(registry.is_empty());
    let next = system.spawn(|| Db).unwrap();
    registry.register("db", &next).unwrap();
    assert_eq!(registry.lookup::<Db>("db"), Some(next));
    // A terminated actor cannot be registered.
    assert_eq!(
        registry.register("ghost", &db),
        Err(RegistryError::NotRunning)
    );
    assert!(registry.lookup_id("ghost").is_none());
    system.shutdown().await;
}

#[tokio::test]
async fn names_survive_a_restart() {
    struct Fragile;
    impl Actor for Fragile {}
    struct Crash;
    impl Message for Crash {
        type Reply = ();
    }
    impl Handler<Crash> for Fragile {
        async fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
            panic!("crash (expected by the test)");
        }
    }
    let system = ActorSystem::new();
    let fragile = system.spawn(|| Fragile).unwrap();
    system.registry().register("fragile", &fragile).unwrap();
    fragile.tell(Crash).await.unwrap();
    // Wait for the restart to have happened before looking.
    until(PATIENCE, "the restart", || system.counters().restarts >= 1).await;
    assert_eq!(fragile.stats().restarts, 1);
    // Same id after the restart, still registered.
    let found = system.registry().lookup::<Fragile>("fragile").unwrap();
    assert_eq!(found.id(), fragile.id());
    system.shutdown().await;
}

/// Whoever learns that an actor has stopped — even from a `wait_for_stop` issued while it was
/// stopping — finds it gone from the registry and the actor table: a name freed by a stop can
/// be registered again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_actor_is_unregistered_before_anyone_hears_it_stopped() {
    let system = ActorSystem::new();
    for round in 0..500 {
        let db = system.spawn(|| Db).unwrap();
        system.registry().register("db", &db).unwrap();
        db.stop();
        // Race the waiter against the termination: it may register before or after the
        // actor's signal lane closes.
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        let reason = db.wait_for_stop().await;
        assert!(
            system.registry().lookup_id("db").is_none(),
            "round {round}: still registered ({reason:?}, {:?}, alive {})",
            system.actor(db.id()).map(|info| info.stats.status),
            db.is_alive()
        );
        assert!(
            system.actor(db.id()).is_none(),
            "round {round}: still listed"
        );
    }
}

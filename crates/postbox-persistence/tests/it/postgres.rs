//! The PostgreSQL store against a real server the test starts itself (Debian's
//! `postgresql`, installed if missing, `initdb` into a temporary directory as an
//! unprivileged user, a free loopback port).

use crate::support::*;
use postbox::prelude::*;
use postbox_persistence::prelude::*;
use postbox_persistence::tck::postgres::PgServer;
use postbox_persistence::{tck, PostgresOptions, PostgresStore, StoreError};
use postbox_testkit::within;
use std::sync::Arc;
use std::time::Duration;

async fn start() -> PgServer {
    tokio::task::spawn_blocking(PgServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("could not start PostgreSQL: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite_and_admits_one_writer_across_nodes() {
    let server = start().await;
    let store = Arc::new(PostgresStore::connect(&server.url()).await.unwrap());
    tck::conformance(store.clone()).await;

    // Two stores, as two nodes would have, on one database.
    let other = Arc::new(PostgresStore::connect(&server.url()).await.unwrap());
    let (pa, pb) = (
        Persistence::from_parts(store.clone(), store.clone(), store.clone()),
        Persistence::from_parts(other.clone(), other.clone(), other.clone()),
    );
    let system = ActorSystem::new();
    let on_a = system
        .spawn(counter_props_with(&pa, "c|pg", |j| j.snapshot_every(3)).name("a"))
        .unwrap();
    assert_eq!(on_a.ask(AddAll(vec![1, 2, 3])).await.unwrap(), Ok(6));
    let on_b = system.spawn(counter_props(&pb, "c|pg").name("b")).unwrap();
    let (recovery, _) = on_b.ask(LastRecovery).await.unwrap();
    assert_eq!(
        recovery.unwrap().snapshot_seq,
        Some(3),
        "b recovers a's snapshot"
    );
    assert_eq!(on_b.ask(Add(4)).await.unwrap(), Ok(10));
    assert!(matches!(
        on_a.ask(Add(5)).await.unwrap(),
        Err(PersistError::Conflict { .. })
    ));
    assert_eq!(
        stored_amounts(&pa, "c|pg").await,
        vec![(1, 1), (2, 2), (3, 3), (4, 4)]
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_persists_and_up_again_serves_them() {
    let mut server = start().await;
    let options = PostgresOptions::default().connect_timeout(Duration::from_secs(2));
    let store = Arc::new(
        PostgresStore::connect_with(&server.url(), options)
            .await
            .unwrap(),
    );
    let persistence = Persistence::from_parts(store.clone(), store.clone(), store.clone());
    let system = ActorSystem::new();
    let counter = supervised_counter(&system, &persistence, "c|pgdown").await;
    assert_eq!(counter.ask(Add(1)).await.unwrap(), Ok(1));

    let mut server = tokio::task::spawn_blocking(move || {
        server.stop().unwrap();
        server
    })
    .await
    .unwrap();
    match counter.ask(Add(2)).await.unwrap() {
        Err(PersistError::Store {
            error: StoreError::Unavailable(_),
            ..
        }) => {}
        other => panic!("a write with the database down must fail, got {other:?}"),
    }
    let server = tokio::task::spawn_blocking(move || {
        server.resume().unwrap();
        server
    })
    .await
    .unwrap();
    // The actor failed, and its restarts fail recovery until the server is back.
    let (tally, seq) = within(Duration::from_secs(20), counter.ask(Get))
        .await
        .unwrap();
    assert_eq!(
        (tally.amounts, seq),
        (vec![1], 1),
        "the failed write was not applied"
    );
    assert_eq!(
        counter.ask(Add(3)).await.unwrap(),
        Ok(4),
        "writes work again"
    );
    assert_eq!(
        stored_amounts(&persistence, "c|pgdown").await,
        vec![(1, 1), (2, 3)]
    );
    system.shutdown().await;
    drop(server);
}

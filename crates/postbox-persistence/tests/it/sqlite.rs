//! The embedded SQLite store: the conformance suite, durability across reopening, a torn
//! WAL, a full disk, two stores on one file, and group commit under many actors.

use crate::support::*;
use postbox::prelude::*;
use postbox_persistence::prelude::*;
use postbox_persistence::{tck, Journal, Record, SqliteOptions, SqliteStore, StoreError};
use postbox_testkit::{within, PATIENCE};
use std::path::Path;
use std::sync::Arc;

async fn open(path: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(path).await.unwrap())
}

fn over(store: &Arc<SqliteStore>) -> Persistence {
    Persistence::from_parts(store.clone(), store.clone(), store.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    tck::conformance(open(&dir.path().join("tck.db")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_others_events_and_admit_one_writer() {
    // Two stores on one file behave as two processes would: separate connections and
    // writers, SQLite's file locks between them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let (a, b) = (open(&path).await, open(&path).await);
    let (pa, pb) = (over(&a), over(&b));
    let system = ActorSystem::new();
    let on_a = system
        .spawn(counter_props(&pa, "c|shared").name("on-a"))
        .unwrap();
    assert_eq!(on_a.ask(AddAll(vec![1, 2])).await.unwrap(), Ok(3));
    let on_b = system
        .spawn(counter_props(&pb, "c|shared").name("on-b"))
        .unwrap();
    assert_eq!(
        on_b.ask(Get).await.unwrap().1,
        2,
        "b reads what a committed"
    );
    assert_eq!(on_b.ask(Add(3)).await.unwrap(), Ok(6));
    let a_stopped = watch_stop(&on_a).await;
    assert!(matches!(
        on_a.ask(Add(4)).await.unwrap(),
        Err(PersistError::Conflict { .. })
    ));
    assert_eq!(a_stopped.await, ExitReason::Normal);
    assert_eq!(
        stored_amounts(&pa, "c|shared").await,
        vec![(1, 1), (2, 2), (3, 3)]
    );
    tck::conformance(b.clone()).await; // and the suite holds with a second store open
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_file_has_every_acknowledged_event_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    {
        let persistence = Persistence::sqlite(&path).await.unwrap();
        let system = ActorSystem::new();
        let counter = system
            .spawn(counter_props_with(&persistence, "c|reopen", |j| {
                j.snapshot_every(4)
            }))
            .unwrap();
        for n in 1..=10 {
            counter.ask(Add(n)).await.unwrap().unwrap();
        }
        system.shutdown().await;
    }
    let persistence = Persistence::sqlite(&path).await.unwrap();
    let system = ActorSystem::new();
    let counter = system
        .spawn(counter_props(&persistence, "c|reopen"))
        .unwrap();
    let (recovery, _) = counter.ask(LastRecovery).await.unwrap();
    let recovery = recovery.unwrap();
    assert_eq!(
        (recovery.snapshot_seq, recovery.events_replayed),
        (Some(8), 2)
    );
    assert_eq!(counter.ask(Get).await.unwrap().0.total, 55);
    system.shutdown().await;
}

/// Copies the database and its WAL as a crash at this instant would leave them.
fn crash_image(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let wal = path.with_extension("db-wal");
    (std::fs::read(path).unwrap(), std::fs::read(wal).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_torn_by_a_crash_mid_write_opens_with_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.db");
    let store = open(&path).await;
    let persistence = over(&store);
    let system = ActorSystem::new();
    let counter = system.spawn(counter_props(&persistence, "c|torn")).unwrap();
    for n in 1..=20 {
        counter.ask(Add(n)).await.unwrap().unwrap(); // acknowledged
    }
    let (db, acknowledged_wal) = crash_image(&path);
    // The next write's frames, which a crash could cut anywhere.
    counter
        .ask(AddAll((21..=40).collect()))
        .await
        .unwrap()
        .unwrap();
    let (_, longer_wal) = crash_image(&path);
    assert!(longer_wal.len() > acknowledged_wal.len() + 100);
    system.shutdown().await;

    let cut_points = [
        acknowledged_wal.len() + 1,
        acknowledged_wal.len() + 33, // inside the first frame header
        (acknowledged_wal.len() + longer_wal.len()) / 2,
        longer_wal.len() - 1, // all but the last byte of the commit frame
    ];
    for (i, cut) in cut_points.into_iter().enumerate() {
        let crashed = dir.path().join(format!("crashed-{i}.db"));
        std::fs::write(&crashed, &db).unwrap();
        std::fs::write(crashed.with_extension("db-wal"), &longer_wal[..cut]).unwrap();
        let persistence = Persistence::sqlite(&crashed).await.unwrap();
        let amounts = stored_amounts(&persistence, "c|torn").await;
        assert_eq!(
            amounts,
            (1..=20).map(|n| (n, n)).collect::<Vec<_>>(),
            "cut at byte {cut}: exactly the acknowledged events"
        );
        // And it is a working store: the next write takes the next number.
        let system = ActorSystem::new();
        let counter = system.spawn(counter_props(&persistence, "c|torn")).unwrap();
        assert_eq!(counter.ask(Add(100)).await.unwrap(), Ok(310));
        system.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_writes_and_accepts_them_again_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open_with(
            dir.path().join("full.db"),
            SqliteOptions::default().max_size(Some(256 * 1024)),
        )
        .await
        .unwrap(),
    );
    let persistence = over(&store);
    let system = ActorSystem::new();
    let counter = supervised_counter(&system, &persistence, "c|full").await;
    let mut acknowledged = Vec::new();
    let full = loop {
        // About 25 KiB per write: the cap is reached within a dozen.
        let amounts = vec![7u64; 512];
        match counter.ask(AddAll(amounts)).await.unwrap() {
            Ok(_) => acknowledged.push(acknowledged.len()),
            Err(e) => break e,
        }
        assert!(acknowledged.len() < 1_000, "the cap never bit");
    };
    match full {
        PersistError::Store {
            error: StoreError::Full(_),
            ..
        } => {}
        other => panic!("expected the store to be full, got {other:?}"),
    }
    store.set_max_size(None);
    let (tally, seq) = within(PATIENCE, counter.ask(Get)).await.unwrap();
    assert_eq!(
        seq as usize,
        acknowledged.len() * 512,
        "every acknowledged event, nothing of the refused one"
    );
    assert_eq!(tally.total, 7 * seq);
    assert!(
        counter.ask(Add(1)).await.unwrap().is_ok(),
        "writes work again"
    );
    let full_errors = persistence
        .stats()
        .errors
        .iter()
        .find(|(kind, _)| kind.as_str() == "full")
        .map(|(_, n)| *n);
    assert_eq!(full_errors, Some(1));
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_actors_persisting_at_once_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let persistence = Persistence::sqlite(dir.path().join("group.db"))
        .await
        .unwrap();
    let system = ActorSystem::new();
    let counters: Vec<ActorRef<Counter>> = (0..100)
        .map(|i| {
            system
                .spawn(counter_props(&persistence, &format!("c|g{i}")))
                .unwrap()
        })
        .collect();
    let mut writers = tokio::task::JoinSet::new();
    for counter in &counters {
        let counter = counter.clone();
        writers.spawn(async move {
            for n in 1..=10 {
                counter.ask(Add(n)).await.unwrap().unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    for (i, counter) in counters.iter().enumerate() {
        assert_eq!(counter.ask(Get).await.unwrap().1, 10, "counter {i}");
    }
    let stats = persistence.stats();
    assert_eq!(stats.events_written, 1_000);
    let commit = stats.commit.unwrap();
    assert_eq!(commit.batch_size.sum, 1_000.0);
    assert!(
        commit.commits < 1_000,
        "1000 appends from 100 actors took {} commits: none was shared",
        commit.commits
    );
    system.shutdown().await;
}

/// The writer hands a commit's answers to a task on the multi-thread runtime that opened the
/// store; once that runtime is gone, the writer answers itself: a store that outlives the
/// runtime it was opened in keeps answering (here, on a current-thread runtime, whose tasks
/// would only run while something blocks on it).
#[test]
fn a_store_keeps_answering_after_the_runtime_that_opened_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outlived.db");
    let id = PersistenceId::of("c", "outlived");
    let event = || vec![Record::new("test.event", 1, vec![7])];
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = first.block_on(open(&path));
    first
        .block_on(within(PATIENCE, store.append(&id, 0, event())))
        .unwrap();
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        within(PATIENCE, store.append(&id, 1, event()))
            .await
            .unwrap();
        assert_eq!(within(PATIENCE, store.highest_seq(&id)).await.unwrap(), 2);
    });
}

//! The store conformance suite ("TCK", after Akka's persistence TCK) and a PostgreSQL
//! server for tests. Behind the `tck` feature: for this crate's tests, the benches, and
//! anyone who writes a store of their own.
//!
//! [`conformance`] runs every case of the [store contract](crate::store) against one store
//! and panics, naming the case, at the first broken promise. Every case writes under ids of
//! its own (a fresh random prefix per run), so a store shared with other data — a PostgreSQL
//! database, a SQLite file — can be checked in place.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use postbox_persistence::{tck, MemoryStore};
//! use std::sync::Arc;
//!
//! tck::conformance(Arc::new(MemoryStore::new())).await;
//! # }
//! ```

// A test kit reports a broken promise by panicking, like a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod postgres;

use crate::{PersistenceId, Record, Store, StoreError, StoredEvent};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every case of the conformance suite, by name, in the order [`conformance`] runs them.
pub const CASES: [&str; 11] = [
    "an_unknown_id_has_nothing",
    "appends_replay_in_order_with_their_records",
    "replay_honours_its_range_and_limit",
    "a_stale_or_skipping_writer_conflicts_and_stores_nothing",
    "one_of_many_concurrent_writers_wins",
    "a_batch_is_stored_whole_or_not_at_all",
    "ids_are_independent",
    "deleting_events_keeps_the_head",
    "snapshots_are_kept_by_sequence_number",
    "a_durable_state_is_guarded_by_its_revision",
    "many_writers_at_once_all_land",
];

/// Runs every case of the suite against `store`; panics with the case's name at the first
/// failure. Takes a few hundred writes.
pub async fn conformance(store: Arc<dyn Store>) {
    let run = fresh_prefix();
    for case in CASES {
        let prefix = format!("{run}-{case}");
        let s = store.clone();
        let outcome = tokio::spawn(async move { run_case(case, &s, &prefix).await }).await;
        if let Err(e) = outcome {
            let why = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_else(|| "cancelled".into());
            panic!("conformance case {case} failed: {why}");
        }
    }
}

/// Runs the case named `case` (one of [`CASES`]) with ids under `prefix`.
pub async fn run_case(case: &str, store: &Arc<dyn Store>, prefix: &str) {
    let id = |name: &str| PersistenceId::new(format!("{prefix}|{name}"));
    match case {
        "an_unknown_id_has_nothing" => unknown_id(store, id("nobody")).await,
        "appends_replay_in_order_with_their_records" => appends_replay(store, id("a")).await,
        "replay_honours_its_range_and_limit" => replay_range(store, id("r")).await,
        "a_stale_or_skipping_writer_conflicts_and_stores_nothing" => {
            stale_writer(store, id("s")).await
        }
        "one_of_many_concurrent_writers_wins" => concurrent_writers(store, id("c")).await,
        "a_batch_is_stored_whole_or_not_at_all" => atomic_batches(store, id("b")).await,
        "ids_are_independent" => independent_ids(store, prefix).await,
        "deleting_events_keeps_the_head" => deletion(store, id("d")).await,
        "snapshots_are_kept_by_sequence_number" => snapshots(store, id("snap")).await,
        "a_durable_state_is_guarded_by_its_revision" => durable_state(store, id("st")).await,
        "many_writers_at_once_all_land" => many_writers(store, prefix).await,
        other => panic!("no conformance case named {other}"),
    }
}

/// A prefix no earlier run used: the process id, the time and a counter.
pub fn fresh_prefix() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "tck-{}-{nanos}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Relaxed)
    )
}

fn event(n: u64) -> Record {
    Record::new("tck.event", 1, n.to_be_bytes().to_vec())
}

fn payloads(events: &[StoredEvent]) -> Vec<(u64, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.seq, e.record.payload.clone()))
        .collect()
}

async fn all(store: &Arc<dyn Store>, id: &PersistenceId) -> Vec<StoredEvent> {
    store.replay(id, 1, u64::MAX, usize::MAX).await.unwrap()
}

fn is_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

async fn unknown_id(store: &Arc<dyn Store>, id: PersistenceId) {
    assert_eq!(store.highest_seq(&id).await.unwrap(), 0);
    assert!(all(store, &id).await.is_empty());
    assert_eq!(store.latest_snapshot(&id).await.unwrap(), None);
    assert!(store.snapshot_seqs(&id).await.unwrap().is_empty());
    assert_eq!(store.load_state(&id).await.unwrap(), None);
    // An empty append is a no-op, and so is deleting nothing.
    store.append(&id, 0, Vec::new()).await.unwrap();
    store.delete_events(&id, 10).await.unwrap();
    assert_eq!(store.highest_seq(&id).await.unwrap(), 0);
    // Invalid ids are refused, not stored.
    let empty = PersistenceId::new("");
    match store.append(&empty, 0, vec![event(1)]).await {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("an empty id must be refused as invalid, got {other:?}"),
    }
}

async fn appends_replay(store: &Arc<dyn Store>, id: PersistenceId) {
    let big = vec![7u8; 64 * 1024];
    let first = vec![
        Record::new("tck.small", 1, vec![1, 2, 3]),
        Record::new("tck.empty", 2, Vec::new()),
        Record::new("tck.big", 3, big.clone()),
    ];
    store.append(&id, 0, first.clone()).await.unwrap();
    let second = vec![event(4), event(5)];
    store.append(&id, 3, second.clone()).await.unwrap();
    let stored = all(store, &id).await;
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let records: Vec<Record> = stored.into_iter().map(|e| e.record).collect();
    assert_eq!(
        records,
        [first, second].concat(),
        "records come back as written"
    );
    assert_eq!(store.highest_seq(&id).await.unwrap(), 5);
}

async fn replay_range(store: &Arc<dyn Store>, id: PersistenceId) {
    store
        .append(&id, 0, (1..=10).map(event).collect())
        .await
        .unwrap();
    let seqs = |events: Vec<StoredEvent>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.replay(&id, 1, 10, 3).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(
        seqs(store.replay(&id, 4, 6, 100).await.unwrap()),
        vec![4, 5, 6]
    );
    assert_eq!(
        seqs(store.replay(&id, 9, u64::MAX, 100).await.unwrap()),
        vec![9, 10]
    );
    assert!(store.replay(&id, 11, 20, 100).await.unwrap().is_empty());
    assert!(store.replay(&id, 6, 4, 100).await.unwrap().is_empty());
    assert!(store.replay(&id, 1, 10, 0).await.unwrap().is_empty());
}

async fn stale_writer(store: &Arc<dyn Store>, id: PersistenceId) {
    store.append(&id, 0, vec![event(1)]).await.unwrap();
    is_conflict(
        store.append(&id, 0, vec![event(100)]).await,
        "a second writer of seq 1",
    );
    is_conflict(
        store.append(&id, 5, vec![event(100)]).await,
        "a writer that skips numbers",
    );
    store
        .append(&id, 1, vec![event(2), event(3)])
        .await
        .unwrap();
    is_conflict(
        store.append(&id, 1, vec![event(100)]).await,
        "a writer that fell behind",
    );
    assert_eq!(
        payloads(&all(store, &id).await),
        vec![
            (1, event(1).payload),
            (2, event(2).payload),
            (3, event(3).payload)
        ],
        "refused writes leave no trace"
    );
}

async fn concurrent_writers(store: &Arc<dyn Store>, id: PersistenceId) {
    for round in 0..3u64 {
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..8u64 {
            let store = store.clone();
            let id = id.clone();
            writers.spawn(async move {
                let payload = round * 100 + writer;
                (
                    payload,
                    store.append(&id, round, vec![event(payload)]).await,
                )
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = writers.join_next().await {
            let (payload, outcome) = joined.unwrap();
            match outcome {
                Ok(()) => winners.push(payload),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("a concurrent writer failed with {e}, not a conflict"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let stored = all(store, &id).await;
        assert_eq!(stored.len() as u64, round + 1);
        assert_eq!(
            stored.last().map(|e| e.record.payload.clone()),
            Some(event(winners[0]).payload),
            "the winner's event is the one stored"
        );
    }
}

async fn atomic_batches(store: &Arc<dyn Store>, id: PersistenceId) {
    store.append(&id, 0, vec![event(1)]).await.unwrap();
    is_conflict(
        store
            .append(&id, 0, vec![event(10), event(11), event(12)])
            .await,
        "a conflicting batch",
    );
    assert_eq!(all(store, &id).await.len(), 1, "no part of it was stored");
    store
        .append(&id, 1, (2..=201).map(event).collect())
        .await
        .unwrap();
    let stored = all(store, &id).await;
    assert_eq!(stored.len(), 201);
    assert!(stored.iter().zip(1..).all(|(e, seq)| e.seq == seq));
}

async fn independent_ids(store: &Arc<dyn Store>, prefix: &str) {
    let ids: Vec<PersistenceId> = ["x", "x|1", "x|", "X", "x 1"]
        .iter()
        .map(|name| PersistenceId::new(format!("{prefix}|{name}")))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let events: Vec<Record> = (0..=n as u64).map(|i| event(n as u64 * 10 + i)).collect();
        store.append(id, 0, events).await.unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        let stored = all(store, id).await;
        assert_eq!(stored.len(), n + 1, "{id} holds only its own events");
        assert_eq!(stored[0].record.payload, event(n as u64 * 10).payload);
        assert_eq!(store.highest_seq(id).await.unwrap(), n as u64 + 1);
    }
}

async fn deletion(store: &Arc<dyn Store>, id: PersistenceId) {
    store
        .append(&id, 0, (1..=5).map(event).collect())
        .await
        .unwrap();
    store.delete_events(&id, 3).await.unwrap();
    let seqs: Vec<u64> = all(store, &id).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(store.highest_seq(&id).await.unwrap(), 5, "the head stays");
    is_conflict(
        store.append(&id, 3, vec![event(100)]).await,
        "reusing a deleted number",
    );
    store.append(&id, 5, vec![event(6)]).await.unwrap();
    store.delete_events(&id, 1_000).await.unwrap();
    assert!(all(store, &id).await.is_empty());
    assert_eq!(store.highest_seq(&id).await.unwrap(), 6);
    is_conflict(
        store.append(&id, 0, vec![event(100)]).await,
        "starting over an emptied id",
    );
    store.append(&id, 6, vec![event(7)]).await.unwrap();
    assert_eq!(
        payloads(&all(store, &id).await),
        vec![(7, event(7).payload)]
    );
}

async fn snapshots(store: &Arc<dyn Store>, id: PersistenceId) {
    let state = |n: u8| Record::new("tck.state", 1, vec![n; 3]);
    for seq in [3, 7, 5] {
        store
            .save_snapshot(&id, seq, state(seq as u8))
            .await
            .unwrap();
    }
    let latest = store.latest_snapshot(&id).await.unwrap().unwrap();
    assert_eq!((latest.seq, latest.record), (7, state(7)));
    assert_eq!(store.snapshot_seqs(&id).await.unwrap(), vec![3, 5, 7]);
    store.save_snapshot(&id, 7, state(70)).await.unwrap();
    let latest = store.latest_snapshot(&id).await.unwrap().unwrap();
    assert_eq!(
        latest.record,
        state(70),
        "a snapshot at the same seq replaces"
    );
    store.delete_snapshots(&id, 5).await.unwrap();
    assert_eq!(store.snapshot_seqs(&id).await.unwrap(), vec![7]);
    store.delete_snapshots(&id, 7).await.unwrap();
    assert_eq!(store.latest_snapshot(&id).await.unwrap(), None);
}

async fn durable_state(store: &Arc<dyn Store>, id: PersistenceId) {
    let state = |n: u8| Record::new("tck.state", 1, vec![n]);
    assert_eq!(store.load_state(&id).await.unwrap(), None);
    store.save_state(&id, 0, state(1)).await.unwrap();
    let loaded = store.load_state(&id).await.unwrap().unwrap();
    assert_eq!((loaded.revision, loaded.record), (1, Some(state(1))));
    is_conflict(store.save_state(&id, 0, state(9)).await, "a second creator");
    store.save_state(&id, 1, state(2)).await.unwrap();
    is_conflict(store.delete_state(&id, 1).await, "a stale delete");
    store.delete_state(&id, 2).await.unwrap();
    let loaded = store.load_state(&id).await.unwrap().unwrap();
    assert_eq!((loaded.revision, loaded.record), (3, None), "a tombstone");
    is_conflict(
        store.save_state(&id, 0, state(9)).await,
        "resurrecting from scratch",
    );
    is_conflict(store.save_state(&id, 2, state(9)).await, "a stale save");
    store.save_state(&id, 3, state(4)).await.unwrap();
    let loaded = store.load_state(&id).await.unwrap().unwrap();
    assert_eq!((loaded.revision, loaded.record), (4, Some(state(4))));
}

async fn many_writers(store: &Arc<dyn Store>, prefix: &str) {
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..64u64 {
        let store = store.clone();
        let id = PersistenceId::new(format!("{prefix}|w{writer}"));
        writers.spawn(async move {
            for seq in 0..10u64 {
                store
                    .append(&id, seq, vec![event(writer * 1000 + seq)])
                    .await
                    .unwrap();
            }
            id
        });
    }
    while let Some(joined) = writers.join_next().await {
        let id = joined.unwrap();
        let stored = all(store, &id).await;
        assert_eq!(stored.len(), 10, "{id} has all its events");
        assert_eq!(store.highest_seq(&id).await.unwrap(), 10);
    }
}

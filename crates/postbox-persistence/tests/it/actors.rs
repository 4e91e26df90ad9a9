//! Event-sourced actors: recovery, snapshots, restarts, single writer, schema evolution and
//! store failures, on the in-memory store (the SQLite and PostgreSQL modules repeat the
//! store-dependent ones on real stores).

use crate::support::*;
use async_trait::async_trait;
use postbox::prelude::*;
use postbox::{AskError, Failure};
use postbox_persistence::codec;
use postbox_persistence::prelude::*;
use postbox_persistence::{
    DecodeError, DurableStateStore, Journal, MemoryStore, Record, SnapshotStore, StoreError,
    Stored, StoredEvent, StoredSnapshot, StoredState,
};
use postbox_testkit::{within, PATIENCE};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};

#[tokio::test]
async fn the_memory_store_passes_the_conformance_suite() {
    postbox_persistence::tck::conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn an_acknowledged_event_survives_the_actor_and_is_recovered_in_order() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let counter = system.spawn(counter_props(&persistence, "c|1")).unwrap();
    for n in [1, 2, 3] {
        counter.ask(Add(n)).await.unwrap().unwrap();
    }
    counter.stop();
    counter.wait_for_stop().await;

    let again = system.spawn(counter_props(&persistence, "c|1")).unwrap();
    let (tally, seq) = again.ask(Get).await.unwrap();
    assert_eq!(tally.amounts, vec![1, 2, 3]);
    assert_eq!(seq, 3);
    let (recovery, _) = again.ask(LastRecovery).await.unwrap();
    let recovery = recovery.unwrap();
    assert_eq!(
        recovery.snapshot_seq, None,
        "no snapshot: all events replayed"
    );
    assert_eq!(recovery.events_replayed, 3);
    assert_eq!(again.ask(Add(4)).await.unwrap(), Ok(10));
    assert_eq!(
        stored_amounts(&persistence, "c|1").await,
        vec![(1, 1), (2, 2), (3, 3), (4, 4)]
    );
    system.shutdown().await;
}

#[tokio::test]
async fn recovery_starts_from_the_latest_snapshot_and_retention_keeps_the_last_two() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let policy = SnapshotPolicy::on_demand()
        .every(5)
        .keep(2)
        .delete_events(true);
    let spawn = || counter_props_with(&persistence, "c|snap", move |j| j.snapshot_policy(policy));
    let counter = system.spawn(spawn()).unwrap();
    for n in 1..=12 {
        counter.ask(Add(n)).await.unwrap().unwrap();
    }
    counter.stop();
    counter.wait_for_stop().await;

    let id = PersistenceId::new("c|snap");
    assert_eq!(
        persistence
            .snapshot_store()
            .snapshot_seqs(&id)
            .await
            .unwrap(),
        vec![5, 10],
        "snapshots every 5 events, the last two kept"
    );
    let first_left: Vec<u64> = stored_amounts(&persistence, "c|snap")
        .await
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(
        first_left,
        (6..=12).collect::<Vec<_>>(),
        "events up to the oldest kept snapshot are deleted"
    );

    let again = system.spawn(spawn()).unwrap();
    let (recovery, _) = again.ask(LastRecovery).await.unwrap();
    let recovery = recovery.unwrap();
    assert_eq!(recovery.snapshot_seq, Some(10));
    assert_eq!(recovery.events_replayed, 2);
    let (tally, seq) = again.ask(Get).await.unwrap();
    assert_eq!(tally.total, (1..=12).sum::<u64>());
    assert_eq!(tally.amounts, (1..=12).collect::<Vec<_>>());
    assert_eq!(seq, 12);
    system.shutdown().await;
}

#[tokio::test]
async fn an_on_demand_snapshot_is_where_the_next_recovery_starts() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let counter = system
        .spawn(counter_props(&persistence, "c|demand"))
        .unwrap();
    counter.ask(AddAll(vec![1, 2, 3])).await.unwrap().unwrap();
    counter.ask(TakeSnapshot).await.unwrap().unwrap();
    counter.ask(Add(4)).await.unwrap().unwrap();
    counter.stop();
    counter.wait_for_stop().await;
    let again = system
        .spawn(counter_props(&persistence, "c|demand"))
        .unwrap();
    let (recovery, _) = again.ask(LastRecovery).await.unwrap();
    assert_eq!(recovery.unwrap().snapshot_seq, Some(3));
    assert_eq!(recovery.unwrap().events_replayed, 1);
    assert_eq!(again.ask(Get).await.unwrap().0.total, 10);
    system.shutdown().await;
}

#[tokio::test]
async fn persist_all_stores_its_events_under_consecutive_numbers_and_applies_them_in_order() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let counter = system.spawn(counter_props(&persistence, "c|all")).unwrap();
    assert_eq!(counter.ask(AddAll(vec![5, 6, 7])).await.unwrap(), Ok(18));
    assert_eq!(counter.ask(AddAll(Vec::new())).await.unwrap(), Ok(18));
    let (tally, seq) = counter.ask(Get).await.unwrap();
    assert_eq!((tally.amounts, seq), (vec![5, 6, 7], 3));
    assert_eq!(
        stored_amounts(&persistence, "c|all").await,
        vec![(1, 5), (2, 6), (3, 7)]
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_handler_panic_restarts_the_actor_and_the_new_instance_recovers() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let counter = supervised_counter(&system, &persistence, "c|panic").await;
    counter.ask(Add(1)).await.unwrap().unwrap();
    counter.ask(Add(2)).await.unwrap().unwrap();
    assert_eq!(counter.ask(Panic).await, Err(AskError::Panicked));
    let (tally, _) = within(PATIENCE, counter.ask(Get)).await.unwrap();
    assert_eq!(
        tally.amounts,
        vec![1, 2],
        "the new instance recovered the events"
    );
    let (recovery, _) = counter.ask(LastRecovery).await.unwrap();
    assert_eq!(
        recovery.unwrap().events_replayed,
        2,
        "its state came from the journal, not from the failed instance"
    );
    assert_eq!(counter.ask(Add(3)).await.unwrap(), Ok(6));
    system.shutdown().await;
}

/// A memory store whose replays wait at a gate until the test opens it.
struct Gated {
    inner: MemoryStore,
    gate: Semaphore,
    waiting: Notify,
}

#[async_trait]
impl Journal for Gated {
    async fn append(
        &self,
        id: &PersistenceId,
        expected: u64,
        events: Vec<Record>,
    ) -> Result<(), StoreError> {
        self.inner.append(id, expected, events).await
    }
    async fn replay(
        &self,
        id: &PersistenceId,
        from: u64,
        to: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.waiting.notify_one();
        let _open = self.gate.acquire().await;
        self.inner.replay(id, from, to, max).await
    }
    async fn highest_seq(&self, id: &PersistenceId) -> Result<u64, StoreError> {
        self.inner.highest_seq(id).await
    }
    async fn delete_events(&self, id: &PersistenceId, up_to: u64) -> Result<(), StoreError> {
        self.inner.delete_events(id, up_to).await
    }
}

#[async_trait]
impl SnapshotStore for Gated {
    async fn save_snapshot(
        &self,
        id: &PersistenceId,
        seq: u64,
        s: Record,
    ) -> Result<(), StoreError> {
        self.inner.save_snapshot(id, seq, s).await
    }
    async fn latest_snapshot(
        &self,
        id: &PersistenceId,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        self.inner.latest_snapshot(id).await
    }
    async fn snapshot_seqs(&self, id: &PersistenceId) -> Result<Vec<u64>, StoreError> {
        self.inner.snapshot_seqs(id).await
    }
    async fn delete_snapshots(&self, id: &PersistenceId, up_to: u64) -> Result<(), StoreError> {
        self.inner.delete_snapshots(id, up_to).await
    }
}

#[async_trait]
impl DurableStateStore for Gated {
    async fn load_state(&self, id: &PersistenceId) -> Result<Option<StoredState>, StoreError> {
        self.inner.load_state(id).await
    }
    async fn save_state(
        &self,
        id: &PersistenceId,
        expected: u64,
        s: Record,
    ) -> Result<(), StoreError> {
        self.inner.save_state(id, expected, s).await
    }
    async fn delete_state(&self, id: &PersistenceId, expected: u64) -> Result<(), StoreError> {
        self.inner.delete_state(id, expected).await
    }
}

#[tokio::test]
async fn messages_sent_during_recovery_wait_in_the_mailbox_in_order() {
    let system = ActorSystem::new();
    let gated = Arc::new(Gated {
        inner: MemoryStore::new(),
        gate: Semaphore::new(0),
        waiting: Notify::new(),
    });
    let persistence = Persistence::from_parts(gated.clone(), gated.clone(), gated.clone());
    let id = PersistenceId::new("c|gate");
    let earlier: Vec<Record> = [10, 20]
        .iter()
        .map(|n| Record::encode(&CounterEvent::Added(*n)).unwrap())
        .collect();
    gated.inner.append(&id, 0, earlier).await.unwrap();

    let counter = system.spawn(counter_props(&persistence, "c|gate")).unwrap();
    within(PATIENCE, gated.waiting.notified()).await; // recovery is now stuck at the gate
    for n in 1..=5 {
        counter.tell(Add(n)).await.unwrap();
    }
    assert_eq!(
        counter.depth(),
        5,
        "nothing is handled before recovery completes"
    );
    let (first, _) = tokio::join!(counter.ask(Get), async { gated.gate.add_permits(1_000) });
    let (tally, seq) = first.unwrap();
    assert_eq!(
        tally.amounts,
        vec![10, 20, 1, 2, 3, 4, 5],
        "the recovered events first, then the waiting messages in the order they were sent"
    );
    assert_eq!(seq, 7);
    system.shutdown().await;
}

#[tokio::test]
async fn a_failed_persist_fails_the_actor_applies_nothing_and_works_again_when_the_store_returns() {
    let system = ActorSystem::new();
    let store = Arc::new(MemoryStore::new());
    let persistence = Persistence::from_parts(store.clone(), store.clone(), store.clone());
    let counter = supervised_counter(&system, &persistence, "c|down").await;
    assert_eq!(counter.ask(Add(1)).await.unwrap(), Ok(1));

    store.set_available(false);
    match counter.ask(Add(5)).await.unwrap() {
        Err(PersistError::Store { id, seq, error }) => {
            assert_eq!(id.as_str(), "c|down");
            assert_eq!(seq, 2);
            assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
        }
        other => panic!("the asker must learn the write failed, got {other:?}"),
    }
    // The actor failed; while the store is down its restarts fail recovery, with backoff.
    store.set_available(true);
    let (tally, seq) = within(PATIENCE, counter.ask(Get)).await.unwrap();
    assert_eq!(
        (tally.amounts, seq),
        (vec![1], 1),
        "the failed event was not applied"
    );
    let (_, restarts) = counter.ask(LastRecovery).await.unwrap();
    assert!(restarts >= 1, "the failed persist restarted the actor");
    assert_eq!(counter.ask(Add(2)).await.unwrap(), Ok(3));
    assert_eq!(
        stored_amounts(&persistence, "c|down").await,
        vec![(1, 1), (2, 2)]
    );
    let stats = persistence.stats();
    assert!(stats
        .errors
        .iter()
        .any(|(kind, n)| kind.as_str() == "unavailable" && *n >= 1));
    system.shutdown().await;
}

#[tokio::test]
async fn of_two_live_instances_of_one_id_the_second_to_write_gets_a_conflict_and_stops() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let first = system
        .spawn(counter_props(&persistence, "c|twin").name("first"))
        .unwrap();
    let second = system
        .spawn(counter_props(&persistence, "c|twin").name("second"))
        .unwrap();
    // Both have recovered (an empty history) once they answer.
    first.ask(Get).await.unwrap();
    second.ask(Get).await.unwrap();
    let second_stopped = watch_stop(&second).await;

    assert_eq!(first.ask(Add(1)).await.unwrap(), Ok(1));
    match second.ask(Add(2)).await.unwrap() {
        Err(PersistError::Conflict { id, seq }) => {
            assert_eq!((id.as_str(), seq), ("c|twin", 1));
        }
        other => panic!("the second writer must get a conflict, got {other:?}"),
    }
    assert_eq!(
        within(PATIENCE, second_stopped).await,
        ExitReason::Normal,
        "the loser stops"
    );
    assert_eq!(
        first.ask(Add(3)).await.unwrap(),
        Ok(4),
        "the winner carries on"
    );
    assert_eq!(
        stored_amounts(&persistence, "c|twin").await,
        vec![(1, 1), (2, 3)],
        "the loser's event was never stored"
    );
    assert_eq!(persistence.stats().conflicts, 1);
    system.shutdown().await;
}

/// Version 1 of the points events stored a bare amount.
#[derive(Serialize, Deserialize)]
enum PointsEventV1 {
    Earned { amount: u64 },
}

/// Version 2 counts tenths.
#[derive(Debug, Serialize, Deserialize)]
enum PointsEvent {
    Earned { tenths: u64 },
}

impl Versioned for PointsEvent {
    const TAG: &'static str = "test.points";
    const VERSION: u32 = 2;

    fn upcast(old: &Stored<'_>) -> Result<Self, DecodeError> {
        match (old.tag(), old.version()) {
            ("test.points", 1) => match old.decode::<PointsEventV1>()? {
                PointsEventV1::Earned { amount } => Ok(PointsEvent::Earned {
                    tenths: amount * 10,
                }),
            },
            _ => Err(DecodeError::unsupported(old, Self::TAG, Self::VERSION)),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Points(u64);
impl Versioned for Points {
    const TAG: &'static str = "test.points-state";
}
impl EventSourced for Points {
    type Event = PointsEvent;
    fn apply(&mut self, PointsEvent::Earned { tenths }: &PointsEvent) {
        self.0 += tenths;
    }
}

struct Account {
    points: Journaled<Points>,
}
impl Actor for Account {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.points.recover().await?;
        Ok(())
    }
}
struct Earn(u64);
impl Message for Earn {
    type Reply = Result<u64, PersistError>;
}
impl Handler<Earn> for Account {
    async fn handle(
        &mut self,
        Earn(tenths): Earn,
        ctx: &mut Context<Self>,
    ) -> Result<u64, PersistError> {
        self.points
            .persist(ctx, PointsEvent::Earned { tenths })
            .await?;
        Ok(self.points.state().0)
    }
}

#[tokio::test]
async fn an_upcaster_reads_events_stored_by_an_older_version() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let id = PersistenceId::new("points|1");
    let v1 = |amount| {
        Record::new(
            "test.points",
            1,
            codec::encode(&PointsEventV1::Earned { amount }).unwrap(),
        )
    };
    persistence
        .journal()
        .append(&id, 0, vec![v1(1), v1(2)])
        .await
        .unwrap();
    let p = persistence.clone();
    let account = system
        .spawn(move || Account {
            points: p.journaled(PersistenceId::new("points|1")),
        })
        .unwrap();
    assert_eq!(
        account.ask(Earn(5)).await.unwrap(),
        Ok(35),
        "10 + 20 upcast, + 5"
    );
    let stored = persistence.journal().replay(&id, 3, 3, 1).await.unwrap();
    assert_eq!(
        (stored[0].record.tag.as_str(), stored[0].record.version),
        ("test.points", 2),
        "new events are written in the current version"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_event_refuses_to_start_naming_the_id_the_seq_and_the_tag() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let id = PersistenceId::new("c|broken");
    let good = Record::encode(&CounterEvent::Added(1)).unwrap();
    let unknown = Record::new("test.from-the-future", 1, vec![0xc0]);
    persistence
        .journal()
        .append(&id, 0, vec![good, unknown])
        .await
        .unwrap();
    let counter = system
        .spawn(counter_props(&persistence, "c|broken").restart(Restart::Temporary))
        .unwrap();
    let stopped = watch_stop(&counter).await;
    // Sent before the failure is known: it must never be handled with a partial history.
    let ask = counter.ask(Add(1));
    let reason = within(PATIENCE, stopped).await;
    let ExitReason::Failed(Failure::Error(message)) = reason else {
        panic!("recovery must fail the actor, got {reason:?}");
    };
    for part in ["c|broken", "seq 2", "test.from-the-future"] {
        assert!(message.contains(part), "{message:?} names {part}");
    }
    assert_eq!(ask.await, Err(AskError::Stopped));
    assert_eq!(persistence.journal().highest_seq(&id).await.unwrap(), 2);
    system.shutdown().await;
}

#[tokio::test]
async fn a_hole_in_the_history_refuses_to_start() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let id = PersistenceId::new("c|hole");
    let events: Vec<Record> = (1..=3)
        .map(|n| Record::encode(&CounterEvent::Added(n)).unwrap())
        .collect();
    persistence.journal().append(&id, 0, events).await.unwrap();
    persistence.journal().delete_events(&id, 1).await.unwrap(); // no snapshot covers it
    let counter = system
        .spawn(counter_props(&persistence, "c|hole").restart(Restart::Temporary))
        .unwrap();
    let reason = within(PATIENCE, watch_stop(&counter).await).await;
    let ExitReason::Failed(Failure::Error(message)) = reason else {
        panic!("recovery must fail, got {reason:?}");
    };
    assert!(message.contains("seq 1 is missing"), "{message}");
    system.shutdown().await;
}

#[tokio::test]
async fn an_event_that_does_not_encode_is_refused_and_the_actor_carries_on() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let counter = system.spawn(counter_props(&persistence, "c|enc")).unwrap();
    counter.ask(Add(1)).await.unwrap().unwrap();
    match counter.ask(AddUnencodable).await.unwrap() {
        Err(PersistError::Encode { tag, .. }) => assert_eq!(tag, "test.counter-event"),
        other => panic!("expected an encoding error, got {other:?}"),
    }
    assert_eq!(counter.ask(Add(2)).await.unwrap(), Ok(3));
    let (_, restarts) = counter.ask(LastRecovery).await.unwrap();
    assert_eq!(
        restarts, 0,
        "nothing was written, so nothing needed recovering"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_write_before_recovery_fails_the_actor() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let p = persistence.clone();
    let counter = system
        .spawn(
            Props::new(move || Counter {
                tally: p.journaled("c|early"),
                recovery: None,
                forget_recovery: true,
            })
            .restart(Restart::Temporary),
        )
        .unwrap();
    let stopped = watch_stop(&counter).await;
    match counter.ask(Add(1)).await.unwrap() {
        Err(PersistError::NotRecovered { .. }) => {}
        other => panic!("expected NotRecovered, got {other:?}"),
    }
    assert!(within(PATIENCE, stopped).await.is_failure());
    assert!(stored_amounts(&persistence, "c|early").await.is_empty());
    system.shutdown().await;
}

#[tokio::test]
async fn persistence_stats_count_writes_recoveries_and_latencies() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let counter = system
        .spawn(counter_props(&persistence, "c|stats"))
        .unwrap();
    counter.ask(AddAll(vec![1, 2])).await.unwrap().unwrap();
    counter.ask(Add(3)).await.unwrap().unwrap();
    counter.ask(TakeSnapshot).await.unwrap().unwrap();
    let stats = persistence.stats();
    assert_eq!(stats.events_written, 3);
    assert_eq!(stats.snapshots_written, 1);
    assert_eq!(stats.persist_latency.count, 2, "one per persist call");
    assert_eq!(stats.recovery_time.count, 1);
    assert_eq!(stats.commit, None, "the memory store has no group commit");
    system.shutdown().await;
}

//! [`Persistence`]: the stores an application's persistent actors share, with their
//! defaults and counters.

use crate::durable::DurableState;
use crate::error::StoreError;
use crate::id::PersistenceId;
use crate::journaled::{EventSourced, Journaled, SnapshotPolicy};
use crate::memory::MemoryStore;
use crate::stats::{Counters, PersistenceStats};
use crate::store::{
    DurableStateStore, Journal, Record, SnapshotStore, Store, StoredEvent, StoredSnapshot,
    StoredState,
};
use crate::Versioned;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// The stores persistent actors write to — a journal, a snapshot store and a durable-state
/// store, usually one [`Store`] playing all three — with the defaults actors start from and
/// the counters the metrics endpoint shows. Cheap to clone; clones share everything.
///
/// Open one per process, set its defaults, then hand clones to actor factories (a setting
/// changed on a handle that is already shared makes a new handle with its own counters; the
/// clones keep the old one):
///
/// ```
/// use postbox_persistence::Persistence;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let persistence = Persistence::sqlite(dir.path().join("journal.db"))
///     .await?
///     .snapshot_every(1_000);
/// # let _ = persistence;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Persistence {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Arc<dyn Journal>,
    snapshots: Arc<dyn SnapshotStore>,
    states: Arc<dyn DurableStateStore>,
    counters: Counters,
    snapshot_policy: SnapshotPolicy,
    replay_page: usize,
    description: String,
}

impl Persistence {
    /// Persistence over `store` (journal, snapshots and states in one).
    pub fn new<S: Store>(store: S) -> Self {
        let store = Arc::new(store);
        Self::from_parts(store.clone(), store.clone(), store)
    }

    /// Persistence over separate stores.
    pub fn from_parts(
        journal: Arc<dyn Journal>,
        snapshots: Arc<dyn SnapshotStore>,
        states: Arc<dyn DurableStateStore>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                journal,
                snapshots,
                states,
                counters: Counters::default(),
                snapshot_policy: SnapshotPolicy::default(),
                replay_page: 1024,
                description: "custom store".into(),
            }),
        }
    }

    /// Persistence in memory ([`MemoryStore`]): for tests; nothing survives the process.
    pub fn in_memory() -> Self {
        Self::new(MemoryStore::new()).described("in memory")
    }

    /// Persistence in the SQLite file at `path` (created, with its directory, if missing),
    /// with [`SqliteOptions`](crate::sqlite::SqliteOptions)' defaults. Several processes on
    /// one machine may open the same file.
    pub async fn sqlite(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        let store = crate::sqlite::SqliteStore::open(path).await?;
        let description = format!("sqlite {}", store.path().display());
        Ok(Self::new(store).described(&description))
    }

    /// Persistence in the PostgreSQL database at `url` (`postgresql://user@host:port/db` or
    /// `host=.. port=.. user=.. dbname=..`), with
    /// [`PostgresOptions`](crate::postgres::PostgresOptions)' defaults. Creates its tables if
    /// missing.
    pub async fn postgres(url: &str) -> Result<Self, StoreError> {
        let store = crate::postgres::PostgresStore::connect(url).await?;
        Ok(Self::new(store).described("postgres"))
    }

    /// The same stores, described as `what` in `Debug` output and logs.
    pub fn described(self, what: &str) -> Self {
        self.with(|inner| inner.description = what.to_owned())
    }

    /// The default snapshot policy of actors that do not choose their own: a snapshot every
    /// `events` events (0: only on demand), keeping the last two.
    pub fn snapshot_every(self, events: u64) -> Self {
        self.with(|inner| inner.snapshot_policy = inner.snapshot_policy.every(events))
    }

    /// The default snapshot policy, whole.
    pub fn snapshot_policy(self, policy: SnapshotPolicy) -> Self {
        self.with(|inner| inner.snapshot_policy = policy)
    }

    /// How many events recovery reads per query (default 1024): bounds the memory a recovery
    /// holds at once.
    pub fn replay_page(self, events: usize) -> Self {
        self.with(|inner| inner.replay_page = events.max(1))
    }

    fn with(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                journal: shared.journal.clone(),
                snapshots: shared.snapshots.clone(),
                states: shared.states.clone(),
                counters: Counters::default(),
                snapshot_policy: shared.snapshot_policy,
                replay_page: shared.replay_page,
                description: shared.description.clone(),
            },
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The event-sourced state of `id`, to keep in an actor (see [`Journaled`]).
    pub fn journaled<S: EventSourced>(&self, id: impl Into<PersistenceId>) -> Journaled<S> {
        Journaled::new(self, id)
    }

    /// The durable state of `id`, to keep in an actor (see [`DurableState`]).
    pub fn durable_state<S: Versioned + Default>(
        &self,
        id: impl Into<PersistenceId>,
    ) -> DurableState<S> {
        DurableState::new(self, id)
    }

    /// The journal, for direct use (tools, projections, the conformance suite).
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.inner.journal
    }

    /// The snapshot store.
    pub fn snapshot_store(&self) -> &Arc<dyn SnapshotStore> {
        &self.inner.snapshots
    }

    /// The durable-state store.
    pub fn state_store(&self) -> &Arc<dyn DurableStateStore> {
        &self.inner.states
    }

    /// What persistence did so far: writes, conflicts, errors by kind, latencies, recoveries,
    /// the group commit's batches.
    pub fn stats(&self) -> PersistenceStats {
        self.inner
            .counters
            .snapshot(self.inner.journal.commit_stats())
    }

    pub(crate) fn default_snapshot_policy(&self) -> SnapshotPolicy {
        self.inner.snapshot_policy
    }

    pub(crate) fn page(&self) -> usize {
        self.inner.replay_page
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Counts the outcome of a store call.
    fn count<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            self.inner.counters.failed(e.kind());
        }
        result
    }

    pub(crate) async fn append(
        &self,
        id: &PersistenceId,
        expected: u64,
        events: Vec<Record>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let n = events.len() as u64;
        let result = self.count(self.inner.journal.append(id, expected, events).await);
        if result.is_ok() {
            let c = &self.inner.counters;
            c.events_written.fetch_add(n, Relaxed);
            c.persist_latency.observe_duration(started.elapsed());
        }
        result
    }

    pub(crate) async fn replay(
        &self,
        id: &PersistenceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let page = self.page();
        let events = self.count(self.inner.journal.replay(id, from, to, page).await)?;
        self.inner
            .counters
            .events_replayed
            .fetch_add(events.len() as u64, Relaxed);
        Ok(events)
    }

    pub(crate) async fn highest_seq(&self, id: &PersistenceId) -> Result<u64, StoreError> {
        self.count(self.inner.journal.highest_seq(id).await)
    }

    pub(crate) async fn delete_events(
        &self,
        id: &PersistenceId,
        up_to: u64,
    ) -> Result<(), StoreError> {
        self.count(self.inner.journal.delete_events(id, up_to).await)
    }

    pub(crate) async fn save_snapshot(
        &self,
        id: &PersistenceId,
        seq: u64,
        record: Record,
    ) -> Result<(), StoreError> {
        let result = self.count(self.inner.snapshots.save_snapshot(id, seq, record).await);
        if result.is_ok() {
            self.inner.counters.snapshots_written.fetch_add(1, Relaxed);
        }
        result
    }

    pub(crate) async fn latest_snapshot(
        &self,
        id: &PersistenceId,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        self.count(self.inner.snapshots.latest_snapshot(id).await)
    }

    pub(crate) async fn snapshot_seqs(&self, id: &PersistenceId) -> Result<Vec<u64>, StoreError> {
        self.count(self.inner.snapshots.snapshot_seqs(id).await)
    }

    pub(crate) async fn delete_snapshots(
        &self,
        id: &PersistenceId,
        up_to: u64,
    ) -> Result<(), StoreError> {
        self.count(self.inner.snapshots.delete_snapshots(id, up_to).await)
    }

    pub(crate) async fn load_state(
        &self,
        id: &PersistenceId,
    ) -> Result<Option<StoredState>, StoreError> {
        self.count(self.inner.states.load_state(id).await)
    }

    /// Saves (`Some`) or deletes (`None`) a durable state.
    pub(crate) async fn write_state(
        &self,
        id: &PersistenceId,
        expected: u64,
        record: Option<Record>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = match record {
            Some(record) => self.inner.states.save_state(id, expected, record).await,
            None => self.inner.states.delete_state(id, expected).await,
        };
        let result = self.count(result);
        if result.is_ok() {
            let c = &self.inner.counters;
            c.states_written.fetch_add(1, Relaxed);
            c.persist_latency.observe_duration(started.elapsed());
        }
        result
    }
}

impl fmt::Debug for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Persistence")
            .field("store", &self.inner.description)
            .field("snapshot_policy", &self.inner.snapshot_policy)
            .field("replay_page", &self.inner.replay_page)
            .finish_non_exhaustive()
    }
}

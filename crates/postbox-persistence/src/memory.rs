//! [`MemoryStore`]: every store trait in memory, for tests.
//!
//! It keeps the whole contract (single writer by sequence number, atomic batches, ordered
//! replay, deletion that keeps the head) but nothing survives the process. It can be told to
//! fail ([`MemoryStore::set_available`]), so that tests can take "the database" down and
//! bring it back.

use crate::error::StoreError;
use crate::id::PersistenceId;
use crate::store::{
    DurableStateStore, Journal, Record, SnapshotStore, StoredEvent, StoredSnapshot, StoredState,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};

/// A store in memory, for tests. Cheap to create; share it behind an `Arc` (or a
/// [`Persistence`](crate::Persistence)) between the actors that should see the same data.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
    down: AtomicBool,
}

#[derive(Debug, Default)]
struct Data {
    journals: HashMap<PersistenceId, JournalEntry>,
    snapshots: HashMap<PersistenceId, BTreeMap<u64, Record>>,
    states: HashMap<PersistenceId, StoredState>,
}

#[derive(Debug, Default)]
struct JournalEntry {
    highest: u64,
    events: BTreeMap<u64, Record>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the store down (`false`: every operation fails with
    /// [`StoreError::Unavailable`]) or brings it back (`true`).
    pub fn set_available(&self, available: bool) {
        self.down.store(!available, SeqCst);
    }

    fn data(&self, id: &PersistenceId) -> Result<MutexGuard<'_, Data>, StoreError> {
        id.validate()?;
        if self.down.load(SeqCst) {
            return Err(StoreError::Unavailable(
                "the in-memory store was taken down".into(),
            ));
        }
        Ok(self.data.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl Journal for MemoryStore {
    async fn append(
        &self,
        id: &PersistenceId,
        expected_seq: u64,
        events: Vec<Record>,
    ) -> Result<(), StoreError> {
        let mut data = self.data(id)?;
        if events.is_empty() {
            return Ok(());
        }
        let entry = data.journals.entry(id.clone()).or_default();
        if entry.highest != expected_seq {
            return Err(StoreError::Conflict {
                id: id.clone(),
                expected: expected_seq,
            });
        }
        for (seq, event) in (expected_seq + 1..).zip(events) {
            entry.events.insert(seq, event);
            entry.highest = seq;
        }
        Ok(())
    }

    async fn replay(
        &self,
        id: &PersistenceId,
        from_seq: u64,
        to_seq: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let data = self.data(id)?;
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        Ok(data
            .journals
            .get(id)
            .map(|entry| {
                entry
                    .events
                    .range(from_seq..=to_seq)
                    .take(max)
                    .map(|(&seq, record)| StoredEvent {
                        seq,
                        record: record.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn highest_seq(&self, id: &PersistenceId) -> Result<u64, StoreError> {
        Ok(self.data(id)?.journals.get(id).map_or(0, |e| e.highest))
    }

    async fn delete_events(&self, id: &PersistenceId, up_to_seq: u64) -> Result<(), StoreError> {
        if let Some(entry) = self.data(id)?.journals.get_mut(id) {
            entry.events = entry.events.split_off(&(up_to_seq.saturating_add(1)));
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn save_snapshot(
        &self,
        id: &PersistenceId,
        seq: u64,
        snapshot: Record,
    ) -> Result<(), StoreError> {
        self.data(id)?
            .snapshots
            .entry(id.clone())
            .or_default()
            .insert(seq, snapshot);
        Ok(())
    }

    async fn latest_snapshot(
        &self,
        id: &PersistenceId,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self.data(id)?.snapshots.get(id).and_then(|snapshots| {
            snapshots
                .last_key_value()
                .map(|(&seq, record)| StoredSnapshot {
                    seq,
                    record: record.clone(),
                })
        }))
    }

    async fn snapshot_seqs(&self, id: &PersistenceId) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .data(id)?
            .snapshots
            .get(id)
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn delete_snapshots(&self, id: &PersistenceId, up_to_seq: u64) -> Result<(), StoreError> {
        if let Some(snapshots) = self.data(id)?.snapshots.get_mut(id) {
            *snapshots = snapshots.split_off(&(up_to_seq.saturating_add(1)));
        }
        Ok(())
    }
}

#[async_trait]
impl DurableStateStore for MemoryStore {
    async fn load_state(&self, id: &PersistenceId) -> Result<Option<StoredState>, StoreError> {
        Ok(self.data(id)?.states.get(id).cloned())
    }

    async fn save_state(
        &self,
        id: &PersistenceId,
        expected_revision: u64,
        state: Record,
    ) -> Result<(), StoreError> {
        let mut data = self.data(id)?;
        write_state(&mut data, id, expected_revision, Some(state))
    }

    async fn delete_state(
        &self,
        id: &PersistenceId,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let mut data = self.data(id)?;
        write_state(&mut data, id, expected_revision, None)
    }
}

fn write_state(
    data: &mut Data,
    id: &PersistenceId,
    expected: u64,
    record: Option<Record>,
) -> Result<(), StoreError> {
    let current = data.states.get(id).map_or(0, |s| s.revision);
    if current != expected {
        return Err(StoreError::Conflict {
            id: id.clone(),
            expected,
        });
    }
    data.states.insert(
        id.clone(),
        StoredState {
            revision: expected + 1,
            record,
        },
    );
    Ok(())
}

//! Remember entities: which entities of a shard are active, kept durably so that the
//! shard's next home starts them at once instead of on their first message.
//!
//! One durable state per shard (`postbox.sharding.remember/<type>/<shard>`, a
//! [`DurableStateStore`](postbox_persistence::DurableStateStore) entry) holds the set of
//! remembered ids. An entity is remembered when it starts, and forgotten when it is
//! passivated (idle or least recently used) or stops on its own; stopping for a hand-off,
//! or with its node, keeps it remembered.
//!
//! The region owns a [`ShardMemory`] per active shard and is its only writer: changes are
//! noted as entities start and stop (never per message), and written in the background, one
//! write per shard at a time, with everything noted meanwhile folded into the next one. A
//! shard's memory is read when the shard becomes active here; a hand-off completes only
//! once the shard's writes are done, so the next home reads what the old one noted. The
//! store's revision check keeps a region that lost the shard (a stale view) from
//! overwriting its new home's set: its write fails with `Conflict`, and it reads the set
//! again.
//!
//! Failures are counted and logged and never hold a message: the entity serves whether or
//! not its start was recorded, and the write is retried with a backoff. A shard whose store
//! keeps failing is handed off without waiting (its unwritten changes are given up).

use postbox_persistence::{PersistenceId, Record, StoreError, Versioned};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The stored set of one shard.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct RememberedSet {
    pub(crate) entities: Vec<String>,
}

impl Versioned for RememberedSet {
    const TAG: &'static str = "postbox.sharding.remembered";
}

/// The persistence id of one shard's remembered set.
pub(crate) fn persistence_id(entity_type: &str, shard: u32) -> PersistenceId {
    PersistenceId::new(format!("postbox.sharding.remember/{entity_type}/{shard}"))
}

/// What one region knows and still has to write of one shard's remembered set.
#[derive(Debug)]
pub(crate) struct ShardMemory {
    /// Tells this shard's store answers from those of an earlier activation.
    pub(crate) generation: u64,
    /// The set as stored, once read.
    durable: Option<HashSet<Arc<str>>>,
    revision: u64,
    /// Noted and not yet written: id → remembered.
    changes: HashMap<Arc<str>, bool>,
    /// Being written.
    in_flight: Option<HashMap<Arc<str>, bool>>,
    /// Store failures in a row (reads or writes).
    pub(crate) failures: u32,
    /// A retry is scheduled: no write starts before it.
    pub(crate) retry_scheduled: bool,
    /// The shard waits for its writes to complete a hand-off.
    pub(crate) handoff_waiting: bool,
}

impl ShardMemory {
    pub(crate) fn new(generation: u64) -> Self {
        Self {
            generation,
            durable: None,
            revision: 0,
            changes: HashMap::new(),
            in_flight: None,
            failures: 0,
            retry_scheduled: false,
            handoff_waiting: false,
        }
    }

    /// Whether `id` is remembered once the write in flight is done (`None`: not read yet).
    fn believed(&self, id: &Arc<str>) -> Option<bool> {
        if let Some(value) = self.in_flight.as_ref().and_then(|f| f.get(id)) {
            return Some(*value);
        }
        self.durable.as_ref().map(|d| d.contains(id))
    }

    /// Notes that `id` started (`true`) or stopped for good (`false`). False if the change
    /// was left out because `bound` changes are already waiting.
    pub(crate) fn note(&mut self, id: Arc<str>, remembered: bool, bound: usize) -> bool {
        if self.believed(&id) == Some(remembered) {
            self.changes.remove(&id);
            return true;
        }
        if self.changes.len() >= bound && !self.changes.contains_key(&id) {
            return false;
        }
        self.changes.insert(id, remembered);
        true
    }

    /// The set was read: returns the remembered ids that were not stopped meanwhile.
    pub(crate) fn loaded(&mut self, revision: u64, ids: Vec<String>) -> Vec<Arc<str>> {
        let durable: HashSet<Arc<str>> = ids.into_iter().map(Arc::from).collect();
        self.revision = revision;
        self.failures = 0;
        self.durable = Some(durable);
        let changes = std::mem::take(&mut self.changes);
        for (id, remembered) in changes {
            self.note(id, remembered, usize::MAX);
        }
        let mut start: Vec<Arc<str>> = self
            .durable
            .iter()
            .flatten()
            .filter(|id| self.changes.get(*id) != Some(&false))
            .cloned()
            .collect();
        start.sort_unstable();
        start
    }

    /// Whether the set must be read (again).
    pub(crate) fn needs_load(&self) -> bool {
        self.durable.is_none()
    }

    /// The next write, if one is due: the expected revision and the whole new set.
    pub(crate) fn next_write(&mut self) -> Option<(u64, Record)> {
        if self.in_flight.is_some() || self.retry_scheduled || self.changes.is_empty() {
            return None;
        }
        let durable = self.durable.as_ref()?;
        let changes = std::mem::take(&mut self.changes);
        let mut entities: Vec<String> = durable
            .iter()
            .filter(|id| changes.get(*id) != Some(&false))
            .map(|id| id.to_string())
            .chain(
                changes
                    .iter()
                    .filter(|(id, remembered)| **remembered && !durable.contains(*id))
                    .map(|(id, _)| id.to_string()),
            )
            .collect();
        entities.sort_unstable();
        self.in_flight = Some(changes);
        match Record::encode(&RememberedSet { entities }) {
            Ok(record) => Some((self.revision, record)),
            Err(error) => {
                // Strings always encode; should it ever fail, the changes wait for the
                // next write rather than vanish.
                tracing::error!(%error, "remembered set could not be encoded");
                self.back_out();
                None
            }
        }
    }

    /// Puts the changes in flight back under those noted since.
    fn back_out(&mut self) {
        for (id, remembered) in self.in_flight.take().into_iter().flatten() {
            self.changes.entry(id).or_insert(remembered);
        }
    }

    /// The write in flight ended.
    pub(crate) fn written(&mut self, result: &Result<(), StoreError>) {
        match result {
            Ok(()) => {
                let applied = self.in_flight.take().unwrap_or_default();
                if let Some(durable) = &mut self.durable {
                    for (id, remembered) in applied {
                        if remembered {
                            durable.insert(id);
                        } else {
                            durable.remove(&id);
                        }
                    }
                }
                self.revision += 1;
                self.failures = 0;
                let changes = std::mem::take(&mut self.changes);
                for (id, remembered) in changes {
                    self.note(id, remembered, usize::MAX);
                }
            }
            Err(StoreError::Conflict { .. }) => {
                // Someone else wrote the set: read it again, then write what is still ours.
                self.back_out();
                self.durable = None;
                self.failures += 1;
            }
            Err(_) => {
                self.back_out();
                self.failures += 1;
            }
        }
    }

    /// Nothing noted is unwritten, or the store is failing (then a hand-off does not wait).
    pub(crate) fn settled(&self) -> bool {
        self.in_flight.is_none() && (self.changes.is_empty() || self.failures > 0)
    }

    /// A write is in flight.
    pub(crate) fn writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Changes that will not be written (the shard leaves with its store failing).
    pub(crate) fn unwritten(&self) -> usize {
        self.changes.len()
    }

    /// How many entities the store holds as remembered (0 until read).
    pub(crate) fn remembered(&self) -> usize {
        self.durable.as_ref().map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn set_of(record: &Record) -> Vec<String> {
        record.decode::<RememberedSet>().unwrap().entities
    }

    #[test]
    fn changes_fold_into_one_write_and_match_the_store() {
        let mut memory = ShardMemory::new(1);
        assert!(memory.note(id("a"), true, 10));
        // Not read yet: nothing is written.
        assert!(memory.next_write().is_none());
        let start = memory.loaded(3, vec!["b".into(), "c".into()]);
        assert_eq!(start, vec![id("b"), id("c")]);
        assert!(memory.note(id("c"), false, 10));
        assert!(
            memory.note(id("b"), true, 10),
            "already remembered: no change"
        );
        let (revision, record) = memory.next_write().unwrap();
        assert_eq!(revision, 3);
        assert_eq!(set_of(&record), vec!["a", "b"]);
        // Noted while writing: waits for the next write.
        assert!(memory.note(id("a"), false, 10));
        assert!(memory.next_write().is_none());
        assert!(!memory.settled());
        memory.written(&Ok(()));
        assert_eq!(memory.remembered(), 2);
        let (revision, record) = memory.next_write().unwrap();
        assert_eq!(revision, 4);
        assert_eq!(set_of(&record), vec!["b"]);
        memory.written(&Ok(()));
        assert!(memory.settled());
        assert!(memory.next_write().is_none());
    }

    #[test]
    fn a_stopped_entity_is_not_started_from_the_set() {
        let mut memory = ShardMemory::new(1);
        memory.note(id("b"), false, 10);
        let start = memory.loaded(1, vec!["a".into(), "b".into()]);
        assert_eq!(start, vec![id("a")]);
    }

    #[test]
    fn a_failed_write_keeps_its_changes_and_a_conflict_reads_again() {
        let mut memory = ShardMemory::new(1);
        memory.loaded(0, Vec::new());
        memory.note(id("a"), true, 10);
        memory.next_write().unwrap();
        memory.note(id("b"), true, 10);
        memory.written(&Err(StoreError::Unavailable("down".into())));
        assert_eq!(memory.failures, 1);
        assert!(memory.settled(), "a failing store does not hold a hand-off");
        let (_, record) = memory.next_write().unwrap();
        assert_eq!(set_of(&record), vec!["a", "b"]);
        memory.written(&Err(StoreError::Conflict {
            id: persistence_id("t", 0),
            expected: 0,
        }));
        assert!(memory.needs_load());
        let start = memory.loaded(5, vec!["z".into()]);
        assert_eq!(start, vec![id("z")]);
        let (revision, record) = memory.next_write().unwrap();
        assert_eq!(revision, 5);
        assert_eq!(set_of(&record), vec!["a", "b", "z"]);
    }

    #[test]
    fn changes_are_bounded() {
        let mut memory = ShardMemory::new(1);
        assert!(memory.note(id("a"), false, 2));
        assert!(memory.note(id("b"), false, 2));
        assert!(!memory.note(id("c"), false, 2));
        assert!(
            memory.note(id("a"), true, 2),
            "an id already waiting is updated"
        );
    }
}

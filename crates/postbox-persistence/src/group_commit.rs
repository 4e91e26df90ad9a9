//! Group commit: one writer per store turns the writes of many callers into few transactions.
//!
//! Callers put a [`WriteOp`] on a bounded queue and await its outcome. The writer (a thread
//! for SQLite, a task for PostgreSQL) takes the first op as soon as it arrives, then whatever
//! else is already queued (up to `max_batch` ops), runs them all in one transaction with one
//! commit — one fsync — and answers each op. There is no timer: a lone write is committed at
//! once, and a write that arrives while a commit is in progress waits at most for that commit
//! to finish before it is in the next one. Batches form by themselves exactly when they help,
//! under load.
//!
//! Each op is checked on its own inside the transaction: an op that conflicts (another
//! writer got there first) is answered `Conflict` and leaves no trace, while the others in
//! the batch commit. A failure of the transaction itself (I/O, disk full, connection lost)
//! answers every op of the batch with that error: none of them was acknowledged.
//!
//! The queue is bounded (`queue_capacity`): when it is full, callers wait for room —
//! backpressure on the actors that persist — and each such wait is counted
//! (`CommitStats::queue_full`).

use crate::error::StoreError;
use crate::id::PersistenceId;
use crate::stats::{CommitCounters, CommitStats};
use crate::store::Record;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Where an op's outcome goes.
pub(crate) type Done = oneshot::Sender<Result<(), StoreError>>;

/// One write, as queued for the writer.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Append {
        id: PersistenceId,
        expected: u64,
        events: Vec<Record>,
        done: Done,
    },
    DeleteEvents {
        id: PersistenceId,
        up_to: u64,
        done: Done,
    },
    SaveSnapshot {
        id: PersistenceId,
        seq: u64,
        snapshot: Record,
        done: Done,
    },
    DeleteSnapshots {
        id: PersistenceId,
        up_to: u64,
        done: Done,
    },
    /// `state: None` deletes (a tombstone that keeps the revision).
    SaveState {
        id: PersistenceId,
        expected: u64,
        state: Option<Record>,
        done: Done,
    },
}

impl WriteOp {
    /// Events this op appends (for the batch-size distribution).
    pub(crate) fn events(&self) -> usize {
        match self {
            WriteOp::Append { events, .. } => events.len(),
            _ => 0,
        }
    }

    pub(crate) fn id(&self) -> &PersistenceId {
        match self {
            WriteOp::Append { id, .. }
            | WriteOp::DeleteEvents { id, .. }
            | WriteOp::SaveSnapshot { id, .. }
            | WriteOp::DeleteSnapshots { id, .. }
            | WriteOp::SaveState { id, .. } => id,
        }
    }

    /// Answers the op.
    pub(crate) fn finish(self, outcome: Result<(), StoreError>) {
        let done = match self {
            WriteOp::Append { done, .. }
            | WriteOp::DeleteEvents { done, .. }
            | WriteOp::SaveSnapshot { done, .. }
            | WriteOp::DeleteSnapshots { done, .. }
            | WriteOp::SaveState { done, .. } => done,
        };
        // The caller may have given up (its actor was killed); the outcome stands anyway.
        let _ = done.send(outcome);
    }
}

/// Sizes of a group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most ops in one transaction.
    pub(crate) max_batch: usize,
    /// Most ops waiting for the writer.
    pub(crate) queue_capacity: usize,
}

/// The callers' side of a group commit.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    tx: mpsc::Sender<WriteOp>,
    counters: Arc<CommitCounters>,
    capacity: usize,
}

/// The writer's side.
#[derive(Debug)]
pub(crate) struct WriteQueueReceiver {
    rx: mpsc::Receiver<WriteOp>,
    pub(crate) counters: Arc<CommitCounters>,
    max_batch: usize,
}

pub(crate) fn write_queue(limits: Limits) -> (WriteQueue, WriteQueueReceiver) {
    let capacity = limits.queue_capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let counters = Arc::new(CommitCounters::default());
    (
        WriteQueue {
            tx,
            counters: counters.clone(),
            capacity,
        },
        WriteQueueReceiver {
            rx,
            counters,
            max_batch: limits.max_batch.max(1),
        },
    )
}

impl WriteQueue {
    /// Queues the op built by `op` and awaits its outcome. Waits for room when the queue is
    /// full (counted).
    pub(crate) async fn run(&self, op: impl FnOnce(Done) -> WriteOp) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        let op = op(done);
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(op)) => {
                self.counters.queue_full.fetch_add(1, Relaxed);
                self.tx.send(op).await.map_err(|_| StoreError::Closed)?;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
        }
        // The writer answers every op it takes; a dropped answer means it stopped.
        outcome.await.unwrap_or(Err(StoreError::Closed))
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Relaxed),
            batch_size: self.counters.batch_size.snapshot(),
            queue_full: self.counters.queue_full.load(Relaxed),
            queued: (self.capacity - self.tx.capacity()) as u64,
            queue_capacity: self.capacity as u64,
        }
    }
}

impl WriteQueueReceiver {
    /// The next batch: waits for one op, then takes what else is queued, up to the limit.
    /// `None` once every sender is gone and the queue is empty.
    pub(crate) async fn next_batch(&mut self) -> Option<Vec<WriteOp>> {
        let first = self.rx.recv().await?;
        Some(self.fill(first))
    }

    /// [`next_batch`](Self::next_batch) for a writer thread outside the runtime.
    pub(crate) fn blocking_next_batch(&mut self) -> Option<Vec<WriteOp>> {
        let first = self.rx.blocking_recv()?;
        Some(self.fill(first))
    }

    fn fill(&mut self, first: WriteOp) -> Vec<WriteOp> {
        let mut batch = vec![first];
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        batch
    }
}

/// Splits a batch so that no id appears twice in one part, keeping each id's items in order.
/// Stores whose bulk statements match rows by id (PostgreSQL's `UPDATE .. FROM UNNEST`) run
/// the parts one after the other in the same transaction.
pub(crate) fn by_distinct_ids<T>(
    batch: impl IntoIterator<Item = T>,
    id: impl Fn(&T) -> &PersistenceId,
) -> Vec<Vec<T>> {
    let mut parts: Vec<(HashSet<PersistenceId>, Vec<T>)> = Vec::new();
    for item in batch {
        // An item goes after the last part that has its id, so its id's order is kept.
        let after = parts
            .iter()
            .rposition(|(ids, _)| ids.contains(id(&item)))
            .map_or(0, |i| i + 1);
        if after == parts.len() {
            parts.push((HashSet::new(), Vec::new()));
        }
        let (ids, items) = &mut parts[after];
        ids.insert(id(&item).clone());
        items.push(item);
    }
    parts.into_iter().map(|(_, items)| items).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(id: &str, expected: u64) -> (WriteOp, oneshot::Receiver<Result<(), StoreError>>) {
        let (done, rx) = oneshot::channel();
        (
            WriteOp::Append {
                id: PersistenceId::new(id),
                expected,
                events: vec![Record::new("t", 1, vec![])],
                done,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn a_full_queue_makes_writers_wait_and_counts_it() {
        let (queue, mut writer) = write_queue(Limits {
            max_batch: 10,
            queue_capacity: 2,
        });
        let queue = Arc::new(queue);
        let mut calls = Vec::new();
        for i in 0..3u64 {
            let queue = queue.clone();
            calls.push(tokio::spawn(async move {
                queue
                    .run(|done| WriteOp::Append {
                        id: PersistenceId::new(format!("p{i}")),
                        expected: 0,
                        events: Vec::new(),
                        done,
                    })
                    .await
            }));
        }
        // Two fit; the third waits for room, counted once it found the queue full.
        while queue.stats().queue_full == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(queue.stats().queued, 2);
        let first = writer.next_batch().await.expect("ops");
        assert_eq!(first.len(), 2, "a batch takes everything queued");
        for op in first {
            op.finish(Ok(()));
        }
        let second = writer.next_batch().await.expect("the waiting op");
        assert_eq!(second.len(), 1);
        for op in second {
            op.finish(Ok(()));
        }
        for call in calls {
            assert_eq!(call.await.expect("task"), Ok(()));
        }
        assert_eq!(queue.stats().queue_full, 1);
    }

    #[tokio::test]
    async fn an_op_the_writer_drops_unanswered_reads_as_closed() {
        let (queue, writer) = write_queue(Limits {
            max_batch: 1,
            queue_capacity: 1,
        });
        drop(writer);
        let outcome = queue
            .run(|done| WriteOp::DeleteEvents {
                id: PersistenceId::new("p"),
                up_to: 1,
                done,
            })
            .await;
        assert_eq!(outcome, Err(StoreError::Closed));
    }

    #[test]
    fn a_batch_splits_so_each_part_has_an_id_once_in_order() {
        let ops: Vec<_> = ["a", "b", "a", "c", "a", "b"]
            .iter()
            .map(|id| append(id, 0).0)
            .collect();
        let parts = by_distinct_ids(ops, WriteOp::id);
        let ids: Vec<Vec<&str>> = parts
            .iter()
            .map(|part| part.iter().map(|op| op.id().as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["a", "b", "c"], vec!["a", "b"], vec!["a"]]);
    }
}

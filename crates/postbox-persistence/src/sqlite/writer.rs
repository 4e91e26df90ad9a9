//! The SQLite writer thread: one connection, one transaction per batch.

use super::{int, store_error};
use crate::error::StoreError;
use crate::group_commit::{WriteOp, WriteQueueReceiver};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// SQLite's own limit on pages: what "no cap" sets `max_page_count` back to.
const NO_PAGE_LIMIT: u64 = 4_294_967_294;

/// Answers for the ops of one batch, in batch order.
type Answers = Vec<(WriteOp, Result<(), StoreError>)>;

/// Commits batches until every sender is gone.
///
/// With a runtime (`answering`), a committed batch's answers are handed to one task on it,
/// which answers each op: the tasks waiting for them are then woken from a worker thread,
/// into its own run queue, instead of one by one from this thread (each such wake-up from
/// outside the runtime may unpark a worker) — one cross-thread wake-up per commit. Without
/// one, or once it has shut down, this thread answers.
pub(super) fn run(
    mut conn: Connection,
    mut queue: WriteQueueReceiver,
    max_size: Arc<AtomicU64>,
    answering: Option<tokio::runtime::Handle>,
) {
    let answerer = answering.map(|runtime| {
        let (answers, mut to_answer) = tokio::sync::mpsc::unbounded_channel::<Answers>();
        runtime.spawn(async move {
            while let Some(batch) = to_answer.recv().await {
                answer(batch);
            }
        });
        answers
    });
    let mut applied_max_size = None;
    while let Some(batch) = queue.blocking_next_batch() {
        let wanted = max_size.load(Relaxed);
        if applied_max_size != Some(wanted) {
            match set_max_size(&conn, wanted) {
                Ok(()) => applied_max_size = Some(wanted),
                Err(e) => tracing::warn!(error = %e, "could not apply the store's size cap"),
            }
        }
        let answers: Answers = match commit(&mut conn, &batch) {
            Ok(outcomes) => {
                let events = batch
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, outcome)| outcome.is_ok())
                    .map(|(op, _)| op.events())
                    .sum();
                queue.counters.committed(events);
                batch.into_iter().zip(outcomes).collect()
            }
            Err(error) => {
                tracing::debug!(%error, ops = batch.len(), "a batch failed to commit");
                batch
                    .into_iter()
                    .map(|op| (op, Err(error.clone())))
                    .collect()
            }
        };
        match &answerer {
            Some(answerer) => {
                if let Err(unsent) = answerer.send(answers) {
                    answer(unsent.0);
                }
            }
            None => answer(answers),
        }
    }
}

fn answer(batch: Answers) {
    for (op, outcome) in batch {
        op.finish(outcome);
    }
}

fn set_max_size(conn: &Connection, bytes: u64) -> rusqlite::Result<()> {
    let pages = if bytes == 0 {
        NO_PAGE_LIMIT
    } else {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
        (bytes / page_size.max(512) as u64).max(1)
    };
    conn.pragma_update(None, "max_page_count", pages as i64)
}

/// Runs a batch in one transaction. The outer error fails the whole batch (nothing was
/// committed); the inner results are each op's own (a conflict leaves no trace).
fn commit(
    conn: &mut Connection,
    batch: &[WriteOp],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_error)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for op in batch {
        outcomes.push(apply(&tx, op)?);
    }
    tx.commit().map_err(store_error)?;
    Ok(outcomes)
}

fn apply(tx: &Transaction<'_>, op: &WriteOp) -> Result<Result<(), StoreError>, StoreError> {
    match op {
        WriteOp::Append {
            id,
            expected,
            events,
            ..
        } => {
            // Move the head first, on condition that it is where the writer expects it: one
            // statement decides the conflict, and nothing else is written when it does.
            let highest = int(expected + events.len() as u64)?;
            let before = int(*expected)?;
            let moved = if *expected == 0 {
                tx.prepare_cached(
                    "INSERT INTO postbox_journal_heads (persistence_id, highest_seq)
                     VALUES (?1, ?2) ON CONFLICT (persistence_id) DO NOTHING",
                )
                .and_then(|mut head| head.execute(params![id.as_str(), highest]))
            } else {
                tx.prepare_cached(
                    "UPDATE postbox_journal_heads SET highest_seq = ?2
                     WHERE persistence_id = ?1 AND highest_seq = ?3",
                )
                .and_then(|mut head| head.execute(params![id.as_str(), highest, before]))
            }
            .map_err(store_error)?;
            if moved == 0 {
                return Ok(Err(StoreError::Conflict {
                    id: id.clone(),
                    expected: *expected,
                }));
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO postbox_journal (persistence_id, seq, tag, version, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(store_error)?;
            for (seq, event) in (expected + 1..).zip(events) {
                insert
                    .execute(params![
                        id.as_str(),
                        int(seq)?,
                        event.tag,
                        event.version,
                        event.payload
                    ])
                    .map_err(store_error)?;
            }
        }
        WriteOp::DeleteEvents { id, up_to, .. } => {
            let up_to = (*up_to).min(highest_seq(tx, id.as_str())?);
            tx.prepare_cached(
                "DELETE FROM postbox_journal WHERE persistence_id = ?1 AND seq <= ?2",
            )
            .and_then(|mut delete| {
                delete.execute(params![id.as_str(), int(up_to).unwrap_or(i64::MAX)])
            })
            .map_err(store_error)?;
        }
        WriteOp::SaveSnapshot {
            id, seq, snapshot, ..
        } => {
            tx.prepare_cached(
                "INSERT INTO postbox_snapshots (persistence_id, seq, tag, version, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (persistence_id, seq) DO UPDATE SET
                     tag = excluded.tag, version = excluded.version, payload = excluded.payload",
            )
            .and_then(|mut save| {
                save.execute(params![
                    id.as_str(),
                    int(*seq).unwrap_or(i64::MAX),
                    snapshot.tag,
                    snapshot.version,
                    snapshot.payload
                ])
            })
            .map_err(store_error)?;
        }
        WriteOp::DeleteSnapshots { id, up_to, .. } => {
            tx.prepare_cached(
                "DELETE FROM postbox_snapshots WHERE persistence_id = ?1 AND seq <= ?2",
            )
            .and_then(|mut delete| {
                delete.execute(params![
                    id.as_str(),
                    i64::try_from(*up_to).unwrap_or(i64::MAX)
                ])
            })
            .map_err(store_error)?;
        }
        WriteOp::SaveState {
            id,
            expected,
            state,
            ..
        } => {
            let revision: Option<i64> = tx
                .prepare_cached("SELECT revision FROM postbox_states WHERE persistence_id = ?1")
                .and_then(|mut select| select.query_row([id.as_str()], |row| row.get(0)).optional())
                .map_err(store_error)?;
            if revision.unwrap_or(0) != int(*expected)? {
                return Ok(Err(StoreError::Conflict {
                    id: id.clone(),
                    expected: *expected,
                }));
            }
            let (tag, version, payload) = match state {
                Some(record) => (
                    Some(record.tag.as_str()),
                    Some(record.version),
                    Some(record.payload.as_slice()),
                ),
                None => (None, None, None),
            };
            tx.prepare_cached(
                "INSERT INTO postbox_states (persistence_id, revision, tag, version, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (persistence_id) DO UPDATE SET revision = excluded.revision,
                     tag = excluded.tag, version = excluded.version, payload = excluded.payload",
            )
            .and_then(|mut save| {
                save.execute(params![
                    id.as_str(),
                    int(*expected + 1).unwrap_or(i64::MAX),
                    tag,
                    version,
                    payload
                ])
            })
            .map_err(store_error)?;
        }
    }
    Ok(Ok(()))
}

fn highest_seq(tx: &Transaction<'_>, id: &str) -> Result<u64, StoreError> {
    let highest: Option<i64> = tx
        .prepare_cached("SELECT highest_seq FROM postbox_journal_heads WHERE persistence_id = ?1")
        .and_then(|mut select| select.query_row([id], |row| row.get(0)).optional())
        .map_err(store_error)?;
    u64::try_from(highest.unwrap_or(0))
        .map_err(|_| StoreError::Corrupt(format!("{id} has a negative highest sequence number")))
}

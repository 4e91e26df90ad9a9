//! [`SqliteStore`]: the embedded default store — one SQLite file that every process on the
//! machine may share.
//!
//! # Durability
//!
//! The file runs in WAL mode with `synchronous=FULL`: a commit returns once its WAL frames
//! are fsynced, so an acknowledged write survives a process kill and a power loss. After a
//! crash in the middle of a commit, SQLite's WAL checksums make the next opening ignore the
//! torn tail: the file opens with exactly the transactions whose commit returned.
//!
//! # Sharing one file between processes
//!
//! SQLite's locking lets several processes open one database (on a local filesystem, not a
//! network one): readers never block, and writers take turns on the write lock (waiting up
//! to [`SqliteOptions::busy_timeout`]). Every write transaction starts with
//! `BEGIN IMMEDIATE`, which takes the write lock before reading the expected sequence
//! number, so the single-writer check and the write are one atomic step across processes.
//! This is what lets the nodes of a local cluster started from one folder share their
//! entities' histories.
//!
//! # Writer and readers
//!
//! One thread per store (`postbox-sqlite-writer`) owns the write connection and
//! group-commits every write ([`group_commit`](crate#group-commit)). Reads (recovery) run on
//! Tokio's blocking pool over a small pool of read connections, at most
//! [`SqliteOptions::readers`] at a time.
//!
//! # Tables
//!
//! `postbox_journal` (id, seq, tag, version, payload), `postbox_journal_heads` (id, highest
//! seq — kept when events are deleted), `postbox_snapshots`, `postbox_states` (id, revision,
//! and the state or NULLs after a delete) and `postbox_meta` (the schema version). The
//! prefix lets the file hold an application's own tables too.

mod writer;

use crate::error::StoreError;
use crate::group_commit::{write_queue, Done, Limits, WriteOp, WriteQueue};
use crate::id::PersistenceId;
use crate::stats::CommitStats;
use crate::store::{
    DurableStateStore, Journal, Record, SnapshotStore, StoredEvent, StoredSnapshot, StoredState,
};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The schema this build reads and writes.
const SCHEMA_VERSION: &str = "1";

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    busy_timeout: Duration,
    max_batch: usize,
    queue_capacity: usize,
    readers: usize,
    max_size: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            max_batch: 1024,
            queue_capacity: 8192,
            readers: 4,
            max_size: None,
        }
    }
}

impl SqliteOptions {
    /// How long a write waits for another process's write lock before failing with
    /// [`StoreError::Unavailable`] (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Most writes in one transaction (default 1024).
    pub fn max_batch(mut self, writes: usize) -> Self {
        self.max_batch = writes.max(1);
        self
    }

    /// Most writes waiting for the writer (default 8192); beyond, writers wait for room.
    pub fn queue_capacity(mut self, writes: usize) -> Self {
        self.queue_capacity = writes.max(1);
        self
    }

    /// Most reads (recoveries' queries) at a time, each on its own connection (default 4).
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// Caps the file's size (`None`, the default: no cap). A write that would grow it beyond
    /// fails with [`StoreError::Full`], as on a full disk.
    pub fn max_size(mut self, bytes: Option<u64>) -> Self {
        self.max_size = bytes;
        self
    }
}

/// The embedded store: journal, snapshots and durable states in one SQLite file. See the
/// [module docs](self).
pub struct SqliteStore {
    path: PathBuf,
    queue: WriteQueue,
    readers: Arc<Readers>,
    /// The size cap, in bytes (0: none); the writer applies changes before its next batch.
    max_size: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Opens (or creates, with its directory) the store at `path` with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (or creates) the store at `path`.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the store failed: {e}")))?
    }

    fn open_blocking(path: PathBuf, options: SqliteOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut conn = open_connection(&path, options.busy_timeout)?;
        // Switching a fresh file to WAL needs it to itself, and SQLite answers `BUSY` at once
        // (no busy handler) when another process is doing the same: nodes started together
        // from one folder all open the same new file. Retry within the busy timeout.
        let deadline = std::time::Instant::now() + options.busy_timeout;
        let mode: String = retry_busy(deadline, || {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        })
        .map_err(|e| opening(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{} cannot use WAL mode (it is in {mode} mode); is it on a network filesystem?",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| opening(&path, e))?;
        create_schema(&mut conn).map_err(|e| match e {
            StoreError::Unavailable(why) => {
                StoreError::Unavailable(format!("{}: {why}", path.display()))
            }
            other => other,
        })?;
        let (queue, receiver) = write_queue(Limits {
            max_batch: options.max_batch,
            queue_capacity: options.queue_capacity,
        });
        let max_size = Arc::new(AtomicU64::new(options.max_size.unwrap_or(0)));
        let writer_max_size = max_size.clone();
        std::thread::Builder::new()
            .name("postbox-sqlite-writer".into())
            .spawn({
                // A multi-thread runtime's workers run whether or not anyone blocks on it; a
                // current-thread runtime's tasks would wait for its next `block_on`.
                let answering = tokio::runtime::Handle::try_current()
                    .ok()
                    .filter(|runtime| {
                        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                    });
                move || writer::run(conn, receiver, writer_max_size, answering)
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            readers: Arc::new(Readers {
                path: path.clone(),
                busy_timeout: options.busy_timeout,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(options.readers)),
            }),
            path,
            queue,
            max_size,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the size cap (`None`: no cap) from the next write on — as when an operator
    /// frees disk space or raises a quota.
    pub fn set_max_size(&self, bytes: Option<u64>) {
        self.max_size.store(bytes.unwrap_or(0), Relaxed);
    }

    async fn write(
        &self,
        id: &PersistenceId,
        op: impl FnOnce(Done) -> WriteOp,
    ) -> Result<(), StoreError> {
        id.validate()?;
        self.queue.run(op).await
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("commit", &self.queue.stats())
            .finish_non_exhaustive()
    }
}

fn opening(path: &Path, e: rusqlite::Error) -> StoreError {
    match store_error(e) {
        StoreError::Unavailable(why) => {
            StoreError::Unavailable(format!("cannot open {}: {why}", path.display()))
        }
        other => other,
    }
}

fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| opening(path, e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| opening(path, e))?;
    Ok(conn)
}

/// Runs `op` again while SQLite answers busy or locked, until `deadline`.
fn retry_busy<T>(
    deadline: std::time::Instant,
    mut op: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut pause = Duration::from_millis(1);
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn create_schema(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(store_error)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS postbox_meta (
             key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         INSERT INTO postbox_meta (key, value) VALUES ('schema', '1')
             ON CONFLICT (key) DO NOTHING;
         CREATE TABLE IF NOT EXISTS postbox_journal (
             persistence_id TEXT NOT NULL,
             seq INTEGER NOT NULL,
             tag TEXT NOT NULL,
             version INTEGER NOT NULL,
             payload BLOB NOT NULL,
             PRIMARY KEY (persistence_id, seq)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS postbox_journal_heads (
             persistence_id TEXT PRIMARY KEY,
             highest_seq INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS postbox_snapshots (
             persistence_id TEXT NOT NULL,
             seq INTEGER NOT NULL,
             tag TEXT NOT NULL,
             version INTEGER NOT NULL,
             payload BLOB NOT NULL,
             PRIMARY KEY (persistence_id, seq));
         CREATE TABLE IF NOT EXISTS postbox_states (
             persistence_id TEXT PRIMARY KEY,
             revision INTEGER NOT NULL,
             tag TEXT,
             version INTEGER,
             payload BLOB);",
    )
    .map_err(store_error)?;
    let schema: String = tx
        .query_row(
            "SELECT value FROM postbox_meta WHERE key = 'schema'",
            [],
            |row| row.get(0),
        )
        .map_err(store_error)?;
    if schema != SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the store's schema is version {schema}; this build reads version {SCHEMA_VERSION}"
        )));
    }
    tx.commit().map_err(store_error)
}

/// What a SQLite failure means for the caller.
pub(crate) fn store_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let text = match message {
                Some(message) => format!("{message} ({failure})"),
                None => failure.to_string(),
            };
            match failure.code {
                DiskFull => StoreError::Full(text),
                DatabaseCorrupt | NotADatabase | ConstraintViolation | TypeMismatch => {
                    StoreError::Corrupt(text)
                }
                TooBig => StoreError::Invalid(text),
                _ => StoreError::Unavailable(text),
            }
        }
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// A sequence number or revision as SQLite's integer.
pub(crate) fn int(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("sequence number {value} is out of range")))
}

/// SQLite's integer as a sequence number or revision.
fn uint(value: i64) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, value))
}

/// Read connections, at most `permits` in use at a time, opened on demand and kept.
struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = readers.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_connection(&readers.path, readers.busy_timeout)?,
            };
            let result = query(&conn).map_err(store_error);
            // A connection that failed is dropped: the next read opens a fresh one.
            if result.is_ok() {
                readers
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("a read failed: {e}")))?
    }
}

fn record(tag: String, version: i64, payload: Vec<u8>) -> rusqlite::Result<Record> {
    let version =
        u32::try_from(version).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(1, version))?;
    Ok(Record::new(tag, version, payload))
}

#[async_trait]
impl Journal for SqliteStore {
    async fn append(
        &self,
        id: &PersistenceId,
        expected_seq: u64,
        events: Vec<Record>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return id.validate().map_err(Into::into);
        }
        int(expected_seq.saturating_add(events.len() as u64))?;
        self.write(id, |done| WriteOp::Append {
            id: id.clone(),
            expected: expected_seq,
            events,
            done,
        })
        .await
    }

    async fn replay(
        &self,
        id: &PersistenceId,
        from_seq: u64,
        to_seq: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        id.validate()?;
        let (from, to) = (clamp(from_seq), clamp(to_seq));
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let id = id.clone();
        self.readers
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT seq, tag, version, payload FROM postbox_journal
                     WHERE persistence_id = ?1 AND seq >= ?2 AND seq <= ?3
                     ORDER BY seq LIMIT ?4",
                )?;
                let rows = statement.query_map(
                    rusqlite::params![id.as_str(), from, to, limit],
                    |row| {
                        Ok(StoredEvent {
                            seq: uint(row.get(0)?)?,
                            record: record(row.get(1)?, row.get(2)?, row.get(3)?)?,
                        })
                    },
                )?;
                rows.collect()
            })
            .await
    }

    async fn highest_seq(&self, id: &PersistenceId) -> Result<u64, StoreError> {
        id.validate()?;
        let id = id.clone();
        self.readers
            .read(move |conn| {
                let highest: Option<i64> = conn
                    .prepare_cached(
                        "SELECT highest_seq FROM postbox_journal_heads WHERE persistence_id = ?1",
                    )?
                    .query_row([id.as_str()], |row| row.get(0))
                    .optional()?;
                highest.map_or(Ok(0), uint)
            })
            .await
    }

    async fn delete_events(&self, id: &PersistenceId, up_to_seq: u64) -> Result<(), StoreError> {
        self.write(id, |done| WriteOp::DeleteEvents {
            id: id.clone(),
            up_to: up_to_seq,
            done,
        })
        .await
    }

    fn commit_stats(&self) -> Option<CommitStats> {
        Some(self.queue.stats())
    }
}

/// A sequence number bound for a query: beyond SQLite's integers means "to the end".
fn clamp(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn save_snapshot(
        &self,
        id: &PersistenceId,
        seq: u64,
        snapshot: Record,
    ) -> Result<(), StoreError> {
        int(seq)?;
        self.write(id, |done| WriteOp::SaveSnapshot {
            id: id.clone(),
            seq,
            snapshot,
            done,
        })
        .await
    }

    async fn latest_snapshot(
        &self,
        id: &PersistenceId,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        id.validate()?;
        let id = id.clone();
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT seq, tag, version, payload FROM postbox_snapshots
                     WHERE persistence_id = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([id.as_str()], |row| {
                    Ok(StoredSnapshot {
                        seq: uint(row.get(0)?)?,
                        record: record(row.get(1)?, row.get(2)?, row.get(3)?)?,
                    })
                })
                .optional()
            })
            .await
    }

    async fn snapshot_seqs(&self, id: &PersistenceId) -> Result<Vec<u64>, StoreError> {
        id.validate()?;
        let id = id.clone();
        self.readers
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT seq FROM postbox_snapshots WHERE persistence_id = ?1 ORDER BY seq",
                )?;
                let rows = statement.query_map([id.as_str()], |row| uint(row.get(0)?))?;
                rows.collect()
            })
            .await
    }

    async fn delete_snapshots(&self, id: &PersistenceId, up_to_seq: u64) -> Result<(), StoreError> {
        self.write(id, |done| WriteOp::DeleteSnapshots {
            id: id.clone(),
            up_to: up_to_seq,
            done,
        })
        .await
    }
}

#[async_trait]
impl DurableStateStore for SqliteStore {
    async fn load_state(&self, id: &PersistenceId) -> Result<Option<StoredState>, StoreError> {
        id.validate()?;
        let id = id.clone();
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT revision, tag, version, payload FROM postbox_states
                     WHERE persistence_id = ?1",
                )?
                .query_row([id.as_str()], |row| {
                    let tag: Option<String> = row.get(1)?;
                    let version: Option<i64> = row.get(2)?;
                    let payload: Option<Vec<u8>> = row.get(3)?;
                    let record = match (tag, version, payload) {
                        (Some(tag), Some(version), Some(payload)) => {
                            Some(record(tag, version, payload)?)
                        }
                        _ => None,
                    };
                    Ok(StoredState {
                        revision: uint(row.get(0)?)?,
                        record,
                    })
                })
                .optional()
            })
            .await
    }

    async fn save_state(
        &self,
        id: &PersistenceId,
        expected_revision: u64,
        state: Record,
    ) -> Result<(), StoreError> {
        int(expected_revision.saturating_add(1))?;
        self.write(id, |done| WriteOp::SaveState {
            id: id.clone(),
            expected: expected_revision,
            state: Some(state),
            done,
        })
        .await
    }

    async fn delete_state(
        &self,
        id: &PersistenceId,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        int(expected_revision.saturating_add(1))?;
        self.write(id, |done| WriteOp::SaveState {
            id: id.clone(),
            expected: expected_revision,
            state: None,
            done,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes started together (the README's local cluster) open one fresh file at once:
    /// every one of them must get a working store.
    #[test]
    fn many_openers_of_one_fresh_file_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("shared/postbox.db");
            let openers: Vec<_> = (0..12)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        SqliteStore::open_blocking(path, SqliteOptions::default()).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().expect("no panic");
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
        }
    }
}

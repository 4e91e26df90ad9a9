//! [`PostgresStore`]: the store for clusters that span machines.
//!
//! # Single writer
//!
//! `postbox_journal_heads` holds each id's highest sequence number. An append updates it with
//! `... WHERE highest_seq = expected` (or inserts it with `ON CONFLICT DO NOTHING` for a new
//! id) and inserts its events in the **same transaction**; an update that matched no row is a
//! conflict, and that op's events are not inserted. Under PostgreSQL's row locks a concurrent
//! writer of the same id waits for the first transaction and then re-checks the condition
//! against the committed row, so two writers can never both pass. The primary key
//! `(persistence_id, seq)` on `postbox_journal` backs it up: an event number is never stored
//! twice. Durable states work the same way with `revision`.
//!
//! # Group commit
//!
//! One writer task per store owns one connection and commits batches
//! ([`group_commit`](crate#group-commit)). A batch's appends go to the server as three
//! statements whatever their number (`UPDATE .. FROM UNNEST(..)`, `INSERT .. SELECT FROM
//! UNNEST(..)`, one array per column), so a batch costs a handful of round trips and one
//! commit (one WAL flush with the default `synchronous_commit = on`). A batch is run in parts
//! in which each id appears once, so the bulk statements can match rows by id.
//!
//! # Failures
//!
//! A lost connection fails the batch in progress with [`StoreError::Unavailable`]; the next
//! batch reconnects. A batch that takes longer than [`PostgresOptions::batch_timeout`] is
//! abandoned the same way (its outcome is unknown to the callers, who get an error, and is
//! whatever the server decided). Reads use a small pool of connections, opened on demand.
//!
//! Connections are plain TCP (or a Unix socket): run the database on a private network or
//! loopback. TLS to PostgreSQL is not implemented yet.

use crate::error::StoreError;
use crate::group_commit::{by_distinct_ids, write_queue, Done, Limits, WriteOp, WriteQueue};
use crate::id::PersistenceId;
use crate::stats::CommitStats;
use crate::store::{
    DurableStateStore, Journal, Record, SnapshotStore, StoredEvent, StoredSnapshot, StoredState,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// Settings of a [`PostgresStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    max_batch: usize,
    queue_capacity: usize,
    readers: usize,
    connect_timeout: Duration,
    batch_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            queue_capacity: 8192,
            readers: 4,
            connect_timeout: Duration::from_secs(5),
            batch_timeout: Duration::from_secs(10),
        }
    }
}

impl PostgresOptions {
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

    /// Most read connections (default 4).
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one batch (or one read) may take before it is abandoned as failed
    /// (default 10 s).
    pub fn batch_timeout(mut self, timeout: Duration) -> Self {
        self.batch_timeout = timeout;
        self
    }
}

/// Journal, snapshots and durable states in a PostgreSQL database. See the
/// [module docs](self).
pub struct PostgresStore {
    queue: WriteQueue,
    readers: Arc<ReadPool>,
    description: String,
}

impl PostgresStore {
    /// Connects to `url` with default options and creates the tables if missing.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects to `url` (a `postgresql://` URL or `key=value` pairs) and creates the tables
    /// if missing. Fails at once if the server cannot be reached.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        config.connect_timeout(options.connect_timeout);
        let description = describe(&config);
        let conn = PgConn::connect(&config).await?;
        create_schema(&conn.client).await?;
        let (queue, receiver) = write_queue(Limits {
            max_batch: options.max_batch,
            queue_capacity: options.queue_capacity,
        });
        let writer = Writer {
            config: config.clone(),
            conn: Some(conn),
            timeout: options.batch_timeout,
        };
        tokio::spawn(writer.run(receiver));
        Ok(Self {
            queue,
            readers: Arc::new(ReadPool {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(options.readers),
                timeout: options.batch_timeout,
            }),
            description,
        })
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

fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "postgres {}:{:?}/{}",
        hosts.join(","),
        config.get_ports(),
        config.get_dbname().unwrap_or("")
    )
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.description)
            .field("commit", &self.queue.stats())
            .finish_non_exhaustive()
    }
}

/// What a PostgreSQL failure means for the caller.
fn store_error(e: tokio_postgres::Error) -> StoreError {
    let text = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    match e.code() {
        Some(code) if *code == SqlState::DISK_FULL => StoreError::Full(text),
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::Corrupt(format!(
            "an event number was stored twice, bypassing the journal's heads: {text}"
        )),
        _ => StoreError::Unavailable(text),
    }
}

fn int(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("sequence number {value} is out of range")))
}

fn uint(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("negative sequence number {value}")))
}

fn version(value: u32) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::Invalid(format!("version {value} is too large")))
}

fn record(row: &tokio_postgres::Row, first: usize) -> Result<Record, StoreError> {
    let tag: String = row.try_get(first).map_err(store_error)?;
    let version: i32 = row.try_get(first + 1).map_err(store_error)?;
    let payload: Vec<u8> = row.try_get(first + 2).map_err(store_error)?;
    let version = u32::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("negative version {version}")))?;
    Ok(Record::new(tag, version, payload))
}

async fn create_schema(client: &Client) -> Result<(), StoreError> {
    // Under an advisory lock: two nodes starting together must not both create the tables.
    client
        .batch_execute(
            "BEGIN;
             SELECT pg_advisory_xact_lock(7215061140);
             CREATE TABLE IF NOT EXISTS postbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO postbox_meta (key, value) VALUES ('schema', '1') ON CONFLICT DO NOTHING;
             CREATE TABLE IF NOT EXISTS postbox_journal (
                 persistence_id TEXT NOT NULL,
                 seq BIGINT NOT NULL,
                 tag TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 payload BYTEA NOT NULL,
                 PRIMARY KEY (persistence_id, seq));
             CREATE TABLE IF NOT EXISTS postbox_journal_heads (
                 persistence_id TEXT PRIMARY KEY,
                 highest_seq BIGINT NOT NULL);
             CREATE TABLE IF NOT EXISTS postbox_snapshots (
                 persistence_id TEXT NOT NULL,
                 seq BIGINT NOT NULL,
                 tag TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 payload BYTEA NOT NULL,
                 PRIMARY KEY (persistence_id, seq));
             CREATE TABLE IF NOT EXISTS postbox_states (
                 persistence_id TEXT PRIMARY KEY,
                 revision BIGINT NOT NULL,
                 tag TEXT,
                 version INTEGER,
                 payload BYTEA);
             COMMIT;",
        )
        .await
        .map_err(store_error)?;
    let schema: String = client
        .query_one("SELECT value FROM postbox_meta WHERE key = 'schema'", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(store_error)?;
    if schema != "1" {
        return Err(StoreError::Corrupt(format!(
            "the store's schema is version {schema}; this build reads version 1"
        )));
    }
    Ok(())
}

/// A connection and the statements prepared on it.
struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgConn {
    async fn connect(config: &Config) -> Result<Self, StoreError> {
        let (client, connection) = config.connect(NoTls).await.map_err(store_error)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection ended");
            }
        });
        Ok(Self {
            client,
            statements: HashMap::new(),
        })
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(store_error)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

const ADVANCE_HEADS: &str = "UPDATE postbox_journal_heads AS h SET highest_seq = v.new_seq
     FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS v(persistence_id, expected, new_seq)
     WHERE h.persistence_id = v.persistence_id AND h.highest_seq = v.expected
     RETURNING h.persistence_id";
const CREATE_HEADS: &str = "INSERT INTO postbox_journal_heads (persistence_id, highest_seq)
     SELECT * FROM UNNEST($1::text[], $2::int8[])
     ON CONFLICT (persistence_id) DO NOTHING
     RETURNING persistence_id";
const INSERT_EVENTS: &str =
    "INSERT INTO postbox_journal (persistence_id, seq, tag, version, payload)
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int4[], $5::bytea[])";
const DELETE_EVENTS: &str = "DELETE FROM postbox_journal WHERE persistence_id = $1 AND seq <= $2";
const SAVE_SNAPSHOT: &str =
    "INSERT INTO postbox_snapshots (persistence_id, seq, tag, version, payload)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (persistence_id, seq) DO UPDATE SET
         tag = EXCLUDED.tag, version = EXCLUDED.version, payload = EXCLUDED.payload";
const DELETE_SNAPSHOTS: &str =
    "DELETE FROM postbox_snapshots WHERE persistence_id = $1 AND seq <= $2";
const CREATE_STATE: &str =
    "INSERT INTO postbox_states (persistence_id, revision, tag, version, payload)
     VALUES ($1, 1, $2, $3, $4) ON CONFLICT (persistence_id) DO NOTHING";
const UPDATE_STATE: &str = "UPDATE postbox_states SET revision = revision + 1,
         tag = $3, version = $4, payload = $5
     WHERE persistence_id = $1 AND revision = $2";

/// The writer task: one connection, one transaction per batch.
struct Writer {
    config: Config,
    conn: Option<PgConn>,
    timeout: Duration,
}

impl Writer {
    async fn run(mut self, mut queue: crate::group_commit::WriteQueueReceiver) {
        while let Some(batch) = queue.next_batch().await {
            let outcome = tokio::time::timeout(self.timeout, self.commit(&batch))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(format!(
                        "the batch took longer than {:?}; its outcome is unknown",
                        self.timeout
                    )))
                });
            match outcome {
                Ok(outcomes) => {
                    let events = batch
                        .iter()
                        .zip(&outcomes)
                        .filter(|(_, outcome)| outcome.is_ok())
                        .map(|(op, _)| op.events())
                        .sum();
                    queue.counters.committed(events);
                    for (op, outcome) in batch.into_iter().zip(outcomes) {
                        op.finish(outcome);
                    }
                }
                Err(error) => {
                    // The connection may be broken or mid-transaction: start afresh.
                    self.conn = None;
                    for op in batch {
                        op.finish(Err(error.clone()));
                    }
                }
            }
        }
    }

    async fn commit(
        &mut self,
        batch: &[WriteOp],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let conn = match self.conn.take().filter(|conn| !conn.client.is_closed()) {
            Some(conn) => self.conn.insert(conn),
            None => self.conn.insert(PgConn::connect(&self.config).await?),
        };
        // Positions of the batch's ops, split so that each part has an id once.
        let indexed: Vec<(usize, &WriteOp)> = batch.iter().enumerate().collect();
        let mut outcomes: Vec<Result<(), StoreError>> = vec![Ok(()); batch.len()];
        conn.client
            .batch_execute("BEGIN")
            .await
            .map_err(store_error)?;
        for part in by_distinct_ids(indexed, |(_, op)| op.id()) {
            run_part(conn, &part, &mut outcomes).await?;
        }
        conn.client
            .batch_execute("COMMIT")
            .await
            .map_err(store_error)?;
        Ok(outcomes)
    }
}

/// A batch's events as one array per column, for `INSERT_EVENTS`.
#[derive(Default)]
struct EventColumns<'a> {
    ids: Vec<&'a str>,
    seqs: Vec<i64>,
    tags: Vec<&'a str>,
    versions: Vec<i32>,
    payloads: Vec<&'a [u8]>,
}

/// Runs one part (each id at most once) inside the open transaction.
async fn run_part(
    conn: &mut PgConn,
    part: &[(usize, &WriteOp)],
    outcomes: &mut [Result<(), StoreError>],
) -> Result<(), StoreError> {
    let mut advance = (Vec::new(), Vec::new(), Vec::new()); // id, expected, new
    let mut create = (Vec::new(), Vec::new()); // id, new
    for (_, op) in part {
        if let WriteOp::Append {
            id,
            expected,
            events,
            ..
        } = op
        {
            let new = int(expected + events.len() as u64)?;
            if *expected == 0 {
                create.0.push(id.as_str());
                create.1.push(new);
            } else {
                advance.0.push(id.as_str());
                advance.1.push(int(*expected)?);
                advance.2.push(new);
            }
        }
    }
    let mut won: std::collections::HashSet<String> = std::collections::HashSet::new();
    if !advance.0.is_empty() {
        let statement = conn.statement(ADVANCE_HEADS).await?;
        let rows = conn
            .client
            .query(&statement, &[&advance.0, &advance.1, &advance.2])
            .await
            .map_err(store_error)?;
        for row in rows {
            won.insert(row.try_get(0).map_err(store_error)?);
        }
    }
    if !create.0.is_empty() {
        let statement = conn.statement(CREATE_HEADS).await?;
        let rows = conn
            .client
            .query(&statement, &[&create.0, &create.1])
            .await
            .map_err(store_error)?;
        for row in rows {
            won.insert(row.try_get(0).map_err(store_error)?);
        }
    }
    let mut columns = EventColumns::default();
    for &(i, op) in part {
        match op {
            WriteOp::Append {
                id,
                expected,
                events,
                ..
            } => {
                if !won.contains(id.as_str()) {
                    outcomes[i] = Err(StoreError::Conflict {
                        id: id.clone(),
                        expected: *expected,
                    });
                    continue;
                }
                for (seq, event) in (expected + 1..).zip(events) {
                    columns.ids.push(id.as_str());
                    columns.seqs.push(int(seq)?);
                    columns.tags.push(&event.tag);
                    columns.versions.push(version(event.version)?);
                    columns.payloads.push(&event.payload);
                }
            }
            WriteOp::DeleteEvents { id, up_to, .. } => {
                let statement = conn.statement(DELETE_EVENTS).await?;
                let up_to = i64::try_from(*up_to).unwrap_or(i64::MAX);
                conn.client
                    .execute(&statement, &[&id.as_str(), &up_to])
                    .await
                    .map_err(store_error)?;
            }
            WriteOp::SaveSnapshot {
                id, seq, snapshot, ..
            } => {
                let statement = conn.statement(SAVE_SNAPSHOT).await?;
                let params: [&(dyn ToSql + Sync); 5] = [
                    &id.as_str(),
                    &int(*seq)?,
                    &snapshot.tag,
                    &version(snapshot.version)?,
                    &snapshot.payload,
                ];
                conn.client
                    .execute(&statement, &params)
                    .await
                    .map_err(store_error)?;
            }
            WriteOp::DeleteSnapshots { id, up_to, .. } => {
                let statement = conn.statement(DELETE_SNAPSHOTS).await?;
                let up_to = i64::try_from(*up_to).unwrap_or(i64::MAX);
                conn.client
                    .execute(&statement, &[&id.as_str(), &up_to])
                    .await
                    .map_err(store_error)?;
            }
            WriteOp::SaveState {
                id,
                expected,
                state,
                ..
            } => {
                let (tag, version, payload) = match state {
                    Some(record) => (
                        Some(record.tag.as_str()),
                        Some(version(record.version)?),
                        Some(record.payload.as_slice()),
                    ),
                    None => (None, None, None),
                };
                let changed = if *expected == 0 {
                    let statement = conn.statement(CREATE_STATE).await?;
                    conn.client
                        .execute(&statement, &[&id.as_str(), &tag, &version, &payload])
                        .await
                } else {
                    let statement = conn.statement(UPDATE_STATE).await?;
                    let params: [&(dyn ToSql + Sync); 5] =
                        [&id.as_str(), &int(*expected)?, &tag, &version, &payload];
                    conn.client.execute(&statement, &params).await
                }
                .map_err(store_error)?;
                if changed == 0 {
                    outcomes[i] = Err(StoreError::Conflict {
                        id: id.clone(),
                        expected: *expected,
                    });
                }
            }
        }
    }
    if !columns.ids.is_empty() {
        let statement = conn.statement(INSERT_EVENTS).await?;
        let params: [&(dyn ToSql + Sync); 5] = [
            &columns.ids,
            &columns.seqs,
            &columns.tags,
            &columns.versions,
            &columns.payloads,
        ];
        conn.client
            .execute(&statement, &params)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// Read connections, at most `permits` in use, opened on demand and kept.
struct ReadPool {
    config: Config,
    idle: Mutex<Vec<PgConn>>,
    permits: Semaphore,
    timeout: Duration,
}

impl ReadPool {
    /// Runs one query on a pooled connection, bounded by the timeout. A connection whose
    /// query failed is dropped.
    async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .filter(|conn| !conn.client.is_closed());
        let read = async {
            let mut conn = match idle {
                Some(conn) => conn,
                None => PgConn::connect(&self.config).await?,
            };
            let statement = conn.statement(sql).await?;
            let rows = conn
                .client
                .query(&statement, params)
                .await
                .map_err(store_error)?;
            Ok::<_, StoreError>((conn, rows))
        };
        let (conn, rows) = tokio::time::timeout(self.timeout, read)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "a read took longer than {:?}",
                    self.timeout
                )))
            })?;
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        Ok(rows)
    }
}

#[async_trait]
impl Journal for PostgresStore {
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
        for event in &events {
            version(event.version)?;
        }
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
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let to = i64::try_from(to_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .readers
            .query(
                "SELECT seq, tag, version, payload FROM postbox_journal
                 WHERE persistence_id = $1 AND seq >= $2 AND seq <= $3
                 ORDER BY seq LIMIT $4",
                &[&id.as_str(), &from, &to, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    seq: uint(row.try_get(0).map_err(store_error)?)?,
                    record: record(row, 1)?,
                })
            })
            .collect()
    }

    async fn highest_seq(&self, id: &PersistenceId) -> Result<u64, StoreError> {
        id.validate()?;
        let rows = self
            .readers
            .query(
                "SELECT highest_seq FROM postbox_journal_heads WHERE persistence_id = $1",
                &[&id.as_str()],
            )
            .await?;
        match rows.first() {
            Some(row) => uint(row.try_get(0).map_err(store_error)?),
            None => Ok(0),
        }
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

#[async_trait]
impl SnapshotStore for PostgresStore {
    async fn save_snapshot(
        &self,
        id: &PersistenceId,
        seq: u64,
        snapshot: Record,
    ) -> Result<(), StoreError> {
        int(seq)?;
        version(snapshot.version)?;
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
        let rows = self
            .readers
            .query(
                "SELECT seq, tag, version, payload FROM postbox_snapshots
                 WHERE persistence_id = $1 ORDER BY seq DESC LIMIT 1",
                &[&id.as_str()],
            )
            .await?;
        rows.first()
            .map(|row| {
                Ok(StoredSnapshot {
                    seq: uint(row.try_get(0).map_err(store_error)?)?,
                    record: record(row, 1)?,
                })
            })
            .transpose()
    }

    async fn snapshot_seqs(&self, id: &PersistenceId) -> Result<Vec<u64>, StoreError> {
        id.validate()?;
        let rows = self
            .readers
            .query(
                "SELECT seq FROM postbox_snapshots WHERE persistence_id = $1 ORDER BY seq",
                &[&id.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| uint(row.try_get(0).map_err(store_error)?))
            .collect()
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
impl DurableStateStore for PostgresStore {
    async fn load_state(&self, id: &PersistenceId) -> Result<Option<StoredState>, StoreError> {
        id.validate()?;
        let rows = self
            .readers
            .query(
                "SELECT revision, tag, version, payload FROM postbox_states
                 WHERE persistence_id = $1",
                &[&id.as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let tag: Option<String> = row.try_get(1).map_err(store_error)?;
        let record = match tag {
            Some(_) => Some(record(row, 1)?),
            None => None,
        };
        Ok(Some(StoredState {
            revision: uint(row.try_get(0).map_err(store_error)?)?,
            record,
        }))
    }

    async fn save_state(
        &self,
        id: &PersistenceId,
        expected_revision: u64,
        state: Record,
    ) -> Result<(), StoreError> {
        int(expected_revision.saturating_add(1))?;
        version(state.version)?;
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

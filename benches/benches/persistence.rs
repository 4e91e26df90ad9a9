//! Persistence: the embedded engines under group commit, persistent actors against the raw
//! store, persist latency at a fixed offered load, and recovery time — on SQLite (the
//! embedded default) and on PostgreSQL over loopback. A plain `main` (`harness = false`).
//!
//! 1. **engines**: SQLite (WAL, `synchronous=FULL`), redb (`Durability::Immediate`) and fjall
//!    (`PersistMode::SyncAll`) behind the same group-commit writer (one thread; takes every
//!    queued append, up to 1024, into one transaction with one sync), doing the store's work
//!    per append: read the stream's head, compare, insert the event, move the head. 100
//!    concurrent writers against 1 (one sync per event). Then whether a second *process*
//!    can open the file while the first has it open (this binary re-executed as `--probe`).
//! 2. **actors**: events/s with 1, 100 and 10 000 persistent actors (`Journaled`, each
//!    persisting back to back through `ask`, and each *told* its events up front, persisting
//!    them from its mailbox), against the raw store (`Journal::append` from as many plain
//!    tasks, same counts, no actors), and against one sync per event.
//! 3. **latency**: 10 000 persists/s offered by an open-loop driver over 1 000 actors for
//!    3 s; the p50/p99/max of the ask round trip (send → durable → reply).
//! 4. **recovery**: time from spawn to the first reply of an actor with 10 000 events,
//!    without and with a snapshot (median of 5).
//!
//! Sections 2–4 run on SQLite, then on a PostgreSQL server this binary starts itself
//! (`postbox_persistence::tck::postgres::PgServer`). `--no-engines`, `--no-sqlite` and
//! `--no-postgres` skip parts; `--only-throughput` runs section 2 alone.
//!
//! ```sh
//! cargo bench -p postbox-benches --bench persistence
//! ```

use postbox::prelude::*;
use postbox_persistence::prelude::*;
use postbox_persistence::tck::postgres::PgServer;
use postbox_persistence::{Record, SqliteStore, Store};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------------------------------
// 1. Engines under group commit

/// One append as the engines see it: stream, expected head, one event.
struct Append {
    stream: u32,
    expected: u64,
    payload: Vec<u8>,
}

trait Engine: Send + 'static {
    /// Runs the batch in one durable transaction; `true` for each append that was stored.
    fn commit(&mut self, batch: &[Append]) -> Vec<bool>;
}

struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn open(path: &Path) -> Self {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("full");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS journal (stream INTEGER, seq INTEGER, payload BLOB,
                 PRIMARY KEY (stream, seq)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS heads (stream INTEGER PRIMARY KEY, seq INTEGER)
                 WITHOUT ROWID;",
        )
        .expect("schema");
        Self(conn)
    }
}

impl Engine for Sqlite {
    fn commit(&mut self, batch: &[Append]) -> Vec<bool> {
        let tx = self
            .0
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        let mut stored = Vec::with_capacity(batch.len());
        for a in batch {
            let head: u64 = tx
                .prepare_cached("SELECT seq FROM heads WHERE stream = ?1")
                .expect("prepare")
                .query_row([a.stream], |row| row.get::<_, i64>(0))
                .map(|s| s as u64)
                .unwrap_or(0);
            if head != a.expected {
                stored.push(false);
                continue;
            }
            let seq = (a.expected + 1) as i64;
            tx.prepare_cached("INSERT INTO journal VALUES (?1, ?2, ?3)")
                .expect("prepare")
                .execute(rusqlite::params![a.stream, seq, a.payload])
                .expect("insert");
            tx.prepare_cached(
                "INSERT INTO heads VALUES (?1, ?2)
                 ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq",
            )
            .expect("prepare")
            .execute(rusqlite::params![a.stream, seq])
            .expect("head");
            stored.push(true);
        }
        tx.commit().expect("commit");
        stored
    }
}

const REDB_JOURNAL: redb::TableDefinition<(u32, u64), &[u8]> =
    redb::TableDefinition::new("journal");
const REDB_HEADS: redb::TableDefinition<u32, u64> = redb::TableDefinition::new("heads");

struct Redb(redb::Database);

impl Engine for Redb {
    fn commit(&mut self, batch: &[Append]) -> Vec<bool> {
        let mut tx = self.0.begin_write().expect("begin");
        tx.set_durability(redb::Durability::Immediate);
        let mut stored = Vec::with_capacity(batch.len());
        {
            let mut journal = tx.open_table(REDB_JOURNAL).expect("journal");
            let mut heads = tx.open_table(REDB_HEADS).expect("heads");
            for a in batch {
                let head = heads.get(a.stream).expect("get").map_or(0, |v| v.value());
                if head != a.expected {
                    stored.push(false);
                    continue;
                }
                let seq = a.expected + 1;
                journal
                    .insert((a.stream, seq), a.payload.as_slice())
                    .expect("insert");
                heads.insert(a.stream, seq).expect("head");
                stored.push(true);
            }
        }
        tx.commit().expect("commit");
        stored
    }
}

struct Fjall {
    keyspace: fjall::Keyspace,
    journal: fjall::PartitionHandle,
    heads: fjall::PartitionHandle,
}

impl Fjall {
    fn open(path: &Path) -> fjall::Result<Self> {
        let keyspace = fjall::Config::new(path).open()?;
        let journal = keyspace.open_partition("journal", Default::default())?;
        let heads = keyspace.open_partition("heads", Default::default())?;
        Ok(Self {
            keyspace,
            journal,
            heads,
        })
    }
}

impl Engine for Fjall {
    fn commit(&mut self, batch: &[Append]) -> Vec<bool> {
        // The writer is the only one: reads see everything committed before, and a stream
        // appears once per batch in this benchmark, so heads need no in-batch overlay.
        let mut tx = self
            .keyspace
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        let mut stored = Vec::with_capacity(batch.len());
        for a in batch {
            let head = self
                .heads
                .get(a.stream.to_be_bytes())
                .expect("get")
                .map_or(0, |v| {
                    u64::from_be_bytes(v.as_ref().try_into().expect("8 bytes"))
                });
            if head != a.expected {
                stored.push(false);
                continue;
            }
            let seq = a.expected + 1;
            let mut key = a.stream.to_be_bytes().to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            tx.insert(&self.journal, key, a.payload.clone());
            tx.insert(&self.heads, a.stream.to_be_bytes(), seq.to_be_bytes());
            stored.push(true);
        }
        tx.commit().expect("commit");
        stored
    }
}

type Request = (Append, oneshot::Sender<bool>);

/// The group-commit writer thread of the engine comparison (the same loop as the stores').
fn writer(mut engine: impl Engine) -> (mpsc::Sender<Request>, std::thread::JoinHandle<u64>) {
    let (tx, mut rx) = mpsc::channel::<Request>(8192);
    let thread = std::thread::spawn(move || {
        let mut commits = 0;
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let (appends, replies): (Vec<Append>, Vec<_>) = batch.into_iter().unzip();
            let stored = engine.commit(&appends);
            commits += 1;
            for (reply, ok) in replies.into_iter().zip(stored) {
                let _ = reply.send(ok);
            }
        }
        commits
    });
    (tx, thread)
}

/// Events/s of `writers` tasks each appending `each` events to a stream of its own.
async fn drive_engine(engine: impl Engine, writers: u32, each: u64) -> (f64, u64) {
    let (tx, thread) = writer(engine);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for stream in 0..writers {
        let tx = tx.clone();
        tasks.spawn(async move {
            for expected in 0..each {
                let (reply, stored) = oneshot::channel();
                let payload = vec![(expected % 251) as u8; 64];
                tx.send((
                    Append {
                        stream,
                        expected,
                        payload,
                    },
                    reply,
                ))
                .await
                .expect("writer");
                assert!(stored.await.expect("reply"), "append refused");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer task");
    }
    let elapsed = started.elapsed();
    drop(tx);
    let commits = tokio::task::spawn_blocking(move || thread.join().expect("writer thread"))
        .await
        .expect("join");
    (
        (writers as u64 * each) as f64 / elapsed.as_secs_f64(),
        commits,
    )
}

async fn engines() {
    const ROUNDS: usize = 3;
    println!(
        "\n== engines: group commit (100 writers × 50) vs one sync per event (1 writer × 200), \
         median of {ROUNDS} rounds, engines taking turns"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let engines = ["sqlite", "redb", "fjall"];
    let mut rates: Vec<[Vec<f64>; 2]> = engines.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut commits: Vec<[u64; 2]> = engines.iter().map(|_| [0, 0]).collect();
    for round in 0..ROUNDS {
        for (e, name) in engines.iter().enumerate() {
            for (k, (writers, each)) in [(100u32, 50u64), (1, 200)].into_iter().enumerate() {
                let path = dir.path().join(format!("{name}-{round}-{k}"));
                let (rate, n) = match *name {
                    "sqlite" => drive_engine(Sqlite::open(&path), writers, each).await,
                    "redb" => {
                        let db = redb::Database::create(&path).expect("redb");
                        drive_engine(Redb(db), writers, each).await
                    }
                    _ => drive_engine(Fjall::open(&path).expect("fjall"), writers, each).await,
                };
                rates[e][k].push(rate);
                commits[e][k] = n;
            }
        }
    }
    for (e, name) in engines.iter().enumerate() {
        let group = median(rates[e][0].clone());
        let single = median(rates[e][1].clone());
        println!(
            "{name:>6}: 100 writers {group:>8.0} ev/s ({} commits for 5000); 1 writer {single:>6.0} \
             ev/s; group commit ÷ one sync per event {:.1}×",
            commits[e][0],
            group / single
        );
    }
    multi_process(dir.path());
}

/// Whether a second process can open a store the first holds open.
fn multi_process(dir: &Path) {
    println!("\n== a second process opening a store this process holds open");
    let sqlite_path = dir.join("mp-sqlite");
    let _sqlite = Sqlite::open(&sqlite_path);
    let redb_path = dir.join("mp-redb");
    let _redb = redb::Database::create(&redb_path).expect("redb");
    let fjall_path = dir.join("mp-fjall");
    let _fjall = Fjall::open(&fjall_path).expect("fjall");
    for (name, path) in [
        ("sqlite", &sqlite_path),
        ("redb", &redb_path),
        ("fjall", &fjall_path),
    ] {
        let output = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--probe", name])
            .arg(path)
            .output()
            .expect("probe");
        println!(
            "{name:>6}: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
}

/// `--probe <engine> <path>`: open the store and append one event; report what happened.
fn probe(engine: &str, path: &Path) {
    let append = || Append {
        stream: 7,
        expected: 0,
        payload: vec![1],
    };
    let outcome = match engine {
        "sqlite" => {
            let stored = Sqlite::open(path).commit(&[append()]);
            format!("opened and wrote (stored: {})", stored[0])
        }
        "redb" => match redb::Database::create(path) {
            Ok(db) => format!(
                "opened and wrote (stored: {})",
                Redb(db).commit(&[append()])[0]
            ),
            Err(e) => format!("refused: {e}"),
        },
        _ => match Fjall::open(path) {
            Ok(mut db) => format!(
                "opened and wrote without any lock (stored: {}); fjall's README forbids a \
                 keyspace open in two processes",
                db.commit(&[append()])[0]
            ),
            Err(e) => format!("refused: {e}"),
        },
    };
    println!("{outcome}");
}

// ---------------------------------------------------------------------------------------
// 2–4. Persistent actors

#[derive(Serialize, Deserialize)]
struct Deposited(u64);
impl Versioned for Deposited {
    const TAG: &'static str = "bench.deposited";
}

#[derive(Default, Serialize, Deserialize)]
struct Balance {
    total: u64,
    deposits: u64,
}
impl Versioned for Balance {
    const TAG: &'static str = "bench.balance";
}
impl EventSourced for Balance {
    type Event = Deposited;
    fn apply(&mut self, Deposited(n): &Deposited) {
        self.total += n;
        self.deposits += 1;
    }
}

struct Account {
    balance: Journaled<Balance>,
}
impl Actor for Account {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.balance.recover().await?;
        Ok(())
    }
}

struct Deposit(u64);
impl Message for Deposit {
    type Reply = Result<u64, PersistError>;
}
impl Handler<Deposit> for Account {
    async fn handle(
        &mut self,
        Deposit(n): Deposit,
        ctx: &mut Context<Self>,
    ) -> Result<u64, PersistError> {
        self.balance.persist(ctx, Deposited(n)).await?;
        Ok(self.balance.state().deposits)
    }
}

struct Deposits;
impl Message for Deposits {
    type Reply = u64;
}
impl Handler<Deposits> for Account {
    async fn handle(&mut self, _: Deposits, _: &mut Context<Self>) -> u64 {
        self.balance.state().deposits
    }
}

fn account(persistence: &Persistence, id: String) -> Props<Account> {
    let persistence = persistence.clone();
    let id = PersistenceId::new(id);
    Props::new(move || Account {
        balance: persistence.journaled(id.clone()),
    })
}

/// `n` accounts of the run `run` in a new system, each recovered (and so ready) before this
/// returns.
async fn recovered_accounts(
    persistence: &Persistence,
    run: &str,
    n: usize,
) -> (ActorSystem, Vec<ActorRef<Account>>) {
    let system = ActorSystem::new();
    let accounts: Vec<ActorRef<Account>> = (0..n)
        .map(|i| {
            system
                .spawn(account(persistence, format!("{run}|{i}")))
                .expect("spawn")
        })
        .collect();
    for account in &accounts {
        account.ask(Deposits).await.expect("recovered");
    }
    (system, accounts)
}

/// How the bench's actors get their events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Each event is asked for, the next one sent once the reply is back.
    Asked,
    /// Every event is told up front (fire and forget, the usual way to feed an actor) and
    /// persisted one after another from the mailbox: no reply per event, so no asker to
    /// wake. One ask per actor at the end reads its count, which is every deposit only if
    /// every persist succeeded (a failed one fails the actor and restarts it).
    Told,
}

/// Events/s of `n` actors each persisting `each` events, fed as `feed` says.
async fn drive_actors(
    persistence: &Persistence,
    run: &str,
    n: usize,
    each: u64,
    feed: Feed,
) -> f64 {
    let (system, accounts) = recovered_accounts(persistence, run, n).await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for account in accounts {
        tasks.spawn(async move {
            for i in 0..each {
                match feed {
                    Feed::Asked => {
                        let done = account
                            .ask(Deposit(i))
                            .await
                            .expect("ask")
                            .expect("persist");
                        assert_eq!(done, i + 1);
                    }
                    Feed::Told => account.tell(Deposit(i)).await.expect("tell"),
                }
            }
            if feed == Feed::Told {
                let done = account.ask(Deposits).await.expect("ask");
                assert_eq!(done, each, "every told deposit persisted");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let rate = (n as u64 * each) as f64 / started.elapsed().as_secs_f64();
    system.shutdown().await;
    rate
}

/// The same appends straight into the store from plain tasks.
async fn drive_raw(store: Arc<dyn Store>, run: &str, n: usize, each: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let store = store.clone();
        let id = PersistenceId::new(format!("{run}|{i}"));
        tasks.spawn(async move {
            for seq in 0..each {
                let event = Record::encode(&Deposited(seq)).expect("encode");
                store.append(&id, seq, vec![event]).await.expect("append");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    (n as u64 * each) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Rounds of each size, raw and actors alternating (which goes first alternates too), so that
/// the drift of a shared disk's sync latency hits both; medians are reported.
async fn throughput(store: &Arc<dyn Store>, persistence: &Persistence, label: &str) {
    const ROUNDS: usize = 5;
    println!(
        "\n== {label}: persisted events/s, actors vs the raw store (same appends, no actors), \
         median of {ROUNDS} alternating rounds"
    );
    let mut single = 0.0;
    for (n, each) in [(1usize, 200u64), (100, 100), (10_000, 5)] {
        let (mut raw, mut actors, mut told) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let run = postbox_persistence::tck::fresh_prefix();
            let raw_first = round % 2 == 0;
            if raw_first {
                raw.push(drive_raw(store.clone(), &format!("{run}-raw"), n, each).await);
            }
            let actors_run = format!("{run}-actors");
            actors.push(drive_actors(persistence, &actors_run, n, each, Feed::Asked).await);
            let told_run = format!("{run}-told");
            told.push(drive_actors(persistence, &told_run, n, each, Feed::Told).await);
            if !raw_first {
                raw.push(drive_raw(store.clone(), &format!("{run}-raw"), n, each).await);
            }
        }
        let (raw, actors, told) = (median(raw), median(actors), median(told));
        if n == 1 {
            single = raw;
        }
        println!(
            "{label}: {n:>6} actors: asked {actors:>9.0} ev/s, told {told:>9.0} ev/s; \
             raw {raw:>9.0} ev/s; ÷ raw: asked {:.2}, told {:.2}; \
             ÷ one sync per event (raw, 1 writer): asked {:.1}×, told {:.1}×",
            actors / raw,
            told / raw,
            actors / single,
            told / single
        );
    }
}

async fn latency(persistence: &Persistence, label: &str) {
    const ACTORS: usize = 1_000;
    const PER_MS: usize = 10;
    const SECONDS: u64 = 3;
    println!("\n== {label}: persist latency at 10 000 persists/s offered over {ACTORS} actors, {SECONDS} s");
    let system = ActorSystem::new();
    let run = postbox_persistence::tck::fresh_prefix();
    let accounts: Vec<ActorRef<Account>> = (0..ACTORS)
        .map(|i| {
            system
                .spawn(account(persistence, format!("{run}|{i}")))
                .expect("spawn")
        })
        .collect();
    for account in &accounts {
        account.ask(Deposits).await.expect("recovered");
    }
    let samples = Arc::new(Mutex::new(Vec::with_capacity(40_000)));
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(SECONDS) {
        ticks.tick().await;
        for _ in 0..PER_MS {
            let account = accounts[next % ACTORS].clone();
            next += 1;
            let samples = samples.clone();
            tasks.spawn(async move {
                let sent = Instant::now();
                account
                    .ask(Deposit(1))
                    .await
                    .expect("ask")
                    .expect("persist");
                samples.lock().expect("samples").push(sent.elapsed());
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let offered = next as f64 / started.elapsed().as_secs_f64();
    let mut samples = std::mem::take(&mut *samples.lock().expect("samples"));
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{label}: {} persists ({offered:.0}/s offered): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
    system.shutdown().await;
}

async fn recovery(persistence: &Persistence, label: &str) {
    println!(
        "\n== {label}: recovery of an actor with 10 000 events (spawn → first reply, median of 5)"
    );
    let run = postbox_persistence::tck::fresh_prefix();
    let id = PersistenceId::new(format!("{run}|recover"));
    for batch in 0..10u64 {
        let events = (0..1_000)
            .map(|i| Record::encode(&Deposited(i)).expect("encode"))
            .collect();
        persistence
            .journal()
            .append(&id, batch * 1_000, events)
            .await
            .expect("append");
    }
    let system = ActorSystem::new();
    let measure = |snapshot: bool| {
        let system = system.clone();
        let persistence = persistence.clone();
        let id = id.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let actor = system
                    .spawn(account(&persistence, id.to_string()))
                    .expect("spawn");
                assert_eq!(actor.ask(Deposits).await.expect("ask"), 10_000);
                times.push(started.elapsed());
                actor.stop();
                actor.wait_for_stop().await;
            }
            times.sort();
            println!(
                "{label}: {} snapshot: {:.2} ms",
                if snapshot { "with a" } else { "without" },
                times[2].as_secs_f64() * 1e3
            );
        }
    };
    measure(false).await;
    let state = Balance {
        total: (0..1_000u64).sum::<u64>() * 10,
        deposits: 10_000,
    };
    persistence
        .snapshot_store()
        .save_snapshot(&id, 10_000, Record::encode(&state).expect("encode"))
        .await
        .expect("snapshot");
    measure(true).await;
    system.shutdown().await;
}

async fn actors_on(store: Arc<dyn Store>, label: &str, only_throughput: bool) {
    let persistence = Persistence::from_parts(store.clone(), store.clone(), store.clone());
    throughput(&store, &persistence, label).await;
    if !only_throughput {
        latency(&persistence, label).await;
        recovery(&persistence, label).await;
    }
    if let Some(commit) = persistence.stats().commit {
        let d = &commit.batch_size;
        println!(
            "{label}: {} commits, {:.1} events per commit on average, p99 batch ≤ {:?} events, \
             queue full {} times",
            commit.commits,
            d.sum / d.count.max(1) as f64,
            d.quantile_bound(0.99),
            commit.queue_full
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--probe") {
        return probe(&args[i + 1], Path::new(&args[i + 2]));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let only_throughput = args.iter().any(|a| a == "--only-throughput");
        if !only_throughput && !args.iter().any(|a| a == "--no-engines") {
            engines().await;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        if !args.iter().any(|a| a == "--no-sqlite") {
            let sqlite: Arc<dyn Store> = Arc::new(
                SqliteStore::open(dir.path().join("bench.db"))
                    .await
                    .expect("sqlite"),
            );
            actors_on(sqlite, "sqlite", only_throughput).await;
        }
        if !args.iter().any(|a| a == "--no-postgres") {
            let server = tokio::task::spawn_blocking(PgServer::start)
                .await
                .expect("join")
                .expect("postgres");
            let pg: Arc<dyn Store> = Arc::new(
                postbox_persistence::PostgresStore::connect(&server.url())
                    .await
                    .expect("postgres store"),
            );
            actors_on(pg, "postgres", only_throughput).await;
        }
    });
}

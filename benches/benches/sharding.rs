//! Sharded entities against a direct remote `ActorRef` (plain `main`, `harness = false`).
//!
//! Nodes in this process, each its own `ActorSystem`, `Remote` and `Cluster` (postbox-testkit's
//! `TestCluster`), over loopback TCP. In the same run:
//!
//! - **tells**: node 0 sends `n` tells of a 100-byte payload to an entity hosted on node 1,
//!   through an `EntityRef`, then asks it for its count (FIFO behind the tells); the same
//!   through a direct remote `ActorRef` to an actor of the same type on node 1. Five
//!   alternating rounds of each; throughput = `n` / time until the count comes back, the
//!   median of the rounds.
//! - **asks**: `k` sequential asks each way: p50 and p99.
//! - **activation**: `k` asks to entities that do not exist yet (each starts on its first
//!   message) against asks to one that does: p50.
//! - **move**: one node hosts 2 000 shards (an entity in each); a second joins and 1 000 of
//!   them move to it: time from "every node sees both up" until every entity of a moved shard
//!   answered from the new node.
//! - **kill**: three nodes (default failure detection); the one hosting a third of 300
//!   entities is killed (its gossip stops without a word and its transport shuts down, as
//!   SIGKILL would do to a process); time until every one of its entities answers again
//!   from another node.
//!
//! - **remember**: first-message latency with remember entities off, on over the in-memory
//!   store, and on over SQLite (the embedded default), each on a fresh two-node cluster
//!   whose 100 shards were all made active first; then how long until every started entity
//!   is recorded.
//!
//! Usage: `cargo bench --bench sharding -- [--tells N] [--asks K]` (defaults 200 000, 5 000).

use postbox::prelude::*;
use postbox_cluster::FailureDetection;
use postbox_persistence::Persistence;
use postbox_remote::{remote_actor, remote_message};
use postbox_sharding::{entity, Entities, EntityType, Sharding};
use postbox_testkit::TestCluster;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Sink {
    count: u64,
    node: String,
}
impl Actor for Sink {}

#[derive(Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);
impl Message for Blob {
    type Reply = ();
    remote_message!("bench.sharding.Blob");
}
impl Handler<Blob> for Sink {
    async fn handle(&mut self, _: Blob, _: &mut Context<Self>) {
        self.count += 1;
    }
}

#[derive(Serialize, Deserialize)]
struct Count;
impl Message for Count {
    type Reply = u64;
    remote_message!("bench.sharding.Count");
}
impl Handler<Count> for Sink {
    async fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u64 {
        self.count
    }
}

#[derive(Serialize, Deserialize)]
struct Where;
impl Message for Where {
    type Reply = String;
    remote_message!("bench.sharding.Where");
}
impl Handler<Where> for Sink {
    async fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
        self.node.clone()
    }
}

remote_actor!(Sink: Blob, Count, Where);
entity!(Sink: Blob, Count, Where);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn register(cluster: &TestCluster, index: usize, shards: u32) -> Entities<Sink> {
    register_remembering(cluster, index, shards, None)
}

fn register_remembering(
    cluster: &TestCluster,
    index: usize,
    shards: u32,
    remember: Option<&Persistence>,
) -> Entities<Sink> {
    let node = cluster.node(index);
    let name = node.name().to_owned();
    let mut entity_type = EntityType::new("sink", move |_: &str| Sink {
        count: 0,
        node: name.clone(),
    })
    .shards(shards)
    .buffer(100_000)
    .ask_timeout(Duration::from_secs(30));
    if let Some(persistence) = remember {
        entity_type = entity_type.remember_entities(persistence);
    }
    Sharding::new(&node.system, &node.remote, &node.cluster)
        .register(entity_type)
        .expect("register")
}

/// Rounds of tells per path, alternating.
const ROUNDS: usize = 5;

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// An id whose entity lives on node `want`, as seen through `entities`.
async fn id_on(entities: &Entities<Sink>, want: &str, prefix: &str) -> String {
    for i in 0.. {
        let id = format!("{prefix}-{i}");
        if entities.entity_ref(&id).ask(Where).await.expect("where") == want {
            return id;
        }
    }
    unreachable!()
}

async fn throughput_and_latency(tells: usize, asks: usize) {
    let cluster = TestCluster::start(2).await;
    let entities = register(&cluster, 0, 100);
    let hosting = register(&cluster, 1, 100);
    let far = cluster.node(1).name().to_owned();
    let id = id_on(&entities, &far, "sink").await;
    let entity = entities.entity_ref(&id);

    cluster.node(1).remote.expose::<Sink>();
    let direct_actor = cluster
        .node(1)
        .system
        .spawn(Props::new({
            let far = far.clone();
            move || Sink {
                count: 0,
                node: far.clone(),
            }
        }))
        .expect("spawn");
    cluster
        .node(1)
        .system
        .registry()
        .register("direct", &direct_actor)
        .expect("register");
    let direct: ActorRef<Sink> = cluster
        .node(0)
        .remote
        .lookup(cluster.node(1).addr(), "direct")
        .await
        .expect("lookup");

    let payload = vec![7u8; 100];
    // Warm both paths.
    for _ in 0..1_000 {
        entity.tell(Blob(payload.clone())).await.expect("tell");
        direct.tell(Blob(payload.clone())).await.expect("tell");
    }
    // Alternating rounds, medians: the two paths see the same drift of a shared machine.
    let (mut direct_rates, mut entity_rates) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let base = direct.ask(Count).await.expect("count");
        let started = Instant::now();
        for _ in 0..tells {
            direct.tell(Blob(payload.clone())).await.expect("tell");
        }
        assert_eq!(direct.ask(Count).await.expect("count"), base + tells as u64);
        direct_rates.push(tells as f64 / started.elapsed().as_secs_f64());

        let base = entity.ask(Count).await.expect("count");
        let started = Instant::now();
        for _ in 0..tells {
            entity.tell(Blob(payload.clone())).await.expect("tell");
        }
        assert_eq!(entity.ask(Count).await.expect("count"), base + tells as u64);
        entity_rates.push(tells as f64 / started.elapsed().as_secs_f64());
    }
    let (direct_rate, entity_rate) = (median(&mut direct_rates), median(&mut entity_rates));
    let sent_direct = entities.snapshot().await.expect("snapshot").counters.direct;
    let received_direct = hosting.snapshot().await.expect("snapshot").counters.direct;
    println!(
        "tells (median of {ROUNDS} alternating rounds): direct {direct_rate:.0}/s, entity \
         {entity_rate:.0}/s, entity ÷ direct {:.2}× (entity messages past the sender's region \
         {sent_direct}, past the home's {received_direct})",
        entity_rate / direct_rate
    );

    let mut direct_asks = Vec::with_capacity(asks);
    let mut entity_asks = Vec::with_capacity(asks);
    for _ in 0..asks {
        let t = Instant::now();
        direct.ask(Where).await.expect("ask");
        direct_asks.push(t.elapsed());
        let t = Instant::now();
        entity.ask(Where).await.expect("ask");
        entity_asks.push(t.elapsed());
    }
    let (d50, d99) = (
        percentile(&mut direct_asks, 0.5),
        percentile(&mut direct_asks, 0.99),
    );
    let (e50, e99) = (
        percentile(&mut entity_asks, 0.5),
        percentile(&mut entity_asks, 0.99),
    );
    println!(
        "asks: direct p50 {} p99 {}, entity p50 {} p99 {}, direct ÷ entity (p50) {:.2}×",
        micros(d50),
        micros(d99),
        micros(e50),
        micros(e99),
        d50.as_secs_f64() / e50.as_secs_f64()
    );

    // First-message activation, on whichever node the shard lives.
    let mut first = Vec::with_capacity(asks / 5);
    for i in 0..asks / 5 {
        let fresh = entities.entity_ref(format!("fresh-{i}"));
        let t = Instant::now();
        fresh.ask(Count).await.expect("ask");
        first.push(t.elapsed());
    }
    let mut again = Vec::with_capacity(asks / 5);
    for i in 0..asks / 5 {
        let known = entities.entity_ref(format!("fresh-{i}"));
        let t = Instant::now();
        known.ask(Count).await.expect("ask");
        again.push(t.elapsed());
    }
    let (f50, a50) = (percentile(&mut first, 0.5), percentile(&mut again, 0.5));
    println!(
        "activation: first message p50 {} (p99 {}), active entity p50 {}, ratio {:.2}×",
        micros(f50),
        micros(percentile(&mut first, 0.99)),
        micros(a50),
        f50.as_secs_f64() / a50.as_secs_f64()
    );
    let mut cluster = cluster;
    cluster.shutdown().await;
}

/// One id per shard, for `shards` shards.
fn one_per_shard(entities: &Entities<Sink>, shards: u32) -> Vec<String> {
    let _ = entities;
    // The shard of an id is FNV-1a modulo the count (postbox-sharding's `shard_of`).
    let fnv = |text: &str| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in text.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % u64::from(shards)) as u32
    };
    let mut ids = vec![None; shards as usize];
    let mut filled = 0;
    for i in 0.. {
        let id = format!("e-{i}");
        let shard = fnv(&id) as usize;
        if ids[shard].is_none() {
            ids[shard] = Some(id);
            filled += 1;
            if filled == shards as usize {
                break;
            }
        }
    }
    ids.into_iter().flatten().collect()
}

async fn ask_all(entities: &Entities<Sink>, ids: &[String]) -> Vec<String> {
    let mut asks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let entity = entities.entity_ref(id);
        asks.spawn(async move {
            // An ask in flight to a node that is lost fails (`NodeDown`): ask again.
            loop {
                if let Ok(home) = entity.ask(Where).await {
                    return (i, home);
                }
            }
        });
    }
    let mut homes = vec![String::new(); ids.len()];
    while let Some(done) = asks.join_next().await {
        let (i, home) = done.expect("ask");
        homes[i] = home;
    }
    homes
}

async fn move_to_a_joining_node() {
    const SHARDS: u32 = 2_000;
    let mut cluster = TestCluster::builder().nodes(1).start().await;
    let first = register(&cluster, 0, SHARDS);
    let ids = one_per_shard(&first, SHARDS);
    ask_all(&first, &ids).await;
    cluster.add_node().await;
    let started = Instant::now();
    let _second = register(&cluster, 1, SHARDS);
    let joined = cluster.node(1).name().to_owned();
    let homes = ask_all(&first, &ids).await;
    let moved = homes.iter().filter(|h| **h == joined).count();
    println!(
        "move: {moved} of {SHARDS} shards to the joining node, every moved entity answering there after {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    cluster.shutdown().await;
}

async fn kill_a_host() {
    let mut cluster = TestCluster::builder()
        .nodes(3)
        .failure_detection(FailureDetection::default())
        .start()
        .await;
    let entities: Vec<Entities<Sink>> = (0..3).map(|i| register(&cluster, i, 100)).collect();
    let ids: Vec<String> = (0..300).map(|i| format!("k-{i}")).collect();
    let homes = ask_all(&entities[0], &ids).await;
    let victim = cluster.node(2).name().to_owned();
    let lost: Vec<String> = ids
        .iter()
        .zip(&homes)
        .filter(|(_, home)| **home == victim)
        .map(|(id, _)| id.clone())
        .collect();
    let started = Instant::now();
    cluster.kill(2).await;
    let homes = ask_all(&entities[0], &lost).await;
    assert!(homes.iter().all(|home| *home != victim));
    println!(
        "kill: {} entities of the killed node all answering again after {:.0} ms",
        lost.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    cluster.shutdown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scale: usize = std::env::var("POSTBOX_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let tells = arg("--tells", 200_000) * scale;
    let asks = arg("--asks", 5_000) * scale;
    if std::env::args().any(|a| a == "--remember-only") {
        remember_cost(asks / 5).await;
        return;
    }
    throughput_and_latency(tells, asks).await;
    move_to_a_joining_node().await;
    kill_a_host().await;
    remember_cost(asks / 5).await;
}

/// First-message latency with remember entities off and on.
async fn remember_cost(k: usize) {
    const SHARDS: u32 = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Persistence::sqlite(dir.path().join("remember.db"))
        .await
        .expect("sqlite");
    let modes: [(&str, Option<Persistence>); 3] = [
        ("off", None),
        ("on, in memory", Some(Persistence::in_memory())),
        ("on, sqlite", Some(sqlite)),
    ];
    let mut off_p50 = None;
    for (mode, remember) in modes {
        let mut cluster = TestCluster::start(2).await;
        let entities = register_remembering(&cluster, 0, SHARDS, remember.as_ref());
        let other = register_remembering(&cluster, 1, SHARDS, remember.as_ref());
        // Every shard active, so that only entity starts are measured.
        let warm = one_per_shard(&entities, SHARDS);
        for id in &warm {
            entities.entity_ref(id).ask(Count).await.expect("ask");
        }
        let mut first = Vec::with_capacity(k);
        let started = Instant::now();
        for i in 0..k {
            let fresh = entities.entity_ref(format!("fresh-{i}"));
            let t = Instant::now();
            fresh.ask(Count).await.expect("ask");
            first.push(t.elapsed());
        }
        let asked = started.elapsed();
        let recorded = if remember.is_some() {
            loop {
                let here = entities.snapshot().await.expect("snapshot").remembered;
                let there = other.snapshot().await.expect("snapshot").remembered;
                if here + there >= k + warm.len() {
                    break started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            asked
        };
        let (p50, p99) = (percentile(&mut first, 0.5), percentile(&mut first, 0.99));
        let ratio = off_p50.map_or(1.0, |off: Duration| p50.as_secs_f64() / off.as_secs_f64());
        off_p50.get_or_insert(p50);
        println!(
            "remember {mode}: first message p50 {} p99 {} ({ratio:.2}× off); {k} asks in {:.0} ms, all recorded after {:.0} ms",
            micros(p50),
            micros(p99),
            asked.as_secs_f64() * 1e3,
            recorded.as_secs_f64() * 1e3,
        );
        cluster.shutdown().await;
    }
}

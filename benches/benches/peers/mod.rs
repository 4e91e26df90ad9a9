//! Shared scenario parameters and helpers for the peer benchmarks.
//!
//! Every peer module (`raw`, `actix`, `kameo`, `ractor`) implements the same set of
//! self-contained scenario functions. Each one builds its own runtime (or actix `System`),
//! spawns what it needs, measures only the core part with [`std::time::Instant`], tears
//! everything down and returns the measured [`Duration`], so criterion can drive it through
//! `iter_custom`.
//!
//! This module holds what the peers share:
//! - the default scenario sizes and their environment-variable overrides ([`Params`]);
//! - a tokio runtime builder matching the brief (multi-thread, 2 workers, all drivers);
//! - completion latches ([`Countdown`], [`Done`]) used only to *observe* that a scenario has
//!   finished — the scenario traffic itself always goes through the peer's own actors;
//! - the small deterministic pieces of the Savina workloads (fork-join work item, xorshift RNG,
//!   chameneos colours);
//! - resident-set-size measurement for the memory binary;
//! - the criterion group settings and the one-line-per-peer registration helper ([`group`],
//!   [`bench_peer`]).
//!
//! # Environment overrides
//! - `POSTBOX_BENCH_SCALE=<f64>` multiplies every count (default `1.0`), clamped to sane minima
//!   (at least 2 actors where a topology needs two, at least 1 message).
//! - `POSTBOX_BENCH_<NAME>=<u64>` sets one parameter exactly (ignores the scale), where `<NAME>`
//!   is one of `TELL_N`, `ASK_N`, `SPAWN_N`, `PING_PONG_N`, `COUNTING_N`, `RING_ACTORS`,
//!   `RING_HOPS`, `FORK_JOIN_ACTORS`, `FORK_JOIN_PER_ACTOR`, `CHAMENEOS_CREATURES`,
//!   `CHAMENEOS_MEETINGS`, `BIG_ACTORS`, `BIG_PINGS`, `MEMORY_ACTORS`.

// Every bench binary pulls in this whole module tree but uses only some scenarios.
#![allow(dead_code)]

pub mod actix;
pub mod kameo;
pub mod postbox;
pub mod ractor;
pub mod raw;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

/// Names of the peers, in the order the benches and the memory table list them.
pub const PEERS: [&str; 5] = ["postbox", "raw", "actix", "kameo", "ractor"];

/// Capacity of the per-actor channel in the `raw` baseline.
pub const RAW_MAILBOX: usize = 1024;

/// Scenario sizes after applying defaults, `POSTBOX_BENCH_SCALE` and per-parameter overrides.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub tell_n: u64,
    pub ask_n: u64,
    pub spawn_n: u64,
    pub ping_pong_n: u64,
    pub counting_n: u64,
    pub ring_actors: usize,
    pub ring_hops: u64,
    pub fork_join_actors: usize,
    pub fork_join_per_actor: u64,
    pub chameneos_creatures: usize,
    pub chameneos_meetings: u64,
    pub big_actors: usize,
    pub big_pings: u64,
    pub memory_actors: u64,
}

impl Params {
    /// Reads the environment once; panics on malformed values so a typo cannot silently run
    /// the default sizes.
    pub fn from_env() -> Self {
        let scale = match std::env::var("POSTBOX_BENCH_SCALE") {
            Ok(s) => s
                .parse::<f64>()
                .expect("POSTBOX_BENCH_SCALE must be a floating-point number"),
            Err(_) => 1.0,
        };
        assert!(scale > 0.0, "POSTBOX_BENCH_SCALE must be positive");
        let get = |name: &str, default: u64, min: u64| -> u64 {
            let key = format!("POSTBOX_BENCH_{name}");
            match std::env::var(&key) {
                Ok(v) => v
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{key} must be an unsigned integer, got {v:?}")),
                Err(_) => ((default as f64 * scale).round() as u64).max(min),
            }
        };
        Params {
            tell_n: get("TELL_N", 2_000_000, 1),
            ask_n: get("ASK_N", 100_000, 1),
            spawn_n: get("SPAWN_N", 100_000, 1),
            ping_pong_n: get("PING_PONG_N", 100_000, 1),
            counting_n: get("COUNTING_N", 1_000_000, 1),
            ring_actors: get("RING_ACTORS", 100, 2) as usize,
            ring_hops: get("RING_HOPS", 1_000_000, 1),
            fork_join_actors: get("FORK_JOIN_ACTORS", 60, 1) as usize,
            fork_join_per_actor: get("FORK_JOIN_PER_ACTOR", 10_000, 1),
            chameneos_creatures: get("CHAMENEOS_CREATURES", 100, 2) as usize,
            chameneos_meetings: get("CHAMENEOS_MEETINGS", 200_000, 1),
            big_actors: get("BIG_ACTORS", 120, 2) as usize,
            big_pings: get("BIG_PINGS", 2_000, 1),
            memory_actors: get("MEMORY_ACTORS", 1_000_000, 1),
        }
    }
}

/// The runtime every tokio-based peer (raw, kameo, ractor) runs on: multi-thread, 2 workers.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the 2-worker tokio runtime failed")
}

/// Runs `scenario` as a task on a fresh 2-worker runtime and returns its output, then drops the
/// runtime (which cancels whatever the scenario left behind).
///
/// The scenario is spawned rather than `block_on`-ed directly, so the "producer"/driver runs on
/// one of the two worker threads like any actor, instead of on a third (the caller's) thread.
pub fn run_on_tokio<F, Fut, T>(scenario: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = tokio_runtime();
    let out = rt
        .block_on(rt.spawn(scenario()))
        .expect("benchmark scenario task panicked");
    drop(rt);
    out
}

/// A latch that fires once `count` arrivals have been recorded. Cloneable; arrivals may come
/// from any thread or runtime (tokio or actix), waiting happens in async code.
#[derive(Clone)]
pub struct Countdown {
    inner: Arc<CountdownInner>,
}

struct CountdownInner {
    remaining: AtomicU64,
    notify: Notify,
}

impl Countdown {
    pub fn new(count: u64) -> Self {
        Countdown {
            inner: Arc::new(CountdownInner {
                remaining: AtomicU64::new(count),
                notify: Notify::new(),
            }),
        }
    }

    /// Records one arrival. Panics if more arrivals than `count` happen, since that means a
    /// scenario double-counted (a broken implementation must not look fast).
    pub fn arrive(&self) {
        let prev = self.inner.remaining.fetch_sub(1, Ordering::AcqRel);
        assert!(prev > 0, "Countdown: more arrivals than expected");
        if prev == 1 {
            // `notify_one` stores a permit if nobody waits yet, so the wake-up cannot be lost.
            self.inner.notify.notify_one();
        }
    }

    /// Waits until every expected arrival happened.
    pub async fn wait(&self) {
        while self.inner.remaining.load(Ordering::Acquire) > 0 {
            self.inner.notify.notified().await;
        }
    }
}

/// A one-shot completion signal that can be cloned into many actors; the first `fire` wins and a
/// second `fire` panics (it would mean the scenario completed twice).
pub struct Done<T> {
    tx: Arc<Mutex<Option<oneshot::Sender<T>>>>,
}

impl<T> Clone for Done<T> {
    fn clone(&self) -> Self {
        Done {
            tx: Arc::clone(&self.tx),
        }
    }
}

impl<T> Done<T> {
    pub fn new() -> (Self, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (
            Done {
                tx: Arc::new(Mutex::new(Some(tx))),
            },
            rx,
        )
    }

    pub fn fire(&self, value: T) {
        let tx = self
            .tx
            .lock()
            .expect("Done mutex poisoned by a panicking actor")
            .take()
            .expect("Done fired twice: the scenario completed more than once");
        // The receiver is only dropped if the measuring side already gave up (panicked).
        let _ = tx.send(value);
    }
}

/// Awaits a completion receiver, panicking with context if the sending side vanished (which
/// means an actor died or the scenario was wired wrong).
pub async fn wait_done<T>(rx: oneshot::Receiver<T>, what: &str) -> T {
    rx.await
        .unwrap_or_else(|_| panic!("{what}: completion signal dropped before firing"))
}

/// Expected sum of `0..n`, as summed by the tell-throughput actor.
pub fn sum_below(n: u64) -> u64 {
    n * (n.saturating_sub(1)) / 2
}

/// The fixed amount of work each fork-join message performs (a few transcendental ops routed
/// through `black_box` so the optimiser cannot drop them).
#[inline]
pub fn fork_join_work(x: u64) -> f64 {
    let v = std::hint::black_box(x as f64 + 1.0);
    let a = v.sin().abs().sqrt();
    let b = (v * 0.5).cos().abs().sqrt();
    std::hint::black_box(a * b + v.sqrt())
}

/// A tiny deterministic xorshift64* generator for the Savina "big" scenario.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // splitmix the seed so that small consecutive seeds give unrelated streams; never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniformly-ish random index in `0..n` different from `me` (requires `n >= 2`).
    pub fn other_than(&mut self, me: usize, n: usize) -> usize {
        let r = (self.next_u64() % (n as u64 - 1)) as usize;
        if r >= me {
            r + 1
        } else {
            r
        }
    }
}

/// Chameneos colours with the Savina complement rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Red,
    Yellow,
    Blue,
    Faded,
}

impl Color {
    /// Initial colour of creature `i`.
    pub fn initial(i: usize) -> Self {
        match i % 3 {
            0 => Color::Red,
            1 => Color::Yellow,
            _ => Color::Blue,
        }
    }

    /// Same colours stay; two different colours become the third one.
    pub fn complement(self, other: Color) -> Color {
        use Color::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Red, Yellow) | (Yellow, Red) => Blue,
            (Red, Blue) | (Blue, Red) => Yellow,
            (Yellow, Blue) | (Blue, Yellow) => Red,
            _ => panic!("chameneos: a faded creature took part in a meeting"),
        }
    }
}

/// What a peer's memory probe measured (filled in by each peer's `memory` function).
#[derive(Clone, Copy, Debug)]
pub struct MemoryReport {
    pub actors: u64,
    pub spawn_time: Duration,
    pub rss_before: u64,
    pub rss_after: u64,
}

/// System page size, read from the ELF auxiliary vector (`AT_PAGESZ`), falling back to 4 KiB.
pub fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    if let Ok(auxv) = std::fs::read("/proc/self/auxv") {
        for pair in auxv.chunks_exact(16) {
            let key = u64::from_ne_bytes(pair[..8].try_into().expect("8-byte auxv key"));
            let val = u64::from_ne_bytes(pair[8..].try_into().expect("8-byte auxv value"));
            if key == AT_PAGESZ {
                return val;
            }
        }
    }
    4096
}

/// Current resident set size in bytes, from `/proc/self/statm` (second field, in pages).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("/proc/self/statm has a resident field")
        .parse()
        .expect("/proc/self/statm resident field is a number");
    pages * page_size()
}

/// Criterion settings shared by every scenario group: flat sampling (each sample runs the same
/// number of iterations, so a ~1 s scenario costs ~10 runs instead of criterion's linear
/// 1+2+…+10 = 55), 10 samples, short warm-up and measurement windows, and the scenario's
/// message/element count as throughput.
pub fn group<'a>(
    c: &'a mut criterion::Criterion,
    name: &str,
    elements: u64,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(criterion::SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(criterion::Throughput::Elements(elements));
    g
}

/// Registers one peer's implementation of a scenario as benchmark `<group>/<peer>`; `run` is a
/// self-contained scenario returning its measured duration (criterion's `iter_custom`).
pub fn bench_peer<F>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    peer: &str,
    mut run: F,
) where
    F: FnMut() -> Duration,
{
    g.bench_function(peer, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run()).sum())
    });
}

//! Load-aware routing against blind routing, with skewed handler costs (plain `main`,
//! `harness = false`).
//!
//! A pool of 8 routees serves asks from 16 concurrent clients (closed loop: each client sends
//! its next ask when the previous one is answered). One message in ten is slow — it waits 2 ms
//! on a simulated dependency — the others take ~20 µs of CPU. Blind strategies (round-robin,
//! random) keep queueing messages behind a routee that is stuck on a slow one; smallest-mailbox
//! reads every routee's load (mailbox depth + message in hand, O(1) each) and sends to an idle
//! one. The same workload runs once per strategy on one 2-worker tokio runtime; the table
//! shows ask latency percentiles and throughput, and the ratios against round-robin.
//!
//! Usage: `cargo bench --bench routing -- [--asks N]` (asks per client, default 1000 ×
//! `POSTBOX_BENCH_SCALE`).

use postbox::prelude::*;
use postbox::{Router, Routing};
use std::time::{Duration, Instant};

const ROUTEES: usize = 8;
const CLIENTS: usize = 16;
const SLOW_EVERY: u64 = 10;
const SLOW: Duration = Duration::from_millis(2);
const FAST: Duration = Duration::from_micros(20);

struct Worker;
impl Actor for Worker {}

struct Request(u64);
impl Message for Request {
    type Reply = ();
}

impl Handler<Request> for Worker {
    async fn handle(&mut self, Request(n): Request, _: &mut Context<Self>) {
        if n % SLOW_EVERY == 0 {
            tokio::time::sleep(SLOW).await;
        } else {
            let until = Instant::now() + FAST;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
}

struct Report {
    strategy: &'static str,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    mean: Duration,
    per_sec: f64,
}

async fn run(strategy: &'static str, routing: Routing<Request>, asks: usize) -> Report {
    let system = ActorSystem::new();
    let router = Router::pool(ROUTEES, || Worker)
        .routing(routing)
        .spawn(&system)
        .await
        .expect("spawn the pool");
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let router = router.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(asks);
                for i in 0..asks {
                    // Seeded per client so every strategy sees the same slow-message pattern.
                    let n = (client * asks + i) as u64 * 7919 % 1_000_003;
                    let t = Instant::now();
                    router.ask(Request(n)).await.expect("ask");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(CLIENTS * asks);
    for client in clients {
        all.extend(client.await.expect("client"));
    }
    let elapsed = started.elapsed();
    system.shutdown().await;
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    Report {
        strategy,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        mean: all.iter().sum::<Duration>() / all.len() as u32,
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale: f64 = std::env::var("POSTBOX_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let asks = args
        .iter()
        .position(|a| a == "--asks")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or((1000.0 * scale) as usize)
        .max(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let reports = runtime.block_on(async {
        vec![
            run("round_robin", Routing::round_robin(), asks).await,
            run("random", Routing::random(), asks).await,
            run("smallest_mailbox", Routing::smallest_mailbox(), asks).await,
        ]
    });
    println!(
        "routing: {ROUTEES} routees, {CLIENTS} clients × {asks} asks, 1 in {SLOW_EVERY} messages waits {SLOW:?}, others {FAST:?} CPU"
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10} {:>10}   vs round_robin (p50 / p99 / throughput)",
        "strategy", "p50", "p90", "p99", "mean", "asks/s"
    );
    let base = &reports[0];
    for r in &reports {
        println!(
            "{:<18} {:>10.3?} {:>10.3?} {:>10.3?} {:>10.3?} {:>10.0}   {:.2}× / {:.2}× / {:.2}×",
            r.strategy,
            r.p50,
            r.p90,
            r.p99,
            r.mean,
            r.per_sec,
            r.p50.as_secs_f64() / base.p50.as_secs_f64(),
            r.p99.as_secs_f64() / base.p99.as_secs_f64(),
            r.per_sec / base.per_sec,
        );
    }
}

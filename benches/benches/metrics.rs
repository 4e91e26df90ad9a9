//! The cost of metrics collection: the same workloads with metrics off and on, in one run.
//!
//! "On" means a `postbox_metrics::Metrics` is built for the system (its observer receives the
//! sampled handler times and mailbox waits, senders stamp one message in 16) and the
//! exposition is encoded every 100 ms while the workload runs (a scrape interval far shorter
//! than Prometheus' usual 15 s, to be pessimistic). "Off" is the plain system.
//!
//! The mailbox-wait stamping switch is process-wide (once any system has an observer,
//! senders stamp everywhere), so each measured run is a fresh child process of this binary;
//! rounds alternate the order of off and on so that drift on a shared machine hits both.
//! Each run reports its wall time and the CPU time its threads used (Linux `schedstat`); the
//! medians of both are printed. "on÷off speed" is throughput with metrics relative to without
//! (1.0 = no cost); "cpu on÷off" is the CPU time spent for the same work (1.0 = no cost).
//!
//! ```sh
//! cargo bench -p postbox-benches --bench metrics            # 7 rounds
//! cargo bench -p postbox-benches --bench metrics -- --rounds 11
//! ```
//!
//! Wall and CPU times on a shared 2-core VM move by ±15 % between runs, more than the cost
//! being measured. Instruction counts do not: one run of the child on a current-thread runtime
//! under callgrind, per mode and size, gives the instructions per message (the slope between
//! two sizes, so setup and teardown cancel out):
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=cg.off.200k \
//!     target/release/deps/metrics-<hash> --child off tell 200000 --current-thread --no-scrape
//! ```
//! Sizes: `POSTBOX_BENCH_TELL_N` (default 2 000 000), `POSTBOX_BENCH_ASK_N` (100 000).

use postbox::prelude::*;
use postbox_metrics::Metrics;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Summer {
    n: u64,
    count: u64,
    sum: u64,
    done: Option<oneshot::Sender<u64>>,
}
impl Actor for Summer {}

struct Num(u64);
impl Message for Num {
    type Reply = ();
}
impl Handler<Num> for Summer {
    async fn handle(&mut self, Num(x): Num, _: &mut Context<Self>) {
        self.count += 1;
        self.sum += x;
        if self.count == self.n {
            if let Some(done) = self.done.take() {
                let _ = done.send(self.sum);
            }
        }
    }
}

struct Echo;
impl Actor for Echo {}
struct Plus1(u64);
impl Message for Plus1 {
    type Reply = u64;
}
impl Handler<Plus1> for Echo {
    async fn handle(&mut self, Plus1(x): Plus1, _: &mut Context<Self>) -> u64 {
        x + 1
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Off,
    On,
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// One producer tells `n` numbers to a summing actor.
    Tell(u64),
    /// `n` sequential asks.
    Ask(u64),
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Tell(_) => "tell",
            Scenario::Ask(_) => "ask",
        }
    }

    fn n(self) -> u64 {
        match self {
            Scenario::Tell(n) | Scenario::Ask(n) => n,
        }
    }
}

/// CPU time used so far by the threads of this process (Linux: the sum of every thread's
/// `schedstat`; zero elsewhere). On a shared machine this moves less than wall time, which
/// also counts the time spent waiting for a core.
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    wall: Duration,
    cpu: Duration,
}

/// One measured run in this process, on two workers, or on one thread with `current_thread`
/// (for instruction counts under callgrind, which are deterministic there).
fn run(mode: Mode, scenario: Scenario, current_thread: bool, scrape: bool) -> Measured {
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("runtime");
    runtime.block_on(async move {
        let system = ActorSystem::new();
        let scraping = Arc::new(AtomicBool::new(scrape));
        let mut scraper = None;
        if mode == Mode::On {
            let metrics = Metrics::builder(&system).build().expect("metrics");
            let scraping = scraping.clone();
            scraper = Some(tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(100));
                while scraping.load(Ordering::Acquire) {
                    interval.tick().await;
                    let metrics = metrics.clone();
                    let text = tokio::task::spawn_blocking(move || metrics.encode())
                        .await
                        .expect("scrape task")
                        .expect("exposition");
                    assert!(text.ends_with("# EOF\n"));
                }
            }));
        }
        let measured = match scenario {
            Scenario::Tell(n) => {
                let (done, done_rx) = oneshot::channel();
                let mut done = Some(done);
                let summer = system
                    .spawn(Props::new(move || Summer {
                        n,
                        count: 0,
                        sum: 0,
                        done: done.take(),
                    }))
                    .expect("spawn");
                let (cpu, start) = (process_cpu(), Instant::now());
                for x in 0..n {
                    summer.tell(Num(x)).await.expect("tell");
                }
                let sum = done_rx.await.expect("the summer finishes");
                let measured = Measured {
                    wall: start.elapsed(),
                    cpu: process_cpu().saturating_sub(cpu),
                };
                assert_eq!(sum, n * (n - 1) / 2, "wrong sum");
                measured
            }
            Scenario::Ask(n) => {
                let echo = system.spawn(Props::new(|| Echo)).expect("spawn");
                let (cpu, start) = (process_cpu(), Instant::now());
                for x in 0..n {
                    assert_eq!(echo.ask(Plus1(x)).await.expect("ask"), x + 1);
                }
                Measured {
                    wall: start.elapsed(),
                    cpu: process_cpu().saturating_sub(cpu),
                }
            }
        };
        scraping.store(false, Ordering::Release);
        if let Some(scraper) = scraper {
            scraper.await.expect("scraper");
        }
        let _ = system.shutdown_within(Duration::ZERO).await;
        measured
    })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let mode = match args.get(i + 1).map(String::as_str) {
            Some("on") => Mode::On,
            _ => Mode::Off,
        };
        let n: u64 = args[i + 3].parse().expect("n");
        let scenario = match args[i + 2].as_str() {
            "tell" => Scenario::Tell(n),
            _ => Scenario::Ask(n),
        };
        let current_thread = args.iter().any(|a| a == "--current-thread");
        // Under callgrind a run is ~50x slower, so a scrape every 100 ms would weigh 50x more
        // per message than it does for real: `--no-scrape` leaves the per-message cost alone.
        let scrape = !args.iter().any(|a| a == "--no-scrape");
        let measured = run(mode, scenario, current_thread, scrape);
        println!("{} {}", measured.wall.as_nanos(), measured.cpu.as_nanos());
        return;
    }
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let scenarios = [
        Scenario::Tell(env_u64("POSTBOX_BENCH_TELL_N", 2_000_000)),
        Scenario::Ask(env_u64("POSTBOX_BENCH_ASK_N", 100_000)),
    ];
    let exe = std::env::current_exe().expect("own path");
    let measure = |mode: Mode, scenario: Scenario| -> Measured {
        let output = Command::new(&exe)
            .args(["--child", if mode == Mode::On { "on" } else { "off" }])
            .args([scenario.name(), &scenario.n().to_string()])
            .output()
            .expect("child run");
        assert!(output.status.success(), "child failed: {output:?}");
        let printed = String::from_utf8_lossy(&output.stdout);
        let mut nanos = printed
            .split_whitespace()
            .map(|n| n.parse::<u64>().expect("child prints nanoseconds"));
        let mut next = || Duration::from_nanos(nanos.next().expect("two numbers"));
        Measured {
            wall: next(),
            cpu: next(),
        }
    };
    println!("metrics: off vs on, {rounds} alternating rounds, median per mode, each run a fresh process");
    println!(
        "{:<6} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "", "n", "wall off", "wall on", "on÷off speed", "cpu off", "cpu on", "cpu on÷off"
    );
    for scenario in scenarios {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [Mode::Off, Mode::On]
            } else {
                [Mode::On, Mode::Off]
            };
            for mode in order {
                let time = measure(mode, scenario);
                match mode {
                    Mode::Off => off.push(time),
                    Mode::On => on.push(time),
                }
            }
        }
        let wall = |runs: &[Measured]| median(runs.iter().map(|m| m.wall).collect());
        let cpu = |runs: &[Measured]| median(runs.iter().map(|m| m.cpu).collect());
        let (wall_off, wall_on, cpu_off, cpu_on) = (wall(&off), wall(&on), cpu(&off), cpu(&on));
        println!(
            "{:<6} {:>10} {:>12.1?} {:>12.1?} {:>12.3} {:>12.1?} {:>12.1?} {:>12.3}",
            scenario.name(),
            scenario.n(),
            wall_off,
            wall_on,
            wall_off.as_secs_f64() / wall_on.as_secs_f64(),
            cpu_off,
            cpu_on,
            cpu_on.as_secs_f64() / cpu_off.as_secs_f64().max(f64::MIN_POSITIVE),
        );
    }
}

//! A worker that crashes now and then, restarted by its supervisor within limits.
//!
//! The supervisor restarts the worker with exponential backoff. Crashes come faster than the
//! restart intensity allows (3 within 2 s), so eventually the supervisor gives up and escalates;
//! the root guardian then restarts the supervisor itself, which starts a fresh worker.
//!
//! ```sh
//! cargo run --release --example supervision
//! ```

use postbox::prelude::*;
use postbox::{Backoff, Failure};
use std::time::Duration;

/// Processes jobs; every job divisible by 4 makes it panic.
struct Worker;

impl Actor for Worker {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        println!("  {} started (restart #{})", ctx.path(), ctx.restarts());
        Ok(())
    }

    async fn restarting(&mut self, ctx: &mut Context<Self>, cause: &Failure) {
        println!("  {} is being restarted: {cause}", ctx.path());
    }
}

struct Job(u32);

impl Message for Job {
    type Reply = u32;
}

impl Handler<Job> for Worker {
    async fn handle(&mut self, Job(n): Job, _: &mut Context<Self>) -> u32 {
        if n % 4 == 0 {
            panic!("job {n} is poison");
        }
        n * 10
    }
}

/// Owns the worker and forwards jobs to it.
struct Supervisor {
    worker: Option<ActorRef<Worker>>,
}

impl Actor for Supervisor {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        println!("{} started (restart #{})", ctx.path(), ctx.restarts());
        self.worker = Some(ctx.spawn(Props::new(|| Worker).name("worker"))?);
        Ok(())
    }

    async fn restarting(&mut self, ctx: &mut Context<Self>, cause: &Failure) {
        println!("{} is being restarted: {cause}", ctx.path());
    }
}

struct WorkerRef;

impl Message for WorkerRef {
    type Reply = Option<ActorRef<Worker>>;
}

impl Handler<WorkerRef> for Supervisor {
    async fn handle(&mut self, _: WorkerRef, _: &mut Context<Self>) -> Option<ActorRef<Worker>> {
        self.worker.clone()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Panics are caught and handled by supervisors; keep the default hook from printing each.
    std::panic::set_hook(Box::new(|_| {}));
    let system = ActorSystem::new();
    let strategy = SupervisorStrategy::one_for_one()
        .max_restarts(3, Duration::from_secs(2))
        .backoff(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ));
    let supervisor = system.spawn(
        Props::new(|| Supervisor { worker: None })
            .name("supervisor")
            .supervisor(strategy),
    )?;

    for n in 1..=17 {
        let worker = supervisor
            .ask(WorkerRef)
            .await?
            .ok_or("the supervisor has no worker")?;
        match worker.ask(Job(n)).timeout(Duration::from_secs(2)).await {
            Ok(result) => println!("job {n:>2} -> {result}"),
            Err(e) => println!("job {n:>2} failed: {e}"),
        }
    }

    // One more round trip through the (restarted) supervisor: every restart above has finished.
    let worker = supervisor.ask(WorkerRef).await?.ok_or("no worker")?;
    println!(
        "after all that, the worker answers: {}",
        worker.ask(Job(1)).await?
    );

    let counters = system.counters();
    println!(
        "\n{} panics caught, {} restarts, {} dead letters; the process never went down",
        counters.panics,
        counters.restarts,
        system.dead_letters().total()
    );
    system.shutdown().await;
    Ok(())
}

//! A worker pool calls a flaky payment service through a circuit breaker. The service is
//! healthy, then fails for a while (errors and hangs), then recovers. Watch the breaker trip,
//! probe with single trial calls at growing intervals while the service is down, and close again
//! on its own once it is back — nobody intervenes.
//!
//! ```sh
//! cargo run --release --example flaky_dependency
//! ```

use postbox::prelude::*;
use postbox::{BreakerState, CircuitBreaker, GuardedAskError, GuardedRef, Router, Routing};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// When the simulated outage happens, from the start of the run.
const OUTAGE: std::ops::Range<Duration> = Duration::from_millis(400)..Duration::from_millis(1400);
const RUN_FOR: Duration = Duration::from_millis(2200);

/// The dependency: answers at once while healthy; during the outage it returns errors, and one
/// call in three hangs for longer than the breaker's call timeout.
struct PaymentService {
    started: Instant,
}

impl Actor for PaymentService {}

struct Charge(u64);
impl Message for Charge {
    type Reply = Result<u64, String>;
}

impl Handler<Charge> for PaymentService {
    async fn handle(
        &mut self,
        Charge(order): Charge,
        _: &mut Context<Self>,
    ) -> Result<u64, String> {
        if !OUTAGE.contains(&self.started.elapsed()) {
            return Ok(order);
        }
        if order % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err("503 service unavailable".into())
    }
}

/// What happened to one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Charged,
    /// The call was made and failed (error reply or timeout).
    Failed,
    /// The breaker was open: failed fast, the service was not bothered.
    Rejected,
}

/// A pool worker: charges orders through the shared breaker.
struct Worker {
    payments: GuardedRef<PaymentService>,
}

impl Actor for Worker {}

struct Order(u64);
impl Message for Order {
    type Reply = Outcome;
}

impl Handler<Order> for Worker {
    async fn handle(&mut self, Order(id): Order, _: &mut Context<Self>) -> Outcome {
        // An `Err` reply counts as a failure for the breaker, like a timeout or a panic.
        match self
            .payments
            .ask_classified(Charge(id), |reply| reply.is_err())
            .await
        {
            Ok(Ok(_)) => Outcome::Charged,
            Err(GuardedAskError::Open { .. }) => Outcome::Rejected,
            Ok(Err(_)) | Err(_) => Outcome::Failed,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let system = ActorSystem::new();
    let started = Instant::now();
    let service = system.spawn(Props::new(move || PaymentService { started }).name("payments"))?;

    let breaker = CircuitBreaker::builder("payments")
        .max_failures(3)
        .call_timeout(Duration::from_millis(100))
        .reset_timeout(Duration::from_millis(100))
        .exponential_backoff(2.0)
        .max_reset_timeout(Duration::from_millis(400))
        .random_factor(0.1)
        .on_transition(move |from, to| {
            println!(
                "[{:>5} ms] breaker {from} -> {to}",
                started.elapsed().as_millis()
            );
        })
        .build()?;

    let guarded = breaker.guard(service);
    let workers = Router::pool(4, move || Worker {
        payments: guarded.clone(),
    })
    .routing(Routing::smallest_mailbox())
    .name("workers")
    .spawn(&system)
    .await?;

    println!(
        "service outage from {} ms to {} ms; sending an order every 5 ms for {} ms",
        OUTAGE.start.as_millis(),
        OUTAGE.end.as_millis(),
        RUN_FOR.as_millis()
    );
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    let mut orders = Vec::new();
    let mut id = 0;
    while started.elapsed() < RUN_FOR {
        ticks.tick().await;
        id += 1;
        let (workers, counts) = (workers.clone(), counts.clone());
        orders.push(tokio::spawn(async move {
            let outcome = workers.ask(Order(id)).await.unwrap_or(Outcome::Failed);
            counts[outcome as usize].fetch_add(1, Relaxed);
        }));
    }
    for order in orders {
        order.await?;
    }

    let stats = breaker.stats();
    println!(
        "\n{id} orders: {} charged, {} failed, {} rejected fast while the breaker was open",
        counts[Outcome::Charged as usize].load(Relaxed),
        counts[Outcome::Failed as usize].load(Relaxed),
        counts[Outcome::Rejected as usize].load(Relaxed),
    );
    println!(
        "breaker: opened {} times, {} timeouts, now {}",
        stats.times_opened,
        stats.timeouts,
        breaker.state()
    );
    system.shutdown().await;
    if breaker.state() != BreakerState::Closed {
        return Err("the breaker did not close after the service recovered".into());
    }
    println!("recovered with no manual intervention");
    Ok(())
}

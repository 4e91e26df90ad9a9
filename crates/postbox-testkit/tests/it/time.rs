//! Paused time: virtual time moves from timer to timer, in deadline order.

use crate::common::panic_message;
use postbox::prelude::*;
use postbox_testkit::time::{advance_until, paused_runtime, run_paused};
use postbox_testkit::TestProbe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[test]
fn run_paused_runs_an_hour_of_timers_at_once() {
    let real = std::time::Instant::now();
    let virtual_elapsed = run_paused(async {
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        started.elapsed()
    });
    assert_eq!(virtual_elapsed, Duration::from_secs(3600));
    // Not a timing assertion on the code under test: a paused clock never sleeps for real.
    assert!(real.elapsed() < Duration::from_secs(60));
}

/// Ticks every 100 ms of its own clock, counting.
struct Ticker {
    ticks: Arc<AtomicU32>,
}
impl Actor for Ticker {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let me = ctx.myself().clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if me.tell(Tick).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}
struct Tick;
impl Message for Tick {
    type Reply = ();
}
impl Handler<Tick> for Ticker {
    async fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn advance_until_steps_virtual_time_and_every_due_event_has_happened_at_each_check() {
    paused_runtime().block_on(async {
        let system = ActorSystem::new();
        let ticks = Arc::new(AtomicU32::new(0));
        let counter = ticks.clone();
        system
            .spawn(Props::new(move || Ticker {
                ticks: counter.clone(),
            }))
            .unwrap();
        let started = Instant::now();
        let seen = advance_until(
            Duration::from_millis(350),
            Duration::from_secs(10),
            "ten ticks",
            || Some(ticks.load(Ordering::Relaxed)).filter(|n| *n >= 10),
        )
        .await;
        // Checked every 350 ms: at 1.05 s the ten ticks due by then have all been handled,
        // and the eleventh (at 1.1 s) has not.
        assert_eq!(seen, 10);
        assert_eq!(started.elapsed(), Duration::from_millis(1050));
        system.shutdown().await;
    });
}

#[test]
fn advance_until_fails_after_its_virtual_limit_naming_what() {
    let message = paused_runtime().block_on(panic_message(advance_until(
        Duration::from_secs(1),
        Duration::from_secs(30),
        "a green light",
        || false,
    )));
    assert!(
        message.starts_with(
            "advance_until: a green light did not happen within 30s of virtual time \
             (advanced 30s in steps of 1s; waited at"
        ),
        "{message}"
    );
}

#[test]
fn probe_deadlines_are_virtual_on_a_paused_clock() {
    run_paused(async {
        let system = ActorSystem::new();
        let probe = TestProbe::<Tick>::new(&system).with_deadline(Duration::from_secs(600));
        let started = Instant::now();
        let mut probe = probe;
        let failed = panic_message(async move {
            probe.expect_msg().await;
        })
        .await;
        assert!(failed.contains("no message within 600s"), "{failed}");
        assert_eq!(started.elapsed(), Duration::from_secs(600));
        system.shutdown().await;
    });
}

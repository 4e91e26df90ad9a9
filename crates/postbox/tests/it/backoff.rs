//! Backoff supervision: growing delays, reset after health, on-failure vs on-stop, and what
//! happens to messages while the child is down. Time is paused: delays are exact.

use crate::common::{events, EventLog, Events};
use postbox::prelude::*;
use postbox::{Backoff, BackoffSupervisor, DeadLetterReason, WhileDown};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Started,
    Handled(u32),
}

/// Fails in `started` while `failures_left` is positive.
struct Flaky {
    failures_left: Arc<AtomicU32>,
    events: Events<(Event, Instant)>,
}

impl Actor for Flaky {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.events.emit((Event::Started, Instant::now()));
        let left = self.failures_left.load(Relaxed);
        if left > 0 {
            self.failures_left.store(left - 1, Relaxed);
            return Err("dependency unavailable".into());
        }
        Ok(())
    }
}

struct Work(u32);
impl Message for Work {
    type Reply = u32;
}
impl Handler<Work> for Flaky {
    async fn handle(&mut self, Work(n): Work, _: &mut Context<Self>) -> u32 {
        self.events.emit((Event::Handled(n), Instant::now()));
        n
    }
}

struct Fail;
impl Message for Fail {
    type Reply = ();
}
impl Handler<Fail> for Flaky {
    async fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        ctx.fail("asked to fail");
    }
}

struct Quit;
impl Message for Quit {
    type Reply = ();
}
impl Handler<Quit> for Flaky {
    async fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

fn flaky(failures: u32) -> (Props<Flaky>, Arc<AtomicU32>, EventLog<(Event, Instant)>) {
    let (events, log) = events();
    let failures_left = Arc::new(AtomicU32::new(failures));
    let shared = failures_left.clone();
    let props = Props::new(move || Flaky {
        failures_left: shared.clone(),
        events: events.clone(),
    })
    .name("flaky");
    (props, failures_left, log)
}

fn exact(min_ms: u64, max_ms: u64) -> Backoff {
    Backoff::exponential(Duration::from_millis(min_ms), Duration::from_millis(max_ms)).jitter(0.0)
}

/// Gaps between consecutive `Started` events.
async fn start_gaps(log: &mut EventLog<(Event, Instant)>, starts: usize) -> Vec<Duration> {
    let times: Vec<Instant> = log
        .take(starts)
        .await
        .into_iter()
        .map(|(event, at)| {
            assert_eq!(event, Event::Started);
            at
        })
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|&m| Duration::from_millis(m)).collect()
}

#[tokio::test(start_paused = true)]
async fn delays_grow_exponentially_up_to_the_cap() {
    let system = ActorSystem::new();
    let (props, _, mut log) = flaky(6);
    let child = BackoffSupervisor::on_failure(props, exact(100, 1000))
        .spawn(&system)
        .await
        .unwrap();
    assert_eq!(child.path(), "/user/flaky-backoff/flaky");
    let gaps = start_gaps(&mut log, 7).await;
    assert_eq!(gaps, ms(&[100, 200, 400, 800, 1000, 1000]));
    // The seventh instance started fine and serves.
    assert_eq!(child.ask(Work(7)).await.unwrap(), 7);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_stretches_delays_within_bounds() {
    let system = ActorSystem::new();
    let (props, _, mut log) = flaky(5);
    let backoff = exact(100, 10_000).jitter(0.5);
    BackoffSupervisor::on_failure(props, backoff)
        .spawn(&system)
        .await
        .unwrap();
    let gaps = start_gaps(&mut log, 6).await;
    for (gap, base) in gaps.iter().zip([100u64, 200, 400, 800, 1600]) {
        let base = Duration::from_millis(base);
        assert!(
            *gap >= base && *gap <= base.mul_f64(1.5),
            "{gap:?} vs {base:?}"
        );
    }
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_period_of_health_resets_the_delay() {
    let system = ActorSystem::new();
    let (props, failures_left, mut log) = flaky(2);
    let backoff = exact(100, 1000).reset_after(Duration::from_secs(5));
    let child = BackoffSupervisor::on_failure(props, backoff)
        .spawn(&system)
        .await
        .unwrap();
    assert_eq!(start_gaps(&mut log, 3).await, ms(&[100, 200]));

    // Fails again soon: the count continues (400 ms).
    let failed_at = Instant::now();
    child.tell(Fail).await.unwrap();
    let (event, at) = log.next().await;
    assert_eq!(event, Event::Started);
    assert_eq!(at - failed_at, Duration::from_millis(400));
    // Healthy for longer than the reset period: the next failure waits only `min` again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let failed_at = Instant::now();
    assert_eq!(failures_left.load(Relaxed), 0);
    child.tell(Fail).await.unwrap();
    let (event, at) = log.next().await;
    assert_eq!(event, Event::Started);
    assert_eq!(at - failed_at, Duration::from_millis(100));
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn on_failure_stops_for_good_on_a_normal_stop_but_on_stop_restarts() {
    let system = ActorSystem::new();
    let (props, _, mut log) = flaky(0);
    let child = BackoffSupervisor::on_failure(props, exact(100, 1000))
        .spawn(&system)
        .await
        .unwrap();
    log.next().await;
    let (reason, _) = tokio::join!(child.wait_for_stop(), child.tell(Quit));
    assert_eq!(reason, ExitReason::Normal);

    let (props, _, mut log) = flaky(0);
    let child = BackoffSupervisor::on_stop(props.name("keeper"), exact(100, 1000))
        .spawn(&system)
        .await
        .unwrap();
    log.next().await;
    let stopped_at = Instant::now();
    child.ask(Quit).await.unwrap();
    let (event, at) = log.next().await;
    assert_eq!(event, Event::Started);
    assert_eq!(at - stopped_at, Duration::from_millis(100));
    assert!(child.is_alive());
    assert_eq!(child.ask(Work(1)).await.unwrap(), 1);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn messages_sent_while_down_wait_for_the_next_instance_by_default() {
    let system = ActorSystem::new();
    let (props, failures_left, mut log) = flaky(0);
    let child = BackoffSupervisor::on_failure(props, exact(1000, 1000))
        .spawn(&system)
        .await
        .unwrap();
    log.next().await;
    assert_eq!(failures_left.load(Relaxed), 0);
    child.tell(Fail).await.unwrap();
    child.tell(Work(1)).await.unwrap();
    child.tell(Work(2)).await.unwrap();
    assert_eq!(log.next().await.0, Event::Started);
    assert_eq!(log.next().await.0, Event::Handled(1));
    assert_eq!(log.next().await.0, Event::Handled(2));
    assert_eq!(system.dead_letters().total(), 0);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn messages_sent_while_down_can_be_dead_lettered_instead() {
    let system = ActorSystem::new();
    let (props, _, mut log) = flaky(0);
    let child = BackoffSupervisor::on_failure(props, exact(1000, 1000))
        .while_down(WhileDown::DeadLetter)
        .spawn(&system)
        .await
        .unwrap();
    log.next().await;
    child.tell(Fail).await.unwrap();
    child.tell(Work(1)).await.unwrap();
    // An ask while down fails fast instead of waiting out the backoff.
    let asked_at = Instant::now();
    assert_eq!(child.ask(Work(2)).await, Err(AskError::Stopped));
    assert!(asked_at.elapsed() < Duration::from_millis(1000));
    assert_eq!(system.dead_letters().count(DeadLetterReason::ActorDown), 2);
    // Back up: served again, and only what was sent after the restart is handled.
    assert_eq!(log.next().await.0, Event::Started);
    assert_eq!(child.ask(Work(3)).await.unwrap(), 3);
    assert_eq!(log.next().await.0, Event::Handled(3));
    assert_eq!(
        child.load(),
        0,
        "dropped messages do not count as in progress"
    );
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_limit_gives_up_and_stops_the_child() {
    let system = ActorSystem::new();
    let (props, _, mut log) = flaky(u32::MAX);
    let child = BackoffSupervisor::on_failure(props, exact(100, 100))
        .max_restarts(3, Duration::from_secs(10))
        .spawn(&system)
        .await
        .unwrap();
    assert_eq!(start_gaps(&mut log, 4).await, ms(&[100, 100, 100]));
    child.wait_for_stop().await;
    assert!(!child.is_alive());
    assert_eq!(system.counters().restarts, 3);
    system.shutdown().await;
}

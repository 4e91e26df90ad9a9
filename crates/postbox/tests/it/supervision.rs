//! Supervision: strategies, restart types, intensity and escalation, backoff, panic isolation.

use crate::common::{events, until, within, EventLog, Events, PATIENCE};
use postbox::prelude::*;
use postbox::{Backoff, Failure};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ev {
    Started(&'static str, u32),
    Restarting(&'static str, Failure),
    Stopping(&'static str),
    Stopped(&'static str, ExitReason),
    /// A `started` attempt of a worker that fails to start, with the (paused) clock.
    Attempt(&'static str, Instant),
}

/// A child that reports its lifecycle and fails on command.
pub(crate) struct Worker {
    name: &'static str,
    events: Events<Ev>,
    fail_to_start: bool,
}

impl Worker {
    fn props(name: &'static str, events: &Events<Ev>) -> Props<Worker> {
        let events = events.clone();
        Props::new(move || Worker {
            name,
            events: events.clone(),
            fail_to_start: false,
        })
        .name(name)
    }
}

impl Actor for Worker {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if self.fail_to_start {
            self.events.emit(Ev::Attempt(self.name, Instant::now()));
            return Err("cannot start".into());
        }
        self.events.emit(Ev::Started(self.name, ctx.restarts()));
        Ok(())
    }
    async fn restarting(&mut self, _: &mut Context<Self>, cause: &Failure) {
        self.events.emit(Ev::Restarting(self.name, cause.clone()));
    }
    async fn stopping(&mut self, _: &mut Context<Self>) {
        self.events.emit(Ev::Stopping(self.name));
    }
    async fn stopped(&mut self, _: &mut Context<Self>, reason: &ExitReason) {
        self.events.emit(Ev::Stopped(self.name, reason.clone()));
    }
}

#[derive(Debug)]
pub(crate) enum Cmd {
    Crash,
    Fail,
    Exit,
    /// Never returns (until the actor is killed or aborted).
    Hang,
}
impl Message for Cmd {
    type Reply = ();
}
impl Handler<Cmd> for Worker {
    async fn handle(&mut self, cmd: Cmd, ctx: &mut Context<Self>) {
        match cmd {
            Cmd::Crash => panic!("{} crashes (expected by the test)", self.name),
            Cmd::Fail => ctx.fail("asked to fail"),
            Cmd::Exit => ctx.stop(),
            Cmd::Hang => std::future::pending::<()>().await,
        }
    }
}

pub(crate) struct Whoami;
impl Message for Whoami {
    type Reply = (&'static str, u32);
}
impl Handler<Whoami> for Worker {
    async fn handle(&mut self, _: Whoami, ctx: &mut Context<Self>) -> (&'static str, u32) {
        (self.name, ctx.restarts())
    }
}

/// A supervisor that spawns its children in `started`.
struct Parent {
    specs: Vec<(&'static str, Restart)>,
    events: Events<Ev>,
    children: HashMap<&'static str, ActorRef<Worker>>,
    failing_child: Option<&'static str>,
}

impl Actor for Parent {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.events.emit(Ev::Started("parent", ctx.restarts()));
        for (name, restart) in self.specs.clone() {
            let mut props = Worker::props(name, &self.events).restart(restart);
            if self.failing_child == Some(name) {
                let events = self.events.clone();
                props = Props::new(move || Worker {
                    name,
                    events: events.clone(),
                    fail_to_start: true,
                })
                .name(name)
                .restart(restart);
            }
            let child = ctx.spawn(props)?;
            self.children.insert(name, child);
        }
        Ok(())
    }
    async fn restarting(&mut self, _: &mut Context<Self>, cause: &Failure) {
        self.events.emit(Ev::Restarting("parent", cause.clone()));
    }
    async fn stopping(&mut self, _: &mut Context<Self>) {
        self.events.emit(Ev::Stopping("parent"));
    }
    async fn stopped(&mut self, _: &mut Context<Self>, reason: &ExitReason) {
        self.events.emit(Ev::Stopped("parent", reason.clone()));
    }
}

struct Child(&'static str);
impl Message for Child {
    type Reply = ActorRef<Worker>;
}
impl Handler<Child> for Parent {
    async fn handle(&mut self, Child(name): Child, _: &mut Context<Self>) -> ActorRef<Worker> {
        self.children[name].clone()
    }
}

struct Family {
    system: ActorSystem,
    parent: ActorRef<Parent>,
    log: EventLog<Ev>,
}

impl Family {
    async fn start(
        strategy: SupervisorStrategy,
        specs: &[(&'static str, Restart)],
        failing_child: Option<&'static str>,
    ) -> Family {
        let system = ActorSystem::new();
        Self::start_in(system, strategy, specs, failing_child).await
    }

    async fn start_in(
        system: ActorSystem,
        strategy: SupervisorStrategy,
        specs: &[(&'static str, Restart)],
        failing_child: Option<&'static str>,
    ) -> Family {
        let (events, mut log) = events();
        let specs = specs.to_vec();
        let ev = events.clone();
        let parent = system
            .spawn(
                Props::new(move || Parent {
                    specs: specs.clone(),
                    events: ev.clone(),
                    children: HashMap::new(),
                    failing_child,
                })
                .name("parent")
                .supervisor(strategy),
            )
            .unwrap();
        assert_eq!(log.next().await, Ev::Started("parent", 0));
        Family {
            system,
            parent,
            log,
        }
    }

    async fn child(&self, name: &'static str) -> ActorRef<Worker> {
        self.parent.ask(Child(name)).await.unwrap()
    }
}

const ABC: [(&str, Restart); 3] = [
    ("a", Restart::Permanent),
    ("b", Restart::Permanent),
    ("c", Restart::Permanent),
];

fn panicked(name: &str) -> Failure {
    Failure::Panicked(format!("{name} crashes (expected by the test)").into())
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let mut f = Family::start(SupervisorStrategy::one_for_one(), &ABC, None).await;
    f.log
        .expect(&[
            Ev::Started("a", 0),
            Ev::Started("b", 0),
            Ev::Started("c", 0),
        ])
        .await;
    let b = f.child("b").await;
    let b_id = b.id();
    b.tell(Cmd::Crash).await.unwrap();
    f.log
        .expect(&[Ev::Restarting("b", panicked("b")), Ev::Started("b", 1)])
        .await;
    // Same reference, new instance; the siblings never noticed.
    assert_eq!(b.ask(Whoami).await.unwrap(), ("b", 1));
    assert_eq!(b.id(), b_id);
    assert_eq!(f.child("a").await.ask(Whoami).await.unwrap(), ("a", 0));
    assert_eq!(f.child("c").await.ask(Whoami).await.unwrap(), ("c", 0));
    assert!(f.log.drain_now().is_empty());
    assert_eq!(b.stats().restarts, 1);
    f.system.shutdown().await;
}

#[tokio::test]
async fn all_for_one_stops_all_in_reverse_order_and_restarts_in_start_order() {
    let mut f = Family::start(SupervisorStrategy::all_for_one(), &ABC, None).await;
    f.log.take(3).await;
    let b = f.child("b").await;
    let b_id = b.id();
    b.tell(Cmd::Crash).await.unwrap();
    let sibling = Failure::SiblingFailed { sibling: b_id };
    f.log
        .expect(&[
            Ev::Restarting("b", panicked("b")),
            Ev::Restarting("c", sibling.clone()),
            Ev::Restarting("a", sibling),
            Ev::Started("a", 1),
            Ev::Started("b", 1),
            Ev::Started("c", 1),
        ])
        .await;
    f.system.shutdown().await;
}

#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
    let mut f = Family::start(SupervisorStrategy::rest_for_one(), &ABC, None).await;
    f.log.take(3).await;
    let b = f.child("b").await;
    b.tell(Cmd::Crash).await.unwrap();
    f.log
        .expect(&[
            Ev::Restarting("b", panicked("b")),
            Ev::Restarting("c", Failure::SiblingFailed { sibling: b.id() }),
            Ev::Started("b", 1),
            Ev::Started("c", 1),
        ])
        .await;
    assert_eq!(f.child("a").await.ask(Whoami).await.unwrap(), ("a", 0));
    f.system.shutdown().await;
}

#[tokio::test]
async fn all_for_one_stops_a_temporary_sibling_for_good() {
    let specs = [("a", Restart::Temporary), ("b", Restart::Permanent)];
    let mut f = Family::start(SupervisorStrategy::all_for_one(), &specs, None).await;
    f.log.take(2).await;
    let a = f.child("a").await;
    f.child("b").await.tell(Cmd::Crash).await.unwrap();
    f.log
        .expect(&[
            Ev::Restarting("b", panicked("b")),
            Ev::Stopping("a"),
            Ev::Stopped("a", ExitReason::Stopped),
            Ev::Started("b", 1),
        ])
        .await;
    assert_eq!(a.wait_for_stop().await, ExitReason::AlreadyTerminated);
    f.system.shutdown().await;
}

#[tokio::test]
async fn restart_types_decide_who_comes_back() {
    let specs = [
        ("perm", Restart::Permanent),
        ("trans", Restart::Transient),
        ("temp", Restart::Temporary),
    ];
    let mut f = Family::start(SupervisorStrategy::one_for_one(), &specs, None).await;
    f.log.take(3).await;

    // Permanent: restarted even after stopping itself (Erlang semantics).
    f.child("perm").await.tell(Cmd::Exit).await.unwrap();
    f.log
        .expect(&[
            Ev::Restarting("perm", Failure::ExitedNormally),
            Ev::Started("perm", 1),
        ])
        .await;

    // Transient: restarted after a failure...
    let trans = f.child("trans").await;
    trans.tell(Cmd::Fail).await.unwrap();
    f.log
        .expect(&[
            Ev::Restarting("trans", Failure::Error("asked to fail".into())),
            Ev::Started("trans", 1),
        ])
        .await;
    // ...but not after a normal exit.
    trans.tell(Cmd::Exit).await.unwrap();
    f.log
        .expect(&[
            Ev::Stopping("trans"),
            Ev::Stopped("trans", ExitReason::Normal),
        ])
        .await;
    assert_eq!(trans.wait_for_stop().await, ExitReason::AlreadyTerminated);

    // Temporary: never restarted, not even after a panic.
    let temp = f.child("temp").await;
    let done = {
        let temp = temp.clone();
        tokio::spawn(async move { temp.wait_for_stop().await })
    };
    tokio::task::yield_now().await;
    temp.tell(Cmd::Crash).await.unwrap();
    f.log
        .expect(&[
            Ev::Stopping("temp"),
            Ev::Stopped("temp", ExitReason::Failed(panicked("temp"))),
        ])
        .await;
    let reason = within(PATIENCE, done).await.unwrap();
    assert!(
        matches!(
            reason,
            ExitReason::Failed(Failure::Panicked(_)) | ExitReason::AlreadyTerminated
        ),
        "{reason:?}"
    );
    f.system.shutdown().await;
}

#[tokio::test]
async fn exceeding_the_restart_intensity_escalates_to_the_parent_s_supervisor() {
    let strategy = SupervisorStrategy::one_for_one().max_restarts(1, Duration::from_secs(60));
    let mut f = Family::start(strategy, &ABC, None).await;
    f.log.take(3).await;
    let b = f.child("b").await;
    b.tell(Cmd::Crash).await.unwrap();
    f.log
        .expect(&[Ev::Restarting("b", panicked("b")), Ev::Started("b", 1)])
        .await;
    // The second failure within the period exceeds max_restarts = 1: the parent fails.
    b.tell(Cmd::Crash).await.unwrap();
    f.log
        .expect(&[
            Ev::Restarting("parent", Failure::Escalated { child: b.id() }),
            // A restarted supervisor starts without its old children: they stop first, in
            // reverse start order (b, still waiting for a decision, stops with its failed
            // instance).
            Ev::Stopping("c"),
            Ev::Stopped("c", ExitReason::Stopped),
            Ev::Stopping("b"),
            Ev::Stopped("b", ExitReason::Stopped),
            Ev::Stopping("a"),
            Ev::Stopped("a", ExitReason::Stopped),
            // The root guardian restarted the parent, which spawns fresh children.
            Ev::Started("parent", 1),
            Ev::Started("a", 0),
            Ev::Started("b", 0),
            Ev::Started("c", 0),
        ])
        .await;
    assert_eq!(b.wait_for_stop().await, ExitReason::AlreadyTerminated);
    let new_b = f.child("b").await;
    assert_ne!(new_b.id(), b.id());
    assert_eq!(new_b.ask(Whoami).await.unwrap(), ("b", 0));
    f.system.shutdown().await;
}

/// Erlang's intensity is a sliding window: restarts older than the period no longer count.
#[tokio::test(start_paused = true)]
async fn restarts_older_than_the_intensity_period_no_longer_count() {
    let strategy = SupervisorStrategy::one_for_one().max_restarts(2, Duration::from_secs(1));
    let mut f = Family::start(strategy, &ABC[..1], None).await;
    f.log.take(1).await;
    let a = f.child("a").await;
    // Two restarts within the period: at the limit, not over it.
    for round in 1..=2 {
        a.tell(Cmd::Crash).await.unwrap();
        f.log
            .expect(&[Ev::Restarting("a", panicked("a")), Ev::Started("a", round)])
            .await;
    }
    // Once the period has passed since them, they are forgotten: two more are allowed. (A
    // supervisor that counted every restart ever made would escalate at the next crash.)
    tokio::time::sleep(Duration::from_millis(1_001)).await;
    for round in 3..=4 {
        a.tell(Cmd::Crash).await.unwrap();
        f.log
            .expect(&[Ev::Restarting("a", panicked("a")), Ev::Started("a", round)])
            .await;
    }
    // A third within this period is one too many: the parent escalates.
    a.tell(Cmd::Crash).await.unwrap();
    assert_eq!(
        f.log.next().await,
        Ev::Restarting("parent", Failure::Escalated { child: a.id() })
    );
    f.system.shutdown_within(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_root_guardian_gives_up_on_a_top_level_actor_that_keeps_failing() {
    let system = ActorSystem::builder()
        .default_strategy(
            SupervisorStrategy::one_for_one().max_restarts(2, Duration::from_secs(60)),
        )
        .build();
    let (events, mut log) = events();
    let worker = system.spawn(Worker::props("w", &events)).unwrap();
    log.expect(&[Ev::Started("w", 0)]).await;
    for round in 1..=2 {
        worker.tell(Cmd::Crash).await.unwrap();
        log.expect(&[Ev::Restarting("w", panicked("w")), Ev::Started("w", round)])
            .await;
    }
    let stopped = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.wait_for_stop().await })
    };
    tokio::task::yield_now().await;
    worker.tell(Cmd::Crash).await.unwrap();
    log.expect(&[
        Ev::Stopping("w"),
        Ev::Stopped("w", ExitReason::Failed(panicked("w"))),
    ])
    .await;
    assert_eq!(
        within(PATIENCE, stopped).await.unwrap(),
        ExitReason::Failed(panicked("w"))
    );
    assert_eq!(system.counters().panics, 3);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_grow_exponentially_up_to_the_cap() {
    let strategy = SupervisorStrategy::one_for_one()
        .max_restarts(100, Duration::from_secs(600))
        .backoff(
            Backoff::exponential(Duration::from_millis(100), Duration::from_millis(800))
                .jitter(0.0),
        );
    let mut f = Family::start(strategy, &[("flaky", Restart::Permanent)], Some("flaky")).await;
    let mut attempts = Vec::new();
    while attempts.len() < 7 {
        match f.log.next().await {
            Ev::Attempt("flaky", at) => attempts.push(at),
            // The instance whose `started` failed still gets its `restarting` hook.
            Ev::Restarting("flaky", _) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    let expected = [100, 200, 400, 800, 800, 800].map(Duration::from_millis);
    for (gap, expected) in gaps.iter().zip(expected) {
        assert!(
            *gap >= expected && *gap < expected + Duration::from_millis(5),
            "gaps {gaps:?}"
        );
    }
    f.system.shutdown_within(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn backoff_jitter_stretches_delays_within_bounds() {
    let strategy = SupervisorStrategy::one_for_one()
        .max_restarts(100, Duration::from_secs(600))
        .backoff(
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)).jitter(0.5),
        );
    let mut f = Family::start(strategy, &[("flaky", Restart::Permanent)], Some("flaky")).await;
    let mut attempts = Vec::new();
    while attempts.len() < 5 {
        if let Ev::Attempt(_, at) = f.log.next().await {
            attempts.push(at);
        }
    }
    for (i, w) in attempts.windows(2).enumerate() {
        let base = Duration::from_millis(100 * (1 << i));
        let gap = w[1] - w[0];
        assert!(gap >= base && gap <= base.mul_f64(1.5) + Duration::from_millis(5));
    }
    f.system.shutdown_within(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_healthy_period() {
    let strategy = SupervisorStrategy::one_for_one()
        .max_restarts(100, Duration::from_secs(600))
        .backoff(
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
                .jitter(0.0)
                .reset_after(Duration::from_secs(1)),
        );
    let mut f = Family::start(strategy, &[("w", Restart::Permanent)], None).await;
    f.log.take(1).await;
    let w = f.child("w").await;
    let mut delays = Vec::new();
    for pause in [0, 0, 2_000, 0] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let crashed = Instant::now();
        w.tell(Cmd::Crash).await.unwrap();
        f.log.take(2).await; // Restarting, Started
        delays.push(crashed.elapsed());
    }
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    // 100, 200 (consecutive), then after two healthy seconds back to 100, then 200.
    assert_eq!(ms, [100, 200, 100, 200], "{delays:?}");
    f.system.shutdown_within(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_failing_started_hook_is_a_failure_handled_by_the_supervisor() {
    let strategy = SupervisorStrategy::one_for_one().max_restarts(2, Duration::from_secs(60));
    let mut f = Family::start(strategy, &[("bad", Restart::Permanent)], Some("bad")).await;
    // First start, then two restarts; the third failure escalates.
    let cannot_start = Failure::Error("cannot start".into());
    for restart in 0..3 {
        assert!(matches!(f.log.next().await, Ev::Attempt("bad", _)));
        if restart < 2 {
            // Each failed instance still gets its `restarting` hook before being replaced.
            assert_eq!(
                f.log.next().await,
                Ev::Restarting("bad", cannot_start.clone())
            );
        }
    }
    assert!(matches!(
        f.log.next().await,
        Ev::Restarting("parent", Failure::Escalated { .. })
    ));
    f.system.shutdown_within(Duration::from_secs(5)).await;
}

/// Counts messages; used to show that failures elsewhere do not disturb it.
#[derive(Default)]
struct Steady(u64);
impl Actor for Steady {}
struct Tick;
impl Message for Tick {
    type Reply = u64;
}
impl Handler<Tick> for Steady {
    async fn handle(&mut self, _: Tick, _: &mut Context<Self>) -> u64 {
        self.0 += 1;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_isolated_to_the_failing_actor() {
    let system = ActorSystem::builder()
        .default_strategy(
            SupervisorStrategy::one_for_one().max_restarts(10_000, Duration::from_secs(60)),
        )
        .build();
    let (events, _log) = events();
    let crasher = system.spawn(Worker::props("crasher", &events)).unwrap();
    let steady = system.spawn(Steady::default).unwrap();
    let flood = {
        let crasher = crasher.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                crasher.tell(Cmd::Crash).await.unwrap();
            }
        })
    };
    for expected in 1..=1_000 {
        assert_eq!(steady.ask(Tick).await, Ok(expected));
    }
    within(PATIENCE, flood).await.unwrap();
    // Every crash was caught; the crasher still answers and the steady actor never restarted.
    until(PATIENCE, "200 panics counted", || {
        system.counters().panics >= 200
    })
    .await;
    assert_eq!(crasher.ask(Whoami).await.unwrap(), ("crasher", 200));
    assert_eq!(steady.stats().restarts, 0);
    system.shutdown().await;
}

#[tokio::test]
async fn messages_queued_during_a_restart_are_handled_by_the_new_instance() {
    let mut f = Family::start(SupervisorStrategy::one_for_one(), &ABC[..1], None).await;
    f.log.take(1).await;
    let a = f.child("a").await;
    a.tell(Cmd::Crash).await.unwrap();
    let answers: Vec<_> = (0..5).map(|_| a.ask(Whoami)).collect();
    for answer in answers {
        assert_eq!(answer.await.unwrap(), ("a", 1));
    }
    f.system.shutdown().await;
}

#[tokio::test]
async fn a_killed_actor_is_restarted_without_running_its_hooks() {
    let mut f = Family::start(SupervisorStrategy::one_for_one(), &ABC[..1], None).await;
    f.log.take(1).await;
    let a = f.child("a").await;
    a.kill();
    // No Restarting/Stopping for the killed instance: straight to the new one.
    f.log.expect(&[Ev::Started("a", 1)]).await;
    assert_eq!(a.ask(Whoami).await.unwrap(), ("a", 1));
    f.system.shutdown().await;
}

#[tokio::test]
async fn a_panicking_hook_does_not_prevent_the_restart() {
    struct BadHooks(Events<Ev>);
    impl Actor for BadHooks {
        async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
            self.0.emit(Ev::Started("bad-hooks", ctx.restarts()));
            Ok(())
        }
        async fn restarting(&mut self, _: &mut Context<Self>, _: &Failure) {
            panic!("restarting hook panics (expected by the test)");
        }
    }
    impl Handler<Cmd> for BadHooks {
        async fn handle(&mut self, _: Cmd, _: &mut Context<Self>) {
            panic!("handler panics (expected by the test)");
        }
    }
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let actor = system.spawn(move || BadHooks(events.clone())).unwrap();
    log.expect(&[Ev::Started("bad-hooks", 0)]).await;
    actor.tell(Cmd::Crash).await.unwrap();
    log.expect(&[Ev::Started("bad-hooks", 1)]).await;
    assert_eq!(system.counters().panics, 2);
    system.shutdown().await;
}

/// A panic in `started` fails the instance like a panic in a handler, and every restart
/// builds a fresh instance with the factory: state does not survive a failure.
#[tokio::test]
async fn a_panic_in_started_is_a_failure_and_restarts_rebuild_state_from_the_factory() {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    struct Counter {
        count: u32,
        events: Events<Ev>,
        panics_left: Arc<AtomicU32>,
    }
    impl Actor for Counter {
        async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
            if self.panics_left.load(Relaxed) > 0 {
                self.panics_left.fetch_sub(1, Relaxed);
                panic!("started panics (expected by the test)");
            }
            self.events.emit(Ev::Started("counter", ctx.restarts()));
            Ok(())
        }
        async fn restarting(&mut self, _: &mut Context<Self>, cause: &Failure) {
            self.events.emit(Ev::Restarting("counter", cause.clone()));
        }
    }
    struct Incr;
    impl Message for Incr {
        type Reply = u32;
    }
    impl Handler<Incr> for Counter {
        async fn handle(&mut self, _: Incr, _: &mut Context<Self>) -> u32 {
            self.count += 1;
            self.count
        }
    }
    impl Handler<Cmd> for Counter {
        async fn handle(&mut self, _: Cmd, _: &mut Context<Self>) {
            panic!("counter crashes (expected by the test)");
        }
    }

    let system = ActorSystem::new();
    let (events, mut log) = events();
    let built = Arc::new(AtomicU32::new(0));
    let panics_left = Arc::new(AtomicU32::new(1));
    let (b, p) = (built.clone(), panics_left.clone());
    let counter = system
        .spawn(move || {
            b.fetch_add(1, Relaxed);
            Counter {
                count: 0,
                events: events.clone(),
                panics_left: p.clone(),
            }
        })
        .unwrap();
    // The first instance panics in `started`: its `restarting` hook runs, a new one starts.
    log.expect(&[
        Ev::Restarting(
            "counter",
            Failure::Panicked("started panics (expected by the test)".into()),
        ),
        Ev::Started("counter", 1),
    ])
    .await;
    for expected in 1..=3 {
        assert_eq!(counter.ask(Incr).await, Ok(expected));
    }
    counter.tell(Cmd::Crash).await.unwrap();
    log.expect(&[
        Ev::Restarting(
            "counter",
            Failure::Panicked("counter crashes (expected by the test)".into()),
        ),
        Ev::Started("counter", 2),
    ])
    .await;
    // The count starts over: the new instance came from the factory, not from the old one.
    assert_eq!(counter.ask(Incr).await, Ok(1));
    assert_eq!(built.load(Relaxed), 3);
    assert_eq!(system.counters().panics, 2);
    system.shutdown().await;
}

/// Panics in `stopping` and `stopped` are caught and counted; the actor still terminates, its
/// watchers are told, and nothing else is disturbed.
#[tokio::test]
async fn panics_in_stop_hooks_are_contained_and_the_actor_still_terminates() {
    struct BadStop;
    impl Actor for BadStop {
        async fn stopping(&mut self, _: &mut Context<Self>) {
            panic!("stopping panics (expected by the test)");
        }
        async fn stopped(&mut self, _: &mut Context<Self>, _: &ExitReason) {
            panic!("stopped panics (expected by the test)");
        }
    }
    let system = ActorSystem::new();
    let bad = system.spawn(|| BadStop).unwrap();
    let steady = system.spawn(Steady::default).unwrap();
    assert_eq!(steady.ask(Tick).await, Ok(1));
    let stopped = {
        let bad = bad.clone();
        tokio::spawn(async move { bad.wait_for_stop().await })
    };
    tokio::task::yield_now().await;
    bad.stop();
    let reason = within(PATIENCE, stopped).await.unwrap();
    assert!(
        matches!(reason, ExitReason::Stopped | ExitReason::AlreadyTerminated),
        "{reason:?}"
    );
    assert!(!bad.is_alive());
    assert!(system.actor(bad.id()).is_none());
    assert_eq!(system.counters().panics, 2);
    assert_eq!(system.counters().restarts, 0, "a stop is not a failure");
    assert_eq!(steady.ask(Tick).await, Ok(2));
    let report = system.shutdown().await;
    assert!(report.completed, "{report:?}");
}

#[tokio::test]
async fn a_sibling_that_does_not_suspend_in_time_is_aborted_and_the_restart_goes_on() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    struct Pair {
        events: Events<Ev>,
        stuck: Option<ActorRef<Worker>>,
        other: Option<ActorRef<Worker>>,
    }
    impl Actor for Pair {
        async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
            self.stuck = Some(ctx.spawn(
                Worker::props("stuck", &self.events).shutdown_timeout(Duration::from_millis(50)),
            )?);
            self.other = Some(ctx.spawn(Worker::props("other", &self.events))?);
            Ok(())
        }
    }
    struct Kids;
    impl Message for Kids {
        type Reply = (ActorRef<Worker>, ActorRef<Worker>);
    }
    impl Handler<Kids> for Pair {
        async fn handle(
            &mut self,
            _: Kids,
            _: &mut Context<Self>,
        ) -> (ActorRef<Worker>, ActorRef<Worker>) {
            (self.stuck.clone().unwrap(), self.other.clone().unwrap())
        }
    }
    let ev = events.clone();
    let pair = system
        .spawn(
            Props::new(move || Pair {
                events: ev.clone(),
                stuck: None,
                other: None,
            })
            .supervisor(SupervisorStrategy::all_for_one()),
        )
        .unwrap();
    log.expect(&[Ev::Started("stuck", 0), Ev::Started("other", 0)])
        .await;
    let (stuck, other) = pair.ask(Kids).await.unwrap();
    stuck.tell(Cmd::Hang).await.unwrap();
    other.tell(Cmd::Crash).await.unwrap();
    // `other` is suspended first; `stuck` never gets to its suspension (its handler hangs), so
    // after its 50 ms shutdown timeout the parent aborts it and carries on with the restart.
    log.expect(&[
        Ev::Restarting("other", panicked("other")),
        Ev::Started("other", 1),
    ])
    .await;
    assert_eq!(
        within(PATIENCE, stuck.wait_for_stop()).await,
        ExitReason::AlreadyTerminated
    );
    assert_eq!(other.ask(Whoami).await.unwrap(), ("other", 1));
    system.shutdown().await;
}

//! Compartments: dispatchers (which threads an actor runs on, inherited by its subtree),
//! blocking actors (a thread each), bulkhead admission around asks, and the isolation they
//! buy: a group whose handlers block cannot starve another group.

use crate::common::{within, PATIENCE};
use postbox::prelude::*;
use postbox::{Bulkhead, BulkheadFull, Dispatcher};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Reports where it runs, spawns children on request, blocks its thread on request.
struct Probe;
impl Actor for Probe {}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned()
}

struct WhereAmI;
impl Message for WhereAmI {
    type Reply = String;
}
impl Handler<WhereAmI> for Probe {
    async fn handle(&mut self, _: WhereAmI, _: &mut Context<Self>) -> String {
        thread_name()
    }
}

/// Spawns a child `Probe` with these props.
struct SpawnChild(Props<Probe>);
impl Message for SpawnChild {
    type Reply = ActorRef<Probe>;
}
impl Handler<SpawnChild> for Probe {
    async fn handle(&mut self, msg: SpawnChild, ctx: &mut Context<Self>) -> ActorRef<Probe> {
        ctx.spawn(msg.0).expect("spawn child")
    }
}

/// Spawns a top-level `Probe` through the system, from inside this actor.
struct SpawnTopLevel;
impl Message for SpawnTopLevel {
    type Reply = ActorRef<Probe>;
}
impl Handler<SpawnTopLevel> for Probe {
    async fn handle(&mut self, _: SpawnTopLevel, ctx: &mut Context<Self>) -> ActorRef<Probe> {
        ctx.system().spawn(|| Probe).expect("spawn top-level")
    }
}

/// Tells `started`, then blocks the thread (not an `.await`) for `duration`.
struct Sleep {
    duration: Duration,
    started: std_mpsc::Sender<()>,
}
impl Message for Sleep {
    type Reply = ();
}
impl Handler<Sleep> for Probe {
    async fn handle(&mut self, msg: Sleep, _: &mut Context<Self>) {
        let _ = msg.started.send(());
        std::thread::sleep(msg.duration);
    }
}

/// Blocks the thread until the gate's sender sends (or is dropped).
struct BlockOn(std_mpsc::Receiver<()>);
impl Message for BlockOn {
    type Reply = ();
}
impl Handler<BlockOn> for Probe {
    async fn handle(&mut self, msg: BlockOn, _: &mut Context<Self>) {
        let _ = msg.0.recv();
    }
}

/// Tells `exited` when the thread running this handler ends (a thread-local's destructor).
struct NotifyOnThreadExit(std_mpsc::Sender<String>);
impl Message for NotifyOnThreadExit {
    type Reply = ();
}
impl Handler<NotifyOnThreadExit> for Probe {
    async fn handle(&mut self, msg: NotifyOnThreadExit, _: &mut Context<Self>) {
        struct OnExit(std_mpsc::Sender<String>, String);
        impl Drop for OnExit {
            fn drop(&mut self) {
                let _ = self.0.send(std::mem::take(&mut self.1));
            }
        }
        thread_local! {
            static ON_EXIT: std::cell::RefCell<Vec<OnExit>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        ON_EXIT.with(|guards| guards.borrow_mut().push(OnExit(msg.0, thread_name())));
    }
}

struct Panic;
impl Message for Panic {
    type Reply = ();
}
impl Handler<Panic> for Probe {
    async fn handle(&mut self, _: Panic, _: &mut Context<Self>) {
        panic!("probe told to panic");
    }
}

/// A multi-thread runtime whose workers are named `system-rt`, to tell them apart.
fn system_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("system-rt")
        .enable_all()
        .build()
        .expect("system runtime")
}

/// The test thread's own runtime: a client independent of every runtime actors run on.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

/// Waits (blocking the test thread, bounded) for one message on a std channel.
fn recv<T>(rx: &std_mpsc::Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("timed out waiting (10 s)")
}

#[tokio::test]
async fn children_inherit_their_parent_s_dispatcher() {
    let system = ActorSystem::new();
    let inherit = Dispatcher::new("inherit", 1).unwrap();
    let parent = system
        .spawn(Props::new(|| Probe).dispatcher(&inherit))
        .unwrap();
    let child = within(PATIENCE, parent.ask(SpawnChild(Props::new(|| Probe))))
        .await
        .unwrap();
    let grandchild = within(PATIENCE, child.ask(SpawnChild(Props::new(|| Probe))))
        .await
        .unwrap();
    for actor in [&parent, &child, &grandchild] {
        assert_eq!(
            within(PATIENCE, actor.ask(WhereAmI)).await.unwrap(),
            "postbox-inherit"
        );
    }
    system.shutdown().await;
}

#[tokio::test]
async fn a_child_s_own_dispatcher_overrides_its_parent_s_for_its_subtree() {
    let system = ActorSystem::new();
    let outer = Dispatcher::new("outer", 1).unwrap();
    let inner = Dispatcher::new("inner", 1).unwrap();
    let parent = system
        .spawn(Props::new(|| Probe).dispatcher(&outer))
        .unwrap();
    let child = within(
        PATIENCE,
        parent.ask(SpawnChild(Props::new(|| Probe).dispatcher(&inner))),
    )
    .await
    .unwrap();
    let grandchild = within(PATIENCE, child.ask(SpawnChild(Props::new(|| Probe))))
        .await
        .unwrap();
    assert_eq!(
        within(PATIENCE, parent.ask(WhereAmI)).await.unwrap(),
        "postbox-outer"
    );
    assert_eq!(
        within(PATIENCE, child.ask(WhereAmI)).await.unwrap(),
        "postbox-inner"
    );
    assert_eq!(
        within(PATIENCE, grandchild.ask(WhereAmI)).await.unwrap(),
        "postbox-inner"
    );
    system.shutdown().await;
}

#[test]
fn top_level_actors_run_on_the_system_runtime_whoever_spawns_them() {
    let runtime = system_runtime(1);
    let client = client_runtime();
    let system = ActorSystem::builder()
        .runtime(runtime.handle().clone())
        .build();
    let pool = Dispatcher::new("pool", 1).unwrap();
    client.block_on(async {
        let plain = system.spawn(|| Probe).unwrap();
        assert_eq!(
            within(PATIENCE, plain.ask(WhereAmI)).await.unwrap(),
            "system-rt"
        );
        // Spawned by an actor on a dispatcher, but through the system: not inherited.
        let pooled = system
            .spawn(Props::new(|| Probe).dispatcher(&pool))
            .unwrap();
        let top = within(PATIENCE, pooled.ask(SpawnTopLevel)).await.unwrap();
        assert_eq!(
            within(PATIENCE, top.ask(WhereAmI)).await.unwrap(),
            "system-rt"
        );
        assert!(system.shutdown().await.completed);
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}

#[tokio::test]
async fn a_restarted_actor_stays_on_its_dispatcher() {
    let system = ActorSystem::new();
    let pool = Dispatcher::new("restarts", 1).unwrap();
    let probe = system
        .spawn(Props::new(|| Probe).dispatcher(&pool))
        .unwrap();
    assert_eq!(
        within(PATIENCE, probe.ask(Panic)).await,
        Err(AskError::Panicked)
    );
    assert_eq!(
        within(PATIENCE, probe.ask(WhereAmI)).await.unwrap(),
        "postbox-restarts"
    );
    assert_eq!(probe.stats().restarts, 1);
    system.shutdown().await;
}

#[test]
fn blocking_actors_get_a_thread_each_and_leave_the_workers_free() {
    // One worker only: if a blocking actor ran on it, nothing else could.
    let runtime = system_runtime(1);
    let client = client_runtime();
    let system = ActorSystem::builder()
        .runtime(runtime.handle().clone())
        .build();
    client.block_on(async {
        let first = system.spawn(Props::new(|| Probe).blocking()).unwrap();
        let second = system.spawn(Props::new(|| Probe).blocking()).unwrap();
        let responsive = system.spawn(|| Probe).unwrap();
        let first_thread = within(PATIENCE, first.ask(WhereAmI)).await.unwrap();
        let second_thread = within(PATIENCE, second.ask(WhereAmI)).await.unwrap();
        assert!(
            first_thread.starts_with("postbox-blocking-"),
            "{first_thread}"
        );
        assert!(
            second_thread.starts_with("postbox-blocking-"),
            "{second_thread}"
        );
        assert_ne!(first_thread, second_thread);

        // Both blocking actors now block their threads until released ...
        let (release_first, gate) = std_mpsc::channel();
        first.tell(BlockOn(gate)).await.unwrap();
        let (release_second, gate) = std_mpsc::channel();
        second.tell(BlockOn(gate)).await.unwrap();
        // ... and the single worker still serves everyone else.
        for _ in 0..10 {
            assert_eq!(
                within(PATIENCE, responsive.ask(WhereAmI)).await.unwrap(),
                "system-rt"
            );
        }
        release_first.send(()).unwrap();
        release_second.send(()).unwrap();
        assert!(system.shutdown().await.completed);
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn children_of_a_blocking_actor_are_not_blocking() {
    let runtime = system_runtime(1);
    let client = client_runtime();
    let system = ActorSystem::builder()
        .runtime(runtime.handle().clone())
        .build();
    let pool = Dispatcher::new("children", 1).unwrap();
    client.block_on(async {
        // Without a dispatcher of its own, a blocking actor's children run where it would have.
        let plain = system.spawn(Props::new(|| Probe).blocking()).unwrap();
        let child = within(PATIENCE, plain.ask(SpawnChild(Props::new(|| Probe))))
            .await
            .unwrap();
        assert_eq!(
            within(PATIENCE, child.ask(WhereAmI)).await.unwrap(),
            "system-rt"
        );

        // With one, that is where its children go; the actor itself still has its own thread.
        let pooled = system
            .spawn(Props::new(|| Probe).blocking().dispatcher(&pool))
            .unwrap();
        let own = within(PATIENCE, pooled.ask(WhereAmI)).await.unwrap();
        assert!(own.starts_with("postbox-blocking-"), "{own}");
        let child = within(PATIENCE, pooled.ask(SpawnChild(Props::new(|| Probe))))
            .await
            .unwrap();
        assert_eq!(
            within(PATIENCE, child.ask(WhereAmI)).await.unwrap(),
            "postbox-children"
        );

        // A child may ask to be blocking itself.
        let blocking_child = within(
            PATIENCE,
            pooled.ask(SpawnChild(Props::new(|| Probe).blocking())),
        )
        .await
        .unwrap();
        let thread = within(PATIENCE, blocking_child.ask(WhereAmI))
            .await
            .unwrap();
        assert!(
            thread.starts_with("postbox-blocking-") && thread != own,
            "{thread}"
        );
        assert!(system.shutdown().await.completed);
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}

#[tokio::test]
async fn a_blocking_actor_s_thread_ends_with_the_actor() {
    let system = ActorSystem::new();
    let probe = system.spawn(Props::new(|| Probe).blocking()).unwrap();
    let (exited, exits) = std_mpsc::channel();
    within(PATIENCE, probe.ask(NotifyOnThreadExit(exited)))
        .await
        .unwrap();
    let thread = within(PATIENCE, probe.ask(WhereAmI)).await.unwrap();
    probe.stop();
    within(PATIENCE, probe.wait_for_stop()).await;
    let ended = tokio::task::spawn_blocking(move || recv(&exits))
        .await
        .unwrap();
    assert_eq!(ended, thread);
    system.shutdown().await;
}

#[tokio::test]
async fn a_dispatcher_outlives_its_handles_while_its_actors_run_then_shuts_down() {
    let system = ActorSystem::new();
    let pool = Dispatcher::new("lifetime", 1).unwrap();
    let probe = system
        .spawn(Props::new(|| Probe).dispatcher(&pool))
        .unwrap();
    drop(pool);
    // The actor's task keeps the dispatcher running.
    assert_eq!(
        within(PATIENCE, probe.ask(WhereAmI)).await.unwrap(),
        "postbox-lifetime"
    );
    let (exited, exits) = std_mpsc::channel();
    within(PATIENCE, probe.ask(NotifyOnThreadExit(exited)))
        .await
        .unwrap();
    // When the actor ends, its task drops the last handle — on the dispatcher's own worker —
    // and the runtime shuts down: its thread exits although we still hold a reference.
    probe.stop();
    within(PATIENCE, probe.wait_for_stop()).await;
    let ended = tokio::task::spawn_blocking(move || recv(&exits))
        .await
        .unwrap();
    assert_eq!(ended, "postbox-lifetime");
    assert!(!probe.is_alive());
    system.shutdown().await;
}

/// Waits on a gate (a semaphore the test fills), telling `started` first.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
}
impl Actor for Gated {}

struct Job(u32);
impl Message for Job {
    type Reply = u32;
}
impl Handler<Job> for Gated {
    async fn handle(&mut self, msg: Job, _: &mut Context<Self>) -> u32 {
        let _ = self.started.send(());
        self.gate.acquire().await.expect("gate open").forget();
        msg.0
    }
}

/// Polls `future` once with the current task's waker.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
}

#[tokio::test]
async fn a_bulkhead_admits_queues_and_sheds_asks_to_a_busy_group() {
    let system = ActorSystem::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let workers: Vec<ActorRef<Gated>> = (0..2)
        .map(|_| {
            let (gate, started) = (gate.clone(), started_tx.clone());
            system
                .spawn(move || Gated {
                    gate: gate.clone(),
                    started: started.clone(),
                })
                .unwrap()
        })
        .collect();
    let bulkhead = Bulkhead::new("workers", 2, 1);

    // Two asks are admitted and reach the workers, which hold them at the gate.
    let running: Vec<_> = (0..2)
        .map(|i| {
            let (bulkhead, worker) = (bulkhead.clone(), workers[i].clone());
            tokio::spawn(async move { bulkhead.run(worker.ask(Job(i as u32))).await })
        })
        .collect();
    within(PATIENCE, started.recv()).await.unwrap();
    within(PATIENCE, started.recv()).await.unwrap();
    assert_eq!(bulkhead.stats().in_flight, 2);

    // A third waits in line: its message is not sent yet.
    let mut third = pin!(bulkhead.run(workers[0].ask(Job(2))));
    assert!(poll_once(&mut third).await.is_pending());
    assert_eq!(workers[0].depth(), 0);

    // A fourth is refused at once, and never reaches a mailbox.
    let refused = bulkhead.run(workers[1].ask(Job(3))).await;
    let Err(BulkheadFull {
        in_flight, queued, ..
    }) = refused
    else {
        panic!("expected a rejection, got {refused:?}");
    };
    assert_eq!((in_flight, queued), (2, 1));
    assert_eq!(workers[1].depth(), 0);

    gate.add_permits(3);
    for (i, task) in running.into_iter().enumerate() {
        assert_eq!(
            within(PATIENCE, task).await.unwrap().unwrap().unwrap(),
            i as u32
        );
    }
    assert_eq!(within(PATIENCE, third).await.unwrap().unwrap(), 2);
    let stats = bulkhead.stats();
    assert_eq!(
        (
            stats.in_flight,
            stats.queued,
            stats.admitted,
            stats.rejected
        ),
        (0, 0, 3, 1)
    );
    system.shutdown().await;
    // Handled: the three admitted asks, not the refused one.
    let processed: u64 = workers.iter().map(|w| w.stats().processed).sum();
    assert_eq!(processed, 3);
}

// ---------------------------------------------------------------------------------------------
// Isolation: group A's handlers block their threads; group B must still answer.

/// Where group A runs in the isolation scenario.
enum GroupA {
    /// On the system's runtime, beside group B: no bulkhead.
    SharedRuntime,
    /// On a small dispatcher of its own.
    Dispatcher(Dispatcher),
    /// Each actor on a thread of its own.
    Blocking,
}

const A_ACTORS: usize = 4;
const A_BLOCKS_FOR: Duration = Duration::from_secs(1);
const B_BOUND: Duration = Duration::from_millis(200);
const SYSTEM_WORKERS: usize = 2;

/// What group B's client saw while group A was blocked.
struct Observed {
    /// Latencies of B's asks within the bound; stops at the first that exceeds it.
    within_bound: Vec<Duration>,
    /// Whether an ask exceeded the bound, and when it was eventually answered.
    starved: Option<Duration>,
}

/// Blocks every actor of group A in a handler (`std::thread::sleep`), then asks group B from
/// a client on the test thread's own runtime. The client's timer is on that runtime: the
/// system's timers stall when all its workers are blocked, so asks' own timeouts would not do.
fn isolation_scenario(placement: GroupA) -> Observed {
    let runtime = system_runtime(SYSTEM_WORKERS);
    let client = client_runtime();
    let system = ActorSystem::builder()
        .runtime(runtime.handle().clone())
        .build();
    let group_b: Vec<_> = (0..2).map(|_| system.spawn(|| Probe).unwrap()).collect();
    let props = || match &placement {
        GroupA::SharedRuntime => Props::new(|| Probe),
        GroupA::Dispatcher(dispatcher) => Props::new(|| Probe).dispatcher(dispatcher),
        GroupA::Blocking => Props::new(|| Probe).blocking(),
    };
    let group_a: Vec<_> = (0..A_ACTORS)
        .map(|_| system.spawn(props()).unwrap())
        .collect();
    // Every actor is started and answering before A is blocked.
    client.block_on(async {
        for actor in group_a.iter().chain(&group_b) {
            within(PATIENCE, actor.ask(WhereAmI)).await.unwrap();
        }
    });

    let (started_tx, started) = std_mpsc::channel();
    for actor in &group_a {
        actor
            .try_tell(Sleep {
                duration: A_BLOCKS_FOR,
                started: started_tx.clone(),
            })
            .unwrap();
    }
    // Wait until as many A handlers block as can run at once: all threads A may use are taken.
    let concurrent = match &placement {
        GroupA::SharedRuntime => SYSTEM_WORKERS,
        GroupA::Dispatcher(dispatcher) => dispatcher.threads(),
        GroupA::Blocking => A_ACTORS,
    };
    for _ in 0..concurrent {
        recv(&started);
    }

    let observed = client.block_on(async {
        let mut within_bound = Vec::new();
        let mut starved = None;
        for round in 0..10 {
            let b = &group_b[round % group_b.len()];
            let asked = Instant::now();
            match tokio::time::timeout(B_BOUND, b.ask(WhereAmI)).await {
                Ok(reply) => {
                    assert_eq!(reply.unwrap(), "system-rt");
                    within_bound.push(asked.elapsed());
                }
                Err(_) => {
                    // Starved: measure when B answers at all (hang guard, not a delay).
                    let answered = tokio::time::timeout(Duration::from_secs(10), b.ask(WhereAmI))
                        .await
                        .expect("B never answered");
                    assert_eq!(answered.unwrap(), "system-rt");
                    starved = Some(asked.elapsed());
                    break;
                }
            }
        }
        // Graceful shutdown waits for A's handlers to return; nothing is left blocked.
        let report = system.shutdown().await;
        assert!(report.completed, "{report:?}");
        Observed {
            within_bound,
            starved,
        }
    });
    drop(group_a);
    runtime.shutdown_timeout(Duration::from_secs(5));
    observed
}

fn report(label: &str, observed: &Observed) {
    let max = observed.within_bound.iter().max();
    eprintln!(
        "isolation [{label}]: {} asks to B within {B_BOUND:?} (max {max:?}); starved: {:?}",
        observed.within_bound.len(),
        observed.starved
    );
}

#[test]
fn without_a_bulkhead_a_blocked_group_starves_the_others() {
    let observed = isolation_scenario(GroupA::SharedRuntime);
    report("shared runtime", &observed);
    assert!(observed.within_bound.is_empty(), "B answered while starved");
    let starved = observed.starved.expect("B must be starved");
    assert!(starved > B_BOUND, "{starved:?}");
}

#[test]
fn a_dispatcher_keeps_a_blocked_group_from_starving_the_others() {
    let dispatcher = Dispatcher::new("group-a", 2).unwrap();
    let observed = isolation_scenario(GroupA::Dispatcher(dispatcher));
    report("dispatcher", &observed);
    assert_eq!(observed.starved, None);
    assert_eq!(observed.within_bound.len(), 10);
    assert!(observed
        .within_bound
        .iter()
        .all(|latency| *latency < B_BOUND));
}

#[test]
fn blocking_actors_keep_a_blocked_group_from_starving_the_others() {
    let observed = isolation_scenario(GroupA::Blocking);
    report("blocking actors", &observed);
    assert_eq!(observed.starved, None);
    assert_eq!(observed.within_bound.len(), 10);
    assert!(observed
        .within_bound
        .iter()
        .all(|latency| *latency < B_BOUND));
}

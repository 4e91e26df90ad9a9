//! Routers: each strategy's choice, routee membership (death watch, replacement, resizing) and
//! what happens when no routee is left.

use crate::common::{events, until, within, Events, PATIENCE};
use postbox::prelude::*;
use postbox::{DeadLetterReason, Resizer, Router, Routing};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Replies with its own id; `Job`s can be held at a gate.
struct Worker {
    gate: Arc<Semaphore>,
    events: Option<Events<ActorId>>,
}

impl Actor for Worker {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Some(events) = &self.events {
            events.emit(ctx.id());
        }
        Ok(())
    }
}

fn worker(gate: &Arc<Semaphore>) -> impl Fn() -> Worker + Send + Sync + 'static {
    let gate = gate.clone();
    move || Worker {
        gate: gate.clone(),
        events: None,
    }
}

#[derive(Clone, Debug)]
struct Job(u64);
impl Message for Job {
    type Reply = ActorId;
}
impl Handler<Job> for Worker {
    async fn handle(&mut self, _: Job, ctx: &mut Context<Self>) -> ActorId {
        // One permit per job: a handler that is busy for as long as the test says.
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        ctx.id()
    }
}

/// Stops the routee (normal exit).
struct Quit;
impl Message for Quit {
    type Reply = ();
}
impl Handler<Quit> for Worker {
    async fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Panics the routee.
struct Crash;
impl Message for Crash {
    type Reply = ();
}
impl Handler<Crash> for Worker {
    async fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("crash requested");
    }
}

fn open_gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
}

fn spawn_workers(system: &ActorSystem, gate: &Arc<Semaphore>, n: usize) -> Vec<ActorRef<Worker>> {
    (0..n)
        .map(|i| {
            let make = worker(gate);
            system
                .spawn(Props::new(make).name(format!("w{i}")))
                .unwrap()
        })
        .collect()
}

async fn tally(router: &Router<Job>, n: u64) -> HashMap<ActorId, u64> {
    let mut counts = HashMap::new();
    for i in 0..n {
        *counts.entry(router.ask(Job(i)).await.unwrap()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_takes_turns() {
    let system = ActorSystem::new();
    let router = Router::pool(4, worker(&open_gate()))
        .spawn(&system)
        .await
        .unwrap();
    assert_eq!(router.len(), 4);
    let counts = tally(&router, 40).await;
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|&c| c == 10), "{counts:?}");
    system.shutdown().await;
}

#[tokio::test]
async fn random_reaches_every_routee() {
    let system = ActorSystem::new();
    let router = Router::pool(3, worker(&open_gate()))
        .routing(Routing::random())
        .spawn(&system)
        .await
        .unwrap();
    let counts = tally(&router, 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 300);
    system.shutdown().await;
}

#[tokio::test]
async fn smallest_mailbox_avoids_busy_routees() {
    let system = ActorSystem::new();
    let stuck_gate = Arc::new(Semaphore::new(0));
    let free_gate = open_gate();
    let stuck = system.spawn(Props::new(worker(&stuck_gate))).unwrap();
    let free: Vec<_> = spawn_workers(&system, &free_gate, 2);
    let router = Router::group([stuck.clone()].into_iter().chain(free.iter().cloned()))
        .routing(Routing::smallest_mailbox())
        .spawn(&system)
        .await
        .unwrap();

    // Make the first routee busy: one message in hand (mailbox empty), one queued.
    stuck.tell(Job(0)).await.unwrap();
    stuck.tell(Job(1)).await.unwrap();
    until(PATIENCE, "one queued at the stuck routee", || {
        stuck.depth() == 1
    })
    .await;
    assert_eq!(stuck.load(), 2, "one waiting, one being handled");

    let counts = tally(&router, 50).await;
    assert!(!counts.contains_key(&stuck.id()), "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 50);

    // Depth alone would not see an actor busy with an empty mailbox; load does.
    stuck_gate.add_permits(1);
    until(PATIENCE, "the stuck routee's mailbox empty", || {
        stuck.depth() == 0
    })
    .await;
    assert_eq!(stuck.load(), 1, "handling its second message");
    let counts = tally(&router, 20).await;
    assert!(!counts.contains_key(&stuck.id()), "{counts:?}");
    stuck_gate.add_permits(1);
    system.shutdown().await;
}

#[tokio::test]
async fn smallest_load_reads_the_load_function_not_the_local_mailbox() {
    let system = ActorSystem::new();
    let workers = spawn_workers(&system, &open_gate(), 3);
    // Pretend the first two routees carry load this process cannot see (as a remote actor's
    // far-side queue): 5 and 1 messages; the third reports none, then more than the others.
    let far_side: Arc<std::sync::Mutex<HashMap<ActorId, usize>>> =
        Arc::new(std::sync::Mutex::new(HashMap::from([
            (workers[0].id(), 5),
            (workers[1].id(), 1),
        ])));
    let router = Router::group(workers.clone())
        .routing(Routing::smallest_load({
            let far_side = far_side.clone();
            move |routee: &Recipient<Job>| {
                let far = far_side.lock().unwrap().get(&routee.id()).copied();
                routee.load() + far.unwrap_or(0)
            }
        }))
        .spawn(&system)
        .await
        .unwrap();
    assert_eq!(router.routing().name(), "smallest_load");

    let counts = tally(&router, 30).await;
    assert_eq!(counts.get(&workers[2].id()), Some(&30), "{counts:?}");

    far_side.lock().unwrap().insert(workers[2].id(), 9);
    let counts = tally(&router, 30).await;
    assert_eq!(counts.get(&workers[1].id()), Some(&30), "{counts:?}");
    system.shutdown().await;
}

#[tokio::test]
async fn consistent_hashing_keeps_keys_on_their_routee() {
    let system = ActorSystem::new();
    let workers = spawn_workers(&system, &open_gate(), 4);
    let router = Router::group(workers.clone())
        .routing(Routing::consistent_hashing(|job: &Job| job.0 % 100))
        .spawn(&system)
        .await
        .unwrap();
    let mut owner = HashMap::new();
    for key in 0..100 {
        owner.insert(key, router.ask(Job(key)).await.unwrap());
    }
    for key in 0..100 {
        assert_eq!(router.ask(Job(key + 100)).await.unwrap(), owner[&key]);
    }
    let per_routee: HashMap<ActorId, usize> = owner.values().fold(HashMap::new(), |mut m, id| {
        *m.entry(*id).or_default() += 1;
        m
    });
    assert_eq!(per_routee.len(), 4, "keys spread over every routee");

    // One routee leaves: only its keys move.
    let gone = workers[1].id();
    router.remove_routee(gone);
    for key in 0..100 {
        let now = router.ask(Job(key)).await.unwrap();
        if owner[&key] == gone {
            assert_ne!(now, gone);
        } else {
            assert_eq!(now, owner[&key], "key {key} moved needlessly");
        }
    }
    system.shutdown().await;
}

#[tokio::test]
async fn broadcast_reaches_every_routee() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    struct Listener(Events<(ActorId, u32)>);
    impl Actor for Listener {}
    #[derive(Clone)]
    struct Note(u32);
    impl Message for Note {
        type Reply = ();
    }
    impl Handler<Note> for Listener {
        async fn handle(&mut self, Note(n): Note, ctx: &mut Context<Self>) {
            self.0.emit((ctx.id(), n));
        }
    }
    let listeners: Vec<_> = (0..3)
        .map(|_| {
            let events = events.clone();
            system
                .spawn(Props::new(move || Listener(events.clone())))
                .unwrap()
        })
        .collect();
    let router = Router::group(listeners.clone())
        .routing(Routing::broadcast())
        .spawn(&system)
        .await
        .unwrap();
    router.tell(Note(7)).await.unwrap();
    let mut got = log.take(3).await;
    got.sort();
    let mut want: Vec<_> = listeners.iter().map(|l| (l.id(), 7)).collect();
    want.sort();
    assert_eq!(got, want);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn scatter_gather_takes_the_first_reply_within_the_deadline() {
    let system = ActorSystem::new();
    let slow_gate = Arc::new(Semaphore::new(0));
    let slow = spawn_workers(&system, &slow_gate, 2);
    let fast = system.spawn(Props::new(worker(&open_gate()))).unwrap();
    let router = Router::group(slow.iter().cloned().chain([fast.clone()]))
        .routing(Routing::scatter_gather(Duration::from_secs(1)))
        .spawn(&system)
        .await
        .unwrap();
    assert_eq!(router.ask(Job(1)).await.unwrap(), fast.id());

    // Nobody answers in time: a timeout after the deadline, not a hang.
    router.remove_routee(fast.id());
    let started = tokio::time::Instant::now();
    assert_eq!(
        router.ask(Job(2)).await,
        Err(AskError::Timeout(Duration::from_secs(1)))
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    slow_gate.add_permits(100);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn tail_chopping_asks_the_next_routee_after_each_interval() {
    let system = ActorSystem::new();
    let stuck_gate = Arc::new(Semaphore::new(0));
    let stuck = system.spawn(Props::new(worker(&stuck_gate))).unwrap();
    let fine = system.spawn(Props::new(worker(&open_gate()))).unwrap();
    let interval = Duration::from_millis(100);
    let router = Router::group([stuck.clone(), fine.clone()])
        .routing(Routing::tail_chopping(interval, Duration::from_secs(2)))
        .spawn(&system)
        .await
        .unwrap();
    // Turns start at the stuck routee: no reply within the interval, so the fine one is asked
    // too, and its reply wins.
    let started = tokio::time::Instant::now();
    assert_eq!(router.ask(Job(1)).await.unwrap(), fine.id());
    assert!(started.elapsed() >= interval, "{:?}", started.elapsed());
    assert_eq!(
        stuck.load(),
        1,
        "the stuck routee still holds the first try"
    );
    // The next turn starts at the fine routee: answered at once, nobody else asked.
    let started = tokio::time::Instant::now();
    assert_eq!(router.ask(Job(2)).await.unwrap(), fine.id());
    assert!(started.elapsed() < interval);
    assert_eq!(stuck.load(), 1);
    stuck_gate.add_permits(100);
    system.shutdown().await;
}

#[tokio::test]
async fn dead_routees_leave_and_the_last_one_gone_means_dead_letters() {
    let system = ActorSystem::new();
    let workers = spawn_workers(&system, &open_gate(), 2);
    let router = Router::group(workers.clone()).spawn(&system).await.unwrap();
    workers[0].stop();
    workers[0].wait_for_stop().await;
    // Every tell lands on the survivor; none becomes a dead letter on the way.
    for i in 0..10 {
        router.tell(Job(i)).await.unwrap();
    }
    assert_eq!(router.len(), 1);
    assert_eq!(router.ask(Job(0)).await.unwrap(), workers[1].id());
    assert_eq!(system.dead_letters().total(), 0);

    workers[1].stop();
    workers[1].wait_for_stop().await;
    let Err(SendError(Job(42))) = router.tell(Job(42)).await else {
        panic!("expected the message back");
    };
    assert!(matches!(
        router.try_tell(Job(43)),
        Err(TrySendError::Closed(Job(43)))
    ));
    assert_eq!(router.ask(Job(44)).await, Err(AskError::NoRoutees));
    assert!(router.is_empty());
    assert_eq!(system.dead_letters().count(DeadLetterReason::NoRoutees), 3);
    system.shutdown().await;
}

/// The death-watch path on its own: nothing is sent through the router, so only the manager's
/// `Terminated` can take the dead routees out of the set (a sender finding a routee closed
/// would hide a broken watch in the test above).
#[tokio::test]
async fn a_routee_that_terminates_leaves_the_set_without_any_send() {
    let system = ActorSystem::new();
    let workers = spawn_workers(&system, &open_gate(), 3);
    let router = Router::group(workers.clone()).spawn(&system).await.unwrap();
    assert_eq!(router.len(), 3);

    workers[1].stop();
    workers[1].wait_for_stop().await;
    until(PATIENCE, "the stopped routee gone from the set", || {
        router.len() == 2
    })
    .await;
    assert!(!router.routees().iter().any(|r| r.id() == workers[1].id()));

    // A kill of a temporary routee is final as well; a restarted one would stay.
    let temporary = system
        .spawn(Props::new(worker(&open_gate())).restart(Restart::Temporary))
        .unwrap();
    router.add_routee(temporary.clone());
    assert_eq!(router.len(), 3);
    temporary.kill();
    temporary.wait_for_stop().await;
    until(PATIENCE, "the killed routee gone from the set", || {
        router.len() == 2
    })
    .await;

    // The survivors take turns; nothing became a dead letter.
    let counts = tally(&router, 10).await;
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.contains_key(&workers[0].id()) && counts.contains_key(&workers[2].id()));
    assert_eq!(system.dead_letters().total(), 0);
    system.shutdown().await;
}

/// A pool member that can be told to fail or stop.
struct Member {
    events: Events<ActorId>,
}

impl Actor for Member {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.events.emit(ctx.id());
        Ok(())
    }
}

enum Order {
    WhoAreYou,
    Crash,
    Quit,
}
impl Message for Order {
    type Reply = ActorId;
}
impl Handler<Order> for Member {
    async fn handle(&mut self, order: Order, ctx: &mut Context<Self>) -> ActorId {
        match order {
            Order::WhoAreYou => {}
            Order::Crash => panic!("crash requested"),
            Order::Quit => ctx.stop(),
        }
        ctx.id()
    }
}

#[tokio::test]
async fn pool_restarts_failed_routees_in_place_and_replaces_stopped_ones() {
    let system = ActorSystem::new();
    let (events, mut log) = events();
    let router = Router::pool(2, move || Member {
        events: events.clone(),
    })
    .restart(Restart::Transient)
    .name("pool")
    .spawn(&system)
    .await
    .unwrap();
    let first = log.take(2).await;
    let routees = router.routees();
    assert_eq!(routees.iter().map(|r| r.id()).collect::<Vec<_>>(), first);
    let paths: Vec<String> = routees.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/user/pool/routee-1", "/user/pool/routee-2"]);

    // A panic restarts the routee in place: same id, still routed to.
    assert_eq!(routees[0].ask(Order::Crash).await, Err(AskError::Panicked));
    assert_eq!(log.next().await, first[0], "restarted instance, same actor");
    assert_eq!(routees[0].ask(Order::WhoAreYou).await.unwrap(), first[0]);
    assert_eq!(router.len(), 2);

    // A transient routee's normal stop is final: the pool replaces it, under the same name.
    routees[1].ask(Order::Quit).await.unwrap();
    let replacement = log.next().await;
    assert!(!first.contains(&replacement));
    until(PATIENCE, "the replacement in the set", || {
        router.routees().iter().any(|r| r.id() == replacement)
    })
    .await;
    let after = router.routees();
    assert_eq!(after.len(), 2);
    assert!(!after.iter().any(|r| r.id() == first[1]));
    assert_eq!(
        after.iter().find(|r| r.id() == replacement).unwrap().path(),
        paths[1]
    );

    // Stopping the router stops the pool; sends then find no routee.
    router.stop();
    routees[0].clone().tell(Order::WhoAreYou).await.ok();
    until(PATIENCE, "the pool emptied", || router.is_empty()).await;
    assert_eq!(router.ask(Order::WhoAreYou).await, Err(AskError::NoRoutees));
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resizer_grows_under_load_and_shrinks_when_idle() {
    let system = ActorSystem::new();
    let gate = Arc::new(Semaphore::new(0));
    let router = Router::pool(1, worker(&gate))
        .routing(Routing::smallest_mailbox())
        .resizer(Resizer::new(1, 3).interval(Duration::from_millis(100)))
        .spawn(&system)
        .await
        .unwrap();
    assert_eq!(router.len(), 1);
    // Keep every routee busy: the pool grows to its upper bound, and no further.
    within(PATIENCE, async {
        while router.len() < 3 {
            for i in 0..3 {
                router.tell(Job(i)).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(router.len(), 3);
    // Idle again: back down to the lower bound, retiring routees after their queued work.
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    within(PATIENCE, async {
        while router.len() > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        system.dead_letters().count(DeadLetterReason::DroppedAtStop),
        0
    );
    system.shutdown().await;
}

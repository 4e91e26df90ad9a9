//! `postbox` peer: the runtime under test, used the way an application would use it.
//!
//! Actors are spawned top-level with their default props (bounded mailbox of 1024, like the
//! raw baseline); actor-to-actor sends are `tell(..).await` (back-pressured), asks are
//! `ask(..).await`. Everything runs on the shared 2-worker multi-thread runtime
//! ([`super::run_on_tokio`]); the driver is a task on that runtime. Only the core of each
//! scenario is timed; setup and teardown are not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postbox::prelude::*;

use super::{
    fork_join_work, run_on_tokio, sum_below, wait_done, Color, Countdown, Done, MemoryReport,
    XorShift,
};

async fn tell<A: Handler<M>, M: Message>(to: &ActorRef<A>, msg: M) {
    if to.tell(msg).await.is_err() {
        panic!("postbox: receiving actor stopped while the scenario still needed it");
    }
}

/// Shuts the system down without waiting for graceful drains (teardown is not measured).
async fn teardown(system: ActorSystem) {
    let _ = system.shutdown_within(Duration::ZERO).await;
}

// ---------------------------------------------------------------- tell_throughput / counting

struct Summer {
    n: u64,
    count: u64,
    sum: u64,
    done: Done<u64>,
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
            self.done.fire(self.sum);
        }
    }
}

/// One producer task sends `n` `u64`s to a summing actor; the clock stops when the actor has
/// processed all of them.
pub fn tell_throughput(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let (done, done_rx) = Done::new();
        let mut done = Some(done);
        let summer = system
            .spawn(move || Summer {
                n,
                count: 0,
                sum: 0,
                done: done.take().expect("the summer is never restarted"),
            })
            .expect("spawn");

        let start = Instant::now();
        for x in 0..n {
            tell(&summer, Num(x)).await;
        }
        let sum = wait_done(done_rx, "postbox tell_throughput").await;
        let elapsed = start.elapsed();

        assert_eq!(sum, sum_below(n), "postbox tell_throughput: wrong sum");
        teardown(system).await;
        elapsed
    })
}

struct Echo;
impl Actor for Echo {}

struct Plus1(u64);
impl Message for Plus1 {
    type Reply = u64;
}
impl Handler<Plus1> for Echo {
    async fn handle(&mut self, msg: Plus1, _: &mut Context<Self>) -> u64 {
        msg.0 + 1
    }
}

/// `n` sequential asks (`x -> x + 1`), each reply checked.
pub fn ask_roundtrip(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let echo = system.spawn(|| Echo).expect("spawn");

        let start = Instant::now();
        for x in 0..n {
            let y = echo.ask(Plus1(x)).await.expect("postbox ask failed");
            assert_eq!(y, x + 1, "postbox ask_roundtrip: wrong reply");
        }
        let elapsed = start.elapsed();

        teardown(system).await;
        elapsed
    })
}

// ---------------------------------------------------------------------------- spawn / memory

struct Idle {
    started: Countdown,
}
impl Actor for Idle {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.started.arrive();
        Ok(())
    }
}

async fn spawn_idle(system: &ActorSystem, n: u64) -> (Vec<ActorRef<Idle>>, Duration) {
    let mut refs = Vec::with_capacity(n as usize);
    let started = Countdown::new(n);
    let start = Instant::now();
    for _ in 0..n {
        let started = started.clone();
        refs.push(
            system
                .spawn(move || Idle {
                    started: started.clone(),
                })
                .expect("spawn"),
        );
    }
    started.wait().await;
    (refs, start.elapsed())
}

/// Time to spawn `n` idle actors until every one of them has run its `started` hook.
pub fn spawn(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let (refs, elapsed) = spawn_idle(&system, n).await;
        drop(refs);
        teardown(system).await;
        elapsed
    })
}

/// Memory probe: RSS before/after spawning `n` idle actors that are kept alive.
pub fn memory(n: u64) -> MemoryReport {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let rss_before = super::rss_bytes();
        let (refs, spawn_time) = spawn_idle(&system, n).await;
        let rss_after = super::rss_bytes();
        drop(refs);
        teardown(system).await;
        MemoryReport {
            actors: n,
            spawn_time,
            rss_before,
            rss_after,
        }
    })
}

// --------------------------------------------------------------------------------- ping_pong

struct Ping {
    n: u64,
    pongs: u64,
    pong: Option<ActorRef<Pong>>,
    done: Done<u64>,
}
impl Actor for Ping {}

struct Pong;
impl Actor for Pong {}

struct Serve(ActorRef<Ping>, ActorRef<Pong>);
impl Message for Serve {
    type Reply = ();
}
struct PongMsg;
impl Message for PongMsg {
    type Reply = ();
}
struct PingMsg(ActorRef<Ping>);
impl Message for PingMsg {
    type Reply = ();
}

impl Handler<Serve> for Ping {
    async fn handle(&mut self, Serve(me, pong): Serve, _: &mut Context<Self>) {
        tell(&pong, PingMsg(me)).await;
        self.pong = Some(pong);
    }
}

impl Handler<PongMsg> for Ping {
    async fn handle(&mut self, _: PongMsg, ctx: &mut Context<Self>) {
        self.pongs += 1;
        if self.pongs == self.n {
            self.done.fire(self.pongs);
            return;
        }
        let pong = self.pong.as_ref().expect("pong wired at start");
        tell(pong, PingMsg(ctx.myself().clone())).await;
    }
}

impl Handler<PingMsg> for Pong {
    async fn handle(&mut self, PingMsg(reply_to): PingMsg, _: &mut Context<Self>) {
        tell(&reply_to, PongMsg).await;
    }
}

/// Savina ping-pong: `n` round trips of fire-and-forget sends between two actors.
pub fn ping_pong(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let (done, done_rx) = Done::new();
        let mut done = Some(done);
        let ping = system
            .spawn(move || Ping {
                n,
                pongs: 0,
                pong: None,
                done: done.take().expect("never restarted"),
            })
            .expect("spawn");
        let pong = system.spawn(|| Pong).expect("spawn");

        let start = Instant::now();
        tell(&ping, Serve(ping.clone(), pong)).await;
        let pongs = wait_done(done_rx, "postbox ping_pong").await;
        let elapsed = start.elapsed();

        assert_eq!(pongs, n, "postbox ping_pong: wrong pong count");
        teardown(system).await;
        elapsed
    })
}

// ---------------------------------------------------------------------------------- counting

#[derive(Default)]
struct Counter(u64);
impl Actor for Counter {}
struct Inc;
impl Message for Inc {
    type Reply = ();
}
struct Get;
impl Message for Get {
    type Reply = u64;
}
impl Handler<Inc> for Counter {
    async fn handle(&mut self, _: Inc, _: &mut Context<Self>) {
        self.0 += 1;
    }
}
impl Handler<Get> for Counter {
    async fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.0
    }
}

/// Savina counting: `n` increments told to a counter, then one ask for the value.
pub fn counting(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let counter = system.spawn(Counter::default).expect("spawn");

        let start = Instant::now();
        for _ in 0..n {
            tell(&counter, Inc).await;
        }
        let count = counter.ask(Get).await.expect("postbox counter ask");
        let elapsed = start.elapsed();

        assert_eq!(count, n, "postbox counting: wrong count");
        teardown(system).await;
        elapsed
    })
}

// ------------------------------------------------------------------------------- thread_ring

struct RingNode {
    index: usize,
    next: Option<ActorRef<RingNode>>,
    done: Done<usize>,
}
impl Actor for RingNode {}
struct SetNext(ActorRef<RingNode>);
impl Message for SetNext {
    type Reply = ();
}
struct Token(u64);
impl Message for Token {
    type Reply = ();
}
impl Handler<SetNext> for RingNode {
    async fn handle(&mut self, SetNext(next): SetNext, _: &mut Context<Self>) {
        self.next = Some(next);
    }
}
impl Handler<Token> for RingNode {
    async fn handle(&mut self, Token(hops): Token, _: &mut Context<Self>) {
        if hops == 0 {
            self.done.fire(self.index);
        } else {
            let next = self
                .next
                .as_ref()
                .expect("postbox ring: token before SetNext");
            tell(next, Token(hops - 1)).await;
        }
    }
}

/// Savina thread ring: a token with a hop budget travels around a ring of `actors` actors.
pub fn thread_ring(actors: usize, hops: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let (done, done_rx) = Done::new();
        let refs: Vec<_> = (0..actors)
            .map(|index| {
                let done = done.clone();
                system
                    .spawn(move || RingNode {
                        index,
                        next: None,
                        done: done.clone(),
                    })
                    .expect("spawn")
            })
            .collect();
        for (i, r) in refs.iter().enumerate() {
            tell(r, SetNext(refs[(i + 1) % actors].clone())).await;
        }

        let start = Instant::now();
        tell(&refs[0], Token(hops)).await;
        let last = wait_done(done_rx, "postbox thread_ring").await;
        let elapsed = start.elapsed();

        assert_eq!(
            last,
            (hops % actors as u64) as usize,
            "postbox thread_ring: wrong hop count"
        );
        teardown(system).await;
        elapsed
    })
}

// --------------------------------------------------------------------------------- fork_join

struct Worker {
    per_actor: u64,
    count: u64,
    acc: f64,
    finished: Countdown,
}
impl Actor for Worker {}
impl Handler<Num> for Worker {
    async fn handle(&mut self, Num(x): Num, _: &mut Context<Self>) {
        self.acc += fork_join_work(x);
        self.count += 1;
        assert!(
            self.count <= self.per_actor,
            "postbox fork_join: worker over quota"
        );
        if self.count == self.per_actor {
            std::hint::black_box(self.acc);
            self.finished.arrive();
        }
    }
}

/// Savina fork-join (throughput): `per_actor` messages to each of `actors` workers, interleaved.
pub fn fork_join(actors: usize, per_actor: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let finished = Countdown::new(actors as u64);
        let refs: Vec<_> = (0..actors)
            .map(|_| {
                let finished = finished.clone();
                system
                    .spawn(move || Worker {
                        per_actor,
                        count: 0,
                        acc: 0.0,
                        finished: finished.clone(),
                    })
                    .expect("spawn")
            })
            .collect();

        let start = Instant::now();
        for j in 0..per_actor {
            for r in &refs {
                tell(r, Num(j)).await;
            }
        }
        finished.wait().await;
        let elapsed = start.elapsed();

        for r in &refs {
            assert_eq!(
                r.stats().processed,
                per_actor,
                "postbox fork_join: worker count"
            );
        }
        teardown(system).await;
        elapsed
    })
}

// --------------------------------------------------------------------------------- chameneos

struct Mall {
    remaining: u64,
    creatures: usize,
    waiting: Option<ActorRef<Creature>>,
    faded: usize,
    total: u64,
    done: Done<u64>,
}
impl Actor for Mall {}

struct Creature {
    color: Color,
    met: u64,
    mall: ActorRef<Mall>,
}
impl Actor for Creature {}

struct MeetRequest {
    color: Color,
    from: ActorRef<Creature>,
}
impl Message for MeetRequest {
    type Reply = ();
}
struct MetCount(u64);
impl Message for MetCount {
    type Reply = ();
}
enum CreatureMsg {
    Start,
    Meet {
        color: Color,
        other: ActorRef<Creature>,
    },
    Change(Color),
    Exit,
}
impl Message for CreatureMsg {
    type Reply = ();
}

impl Handler<MeetRequest> for Mall {
    async fn handle(&mut self, MeetRequest { color, from }: MeetRequest, _: &mut Context<Self>) {
        if self.remaining == 0 {
            tell(&from, CreatureMsg::Exit).await;
        } else if let Some(first) = self.waiting.take() {
            self.remaining -= 1;
            tell(&first, CreatureMsg::Meet { color, other: from }).await;
        } else {
            self.waiting = Some(from);
        }
    }
}

impl Handler<MetCount> for Mall {
    async fn handle(&mut self, MetCount(met): MetCount, _: &mut Context<Self>) {
        self.faded += 1;
        self.total += met;
        if self.faded == self.creatures {
            self.done.fire(self.total);
        }
    }
}

impl Handler<CreatureMsg> for Creature {
    async fn handle(&mut self, msg: CreatureMsg, ctx: &mut Context<Self>) {
        match msg {
            CreatureMsg::Start => {}
            CreatureMsg::Meet { color, other } => {
                self.color = self.color.complement(color);
                self.met += 1;
                tell(&other, CreatureMsg::Change(self.color)).await;
            }
            CreatureMsg::Change(color) => {
                self.color = color;
                self.met += 1;
            }
            CreatureMsg::Exit => {
                self.color = Color::Faded;
                tell(&self.mall, MetCount(self.met)).await;
                return;
            }
        }
        let from = ctx.myself().clone();
        tell(
            &self.mall,
            MeetRequest {
                color: self.color,
                from,
            },
        )
        .await;
    }
}

/// Savina chameneos (same protocol as the other peers).
pub fn chameneos(creatures: usize, meetings: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let (done, done_rx) = Done::new();
        let mut done = Some(done);
        let mall = system
            .spawn(move || Mall {
                remaining: meetings,
                creatures,
                waiting: None,
                faded: 0,
                total: 0,
                done: done.take().expect("never restarted"),
            })
            .expect("spawn");
        let refs: Vec<_> = (0..creatures)
            .map(|i| {
                let mall = mall.clone();
                system
                    .spawn(move || Creature {
                        color: Color::initial(i),
                        met: 0,
                        mall: mall.clone(),
                    })
                    .expect("spawn")
            })
            .collect();

        let start = Instant::now();
        for r in &refs {
            tell(r, CreatureMsg::Start).await;
        }
        let total = wait_done(done_rx, "postbox chameneos").await;
        let elapsed = start.elapsed();

        assert_eq!(
            total,
            2 * meetings,
            "postbox chameneos: wrong meeting total"
        );
        teardown(system).await;
        elapsed
    })
}

// ---------------------------------------------------------------------------------------- big

struct BigNode {
    index: usize,
    pings: u64,
    sent: u64,
    rng: XorShift,
    all: Option<Arc<Vec<ActorRef<BigNode>>>>,
    sink: ActorRef<Sink>,
}
impl Actor for BigNode {}

struct Sink {
    actors: usize,
    reports: usize,
    total: u64,
    done: Done<u64>,
}
impl Actor for Sink {}

enum BigMsg {
    Neighbors(Arc<Vec<ActorRef<BigNode>>>),
    Start,
    Ping(usize),
    Pong,
}
impl Message for BigMsg {
    type Reply = ();
}

impl BigNode {
    async fn next_ping(&mut self) {
        if self.sent < self.pings {
            self.sent += 1;
            let all = self.all.as_ref().expect("postbox big: start before wiring");
            let to = self.rng.other_than(self.index, all.len());
            tell(&all[to], BigMsg::Ping(self.index)).await;
        } else {
            tell(&self.sink, Num(self.sent)).await;
        }
    }
}

impl Handler<BigMsg> for BigNode {
    async fn handle(&mut self, msg: BigMsg, _: &mut Context<Self>) {
        match msg {
            BigMsg::Neighbors(all) => self.all = Some(all),
            BigMsg::Ping(from) => {
                let all = self.all.as_ref().expect("postbox big: ping before wiring");
                tell(&all[from], BigMsg::Pong).await;
            }
            BigMsg::Start | BigMsg::Pong => self.next_ping().await,
        }
    }
}

impl Handler<Num> for Sink {
    async fn handle(&mut self, Num(sent): Num, _: &mut Context<Self>) {
        self.reports += 1;
        self.total += sent;
        if self.reports == self.actors {
            self.done.fire(self.total);
        }
    }
}

/// Savina big (same protocol as the other peers).
pub fn big(actors: usize, pings: u64) -> Duration {
    run_on_tokio(move || async move {
        let system = ActorSystem::new();
        let (done, done_rx) = Done::new();
        let mut done = Some(done);
        let sink = system
            .spawn(move || Sink {
                actors,
                reports: 0,
                total: 0,
                done: done.take().expect("never restarted"),
            })
            .expect("spawn");
        let refs: Vec<_> = (0..actors)
            .map(|index| {
                let sink = sink.clone();
                system
                    .spawn(move || BigNode {
                        index,
                        pings,
                        sent: 0,
                        rng: XorShift::new(index as u64),
                        all: None,
                        sink: sink.clone(),
                    })
                    .expect("spawn")
            })
            .collect();
        let all = Arc::new(refs.clone());
        for r in &refs {
            tell(r, BigMsg::Neighbors(Arc::clone(&all))).await;
        }

        let start = Instant::now();
        for r in &refs {
            tell(r, BigMsg::Start).await;
        }
        let total = wait_done(done_rx, "postbox big").await;
        let elapsed = start.elapsed();

        assert_eq!(
            total,
            actors as u64 * pings,
            "postbox big: wrong ping total"
        );
        teardown(system).await;
        elapsed
    })
}

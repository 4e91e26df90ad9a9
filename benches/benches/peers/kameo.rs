//! `kameo` 0.22 peer: the scenarios written as kameo actors.
//!
//! Actors are spawned with kameo's default `Spawn::spawn`, which gives each actor a **bounded
//! mailbox of capacity 64** (`kameo::actor::DEFAULT_MAILBOX_CAPACITY`); a full mailbox makes
//! `tell(..).await` wait. Fire-and-forget is `actor_ref.tell(msg).await` (waits only for
//! mailbox space), request/reply is `actor_ref.ask(msg).await`. State lives in the actor struct;
//! handlers are `Message<M>` impls. Everything runs on the shared 2-worker multi-thread tokio
//! runtime ([`super::run_on_tokio`]); the driver/producer is a task on that runtime. Only the
//! core of each scenario is timed with [`Instant`]; the [`super::Done`]/[`super::Countdown`]
//! latches only observe completion — all scenario traffic goes through kameo actor refs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::kameo::actor::{Actor, ActorRef, Spawn};
use ::kameo::error::Infallible;
use ::kameo::message::{Context, Message};

use super::{
    fork_join_work, run_on_tokio, sum_below, wait_done, Color, Countdown, Done, MemoryReport,
    XorShift,
};

/// Tells `msg` to `to`, panicking if the actor is gone (it must outlive the scenario).
async fn tell<A, M>(to: &ActorRef<A>, msg: M)
where
    A: Message<M>,
    M: Send + 'static,
{
    if let Err(e) = to.tell(msg).await {
        panic!("kameo: tell to {} failed: {e:?}", <A as Actor>::name());
    }
}

/// Stops every actor gracefully and waits until each has shut down.
async fn stop_all<A: Actor>(refs: &[ActorRef<A>]) {
    for r in refs {
        // An already-stopped actor (e.g. one that called `ctx.stop()`) is fine here.
        let _ = r.stop_gracefully().await;
    }
    for r in refs {
        r.wait_for_shutdown().await;
    }
}

#[derive(::kameo::Actor)]
struct Summer {
    n: u64,
    count: u64,
    sum: u64,
    done: Done<u64>,
}

struct Add(u64);

impl Message<Add> for Summer {
    type Reply = ();

    async fn handle(&mut self, Add(x): Add, _ctx: &mut Context<Self, Self::Reply>) {
        self.count += 1;
        self.sum += x;
        if self.count == self.n {
            self.done.fire(self.sum);
        }
    }
}

/// One producer task tells `n` `u64`s to a summing actor; the clock stops when the actor has
/// processed all of them.
pub fn tell_throughput(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let actor = Summer::spawn(Summer {
            n,
            count: 0,
            sum: 0,
            done,
        });
        actor.wait_for_startup().await;

        let start = Instant::now();
        for x in 0..n {
            tell(&actor, Add(x)).await;
        }
        let sum = wait_done(done_rx, "kameo tell_throughput").await;
        let elapsed = start.elapsed();

        assert_eq!(sum, sum_below(n), "kameo tell_throughput: wrong sum");
        stop_all(&[actor]).await;
        elapsed
    })
}

#[derive(::kameo::Actor)]
struct Echo;

struct Inc(u64);

impl Message<Inc> for Echo {
    type Reply = u64;

    async fn handle(&mut self, Inc(x): Inc, _ctx: &mut Context<Self, Self::Reply>) -> u64 {
        x + 1
    }
}

/// `n` sequential asks (`x -> x + 1`), each reply checked.
pub fn ask_roundtrip(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let actor = Echo::spawn(Echo);
        actor.wait_for_startup().await;

        let start = Instant::now();
        for x in 0..n {
            let y = actor
                .ask(Inc(x))
                .await
                .expect("kameo ask to echo actor failed");
            assert_eq!(y, x + 1, "kameo ask_roundtrip: wrong reply");
        }
        let elapsed = start.elapsed();

        stop_all(&[actor]).await;
        elapsed
    })
}

/// An actor that only reports that it started.
struct Idle;

impl Actor for Idle {
    type Args = Countdown;
    type Error = Infallible;

    async fn on_start(started: Countdown, _actor_ref: ActorRef<Self>) -> Result<Self, Infallible> {
        started.arrive();
        Ok(Idle)
    }
}

async fn spawn_idle(n: u64) -> (Vec<ActorRef<Idle>>, Duration) {
    let mut refs = Vec::with_capacity(n as usize);
    let started = Countdown::new(n);
    let start = Instant::now();
    for _ in 0..n {
        refs.push(Idle::spawn(started.clone()));
    }
    started.wait().await;
    (refs, start.elapsed())
}

/// Time to spawn `n` idle actors until every one ran its `on_start`.
pub fn spawn(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (refs, elapsed) = spawn_idle(n).await;
        // Teardown (not measured): dropping the last strong ref closes each mailbox, which
        // stops the actor; the runtime drop reaps anything still finishing.
        drop(refs);
        elapsed
    })
}

/// Memory probe: RSS before/after spawning `n` idle actors that are kept alive.
pub fn memory(n: u64) -> MemoryReport {
    run_on_tokio(move || async move {
        let rss_before = super::rss_bytes();
        let (refs, spawn_time) = spawn_idle(n).await;
        let rss_after = super::rss_bytes();
        drop(refs);
        MemoryReport {
            actors: n,
            spawn_time,
            rss_before,
            rss_after,
        }
    })
}

#[derive(::kameo::Actor)]
struct Pong;

struct PingMsg(ActorRef<Ping>);

impl Message<PingMsg> for Pong {
    type Reply = ();

    async fn handle(&mut self, PingMsg(reply_to): PingMsg, _ctx: &mut Context<Self, ()>) {
        tell(&reply_to, PongMsg).await;
    }
}

#[derive(::kameo::Actor)]
struct Ping {
    pong: ActorRef<Pong>,
    n: u64,
    pongs: u64,
    done: Done<u64>,
}

struct Start;
struct PongMsg;

impl Message<Start> for Ping {
    type Reply = ();

    async fn handle(&mut self, _: Start, ctx: &mut Context<Self, ()>) {
        tell(&self.pong, PingMsg(ctx.actor_ref().clone())).await;
    }
}

impl Message<PongMsg> for Ping {
    type Reply = ();

    async fn handle(&mut self, _: PongMsg, ctx: &mut Context<Self, ()>) {
        self.pongs += 1;
        if self.pongs == self.n {
            self.done.fire(self.pongs);
        } else {
            tell(&self.pong, PingMsg(ctx.actor_ref().clone())).await;
        }
    }
}

/// Savina ping-pong: `n` round trips of fire-and-forget tells between two actors.
pub fn ping_pong(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let pong = Pong::spawn(Pong);
        let ping = Ping::spawn(Ping {
            pong: pong.clone(),
            n,
            pongs: 0,
            done,
        });
        ping.wait_for_startup().await;
        pong.wait_for_startup().await;

        let start = Instant::now();
        tell(&ping, Start).await;
        let pongs = wait_done(done_rx, "kameo ping_pong").await;
        let elapsed = start.elapsed();

        assert_eq!(pongs, n, "kameo ping_pong: wrong pong count");
        stop_all(&[ping]).await;
        stop_all(&[pong]).await;
        elapsed
    })
}

#[derive(::kameo::Actor)]
struct Counter {
    count: u64,
}

struct Increment;
struct GetCount;

impl Message<Increment> for Counter {
    type Reply = ();

    async fn handle(&mut self, _: Increment, _ctx: &mut Context<Self, ()>) {
        self.count += 1;
    }
}

impl Message<GetCount> for Counter {
    type Reply = u64;

    async fn handle(&mut self, _: GetCount, _ctx: &mut Context<Self, u64>) -> u64 {
        self.count
    }
}

/// Savina counting: `n` increments told to a counter, then one ask for the value.
pub fn counting(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let actor = Counter::spawn(Counter { count: 0 });
        actor.wait_for_startup().await;

        let start = Instant::now();
        for _ in 0..n {
            tell(&actor, Increment).await;
        }
        let count = actor
            .ask(GetCount)
            .await
            .expect("kameo ask to counter failed");
        let elapsed = start.elapsed();

        assert_eq!(count, n, "kameo counting: wrong count");
        stop_all(&[actor]).await;
        elapsed
    })
}

#[derive(::kameo::Actor)]
struct RingNode {
    index: usize,
    next: Option<ActorRef<RingNode>>,
    done: Done<usize>,
}

struct SetNext(ActorRef<RingNode>);
struct Token(u64);

impl Message<SetNext> for RingNode {
    type Reply = ();

    async fn handle(&mut self, SetNext(next): SetNext, _ctx: &mut Context<Self, ()>) {
        self.next = Some(next);
    }
}

impl Message<Token> for RingNode {
    type Reply = ();

    async fn handle(&mut self, Token(k): Token, _ctx: &mut Context<Self, ()>) {
        if k == 0 {
            self.done.fire(self.index);
        } else {
            let next = self
                .next
                .as_ref()
                .expect("kameo ring: token before SetNext");
            tell(next, Token(k - 1)).await;
        }
    }
}

/// Savina thread ring: a token with a hop budget travels around a ring of `actors` actors;
/// the receiver of the exhausted token must be actor `hops % actors`.
pub fn thread_ring(actors: usize, hops: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let refs: Vec<_> = (0..actors)
            .map(|index| {
                RingNode::spawn(RingNode {
                    index,
                    next: None,
                    done: done.clone(),
                })
            })
            .collect();
        for (i, r) in refs.iter().enumerate() {
            tell(r, SetNext(refs[(i + 1) % actors].clone())).await;
        }

        let start = Instant::now();
        tell(&refs[0], Token(hops)).await;
        let last = wait_done(done_rx, "kameo thread_ring").await;
        let elapsed = start.elapsed();

        assert_eq!(
            last,
            (hops % actors as u64) as usize,
            "kameo thread_ring: wrong hop count"
        );
        stop_all(&refs).await;
        elapsed
    })
}

#[derive(::kameo::Actor)]
struct Worker {
    per_actor: u64,
    count: u64,
    acc: f64,
    finished: Countdown,
}

struct Work(u64);

impl Message<Work> for Worker {
    type Reply = ();

    async fn handle(&mut self, Work(x): Work, _ctx: &mut Context<Self, ()>) {
        self.acc += fork_join_work(x);
        self.count += 1;
        assert!(
            self.count <= self.per_actor,
            "kameo fork_join: worker over quota"
        );
        if self.count == self.per_actor {
            std::hint::black_box(self.acc);
            self.finished.arrive();
        }
    }
}

/// Savina fork-join (throughput): `per_actor` messages to each of `actors` workers, interleaved;
/// done when every worker reached its quota.
pub fn fork_join(actors: usize, per_actor: u64) -> Duration {
    run_on_tokio(move || async move {
        let finished = Countdown::new(actors as u64);
        let refs: Vec<_> = (0..actors)
            .map(|_| {
                Worker::spawn(Worker {
                    per_actor,
                    count: 0,
                    acc: 0.0,
                    finished: finished.clone(),
                })
            })
            .collect();
        for r in &refs {
            r.wait_for_startup().await;
        }

        let start = Instant::now();
        for j in 0..per_actor {
            for r in &refs {
                tell(r, Work(j)).await;
            }
        }
        finished.wait().await;
        let elapsed = start.elapsed();

        stop_all(&refs).await;
        elapsed
    })
}

#[derive(::kameo::Actor)]
struct Mall {
    creatures: usize,
    remaining: u64,
    waiting: Option<(Color, ActorRef<Creature>)>,
    faded: usize,
    total: u64,
    done: Done<u64>,
}

struct MeetRequest {
    color: Color,
    from: ActorRef<Creature>,
}

struct MeetingCount(u64);

impl Message<MeetRequest> for Mall {
    type Reply = ();

    async fn handle(&mut self, req: MeetRequest, _ctx: &mut Context<Self, ()>) {
        if self.remaining == 0 {
            tell(&req.from, Exit).await;
        } else if let Some((_, first)) = self.waiting.take() {
            self.remaining -= 1;
            let meet = MeetWith {
                color: req.color,
                other: req.from,
            };
            tell(&first, meet).await;
        } else {
            self.waiting = Some((req.color, req.from));
        }
    }
}

impl Message<MeetingCount> for Mall {
    type Reply = ();

    async fn handle(&mut self, MeetingCount(c): MeetingCount, ctx: &mut Context<Self, ()>) {
        self.faded += 1;
        self.total += c;
        if self.faded == self.creatures {
            self.done.fire(self.total);
            ctx.stop();
        }
    }
}

#[derive(::kameo::Actor)]
struct Creature {
    color: Color,
    met: u64,
    mall: ActorRef<Mall>,
}

impl Creature {
    async fn request_meeting(&self, me: &ActorRef<Self>) {
        let req = MeetRequest {
            color: self.color,
            from: me.clone(),
        };
        tell(&self.mall, req).await;
    }
}

struct MeetWith {
    color: Color,
    other: ActorRef<Creature>,
}
struct ChangeColor(Color);
struct Exit;

impl Message<Start> for Creature {
    type Reply = ();

    async fn handle(&mut self, _: Start, ctx: &mut Context<Self, ()>) {
        self.request_meeting(ctx.actor_ref()).await;
    }
}

impl Message<MeetWith> for Creature {
    type Reply = ();

    async fn handle(&mut self, msg: MeetWith, ctx: &mut Context<Self, ()>) {
        self.color = self.color.complement(msg.color);
        self.met += 1;
        tell(&msg.other, ChangeColor(self.color)).await;
        self.request_meeting(ctx.actor_ref()).await;
    }
}

impl Message<ChangeColor> for Creature {
    type Reply = ();

    async fn handle(&mut self, ChangeColor(c): ChangeColor, ctx: &mut Context<Self, ()>) {
        self.color = c;
        self.met += 1;
        self.request_meeting(ctx.actor_ref()).await;
    }
}

impl Message<Exit> for Creature {
    type Reply = ();

    async fn handle(&mut self, _: Exit, ctx: &mut Context<Self, ()>) {
        self.color = Color::Faded;
        tell(&self.mall, MeetingCount(self.met)).await;
        ctx.stop();
    }
}

/// Savina chameneos: a mall actor pairs meeting requests until `meetings` meetings happened;
/// creatures swap complement colours, re-request, and on `Exit` report their counts and stop.
/// The reported total must be `2 * meetings`.
pub fn chameneos(creatures: usize, meetings: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let mall = Mall::spawn(Mall {
            creatures,
            remaining: meetings,
            waiting: None,
            faded: 0,
            total: 0,
            done,
        });
        let refs: Vec<_> = (0..creatures)
            .map(|i| {
                Creature::spawn(Creature {
                    color: Color::initial(i),
                    met: 0,
                    mall: mall.clone(),
                })
            })
            .collect();
        for r in &refs {
            r.wait_for_startup().await;
        }

        let start = Instant::now();
        for r in &refs {
            tell(r, Start).await;
        }
        let total = wait_done(done_rx, "kameo chameneos").await;
        let elapsed = start.elapsed();

        assert_eq!(total, 2 * meetings, "kameo chameneos: wrong meeting total");
        // Every creature and the mall stopped themselves; wait for them to be gone.
        for r in &refs {
            r.wait_for_shutdown().await;
        }
        mall.wait_for_shutdown().await;
        elapsed
    })
}

#[derive(::kameo::Actor)]
struct BigNode {
    index: usize,
    pings: u64,
    sent: u64,
    rng: XorShift,
    neighbors: Option<Arc<Vec<ActorRef<BigNode>>>>,
    sink: ActorRef<Sink>,
}

struct Neighbors(Arc<Vec<ActorRef<BigNode>>>);
struct BigPing(usize);
struct BigPong;

impl BigNode {
    async fn next_ping(&mut self) {
        if self.sent < self.pings {
            self.sent += 1;
            let all = self
                .neighbors
                .as_ref()
                .expect("kameo big: start before wiring");
            let to = self.rng.other_than(self.index, all.len());
            tell(&all[to], BigPing(self.index)).await;
        } else {
            tell(&self.sink, Report(self.sent)).await;
        }
    }
}

impl Message<Neighbors> for BigNode {
    type Reply = ();

    async fn handle(&mut self, Neighbors(all): Neighbors, _ctx: &mut Context<Self, ()>) {
        self.neighbors = Some(all);
    }
}

impl Message<Start> for BigNode {
    type Reply = ();

    async fn handle(&mut self, _: Start, _ctx: &mut Context<Self, ()>) {
        self.next_ping().await;
    }
}

impl Message<BigPing> for BigNode {
    type Reply = ();

    async fn handle(&mut self, BigPing(from): BigPing, _ctx: &mut Context<Self, ()>) {
        let all = self
            .neighbors
            .as_ref()
            .expect("kameo big: ping before wiring");
        tell(&all[from], BigPong).await;
    }
}

impl Message<BigPong> for BigNode {
    type Reply = ();

    async fn handle(&mut self, _: BigPong, _ctx: &mut Context<Self, ()>) {
        self.next_ping().await;
    }
}

#[derive(::kameo::Actor)]
struct Sink {
    actors: usize,
    reports: usize,
    total: u64,
    done: Done<u64>,
}

struct Report(u64);

impl Message<Report> for Sink {
    type Reply = ();

    async fn handle(&mut self, Report(sent): Report, _ctx: &mut Context<Self, ()>) {
        self.reports += 1;
        self.total += sent;
        if self.reports == self.actors {
            self.done.fire(self.total);
        }
    }
}

/// Savina big: `actors` actors each send `pings` pings (one outstanding at a time) to random
/// other actors, which answer pong; finished actors report to a sink actor whose total must be
/// `actors * pings`.
pub fn big(actors: usize, pings: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let sink = Sink::spawn(Sink {
            actors,
            reports: 0,
            total: 0,
            done,
        });
        let refs: Vec<_> = (0..actors)
            .map(|index| {
                BigNode::spawn(BigNode {
                    index,
                    pings,
                    sent: 0,
                    rng: XorShift::new(index as u64),
                    neighbors: None,
                    sink: sink.clone(),
                })
            })
            .collect();
        let all = Arc::new(refs.clone());
        for r in &refs {
            tell(r, Neighbors(Arc::clone(&all))).await;
        }
        drop(all);

        let start = Instant::now();
        for r in &refs {
            tell(r, Start).await;
        }
        let total = wait_done(done_rx, "kameo big").await;
        let elapsed = start.elapsed();

        assert_eq!(total, actors as u64 * pings, "kameo big: wrong ping total");
        stop_all(&refs).await;
        stop_all(&[sink]).await;
        elapsed
    })
}

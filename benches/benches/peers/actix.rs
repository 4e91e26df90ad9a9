//! `actix` 0.13 (actix-rt 2) peer: the scenarios written as actix actors on arbiters.
//!
//! An actix actor and its (`!Send`) `Context` are driven by a single-threaded arbiter (a thread with
//! a current-thread tokio runtime + `LocalSet`); actix cannot run on a multi-thread tokio runtime.
//! To use the same two cores as the tokio peers, every scenario here uses two threads:
//!
//! - the **System thread** (the caller, via `SystemRunner::block_on`) runs the driver /
//!   producer: it sends the stream of messages (tell, ask, counting, fork-join) or the kick-off
//!   messages (Savina scenarios) and waits for the completion latch;
//! - one extra **worker `Arbiter`** runs *all* measured actors (`Actor::start_in_arbiter`).
//!
//! Consequence (see RESULTS.md): in the Savina scenarios where actors only talk to each other
//! (ping-pong, thread ring, chameneos, big) all actor work happens on one thread — no
//! cross-thread wake-ups, but also no parallelism.
//!
//! Fire-and-forget is `Addr::do_send` (never waits; it ignores the mailbox capacity, so it is
//! effectively unbounded), request/reply is `Addr::send(msg).await` (honours the default mailbox
//! capacity of 16). Only the core of each scenario is timed with [`Instant`]; the
//! [`super::Done`]/[`super::Countdown`] latches only observe completion — all scenario traffic
//! goes through actix addresses. Teardown stops the worker arbiter (dropping its actors) and the
//! System.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::actix::prelude::*;

use super::{fork_join_work, sum_below, wait_done, Color, Countdown, Done, MemoryReport, XorShift};

/// Runs `scenario` on a fresh actix System (driver on this thread) with one worker Arbiter
/// (whose handle is passed in for the measured actors), then tears both down.
fn run_on_actix<F, Fut, T>(scenario: F) -> T
where
    F: FnOnce(ArbiterHandle) -> Fut,
    Fut: Future<Output = T>,
{
    let sys = System::new();
    let worker = Arbiter::new();
    let out = sys.block_on(scenario(worker.handle()));
    worker.stop();
    worker.join().expect("actix worker arbiter thread panicked");
    drop(sys);
    out
}

struct Summer {
    n: u64,
    count: u64,
    sum: u64,
    done: Done<u64>,
}

impl Actor for Summer {
    type Context = Context<Self>;
}

struct Add(u64);

impl Message for Add {
    type Result = ();
}

impl Handler<Add> for Summer {
    type Result = ();

    fn handle(&mut self, Add(x): Add, _ctx: &mut Context<Self>) {
        self.count += 1;
        self.sum += x;
        if self.count == self.n {
            self.done.fire(self.sum);
        }
    }
}

/// The System thread `do_send`s `n` `u64`s to a summing actor on the worker arbiter; the clock
/// stops when the actor has processed all of them.
pub fn tell_throughput(n: u64) -> Duration {
    run_on_actix(|worker| async move {
        let (done, done_rx) = Done::new();
        let actor = Summer::start_in_arbiter(&worker, move |_| Summer {
            n,
            count: 0,
            sum: 0,
            done,
        });

        let start = Instant::now();
        for x in 0..n {
            actor.do_send(Add(x));
        }
        let sum = wait_done(done_rx, "actix tell_throughput").await;
        let elapsed = start.elapsed();

        assert_eq!(sum, sum_below(n), "actix tell_throughput: wrong sum");
        elapsed
    })
}

struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

struct Inc(u64);

impl Message for Inc {
    type Result = u64;
}

impl Handler<Inc> for Echo {
    type Result = u64;

    fn handle(&mut self, Inc(x): Inc, _ctx: &mut Context<Self>) -> u64 {
        x + 1
    }
}

/// `n` sequential `send(..).await` requests (`x -> x + 1`) from the System thread to an actor
/// on the worker arbiter, each reply checked.
pub fn ask_roundtrip(n: u64) -> Duration {
    run_on_actix(|worker| async move {
        let actor = Echo::start_in_arbiter(&worker, |_| Echo);

        let start = Instant::now();
        for x in 0..n {
            let y = actor
                .send(Inc(x))
                .await
                .expect("actix echo actor mailbox closed");
            assert_eq!(y, x + 1, "actix ask_roundtrip: wrong reply");
        }
        start.elapsed()
    })
}

/// An actor that only reports that it started.
struct Idle {
    started: Option<Countdown>,
}

impl Actor for Idle {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.started
            .take()
            .expect("actix Idle started twice")
            .arrive();
    }
}

/// Starts `n` idle actors on the worker arbiter from the System thread.
async fn spawn_idle(worker: &ArbiterHandle, n: u64) -> (Vec<Addr<Idle>>, Duration) {
    let mut refs = Vec::with_capacity(n as usize);
    let started = Countdown::new(n);
    let start = Instant::now();
    for _ in 0..n {
        let started = Some(started.clone());
        refs.push(Idle::start_in_arbiter(worker, move |_| Idle { started }));
    }
    started.wait().await;
    (refs, start.elapsed())
}

/// Time to start `n` idle actors on the worker arbiter until every one ran `started()`.
pub fn spawn(n: u64) -> Duration {
    run_on_actix(|worker| async move {
        let (refs, elapsed) = spawn_idle(&worker, n).await;
        // Teardown (not measured): the worker arbiter is stopped by `run_on_actix`.
        drop(refs);
        elapsed
    })
}

/// Memory probe: RSS before/after starting `n` idle actors that are kept alive.
pub fn memory(n: u64) -> MemoryReport {
    run_on_actix(|worker| async move {
        let rss_before = super::rss_bytes();
        let (refs, spawn_time) = spawn_idle(&worker, n).await;
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

struct Pong;

impl Actor for Pong {
    type Context = Context<Self>;
}

struct PingRequest(Addr<Ping>);

impl Message for PingRequest {
    type Result = ();
}

impl Handler<PingRequest> for Pong {
    type Result = ();

    fn handle(&mut self, PingRequest(reply_to): PingRequest, _ctx: &mut Context<Self>) {
        reply_to.do_send(PongReply);
    }
}

struct Ping {
    pong: Addr<Pong>,
    n: u64,
    pongs: u64,
    done: Done<u64>,
}

impl Actor for Ping {
    type Context = Context<Self>;
}

struct Start;

impl Message for Start {
    type Result = ();
}

struct PongReply;

impl Message for PongReply {
    type Result = ();
}

impl Handler<Start> for Ping {
    type Result = ();

    fn handle(&mut self, _: Start, ctx: &mut Context<Self>) {
        self.pong.do_send(PingRequest(ctx.address()));
    }
}

impl Handler<PongReply> for Ping {
    type Result = ();

    fn handle(&mut self, _: PongReply, ctx: &mut Context<Self>) {
        self.pongs += 1;
        if self.pongs == self.n {
            self.done.fire(self.pongs);
        } else {
            self.pong.do_send(PingRequest(ctx.address()));
        }
    }
}

/// Savina ping-pong: `n` round trips of `do_send`s between two actors on the worker arbiter.
pub fn ping_pong(n: u64) -> Duration {
    run_on_actix(|worker| async move {
        let (done, done_rx) = Done::new();
        let pong = Pong::start_in_arbiter(&worker, |_| Pong);
        let ping = Ping::start_in_arbiter(&worker, move |_| Ping {
            pong,
            n,
            pongs: 0,
            done,
        });

        let start = Instant::now();
        ping.do_send(Start);
        let pongs = wait_done(done_rx, "actix ping_pong").await;
        let elapsed = start.elapsed();

        assert_eq!(pongs, n, "actix ping_pong: wrong pong count");
        elapsed
    })
}

struct Counter {
    count: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

struct Increment;

impl Message for Increment {
    type Result = ();
}

struct GetCount;

impl Message for GetCount {
    type Result = u64;
}

impl Handler<Increment> for Counter {
    type Result = ();

    fn handle(&mut self, _: Increment, _ctx: &mut Context<Self>) {
        self.count += 1;
    }
}

impl Handler<GetCount> for Counter {
    type Result = u64;

    fn handle(&mut self, _: GetCount, _ctx: &mut Context<Self>) -> u64 {
        self.count
    }
}

/// Savina counting: `n` increments `do_send` to a counter, then one `send(..).await` for the
/// value.
pub fn counting(n: u64) -> Duration {
    run_on_actix(|worker| async move {
        let actor = Counter::start_in_arbiter(&worker, |_| Counter { count: 0 });

        let start = Instant::now();
        for _ in 0..n {
            actor.do_send(Increment);
        }
        let count = actor
            .send(GetCount)
            .await
            .expect("actix counter mailbox closed");
        let elapsed = start.elapsed();

        assert_eq!(count, n, "actix counting: wrong count");
        elapsed
    })
}

struct RingNode {
    index: usize,
    next: Option<Addr<RingNode>>,
    done: Done<usize>,
}

impl Actor for RingNode {
    type Context = Context<Self>;
}

struct SetNext(Addr<RingNode>);

impl Message for SetNext {
    type Result = ();
}

struct Token(u64);

impl Message for Token {
    type Result = ();
}

impl Handler<SetNext> for RingNode {
    type Result = ();

    fn handle(&mut self, SetNext(next): SetNext, _ctx: &mut Context<Self>) {
        self.next = Some(next);
    }
}

impl Handler<Token> for RingNode {
    type Result = ();

    fn handle(&mut self, Token(k): Token, _ctx: &mut Context<Self>) {
        if k == 0 {
            self.done.fire(self.index);
        } else {
            let next = self
                .next
                .as_ref()
                .expect("actix ring: token before SetNext");
            next.do_send(Token(k - 1));
        }
    }
}

/// Savina thread ring on the worker arbiter: a token with a hop budget travels around a ring of
/// `actors` actors; the receiver of the exhausted token must be actor `hops % actors`.
pub fn thread_ring(actors: usize, hops: u64) -> Duration {
    run_on_actix(|worker| async move {
        let (done, done_rx) = Done::new();
        let refs: Vec<_> = (0..actors)
            .map(|index| {
                let done = done.clone();
                RingNode::start_in_arbiter(&worker, move |_| RingNode {
                    index,
                    next: None,
                    done,
                })
            })
            .collect();
        for (i, r) in refs.iter().enumerate() {
            r.do_send(SetNext(refs[(i + 1) % actors].clone()));
        }

        let start = Instant::now();
        refs[0].do_send(Token(hops));
        let last = wait_done(done_rx, "actix thread_ring").await;
        let elapsed = start.elapsed();

        assert_eq!(
            last,
            (hops % actors as u64) as usize,
            "actix thread_ring: wrong hop count"
        );
        elapsed
    })
}

struct Worker {
    per_actor: u64,
    count: u64,
    acc: f64,
    finished: Countdown,
}

impl Actor for Worker {
    type Context = Context<Self>;
}

struct Work(u64);

impl Message for Work {
    type Result = ();
}

impl Handler<Work> for Worker {
    type Result = ();

    fn handle(&mut self, Work(x): Work, _ctx: &mut Context<Self>) {
        self.acc += fork_join_work(x);
        self.count += 1;
        assert!(
            self.count <= self.per_actor,
            "actix fork_join: worker over quota"
        );
        if self.count == self.per_actor {
            std::hint::black_box(self.acc);
            self.finished.arrive();
        }
    }
}

/// Savina fork-join (throughput): the System thread `do_send`s `per_actor` messages to each of
/// `actors` workers on the worker arbiter, interleaved; done when every worker reached its quota.
pub fn fork_join(actors: usize, per_actor: u64) -> Duration {
    run_on_actix(|worker| async move {
        let finished = Countdown::new(actors as u64);
        let refs: Vec<_> = (0..actors)
            .map(|_| {
                let finished = finished.clone();
                Worker::start_in_arbiter(&worker, move |_| Worker {
                    per_actor,
                    count: 0,
                    acc: 0.0,
                    finished,
                })
            })
            .collect();

        let start = Instant::now();
        for j in 0..per_actor {
            for r in &refs {
                r.do_send(Work(j));
            }
        }
        finished.wait().await;
        start.elapsed()
    })
}

struct Mall {
    creatures: usize,
    remaining: u64,
    waiting: Option<(Color, Addr<Creature>)>,
    faded: usize,
    total: u64,
    done: Done<u64>,
}

impl Actor for Mall {
    type Context = Context<Self>;
}

struct MeetRequest {
    color: Color,
    from: Addr<Creature>,
}

impl Message for MeetRequest {
    type Result = ();
}

struct MeetingCount(u64);

impl Message for MeetingCount {
    type Result = ();
}

impl Handler<MeetRequest> for Mall {
    type Result = ();

    fn handle(&mut self, req: MeetRequest, _ctx: &mut Context<Self>) {
        if self.remaining == 0 {
            req.from.do_send(Exit);
        } else if let Some((_, first)) = self.waiting.take() {
            self.remaining -= 1;
            first.do_send(MeetWith {
                color: req.color,
                other: req.from,
            });
        } else {
            self.waiting = Some((req.color, req.from));
        }
    }
}

impl Handler<MeetingCount> for Mall {
    type Result = ();

    fn handle(&mut self, MeetingCount(c): MeetingCount, ctx: &mut Context<Self>) {
        self.faded += 1;
        self.total += c;
        if self.faded == self.creatures {
            self.done.fire(self.total);
            ctx.stop();
        }
    }
}

struct Creature {
    color: Color,
    met: u64,
    mall: Addr<Mall>,
}

impl Actor for Creature {
    type Context = Context<Self>;
}

impl Creature {
    fn request_meeting(&self, ctx: &Context<Self>) {
        self.mall.do_send(MeetRequest {
            color: self.color,
            from: ctx.address(),
        });
    }
}

struct MeetWith {
    color: Color,
    other: Addr<Creature>,
}

impl Message for MeetWith {
    type Result = ();
}

struct ChangeColor(Color);

impl Message for ChangeColor {
    type Result = ();
}

struct Exit;

impl Message for Exit {
    type Result = ();
}

impl Handler<Start> for Creature {
    type Result = ();

    fn handle(&mut self, _: Start, ctx: &mut Context<Self>) {
        self.request_meeting(ctx);
    }
}

impl Handler<MeetWith> for Creature {
    type Result = ();

    fn handle(&mut self, msg: MeetWith, ctx: &mut Context<Self>) {
        self.color = self.color.complement(msg.color);
        self.met += 1;
        msg.other.do_send(ChangeColor(self.color));
        self.request_meeting(ctx);
    }
}

impl Handler<ChangeColor> for Creature {
    type Result = ();

    fn handle(&mut self, ChangeColor(c): ChangeColor, ctx: &mut Context<Self>) {
        self.color = c;
        self.met += 1;
        self.request_meeting(ctx);
    }
}

impl Handler<Exit> for Creature {
    type Result = ();

    fn handle(&mut self, _: Exit, ctx: &mut Context<Self>) {
        self.color = Color::Faded;
        self.mall.do_send(MeetingCount(self.met));
        ctx.stop();
    }
}

/// Savina chameneos on the worker arbiter: a mall actor pairs meeting requests until `meetings`
/// meetings happened; creatures swap complement colours, re-request, and on `Exit` report their
/// counts and stop. The reported total must be `2 * meetings`.
pub fn chameneos(creatures: usize, meetings: u64) -> Duration {
    run_on_actix(|worker| async move {
        let (done, done_rx) = Done::new();
        let mall = Mall::start_in_arbiter(&worker, move |_| Mall {
            creatures,
            remaining: meetings,
            waiting: None,
            faded: 0,
            total: 0,
            done,
        });
        let refs: Vec<_> = (0..creatures)
            .map(|i| {
                let mall = mall.clone();
                Creature::start_in_arbiter(&worker, move |_| Creature {
                    color: Color::initial(i),
                    met: 0,
                    mall,
                })
            })
            .collect();

        let start = Instant::now();
        for r in &refs {
            r.do_send(Start);
        }
        let total = wait_done(done_rx, "actix chameneos").await;
        let elapsed = start.elapsed();

        assert_eq!(total, 2 * meetings, "actix chameneos: wrong meeting total");
        elapsed
    })
}

struct BigNode {
    index: usize,
    pings: u64,
    sent: u64,
    rng: XorShift,
    neighbors: Option<Arc<Vec<Addr<BigNode>>>>,
    sink: Addr<Sink>,
}

impl Actor for BigNode {
    type Context = Context<Self>;
}

impl BigNode {
    fn next_ping(&mut self) {
        if self.sent < self.pings {
            self.sent += 1;
            let all = self
                .neighbors
                .as_ref()
                .expect("actix big: start before wiring");
            let to = self.rng.other_than(self.index, all.len());
            all[to].do_send(BigPing(self.index));
        } else {
            self.sink.do_send(Report(self.sent));
        }
    }
}

struct Neighbors(Arc<Vec<Addr<BigNode>>>);

impl Message for Neighbors {
    type Result = ();
}

struct BigPing(usize);

impl Message for BigPing {
    type Result = ();
}

struct BigPong;

impl Message for BigPong {
    type Result = ();
}

impl Handler<Neighbors> for BigNode {
    type Result = ();

    fn handle(&mut self, Neighbors(all): Neighbors, _ctx: &mut Context<Self>) {
        self.neighbors = Some(all);
    }
}

impl Handler<Start> for BigNode {
    type Result = ();

    fn handle(&mut self, _: Start, _ctx: &mut Context<Self>) {
        self.next_ping();
    }
}

impl Handler<BigPing> for BigNode {
    type Result = ();

    fn handle(&mut self, BigPing(from): BigPing, _ctx: &mut Context<Self>) {
        let all = self
            .neighbors
            .as_ref()
            .expect("actix big: ping before wiring");
        all[from].do_send(BigPong);
    }
}

impl Handler<BigPong> for BigNode {
    type Result = ();

    fn handle(&mut self, _: BigPong, _ctx: &mut Context<Self>) {
        self.next_ping();
    }
}

struct Sink {
    actors: usize,
    reports: usize,
    total: u64,
    done: Done<u64>,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

struct Report(u64);

impl Message for Report {
    type Result = ();
}

impl Handler<Report> for Sink {
    type Result = ();

    fn handle(&mut self, Report(sent): Report, _ctx: &mut Context<Self>) {
        self.reports += 1;
        self.total += sent;
        if self.reports == self.actors {
            self.done.fire(self.total);
        }
    }
}

/// Savina big on the worker arbiter: `actors` actors each send `pings` pings (one outstanding at
/// a time) to random other actors, which answer pong; finished actors report to a sink actor
/// whose total must be `actors * pings`.
pub fn big(actors: usize, pings: u64) -> Duration {
    run_on_actix(|worker| async move {
        let (done, done_rx) = Done::new();
        let sink = Sink::start_in_arbiter(&worker, move |_| Sink {
            actors,
            reports: 0,
            total: 0,
            done,
        });
        let refs: Vec<_> = (0..actors)
            .map(|index| {
                let sink = sink.clone();
                BigNode::start_in_arbiter(&worker, move |_| BigNode {
                    index,
                    pings,
                    sent: 0,
                    rng: XorShift::new(index as u64),
                    neighbors: None,
                    sink,
                })
            })
            .collect();
        let all = Arc::new(refs.clone());
        for r in &refs {
            r.do_send(Neighbors(Arc::clone(&all)));
        }
        drop(all);

        let start = Instant::now();
        for r in &refs {
            r.do_send(Start);
        }
        let total = wait_done(done_rx, "actix big").await;
        let elapsed = start.elapsed();

        assert_eq!(total, actors as u64 * pings, "actix big: wrong ping total");
        elapsed
    })
}

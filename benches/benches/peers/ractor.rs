//! `ractor` 0.16 peer: the scenarios written as ractor actors.
//!
//! Actors are spawned with `Actor::spawn(None, handler, args)` (unnamed, unsupervised), which
//! runs `pre_start` inline and returns once the actor is started. ractor's message port is an
//! **unbounded** tokio mpsc channel (no back-pressure, no capacity knob on `spawn`).
//! Fire-and-forget is `cast!(actor, msg)` (synchronous, never waits), request/reply is
//! `call!(actor, Msg::Variant, args..)` with an `RpcReplyPort` in the message. Each actor has one
//! message enum (`Actor::Msg`); state lives in `Actor::State`. Everything runs on the shared
//! 2-worker multi-thread tokio runtime ([`super::run_on_tokio`]); the driver/producer is a task
//! on that runtime. Only the core of each scenario is timed with [`Instant`]; the
//! [`super::Done`]/[`super::Countdown`] latches only observe completion — all scenario traffic
//! goes through ractor actor refs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::ractor::concurrency::JoinHandle;
use ::ractor::{call, cast, Actor, ActorProcessingErr, ActorRef, Message, RpcReplyPort};

use super::{
    fork_join_work, run_on_tokio, sum_below, wait_done, Color, Countdown, Done, MemoryReport,
    XorShift,
};

/// `cast!`s `msg` to `to`, panicking if the actor is gone (it must outlive the scenario).
fn tell<M: Message>(to: &ActorRef<M>, msg: M) {
    if let Err(e) = cast!(to, msg) {
        panic!("ractor: cast failed: {e:?}");
    }
}

/// Spawns an unnamed actor, panicking if `pre_start` fails (it never does in these benches).
async fn start<A: Actor>(handler: A, args: A::Arguments) -> (ActorRef<A::Msg>, JoinHandle<()>) {
    Actor::spawn(None, handler, args)
        .await
        .expect("ractor actor failed to start")
}

/// Stops every actor and waits for its processing loop to end.
async fn stop_all<M>(actors: Vec<(ActorRef<M>, JoinHandle<()>)>) {
    for (r, _) in &actors {
        r.stop(None);
    }
    for (_, h) in actors {
        h.await.expect("ractor actor task panicked");
    }
}

struct Summer;

struct SummerState {
    n: u64,
    count: u64,
    sum: u64,
    done: Done<u64>,
}

impl Actor for Summer {
    type Msg = u64;
    type State = SummerState;
    type Arguments = SummerState;

    async fn pre_start(
        &self,
        _myself: ActorRef<u64>,
        args: SummerState,
    ) -> Result<SummerState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        x: u64,
        st: &mut SummerState,
    ) -> Result<(), ActorProcessingErr> {
        st.count += 1;
        st.sum += x;
        if st.count == st.n {
            st.done.fire(st.sum);
        }
        Ok(())
    }
}

/// One producer task casts `n` `u64`s to a summing actor; the clock stops when the actor has
/// processed all of them.
pub fn tell_throughput(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let state = SummerState {
            n,
            count: 0,
            sum: 0,
            done,
        };
        let (actor, handle) = start(Summer, state).await;

        let start = Instant::now();
        for x in 0..n {
            tell(&actor, x);
        }
        let sum = wait_done(done_rx, "ractor tell_throughput").await;
        let elapsed = start.elapsed();

        assert_eq!(sum, sum_below(n), "ractor tell_throughput: wrong sum");
        stop_all(vec![(actor, handle)]).await;
        elapsed
    })
}

struct Echo;

enum EchoMsg {
    Inc(u64, RpcReplyPort<u64>),
}

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<EchoMsg>,
        msg: EchoMsg,
        _st: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let EchoMsg::Inc(x, reply) = msg;
        // The caller waits for every reply, so it is always still listening.
        let _ = reply.send(x + 1);
        Ok(())
    }
}

/// `n` sequential calls (`x -> x + 1`), each reply checked.
pub fn ask_roundtrip(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (actor, handle) = start(Echo, ()).await;

        let start = Instant::now();
        for x in 0..n {
            let y = call!(actor, EchoMsg::Inc, x).expect("ractor call to echo actor failed");
            assert_eq!(y, x + 1, "ractor ask_roundtrip: wrong reply");
        }
        let elapsed = start.elapsed();

        stop_all(vec![(actor, handle)]).await;
        elapsed
    })
}

/// An actor that only reports that it started.
struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = Countdown;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        started: Countdown,
    ) -> Result<(), ActorProcessingErr> {
        started.arrive();
        Ok(())
    }
}

/// Spawns `n` idle actors; the join handles are detached (the refs suffice to stop them).
async fn spawn_idle(n: u64) -> (Vec<ActorRef<()>>, Duration) {
    let mut refs = Vec::with_capacity(n as usize);
    let started = Countdown::new(n);
    let start = Instant::now();
    for _ in 0..n {
        let (actor, _handle) = start_idle(started.clone()).await;
        refs.push(actor);
    }
    started.wait().await;
    (refs, start.elapsed())
}

async fn start_idle(started: Countdown) -> (ActorRef<()>, JoinHandle<()>) {
    start(Idle, started).await
}

/// Time to spawn `n` idle actors until every one ran its `pre_start` (ractor's `spawn`
/// returns only after `pre_start`, so spawning is inherently sequential per caller).
pub fn spawn(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (refs, elapsed) = spawn_idle(n).await;
        // Teardown (not measured): ask every actor to stop; the runtime drop reaps the rest.
        for r in &refs {
            r.stop(None);
        }
        elapsed
    })
}

/// Memory probe: RSS before/after spawning `n` idle actors that are kept alive.
pub fn memory(n: u64) -> MemoryReport {
    run_on_tokio(move || async move {
        let rss_before = super::rss_bytes();
        let (refs, spawn_time) = spawn_idle(n).await;
        let rss_after = super::rss_bytes();
        for r in &refs {
            r.stop(None);
        }
        MemoryReport {
            actors: n,
            spawn_time,
            rss_before,
            rss_after,
        }
    })
}

struct Pong;

struct PingRequest(ActorRef<PingMsg>);

impl Actor for Pong {
    type Msg = PingRequest;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<PingRequest>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<PingRequest>,
        PingRequest(reply_to): PingRequest,
        _st: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        tell(&reply_to, PingMsg::Pong);
        Ok(())
    }
}

struct Ping;

enum PingMsg {
    Start,
    Pong,
}

struct PingState {
    pong: ActorRef<PingRequest>,
    n: u64,
    pongs: u64,
    done: Done<u64>,
}

impl Actor for Ping {
    type Msg = PingMsg;
    type State = PingState;
    type Arguments = PingState;

    async fn pre_start(
        &self,
        _: ActorRef<PingMsg>,
        args: PingState,
    ) -> Result<PingState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<PingMsg>,
        msg: PingMsg,
        st: &mut PingState,
    ) -> Result<(), ActorProcessingErr> {
        if let PingMsg::Pong = msg {
            st.pongs += 1;
            if st.pongs == st.n {
                st.done.fire(st.pongs);
                return Ok(());
            }
        }
        tell(&st.pong, PingRequest(myself));
        Ok(())
    }
}

/// Savina ping-pong: `n` round trips of fire-and-forget casts between two actors.
pub fn ping_pong(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let pong = start(Pong, ()).await;
        let state = PingState {
            pong: pong.0.clone(),
            n,
            pongs: 0,
            done,
        };
        let ping = start(Ping, state).await;

        let start = Instant::now();
        tell(&ping.0, PingMsg::Start);
        let pongs = wait_done(done_rx, "ractor ping_pong").await;
        let elapsed = start.elapsed();

        assert_eq!(pongs, n, "ractor ping_pong: wrong pong count");
        stop_all(vec![ping]).await;
        stop_all(vec![pong]).await;
        elapsed
    })
}

struct Counter;

enum CounterMsg {
    Inc,
    Get(RpcReplyPort<u64>),
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<CounterMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<CounterMsg>,
        msg: CounterMsg,
        count: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Inc => *count += 1,
            CounterMsg::Get(reply) => {
                let _ = reply.send(*count);
            }
        }
        Ok(())
    }
}

/// Savina counting: `n` increments cast to a counter, then one call for the value.
pub fn counting(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (actor, handle) = start(Counter, ()).await;

        let start = Instant::now();
        for _ in 0..n {
            tell(&actor, CounterMsg::Inc);
        }
        let count = call!(actor, CounterMsg::Get).expect("ractor call to counter failed");
        let elapsed = start.elapsed();

        assert_eq!(count, n, "ractor counting: wrong count");
        stop_all(vec![(actor, handle)]).await;
        elapsed
    })
}

struct RingNode;

enum RingMsg {
    SetNext(ActorRef<RingMsg>),
    Token(u64),
}

struct RingState {
    index: usize,
    next: Option<ActorRef<RingMsg>>,
    done: Done<usize>,
}

impl Actor for RingNode {
    type Msg = RingMsg;
    type State = RingState;
    type Arguments = RingState;

    async fn pre_start(
        &self,
        _: ActorRef<RingMsg>,
        args: RingState,
    ) -> Result<RingState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RingMsg>,
        msg: RingMsg,
        st: &mut RingState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RingMsg::SetNext(next) => st.next = Some(next),
            RingMsg::Token(0) => st.done.fire(st.index),
            RingMsg::Token(k) => {
                let next = st.next.as_ref().expect("ractor ring: token before SetNext");
                tell(next, RingMsg::Token(k - 1));
            }
        }
        Ok(())
    }
}

/// Savina thread ring: a token with a hop budget travels around a ring of `actors` actors;
/// the receiver of the exhausted token must be actor `hops % actors`.
pub fn thread_ring(actors: usize, hops: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let mut nodes = Vec::with_capacity(actors);
        for index in 0..actors {
            let state = RingState {
                index,
                next: None,
                done: done.clone(),
            };
            nodes.push(start(RingNode, state).await);
        }
        for (i, (r, _)) in nodes.iter().enumerate() {
            tell(r, RingMsg::SetNext(nodes[(i + 1) % actors].0.clone()));
        }

        let start = Instant::now();
        tell(&nodes[0].0, RingMsg::Token(hops));
        let last = wait_done(done_rx, "ractor thread_ring").await;
        let elapsed = start.elapsed();

        assert_eq!(
            last,
            (hops % actors as u64) as usize,
            "ractor thread_ring: wrong hop count"
        );
        stop_all(nodes).await;
        elapsed
    })
}

struct Worker;

struct WorkerState {
    per_actor: u64,
    count: u64,
    acc: f64,
    finished: Countdown,
}

impl Actor for Worker {
    type Msg = u64;
    type State = WorkerState;
    type Arguments = WorkerState;

    async fn pre_start(
        &self,
        _: ActorRef<u64>,
        args: WorkerState,
    ) -> Result<WorkerState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        x: u64,
        st: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        st.acc += fork_join_work(x);
        st.count += 1;
        assert!(
            st.count <= st.per_actor,
            "ractor fork_join: worker over quota"
        );
        if st.count == st.per_actor {
            std::hint::black_box(st.acc);
            st.finished.arrive();
        }
        Ok(())
    }
}

/// Savina fork-join (throughput): `per_actor` messages to each of `actors` workers, interleaved;
/// done when every worker reached its quota.
pub fn fork_join(actors: usize, per_actor: u64) -> Duration {
    run_on_tokio(move || async move {
        let finished = Countdown::new(actors as u64);
        let mut workers = Vec::with_capacity(actors);
        for _ in 0..actors {
            let state = WorkerState {
                per_actor,
                count: 0,
                acc: 0.0,
                finished: finished.clone(),
            };
            workers.push(start(Worker, state).await);
        }

        let start = Instant::now();
        for j in 0..per_actor {
            for (r, _) in &workers {
                tell(r, j);
            }
        }
        finished.wait().await;
        let elapsed = start.elapsed();

        stop_all(workers).await;
        elapsed
    })
}

struct Mall;

enum MallMsg {
    Meet {
        color: Color,
        from: ActorRef<CreatureMsg>,
    },
    Count(u64),
}

struct MallState {
    creatures: usize,
    remaining: u64,
    waiting: Option<(Color, ActorRef<CreatureMsg>)>,
    faded: usize,
    total: u64,
    done: Done<u64>,
}

impl Actor for Mall {
    type Msg = MallMsg;
    type State = MallState;
    type Arguments = MallState;

    async fn pre_start(
        &self,
        _: ActorRef<MallMsg>,
        args: MallState,
    ) -> Result<MallState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<MallMsg>,
        msg: MallMsg,
        st: &mut MallState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MallMsg::Meet { color, from } => {
                if st.remaining == 0 {
                    tell(&from, CreatureMsg::Exit);
                } else if let Some((_, first)) = st.waiting.take() {
                    st.remaining -= 1;
                    tell(&first, CreatureMsg::Meet { color, other: from });
                } else {
                    st.waiting = Some((color, from));
                }
            }
            MallMsg::Count(c) => {
                st.faded += 1;
                st.total += c;
                if st.faded == st.creatures {
                    st.done.fire(st.total);
                    myself.stop(None);
                }
            }
        }
        Ok(())
    }
}

struct Creature;

enum CreatureMsg {
    Start,
    Meet {
        color: Color,
        other: ActorRef<CreatureMsg>,
    },
    Change(Color),
    Exit,
}

struct CreatureState {
    color: Color,
    met: u64,
    mall: ActorRef<MallMsg>,
}

impl Actor for Creature {
    type Msg = CreatureMsg;
    type State = CreatureState;
    type Arguments = CreatureState;

    async fn pre_start(
        &self,
        _: ActorRef<CreatureMsg>,
        args: CreatureState,
    ) -> Result<CreatureState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<CreatureMsg>,
        msg: CreatureMsg,
        st: &mut CreatureState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CreatureMsg::Start => {}
            CreatureMsg::Meet { color, other } => {
                st.color = st.color.complement(color);
                st.met += 1;
                tell(&other, CreatureMsg::Change(st.color));
            }
            CreatureMsg::Change(c) => {
                st.color = c;
                st.met += 1;
            }
            CreatureMsg::Exit => {
                st.color = Color::Faded;
                tell(&st.mall, MallMsg::Count(st.met));
                myself.stop(None);
                return Ok(());
            }
        }
        let req = MallMsg::Meet {
            color: st.color,
            from: myself,
        };
        tell(&st.mall, req);
        Ok(())
    }
}

/// Savina chameneos: a mall actor pairs meeting requests until `meetings` meetings happened;
/// creatures swap complement colours, re-request, and on `Exit` report their counts and stop.
/// The reported total must be `2 * meetings`.
pub fn chameneos(creatures: usize, meetings: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let mall_state = MallState {
            creatures,
            remaining: meetings,
            waiting: None,
            faded: 0,
            total: 0,
            done,
        };
        let (mall, mall_handle) = start(Mall, mall_state).await;
        let mut herd = Vec::with_capacity(creatures);
        for i in 0..creatures {
            let state = CreatureState {
                color: Color::initial(i),
                met: 0,
                mall: mall.clone(),
            };
            herd.push(start(Creature, state).await);
        }

        let start = Instant::now();
        for (r, _) in &herd {
            tell(r, CreatureMsg::Start);
        }
        let total = wait_done(done_rx, "ractor chameneos").await;
        let elapsed = start.elapsed();

        assert_eq!(total, 2 * meetings, "ractor chameneos: wrong meeting total");
        // Every creature and the mall stopped themselves; wait for them to be gone.
        for (_, h) in herd {
            h.await.expect("ractor creature task panicked");
        }
        mall_handle.await.expect("ractor mall task panicked");
        elapsed
    })
}

struct BigNode;

enum BigMsg {
    Neighbors(Arc<Vec<ActorRef<BigMsg>>>),
    Start,
    Ping(usize),
    Pong,
}

struct BigState {
    index: usize,
    pings: u64,
    sent: u64,
    rng: XorShift,
    neighbors: Option<Arc<Vec<ActorRef<BigMsg>>>>,
    sink: ActorRef<u64>,
}

impl Actor for BigNode {
    type Msg = BigMsg;
    type State = BigState;
    type Arguments = BigState;

    async fn pre_start(
        &self,
        _: ActorRef<BigMsg>,
        args: BigState,
    ) -> Result<BigState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<BigMsg>,
        msg: BigMsg,
        st: &mut BigState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BigMsg::Neighbors(all) => st.neighbors = Some(all),
            BigMsg::Ping(from) => {
                let all = st
                    .neighbors
                    .as_ref()
                    .expect("ractor big: ping before wiring");
                tell(&all[from], BigMsg::Pong);
            }
            BigMsg::Start | BigMsg::Pong => {
                if st.sent < st.pings {
                    st.sent += 1;
                    let all = st
                        .neighbors
                        .as_ref()
                        .expect("ractor big: start before wiring");
                    let to = st.rng.other_than(st.index, all.len());
                    tell(&all[to], BigMsg::Ping(st.index));
                } else {
                    tell(&st.sink, st.sent);
                }
            }
        }
        Ok(())
    }
}

struct Sink;

struct SinkState {
    actors: usize,
    reports: usize,
    total: u64,
    done: Done<u64>,
}

impl Actor for Sink {
    type Msg = u64;
    type State = SinkState;
    type Arguments = SinkState;

    async fn pre_start(
        &self,
        _: ActorRef<u64>,
        args: SinkState,
    ) -> Result<SinkState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        sent: u64,
        st: &mut SinkState,
    ) -> Result<(), ActorProcessingErr> {
        st.reports += 1;
        st.total += sent;
        if st.reports == st.actors {
            st.done.fire(st.total);
        }
        Ok(())
    }
}

/// Savina big: `actors` actors each send `pings` pings (one outstanding at a time) to random
/// other actors, which answer pong; finished actors report to a sink actor whose total must be
/// `actors * pings`.
pub fn big(actors: usize, pings: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let sink_state = SinkState {
            actors,
            reports: 0,
            total: 0,
            done,
        };
        let sink = start(Sink, sink_state).await;
        let mut nodes = Vec::with_capacity(actors);
        for index in 0..actors {
            let state = BigState {
                index,
                pings,
                sent: 0,
                rng: XorShift::new(index as u64),
                neighbors: None,
                sink: sink.0.clone(),
            };
            nodes.push(start(BigNode, state).await);
        }
        let all: Arc<Vec<_>> = Arc::new(nodes.iter().map(|(r, _)| r.clone()).collect());
        for (r, _) in &nodes {
            tell(r, BigMsg::Neighbors(Arc::clone(&all)));
        }
        drop(all);

        let start = Instant::now();
        for (r, _) in &nodes {
            tell(r, BigMsg::Start);
        }
        let total = wait_done(done_rx, "ractor big").await;
        let elapsed = start.elapsed();

        assert_eq!(total, actors as u64 * pings, "ractor big: wrong ping total");
        stop_all(nodes).await;
        stop_all(vec![sink]).await;
        elapsed
    })
}

//! `raw` peer: hand-written "actors" on plain tokio — the practical-limit baseline.
//!
//! Each actor is a spawned task that owns the receiving end of a bounded
//! `tokio::sync::mpsc::channel(RAW_MAILBOX = 1024)` and loops over `recv()`; an actor ref is a
//! `Sender` clone; an ask puts a `tokio::sync::oneshot::Sender` inside the message. Sends are
//! `send().await` (back-pressured by the bounded channel). Everything runs on the shared
//! 2-worker multi-thread runtime ([`super::run_on_tokio`]); the driver/producer is itself a task
//! on that runtime. Only the core of each scenario is timed with [`Instant`]; setup (spawning,
//! wiring) and teardown are outside the measured span unless the scenario *is* spawning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{
    fork_join_work, run_on_tokio, sum_below, wait_done, Color, Countdown, Done, MemoryReport,
    XorShift, RAW_MAILBOX,
};

type Ref<M> = mpsc::Sender<M>;

/// Sends on a raw mailbox, panicking if the receiving actor is gone (it must outlive the run).
async fn tell<M>(to: &Ref<M>, msg: M) {
    if to.send(msg).await.is_err() {
        panic!("raw: receiving actor stopped while the scenario still needed it");
    }
}

/// One producer task sends `n` `u64`s to a summing actor; the clock stops when the actor has
/// processed all of them (it fires a oneshot at `count == n`).
pub fn tell_throughput(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (tx, mut rx) = mpsc::channel::<u64>(RAW_MAILBOX);
        let (done, done_rx) = Done::new();
        let actor = tokio::spawn(async move {
            let (mut count, mut sum) = (0u64, 0u64);
            while let Some(x) = rx.recv().await {
                count += 1;
                sum += x;
                if count == n {
                    done.fire(sum);
                }
            }
        });

        let start = Instant::now();
        for x in 0..n {
            tell(&tx, x).await;
        }
        let sum = wait_done(done_rx, "raw tell_throughput").await;
        let elapsed = start.elapsed();

        assert_eq!(sum, sum_below(n), "raw tell_throughput: wrong sum");
        drop(tx);
        actor.await.expect("raw summer actor panicked");
        elapsed
    })
}

/// `n` sequential asks (`x -> x + 1`), each reply checked.
pub fn ask_roundtrip(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(RAW_MAILBOX);
        let actor = tokio::spawn(async move {
            while let Some((x, reply)) = rx.recv().await {
                // The asker waits for every reply, so it is always still listening.
                let _ = reply.send(x + 1);
            }
        });

        let start = Instant::now();
        for x in 0..n {
            let (reply_tx, reply_rx) = oneshot::channel();
            tell(&tx, (x, reply_tx)).await;
            let y = reply_rx.await.expect("raw echo actor dropped the reply");
            assert_eq!(y, x + 1, "raw ask_roundtrip: wrong reply");
        }
        let elapsed = start.elapsed();

        drop(tx);
        actor.await.expect("raw echo actor panicked");
        elapsed
    })
}

/// Spawns `n` idle actors (channel + task each) and returns (refs, time until all ran).
async fn spawn_idle(n: u64) -> (Vec<Ref<()>>, Duration) {
    let mut refs = Vec::with_capacity(n as usize);
    let started = Countdown::new(n);
    let start = Instant::now();
    for _ in 0..n {
        let (tx, mut rx) = mpsc::channel::<()>(RAW_MAILBOX);
        let started = started.clone();
        tokio::spawn(async move {
            started.arrive();
            while rx.recv().await.is_some() {}
        });
        refs.push(tx);
    }
    started.wait().await;
    (refs, start.elapsed())
}

/// Time to spawn `n` idle actors until every one of them has started running.
pub fn spawn(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (refs, elapsed) = spawn_idle(n).await;
        // Teardown (not measured): dropping every sender ends every actor loop.
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

enum PingMsg {
    Start,
    Pong,
}

struct PongMsg {
    reply_to: Ref<PingMsg>,
}

/// Savina ping-pong: `n` round trips of fire-and-forget sends between two actors.
pub fn ping_pong(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (pong_tx, mut pong_rx) = mpsc::channel::<PongMsg>(RAW_MAILBOX);
        let pong = tokio::spawn(async move {
            while let Some(PongMsg { reply_to }) = pong_rx.recv().await {
                tell(&reply_to, PingMsg::Pong).await;
            }
        });

        let (ping_tx, mut ping_rx) = mpsc::channel::<PingMsg>(RAW_MAILBOX);
        let (done, done_rx) = Done::new();
        let me = ping_tx.clone();
        let ping = tokio::spawn(async move {
            let mut pongs = 0u64;
            while let Some(msg) = ping_rx.recv().await {
                match msg {
                    PingMsg::Start => {}
                    PingMsg::Pong => {
                        pongs += 1;
                        if pongs == n {
                            done.fire(pongs);
                            // Stop: dropping `me`/`pong_tx` with the task ends the pong actor.
                            break;
                        }
                    }
                }
                let reply_to = me.clone();
                tell(&pong_tx, PongMsg { reply_to }).await;
            }
        });

        let start = Instant::now();
        tell(&ping_tx, PingMsg::Start).await;
        let pongs = wait_done(done_rx, "raw ping_pong").await;
        let elapsed = start.elapsed();

        assert_eq!(pongs, n, "raw ping_pong: wrong pong count");
        drop(ping_tx);
        ping.await.expect("raw ping actor panicked");
        pong.await.expect("raw pong actor panicked");
        elapsed
    })
}

enum CounterMsg {
    Inc,
    Get(oneshot::Sender<u64>),
}

/// Savina counting: `n` increments told to a counter, then one ask for the value.
pub fn counting(n: u64) -> Duration {
    run_on_tokio(move || async move {
        let (tx, mut rx) = mpsc::channel::<CounterMsg>(RAW_MAILBOX);
        let actor = tokio::spawn(async move {
            let mut count = 0u64;
            while let Some(msg) = rx.recv().await {
                match msg {
                    CounterMsg::Inc => count += 1,
                    CounterMsg::Get(reply) => {
                        let _ = reply.send(count);
                    }
                }
            }
        });

        let start = Instant::now();
        for _ in 0..n {
            tell(&tx, CounterMsg::Inc).await;
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        tell(&tx, CounterMsg::Get(reply_tx)).await;
        let count = reply_rx.await.expect("raw counter dropped the reply");
        let elapsed = start.elapsed();

        assert_eq!(count, n, "raw counting: wrong count");
        drop(tx);
        actor.await.expect("raw counter actor panicked");
        elapsed
    })
}

enum RingMsg {
    SetNext(Ref<RingMsg>),
    Token(u64),
    Stop,
}

/// Savina thread ring: a token with a hop budget travels around a ring of `actors` actors.
/// The actor that receives the token with 0 hops left fires; its index must be
/// `hops % actors`.
pub fn thread_ring(actors: usize, hops: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let mut refs = Vec::with_capacity(actors);
        let mut tasks = Vec::with_capacity(actors);
        for i in 0..actors {
            let (tx, mut rx) = mpsc::channel::<RingMsg>(RAW_MAILBOX);
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let mut next = None;
                while let Some(msg) = rx.recv().await {
                    match msg {
                        RingMsg::SetNext(r) => next = Some(r),
                        RingMsg::Token(0) => done.fire(i),
                        RingMsg::Token(k) => {
                            let next = next.as_ref().expect("raw ring: token before SetNext");
                            tell(next, RingMsg::Token(k - 1)).await;
                        }
                        RingMsg::Stop => break,
                    }
                }
            }));
            refs.push(tx);
        }
        for (i, r) in refs.iter().enumerate() {
            tell(r, RingMsg::SetNext(refs[(i + 1) % actors].clone())).await;
        }

        let start = Instant::now();
        tell(&refs[0], RingMsg::Token(hops)).await;
        let last = wait_done(done_rx, "raw thread_ring").await;
        let elapsed = start.elapsed();

        assert_eq!(
            last,
            (hops % actors as u64) as usize,
            "raw thread_ring: wrong hop count"
        );
        for r in &refs {
            tell(r, RingMsg::Stop).await;
        }
        for t in tasks {
            t.await.expect("raw ring actor panicked");
        }
        elapsed
    })
}

/// Savina fork-join (throughput): `per_actor` messages to each of `actors` workers, interleaved;
/// each message runs [`fork_join_work`]; done when every worker reached its quota.
pub fn fork_join(actors: usize, per_actor: u64) -> Duration {
    run_on_tokio(move || async move {
        let finished = Countdown::new(actors as u64);
        let mut refs = Vec::with_capacity(actors);
        let mut tasks = Vec::with_capacity(actors);
        for _ in 0..actors {
            let (tx, mut rx) = mpsc::channel::<u64>(RAW_MAILBOX);
            let finished = finished.clone();
            tasks.push(tokio::spawn(async move {
                let (mut count, mut acc) = (0u64, 0.0f64);
                while let Some(x) = rx.recv().await {
                    acc += fork_join_work(x);
                    count += 1;
                    assert!(count <= per_actor, "raw fork_join: worker over quota");
                    if count == per_actor {
                        finished.arrive();
                    }
                }
                std::hint::black_box(acc);
                count
            }));
            refs.push(tx);
        }

        let start = Instant::now();
        for j in 0..per_actor {
            for r in &refs {
                tell(r, j).await;
            }
        }
        finished.wait().await;
        let elapsed = start.elapsed();

        drop(refs);
        for t in tasks {
            let count = t.await.expect("raw fork_join worker panicked");
            assert_eq!(count, per_actor, "raw fork_join: worker count");
        }
        elapsed
    })
}

enum MallMsg {
    Meet {
        color: Color,
        from: Ref<CreatureMsg>,
    },
    Count(u64),
}

enum CreatureMsg {
    Start,
    Meet {
        color: Color,
        other: Ref<CreatureMsg>,
    },
    Change(Color),
    Exit,
}

/// Savina chameneos: a mall pairs meeting requests from `creatures` creatures until `meetings`
/// meetings happened; creatures swap complement colours and re-request; once the mall is out
/// of meetings it answers `Exit`, creatures report their meeting counts and stop. The reported
/// total must be `2 * meetings`.
pub fn chameneos(creatures: usize, meetings: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let (mall_tx, mut mall_rx) = mpsc::channel::<MallMsg>(RAW_MAILBOX);
        let mall = tokio::spawn(async move {
            let mut remaining = meetings;
            let mut waiting: Option<(Color, Ref<CreatureMsg>)> = None;
            let (mut faded, mut total) = (0usize, 0u64);
            while let Some(msg) = mall_rx.recv().await {
                match msg {
                    MallMsg::Meet { color, from } => {
                        if remaining == 0 {
                            tell(&from, CreatureMsg::Exit).await;
                        } else if let Some((_, first)) = waiting.take() {
                            remaining -= 1;
                            tell(&first, CreatureMsg::Meet { color, other: from }).await;
                        } else {
                            waiting = Some((color, from));
                        }
                    }
                    MallMsg::Count(c) => {
                        faded += 1;
                        total += c;
                        if faded == creatures {
                            done.fire(total);
                            break;
                        }
                    }
                }
            }
        });

        let mut refs = Vec::with_capacity(creatures);
        for i in 0..creatures {
            let (tx, mut rx) = mpsc::channel::<CreatureMsg>(RAW_MAILBOX);
            let me = tx.clone();
            let mall = mall_tx.clone();
            tokio::spawn(async move {
                let mut color = Color::initial(i);
                let mut met = 0u64;
                while let Some(msg) = rx.recv().await {
                    match msg {
                        CreatureMsg::Start => {}
                        CreatureMsg::Meet {
                            color: other_color,
                            other,
                        } => {
                            color = color.complement(other_color);
                            met += 1;
                            tell(&other, CreatureMsg::Change(color)).await;
                        }
                        CreatureMsg::Change(c) => {
                            color = c;
                            met += 1;
                        }
                        CreatureMsg::Exit => {
                            color = Color::Faded;
                            tell(&mall, MallMsg::Count(met)).await;
                            break;
                        }
                    }
                    let from = me.clone();
                    tell(&mall, MallMsg::Meet { color, from }).await;
                }
                std::hint::black_box(color);
            });
            refs.push(tx);
        }
        drop(mall_tx);

        let start = Instant::now();
        for r in &refs {
            tell(r, CreatureMsg::Start).await;
        }
        let total = wait_done(done_rx, "raw chameneos").await;
        let elapsed = start.elapsed();

        assert_eq!(total, 2 * meetings, "raw chameneos: wrong meeting total");
        mall.await.expect("raw mall actor panicked");
        elapsed
    })
}

enum BigMsg {
    Neighbors(Arc<Vec<Ref<BigMsg>>>),
    Start,
    Ping(usize),
    Pong,
    Stop,
}

/// Savina big: `actors` actors each send `pings` pings (one outstanding at a time) to random
/// other actors, which answer pong; finished actors report to a sink actor. The sink's total
/// must be `actors * pings`.
pub fn big(actors: usize, pings: u64) -> Duration {
    run_on_tokio(move || async move {
        let (done, done_rx) = Done::new();
        let (sink_tx, mut sink_rx) = mpsc::channel::<u64>(RAW_MAILBOX);
        let sink = tokio::spawn(async move {
            let (mut reports, mut total) = (0usize, 0u64);
            while let Some(sent) = sink_rx.recv().await {
                reports += 1;
                total += sent;
                if reports == actors {
                    done.fire(total);
                    break;
                }
            }
        });

        let mut refs = Vec::with_capacity(actors);
        let mut tasks = Vec::with_capacity(actors);
        for i in 0..actors {
            let (tx, mut rx) = mpsc::channel::<BigMsg>(RAW_MAILBOX);
            let sink = sink_tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = XorShift::new(i as u64);
                let mut neighbors: Option<Arc<Vec<Ref<BigMsg>>>> = None;
                let mut sent = 0u64;
                while let Some(msg) = rx.recv().await {
                    match msg {
                        BigMsg::Neighbors(n) => neighbors = Some(n),
                        BigMsg::Ping(from) => {
                            let all = neighbors.as_ref().expect("raw big: ping before wiring");
                            tell(&all[from], BigMsg::Pong).await;
                        }
                        BigMsg::Start | BigMsg::Pong => {
                            if sent < pings {
                                sent += 1;
                                let all = neighbors.as_ref().expect("raw big: start before wiring");
                                let to = rng.other_than(i, all.len());
                                tell(&all[to], BigMsg::Ping(i)).await;
                            } else {
                                tell(&sink, sent).await;
                            }
                        }
                        BigMsg::Stop => break,
                    }
                }
            }));
            refs.push(tx);
        }
        drop(sink_tx);
        let all = Arc::new(refs.clone());
        for r in &refs {
            tell(r, BigMsg::Neighbors(Arc::clone(&all))).await;
        }
        drop(all);

        let start = Instant::now();
        for r in &refs {
            tell(r, BigMsg::Start).await;
        }
        let total = wait_done(done_rx, "raw big").await;
        let elapsed = start.elapsed();

        assert_eq!(total, actors as u64 * pings, "raw big: wrong ping total");
        sink.await.expect("raw big sink panicked");
        for r in &refs {
            tell(r, BigMsg::Stop).await;
        }
        for t in tasks {
            t.await.expect("raw big actor panicked");
        }
        elapsed
    })
}

//! Savina-style actor benchmarks, one criterion group per scenario, one benchmark per peer
//! (`<scenario>/<peer>`). Defaults (scaled by `POSTBOX_BENCH_SCALE`, see [`peers::Params`]):
//!
//! - `ping_pong`: two actors exchange 100 000 round trips by fire-and-forget sends.
//!   Throughput = 2 × round trips (messages).
//! - `counting`: 1 000 000 increments told to a counter, then one ask for the value (asserted).
//!   Throughput = increments.
//! - `thread_ring`: one token passed 1 000 000 times around a ring of 100 actors.
//!   Throughput = hops.
//! - `fork_join`: 10 000 messages to each of 60 workers (interleaved), each doing a small
//!   fixed floating-point computation. Throughput = 600 000 messages.
//! - `chameneos`: 100 creatures meet through a mall actor until 200 000 meetings happened.
//!   Throughput = meetings (each meeting is ~4 messages).
//! - `big`: 120 actors each send 2 000 pings to random peers and wait for the pong before the
//!   next one; a sink collects completion reports. Throughput = 2 × pings (ping + pong).
//!
//! Every run asserts its outcome (counts/sums) and only times the core exchange
//! (`iter_custom`); spawning/wiring and teardown are outside the clock.

use criterion::{criterion_group, criterion_main, Criterion};

mod peers;

use peers::{bench_peer, group, Params};

fn ping_pong(c: &mut Criterion) {
    let n = Params::from_env().ping_pong_n;
    let mut g = group(c, "ping_pong", 2 * n);
    bench_peer(&mut g, "raw", || peers::raw::ping_pong(n));
    bench_peer(&mut g, "postbox", || peers::postbox::ping_pong(n));
    bench_peer(&mut g, "actix", || peers::actix::ping_pong(n));
    bench_peer(&mut g, "kameo", || peers::kameo::ping_pong(n));
    bench_peer(&mut g, "ractor", || peers::ractor::ping_pong(n));
    g.finish();
}

fn counting(c: &mut Criterion) {
    let n = Params::from_env().counting_n;
    let mut g = group(c, "counting", n);
    bench_peer(&mut g, "raw", || peers::raw::counting(n));
    bench_peer(&mut g, "postbox", || peers::postbox::counting(n));
    bench_peer(&mut g, "actix", || peers::actix::counting(n));
    bench_peer(&mut g, "kameo", || peers::kameo::counting(n));
    bench_peer(&mut g, "ractor", || peers::ractor::counting(n));
    g.finish();
}

fn thread_ring(c: &mut Criterion) {
    let p = Params::from_env();
    let (actors, hops) = (p.ring_actors, p.ring_hops);
    let mut g = group(c, "thread_ring", hops);
    bench_peer(&mut g, "raw", || peers::raw::thread_ring(actors, hops));
    bench_peer(&mut g, "postbox", || {
        peers::postbox::thread_ring(actors, hops)
    });
    bench_peer(&mut g, "actix", || peers::actix::thread_ring(actors, hops));
    bench_peer(&mut g, "kameo", || peers::kameo::thread_ring(actors, hops));
    bench_peer(&mut g, "ractor", || {
        peers::ractor::thread_ring(actors, hops)
    });
    g.finish();
}

fn fork_join(c: &mut Criterion) {
    let p = Params::from_env();
    let (actors, per) = (p.fork_join_actors, p.fork_join_per_actor);
    let mut g = group(c, "fork_join", actors as u64 * per);
    bench_peer(&mut g, "raw", || peers::raw::fork_join(actors, per));
    bench_peer(&mut g, "postbox", || peers::postbox::fork_join(actors, per));
    bench_peer(&mut g, "actix", || peers::actix::fork_join(actors, per));
    bench_peer(&mut g, "kameo", || peers::kameo::fork_join(actors, per));
    bench_peer(&mut g, "ractor", || peers::ractor::fork_join(actors, per));
    g.finish();
}

fn chameneos(c: &mut Criterion) {
    let p = Params::from_env();
    let (creatures, meetings) = (p.chameneos_creatures, p.chameneos_meetings);
    let mut g = group(c, "chameneos", meetings);
    bench_peer(&mut g, "raw", || peers::raw::chameneos(creatures, meetings));
    bench_peer(&mut g, "postbox", || {
        peers::postbox::chameneos(creatures, meetings)
    });
    bench_peer(&mut g, "actix", || {
        peers::actix::chameneos(creatures, meetings)
    });
    bench_peer(&mut g, "kameo", || {
        peers::kameo::chameneos(creatures, meetings)
    });
    bench_peer(&mut g, "ractor", || {
        peers::ractor::chameneos(creatures, meetings)
    });
    g.finish();
}

fn big(c: &mut Criterion) {
    let p = Params::from_env();
    let (actors, pings) = (p.big_actors, p.big_pings);
    let mut g = group(c, "big", 2 * actors as u64 * pings);
    bench_peer(&mut g, "raw", || peers::raw::big(actors, pings));
    bench_peer(&mut g, "postbox", || peers::postbox::big(actors, pings));
    bench_peer(&mut g, "actix", || peers::actix::big(actors, pings));
    bench_peer(&mut g, "kameo", || peers::kameo::big(actors, pings));
    bench_peer(&mut g, "ractor", || peers::ractor::big(actors, pings));
    g.finish();
}

criterion_group!(
    benches,
    ping_pong,
    counting,
    thread_ring,
    fork_join,
    chameneos,
    big
);
criterion_main!(benches);

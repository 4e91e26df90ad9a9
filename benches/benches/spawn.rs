//! Actor spawn cost: criterion group `spawn`, one benchmark per peer (`spawn/<peer>`).
//!
//! Each measured run spawns `n` idle actors (default 100 000; `POSTBOX_BENCH_SPAWN_N` /
//! `POSTBOX_BENCH_SCALE`) and stops the clock when every actor has run its start hook (each
//! start hook counts down a shared latch). Stopping the actors and dropping the runtime happen
//! after the clock stops. Throughput = `n` actors, so the per-element time is time per spawn.

use criterion::{criterion_group, criterion_main, Criterion};

mod peers;

use peers::{bench_peer, group, Params};

fn spawn(c: &mut Criterion) {
    let n = Params::from_env().spawn_n;
    let mut g = group(c, "spawn", n);
    bench_peer(&mut g, "raw", || peers::raw::spawn(n));
    bench_peer(&mut g, "postbox", || peers::postbox::spawn(n));
    bench_peer(&mut g, "actix", || peers::actix::spawn(n));
    bench_peer(&mut g, "kameo", || peers::kameo::spawn(n));
    bench_peer(&mut g, "ractor", || peers::ractor::spawn(n));
    g.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);

//! Local messaging micro-benchmarks, one criterion group per scenario, one benchmark per peer
//! (`<scenario>/<peer>`):
//!
//! - `tell_throughput`: one producer fire-and-forget-sends `n` `u64`s (default 2 000 000) to a
//!   summing actor; time from the first send until the actor reports having processed all `n`.
//!   Throughput = `n` messages.
//! - `ask_roundtrip`: `n` (default 100 000) sequential request/reply asks (`x -> x + 1`); the
//!   per-element time criterion reports is the per-ask round-trip latency.
//!
//! Sizes come from [`peers::Params`] (`POSTBOX_BENCH_SCALE`, `POSTBOX_BENCH_TELL_N`,
//! `POSTBOX_BENCH_ASK_N`). Each measured run builds and tears down its own runtime/System;
//! only the core is timed (`iter_custom`).

use criterion::{criterion_group, criterion_main, Criterion};

mod peers;

use peers::{bench_peer, group, Params};

fn tell_throughput(c: &mut Criterion) {
    let n = Params::from_env().tell_n;
    let mut g = group(c, "tell_throughput", n);
    bench_peer(&mut g, "raw", || peers::raw::tell_throughput(n));
    bench_peer(&mut g, "postbox", || peers::postbox::tell_throughput(n));
    bench_peer(&mut g, "actix", || peers::actix::tell_throughput(n));
    bench_peer(&mut g, "kameo", || peers::kameo::tell_throughput(n));
    bench_peer(&mut g, "ractor", || peers::ractor::tell_throughput(n));
    g.finish();
}

fn ask_roundtrip(c: &mut Criterion) {
    let n = Params::from_env().ask_n;
    let mut g = group(c, "ask_roundtrip", n);
    bench_peer(&mut g, "raw", || peers::raw::ask_roundtrip(n));
    bench_peer(&mut g, "postbox", || peers::postbox::ask_roundtrip(n));
    bench_peer(&mut g, "actix", || peers::actix::ask_roundtrip(n));
    bench_peer(&mut g, "kameo", || peers::kameo::ask_roundtrip(n));
    bench_peer(&mut g, "ractor", || peers::ractor::ask_roundtrip(n));
    g.finish();
}

criterion_group!(benches, tell_throughput, ask_roundtrip);
criterion_main!(benches);

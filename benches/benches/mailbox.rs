//! The mailbox queue on its own against `tokio::sync::mpsc`, no actors involved.
//!
//! - `mailbox_spsc`: one producer task sends 2 000 000 `u64`s, one consumer task sums them.
//! - `mailbox_mpsc`: four producer tasks send 500 000 each to one consumer.
//!
//! Each runs on a fresh 2-worker runtime; the clock covers first send to last receive.
//! Peers: postbox's mailbox bounded at 1024 (its default) and unbounded, tokio's bounded
//! channel at 1024 and its unbounded channel.

use criterion::{criterion_group, criterion_main, Criterion};
use postbox::bench_api::mailbox;
use postbox::MailboxCapacity;
use std::time::{Duration, Instant};

mod peers;

use peers::{bench_peer, group, run_on_tokio};

const TOTAL: u64 = 2_000_000;

fn postbox_run(config: MailboxCapacity, producers: u64) -> Duration {
    run_on_tokio(move || async move {
        let (tx, mut rx) = mailbox::<u64>(config);
        let per = TOTAL / producers;
        let start = Instant::now();
        for _ in 0..producers {
            let tx = tx.clone();
            tokio::spawn(async move {
                for x in 0..per {
                    if tx.send(x).await.is_err() {
                        panic!("the receiver is alive for the whole run");
                    }
                }
            });
        }
        let mut sum = 0u64;
        for _ in 0..per * producers {
            sum += rx.recv().await.expect("producers still sending");
        }
        let elapsed = start.elapsed();
        assert_eq!(sum, producers * per * (per - 1) / 2);
        elapsed
    })
}

fn tokio_bounded(producers: u64) -> Duration {
    run_on_tokio(move || async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
        let per = TOTAL / producers;
        let start = Instant::now();
        for _ in 0..producers {
            let tx = tx.clone();
            tokio::spawn(async move {
                for x in 0..per {
                    tx.send(x)
                        .await
                        .expect("the receiver is alive for the whole run");
                }
            });
        }
        let mut sum = 0u64;
        for _ in 0..per * producers {
            sum += rx.recv().await.expect("producers still sending");
        }
        let elapsed = start.elapsed();
        assert_eq!(sum, producers * per * (per - 1) / 2);
        elapsed
    })
}

fn tokio_unbounded(producers: u64) -> Duration {
    run_on_tokio(move || async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let per = TOTAL / producers;
        let start = Instant::now();
        for _ in 0..producers {
            let tx = tx.clone();
            tokio::spawn(async move {
                for x in 0..per {
                    tx.send(x).expect("the receiver is alive for the whole run");
                    if x % 128 == 0 {
                        // An unbounded producer would otherwise never yield.
                        tokio::task::yield_now().await;
                    }
                }
            });
        }
        let mut sum = 0u64;
        for _ in 0..per * producers {
            sum += rx.recv().await.expect("producers still sending");
        }
        let elapsed = start.elapsed();
        assert_eq!(sum, producers * per * (per - 1) / 2);
        elapsed
    })
}

fn mailbox_spsc(c: &mut Criterion) {
    let mut g = group(c, "mailbox_spsc", TOTAL);
    bench_peer(&mut g, "postbox_bounded", || {
        postbox_run(MailboxCapacity::bounded(1024), 1)
    });
    bench_peer(&mut g, "postbox_unbounded", || {
        postbox_run(MailboxCapacity::Unbounded, 1)
    });
    bench_peer(&mut g, "tokio_bounded", || tokio_bounded(1));
    bench_peer(&mut g, "tokio_unbounded", || tokio_unbounded(1));
    g.finish();
}

fn mailbox_mpsc(c: &mut Criterion) {
    let mut g = group(c, "mailbox_mpsc", TOTAL);
    bench_peer(&mut g, "postbox_bounded", || {
        postbox_run(MailboxCapacity::bounded(1024), 4)
    });
    bench_peer(&mut g, "postbox_unbounded", || {
        postbox_run(MailboxCapacity::Unbounded, 4)
    });
    bench_peer(&mut g, "tokio_bounded", || tokio_bounded(4));
    bench_peer(&mut g, "tokio_unbounded", || tokio_unbounded(4));
    g.finish();
}

criterion_group!(benches, mailbox_spsc, mailbox_mpsc);
criterion_main!(benches);

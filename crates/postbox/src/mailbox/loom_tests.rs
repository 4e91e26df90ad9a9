//! Model-checked tests of the mailbox's lock-free parts.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p postbox --release --lib mailbox::loom_tests`
//! (`.ci/run` does). Under loom a block holds two slots, so these small scenarios cross block
//! boundaries, exercise block reuse and reclamation, and race every pair of operations.

use super::queue::{PushError, Queue, UNBOUNDED};
use super::signal::SignalStack;
use super::{AsMailbox, Consumer, Mailbox, MailboxCapacity, Received};
use loom::sync::Arc;
use loom::thread;
use std::future::poll_fn;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Pops everything the producers will push, spinning (yielding to loom) on empty.
fn pop_n(q: &Queue<(u8, u8)>, n: usize) -> Vec<(u8, u8)> {
    let mut out = Vec::new();
    while out.len() < n {
        // SAFETY: the test thread is the only consumer.
        match unsafe { q.pop() } {
            Some(v) => out.push(v),
            None => thread::yield_now(),
        }
    }
    out
}

fn assert_per_producer_fifo(values: &[(u8, u8)]) {
    let mut next = [0u8; 4];
    for &(producer, seq) in values {
        assert_eq!(
            next[producer as usize], seq,
            "producer {producer} reordered"
        );
        next[producer as usize] += 1;
    }
}

#[test]
fn two_producers_cross_blocks_in_order() {
    model(|| {
        let q = Arc::new(Queue::new(UNBOUNDED));
        // Three values from two producers: with two-slot blocks, the second block is appended
        // while the producers race each other and the consumer.
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    for seq in 0..(2 - p) {
                        assert!(q.push((p, seq)).is_ok());
                    }
                })
            })
            .collect();
        let values = pop_n(&q, 3);
        assert_per_producer_fifo(&values);
        for p in producers {
            p.join().unwrap();
        }
        // SAFETY: single consumer.
        assert!(unsafe { q.pop() }.is_none());
    });
}

#[test]
fn block_reuse_and_reclamation_under_concurrent_consumption() {
    model(|| {
        let q = Arc::new(Queue::new(UNBOUNDED));
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                // Five values over three two-slot blocks: the consumer reclaims the first block
                // while the producer may still be appending, and the spare gets reused.
                for seq in 0..5u8 {
                    assert!(q.push((0, seq)).is_ok());
                }
            })
        };
        let values = pop_n(&q, 5);
        assert_per_producer_fifo(&values);
        producer.join().unwrap();
    });
}

#[test]
fn pooled_spares_taken_by_a_producer_while_the_consumer_trims_them() {
    model(|| {
        let q = Arc::new(Queue::new(UNBOUNDED));
        // A backlog of five blocks, taken in one go: its reclaimed blocks fill the inline
        // spare and the pool's one.
        for seq in 0..10u8 {
            assert!(q.push((1, seq)).is_ok());
        }
        assert_eq!(pop_n(&q, 10).len(), 10);
        assert_eq!(q.spare_count(), 2);
        // One more block takes the inline spare: the next one must come from the pool.
        for seq in 0..2u8 {
            assert!(q.push((0, seq)).is_ok());
        }
        assert_eq!(q.spare_count(), 1);
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                // The pool's block, unless the trim freed it first.
                for seq in 2..4u8 {
                    assert!(q.push((0, seq)).is_ok());
                }
            })
        };
        q.trim_spares();
        let values = pop_n(&q, 4);
        assert_per_producer_fifo(&values);
        producer.join().unwrap();
    });
}

#[test]
fn bounded_never_exceeds_capacity() {
    model(|| {
        let q = Arc::new(Queue::new(1));
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || match q.push((p, 0)) {
                    Ok(_) => true,
                    Err(PushError::Full(_)) => false,
                    Err(PushError::Closed(_)) => unreachable!(),
                })
            })
            .collect();
        assert!(q.len() <= 1);
        let accepted = producers
            .into_iter()
            .map(|p| p.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert!(accepted >= 1);
        assert_eq!(pop_n(&q, accepted).len(), accepted);
    });
}

#[test]
fn close_races_with_push_and_loses_nothing() {
    model(|| {
        let q = Arc::new(Queue::new(UNBOUNDED));
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                let mut handed_back = 0;
                for seq in 0..2u8 {
                    if let Err(PushError::Closed(_)) = q.push((0, seq)) {
                        handed_back += 1;
                    }
                }
                handed_back
            })
        };
        // SAFETY: single consumer.
        let end = unsafe { q.close() };
        let taken = pop_n(&q, end);
        let handed_back = producer.join().unwrap();
        assert_eq!(taken.len() + handed_back, 2);
        assert_per_producer_fifo(&taken);
    });
}

#[test]
fn signal_stack_concurrent_push_then_close() {
    model(|| {
        let s = Arc::new(SignalStack::new());
        let pushers: Vec<_> = (0..2u8)
            .map(|i| {
                let s = s.clone();
                thread::spawn(move || s.push(i).is_ok())
            })
            .collect();
        let mut seen: Vec<u8> = s.take_all().collect();
        seen.extend(s.close());
        let accepted = pushers
            .into_iter()
            .map(|p| p.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(seen.len(), accepted);
    });
}

struct Holder(Mailbox<u8, u8>);

impl AsMailbox for Holder {
    type Item = u8;
    type Signal = u8;
    fn mailbox(&self) -> &Mailbox<u8, u8> {
        &self.0
    }
}

fn mailbox(config: MailboxCapacity) -> (std::sync::Arc<Holder>, Consumer<Holder>) {
    let holder = std::sync::Arc::new(Holder(Mailbox::new(config)));
    // SAFETY: one consumer per mailbox in these tests.
    let consumer = unsafe { Consumer::new(holder.clone()) };
    (holder, consumer)
}

fn recv(consumer: &mut Consumer<Holder>) -> Received<u8, u8> {
    loom::future::block_on(poll_fn(|cx| consumer.poll_recv(cx)))
}

#[test]
fn parked_consumer_never_misses_a_message() {
    // If the wake-up were lost, `block_on` would never return and loom reports a deadlock.
    model(|| {
        let (holder, mut consumer) = mailbox(MailboxCapacity::Unbounded);
        let producer = thread::spawn(move || holder.0.try_send(7).is_ok());
        assert!(matches!(recv(&mut consumer), Received::Message(7)));
        assert!(producer.join().unwrap());
    });
}

#[test]
fn parked_consumer_never_misses_a_signal() {
    model(|| {
        let (holder, mut consumer) = mailbox(MailboxCapacity::Unbounded);
        let producer = thread::spawn(move || holder.0.send_signal(1).is_ok());
        match recv(&mut consumer) {
            Received::Signals(s) => assert_eq!(s.collect::<Vec<_>>(), vec![1]),
            _ => panic!("expected the signal"),
        }
        assert!(producer.join().unwrap());
    });
}

#[test]
fn signal_wakes_a_consumer_waiting_for_signals_only() {
    model(|| {
        let (holder, mut consumer) = mailbox(MailboxCapacity::Unbounded);
        let producer = thread::spawn(move || {
            assert!(holder.0.try_send(9).is_ok());
            assert!(holder.0.send_signal(1).is_ok());
        });
        let received = loom::future::block_on(poll_fn(|cx| consumer.poll_signals(cx, usize::MAX)));
        match received {
            Received::Signals(s) => assert_eq!(s.collect::<Vec<_>>(), vec![1]),
            _ => panic!("expected the signal"),
        }
        producer.join().unwrap();
        // The user message was left in place.
        assert_eq!(consumer.try_recv(), Some(9));
    });
}

#[test]
fn interrupt_wakes_parked_consumer() {
    model(|| {
        let (holder, mut consumer) = mailbox(MailboxCapacity::Unbounded);
        let killer = thread::spawn(move || holder.0.interrupt(super::INTERRUPT_KILL));
        assert!(matches!(recv(&mut consumer), Received::Interrupted));
        killer.join().unwrap();
    });
}

#[test]
fn blocked_sender_is_always_notified() {
    // The sender's half of `Mailbox::send`: register, re-check. If the re-check still finds the
    // lane full, the consumer's take must have seen the registration and notified.
    model(|| {
        let (holder, mut consumer) = mailbox(MailboxCapacity::bounded(1));
        assert!(holder.0.try_send(1).is_ok());
        let sender = {
            let holder = holder.clone();
            thread::spawn(move || {
                holder.0.register_send_waiter();
                let must_wait = matches!(holder.0.try_send(2), Err(PushError::Full(_)));
                must_wait
            })
        };
        assert_eq!(consumer.try_recv(), Some(1));
        // The consumer's look before sleeping on the now empty lane.
        holder.0.check_send_waiters();
        let must_wait = sender.join().unwrap();
        if must_wait {
            assert!(
                holder
                    .0
                    .room
                    .notified
                    .load(loom::sync::atomic::Ordering::SeqCst)
                    > 0
            );
        }
    });
}

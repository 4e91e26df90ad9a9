//! Mailboxes: where a letter waits until its actor is ready for it.
//!
//! Every actor owns one [`MailboxCapacity`]-configured mailbox made of two lanes:
//!
//! * the **user lane**, a lock-free multi-producer queue of message envelopes. It is bounded by
//!   default ([`MailboxCapacity::DEFAULT_CAPACITY`]); when it is full, `tell` waits for room
//!   (backpressure) and `try_tell` fails at once, handing the message back. Unbounded lanes are
//!   opt-in with [`MailboxCapacity::Unbounded`]. Messages from one sender come out in the order that
//!   sender put them in.
//! * the **signal lane**, an unbounded lock-free stack for system signals (stop, supervision
//!   directives, watch registrations and `Terminated` notifications). The actor drains it before
//!   every user message, so a signal never waits behind a full or long user lane.
//!
//! Depth (`len`) is one subtraction of two atomics, readable from any thread at any time.
//!
//! When the actor stops, the user lane is closed: later sends fail with `Closed` and what was
//! left inside is handed to dead letters.
//!
//! Senders blocked on a full lane are woken together once the actor has drained it to half its
//! capacity (and all of them when the lane closes). Waking one sender per message taken would
//! make a saturated producer and its actor trade a thread wake-up for every single message;
//! the hysteresis lets the producer refill half a mailbox per wake-up instead. Blocked senders
//! are also released, as soon as there is any room, when the actor's handler starts waiting on
//! something (it may be busy for a long time) and before the actor goes idle. The guarantee
//! that no wake-up is lost rests on a synchronizing check every [`WAITER_CHECK_INTERVAL`]
//! messages and before the actor sleeps (see `check_send_waiters`).

pub(crate) mod queue;
mod signal;

#[cfg(all(test, loom))]
mod loom_tests;

pub(crate) use queue::PushError;
pub(crate) use signal::Drain;

use crate::sync::{AtomicUsize, Ordering::*, WakerSlot};
use queue::{Queue, UNBOUNDED};
use signal::SignalStack;
use std::sync::Arc;
use std::task::{Context, Poll};

/// How an actor's user-message lane is sized.
///
/// ```
/// use postbox::MailboxCapacity;
/// assert_eq!(MailboxCapacity::default(), MailboxCapacity::Bounded(MailboxCapacity::DEFAULT_CAPACITY));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailboxCapacity {
    /// At most this many messages wait; `tell` waits for room, `try_tell` returns `Full`.
    /// A capacity of 0 is treated as 1.
    Bounded(usize),
    /// No bound: producers never wait. Use only where the producers are known to be slower than
    /// the actor, since nothing stops the backlog from growing.
    Unbounded,
}

impl MailboxCapacity {
    /// Default capacity of a bounded mailbox: 1024 messages.
    ///
    /// Large enough to absorb bursts so producers rarely block in steady state and the actor
    /// drains messages in long batches (the throughput benchmarks flatten out around this size),
    /// small enough that a stalled actor's backlog stays bounded — about 64 KiB of envelopes —
    /// and that backpressure reaches producers within roughly a thousand handler runs rather than
    /// after memory is exhausted. Blocks are allocated lazily, so a large capacity costs nothing
    /// until messages actually queue.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A bounded mailbox of `capacity` messages.
    pub const fn bounded(capacity: usize) -> Self {
        MailboxCapacity::Bounded(capacity)
    }

    /// An unbounded mailbox.
    pub const fn unbounded() -> Self {
        MailboxCapacity::Unbounded
    }

    /// The capacity, or `None` when unbounded.
    pub const fn capacity(&self) -> Option<usize> {
        match *self {
            MailboxCapacity::Bounded(n) => Some(if n == 0 { 1 } else { n }),
            MailboxCapacity::Unbounded => None,
        }
    }

    fn raw_capacity(&self) -> usize {
        self.capacity().unwrap_or(UNBOUNDED)
    }
}

impl Default for MailboxCapacity {
    fn default() -> Self {
        MailboxCapacity::Bounded(Self::DEFAULT_CAPACITY)
    }
}

/// Interrupt bit: kill the actor now (abnormal exit, supervisor decides about a restart).
pub(crate) const INTERRUPT_KILL: usize = 0b01;
/// Interrupt bit: terminate now without hooks or restart (shutdown deadline passed).
pub(crate) const INTERRUPT_ABORT: usize = 0b10;

/// What the consumer received.
pub(crate) enum Received<T, S> {
    /// Pending signals, oldest first. Always delivered before user messages.
    Signals(Drain<S>),
    /// The next user message.
    Message(T),
    /// An interrupt bit is set (see [`Mailbox::interrupts`]).
    Interrupted,
    /// The user lane is closed and everything in it has been taken.
    Drained,
}

/// The two lanes of one actor plus the wake-up machinery shared by them.
/// Messages taken between two looks for blocked senders.
pub(crate) const WAITER_CHECK_INTERVAL: usize = 64;

pub(crate) struct Mailbox<T, S> {
    /// The user lane; the mailbox's other fields sit in its middle (see `Queue`'s layout note).
    queue: Queue<T, Cold<S>>,
}

/// The mailbox's rarely written fields. Stored between the queue's producer and consumer words,
/// they keep those two hot groups on different cache lines at no memory cost.
pub(crate) struct Cold<S> {
    signals: SignalStack<S>,
    waker: WakerSlot,
    interrupts: AtomicUsize,
    /// Senders blocked on a full lane.
    send_waiters: AtomicUsize,
    room: Room,
}

impl<T, S> std::ops::Deref for Mailbox<T, S> {
    type Target = Cold<S>;

    fn deref(&self) -> &Cold<S> {
        &self.queue.middle
    }
}

impl<T, S> Mailbox<T, S> {
    pub(crate) fn new(config: MailboxCapacity) -> Self {
        let cold = Cold {
            signals: SignalStack::new(),
            waker: WakerSlot::new(),
            interrupts: AtomicUsize::new(0),
            send_waiters: AtomicUsize::new(0),
            room: Room::new(),
        };
        Self {
            queue: Queue::with_middle(config.raw_capacity(), cold),
        }
    }

    /// Messages waiting in the user lane.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// How many user messages the consumer has taken so far.
    pub(crate) fn taken(&self) -> usize {
        self.queue.head_index()
    }

    /// The bound of the user lane, `None` when unbounded.
    pub(crate) fn capacity(&self) -> Option<usize> {
        let capacity = self.queue.capacity();
        (capacity != UNBOUNDED).then_some(capacity)
    }

    /// Whether the user lane refuses new messages.
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Puts `value` into the user lane unless it is full or closed.
    pub(crate) fn try_send(&self, value: T) -> Result<(), PushError<T>> {
        if self.queue.push(value)? {
            self.waker.wake();
        }
        Ok(())
    }

    /// Pushes a signal; hands it back if the actor has terminated.
    pub(crate) fn send_signal(&self, signal: S) -> Result<(), S> {
        self.signals.push(signal)?;
        if self.queue.take_parked_for_signal() {
            self.waker.wake();
        }
        Ok(())
    }

    /// Sets interrupt bits and wakes the actor wherever it is waiting (even inside a handler).
    pub(crate) fn interrupt(&self, bits: usize) {
        // The waker's own RMWs order this against the consumer's register-then-check.
        self.interrupts.fetch_or(bits, AcqRel);
        self.waker.wake();
    }

    /// Currently set interrupt bits.
    pub(crate) fn interrupts(&self) -> usize {
        self.interrupts.load(Acquire)
    }

    /// Clears interrupt bits once the consumer has acted on them.
    pub(crate) fn clear_interrupts(&self, bits: usize) {
        self.interrupts.fetch_and(!bits, AcqRel);
    }

    /// Registers a sender blocked on a full lane; it must re-check for room afterwards.
    /// Sender half of the protocol whose consumer half is `after_take`.
    fn register_send_waiter(&self) {
        self.send_waiters.fetch_add(1, AcqRel);
    }

    #[cfg_attr(loom, allow(dead_code))]
    fn unregister_send_waiter(&self) {
        self.send_waiters.fetch_sub(1, AcqRel);
    }

    /// Consumer side of the sender-wait protocol: run every `WAITER_CHECK_INTERVAL` takes and
    /// before the consumer sleeps.
    ///
    /// Reads the waiter count with an RMW: either it is ordered after a sender's registration
    /// (and sees it), or that registration reads it and so synchronizes with it — the sender's
    /// re-check then sees every take made before this check. A sender that still finds the lane
    /// full therefore waits only while the lane holds more than it did at some check, so the
    /// consumer keeps taking and checking; its last check, before it sleeps on an empty lane,
    /// either sees the sender or lets the sender see the empty lane. Waiters are woken once the
    /// lane is down to the low-water mark (half the capacity).
    fn check_send_waiters(&self) {
        if self.send_waiters.fetch_add(0, AcqRel) != 0
            && self.queue.len() <= self.queue.capacity() / 2
        {
            self.room.notify_all();
        }
    }

    /// The cheap per-take look: a plain load of a counter that only blocked senders write, so
    /// it stays in the consumer's cache. It may miss a sender that registers concurrently; the
    /// synchronizing checks above catch that one.
    fn glance_at_send_waiters(&self) {
        if self.send_waiters.load(Relaxed) != 0 && self.queue.len() <= self.queue.capacity() / 2 {
            self.room.notify_all();
        }
    }

    /// Releases blocked senders if there is any room at all: called when the actor's handler
    /// starts waiting, since it may not come back for more messages for a long time.
    fn release_send_waiters_if_room(&self) {
        if self.send_waiters.fetch_add(0, AcqRel) != 0 && self.queue.len() < self.queue.capacity() {
            self.room.notify_all();
        }
    }
}

#[cfg(not(loom))]
impl<T, S> Mailbox<T, S> {
    /// Puts `value` into the user lane, waiting for room while it is full.
    /// Fails (handing the value back) only if the lane is closed.
    pub(crate) async fn send(&self, mut value: T) -> Result<(), T> {
        loop {
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(v)) => return Err(v),
                Err(PushError::Full(v)) => value = v,
            }
            let notify = self.room.get();
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered with the notifier before the re-check, so a take that happens after the
            // re-check cannot be missed.
            notified.as_mut().enable();
            self.register_send_waiter();
            let waiter = SendWaiterGuard(self);
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(v)) => return Err(v),
                Err(PushError::Full(v)) => value = v,
            }
            notified.await;
            drop(waiter);
        }
    }
}

#[cfg(loom)]
impl<T, S> Mailbox<T, S> {
    /// Loom build only: the waiting path yields instead of parking on `room` (tokio's `Notify`
    /// is not modelled by loom). The sender-wait protocol itself is model-checked in
    /// `loom_tests::blocked_sender_is_always_notified`.
    pub(crate) async fn send(&self, mut value: T) -> Result<(), T> {
        loop {
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(v)) => return Err(v),
                Err(PushError::Full(v)) => value = v,
            }
            loom::thread::yield_now();
        }
    }
}

#[cfg_attr(loom, allow(dead_code))]
struct SendWaiterGuard<'a, T, S>(&'a Mailbox<T, S>);

impl<T, S> Drop for SendWaiterGuard<'_, T, S> {
    fn drop(&mut self) {
        self.0.unregister_send_waiter();
    }
}

/// Wakes senders blocked on a full lane. The notifier is allocated on first use, so mailboxes
/// that never fill up pay one pointer for it.
struct Room {
    #[cfg(not(loom))]
    notify: std::sync::OnceLock<Box<tokio::sync::Notify>>,
    #[cfg(loom)]
    notified: AtomicUsize,
}

impl Room {
    fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            notify: std::sync::OnceLock::new(),
            #[cfg(loom)]
            notified: AtomicUsize::new(0),
        }
    }

    #[cfg(not(loom))]
    fn get(&self) -> &tokio::sync::Notify {
        self.notify.get_or_init(Default::default)
    }

    fn notify_all(&self) {
        #[cfg(not(loom))]
        if let Some(notify) = self.notify.get() {
            notify.notify_waiters();
        }
        #[cfg(loom)]
        self.notified.fetch_add(1, AcqRel);
    }
}

/// The single consumer's handle on an mailbox. Exactly one exists per mailbox (created by
/// [`Consumer::new`], owned by the actor's run loop), which is what makes the queue's
/// single-consumer methods safe to call from here. It holds the mailbox through its owner (the
/// actor cell), so the run loop needs no second reference to the cell.
pub(crate) struct Consumer<C: AsMailbox> {
    owner: Arc<C>,
    /// Takes since the last look for blocked senders.
    takes: u32,
    /// The lane is closed. Only the consumer closes it, so it can remember that instead of
    /// reading the producers' word each time it finds the lane empty.
    closed: bool,
}

/// Something that owns an mailbox (the actor cell).
pub(crate) trait AsMailbox: Send + Sync {
    type Item;
    type Signal;
    fn mailbox(&self) -> &Mailbox<Self::Item, Self::Signal>;

    /// A message stamped by its sender (`observe` module) was taken; `stamp` is when.
    fn on_mailbox_wait(&self, stamp: u64) {
        let _ = stamp;
    }
}

type Item<C> = <C as AsMailbox>::Item;
type Sig<C> = <C as AsMailbox>::Signal;

impl<C: AsMailbox> Consumer<C> {
    /// # Safety
    /// The caller guarantees that no other `Consumer` for the same mailbox ever exists.
    pub(crate) unsafe fn new(owner: Arc<C>) -> Self {
        Self {
            owner,
            takes: 0,
            closed: false,
        }
    }

    /// The mailbox's owner.
    pub(crate) fn owner(&self) -> &Arc<C> {
        &self.owner
    }

    /// Counts a take and looks for blocked senders (synchronizing every
    /// `WAITER_CHECK_INTERVAL` takes).
    fn took_one(&mut self) {
        self.takes += 1;
        if self.takes as usize == WAITER_CHECK_INTERVAL {
            self.takes = 0;
            self.mailbox().check_send_waiters();
        } else {
            self.mailbox().glance_at_send_waiters();
        }
    }

    fn mailbox(&self) -> &Mailbox<Item<C>, Sig<C>> {
        self.owner.mailbox()
    }

    /// Waits for the next signal batch, message or interrupt. Signals come first.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Received<Item<C>, Sig<C>>> {
        #[cfg(not(loom))]
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut parked = false;
        loop {
            let mailbox = self.owner.mailbox();
            let received = if mailbox.interrupts() != 0 {
                Some(Received::Interrupted)
            } else if mailbox.signals.is_pending() {
                Some(Received::Signals(mailbox.signals.take_all()))
            } else {
                // SAFETY: this `Consumer` is the mailbox's only consumer (see `Consumer::new`).
                match unsafe { mailbox.queue.pop_stamped() } {
                    Some((message, stamp)) => {
                        if stamp != 0 {
                            self.owner.on_mailbox_wait(stamp);
                        }
                        self.took_one();
                        Some(Received::Message(message))
                    }
                    // Closed with nothing claimed: no producer can add anything any more.
                    None if self.closed && mailbox.queue.len() == 0 => Some(Received::Drained),
                    None => None,
                }
            };
            let mailbox = self.owner.mailbox();
            if let Some(received) = received {
                if parked {
                    mailbox.queue.clear_parked();
                }
                #[cfg(not(loom))]
                coop.made_progress();
                return Poll::Ready(received);
            }
            if parked {
                return Poll::Pending;
            }
            // About to sleep on an empty lane: blocked senders must not sleep too, and the
            // blocks a backlog left behind go back to the allocator.
            self.takes = 0;
            mailbox.queue.trim_spares();
            mailbox.check_send_waiters();
            // Register, announce, then look once more: a producer that published after our
            // first look either shows up in the re-check or sees PARKED and wakes us.
            mailbox.waker.register(cx.waker());
            mailbox.queue.set_parked();
            parked = true;
        }
    }

    /// Waits for signals, or for an interrupt whose bit is in `interrupt_mask`; user messages
    /// stay queued (used while the actor has no running instance, e.g. waiting for its
    /// supervisor, or is winding down).
    pub(crate) fn poll_signals(
        &mut self,
        cx: &mut Context<'_>,
        interrupt_mask: usize,
    ) -> Poll<Received<Item<C>, Sig<C>>> {
        let mailbox = self.mailbox();
        let mut parked = false;
        loop {
            let received = if mailbox.interrupts() & interrupt_mask != 0 {
                Some(Received::Interrupted)
            } else if mailbox.signals.is_pending() {
                Some(Received::Signals(mailbox.signals.take_all()))
            } else {
                None
            };
            if let Some(received) = received {
                if parked {
                    mailbox.queue.clear_parked_for_signals();
                }
                return Poll::Ready(received);
            }
            if parked {
                return Poll::Pending;
            }
            mailbox.waker.register(cx.waker());
            mailbox.queue.set_parked_for_signals();
            parked = true;
        }
    }

    /// Called when user code (a handler or hook) returns `Pending`: registers the task so that
    /// an interrupt wakes it, and releases blocked senders if there is room, since the actor
    /// may be busy for a while.
    pub(crate) fn on_user_code_pending(&self, cx: &mut Context<'_>) {
        let mailbox = self.mailbox();
        mailbox.waker.register(cx.waker());
        mailbox.release_send_waiters_if_room();
    }

    /// Currently set interrupt bits.
    pub(crate) fn interrupts(&self) -> usize {
        self.mailbox().interrupts()
    }

    /// Takes the next user message if one is ready, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Item<C>> {
        self.take()
    }

    fn take(&mut self) -> Option<Item<C>> {
        // SAFETY: only consumer, see `Consumer::new`.
        let (message, stamp) = unsafe { self.mailbox().queue.pop_stamped() }?;
        if stamp != 0 {
            self.owner.on_mailbox_wait(stamp);
        }
        self.took_one();
        Some(message)
    }

    /// Closes the user lane: later sends fail with `Closed`, blocked senders are woken.
    /// Returns the number of messages still to be taken (some may still be in flight).
    pub(crate) fn close(&mut self) -> usize {
        self.closed = true;
        let mailbox = self.mailbox();
        // SAFETY: only consumer.
        let end = unsafe { mailbox.queue.close() };
        mailbox.room.notify_all();
        end - mailbox.queue.head_index()
    }

    /// After [`close`](Self::close): the next remaining message, waiting for senders that had
    /// claimed a slot before the close to finish writing. `Ready(None)` once all are taken.
    pub(crate) fn poll_remaining(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item<C>>> {
        let mut parked = false;
        loop {
            // Once closed, the tail index is frozen: the lane is drained when len() hits zero.
            if self.mailbox().queue.len() == 0 {
                if parked {
                    self.mailbox().queue.clear_parked();
                }
                return Poll::Ready(None);
            }
            if let Some(message) = self.take() {
                if parked {
                    self.mailbox().queue.clear_parked();
                }
                return Poll::Ready(Some(message));
            }
            if parked {
                return Poll::Pending;
            }
            let mailbox = self.mailbox();
            mailbox.waker.register(cx.waker());
            mailbox.queue.set_parked();
            parked = true;
        }
    }

    /// Closes the signal lane (the actor has terminated) and returns what was still pending.
    pub(crate) fn close_signals(&mut self) -> Drain<Sig<C>> {
        self.mailbox().signals.close()
    }
}

impl<T, S> std::fmt::Debug for Mailbox<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::future::poll_fn;

    struct Holder(Mailbox<u32, &'static str>);
    impl AsMailbox for Holder {
        type Item = u32;
        type Signal = &'static str;
        fn mailbox(&self) -> &Mailbox<u32, &'static str> {
            &self.0
        }
    }

    #[test]
    fn the_hot_words_of_an_inbox_are_a_cache_line_apart() {
        let mailbox = Mailbox::<u64, u64>::new(MailboxCapacity::default());
        assert!(mailbox.queue.hot_word_distance() >= 64);
    }

    fn mailbox(config: MailboxCapacity) -> (Arc<Holder>, Consumer<Holder>) {
        let holder = Arc::new(Holder(Mailbox::new(config)));
        // SAFETY: the test creates one consumer per mailbox.
        let consumer = unsafe { Consumer::new(holder.clone()) };
        (holder, consumer)
    }

    async fn recv(c: &mut Consumer<Holder>) -> Received<u32, &'static str> {
        poll_fn(|cx| c.poll_recv(cx)).await
    }

    #[tokio::test]
    async fn signals_overtake_a_full_user_lane() {
        let (h, mut c) = mailbox(MailboxCapacity::bounded(2));
        h.0.try_send(1).unwrap();
        h.0.try_send(2).unwrap();
        assert!(matches!(h.0.try_send(3), Err(PushError::Full(3))));
        h.0.send_signal("stop").unwrap();
        match recv(&mut c).await {
            Received::Signals(s) => assert_eq!(s.collect::<Vec<_>>(), vec!["stop"]),
            _ => panic!("signal lane must come first"),
        }
        assert!(matches!(recv(&mut c).await, Received::Message(1)));
    }

    #[tokio::test]
    async fn blocked_sender_resumes_when_the_actor_comes_back_for_more() {
        let (h, mut c) = mailbox(MailboxCapacity::bounded(1));
        h.0.try_send(1).unwrap();
        let h2 = h.clone();
        let sender = tokio::spawn(async move { h2.0.send(2).await });
        // The sender cannot finish while the lane is full.
        tokio::task::yield_now().await;
        assert!(!sender.is_finished());
        assert!(matches!(recv(&mut c).await, Received::Message(1)));
        // Looking for the next message (the lane is empty) releases the sender.
        assert!(matches!(recv(&mut c).await, Received::Message(2)));
        sender.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn saturated_sender_is_woken_once_per_half_mailbox() {
        let (h, mut c) = mailbox(MailboxCapacity::bounded(128));
        for i in 0..128 {
            h.0.try_send(i).unwrap();
        }
        let h2 = h.clone();
        let sender = tokio::spawn(async move { h2.0.send(999).await });
        tokio::task::yield_now().await;
        // 63 takes: above half, and before the periodic check.
        for i in 0..63 {
            assert!(matches!(c.try_recv(), Some(v) if v == i));
        }
        tokio::task::yield_now().await;
        assert!(
            !sender.is_finished(),
            "woken before the lane was down to half"
        );
        // The 64th take is a periodic check, and the lane is at half: the sender is woken.
        assert_eq!(c.try_recv(), Some(63));
        sender.await.unwrap().unwrap();
        assert_eq!(h.0.len(), 64 + 1);
    }

    #[tokio::test]
    async fn close_wakes_blocked_senders_with_their_message() {
        let (h, mut c) = mailbox(MailboxCapacity::bounded(1));
        h.0.try_send(1).unwrap();
        let h2 = h.clone();
        let sender = tokio::spawn(async move { h2.0.send(2).await });
        tokio::task::yield_now().await;
        assert_eq!(c.close(), 1);
        assert_eq!(sender.await.unwrap(), Err(2));
        assert_eq!(poll_fn(|cx| c.poll_remaining(cx)).await, Some(1));
        assert_eq!(poll_fn(|cx| c.poll_remaining(cx)).await, None);
    }

    #[tokio::test]
    async fn parked_consumer_is_woken_by_a_message_from_another_task() {
        let (h, mut c) = mailbox(MailboxCapacity::Unbounded);
        let task = tokio::spawn(async move {
            match recv(&mut c).await {
                Received::Message(v) => v,
                _ => 0,
            }
        });
        tokio::task::yield_now().await;
        h.0.try_send(42).unwrap();
        assert_eq!(task.await.unwrap(), 42);
    }
}

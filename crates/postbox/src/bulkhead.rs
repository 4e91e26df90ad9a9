//! Bulkhead admission: [`Bulkhead`], [`BulkheadFull`], [`BulkheadStats`]. Their docs state
//! the semantics.

use std::fmt;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A concurrency limit with a bounded FIFO waiting line, shared by a group of calls. Cheap to
/// clone; all clones are the same bulkhead.
///
/// It lets at most `max_in_flight` calls run at once. Up to `max_queued` more
/// wait their turn, first come first served; any call beyond that is **rejected at once** with
/// [`BulkheadFull`] instead of joining an ever longer queue. A slow dependency can then tie up
/// only its own bulkhead's slots: callers of everything else keep going, and callers of the
/// slow thing learn quickly that it is saturated (and can shed load, fall back or retry later)
/// rather than piling up. Where a [`Dispatcher`](crate::Dispatcher) compartmentalizes the
/// *threads* actors run on, a bulkhead compartmentalizes the *callers* of a group.
///
/// A call is any future or anything that turns into one (`IntoFuture`), so the same bulkhead
/// guards plain async functions and actors alike: pass an un-awaited
/// [`ActorRef::ask`](crate::ActorRef::ask) (or [`Recipient::ask`](crate::Recipient::ask), or a
/// `tell`) to [`run`](Bulkhead::run). An ask is sent only once it is admitted, so a rejected or
/// still queued ask never reaches the mailbox, and its timeout counts from admission. The
/// result of an admitted call is returned untouched: `bulkhead.run(actor.ask(msg)).await` is a
/// `Result<Result<Reply, AskError>, BulkheadFull>`, and `??` turns both into your error type.
///
/// * [`run`](Bulkhead::run) waits in line when all slots are taken and the line has room;
///   [`try_run`](Bulkhead::try_run) never waits: no free slot, rejected.
/// * The line is FIFO (a Tokio [`Semaphore`]): a freed slot goes to the call that has waited
///   longest, and newcomers cannot overtake waiting calls.
/// * Cancel-safe: dropping a queued call gives up its place in line, dropping a running call
///   frees its slot for the next in line. To bound the wait, wrap the call in
///   `tokio::time::timeout`; a timed-out wait leaves the line.
/// * [`stats`](Bulkhead::stats) reads the counters for metrics (in flight, queued, admitted,
///   rejected) lock-free.
///
/// ```
/// use postbox::prelude::*;
/// use postbox::Bulkhead;
///
/// struct Lookup;
/// impl Actor for Lookup {}
///
/// struct Find(u32);
/// impl Message for Find { type Reply = u32; }
/// impl Handler<Find> for Lookup {
///     async fn handle(&mut self, msg: Find, _: &mut Context<Self>) -> u32 { msg.0 * 2 }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let system = ActorSystem::new();
/// let lookup = system.spawn(|| Lookup)?;
/// let bulkhead = Bulkhead::new("lookup", 8, 32);
///
/// let found = bulkhead.run(lookup.ask(Find(21))).await??;
/// assert_eq!(found, 42);
/// let sum = bulkhead.try_run(async { 1 + 1 }).await?;
/// assert_eq!(sum, 2);
///
/// let stats = bulkhead.stats();
/// assert_eq!((stats.admitted, stats.rejected, stats.in_flight), (2, 0, 0));
/// # system.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Bulkhead {
    admission: Arc<Admission>,
}

/// A bulkhead's slots, the length of its waiting line and its counters, shared by its clones.
struct Admission {
    name: Arc<str>,
    max_in_flight: usize,
    max_queued: usize,
    /// One permit per call slot.
    slots: Semaphore,
    in_flight: AtomicUsize,
    queued: AtomicUsize,
    admitted: AtomicU64,
    rejected: AtomicU64,
}

/// Counters of a [`Bulkhead`], read with [`Bulkhead::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BulkheadStats {
    /// Calls running now.
    pub in_flight: usize,
    /// Calls waiting for a slot now.
    pub queued: usize,
    /// Calls admitted so far (including those that queued first).
    pub admitted: u64,
    /// Calls rejected so far.
    pub rejected: u64,
}

/// A call was rejected: every slot of the bulkhead was taken and its waiting line was full (or,
/// for [`try_run`](Bulkhead::try_run), every slot was taken). The call was never started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadFull {
    /// The bulkhead's name.
    pub name: Arc<str>,
    /// Calls running when this one was rejected.
    pub in_flight: usize,
    /// Calls waiting when this one was rejected.
    pub queued: usize,
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead {:?} is full ({} calls in flight, {} queued); the call was not started",
            self.name, self.in_flight, self.queued
        )
    }
}

impl std::error::Error for BulkheadFull {}

impl Bulkhead {
    /// A bulkhead named `name` (shown in errors) that runs at most `max_in_flight` calls at
    /// once and lets at most `max_queued` more wait. `max_in_flight` is at least 1 (0 is taken
    /// as 1); `max_queued` may be 0, in which case [`run`](Self::run) behaves like
    /// [`try_run`](Self::try_run).
    pub fn new(name: impl Into<String>, max_in_flight: usize, max_queued: usize) -> Self {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            admission: Arc::new(Admission {
                name: Arc::from(name.into()),
                max_in_flight,
                max_queued,
                slots: Semaphore::new(max_in_flight),
                in_flight: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.admission.name
    }

    /// How many calls may run at once.
    pub fn max_in_flight(&self) -> usize {
        self.admission.max_in_flight
    }

    /// How many calls may wait for a slot.
    pub fn max_queued(&self) -> usize {
        self.admission.max_queued
    }

    /// The counters, for metrics. Each is read atomically; together they are a close, not a
    /// simultaneous, snapshot.
    pub fn stats(&self) -> BulkheadStats {
        let s = &self.admission;
        BulkheadStats {
            in_flight: s.in_flight.load(Relaxed),
            queued: s.queued.load(Relaxed),
            admitted: s.admitted.load(Relaxed),
            rejected: s.rejected.load(Relaxed),
        }
    }

    /// Runs `call` once a slot is free. Waits in line (FIFO) if every slot is taken and the
    /// line has room; otherwise rejects at once with [`BulkheadFull`], without starting
    /// `call`. `call` is turned into its future only when admitted (an ask is sent then).
    ///
    /// Dropping the returned future leaves the line, or frees the slot, at once.
    pub async fn run<F: IntoFuture>(&self, call: F) -> Result<F::Output, BulkheadFull> {
        let s = &*self.admission;
        let _slot = match s.slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                let waiting = s.join_line()?;
                let slot = s.slots.acquire().await;
                drop(waiting);
                // The semaphore is never closed; treat the impossible as a rejection.
                slot.map_err(|_| s.reject())?
            }
        };
        // Declared after the slot, so it is dropped (and `in_flight` decremented) before the
        // slot goes to the next caller.
        let _running = s.admit();
        Ok(call.into_future().await)
    }

    /// Runs `call` if a slot is free right now; otherwise rejects at once with
    /// [`BulkheadFull`], without starting `call` and without queueing.
    ///
    /// Dropping the returned future frees the slot at once.
    pub async fn try_run<F: IntoFuture>(&self, call: F) -> Result<F::Output, BulkheadFull> {
        let s = &*self.admission;
        let _slot = s.slots.try_acquire().map_err(|_| s.reject())?;
        let _running = s.admit();
        Ok(call.into_future().await)
    }
}

impl Admission {
    /// Takes a place in line, if there is room.
    fn join_line(&self) -> Result<Waiting<'_>, BulkheadFull> {
        self.queued
            .fetch_update(AcqRel, Acquire, |queued| {
                (queued < self.max_queued).then_some(queued + 1)
            })
            .map(|_| Waiting(self))
            .map_err(|_| self.reject())
    }

    fn reject(&self) -> BulkheadFull {
        self.rejected.fetch_add(1, Relaxed);
        BulkheadFull {
            name: self.name.clone(),
            in_flight: self.in_flight.load(Relaxed),
            queued: self.queued.load(Relaxed),
        }
    }

    fn admit(&self) -> Running<'_> {
        self.admitted.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        Running(self)
    }
}

/// A place in line; given up when dropped.
struct Waiting<'a>(&'a Admission);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, AcqRel);
    }
}

/// A running call; counted until dropped.
struct Running<'a>(&'a Admission);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.admission.name)
            .field("max_in_flight", &self.admission.max_in_flight)
            .field("max_queued", &self.admission.max_queued)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll, Waker};
    use tokio::sync::oneshot;

    /// Polls once, deterministically, with a waker that does nothing.
    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn stats(in_flight: usize, queued: usize, admitted: u64, rejected: u64) -> BulkheadStats {
        BulkheadStats {
            in_flight,
            queued,
            admitted,
            rejected,
        }
    }

    #[test]
    fn admits_up_to_the_limit_queues_up_to_the_line_then_rejects() {
        let bulkhead = Bulkhead::new("db", 2, 1);
        let (tx1, rx1) = oneshot::channel::<u32>();
        let (tx2, rx2) = oneshot::channel::<u32>();
        let (tx3, rx3) = oneshot::channel::<u32>();
        let mut first = pin!(bulkhead.run(rx1));
        let mut second = pin!(bulkhead.run(rx2));
        let mut third = pin!(bulkhead.run(rx3));
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        assert!(poll_once(third.as_mut()).is_pending());
        assert_eq!(bulkhead.stats(), stats(2, 1, 2, 0));

        let mut fourth = pin!(bulkhead.run(async { 4 }));
        let Poll::Ready(Err(full)) = poll_once(fourth.as_mut()) else {
            panic!("the fourth call must be rejected at once");
        };
        assert_eq!(
            full,
            BulkheadFull {
                name: Arc::from("db"),
                in_flight: 2,
                queued: 1
            }
        );
        assert_eq!(
            full.to_string(),
            "bulkhead \"db\" is full (2 calls in flight, 1 queued); the call was not started"
        );
        assert_eq!(bulkhead.stats(), stats(2, 1, 2, 1));

        // The first call finishes: its slot goes to the queued one.
        tx1.send(1).expect("first waits");
        assert!(matches!(poll_once(first.as_mut()), Poll::Ready(Ok(Ok(1)))));
        tx3.send(3).expect("third waits");
        assert!(matches!(poll_once(third.as_mut()), Poll::Ready(Ok(Ok(3)))));
        tx2.send(2).expect("second waits");
        assert!(matches!(poll_once(second.as_mut()), Poll::Ready(Ok(Ok(2)))));
        assert_eq!(bulkhead.stats(), stats(0, 0, 3, 1));
    }

    #[test]
    fn the_line_is_first_come_first_served() {
        let bulkhead = Bulkhead::new("fifo", 1, 3);
        let (tx, rx) = oneshot::channel::<()>();
        let mut running = pin!(bulkhead.run(rx));
        assert!(poll_once(running.as_mut()).is_pending());
        let mut a = pin!(bulkhead.run(async { 'a' }));
        let mut b = pin!(bulkhead.run(async { 'b' }));
        let mut c = pin!(bulkhead.run(async { 'c' }));
        assert!(poll_once(a.as_mut()).is_pending());
        assert!(poll_once(b.as_mut()).is_pending());
        assert!(poll_once(c.as_mut()).is_pending());
        tx.send(()).expect("waits");
        assert!(poll_once(running.as_mut()).is_ready());
        // Only the head of the line got the slot, even when the others are polled first.
        assert!(poll_once(c.as_mut()).is_pending());
        assert!(poll_once(b.as_mut()).is_pending());
        assert!(matches!(poll_once(a.as_mut()), Poll::Ready(Ok('a'))));
        assert!(poll_once(c.as_mut()).is_pending());
        assert!(matches!(poll_once(b.as_mut()), Poll::Ready(Ok('b'))));
        assert!(matches!(poll_once(c.as_mut()), Poll::Ready(Ok('c'))));
        // With the line empty, a newcomer gets the free slot at once.
        assert!(matches!(
            poll_once(pin!(bulkhead.try_run(async { 'd' }))),
            Poll::Ready(Ok('d'))
        ));
        assert_eq!(bulkhead.stats(), stats(0, 0, 5, 0));
    }

    #[test]
    fn a_newcomer_cannot_overtake_the_line() {
        let bulkhead = Bulkhead::new("no-overtaking", 1, 1);
        let (tx, rx) = oneshot::channel::<()>();
        let mut running = pin!(bulkhead.run(rx));
        assert!(poll_once(running.as_mut()).is_pending());
        let mut waiting = pin!(bulkhead.run(async { "waited" }));
        assert!(poll_once(waiting.as_mut()).is_pending());
        tx.send(()).expect("waits");
        assert!(poll_once(running.as_mut()).is_ready());
        // The freed slot is handed to the waiting call, not to a `try_run` arriving now.
        let mut newcomer = pin!(bulkhead.try_run(async { "newcomer" }));
        assert!(matches!(poll_once(newcomer.as_mut()), Poll::Ready(Err(_))));
        assert!(matches!(
            poll_once(waiting.as_mut()),
            Poll::Ready(Ok("waited"))
        ));
    }

    #[test]
    fn try_run_rejects_instead_of_queueing() {
        let bulkhead = Bulkhead::new("eager", 1, 10);
        let (tx, rx) = oneshot::channel::<()>();
        let mut running = pin!(bulkhead.try_run(rx));
        assert!(poll_once(running.as_mut()).is_pending());
        let mut second = pin!(bulkhead.try_run(async {}));
        let Poll::Ready(Err(full)) = poll_once(second.as_mut()) else {
            panic!("try_run must not wait");
        };
        assert_eq!((full.in_flight, full.queued), (1, 0));
        assert_eq!(bulkhead.stats(), stats(1, 0, 1, 1));
        tx.send(()).expect("waits");
        assert!(poll_once(running.as_mut()).is_ready());
        assert_eq!(bulkhead.stats(), stats(0, 0, 1, 1));
    }

    #[test]
    fn dropping_a_queued_call_gives_up_its_place() {
        let bulkhead = Bulkhead::new("leave", 1, 1);
        let (tx, rx) = oneshot::channel::<()>();
        let mut running = pin!(bulkhead.run(rx));
        assert!(poll_once(running.as_mut()).is_pending());
        let mut queued = Box::pin(bulkhead.run(async { "never" }));
        assert!(poll_once(queued.as_mut()).is_pending());
        assert_eq!(bulkhead.stats().queued, 1);
        // The line is full ...
        assert!(matches!(
            poll_once(pin!(bulkhead.run(async {}))),
            Poll::Ready(Err(_))
        ));
        drop(queued);
        // ... until the queued call is dropped: its place is free again.
        assert_eq!(bulkhead.stats().queued, 0);
        let mut next = pin!(bulkhead.run(async { "next" }));
        assert!(poll_once(next.as_mut()).is_pending());
        tx.send(()).expect("waits");
        assert!(poll_once(running.as_mut()).is_ready());
        assert!(matches!(poll_once(next.as_mut()), Poll::Ready(Ok("next"))));
        assert_eq!(bulkhead.stats(), stats(0, 0, 2, 1));
    }

    #[test]
    fn dropping_a_running_call_frees_its_slot() {
        let bulkhead = Bulkhead::new("abandon", 1, 1);
        let (_tx, rx) = oneshot::channel::<()>();
        let mut running = Box::pin(bulkhead.run(rx));
        assert!(poll_once(running.as_mut()).is_pending());
        let mut waiting = pin!(bulkhead.run(async { "admitted" }));
        assert!(poll_once(waiting.as_mut()).is_pending());
        assert_eq!(bulkhead.stats(), stats(1, 1, 1, 0));
        drop(running);
        assert_eq!(bulkhead.stats(), stats(0, 1, 1, 0));
        assert!(matches!(
            poll_once(waiting.as_mut()),
            Poll::Ready(Ok("admitted"))
        ));
        assert_eq!(bulkhead.stats(), stats(0, 0, 2, 0));
    }

    #[test]
    fn a_rejected_call_is_never_started() {
        let bulkhead = Bulkhead::new("untouched", 1, 0);
        let (_tx, rx) = oneshot::channel::<()>();
        let mut running = pin!(bulkhead.run(rx));
        assert!(poll_once(running.as_mut()).is_pending());
        let started = std::cell::Cell::new(false);
        let rejected = poll_once(pin!(bulkhead.run(async { started.set(true) })));
        assert!(matches!(rejected, Poll::Ready(Err(_))));
        assert!(!started.get());
    }

    #[test]
    fn zero_slots_means_one() {
        let bulkhead = Bulkhead::new("tiny", 0, 0);
        assert_eq!(bulkhead.max_in_flight(), 1);
        assert!(matches!(
            poll_once(pin!(bulkhead.run(async { 1 }))),
            Poll::Ready(Ok(1))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_wait_leaves_the_line() {
        let bulkhead = Bulkhead::new("patience", 1, 1);
        let (tx, rx) = oneshot::channel::<()>();
        let holder = tokio::spawn({
            let bulkhead = bulkhead.clone();
            async move { bulkhead.run(rx).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.stats().in_flight, 1);
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            bulkhead.run(async { "late" }),
        )
        .await;
        assert!(waited.is_err(), "the wait must time out");
        assert_eq!(bulkhead.stats(), stats(1, 0, 1, 0));
        tx.send(()).expect("holder waits");
        holder
            .await
            .expect("task")
            .expect("admitted")
            .expect("sent");
        assert_eq!(bulkhead.stats(), stats(0, 0, 1, 0));
    }
}

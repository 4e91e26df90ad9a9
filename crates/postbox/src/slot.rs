//! A reusable heap slot for the future of the handler being run.
//!
//! Each message type's handler returns its own future type, and the actor's run loop only knows
//! the actor type, so the future must be type-erased. Boxing it would cost an allocation and a
//! free per message. Instead every actor keeps one [`HandlerSlot`]: a heap buffer that grows to
//! the largest handler future seen and is reused for every message, so the steady state does
//! not allocate. It is allocated on the first message, so idle actors pay one pointer for it.
//!
//! # Soundness
//!
//! [`HandlerSlot::start`] moves a future of type `F: 'a` into the buffer and returns a
//! [`RunningHandler<'a>`] guard that mutably borrows the slot for `'a`. The guard is the only
//! way to reach the future:
//!
//! * it polls the future in place and never moves it, so pinning holds;
//! * its `Drop` drops the future in place, while `'a` (everything the future borrows) is still
//!   alive;
//! * if a guard is leaked (`mem::forget`), the slot still looks occupied; the next `start` then
//!   abandons that buffer instead of reusing it, because reusing the memory of a pinned value
//!   that was never dropped would break the pinning guarantee. Leaking is safe; the slot never
//!   runs the destructor of a value whose borrows may have expired.
//!
//! ## Parking
//!
//! The runner polls a handler once inside its synchronous message loop. If the handler is not
//! done, the guard is [`park`](RunningHandler::park)ed: the future stays where it is (pinned,
//! slot occupied) and a [`ParkedHandler`] token remembers how to poll and drop it. Later,
//! [`ParkedHandler::resume`] rebuilds a guard for the same future. `resume` is `unsafe`: the
//! future still holds the borrows it was started with (the actor and its context), and the
//! caller promises that those are alive, unmoved and not otherwise accessed until the resumed
//! guard is dropped — which is how the runner uses it (it only awaits the handler in between).
//! A token that is dropped without being resumed leaks the future (never drops it, and the slot
//! then abandons the buffer), which is safe.

use std::alloc::{self, Layout};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Reusable storage for one type-erased `Future<Output = ()> + Send`. Two words: every idle
/// actor carries one.
pub(crate) struct HandlerSlot {
    ptr: NonNull<u8>,
    /// Size of the current allocation; 0 means "nothing allocated".
    size: u32,
    /// Alignment of the current allocation, as a power of two.
    align_log2: u8,
    /// A future lives in the buffer (set by `start`, cleared by the guard's drop).
    occupied: bool,
}

// SAFETY: the slot only ever holds futures that are `Send` (enforced by `start`), and it owns
// its buffer exclusively.
unsafe impl Send for HandlerSlot {}

impl HandlerSlot {
    pub(crate) const fn new() -> Self {
        Self {
            ptr: NonNull::dangling(),
            size: 0,
            align_log2: 0,
            occupied: false,
        }
    }

    /// Bytes currently reserved (for memory accounting and tests).
    pub(crate) fn capacity(&self) -> usize {
        self.size as usize
    }

    fn align(&self) -> usize {
        1 << self.align_log2
    }

    /// Moves `future` into the slot and returns the guard that runs it.
    pub(crate) fn start<'a, F>(&'a mut self, future: F) -> RunningHandler<'a>
    where
        F: Future<Output = ()> + Send + 'a,
    {
        let needed = Layout::new::<F>();
        if self.occupied {
            // A guard was leaked: its future may still be pinned in the buffer, so the buffer
            // must never be reused. Abandon it (leak) and start afresh.
            self.ptr = NonNull::dangling();
            self.size = 0;
            self.align_log2 = 0;
            self.occupied = false;
        }
        if needed.size() > self.capacity() || needed.align() > self.align() {
            self.reallocate(needed);
        }
        let place = if needed.size() == 0 {
            // Zero-sized futures need no storage, only an aligned, non-null address.
            NonNull::<F>::dangling().as_ptr().cast::<u8>()
        } else {
            self.ptr.as_ptr()
        };
        // SAFETY: `place` is valid for writes of `F` (size and alignment checked above, or `F`
        // is zero-sized and `place` is aligned) and holds no live value (not occupied).
        unsafe { place.cast::<F>().write(future) };
        self.occupied = true;
        RunningHandler {
            place,
            poll: poll_erased::<F>,
            drop: drop_erased::<F>,
            slot: self,
            _borrows: PhantomData,
        }
    }

    fn reallocate(&mut self, needed: Layout) {
        self.release();
        if needed.size() == 0 {
            return;
        }
        // Round up a little so that several handler futures of similar size share one buffer.
        let size = needed.size().next_multiple_of(64);
        let align = needed.align().max(16);
        let (Ok(layout), Ok(stored_size)) =
            (Layout::from_size_align(size, align), u32::try_from(size))
        else {
            // A future of 4 GiB or more: no allocator would provide it either.
            alloc::handle_alloc_error(needed)
        };
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        self.ptr = ptr;
        self.size = stored_size;
        // `align` is a power of two, so this is exact.
        self.align_log2 = align.trailing_zeros() as u8;
    }

    fn release(&mut self) {
        if self.size != 0 {
            // SAFETY: allocated by `reallocate` with exactly this size and alignment (both
            // validated there) and not yet freed; the slot is unoccupied whenever this is called
            // (callers check), so no value is lost.
            unsafe {
                let layout = Layout::from_size_align_unchecked(self.capacity(), self.align());
                alloc::dealloc(self.ptr.as_ptr(), layout);
            }
        }
        self.ptr = NonNull::dangling();
        self.size = 0;
        self.align_log2 = 0;
    }
}

impl Drop for HandlerSlot {
    fn drop(&mut self) {
        if !self.occupied {
            self.release();
        }
        // Occupied means a guard was leaked: keep the buffer (leak it) for the reason above.
    }
}

impl std::fmt::Debug for HandlerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSlot")
            .field("capacity", &self.capacity())
            .field("occupied", &self.occupied)
            .finish()
    }
}

/// SAFETY (callers): `place` holds a live, pinned `F`.
unsafe fn poll_erased<F: Future<Output = ()>>(place: *mut u8, cx: &mut Context<'_>) -> Poll<()> {
    // SAFETY: per the contract; the value is never moved while the guard exists.
    unsafe { Pin::new_unchecked(&mut *place.cast::<F>()) }.poll(cx)
}

/// SAFETY (callers): `place` holds a live `F` that is dropped exactly once, here.
unsafe fn drop_erased<F>(place: *mut u8) {
    // SAFETY: per the contract.
    unsafe { std::ptr::drop_in_place(place.cast::<F>()) }
}

/// The handler future currently in a [`HandlerSlot`]. Polling it polls the future; dropping
/// it drops the future. Four words, because the actor's task holds it while a handler runs.
pub(crate) struct RunningHandler<'a> {
    place: *mut u8,
    poll: unsafe fn(*mut u8, &mut Context<'_>) -> Poll<()>,
    drop: unsafe fn(*mut u8),
    slot: &'a mut HandlerSlot,
    /// The future borrows data for `'a`; this guard must not outlive it.
    _borrows: PhantomData<&'a mut ()>,
}

// SAFETY: the erased future is `Send` (required by `HandlerSlot::start`); the guard only adds a
// `&mut HandlerSlot`, which is `Send`.
unsafe impl Send for RunningHandler<'_> {}

impl Future for RunningHandler<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // SAFETY: `place` holds the live future written by `start` (the slot stays occupied
        // until this guard is dropped) and it is never moved.
        unsafe { (this.poll)(this.place, cx) }
    }
}

impl RunningHandler<'_> {
    /// Leaves the future in its slot, unfinished and pinned, for [`ParkedHandler::resume`].
    pub(crate) fn park(self) -> ParkedHandler {
        let this = std::mem::ManuallyDrop::new(self);
        ParkedHandler {
            place: this.place,
            poll: this.poll,
            drop: this.drop,
        }
    }
}

/// A handler future left unfinished in its slot (see the module docs on parking).
pub(crate) struct ParkedHandler {
    place: *mut u8,
    poll: unsafe fn(*mut u8, &mut Context<'_>) -> Poll<()>,
    drop: unsafe fn(*mut u8),
}

// SAFETY: the parked future is `Send` (required by `HandlerSlot::start`); the token holds only
// its address and two function pointers.
unsafe impl Send for ParkedHandler {}

impl ParkedHandler {
    /// A guard for the parked future again.
    ///
    /// # Safety
    /// `slot` is the slot this handler was parked in, and no other handler was started in it
    /// since. Everything the future borrowed when it was started is still alive, has not moved,
    /// and is not accessed by the caller until the returned guard is dropped.
    pub(crate) unsafe fn resume(self, slot: &mut HandlerSlot) -> RunningHandler<'_> {
        debug_assert!(
            slot.occupied,
            "resuming into a slot that holds no parked future"
        );
        RunningHandler {
            place: self.place,
            poll: self.poll,
            drop: self.drop,
            slot,
            _borrows: PhantomData,
        }
    }
}

impl std::fmt::Debug for ParkedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedHandler").finish_non_exhaustive()
    }
}

impl Drop for RunningHandler<'_> {
    fn drop(&mut self) {
        // Mark the slot free first: if the future's destructor panics, the slot must not try to
        // drop it again (a partially dropped value is gone either way).
        self.slot.occupied = false;
        // SAFETY: the future is live and this is the only place that drops it.
        unsafe { (self.drop)(self.place) }
    }
}

#[cfg(test)]
mod tests {
    //! These tests are the slot's Miri suite:
    //! `cargo +nightly miri test -p postbox --lib slot::` (see ARCHITECTURE.md).
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Waker;

    fn poll_once(f: &mut RunningHandler<'_>) -> Poll<()> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(f).poll(&mut cx)
    }

    struct DropCount(Arc<AtomicUsize>);
    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn runs_futures_of_growing_sizes_and_reuses_the_buffer() {
        let mut slot = HandlerSlot::new();
        let mut state = 0u64;
        {
            let s = &mut state;
            let mut running = slot.start(async move { *s += 1 });
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        let first_capacity = slot.capacity();
        assert!(first_capacity > 0);
        {
            let big = [7u8; 300];
            let s = &mut state;
            let mut running = slot.start(async move { *s += u64::from(big[299]) });
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        assert!(slot.capacity() >= 300);
        let grown = slot.capacity();
        {
            let s = &mut state;
            let mut running = slot.start(async move { *s += 1 });
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        assert_eq!(slot.capacity(), grown, "a smaller future reuses the buffer");
        assert_eq!(state, 9);
    }

    #[test]
    fn pending_future_is_dropped_in_place_with_its_captures() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = HandlerSlot::new();
        {
            let guard = DropCount(drops.clone());
            let mut running = slot.start(async move {
                let _g = guard;
                std::future::pending::<()>().await
            });
            assert_eq!(poll_once(&mut running), Poll::Pending);
            assert_eq!(drops.load(Ordering::SeqCst), 0);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_poll_leaves_the_slot_usable() {
        let mut slot = HandlerSlot::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut running = slot.start(async {
                panic!("handler failed");
            });
            let _ = poll_once(&mut running);
        }));
        assert!(result.is_err());
        let mut ran = false;
        {
            let r = &mut ran;
            let mut running = slot.start(async move { *r = true });
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        assert!(ran);
    }

    #[test]
    fn a_leaked_guard_makes_the_next_start_use_fresh_memory() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = HandlerSlot::new();
        let guard = DropCount(drops.clone());
        let running = slot.start(async move {
            let _g = guard;
        });
        std::mem::forget(running);
        let mut ran = false;
        {
            let r = &mut ran;
            let mut running = slot.start(async move { *r = true });
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        assert!(ran);
        // The forgotten future was never dropped (leaking is allowed), and never dropped twice.
        assert_eq!(drops.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_parked_handler_resumes_with_its_borrows_and_finishes() {
        let mut slot = HandlerSlot::new();
        let mut total = 0u32;
        let gate = std::sync::Arc::new(AtomicUsize::new(0));
        let parked = {
            let total = &mut total;
            let gate = gate.clone();
            let mut running = slot.start(std::future::poll_fn(move |_| {
                *total += 1;
                if gate.load(Ordering::SeqCst) == 0 {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }));
            assert_eq!(poll_once(&mut running), Poll::Pending);
            running.park()
        };
        // Still pending after a resume: park again.
        // SAFETY: same slot, nothing started since, `total` is alive and untouched meanwhile.
        let parked = {
            let mut running = unsafe { parked.resume(&mut slot) };
            assert_eq!(poll_once(&mut running), Poll::Pending);
            running.park()
        };
        gate.store(1, Ordering::SeqCst);
        {
            // SAFETY: as above.
            let mut running = unsafe { parked.resume(&mut slot) };
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        assert_eq!(total, 3);
        // The slot is free again and reusable.
        let mut ran = false;
        {
            let r = &mut ran;
            let mut running = slot.start(async move { *r = true });
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        assert!(ran);
    }

    #[test]
    fn a_parked_handler_that_is_never_resumed_is_leaked_not_dropped() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = HandlerSlot::new();
        let guard = DropCount(drops.clone());
        // The token is never resumed; it has no destructor, so the future stays in the slot.
        let _abandoned = {
            let mut running = slot.start(async move {
                let _g = guard;
                std::future::pending::<()>().await
            });
            assert_eq!(poll_once(&mut running), Poll::Pending);
            running.park()
        };
        drop(slot);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn zero_sized_and_over_aligned_futures() {
        #[repr(align(64))]
        struct Aligned(u8);
        struct ZeroSized;
        impl Future for ZeroSized {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                Poll::Ready(())
            }
        }
        let mut slot = HandlerSlot::new();
        {
            let mut running = slot.start(ZeroSized);
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        let value = Aligned(3);
        let mut seen = 0;
        {
            let s = &mut seen;
            let mut running = slot.start(async move {
                let v = value;
                *s = v.0;
            });
            assert_eq!(poll_once(&mut running), Poll::Ready(()));
        }
        assert_eq!(seen, 3);
    }
}

//! Synchronization primitives used by the lock-free parts of the runtime.
//!
//! Under `--cfg loom` these resolve to loom's model-checked versions so the mailbox queue, the
//! signal lane and the park/wake protocol can be exhaustively tested (see `mailbox::loom_tests`).
//! Everything else in the crate uses `std`/`tokio` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// `UnsafeCell` with loom's closure-based access API, so the same code compiles under both.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// The waker slot of a mailbox: one consumer registers, any thread wakes.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct WakerSlot(loom::future::AtomicWaker);

#[cfg(loom)]
impl WakerSlot {
    pub(crate) fn new() -> Self {
        Self(loom::future::AtomicWaker::new())
    }
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }
    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct WakerSlot(atomic_waker::AtomicWaker);

#[cfg(not(loom))]
impl WakerSlot {
    pub(crate) const fn new() -> Self {
        Self(atomic_waker::AtomicWaker::new())
    }
    #[inline]
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register(waker);
    }
    #[inline]
    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

//! The lock-free multi-producer, single-consumer queue behind every mailbox.
//!
//! Values live in a singly linked list of fixed-size blocks. A producer claims a global index
//! with one compare-and-swap on the `tail` word, finds (or appends) the block holding that index,
//! writes the value into its slot and sets the slot's ready bit. The single consumer walks the
//! list in index order, so values claimed one after another by the same producer come out in
//! that order (per-sender FIFO).
//!
//! The `tail` word packs three things so that the producer's fast path touches a single atomic
//! it has to write anyway:
//!
//! ```text
//!   tail = (claimed index << 3) | PARKED_FOR_SIGNALS | PARKED | CLOSED
//! ```
//!
//! * `CLOSED`: set once by the consumer; every later claim fails with [`PushError::Closed`].
//! * `PARKED`: set by the consumer (a read-modify-write) right before it sleeps, after which it
//!   looks for work once more. A producer, after publishing its value, clears `PARKED` with a
//!   read-modify-write too and wakes the consumer if it was set. Both sides use RMWs on the same
//!   word, which are totally ordered: if the producer's comes first, the consumer's RMW reads it
//!   and so synchronizes with it, and the re-check sees the value; if the consumer's comes
//!   first, the producer sees `PARKED`. No wake-up is lost, and only acquire/release ordering
//!   is needed (which is also what loom can check exhaustively).
//! * `PARKED_FOR_SIGNALS`: the same, for a consumer that waits for signals only (a suspended
//!   actor): producers of user messages leave it alone, signal producers clear and wake.
//!
//! Bounded capacity is enforced at claim time against the consumer's published `head`; producers
//! keep a shared, possibly stale copy (`cached_head`) so that they rarely read the consumer's
//! cache line. A stale copy only ever under-estimates free room, so the bound is never exceeded.
//!
//! # Memory reclamation
//!
//! Blocks are allocated lazily (an idle actor owns none) and reclaimed by the consumer. The
//! hazard is a producer that loaded `tail_block` long ago and is still walking the list from
//! there. Three rules make reclamation safe:
//!
//! 1. `tail_block` only moves past a block whose slots are *all written*. A producer whose slot
//!    is still unwritten therefore always finds `tail_block` at or before its own block.
//! 2. The producer that moves `tail_block` past a block *releases* it: it then reads the tail
//!    index (`observed_tail`) and sets the block's `RELEASED` bit. Any producer that may still
//!    hold a pointer to that block loaded `tail_block` before the move, hence claimed its index
//!    before it, hence holds an index below `observed_tail`. The releaser reads the tail with an
//!    RMW: either it comes after that producer's claim in the tail word's order (and so counts
//!    it), or the producer's claim reads it, synchronizes with the release, and the producer
//!    then finds `tail_block` already past the block.
//! 3. The consumer reclaims a released block only once its head has passed `observed_tail`:
//!    every producer that could still reference the block has by then written its value, which
//!    it does only after it has finished walking.
//!
//! Up to [`SPARES`] reclaimed blocks are kept and reused by producers that need a block, so a
//! steady stream of messages does not allocate. A queue that runs deeper reclaims blocks in
//! bursts (the consumer takes a backlog in one go, then producers fill it again), more than
//! those slots hold: the first time a reclaimed block finds them all taken, the queue gets a
//! [`SparePool`] of [`POOL`] more, so a busy actor's backlog reuses its blocks instead of
//! allocating one per [`BLOCK_CAP`] messages (and freeing it on another thread, which the
//! system allocator handles slowly). The pool is emptied whenever the consumer runs out of
//! work and goes to sleep ([`Queue::trim_spares`]), so an idle actor keeps at most the
//! inline spares. Spares change hands only by swapping a whole pointer in or out of a slot,
//! so there is no ABA hazard; the pool itself, once installed, lives as long as the queue.

use crate::sync::{AtomicPtr, AtomicUsize, Ordering::*, UnsafeCell};
use std::mem::MaybeUninit;
use std::ptr;

/// Slots per block. 16 keeps an active-but-idle mailbox at one small block while amortizing the
/// block hop to one per 16 messages. Loom runs with 2 so small tests cross block boundaries.
#[cfg(not(loom))]
pub(crate) const BLOCK_CAP: usize = 16;
#[cfg(loom)]
pub(crate) const BLOCK_CAP: usize = 2;

const SLOT_MASK: usize = BLOCK_CAP - 1;
const READY_MASK: usize = (1 << BLOCK_CAP) - 1;
const RELEASED: usize = 1 << BLOCK_CAP;

const CLOSED: usize = 0b001;
const PARKED: usize = 0b010;
const PARKED_FOR_SIGNALS: usize = 0b100;
const INDEX_SHIFT: u32 = 3;
const ONE: usize = 1 << INDEX_SHIFT;

/// Reclaimed blocks kept for reuse in the queue itself: a stream of messages that the
/// consumer keeps up with needs one (the producer takes it for the next block just before the
/// consumer gives back the one before last). One word more here would grow every actor's
/// cell past a size class: +144 resident bytes per idle actor (BENCHMARKS.md).
const SPARES: usize = 1;

/// Reclaimed blocks kept for reuse in a [`SparePool`], while the consumer has work: with the
/// inline spare, a backlog of 32 blocks (512 messages) reuses its blocks.
#[cfg(not(loom))]
const POOL: usize = 31;
#[cfg(loom)]
const POOL: usize = 1;

/// The spare blocks of a queue that ran deep (module docs).
struct SparePool<T> {
    slots: [AtomicPtr<Block<T>>; POOL],
}

/// Capacity value meaning "no bound".
pub(crate) const UNBOUNDED: usize = usize::MAX;

/// Why a push failed; the value is handed back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError<T> {
    /// The queue holds `capacity` values.
    Full(T),
    /// The consumer closed the queue.
    Closed(T),
}

struct Block<T> {
    /// Index of slot 0. Written before the block is published through a `next` pointer.
    start: AtomicUsize,
    next: AtomicPtr<Block<T>>,
    /// Bit `i` is set once slot `i` holds a value; plus the `RELEASED` bit.
    ready: AtomicUsize,
    /// Tail index read by the producer that released the block (valid once `RELEASED` is set).
    observed_tail: AtomicUsize,
    /// When slot 0 was claimed (`observe::stamp_now`), 0 for none: the mailbox-wait sample.
    /// Written by slot 0's producer before it sets the slot's ready bit, which publishes it
    /// (the ready bit's release/acquire pair orders it); it carries no synchronization itself.
    stamp: std::sync::atomic::AtomicU64,
    slots: [UnsafeCell<MaybeUninit<T>>; BLOCK_CAP],
}

impl<T> Block<T> {
    fn allocate(start: usize) -> *mut Block<T> {
        Box::into_raw(Box::new(Block {
            start: AtomicUsize::new(start),
            next: AtomicPtr::new(ptr::null_mut()),
            ready: AtomicUsize::new(0),
            observed_tail: AtomicUsize::new(0),
            stamp: std::sync::atomic::AtomicU64::new(0),
            slots: std::array::from_fn(|_| UnsafeCell::new(MaybeUninit::uninit())),
        }))
    }

    fn is_fully_written(&self) -> bool {
        self.ready.load(Acquire) & READY_MASK == READY_MASK
    }
}

/// A multi-producer, single-consumer queue (see the module docs for the algorithm).
///
/// Producer methods take `&self` and may be called from any thread. Consumer methods are
/// `unsafe`: the caller guarantees that only one consumer ever uses them (the actor's run loop).
///
/// The words producers write and the words the consumer writes must not share a cache line
/// (otherwise every message makes the two cores trade the line). Instead of aligning and
/// padding — which would cost every actor a cache line of memory — the owner stores its own
/// rarely written fields in `middle`, between the two groups: with at least 64 bytes between
/// `tail` and `head`, they can never be on the same line, whatever the alignment.
#[repr(C)]
pub(crate) struct Queue<T, M = ()> {
    // --- written by producers ---
    tail: AtomicUsize,
    tail_block: AtomicPtr<Block<T>>,
    cached_head: AtomicUsize,
    spares: [AtomicPtr<Block<T>>; SPARES],
    /// Null until a reclaimed block first finds every inline spare slot taken; then set once,
    /// and freed only with the queue.
    pool: AtomicPtr<SparePool<T>>,
    /// Read-only after creation; beside `tail` because producers check it on every push.
    capacity: usize,
    /// The owner's cold fields, keeping the two hot groups apart.
    pub(crate) middle: M,
    // --- written by the consumer ---
    head: AtomicUsize,
    /// The consumer's current block. Producers write it exactly once, when they install the
    /// first block; after that only the consumer does.
    head_block: AtomicPtr<Block<T>>,
    /// Oldest block not yet reclaimed. Consumer only.
    free_head: UnsafeCell<*mut Block<T>>,
}

// SAFETY: values of type `T` are moved in by producers on any thread and moved out by the
// consumer on another, so `T: Send` is required and sufficient; every shared field is an atomic
// or is only touched by the single consumer (`free_head`, upheld by the `unsafe` consumer API).
// `middle` is the owner's and must itself be `Send`/`Sync`.
unsafe impl<T: Send, M: Send> Send for Queue<T, M> {}
// SAFETY: as above.
unsafe impl<T: Send, M: Sync> Sync for Queue<T, M> {}

impl<T> Queue<T> {
    /// A queue holding at most `capacity` values ([`UNBOUNDED`] for no bound).
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_middle(capacity, ())
    }
}

impl<T, M> Queue<T, M> {
    /// A queue whose owner keeps `middle` between the producers' and the consumer's words.
    pub(crate) fn with_middle(capacity: usize, middle: M) -> Self {
        Self {
            tail: AtomicUsize::new(0),
            tail_block: AtomicPtr::new(ptr::null_mut()),
            cached_head: AtomicUsize::new(0),
            spares: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            pool: AtomicPtr::new(ptr::null_mut()),
            capacity,
            middle,
            head: AtomicUsize::new(0),
            head_block: AtomicPtr::new(ptr::null_mut()),
            free_head: UnsafeCell::new(ptr::null_mut()),
        }
    }

    /// Number of values claimed and not yet taken by the consumer. O(1), lock-free.
    pub(crate) fn len(&self) -> usize {
        // Head first: the tail read afterwards is at least as large, so this never underflows.
        let head = self.head.load(Acquire);
        let tail = self.tail.load(Acquire) >> INDEX_SHIFT;
        tail.saturating_sub(head)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tail.load(Acquire) & CLOSED != 0
    }

    /// Bytes between the producers' `tail` and the consumer's `head`.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn hot_word_distance(&self) -> usize {
        &self.head as *const _ as usize - &self.tail as *const _ as usize
    }

    /// The bound, [`UNBOUNDED`] for none.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends `value` unless the queue is closed or holds `capacity` values.
    ///
    /// On success returns whether the consumer was parked and this call took the duty to wake
    /// it (the caller must then wake the consumer's waker).
    pub(crate) fn push(&self, value: T) -> Result<bool, PushError<T>> {
        let capacity = self.capacity;
        let mut tail = self.tail.load(Relaxed);
        let index = loop {
            if tail & CLOSED != 0 {
                return Err(PushError::Closed(value));
            }
            let index = tail >> INDEX_SHIFT;
            if capacity != UNBOUNDED
                && index.wrapping_sub(self.cached_head.load(Relaxed)) >= capacity
            {
                let head = self.head.load(Acquire);
                self.cached_head.fetch_max(head, Relaxed);
                if index.wrapping_sub(head) >= capacity {
                    return Err(PushError::Full(value));
                }
            }
            match self
                .tail
                .compare_exchange_weak(tail, tail + ONE, AcqRel, Relaxed)
            {
                Ok(_) => break index,
                Err(actual) => tail = actual,
            }
        };
        // SAFETY: `index` was claimed by this call alone, so its slot is written exactly once,
        // here; `find_block` returns a live block (module docs, reclamation rule 2).
        unsafe {
            let block = self.find_block(index);
            let slot = index & SLOT_MASK;
            (*block).slots[slot].with_mut(|p| (*p).write(value));
            if slot == 0 && crate::observe::wait_sampling() {
                (*block).stamp.store(
                    crate::observe::stamp_now(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            (*block).ready.fetch_or(1 << slot, Release);
        }
        Ok(self.take_parked())
    }

    /// Clears `PARKED`; true when it was set, so this caller must wake the consumer.
    ///
    /// Call after publishing work (a value or a signal). Always an RMW: a plain load could read
    /// a stale word and miss the consumer going to sleep (module docs).
    pub(crate) fn take_parked(&self) -> bool {
        self.tail.fetch_and(!PARKED, AcqRel) & PARKED != 0
    }

    /// Like [`take_parked`](Self::take_parked), for signal producers: also wakes a consumer
    /// that waits for signals only.
    pub(crate) fn take_parked_for_signal(&self) -> bool {
        self.tail.fetch_and(!(PARKED | PARKED_FOR_SIGNALS), AcqRel) & (PARKED | PARKED_FOR_SIGNALS)
            != 0
    }

    /// Consumer: announce the intent to sleep until a signal arrives (user messages do not
    /// wake it). The caller must re-check for signals afterwards.
    pub(crate) fn set_parked_for_signals(&self) {
        self.tail.fetch_or(PARKED_FOR_SIGNALS, AcqRel);
    }

    /// Consumer: withdraw `set_parked_for_signals`.
    pub(crate) fn clear_parked_for_signals(&self) {
        self.tail.fetch_and(!PARKED_FOR_SIGNALS, AcqRel);
    }

    /// Consumer: announce the intent to sleep. The caller must re-check for work afterwards.
    pub(crate) fn set_parked(&self) {
        self.tail.fetch_or(PARKED, AcqRel);
    }

    /// Consumer: withdraw the intent to sleep after the re-check found work.
    pub(crate) fn clear_parked(&self) {
        self.tail.fetch_and(!PARKED, AcqRel);
    }

    /// Closes the queue for producers and returns the final index: the consumer has seen
    /// everything once its head reaches it.
    ///
    /// # Safety
    /// Only the single consumer may call this.
    pub(crate) unsafe fn close(&self) -> usize {
        self.tail.fetch_or(CLOSED, AcqRel) >> INDEX_SHIFT
    }

    /// Consumer: index of the next value to take.
    pub(crate) fn head_index(&self) -> usize {
        self.head.load(Relaxed)
    }

    /// Takes the next value, or `None` when the next claimed slot is not written yet (or
    /// nothing is claimed).
    ///
    /// # Safety
    /// Only the single consumer may call this.
    #[cfg(any(test, loom))]
    pub(crate) unsafe fn pop(&self) -> Option<T> {
        // SAFETY: same contract.
        unsafe { self.pop_stamped() }.map(|(value, _)| value)
    }

    /// Like `pop`, also handing out the value's mailbox-wait stamp: non-zero only for the
    /// first slot of a block, and only when senders were stamping (`observe` module).
    ///
    /// # Safety
    /// Only the single consumer may call this.
    pub(crate) unsafe fn pop_stamped(&self) -> Option<(T, u64)> {
        let head = self.head.load(Relaxed);
        let mut block = self.head_block.load(Acquire);
        if block.is_null() {
            return None;
        }
        // The first block the consumer ever sees is where reclamation starts.
        self.free_head.with_mut(|free| {
            // SAFETY: consumer-only field, per this function's contract.
            unsafe {
                if (*free).is_null() {
                    *free = block;
                }
            }
        });
        let start = head & !SLOT_MASK;
        loop {
            // SAFETY: `block` is the consumer's current block or reached from it through `next`;
            // blocks at or after the consumer's position are never reclaimed.
            let b = unsafe { &*block };
            if b.start.load(Relaxed) == start {
                break;
            }
            let next = b.next.load(Acquire);
            if next.is_null() {
                return None;
            }
            block = next;
            self.head_block.store(block, Relaxed);
            // SAFETY: consumer-only, per this function's contract.
            unsafe { self.reclaim(head, block) };
        }
        let slot = head & SLOT_MASK;
        // SAFETY: as above, `block` is live.
        let b = unsafe { &*block };
        if b.ready.load(Acquire) & (1 << slot) == 0 {
            return None;
        }
        // SAFETY: the ready bit (acquired above) says the producer finished writing this slot,
        // and the consumer reads each index exactly once because `head` only moves forward.
        let value = b.slots[slot].with(|p| unsafe { ptr::read(p).assume_init() });
        let stamp = if slot == 0 {
            b.stamp.load(std::sync::atomic::Ordering::Relaxed)
        } else {
            0
        };
        self.head.store(head + 1, Release);
        Some((value, stamp))
    }

    /// Reclaims released blocks before `current` whose producers are all done (rule 3).
    ///
    /// # Safety
    /// Consumer only; `head` is the consumer's index, `current` its current block.
    unsafe fn reclaim(&self, head: usize, current: *mut Block<T>) {
        self.free_head.with_mut(|free| {
            // SAFETY: `free_head` is consumer-owned; the blocks from it up to `current` are the
            // consumer's to reclaim once the release condition holds.
            unsafe {
                while *free != current {
                    let block = &**free;
                    let ready = block.ready.load(Acquire);
                    if ready & RELEASED == 0 || block.observed_tail.load(Relaxed) > head {
                        break;
                    }
                    let next = block.next.load(Acquire);
                    self.recycle(*free);
                    *free = next;
                }
            }
        });
    }

    /// Resets a reclaimed block and keeps it as a spare.
    ///
    /// # Safety
    /// No other thread may reference `block`.
    unsafe fn recycle(&self, block: *mut Block<T>) {
        // SAFETY: exclusive per contract.
        let b = unsafe { &*block };
        b.start.store(0, Relaxed);
        b.next.store(ptr::null_mut(), Relaxed);
        b.ready.store(0, Relaxed);
        b.observed_tail.store(0, Relaxed);
        b.stamp.store(0, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: exclusive per contract, and reset above.
        unsafe { self.give_back(block) };
    }

    /// A fresh block for `start`: a spare if there is one, else a new allocation.
    fn take_block(&self, start: usize) -> *mut Block<T> {
        let spare = match take_spare(&self.spares) {
            Some(spare) => spare,
            None => {
                let pool = self.pool.load(Acquire);
                if pool.is_null() {
                    return Block::allocate(start);
                }
                // SAFETY: once installed, the pool lives as long as the queue.
                match take_spare(unsafe { &(*pool).slots }) {
                    Some(spare) => spare,
                    None => return Block::allocate(start),
                }
            }
        };
        // SAFETY: the swap transferred exclusive ownership of the spare to this thread.
        unsafe { (*spare).start.store(start, Relaxed) };
        spare
    }

    /// Keeps an unused, reset block as a spare, or frees it when every spare slot is taken.
    ///
    /// # Safety
    /// No other thread may reference `block`, which must be in its freshly reset state.
    unsafe fn give_back(&self, block: *mut Block<T>) {
        if keep_spare(&self.spares, block) {
            return;
        }
        let pool = self.pool();
        // SAFETY: once installed, the pool lives as long as the queue.
        if keep_spare(unsafe { &(*pool).slots }, block) {
            return;
        }
        // SAFETY: exclusively ours (contract) and never published.
        drop(unsafe { Box::from_raw(block) });
    }

    /// The spare pool, installed on first use.
    fn pool(&self) -> *mut SparePool<T> {
        let pool = self.pool.load(Acquire);
        if !pool.is_null() {
            return pool;
        }
        let fresh = Box::into_raw(Box::new(SparePool {
            slots: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }));
        match self
            .pool
            .compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire)
        {
            Ok(_) => fresh,
            Err(installed) => {
                // SAFETY: `fresh` was never published.
                drop(unsafe { Box::from_raw(fresh) });
                installed
            }
        }
    }

    /// Spare blocks held now, inline and pooled.
    #[cfg(any(test, loom))]
    pub(crate) fn spare_count(&self) -> usize {
        let pool = self.pool.load(Acquire);
        // SAFETY: once installed, the pool lives as long as the queue.
        let pooled = (!pool.is_null()).then(|| unsafe { &(&(*pool).slots)[..] });
        self.spares
            .iter()
            .chain(pooled.unwrap_or(&[]))
            .filter(|slot| !slot.load(Acquire).is_null())
            .count()
    }

    /// Consumer, about to sleep on an empty queue: frees the pooled spare blocks, so that an
    /// idle actor keeps no more than the inline spares. (Producers may take from the pool
    /// meanwhile; each block leaves it by one swap, to one owner.)
    pub(crate) fn trim_spares(&self) {
        let pool = self.pool.load(Acquire);
        if pool.is_null() {
            return;
        }
        // SAFETY: once installed, the pool lives as long as the queue.
        while let Some(spare) = take_spare(unsafe { &(*pool).slots }) {
            // SAFETY: the swap made it exclusively ours; spares are never published.
            drop(unsafe { Box::from_raw(spare) });
        }
    }

    /// Returns the block holding `index`, appending blocks as needed and moving `tail_block`
    /// forward past fully written blocks.
    ///
    /// # Safety
    /// `index` must have been claimed by the caller and not yet written.
    unsafe fn find_block(&self, index: usize) -> *mut Block<T> {
        let start = index & !SLOT_MASK;
        let mut block = self.tail_block.load(Acquire);
        if block.is_null() {
            block = self.install_first_block();
        }
        let mut may_advance_tail = true;
        loop {
            // SAFETY: `block` was reached from `tail_block` after our claim, so it cannot be
            // reclaimed before our slot is written (module docs, rule 2).
            let b = unsafe { &*block };
            let block_start = b.start.load(Relaxed);
            if block_start == start {
                return block;
            }
            debug_assert!(
                block_start < start,
                "tail_block moved past an unwritten slot"
            );
            let next = self.next_or_append(b, block_start);
            if may_advance_tail && b.is_fully_written() {
                if self
                    .tail_block
                    .compare_exchange(block, next, AcqRel, Acquire)
                    .is_ok()
                {
                    // An RMW, not a load: see reclamation rule 2 in the module docs.
                    let observed = self.tail.fetch_add(0, AcqRel) >> INDEX_SHIFT;
                    b.observed_tail.store(observed, Relaxed);
                    b.ready.fetch_or(RELEASED, Release);
                } else {
                    may_advance_tail = false;
                }
            } else {
                may_advance_tail = false;
            }
            block = next;
        }
    }

    fn next_or_append(&self, block: &Block<T>, block_start: usize) -> *mut Block<T> {
        let next = block.next.load(Acquire);
        if !next.is_null() {
            return next;
        }
        let fresh = self.take_block(block_start + BLOCK_CAP);
        match block
            .next
            .compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire)
        {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` was never published.
                unsafe { self.give_back(fresh) };
                existing
            }
        }
    }

    fn install_first_block(&self) -> *mut Block<T> {
        let fresh = Block::allocate(0);
        match self
            .tail_block
            .compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire)
        {
            Ok(_) => {
                self.head_block.store(fresh, Release);
                fresh
            }
            Err(existing) => {
                // SAFETY: `fresh` was never published.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        }
    }
}

impl<T, M> Drop for Queue<T, M> {
    fn drop(&mut self) {
        let head = self.head.load(Relaxed);
        let tail = self.tail.load(Relaxed) >> INDEX_SHIFT;
        let mut block = self.free_head.with(|free| unsafe { *free });
        if block.is_null() {
            block = self.head_block.load(Relaxed);
        }
        while !block.is_null() {
            // SAFETY: `&mut self` means no producer or consumer is running; every block on the
            // chain from the oldest unreclaimed one is owned by the queue and freed once.
            let owned = unsafe { Box::from_raw(block) };
            let start = owned.start.load(Relaxed);
            let ready = owned.ready.load(Relaxed);
            for (slot, cell) in owned.slots.iter().enumerate() {
                let index = start + slot;
                if index >= head && index < tail && ready & (1 << slot) != 0 {
                    // SAFETY: written (ready bit) and not taken (index >= head).
                    cell.with_mut(|p| unsafe { ptr::drop_in_place((*p).as_mut_ptr()) });
                }
            }
            block = owned.next.load(Relaxed);
        }
        let pool = self.pool.load(Relaxed);
        // SAFETY: a non-null pool was installed by `pool()` and is freed only here.
        let pooled = (!pool.is_null()).then(|| unsafe { Box::from_raw(pool) });
        let pooled = pooled.iter().flat_map(|pool| pool.slots.iter());
        for slot in self.spares.iter().chain(pooled) {
            let spare = slot.load(Relaxed);
            if !spare.is_null() {
                // SAFETY: spares are exclusively owned by the queue.
                drop(unsafe { Box::from_raw(spare) });
            }
        }
    }
}

/// Takes a spare block out of `slots`: exclusively the caller's once its pointer is swapped
/// out.
fn take_spare<T>(slots: &[AtomicPtr<Block<T>>]) -> Option<*mut Block<T>> {
    for slot in slots {
        if slot.load(Relaxed).is_null() {
            continue;
        }
        let spare = slot.swap(ptr::null_mut(), Acquire);
        if !spare.is_null() {
            return Some(spare);
        }
    }
    None
}

/// Puts an unpublished, reset block into a free slot of `slots`; false when all are taken.
fn keep_spare<T>(slots: &[AtomicPtr<Block<T>>], block: *mut Block<T>) -> bool {
    slots.iter().any(|slot| {
        slot.compare_exchange(ptr::null_mut(), block, AcqRel, Relaxed)
            .is_ok()
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::sync::Arc;

    #[test]
    fn a_middle_of_two_words_keeps_the_hot_words_on_different_lines() {
        let q = Queue::<u64, [usize; 2]>::with_middle(UNBOUNDED, [0; 2]);
        assert!(q.hot_word_distance() >= 64, "{}", q.hot_word_distance());
    }

    #[test]
    fn fifo_across_many_blocks() {
        let q = Queue::new(UNBOUNDED);
        for i in 0..(BLOCK_CAP * 5 + 3) {
            assert_eq!(q.push(i), Ok(false));
        }
        assert_eq!(q.len(), BLOCK_CAP * 5 + 3);
        for i in 0..(BLOCK_CAP * 5 + 3) {
            assert_eq!(unsafe { q.pop() }, Some(i));
        }
        assert_eq!(unsafe { q.pop() }, None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn bounded_refuses_then_accepts_after_pop() {
        let q = Queue::new(3);
        for i in 0..3 {
            q.push(i).unwrap();
        }
        assert_eq!(q.push(9), Err(PushError::Full(9)));
        assert_eq!(unsafe { q.pop() }, Some(0));
        q.push(3).unwrap();
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn closed_hands_value_back_and_keeps_earlier_values() {
        let q = Queue::new(UNBOUNDED);
        q.push(1).unwrap();
        let final_index = unsafe { q.close() };
        assert_eq!(final_index, 1);
        assert!(q.is_closed());
        assert_eq!(q.push(2), Err(PushError::Closed(2)));
        assert_eq!(unsafe { q.pop() }, Some(1));
    }

    #[test]
    fn a_deep_backlog_reuses_its_blocks_and_an_idle_queue_gives_them_back() {
        let q = Queue::new(UNBOUNDED);
        let backlog = BLOCK_CAP * 40;
        for i in 0..backlog {
            q.push(i).unwrap();
        }
        for i in 0..backlog {
            assert_eq!(unsafe { q.pop() }, Some(i));
        }
        // Every reclaimed block it can hold is kept, inline and pooled.
        assert_eq!(q.spare_count(), SPARES + POOL);
        // The next backlog takes them back (the current block holds the first values).
        for i in 0..(SPARES + POOL + 1) * BLOCK_CAP {
            q.push(i).unwrap();
        }
        assert_eq!(q.spare_count(), 0);
        for i in 0..(SPARES + POOL + 1) * BLOCK_CAP {
            assert_eq!(unsafe { q.pop() }, Some(i));
        }
        assert!(q.spare_count() > SPARES);
        // Empty and about to sleep: only the inline spares stay.
        q.trim_spares();
        assert_eq!(q.spare_count(), SPARES);
        q.push(7).unwrap();
        assert_eq!(unsafe { q.pop() }, Some(7));
    }

    #[test]
    fn parked_flag_is_taken_once() {
        let q = Queue::new(UNBOUNDED);
        q.set_parked();
        assert_eq!(q.push(1), Ok(true));
        assert_eq!(q.push(2), Ok(false));
    }

    struct Counted(Arc<StdAtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn drop_releases_every_unconsumed_value_once() {
        let drops = Arc::new(StdAtomicUsize::new(0));
        let q = Queue::new(UNBOUNDED);
        for _ in 0..(BLOCK_CAP * 3 + 1) {
            q.push(Counted(drops.clone())).ok().unwrap();
        }
        for _ in 0..(BLOCK_CAP + 2) {
            drop(unsafe { q.pop() });
        }
        assert_eq!(
            drops.load(std::sync::atomic::Ordering::SeqCst),
            BLOCK_CAP + 2
        );
        drop(q);
        assert_eq!(
            drops.load(std::sync::atomic::Ordering::SeqCst),
            BLOCK_CAP * 3 + 1
        );
    }

    #[test]
    fn many_producers_keep_per_producer_order() {
        const PRODUCERS: usize = 4;
        const PER: usize = 20_000;
        let q = Arc::new(Queue::new(64));
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let mut v = (p, i);
                        loop {
                            match q.push(v) {
                                Ok(_) => break,
                                Err(PushError::Full(back)) => {
                                    v = back;
                                    std::thread::yield_now();
                                }
                                Err(PushError::Closed(_)) => unreachable!(),
                            }
                        }
                    }
                })
            })
            .collect();
        let mut next = [0usize; PRODUCERS];
        let mut received = 0;
        while received < PRODUCERS * PER {
            match unsafe { q.pop() } {
                Some((p, i)) => {
                    assert_eq!(next[p], i, "producer {p} out of order");
                    next[p] += 1;
                    received += 1;
                    assert!(q.len() <= 64);
                }
                None => std::thread::yield_now(),
            }
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(unsafe { q.pop() }, None);
    }
}

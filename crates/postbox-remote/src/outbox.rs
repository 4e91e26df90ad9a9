//! A connection's outbound queue: one byte buffer that senders encode their frames into and
//! that the writer takes whole.
//!
//! Senders (remote refs, the service task, the reader's answers) lock the buffer, check for
//! room and append encoded frames — a remote ref appends its whole batch under one lock. The
//! writer swaps the buffer for its spare one (empty, same capacity) under the lock and writes
//! it out after releasing it, so senders go on filling the other buffer while it writes; no
//! frame is a value of its own between its sender and the socket.
//!
//! **Bounds**: what is queued *or being written* is at most `max_frames` frames and
//! `max_bytes` bytes, counted with the same cost per frame as always (its variable parts plus
//! [`FRAME_OVERHEAD`]; a frame that costs more than `max_bytes` is let in only when nothing
//! else is queued — it takes the whole budget). Room comes back when the writer has written
//! what it took. A sender without room waits ([`Outbox::room`]) or is told `Full`.
//!
//! **Ending**: after a `Goodbye` or `Refused` nothing more is taken (senders see `Closed`),
//! and the writer stops once it has written it. When the writer stops for any reason the
//! outbox closes, which wakes every waiting sender.

use bytes::BytesMut;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// What a frame costs in the outbound budget beyond its variable parts.
pub(crate) const FRAME_OVERHEAD: usize = 48;

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// Not now: the bounds are reached.
    Full,
    /// Never: the connection is closing or closed.
    Closed,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when the buffer stops being empty (a permit is kept if it is busy).
    ready: Notify,
    /// Wakes senders waiting for room when the writer has written, or the outbox closed.
    room: Notify,
    max_frames: usize,
    max_bytes: usize,
}

struct State {
    buf: BytesMut,
    /// Frames in `buf`, and their cost.
    buffered_frames: usize,
    buffered_cost: usize,
    /// Frames queued or being written, and their cost: what the bounds apply to.
    frames: usize,
    cost: usize,
    /// A `Goodbye` or `Refused` is queued: nothing more is taken.
    last: bool,
    closed: bool,
}

/// What the writer took: a buffer to write, and what to give back once written.
pub(crate) struct Taken {
    pub(crate) frames: usize,
    cost: usize,
    /// The last frames ever: stop after writing these.
    pub(crate) last: bool,
}

impl Outbox {
    pub(crate) fn new(max_frames: usize, max_bytes: usize, capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(capacity),
                buffered_frames: 0,
                buffered_cost: 0,
                frames: 0,
                cost: 0,
                last: false,
                closed: false,
            }),
            ready: Notify::new(),
            room: Notify::new(),
            max_frames: max_frames.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// The cost in the budget of a frame whose variable parts are `bytes` long.
    pub(crate) fn cost(&self, bytes: usize) -> usize {
        bytes.saturating_add(FRAME_OVERHEAD).min(self.max_bytes)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the buffer for appending frames; the writer is woken when the lock is released if
    /// frames went into an empty buffer.
    pub(crate) fn lock(&self) -> Appender<'_> {
        let state = self.lock_state();
        let was_empty = state.buffered_frames == 0;
        Appender {
            outbox: self,
            state: Some(state),
            was_empty,
            pushed: false,
        }
    }

    /// Waits until a frame of `cost` fits (it may be gone again by the time the caller
    /// locks); `false` once the outbox is closed.
    pub(crate) async fn room(&self, cost: usize) -> bool {
        loop {
            let woken = self.room.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.lock_state().check(cost, self) {
                Ok(()) => return true,
                Err(NoRoom::Closed) => return false,
                Err(NoRoom::Full) => {}
            }
            woken.await;
        }
    }

    /// For the writer: takes everything buffered by swapping in `spare` (which must be
    /// empty); `None` if there is nothing.
    pub(crate) fn take(&self, spare: &mut BytesMut) -> Option<Taken> {
        let mut state = self.lock_state();
        if state.buffered_frames == 0 {
            return None;
        }
        std::mem::swap(&mut state.buf, spare);
        let taken = Taken {
            frames: std::mem::take(&mut state.buffered_frames),
            cost: std::mem::take(&mut state.buffered_cost),
            last: state.last,
        };
        Some(taken)
    }

    /// For the writer: what it took has been written; its room comes back.
    pub(crate) fn written(&self, taken: &Taken) {
        {
            let mut state = self.lock_state();
            state.frames = state.frames.saturating_sub(taken.frames);
            state.cost = state.cost.saturating_sub(taken.cost);
        }
        self.room.notify_waiters();
    }

    /// For the writer: waits until something is buffered (or a permit from an earlier
    /// append is left).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Takes nothing more and wakes every waiting sender (the writer has stopped).
    pub(crate) fn close(&self) {
        self.lock_state().closed = true;
        self.room.notify_waiters();
    }
}

impl State {
    fn check(&self, cost: usize, outbox: &Outbox) -> Result<(), NoRoom> {
        if self.closed || self.last {
            return Err(NoRoom::Closed);
        }
        let fits = self.frames < outbox.max_frames
            && (self.frames == 0 || self.cost.saturating_add(cost) <= outbox.max_bytes);
        if fits {
            Ok(())
        } else {
            Err(NoRoom::Full)
        }
    }
}

/// The locked buffer of an [`Outbox`].
pub(crate) struct Appender<'a> {
    outbox: &'a Outbox,
    state: Option<MutexGuard<'a, State>>,
    was_empty: bool,
    pushed: bool,
}

impl Appender<'_> {
    fn state(&mut self) -> Option<&mut State> {
        self.state.as_deref_mut()
    }

    /// Whether a frame of `cost` fits now.
    pub(crate) fn check(&mut self, cost: usize) -> Result<(), NoRoom> {
        let outbox = self.outbox;
        match self.state() {
            Some(state) => state.check(cost, outbox),
            None => Err(NoRoom::Closed),
        }
    }

    /// Appends one frame of `cost` with `encode` (which leaves the buffer as it was when it
    /// fails) if it fits; `last` for a `Goodbye` or `Refused`.
    pub(crate) fn push<E>(
        &mut self,
        cost: usize,
        last: bool,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<Result<(), E>, NoRoom> {
        self.check(cost)?;
        let Some(state) = self.state() else {
            return Err(NoRoom::Closed);
        };
        if let Err(error) = encode(&mut state.buf) {
            return Ok(Err(error));
        }
        state.buffered_frames += 1;
        state.buffered_cost += cost;
        state.frames += 1;
        state.cost += cost;
        state.last |= last;
        self.pushed = true;
        Ok(Ok(()))
    }
}

impl Drop for Appender<'_> {
    fn drop(&mut self) {
        drop(self.state.take());
        if self.pushed && self.was_empty {
            self.outbox.ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn push(outbox: &Outbox, bytes: usize) -> Result<(), NoRoom> {
        let cost = outbox.cost(bytes);
        outbox
            .lock()
            .push(cost, false, |buf| {
                buf.put_bytes(0, bytes);
                Ok::<(), ()>(())
            })
            .map(|encoded| encoded.unwrap_or(()))
    }

    #[test]
    fn bounds_count_what_is_being_written_until_it_is_written() {
        let outbox = Outbox::new(4, 1000, 64);
        for _ in 0..4 {
            push(&outbox, 10).unwrap();
        }
        assert_eq!(push(&outbox, 10), Err(NoRoom::Full), "frames bound");
        let mut spare = BytesMut::new();
        let taken = outbox.take(&mut spare).unwrap();
        assert_eq!((taken.frames, spare.len()), (4, 40));
        assert_eq!(push(&outbox, 10), Err(NoRoom::Full), "still being written");
        outbox.written(&taken);
        push(&outbox, 10).unwrap();
    }

    #[test]
    fn the_bytes_bound_lets_one_oversized_frame_in_alone() {
        let outbox = Outbox::new(100, 1000, 64);
        push(&outbox, 800).unwrap();
        assert_eq!(push(&outbox, 800), Err(NoRoom::Full), "bytes bound");
        let mut spare = BytesMut::new();
        let taken = outbox.take(&mut spare).unwrap();
        outbox.written(&taken);
        push(&outbox, 5000).unwrap();
        assert_eq!(
            push(&outbox, 1),
            Err(NoRoom::Full),
            "it took the whole budget"
        );
    }

    #[test]
    fn nothing_is_taken_after_the_last_frame_or_once_closed() {
        let outbox = Outbox::new(100, 1000, 64);
        let cost = outbox.cost(0);
        outbox
            .lock()
            .push(cost, true, |_| Ok::<(), ()>(()))
            .unwrap()
            .unwrap();
        assert_eq!(push(&outbox, 1), Err(NoRoom::Closed));
        let outbox = Outbox::new(100, 1000, 64);
        outbox.close();
        assert_eq!(push(&outbox, 1), Err(NoRoom::Closed));
    }

    #[test]
    fn a_failed_encode_takes_no_room() {
        let outbox = Outbox::new(1, 1000, 64);
        let failed = outbox.lock().push(10, false, |_| Err("too large")).unwrap();
        assert_eq!(failed, Err("too large"));
        push(&outbox, 10).unwrap();
    }

    #[tokio::test]
    async fn a_waiting_sender_is_woken_by_the_write_and_by_the_close() {
        let outbox = std::sync::Arc::new(Outbox::new(1, 1000, 64));
        push(&outbox, 10).unwrap();
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room(10).await }
        });
        tokio::task::yield_now().await;
        let mut spare = BytesMut::new();
        let taken = outbox.take(&mut spare).unwrap();
        outbox.written(&taken);
        assert!(waiter.await.unwrap(), "room after the write");
        push(&outbox, 10).unwrap();
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room(10).await }
        });
        tokio::task::yield_now().await;
        outbox.close();
        assert!(!waiter.await.unwrap(), "closed");
    }
}

//! The priority lane for system signals (stop, kill, supervision, watch notifications).
//!
//! A Treiber stack: producers push with one compare-and-swap; the single consumer takes the whole
//! stack with one swap and reverses it, so signals come out in push order. It is unbounded on
//! purpose — signals are rare, small and must never wait behind a full user mailbox — and it can
//! be closed: once the actor has terminated, pushes fail and hand the signal back so the sender
//! can react (for example, a watch on a dead actor is answered at once).
//!
//! Nodes are only ever removed by swapping out the entire list, so the usual ABA hazard of
//! Treiber stacks (a node popped and pushed again between a load and a CAS) cannot happen.

use crate::sync::{AtomicPtr, Ordering::*};
use std::ptr;

struct Node<T> {
    value: T,
    next: *mut Node<T>,
}

/// Sentinel marking a closed stack. Never dereferenced; no allocation lives at address 1.
fn closed<T>() -> *mut Node<T> {
    ptr::without_provenance_mut(1)
}

pub(crate) struct SignalStack<T> {
    head: AtomicPtr<Node<T>>,
}

// SAFETY: values move from producer threads to the consumer thread (needs `T: Send`); the only
// shared state is the atomic head, and nodes are owned by exactly one party at any time.
unsafe impl<T: Send> Send for SignalStack<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SignalStack<T> {}

impl<T> SignalStack<T> {
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes `value`, or hands it back if the stack is closed.
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let node = Box::into_raw(Box::new(Node {
            value,
            next: ptr::null_mut(),
        }));
        let mut head = self.head.load(Acquire);
        loop {
            if head == closed() {
                // SAFETY: `node` was never published; we still own it.
                let node = unsafe { Box::from_raw(node) };
                return Err(node.value);
            }
            // SAFETY: unpublished node, exclusively ours.
            unsafe { (*node).next = head };
            match self.head.compare_exchange(head, node, AcqRel, Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => head = actual,
            }
        }
    }

    /// Whether signals are waiting. One load; cheap enough for every loop iteration.
    pub(crate) fn is_pending(&self) -> bool {
        let head = self.head.load(Acquire);
        !head.is_null() && head != closed()
    }

    /// Takes every pending signal, oldest first.
    ///
    /// Consumer only (the consumer is the only party that closes, so the stack cannot become
    /// closed between the check and the swap).
    pub(crate) fn take_all(&self) -> Drain<T> {
        if !self.is_pending() {
            return Drain::empty();
        }
        Drain::reversed(self.head.swap(ptr::null_mut(), AcqRel))
    }

    /// Closes the stack and returns what was still pending, oldest first. Idempotent.
    pub(crate) fn close(&self) -> Drain<T> {
        let head = self.head.swap(closed(), AcqRel);
        if head == closed() {
            return Drain::empty();
        }
        Drain::reversed(head)
    }
}

impl<T> Drop for SignalStack<T> {
    fn drop(&mut self) {
        let head = self.head.load(Relaxed);
        if head != closed() {
            drop(Drain::reversed(head));
        }
    }
}

/// Signals taken from the stack, in push order. Dropping it drops the rest.
pub(crate) struct Drain<T> {
    next: *mut Node<T>,
}

// SAFETY: a `Drain` exclusively owns its nodes.
unsafe impl<T: Send> Send for Drain<T> {}

impl<T> Drain<T> {
    fn empty() -> Self {
        Self {
            next: ptr::null_mut(),
        }
    }

    /// Takes ownership of a detached list (newest first) and reverses it.
    fn reversed(mut node: *mut Node<T>) -> Self {
        let mut reversed = ptr::null_mut();
        while !node.is_null() {
            // SAFETY: the list was detached by a swap, so this thread owns every node in it.
            unsafe {
                let next = (*node).next;
                (*node).next = reversed;
                reversed = node;
                node = next;
            }
        }
        Self { next: reversed }
    }
}

impl<T> Iterator for Drain<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: owned node (see `reversed`), taken off the list exactly once.
        let node = unsafe { Box::from_raw(self.next) };
        self.next = node.next;
        Some(node.value)
    }
}

impl<T> Drop for Drain<T> {
    fn drop(&mut self) {
        for _ in self.by_ref() {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn drains_in_push_order() {
        let s = SignalStack::new();
        for i in 0..5 {
            s.push(i).unwrap();
        }
        assert!(s.is_pending());
        assert_eq!(s.take_all().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(!s.is_pending());
        s.push(7).unwrap();
        assert_eq!(s.take_all().collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn closed_stack_hands_signals_back() {
        let s = SignalStack::new();
        s.push(1).unwrap();
        assert_eq!(s.close().collect::<Vec<_>>(), vec![1]);
        assert_eq!(s.head.load(Acquire), closed());
        assert_eq!(s.push(2), Err(2));
        assert_eq!(s.close().count(), 0);
        assert!(!s.is_pending());
    }

    #[test]
    fn drop_frees_pending_signals() {
        let s = SignalStack::new();
        let value = std::sync::Arc::new(());
        s.push(value.clone()).unwrap();
        s.push(value.clone()).unwrap();
        drop(s);
        assert_eq!(std::sync::Arc::strong_count(&value), 1);
    }
}

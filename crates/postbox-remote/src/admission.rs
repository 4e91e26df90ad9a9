//! Who may connect: the budget of connections still in their handshake, the quarantine of
//! incarnations declared down, and the membership layer's say ([`Admission`]).
//!
//! **Unauthenticated connections** have a small budget of their own, apart from the limit on
//! authenticated ones, so that idle or slow sockets can never lock members and clients out:
//! at most [`max_unauthenticated_per_source`](crate::RemoteConfig::max_unauthenticated_per_source)
//! per source IP address and
//! [`max_unauthenticated`](crate::RemoteConfig::max_unauthenticated) in all. A connection
//! over budget is always admitted, and the *oldest* pending connection of its source (or,
//! when the total is full, of all) is closed instead (`Refusal::Evicted`). A real handshake
//! takes a round trip or two, so it completes long before a flood of newer sockets could
//! push it out, while sockets that hold on without speaking are the ones that go.
//!
//! **Quarantine** (Akka's word): once the cluster declares an incarnation down, this node
//! refuses it for good (`RefuseReason::Quarantined`, in the handshake and, before closing,
//! on a connection that was open), so a paused or partitioned node that comes back learns it
//! is no longer a member instead of carrying on as a zombie. The set is bounded
//! ([`QUARANTINE_MAX`] incarnations, oldest forgotten first).

use postbox_wire::{NodeAddr, RefuseReason};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio_util::sync::CancellationToken;

/// The most incarnations remembered as quarantined; beyond, the oldest is forgotten.
pub const QUARANTINE_MAX: usize = 65_536;

/// A membership layer's say on which nodes may hold a connection, consulted during every
/// handshake once the peer has proven that it knows the cluster secret (inbound) or the
/// server has (outbound). See [`Remote::set_admission`](crate::Remote::set_admission).
pub trait Admission: Send + Sync + 'static {
    /// `Err((reason, explanation))` if `node` may not connect now — typically
    /// `AddressInUse` when a live member with another identity holds its address, or
    /// `Quarantined` when its incarnation was declared down.
    fn check(&self, node: &NodeAddr) -> Result<(), (RefuseReason, String)>;
}

struct PendingEntry {
    id: u64,
    source: IpAddr,
    evict: CancellationToken,
}

#[derive(Default)]
struct PendingState {
    next: u64,
    /// Oldest first.
    order: VecDeque<PendingEntry>,
    per_source: HashMap<IpAddr, usize>,
}

impl PendingState {
    fn remove_at(&mut self, at: usize) -> Option<PendingEntry> {
        let entry = self.order.remove(at)?;
        if let Some(count) = self.per_source.get_mut(&entry.source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&entry.source);
            }
        }
        Some(entry)
    }
}

/// The budget of inbound connections that have not completed their handshake.
pub(crate) struct Pending {
    state: Mutex<PendingState>,
    max_total: usize,
    max_per_source: usize,
}

/// One connection counted against the budget until it is dropped (authenticated, refused or
/// closed). `evicted` is cancelled when a newer connection pushes it out.
pub(crate) struct PendingSlot {
    id: u64,
    pub(crate) evicted: CancellationToken,
    pending: Arc<Pending>,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut state = self.pending.lock();
        if let Some(at) = state.order.iter().position(|e| e.id == self.id) {
            state.remove_at(at);
        }
    }
}

impl Pending {
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(PendingState::default()),
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `source`; returns its slot and how many older pending
    /// connections were evicted to make room (0 or 1).
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr) -> (PendingSlot, usize) {
        let mut state = self.lock();
        let mut evicted = 0;
        let victim = if state.per_source.get(&source).copied().unwrap_or(0) >= self.max_per_source {
            state.order.iter().position(|e| e.source == source)
        } else if state.order.len() >= self.max_total {
            Some(0)
        } else {
            None
        };
        if let Some(entry) = victim.and_then(|at| state.remove_at(at)) {
            entry.evict.cancel();
            evicted = 1;
        }
        let id = state.next;
        state.next += 1;
        let evict = CancellationToken::new();
        state.order.push_back(PendingEntry {
            id,
            source,
            evict: evict.clone(),
        });
        *state.per_source.entry(source).or_default() += 1;
        (
            PendingSlot {
                id,
                evicted: evict,
                pending: self.clone(),
            },
            evicted,
        )
    }

    /// Closes the oldest pending connection (to free its file descriptor when the process
    /// has none left); false if there is none.
    pub(crate) fn evict_oldest(&self) -> bool {
        let mut state = self.lock();
        match state.remove_at(0) {
            Some(entry) => {
                entry.evict.cancel();
                true
            }
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().order.len()
    }
}

/// Incarnations declared down, refused for good.
#[derive(Default)]
pub(crate) struct Quarantine {
    entries: Mutex<Quarantined>,
}

#[derive(Default)]
struct Quarantined {
    set: HashSet<(u64, u64)>,
    /// Oldest first, to forget beyond [`QUARANTINE_MAX`].
    order: VecDeque<(u64, u64)>,
}

impl Quarantine {
    fn lock(&self) -> std::sync::MutexGuard<'_, Quarantined> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `node`'s incarnation; false if it was already there.
    pub(crate) fn add(&self, node: &NodeAddr) -> bool {
        let key = (node.node_id, node.incarnation);
        let mut entries = self.lock();
        if !entries.set.insert(key) {
            return false;
        }
        entries.order.push_back(key);
        if entries.set.len() > QUARANTINE_MAX {
            if let Some(oldest) = entries.order.pop_front() {
                entries.set.remove(&oldest);
            }
        }
        true
    }

    pub(crate) fn contains(&self, node: &NodeAddr) -> bool {
        self.lock().set.contains(&(node.node_id, node.incarnation))
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_source_over_its_budget_loses_its_oldest_pending_connection() {
        let pending = Pending::new(64, 2);
        let (a1, e) = pending.admit(ip(1));
        assert_eq!(e, 0);
        let (a2, _) = pending.admit(ip(1));
        let (b1, _) = pending.admit(ip(2));
        let (a3, evicted) = pending.admit(ip(1));
        assert_eq!(evicted, 1);
        assert!(a1.evicted.is_cancelled(), "the source's oldest goes");
        assert!(!a2.evicted.is_cancelled() && !a3.evicted.is_cancelled());
        assert!(!b1.evicted.is_cancelled(), "other sources are untouched");
        assert_eq!(pending.len(), 3);
        drop((a1, a2, a3, b1));
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn a_full_budget_loses_its_oldest_pending_connection_of_any_source() {
        let pending = Pending::new(2, 8);
        let (a, _) = pending.admit(ip(1));
        let (b, _) = pending.admit(ip(2));
        let (c, evicted) = pending.admit(ip(3));
        assert_eq!(evicted, 1);
        assert!(a.evicted.is_cancelled());
        assert!(!b.evicted.is_cancelled() && !c.evicted.is_cancelled());
        assert!(pending.evict_oldest());
        assert!(b.evicted.is_cancelled());
        assert_eq!(pending.len(), 1);
        drop(c);
        assert!(!pending.evict_oldest());
    }

    #[test]
    fn quarantine_remembers_incarnations_not_addresses() {
        let quarantine = Quarantine::default();
        let node = NodeAddr {
            addr: "127.0.0.1:1".into(),
            node_id: 1,
            incarnation: 7,
        };
        assert!(quarantine.add(&node));
        assert!(!quarantine.add(&node));
        assert!(quarantine.contains(&node));
        let restarted = NodeAddr {
            incarnation: 8,
            ..node.clone()
        };
        assert!(!quarantine.contains(&restarted));
        assert_eq!(quarantine.len(), 1);
    }
}

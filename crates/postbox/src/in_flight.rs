//! Messages an actor has handed on elsewhere, counted in its depth.
//!
//! An actor's depth is what waits in its mailbox. An actor that forwards each message to
//! something outside this runtime — another actor system's mailbox, a worker pool, a
//! connection — and answers later (see [`Handler::handle_reply`](crate::Handler::handle_reply))
//! empties its mailbox at once and would look idle while the real backlog grows behind it.
//! It can publish that backlog instead: [`Context::in_flight`](crate::Context::in_flight)
//! gives it its [`InFlight`] counter, it [`enter`](InFlight::enter)s one guard per message it
//! hands on and drops the guard when the message is done. Everything that reports an actor's
//! depth adds the counter: `ActorRef::depth` and `load`, `Recipient::depth` and `load`,
//! [`ActorStats::depth`](crate::ActorStats::depth) (with the part in
//! [`ActorStats::in_flight`](crate::ActorStats::in_flight)), `ActorSystem::depth`,
//! `ActorView::depth` — so load-aware routers, the load a cluster gossips and the metrics
//! endpoint all see it.
//!
//! Cost: the counters live in a side table of the system, keyed by actor id, not in actor
//! cells; a cell only has a flag saying it published one, in what was padding of its
//! statistics. So an actor that publishes nothing carries no extra byte, and reading its
//! depth costs one relaxed load of that flag, on a cache line the read touches anyway. For an
//! actor that does publish, a depth read adds a lookup in the side table. Sending and
//! handling messages never read it.

use crate::actor::ActorId;
use dashmap::DashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;

/// The count of messages an actor has handed on and not finished, published as part of its
/// depth. Cheap to clone; clones share the count. Get an actor's own with
/// [`Context::in_flight`](crate::Context::in_flight).
#[derive(Clone, Default)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
}

impl InFlight {
    /// Counts one more message in flight until the returned guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.count.fetch_add(1, Relaxed);
        InFlightGuard {
            count: self.count.clone(),
        }
    }

    /// Messages in flight now.
    pub fn get(&self) -> usize {
        self.count.load(Relaxed)
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InFlight").field(&self.get()).finish()
    }
}

/// One message counted in an [`InFlight`]; dropping it ends the count.
#[must_use = "the message counts as in flight only while the guard lives"]
pub struct InFlightGuard {
    count: Arc<AtomicUsize>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
    }
}

impl fmt::Debug for InFlightGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightGuard").finish_non_exhaustive()
    }
}

/// The published counters of one system's actors. Only actors whose cell says they
/// published one (`Stats::publishes_in_flight`) are looked up.
#[derive(Default)]
pub(crate) struct InFlightTable {
    counters: DashMap<ActorId, InFlight>,
}

impl InFlightTable {
    /// The counter of `id`, created on first use. Kept until the actor terminates, so every
    /// incarnation of a restarted actor shares it.
    pub(crate) fn publish(&self, id: ActorId) -> InFlight {
        self.counters.entry(id).or_default().clone()
    }

    /// What `id` has in flight (0 if it published nothing).
    pub(crate) fn of(&self, id: ActorId) -> usize {
        self.counters.get(&id).map_or(0, |counter| counter.get())
    }

    /// Forgets the counter of a terminated actor.
    pub(crate) fn remove(&self, id: ActorId) {
        self.counters.remove(&id);
    }
}

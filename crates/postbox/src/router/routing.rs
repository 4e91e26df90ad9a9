//! Routing strategies and the routee set they choose from.

use crate::actor::Message;
use crate::actor_ref::Recipient;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// How a [`Router`](super::Router) picks routees.
///
/// | strategy | `tell` goes to | `ask` |
/// | --- | --- | --- |
/// | [`round_robin`](Self::round_robin) | the next routee in turn | one routee |
/// | [`random`](Self::random) | a random routee | one routee |
/// | [`smallest_mailbox`](Self::smallest_mailbox) | the routee with the least [`load`](crate::ActorRef::load) | one routee |
/// | [`smallest_load`](Self::smallest_load) | the routee with the least load by a function you give | one routee |
/// | [`consistent_hashing`](Self::consistent_hashing) | the routee owning the message's key | one routee |
/// | [`broadcast`](Self::broadcast) | every routee | every routee, first reply wins |
/// | [`scatter_gather`](Self::scatter_gather) | every routee | every routee, first reply within the deadline wins |
/// | [`tail_chopping`](Self::tail_chopping) | the next routee in turn | one routee, then another after each interval without a reply, first reply wins |
pub struct Routing<M: Message> {
    pub(crate) kind: Kind<M>,
}

pub(crate) enum Kind<M: Message> {
    RoundRobin,
    Random,
    SmallestMailbox,
    SmallestLoad(LoadFn<M>),
    ConsistentHashing {
        key: Arc<dyn Fn(&M) -> u64 + Send + Sync>,
        virtual_nodes: usize,
    },
    Broadcast {
        clone: fn(&M) -> M,
    },
    ScatterGather {
        clone: fn(&M) -> M,
        within: Duration,
    },
    TailChopping {
        clone: fn(&M) -> M,
        interval: Duration,
        within: Duration,
    },
}

/// How [`Routing::smallest_load`] measures a routee.
type LoadFn<M> = Arc<dyn Fn(&Recipient<M>) -> usize + Send + Sync>;

fn clone_message<M: Clone>(msg: &M) -> M {
    msg.clone()
}

impl<M: Message> Routing<M> {
    /// Each routee in turn.
    pub fn round_robin() -> Self {
        Self {
            kind: Kind::RoundRobin,
        }
    }

    /// A routee picked at random.
    pub fn random() -> Self {
        Self { kind: Kind::Random }
    }

    /// The routee with the smallest load — messages waiting in its mailbox plus the one it is
    /// handling — read in O(1) from each routee. Ties go to the routee after the last choice,
    /// and an idle routee is taken at once. With uneven handler costs this keeps messages from
    /// queueing behind a slow one.
    pub fn smallest_mailbox() -> Self {
        Self {
            kind: Kind::SmallestMailbox,
        }
    }

    /// Like [`smallest_mailbox`](Self::smallest_mailbox), with the load of each routee read by
    /// `load` instead of [`Recipient::load`]. For routees whose real queue is not in this
    /// process — a remote actor's mailbox is on its node; the local ref only sees messages not
    /// yet forwarded — `load` can add what is known of the far side (postbox-cluster's
    /// routers add the load each node gossips). It is called for each candidate on every
    /// routing decision, in the sender's task, so it must be cheap and must not block.
    pub fn smallest_load(load: impl Fn(&Recipient<M>) -> usize + Send + Sync + 'static) -> Self {
        Self {
            kind: Kind::SmallestLoad(Arc::new(load)),
        }
    }

    /// Messages with equal keys go to the same routee, as long as the routee set is unchanged;
    /// when a routee leaves or joins, only the keys it owned move (a hash ring with 64 virtual
    /// nodes per routee, placed by routee name so that a pool's replacement routee takes over
    /// its predecessor's keys).
    pub fn consistent_hashing<K: Hash>(key: impl Fn(&M) -> K + Send + Sync + 'static) -> Self {
        Self {
            kind: Kind::ConsistentHashing {
                key: Arc::new(move |msg| hash_of(&key(msg))),
                virtual_nodes: 64,
            },
        }
    }

    /// Every message to every routee.
    pub fn broadcast() -> Self
    where
        M: Clone,
    {
        Self {
            kind: Kind::Broadcast {
                clone: clone_message::<M>,
            },
        }
    }

    /// Asks go to every routee; the first reply within `within` wins (later replies are
    /// counted as undeliverable-reply dead letters). Tells are broadcast.
    pub fn scatter_gather(within: Duration) -> Self
    where
        M: Clone,
    {
        Self {
            kind: Kind::ScatterGather {
                clone: clone_message::<M>,
                within,
            },
        }
    }

    /// Asks go to one routee; each `interval` without a reply, the same message also goes to
    /// the next routee; the first reply within `within` wins. Cuts tail latency when one
    /// routee is slow, at the price of duplicate work. Tells go round-robin.
    pub fn tail_chopping(interval: Duration, within: Duration) -> Self
    where
        M: Clone,
    {
        Self {
            kind: Kind::TailChopping {
                clone: clone_message::<M>,
                interval,
                within,
            },
        }
    }

    /// The strategy's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::RoundRobin => "round_robin",
            Kind::Random => "random",
            Kind::SmallestMailbox => "smallest_mailbox",
            Kind::SmallestLoad(_) => "smallest_load",
            Kind::ConsistentHashing { .. } => "consistent_hashing",
            Kind::Broadcast { .. } => "broadcast",
            Kind::ScatterGather { .. } => "scatter_gather",
            Kind::TailChopping { .. } => "tail_chopping",
        }
    }
}

impl<M: Message> fmt::Debug for Routing<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn hash_of<K: Hash + ?Sized>(key: &K) -> u64 {
    // `DefaultHasher::new` uses fixed keys, so placement is stable across processes.
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// An immutable snapshot of the routees; replaced wholesale when the set changes.
pub(crate) struct Routees<M: Message> {
    pub(crate) list: Vec<Recipient<M>>,
    /// Sorted `(point, index into list)`, for consistent hashing only.
    ring: Vec<(u64, usize)>,
}

impl<M: Message> Routees<M> {
    pub(crate) fn new(list: Vec<Recipient<M>>, routing: &Routing<M>) -> Self {
        let ring = match &routing.kind {
            Kind::ConsistentHashing { virtual_nodes, .. } => {
                let mut ring = Vec::with_capacity(list.len() * virtual_nodes);
                for (index, routee) in list.iter().enumerate() {
                    let name = routee.path();
                    let name = name.rsplit('/').next().unwrap_or_default();
                    for node in 0..*virtual_nodes {
                        ring.push((hash_of(&(name, node)), index));
                    }
                }
                ring.sort_unstable();
                ring
            }
            _ => Vec::new(),
        };
        Self { list, ring }
    }

    /// The routee `routing` picks for `msg`; `None` when there is none.
    pub(crate) fn pick(
        &self,
        routing: &Routing<M>,
        cursor: &AtomicUsize,
        msg: &M,
    ) -> Option<usize> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        Some(match &routing.kind {
            Kind::Random => fastrand::usize(..n),
            Kind::SmallestMailbox => self.least_loaded(cursor, |routee| routee.load()),
            Kind::SmallestLoad(load) => self.least_loaded(cursor, |routee| load(routee)),
            Kind::ConsistentHashing { key, .. } => {
                let point = key(msg);
                let at = self.ring.partition_point(|&(p, _)| p < point);
                self.ring
                    .get(at)
                    .or(self.ring.first())
                    .map_or(0, |&(_, i)| i)
            }
            Kind::RoundRobin
            | Kind::Broadcast { .. }
            | Kind::ScatterGather { .. }
            | Kind::TailChopping { .. } => cursor.fetch_add(1, Relaxed) % n,
        })
    }

    fn least_loaded(&self, cursor: &AtomicUsize, load: impl Fn(&Recipient<M>) -> usize) -> usize {
        let n = self.list.len();
        // Start after the previous choice so that equal loads spread over the routees.
        let start = cursor.load(Relaxed);
        let mut best = (usize::MAX, start % n);
        for offset in 0..n {
            let index = (start + offset) % n;
            let load = load(&self.list[index]);
            if load < best.0 {
                best = (load, index);
                if load == 0 {
                    break;
                }
            }
        }
        cursor.store(best.1 + 1, Relaxed);
        best.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_deterministic() {
        assert_eq!(hash_of(&"key"), hash_of(&"key"));
        assert_ne!(hash_of(&("a", 0usize)), hash_of(&("a", 1usize)));
    }
}

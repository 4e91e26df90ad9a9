//! Where entities live: entity id → shard by a stable hash, shard → node by an
//! [`Allocation`] strategy computed from the membership view alone.
//!
//! Every node computes the same table from the same view, so there is no coordinator to
//! elect, lose or hand over: the table is a pure function of the candidates (the up or
//! unreachable members with the role, sorted by age) and, for the load-aware strategy, of
//! the loads they gossiped, taken coarsely. While views differ (a member is seen by some
//! nodes and not yet by others), two nodes may name different homes for a shard; the
//! region protocol (acquire before activating, `region.rs`) and, underneath it, the
//! persistence store's single-writer check keep a second instance from ever acknowledging
//! a write.

use postbox_remote::NodeAddr;

/// How shards are placed on the nodes that may host them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Allocation {
    /// Each node gets the same number of shards, give or take one; a shard stays where it is
    /// when a node joins or leaves unless its node is over its share (rendezvous hashing with
    /// bounded loads: each shard goes to the highest-scoring node for it that still has room).
    #[default]
    LeastShards,
    /// Like [`LeastShards`](Self::LeastShards), but a node's share shrinks with the mailbox
    /// depth it gossips ([`NodeLoad::total_depth`](postbox_cluster::NodeLoad)), taken in
    /// powers of two so that small changes move nothing: a node with twice the backlog of the
    /// least loaded one hosts about half as many shards (never less than a quarter of its even
    /// share). Loads are re-read when membership changes and at every `rebalance_interval`.
    LoadAware,
    /// Every shard on the oldest candidate: what a cluster singleton uses.
    Oldest,
}

/// One node that may host shards, as the strategy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) node: NodeAddr,
    /// Messages waiting in its mailboxes, as it last gossiped.
    pub(crate) depth: usize,
}

/// Entity id → shard: FNV-1a (64 bits) of the id's bytes, modulo the shard count. Stable
/// across processes, platforms and versions, as every node must agree on it.
pub(crate) fn shard_of(entity: &str, shards: u32) -> u32 {
    shard_of_bytes(entity.as_bytes(), shards)
}

/// [`shard_of`] of an id's bytes.
pub(crate) fn shard_of_bytes(entity: &[u8], shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in entity {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(shards.max(1))).unwrap_or(0)
}

/// The score of `node` for `shard` (rendezvous hashing): a 64-bit mix of both.
fn score(shard: u32, node: &NodeAddr) -> u64 {
    let mut x = node.node_id
        ^ node.incarnation.rotate_left(32)
        ^ u64::from(shard).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64's finalizer.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Allocation {
    /// The home of every shard: an index into `candidates` (sorted oldest first), or `None`
    /// for all when there is no candidate.
    pub(crate) fn allocate(self, shards: u32, candidates: &[Candidate]) -> Vec<Option<usize>> {
        let count = shards as usize;
        if candidates.is_empty() {
            return vec![None; count];
        }
        if self == Allocation::Oldest {
            return vec![Some(0); count];
        }
        let capacities = match self {
            Allocation::LoadAware => load_aware_capacities(count, candidates),
            _ => even_capacities(count, candidates),
        };
        let mut room = capacities;
        let mut homes = vec![None; count];
        for shard in 0..shards {
            let mut ranked: Vec<(u64, usize)> = candidates
                .iter()
                .enumerate()
                .map(|(index, candidate)| (score(shard, &candidate.node), index))
                .collect();
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            let chosen = ranked
                .iter()
                .map(|(_, index)| *index)
                .find(|index| room[*index] > 0)
                .unwrap_or(ranked[0].1);
            room[chosen] = room[chosen].saturating_sub(1);
            homes[shard as usize] = Some(chosen);
        }
        homes
    }
}

/// `shards` spread over the candidates: ⌊shards / nodes⌋ each, one more for the first
/// `shards mod nodes` by node id (so that the result depends on the set, not its order).
fn even_capacities(shards: usize, candidates: &[Candidate]) -> Vec<usize> {
    let nodes = candidates.len().max(1);
    let mut capacities = vec![shards / nodes; candidates.len()];
    let mut by_id: Vec<usize> = (0..candidates.len()).collect();
    by_id.sort_by_key(|i| (candidates[*i].node.node_id, candidates[*i].node.incarnation));
    for index in by_id.into_iter().take(shards % nodes) {
        capacities[index] += 1;
    }
    capacities
}

/// Shares weighted by 1 / 2^k, k = how many doublings (in units of 64 messages) a node's backlog is above the least
/// loaded one's (at most 2), rounded up so that they add up to at least `shards`.
fn load_aware_capacities(shards: usize, candidates: &[Candidate]) -> Vec<usize> {
    // Backlogs under 64 messages count as none: noise must not move shards.
    let bucket = |depth: usize| usize::BITS - (depth / 64).leading_zeros();
    let least = candidates
        .iter()
        .map(|c| bucket(c.depth))
        .min()
        .unwrap_or(0);
    let weights: Vec<usize> = candidates
        .iter()
        .map(|c| 4usize >> (bucket(c.depth) - least).min(2))
        .collect();
    let total: usize = weights.iter().sum();
    weights
        .iter()
        .map(|weight| (shards * weight).div_ceil(total.max(1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> Candidate {
        Candidate {
            node: NodeAddr {
                addr: format!("127.0.0.1:{}", 4000 + id),
                node_id: id.wrapping_mul(0x1234_5678_9abc_def1),
                incarnation: id * 7 + 1,
            },
            depth: 0,
        }
    }

    fn counts(homes: &[Option<usize>], nodes: usize) -> Vec<usize> {
        let mut counts = vec![0; nodes];
        for home in homes {
            counts[home.unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn shard_of_is_stable_and_spread() {
        // Fixed values: every node, every version must agree.
        assert_eq!(shard_of("", 1000), (0xcbf2_9ce4_8422_2325u64 % 1000) as u32);
        assert_eq!(shard_of("account-42", 128), shard_of("account-42", 128));
        let mut hit = vec![0u32; 16];
        for i in 0..16_000 {
            hit[shard_of(&format!("key-{i}"), 16) as usize] += 1;
        }
        assert!(hit.iter().all(|n| (800..1200).contains(n)), "{hit:?}");
    }

    #[test]
    fn least_shards_is_even_and_moves_little_on_join() {
        let three: Vec<Candidate> = (0..3).map(node).collect();
        let before = Allocation::LeastShards.allocate(1000, &three);
        let spread = counts(&before, 3);
        assert!(spread.iter().all(|n| (333..=334).contains(n)), "{spread:?}");
        let mut four = three.clone();
        four.push(node(3));
        let after = Allocation::LeastShards.allocate(1000, &four);
        let spread = counts(&after, 4);
        assert!(spread.iter().all(|n| *n == 250), "{spread:?}");
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // 250 must move to the new node; bounded loads move a few more, never most.
        assert!((250..500).contains(&moved), "{moved} shards moved");
        assert!(after
            .iter()
            .zip(&before)
            .all(|(a, b)| a == b || *a == Some(3) || b.is_some()));
    }

    #[test]
    fn allocation_depends_on_the_set_not_its_order() {
        let nodes: Vec<Candidate> = (0..4).map(node).collect();
        let homes = Allocation::LeastShards.allocate(64, &nodes);
        let mut reversed = nodes.clone();
        reversed.reverse();
        let other = Allocation::LeastShards.allocate(64, &reversed);
        for (shard, home) in homes.iter().enumerate() {
            let a = &nodes[home.unwrap()].node;
            let b = &reversed[other[shard].unwrap()].node;
            assert_eq!(a, b, "shard {shard}");
        }
    }

    #[test]
    fn load_aware_gives_a_busy_node_fewer_shards() {
        let mut nodes: Vec<Candidate> = (0..3).map(node).collect();
        nodes[0].depth = 10_000;
        nodes[1].depth = 10;
        nodes[2].depth = 12;
        let spread = counts(&Allocation::LoadAware.allocate(900, &nodes), 3);
        assert!(spread[0] < 150, "{spread:?}");
        assert!(spread[1] > 350 && spread[2] > 350, "{spread:?}");
        // Equal loads: the same as least-shards.
        let even: Vec<Candidate> = (0..3).map(node).collect();
        assert_eq!(
            Allocation::LoadAware.allocate(900, &even),
            Allocation::LeastShards.allocate(900, &even)
        );
    }

    #[test]
    fn oldest_and_empty() {
        let nodes: Vec<Candidate> = (0..3).map(node).collect();
        assert!(Allocation::Oldest
            .allocate(4, &nodes)
            .iter()
            .all(|h| *h == Some(0)));
        assert!(Allocation::LeastShards
            .allocate(4, &[])
            .iter()
            .all(Option::is_none));
    }
}

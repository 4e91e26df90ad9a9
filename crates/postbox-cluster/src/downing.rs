//! Split-brain resolution: which side of a partition goes down.
//!
//! *Unreachable is not down.* When members become unreachable, no one is declared down at
//! once: a node waits until the set of members it sees unreachable has stayed the same for
//! [`down_after`](crate::FailureDetection::down_after) (Akka's *stable-after*), then its
//! [`DowningStrategy`] decides, from its own view, between three outcomes: down the
//! unreachable members (this side is the one that stays), down **this node** (this side is
//! the one that goes), or both (down-all). Every node of a side reaches the same decision
//! from the same view, so the losing side downs itself — each of its nodes stops acting as a
//! member (a `postbox-node` exits non-zero so that its orchestrator restarts it as a new
//! incarnation) — while the winning side downs the losers and quarantines them in the
//! transport. A loser that did not find out by itself (it was paused, say) learns it from the
//! winners once it can reach them again: from their gossip (each node publishes whom it
//! downed) or from their transports' `Quarantined` refusals.
//!
//! Timeline of a 3|2 partition of five nodes with the default keep-majority:
//!
//! 1. t = 0: the network splits. Each side stops hearing the other's heartbeats.
//! 2. t ≈ φ × gossip interval (1.6 s by default): each node sees the other side
//!    *unreachable*; the receptionist stops listing its services.
//! 3. t ≈ that + `down_after`: the unreachable set has been stable. On the 3 side, 3 of 5 is
//!    a majority: its nodes down the 2 others and refuse them from then on. On the 2 side,
//!    2 of 5 is not: each of its nodes downs itself, and stops.
//! 4. After the heal, nothing changes: the 2 side is gone (or back as new incarnations, which
//!    join the 3 side like any new node).
//!
//! A node that was paused (GC, SIGSTOP, a VM migration) comes back with a stale failure
//! detector that sees everyone unreachable. It notices the pause (its own clock jumped by
//! more than `down_after` between two driver rounds) and takes no decision for a grace period
//! in which fresh gossip arrives, so that it learns the others' verdict instead of passing
//! one on them.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How a node decides, once the members it sees unreachable have been stable for
/// `down_after`, which side of a partition stays (Akka's split-brain resolver strategies).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DowningStrategy {
    /// The side with more than half of the members stays; the other downs itself. When both
    /// sides are exactly half, the side with the member at the lowest address stays. (The
    /// default. In a cluster of two, losing the node with the lower address downs both.)
    #[default]
    KeepMajority,
    /// A side of at least `size` members stays; a smaller one downs itself. Pick `size` as a
    /// majority of the largest cluster you run, never more than the smallest: two sides can
    /// never both reach it, and more than `2 × size − 1` members could split into two that
    /// do.
    StaticQuorum {
        /// The smallest side that may stay.
        size: usize,
    },
    /// The side with the oldest member (the one up the longest) stays. With
    /// `down_if_alone`, an oldest member cut off on its own downs itself instead and the
    /// other side stays.
    KeepOldest {
        /// Whether the oldest, alone on its side, gives way.
        down_if_alone: bool,
    },
    /// Every member downs itself: the safest answer when any instability means the whole
    /// cluster should restart.
    DownAll,
}

impl std::fmt::Display for DowningStrategy {
    /// The strategy's name as settings spell it (`keep-majority`, `static-quorum:3`,
    /// `keep-oldest`, `keep-oldest:down-if-alone`, `down-all`); [`FromStr`](std::str::FromStr)
    /// reads it back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DowningStrategy::KeepMajority => f.write_str("keep-majority"),
            DowningStrategy::StaticQuorum { size } => write!(f, "static-quorum:{size}"),
            DowningStrategy::KeepOldest {
                down_if_alone: false,
            } => f.write_str("keep-oldest"),
            DowningStrategy::KeepOldest {
                down_if_alone: true,
            } => f.write_str("keep-oldest:down-if-alone"),
            DowningStrategy::DownAll => f.write_str("down-all"),
        }
    }
}

impl std::str::FromStr for DowningStrategy {
    type Err = String;

    /// Reads a strategy as [`Display`](std::fmt::Display) writes it; the error says what is
    /// accepted.
    fn from_str(text: &str) -> Result<Self, String> {
        const ACCEPTED: &str = "expected keep-majority, static-quorum:SIZE, keep-oldest, \
            keep-oldest:down-if-alone or down-all";
        let strategy = match text.trim() {
            "keep-majority" => DowningStrategy::KeepMajority,
            "keep-oldest" => DowningStrategy::KeepOldest {
                down_if_alone: false,
            },
            "keep-oldest:down-if-alone" => DowningStrategy::KeepOldest {
                down_if_alone: true,
            },
            "down-all" => DowningStrategy::DownAll,
            other => match other.strip_prefix("static-quorum:") {
                Some(size) => DowningStrategy::StaticQuorum {
                    size: size.trim().parse().map_err(|_| {
                        format!("`{size}` is not a whole number of members (static-quorum:SIZE)")
                    })?,
                },
                None => return Err(format!("`{other}` is not a downing strategy: {ACCEPTED}")),
            },
        };
        strategy.validate()?;
        Ok(strategy)
    }
}

/// What this node's downing has done since it started (monotonic counters), for
/// [`Cluster::downing_stats`](crate::Cluster::downing_stats) and the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DowningStats {
    /// Decisions that kept this side (and downed the unreachable members).
    pub kept_this_side: u64,
    /// Decisions that took this side down (this node downed itself).
    pub downed_this_side: u64,
    /// Down-all decisions (everyone, this node included).
    pub downed_everyone: u64,
    /// Members this node declared down by its decisions.
    pub members_downed: u64,
    /// Pauses of this node detected (its driver ran much later than planned).
    pub pauses: u64,
    /// Whether this node is down now (by its own decision or a peer's verdict).
    pub this_node_down: bool,
}

/// The counters behind [`DowningStats`].
#[derive(Debug, Default)]
pub(crate) struct DowningCounters {
    kept_this_side: AtomicU64,
    downed_this_side: AtomicU64,
    downed_everyone: AtomicU64,
    members_downed: AtomicU64,
    pauses: AtomicU64,
}

impl DowningCounters {
    pub(crate) fn decided(&self, decision: Decision, members_downed: usize) {
        let counter = match decision {
            Decision::KeepThisSide => &self.kept_this_side,
            Decision::DownThisSide => &self.downed_this_side,
            Decision::DownEveryone => &self.downed_everyone,
        };
        counter.fetch_add(1, Relaxed);
        self.members_downed
            .fetch_add(members_downed as u64, Relaxed);
    }

    pub(crate) fn paused(&self) {
        self.pauses.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, this_node_down: bool) -> DowningStats {
        DowningStats {
            kept_this_side: self.kept_this_side.load(Relaxed),
            downed_this_side: self.downed_this_side.load(Relaxed),
            downed_everyone: self.downed_everyone.load(Relaxed),
            members_downed: self.members_downed.load(Relaxed),
            pauses: self.pauses.load(Relaxed),
            this_node_down,
        }
    }
}

/// A member as the strategy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counted {
    /// Its transport address (ties are broken by the lowest).
    pub(crate) addr: String,
    /// When it came up (milliseconds since the Unix epoch, as it published), for keep-oldest.
    pub(crate) up_since: u64,
}

impl Counted {
    /// Older first; equal ages by lower address.
    fn older(a: &&Counted, b: &&Counted) -> Ordering {
        (a.up_since, &a.addr).cmp(&(b.up_since, &b.addr))
    }
}

/// What a node does about the members it sees unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// This side stays: down the unreachable members.
    KeepThisSide,
    /// This side goes: down this node.
    DownThisSide,
    /// Everyone goes.
    DownEveryone,
}

impl DowningStrategy {
    /// The decision of a node on the `reachable` side (itself included) about the
    /// `unreachable` members (at least one).
    pub(crate) fn decide(&self, reachable: &[Counted], unreachable: &[Counted]) -> Decision {
        let total = reachable.len() + unreachable.len();
        let stays = match self {
            DowningStrategy::KeepMajority => match (2 * reachable.len()).cmp(&total) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => {
                    let lowest = |side: &[Counted]| side.iter().map(|m| &m.addr).min().cloned();
                    lowest(reachable) < lowest(unreachable) || unreachable.is_empty()
                }
            },
            DowningStrategy::StaticQuorum { size } => reachable.len() >= *size,
            DowningStrategy::KeepOldest { down_if_alone } => {
                let oldest_here = reachable.iter().min_by(Counted::older);
                let oldest_there = unreachable.iter().min_by(Counted::older);
                let here_is_older = match (oldest_here, oldest_there) {
                    (Some(here), Some(there)) => Counted::older(&here, &there) == Ordering::Less,
                    (Some(_), None) => true,
                    _ => false,
                };
                if *down_if_alone
                    && here_is_older
                    && reachable.len() == 1
                    && !unreachable.is_empty()
                {
                    false
                } else if *down_if_alone && !here_is_older && unreachable.len() == 1 {
                    // The oldest is alone over there: it gives way, this side stays.
                    true
                } else {
                    here_is_older
                }
            }
            DowningStrategy::DownAll => return Decision::DownEveryone,
        };
        if stays {
            Decision::KeepThisSide
        } else {
            Decision::DownThisSide
        }
    }

    /// Checks the strategy's own settings.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            DowningStrategy::StaticQuorum { size: 0 } => {
                Err("a static quorum of 0 would let every side stay".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(addrs: &[(&str, u64)]) -> Vec<Counted> {
        addrs
            .iter()
            .map(|(addr, up_since)| Counted {
                addr: (*addr).to_owned(),
                up_since: *up_since,
            })
            .collect()
    }

    #[test]
    fn strategies_read_back_what_they_print_and_refuse_the_rest_by_name() {
        for strategy in [
            DowningStrategy::KeepMajority,
            DowningStrategy::StaticQuorum { size: 3 },
            DowningStrategy::KeepOldest {
                down_if_alone: false,
            },
            DowningStrategy::KeepOldest {
                down_if_alone: true,
            },
            DowningStrategy::DownAll,
        ] {
            assert_eq!(
                strategy.to_string().parse::<DowningStrategy>(),
                Ok(strategy)
            );
        }
        let err = "keep-minority".parse::<DowningStrategy>().unwrap_err();
        assert!(
            err.contains("`keep-minority` is not a downing strategy"),
            "{err}"
        );
        let err = "static-quorum:x".parse::<DowningStrategy>().unwrap_err();
        assert!(err.contains("`x` is not a whole number"), "{err}");
        let err = "static-quorum:0".parse::<DowningStrategy>().unwrap_err();
        assert!(err.contains("static quorum of 0"), "{err}");
    }

    #[test]
    fn keep_majority_keeps_the_bigger_side_and_both_sides_agree() {
        let big = members(&[("a", 1), ("b", 2), ("c", 3)]);
        let small = members(&[("d", 4), ("e", 5)]);
        let strategy = DowningStrategy::KeepMajority;
        assert_eq!(strategy.decide(&big, &small), Decision::KeepThisSide);
        assert_eq!(strategy.decide(&small, &big), Decision::DownThisSide);
    }

    #[test]
    fn keep_majority_breaks_a_tie_by_the_lowest_address() {
        let low = members(&[("10.0.0.1:1", 9), ("10.0.0.9:1", 9)]);
        let high = members(&[("10.0.0.2:1", 1), ("10.0.0.3:1", 1)]);
        let strategy = DowningStrategy::KeepMajority;
        assert_eq!(strategy.decide(&low, &high), Decision::KeepThisSide);
        assert_eq!(strategy.decide(&high, &low), Decision::DownThisSide);
        // Two nodes: losing the lower address downs the survivor too (documented).
        let a = members(&[("a", 1)]);
        let b = members(&[("b", 1)]);
        assert_eq!(strategy.decide(&a, &b), Decision::KeepThisSide);
        assert_eq!(strategy.decide(&b, &a), Decision::DownThisSide);
    }

    #[test]
    fn a_static_quorum_keeps_sides_of_at_least_its_size() {
        let strategy = DowningStrategy::StaticQuorum { size: 3 };
        let three = members(&[("a", 1), ("b", 1), ("c", 1)]);
        let two = members(&[("d", 1), ("e", 1)]);
        assert_eq!(strategy.decide(&three, &two), Decision::KeepThisSide);
        assert_eq!(strategy.decide(&two, &three), Decision::DownThisSide);
        assert!(DowningStrategy::StaticQuorum { size: 0 }
            .validate()
            .is_err());
    }

    #[test]
    fn keep_oldest_keeps_the_side_of_the_oldest_unless_it_is_alone_and_told_to_give_way() {
        let with_oldest = members(&[("z", 1), ("y", 5)]);
        let others = members(&[("a", 2), ("b", 3), ("c", 4)]);
        let strategy = DowningStrategy::KeepOldest {
            down_if_alone: false,
        };
        assert_eq!(
            strategy.decide(&with_oldest, &others),
            Decision::KeepThisSide
        );
        assert_eq!(
            strategy.decide(&others, &with_oldest),
            Decision::DownThisSide
        );

        let alone = members(&[("z", 1)]);
        assert_eq!(strategy.decide(&alone, &others), Decision::KeepThisSide);
        let gives_way = DowningStrategy::KeepOldest {
            down_if_alone: true,
        };
        assert_eq!(gives_way.decide(&alone, &others), Decision::DownThisSide);
        assert_eq!(gives_way.decide(&others, &alone), Decision::KeepThisSide);
    }

    #[test]
    fn down_all_downs_everyone() {
        let a = members(&[("a", 1), ("b", 1)]);
        let b = members(&[("c", 1)]);
        assert_eq!(
            DowningStrategy::DownAll.decide(&a, &b),
            Decision::DownEveryone
        );
        assert_eq!(
            DowningStrategy::DownAll.decide(&b, &a),
            Decision::DownEveryone
        );
    }
}

//! Several nodes in one process — each its own `ActorSystem`, `Remote` and `Cluster` — over
//! loopback UDP (gossip) and TCP (messages).
//!
//! Most tests run on postbox-testkit's `TestCluster` (N nodes, membership recorded from the
//! start, fast failure detection), the rest join nodes by hand where a test is about the
//! membership settings themselves. Tests wait on membership events and listings with the
//! testkit's deadlines (`within`, `until`, `ClusterNode::wait_for`); the deadlines only turn
//! a hang into a failure. With fast failure detection each test takes about a second.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;
mod membership;
mod partition;
mod receptionist;
mod router;

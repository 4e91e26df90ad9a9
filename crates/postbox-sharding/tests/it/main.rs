//! postbox-sharding's integration tests: several nodes in one process (postbox-testkit's
//! `TestCluster`), sharing one in-memory store as a cluster shares a database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

mod activation;
mod direct;
mod handoff;
mod load;
mod node_loss;
mod partition;
mod passivation;
mod recipients;
mod remember;
mod singleton;
mod split_brain;

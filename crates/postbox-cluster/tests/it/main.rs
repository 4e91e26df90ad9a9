//! Several nodes in one process — each its own `ActorSystem`, `Remote` and `Cluster` — over
//! loopback UDP (gossip) and TCP (messages).
//!
//! Tests wait on membership events and listings with a deadline (`within`); the deadlines only
//! turn a hang into a failure. Failure detection is tuned fast (`common::fast`), so each test
//! takes about a second.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;
mod membership;
mod receptionist;
mod router;

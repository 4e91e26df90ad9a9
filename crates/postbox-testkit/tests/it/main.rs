//! Tests of the testkit itself: probes pass when what they expect arrives and fail, saying
//! why, when it does not; waits and paused time; the wire client against a real transport;
//! the multi-node harness forming, crashing and restarting a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[cfg(feature = "cluster")]
mod cluster;
mod common;
mod probe;
mod time;
mod wait;
#[cfg(feature = "remote")]
mod wire;

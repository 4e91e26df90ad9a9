//! Whole-system scenarios: many actors, many concurrent clients, failures mid-stream — and the
//! books still balance.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod bank;
mod cluster;
mod crash_under_load;
mod hostile;
mod remote;
mod sharded_bank;
mod support;
mod versions;

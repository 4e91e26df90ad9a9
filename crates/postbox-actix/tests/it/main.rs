//! postbox-actix, end to end: actix actors behind `ActixHost`s on an `ActixRuntime` thread,
//! postbox on a multi-thread Tokio runtime, and (for the remote and cluster modules) a
//! second node in the same process over loopback. The two-process scenario is in the
//! workspace's `tests/actix/`.
//!
//! Tests wait on events, replies and conditions with a deadline (`within`, `until`); the
//! deadlines only turn a hang into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod cluster;
mod common;
mod lifecycle;
mod local;
mod metrics;
mod remote;
mod runtimes;

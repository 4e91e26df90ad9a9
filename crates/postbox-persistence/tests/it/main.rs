//! postbox-persistence's integration tests: the conformance suite against every store, and
//! the guarantees of persistent actors (recovery, snapshots, single writer, schema
//! evolution, store failures). The SIGKILL test is its own binary (`tests/crash.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod actors;
mod durable;
mod postgres;
mod sqlite;
mod support;

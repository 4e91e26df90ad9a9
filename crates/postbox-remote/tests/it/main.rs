//! Integration tests of `postbox-remote`: real transports on loopback TCP, in this process.
//!
//! - Two or three nodes (each its own `ActorSystem` and `Remote`) telling, asking, watching
//!   and passing refs to each other: `loopback`, `connections`, `refs`, `tls`, `tracing`.
//! - Peers that misbehave: `refusals` (bad handshakes, bad bytes, silent sockets) and
//!   `hostile` (the bound that holds against each hostile-input finding of issue 12), most
//!   spoken byte by byte with postbox-testkit's `WireClient`.
//!
//! Tests wait with the testkit's bounded waits (`within`, `until`) and probes; the deadlines
//! only turn a hang into a failure. Scenarios across processes or crates (a peer process, a
//! cluster, rolling upgrades) are in the workspace's `tests/` package.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

// `pub` items: the file is also compiled into the workspace's `postbox-tests` library.
#[allow(unreachable_pub)]
mod actors;
mod common;
mod connections;
mod hostile;
mod intercept;
mod loopback;
mod refs;
mod refusals;
mod tls;
mod tracing;

//! Integration tests of the `postbox` crate: one binary, one module per area.
//!
//! Tests synchronize on events (channels, `wait_for_stop`, asks), never on sleeps; the
//! `within` helper only bounds how long a test may wait before it fails instead of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod backoff;
mod breaker;
mod bulkhead;
mod common;
mod dead_letters;
mod delegation;
mod lifecycle;
mod messaging;
mod observability;
mod registry;
mod router;
mod shutdown;
mod supervision;

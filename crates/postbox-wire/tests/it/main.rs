//! Integration tests of `postbox-wire`: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod auth;
mod payload;
mod robustness;
mod round_trip;
mod seeds;
mod strategies;

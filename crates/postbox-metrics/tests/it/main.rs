//! Integration tests of `postbox-metrics`: one binary, one module per area.
//!
//! The exposition is checked by the real `promtool` and the dashboard by a real headless
//! Chromium (Debian's `prometheus` and `chromium` packages, which `.ci/run` installs); a test
//! that cannot find them fails rather than skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod cardinality;
mod common;
mod dashboard;
mod endpoints;
mod exposition;
mod limits;

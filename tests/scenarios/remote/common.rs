//! Helpers for the remote scenarios.

pub(crate) use crate::support::{stalled_ask, until, within};
pub(crate) use postbox_tests::*;

//! Whole-system scenarios: many actors, many concurrent clients, failures mid-stream — and the
//! books still balance.

mod bank;
mod crash_under_load;

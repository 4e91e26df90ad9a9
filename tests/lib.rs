//! Workspace-level scenarios: whole-system behaviour that crosses module (and, later, crate and
//! process) boundaries. The tests live in `scenarios/`; this library exports nothing.

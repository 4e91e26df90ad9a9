//! Workspace-level scenarios live in `tests/`; nothing is exported.

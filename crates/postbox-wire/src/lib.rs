//! postbox wire format (work in progress).

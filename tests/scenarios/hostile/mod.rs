//! The hostile-input findings (issue 12) that need more than one transport in this process:
//! a peer process out of file descriptors (`accept`), forged gossip at a joining cluster node
//! (`gossip`), impostors in a cluster (`identity`). The transport's own findings are tested in
//! postbox-remote (`crates/postbox-remote/tests/it/hostile`).

mod accept;
mod gossip;
mod identity;

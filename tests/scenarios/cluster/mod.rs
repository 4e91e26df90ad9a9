//! Cluster membership across OS processes: this test process hosts two nodes, a
//! `cluster-peer` process the third; the peer is killed (SIGKILL), restarted at the same
//! addresses, and finally leaves gracefully. Default failure detection everywhere, so the
//! detection bound checked here is the one users get.

mod process;

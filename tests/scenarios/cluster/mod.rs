//! Cluster membership across OS processes: this test process hosts two nodes, a
//! `cluster-peer` process the third; the peer is killed (SIGKILL), restarted at the same
//! addresses, and finally leaves gracefully. Default failure detection everywhere, so the
//! detection bound checked here is the one users get.

mod process;

use std::future::IntoFuture;
use std::time::Duration;

/// Fails the test instead of hanging.
async fn within<F: IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future.into_future())
        .await
        .expect("timed out (20 s)")
}

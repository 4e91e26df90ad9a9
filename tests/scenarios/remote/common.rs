//! Helpers for the remote scenarios.

pub(crate) use postbox_tests::*;
use std::future::IntoFuture;
use std::time::Duration;

/// Fails the test instead of hanging.
pub(crate) async fn within<F: IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future.into_future())
        .await
        .expect("timed out (20 s)")
}

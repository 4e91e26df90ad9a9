//! What the scenarios share: bounded waits, a long ask, and peer processes.

use postbox::prelude::*;
use postbox_tests::{Journal, Stall};
use std::future::IntoFuture;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The most a scenario waits for anything before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// Fails the test instead of hanging.
pub(crate) async fn within<F: IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future.into_future())
        .await
        .expect("timed out (20 s)")
}

/// Waits until `condition` holds (checked every millisecond), failing the test after 20 s.
pub(crate) async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out (20 s) waiting for {what}");
}

/// An ask `journal` will not answer for a minute, running on its own task.
pub(crate) fn stalled_ask(journal: &ActorRef<Journal>) -> JoinHandle<Result<(), AskError>> {
    let journal = journal.clone();
    tokio::spawn(async move {
        journal
            .ask(Stall(60_000))
            .timeout(Duration::from_secs(60))
            .await
    })
}

/// Starts `command` (stdin and stdout piped, killed when dropped) and reads its output up to
/// the line that starts with `marker`; returns the process and the rest of that line.
pub(crate) async fn start_process(mut command: Command, marker: &str) -> (Child, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the peer process");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let rest = within(async {
        while let Some(line) = lines.next_line().await.expect("read peer output") {
            if let Some(rest) = line.strip_prefix(marker) {
                return rest.to_owned();
            }
        }
        panic!("the peer exited before printing {marker:?}");
    })
    .await;
    (child, rest)
}

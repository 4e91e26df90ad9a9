//! What the scenarios share: peer processes, and how long to wait for them. (The bounded
//! waits themselves are the testkit's.)

use postbox_testkit::within;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The most a scenario waits for anything before it fails: twice the testkit's in-process
/// `PATIENCE`, for peer processes starting and clusters with the default failure detection.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

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
    let rest = within(PATIENCE, async {
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

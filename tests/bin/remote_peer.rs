//! A peer node for the multi-process scenarios: hosts a `Journal` registered as "journal",
//! prints `LISTENING <addr>` and serves until its stdin closes (or it is killed).

use postbox_tests::host;
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (system, remote, _journal) = host().await;
    println!("LISTENING {}", remote.addr());
    // Serve until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    remote.shutdown().await;
    system.shutdown().await;
}

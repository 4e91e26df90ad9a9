//! A peer node for the multi-process scenarios: hosts a `Journal` registered as "journal",
//! prints `LISTENING <addr>`, answers `stats` on its stdin with a `STATS` line of its
//! transport's counters, and serves until its stdin closes (or it is killed).

use postbox_tests::host;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (system, remote, _journal) = host().await;
    println!("LISTENING {}", remote.addr());
    // Serve until the parent closes our stdin.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "stats" {
            let s = remote.stats();
            println!(
                "STATS accept_errors={} connections_accepted={} unauthenticated={} evicted={}",
                s.accept_errors,
                s.connections_accepted,
                s.unauthenticated,
                s.refused_by(postbox_remote::Refusal::Evicted)
            );
        }
    }
    remote.shutdown().await;
    system.shutdown().await;
}

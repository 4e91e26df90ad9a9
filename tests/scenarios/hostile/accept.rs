//! Finding 4: out of file descriptors, the accept loop backs off, counts and logs (at a
//! bounded rate), frees the oldest pending connection's descriptor, and serves again — it
//! never spins. Run against a peer process whose descriptor limit the test lowers
//! (`prlimit`), since the limit is per process.

use postbox::prelude::*;
use postbox_testkit::{until_async, within, PATIENCE};
use postbox_tests::{Echo, Journal};
use std::collections::HashMap;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};

async fn stats(
    stdin: &mut ChildStdin,
    stdout: &mut Lines<BufReader<ChildStdout>>,
) -> HashMap<String, u64> {
    stdin.write_all(b"stats\n").await.expect("ask the peer");
    let line = within(PATIENCE, stdout.next_line())
        .await
        .expect("read")
        .expect("a STATS line");
    line.strip_prefix("STATS ")
        .expect("STATS")
        .split(' ')
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("a count")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_listener_backs_off_and_recovers() {
    let mut peer = Command::new(env!("CARGO_BIN_EXE_remote-peer"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the peer");
    let mut stdin = peer.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(peer.stdout.take().expect("stdout")).lines();
    let addr = within(PATIENCE, stdout.next_line())
        .await
        .expect("read")
        .and_then(|line| line.strip_prefix("LISTENING ").map(str::to_owned))
        .expect("LISTENING");
    // Room for three more descriptors than it holds now.
    let pid = peer.id().expect("pid");
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc")
        .count();
    let limit = open + 3;
    let lowered = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .await
        .expect("run prlimit");
    assert!(lowered.success(), "prlimit failed");

    const FLOOD: u64 = 40;
    let mut idle = Vec::new();
    for _ in 0..FLOOD {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let after_flood = until_async(PATIENCE, "the flood to be accepted", async || {
        let s = stats(&mut stdin, &mut stdout).await;
        (s["accept_errors"] >= 1 && s["connections_accepted"] >= FLOOD).then_some(s)
    })
    .await;
    // A spinning loop fails accept thousands of times a second; this one at most about
    // once per connection it had to make room for.
    assert!(after_flood["accept_errors"] <= 2 * FLOOD, "{after_flood:?}");
    assert!(after_flood["evicted"] >= 1, "{after_flood:?}");
    // A client is served even now, while the idle connections hold on.
    let (client_system, client) = postbox_tests::client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(&addr, "journal"))
        .await
        .expect("served out of descriptors");
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("still here".into()))).await,
        Ok("still here".to_owned())
    );
    drop(idle);
    client.shutdown().await;
    client_system.shutdown().await;
    drop(stdin);
    let _ = within(PATIENCE, peer.wait()).await;
}

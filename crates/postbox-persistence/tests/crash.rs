//! Durability across a real SIGKILL, with two processes sharing one SQLite file.
//!
//! This binary is its own harness (`harness = false`): run normally, it is the test; run
//! with `POSTBOX_CRASH_CHILD=<file>`, it is the child process that persists a stream of
//! events through a persistent actor and prints each acknowledged sequence number.
//!
//! 1. The parent opens the store, then starts the child on the same file. After 300
//!    acknowledgements it SIGKILLs the child in mid-stream, and recovers the entity in its
//!    own process — an entity re-homed after a crash: every acknowledged event must be there,
//!    intact, and nothing beyond the one write that may have been in flight.
//! 2. The parent's instance stays alive, and a new child recovers the same entity and writes.
//!    The parent's next write must be refused as a conflict: one writer per id, across
//!    processes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

use postbox::prelude::*;
use postbox_persistence::prelude::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::*;

const CHILD: &str = "POSTBOX_CRASH_CHILD";
const ID: &str = "crash|stream";
const TEST: &str = "durability_across_sigkill_with_two_processes_on_one_file";

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        return child(&path);
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST.contains(f.as_str())) {
        println!("running 0 tests");
        return;
    }
    println!("running 1 test");
    parent();
    println!("test {TEST} ... ok");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Persists `seq` as the amount of event `seq`, for ever, printing each acknowledgement.
fn child(path: &str) {
    runtime().block_on(async {
        let persistence = Persistence::sqlite(path).await.unwrap();
        let system = ActorSystem::new();
        let counter = system.spawn(counter_props(&persistence, ID)).unwrap();
        let (_, mut seq) = counter.ask(Get).await.unwrap();
        println!("ready {seq}");
        loop {
            seq += 1;
            match counter.ask(Add(seq)).await.unwrap() {
                Ok(_) => println!("acked {seq}"),
                Err(PersistError::Conflict { .. }) => {
                    println!("conflict {seq}");
                    return;
                }
                Err(e) => panic!("child: {e}"),
            }
        }
    });
}

/// A child process and its output lines.
struct Writer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Writer {
    fn start(path: &std::path::Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD, path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line (a hang guard of 30 s; `None` at the end of the output).
    fn line(&self) -> Option<String> {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the child went silent"),
        }
    }

    fn seq(line: &str, word: &str) -> Option<u64> {
        line.strip_prefix(word)?.trim().parse().ok()
    }

    /// SIGKILLs the child and returns every sequence number it reported acknowledged.
    fn kill_after(mut self, acks: usize) -> Vec<u64> {
        let mut acked = Vec::new();
        while acked.len() < acks {
            let line = self.line().expect("the child ended early");
            acked.extend(Self::seq(&line, "acked "));
        }
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        // What the child printed before it died is still in the pipe.
        while let Some(line) = self.line() {
            acked.extend(Self::seq(&line, "acked "));
        }
        acked
    }
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    runtime().block_on(async {
        // This process has the file open the whole time, as a second node would.
        let persistence = Persistence::sqlite(&path).await.unwrap();

        // 1. Kill the writer in mid-stream; recover here.
        let writer = Writer::start(&path);
        assert_eq!(writer.line().as_deref(), Some("ready 0"));
        let acked = writer.kill_after(300);
        let last_acked = *acked.iter().max().unwrap();
        assert_eq!(acked, (1..=last_acked).collect::<Vec<_>>());

        let system = ActorSystem::new();
        let rehomed = system.spawn(counter_props(&persistence, ID)).unwrap();
        let (tally, seq) = rehomed.ask(Get).await.unwrap();
        assert!(
            seq >= last_acked,
            "acknowledged up to {last_acked}, recovered only {seq}"
        );
        assert!(
            seq <= last_acked + 1,
            "recovered {seq}: more than the one write in flight after {last_acked}"
        );
        assert_eq!(
            tally.amounts,
            (1..=seq).collect::<Vec<_>>(),
            "every stored event intact, in order"
        );
        assert_eq!(
            rehomed.ask(Add(seq + 1)).await.unwrap(),
            Ok(tally.total + seq + 1),
            "the re-homed entity carries on"
        );

        // 2. A second live instance in another process: it writes, so ours must not.
        let writer = Writer::start(&path);
        let ready = writer.line().unwrap();
        assert_eq!(Writer::seq(&ready, "ready "), Some(seq + 1));
        let first = writer.line().unwrap();
        assert_eq!(Writer::seq(&first, "acked "), Some(seq + 2));
        match rehomed.ask(Add(0)).await.unwrap() {
            Err(PersistError::Conflict { .. }) => {}
            other => panic!("the stale instance must get a conflict, got {other:?}"),
        }
        let acked = writer.kill_after(50);
        let last_acked = acked.into_iter().max().unwrap();
        let stored = stored_amounts(&persistence, ID).await;
        assert!(stored.len() as u64 >= last_acked);
        assert!(
            stored.iter().all(|&(seq, amount)| seq == amount),
            "the refused write left no trace"
        );
        system.shutdown().await;
    });
}

//! Cluster membership on one machine, default failure detection (plain `main`,
//! `harness = false`):
//!
//! - **kill → down**: three observer nodes in this process and one node in a child process
//!   (this binary re-executed with `--child <seed>`); the child is SIGKILLed and the time until
//!   *every* observer has seen it `Down` is measured. Repeated `--kills` times.
//! - **convergence**: `--nodes` nodes in this process (each its own `ActorSystem`, `Remote`
//!   and `Cluster`), all seeded with the first, started together; the time from the first
//!   join until every node sees every node `Up`. Repeated `--rounds` times.
//!
//! Usage: `cargo bench --bench cluster -- [--kills N] [--rounds N] [--nodes N]` (defaults 10,
//! 5, 10). Prints the median and the maximum of each.

use postbox::prelude::*;
use postbox_cluster::{Cluster, ClusterConfig, ClusterEvent, MemberStatus};
use postbox_remote::{Remote, RemoteConfig};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const CLUSTER: &str = "bench";
const SECRET: &[u8] = b"bench-secret";

struct Node {
    system: ActorSystem,
    remote: Remote,
    cluster: Cluster,
}

async fn node(seeds: &[SocketAddr]) -> Node {
    let system = ActorSystem::new();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let remote = Remote::start(&system, RemoteConfig::new(any, CLUSTER, SECRET))
        .await
        .expect("remote");
    let config =
        ClusterConfig::new(CLUSTER, SECRET, any).seeds(seeds.iter().map(ToString::to_string));
    let cluster = Cluster::join(&system, &remote, config).await.expect("join");
    Node {
        system,
        remote,
        cluster,
    }
}

async fn stop(nodes: Vec<Node>) {
    for node in nodes {
        node.cluster.kill();
        node.remote.shutdown().await;
        node.system.shutdown().await;
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    let all: Vec<String> = samples
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect();
    println!(
        "{what}: median {:.2} s, max {:.2} s over {} runs [{}]",
        median.as_secs_f64(),
        max.as_secs_f64(),
        samples.len(),
        all.join(" ")
    );
}

/// The child: one node, `READY <remote addr> <incarnation>`, then idle until killed.
async fn child(seed: SocketAddr) {
    let node = node(&[seed]).await;
    println!(
        "READY {} {}",
        node.remote.addr(),
        node.cluster.node().incarnation
    );
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

async fn kill_to_down(runs: usize) -> Vec<Duration> {
    let first = node(&[]).await;
    let seed = first.cluster.gossip_addr();
    let observers = vec![first, node(&[seed]).await, node(&[seed]).await];
    let mut samples = Vec::new();
    for _ in 0..runs {
        let mut events: Vec<_> = observers.iter().map(|n| n.cluster.events()).collect();
        let mut child = tokio::process::Command::new(std::env::current_exe().expect("this binary"))
            .args(["--child", &seed.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the child node");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = loop {
            let line = lines
                .next_line()
                .await
                .expect("read")
                .expect("child exited");
            if let Some(rest) = line.strip_prefix("READY ") {
                break rest.to_owned();
            }
        };
        let mut fields = ready.split(' ');
        let addr = fields.next().expect("addr").to_owned();
        let incarnation: u64 = fields.next().expect("incarnation").parse().expect("number");
        let is_child = |e: &ClusterEvent, status| {
            e.member().node.addr == addr
                && e.member().node.incarnation == incarnation
                && e.member().status == status
        };
        for events in &mut events {
            while !is_child(&events.recv().await.expect("events"), MemberStatus::Up) {}
        }
        let killed = Instant::now();
        child.kill().await.expect("SIGKILL");
        for events in &mut events {
            while !is_child(&events.recv().await.expect("events"), MemberStatus::Down) {}
        }
        samples.push(killed.elapsed());
    }
    stop(observers).await;
    samples
}

async fn convergence(rounds: usize, n: usize) -> Vec<Duration> {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let first = node(&[]).await;
        let seed = first.cluster.gossip_addr();
        let mut joining = Vec::new();
        for _ in 1..n {
            joining.push(tokio::spawn(async move { node(&[seed]).await }));
        }
        let mut nodes = vec![first];
        for join in joining {
            nodes.push(join.await.expect("join task"));
        }
        let everyone: HashSet<_> = nodes.iter().map(|n| n.cluster.node().clone()).collect();
        let mut waits = Vec::new();
        for node in &nodes {
            let mut events = node.cluster.events();
            let everyone = everyone.clone();
            waits.push(tokio::spawn(async move {
                let mut up = HashSet::new();
                while up != everyone {
                    if let ClusterEvent::MemberUp(member) = events.recv().await.expect("events") {
                        up.insert(member.node);
                    }
                }
            }));
        }
        for wait in waits {
            wait.await.expect("wait task");
        }
        samples.push(started.elapsed());
        stop(nodes).await;
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let seed = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .expect("--child <seed>");
        child(seed).await;
        return;
    }
    let kills = arg("--kills", 10);
    let rounds = arg("--rounds", 5);
    let nodes = arg("--nodes", 10);
    println!(
        "cluster membership, default failure detection (200 ms gossip, phi 8, down after 1 s)"
    );
    report(
        "SIGKILL -> Down seen by all 3 other nodes",
        tokio::time::timeout(Duration::from_secs(600), kill_to_down(kills))
            .await
            .expect("kill bench hung"),
    );
    report(
        &format!("{nodes} nodes: first join -> all see all Up"),
        tokio::time::timeout(Duration::from_secs(600), convergence(rounds, nodes))
            .await
            .expect("convergence bench hung"),
    );
}

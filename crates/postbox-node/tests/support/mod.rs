//! Real `postbox-node` processes for the process-level tests: started with the binary's own
//! flags (on loopback, or inside a network namespace), their `READY` line parsed, their
//! stderr kept for assertions, and the client commands run against them.

#![allow(dead_code)] // each test binary uses its part

use postbox_testkit::until_async;
pub(crate) mod lan;

use serde_json::Value;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_postbox-node");
pub(crate) const CLUSTER: &str = "node-tests";
pub(crate) const SECRET: &str = "node-tests-secret";

/// The longest any condition in these tests may take to become true.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

/// A `postbox-node` command with the test cluster's name and secret, run directly or, with
/// `netns`, inside that network namespace.
pub(crate) fn command(netns: Option<&str>, args: &[&str]) -> Command {
    let mut command = match netns {
        None => Command::new(BIN),
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns, BIN]);
            command
        }
    };
    command
        .args(args)
        .env_remove("POSTBOX_CONFIG")
        .env("POSTBOX_NODE_CLUSTER", CLUSTER)
        .env("POSTBOX_NODE_SECRET", SECRET)
        // Each node keeps its own store unless a test shares one (`--store sqlite
        // --store-path`): no file is left behind in the working directory.
        .env("POSTBOX_PERSISTENCE_STORE", "memory")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A running `postbox-node start`.
pub(crate) struct NodeProcess {
    pub(crate) child: Child,
    pub(crate) remote: String,
    pub(crate) gossip: String,
    pub(crate) metrics: String,
    pub(crate) incarnation: u64,
    pub(crate) netns: Option<String>,
    /// What it wrote to stderr so far.
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Starts a node with its transport and gossip at the given addresses and `extra` flags;
    /// returns once it printed READY.
    pub(crate) async fn start(
        netns: Option<&str>,
        remote: &str,
        gossip: &str,
        extra: &[&str],
    ) -> Self {
        Self::start_in(None, netns, remote, gossip, extra).await
    }

    /// [`start`](Self::start), with `folder` (if any) as the working directory and the
    /// node's default store — as the README's local cluster runs: nodes started from one
    /// folder share `postbox-data/postbox.db` in it.
    pub(crate) async fn start_in(
        folder: Option<&std::path::Path>,
        netns: Option<&str>,
        remote: &str,
        gossip: &str,
        extra: &[&str],
    ) -> Self {
        let mut args = vec![
            "start",
            "--remote-listen",
            remote,
            "--gossip-listen",
            gossip,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut command = command(netns, &args);
        if let Some(folder) = folder {
            command
                .current_dir(folder)
                .env_remove("POSTBOX_PERSISTENCE_STORE");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postbox-node");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut errors = BufReader::new(child.stderr.take().expect("piped")).lines();
        tokio::spawn({
            let stderr = stderr.clone();
            async move {
                while let Ok(Some(line)) = errors.next_line().await {
                    eprintln!("[node] {line}");
                    stderr.lock().unwrap().push(line);
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = tokio::time::timeout(BOUND, async {
            while let Some(line) = stdout.next_line().await.expect("read node output") {
                if let Some(rest) = line.strip_prefix("READY ") {
                    return rest.to_owned();
                }
            }
            panic!("postbox-node exited before it was ready");
        })
        .await
        .expect("postbox-node ready in time");
        // Keep reading stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let field = |name: &str| {
            ready
                .split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {ready:?}"))
                .to_owned()
        };
        NodeProcess {
            remote: field("remote"),
            gossip: field("gossip"),
            metrics: field("metrics"),
            incarnation: field("incarnation").parse().unwrap(),
            child,
            netns: netns.map(str::to_owned),
            stderr,
        }
    }

    /// The node's `/metrics` exposition (loopback nodes only), read under [`BOUND`].
    pub(crate) async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&self.metrics).await?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: node\r\n\r\n")
                .await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            std::io::Result::Ok(response)
        };
        let response = tokio::time::timeout(BOUND, exchange)
            .await
            .expect("metrics answered in time")
            .expect("metrics readable");
        assert!(
            response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
            "{response}"
        );
        response
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`, `TERM`) to the process.
    pub(crate) async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits for the process to exit (at most `bound`).
    pub(crate) async fn exited(&mut self, bound: Duration) -> ExitStatus {
        tokio::time::timeout(bound, self.child.wait())
            .await
            .expect("exited in time")
            .expect("wait")
    }

    /// Whether any stderr line so far contains `text`.
    pub(crate) fn logged(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// The members this node reports (through its own namespace, if any).
    pub(crate) async fn members(&self) -> Vec<Value> {
        let members = json(
            self.netns.as_deref(),
            &["members", "--json", "--node", &self.remote],
        )
        .await;
        members.as_array().expect("a list").clone()
    }

    /// This node's status as `members` reports it.
    pub(crate) fn status_in(&self, members: &[Value]) -> Option<String> {
        status_of(members, &self.remote, self.incarnation)
    }
}

/// Runs a client command to completion.
pub(crate) async fn run(netns: Option<&str>, args: &[&str]) -> Output {
    let output = command(netns, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    tokio::time::timeout(BOUND, output)
        .await
        .expect("command finished in time")
        .expect("run postbox-node")
}

/// Runs a client command that must succeed and print JSON.
pub(crate) async fn json(netns: Option<&str>, args: &[&str]) -> Value {
    let output = run(netns, args).await;
    assert!(
        output.status.success(),
        "postbox-node {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

pub(crate) fn status_of(members: &[Value], remote: &str, incarnation: u64) -> Option<String> {
    members
        .iter()
        .find(|m| m["address"] == remote && m["incarnation"] == incarnation)
        .map(|m| m["status"].as_str().unwrap_or_default().to_owned())
}

/// Waits until `observer` reports each of `nodes` with `status`.
pub(crate) async fn until_seen(observer: &NodeProcess, nodes: &[&NodeProcess], status: &str) {
    until_async(BOUND, format!("every node seen {status}"), async || {
        let members = observer.members().await;
        nodes
            .iter()
            .all(|n| n.status_in(&members).as_deref() == Some(status))
            .then_some(())
    })
    .await;
}

//! Real `postbox-node` processes on loopback, driven through the binary's own commands: a
//! three-node cluster forms, a service on one node answers through the others, a SIGKILLed
//! node is seen down (its services gone, asks in flight to it failed with a node-down error)
//! and rejoins as a new incarnation, SIGTERM makes a node leave (seen `left`, not `down`), and
//! bad config or a wrong secret is refused with a clear error.
//!
//! Every wait is for a condition, bounded by [`BOUND`]; the only timing asserted is the
//! failure detector's: with the default tuning a killed node must be seen down within
//! [`DOWN_BOUND`].

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use postbox_testkit::until_async;
use serde_json::Value;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::process::Command;

mod support;

use support::*;

/// Default failure detection: unreachable after phi 8 × 200 ms heartbeats (~1.6 s), down
/// 1 s later; 5 s leaves room for a loaded 2-core CI machine.
const DOWN_BOUND: Duration = Duration::from_secs(5);

/// Starts a node on free loopback ports with `extra` flags; returns once it printed READY.
async fn start(extra: &[&str]) -> NodeProcess {
    start_at("127.0.0.1:0", "127.0.0.1:0", extra).await
}

/// Starts a node with its transport and gossip at the given addresses.
async fn start_at(remote: &str, gossip: &str, extra: &[&str]) -> NodeProcess {
    NodeProcess::start(None, remote, gossip, extra).await
}

/// Runs a client command to completion.
async fn run(args: &[&str]) -> Output {
    support::run(None, args).await
}

/// Runs a client command that must succeed and print JSON.
async fn json(args: &[&str]) -> Value {
    support::json(None, args).await
}

async fn members(node: &NodeProcess) -> Vec<Value> {
    node.members().await
}

fn command(args: &[&str]) -> Command {
    support::command(None, args)
}

async fn send(via: &NodeProcess, service: &str, body: &str) -> Output {
    run(&["send", "--json", "--node", &via.remote, service, body]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_survive_a_crash_and_see_a_restart() {
    // Node 1 hosts the services; 2 and 3 host none and must reach 1's. Node 3 runs on a
    // single worker thread (`node.worker_threads`).
    let one = start(&[]).await;
    let two = start(&["--services", "", "--seed", &one.gossip]).await;
    let three = start(&[
        "--services",
        "",
        "--seed",
        &one.gossip,
        "--worker-threads",
        "1",
    ])
    .await;
    let everyone = [&one, &two, &three];

    for node in everyone {
        until_async(BOUND, "every node sees three up members", async || {
            let members = members(node).await;
            let up = everyone
                .iter()
                .all(|n| status_of(&members, &n.remote, n.incarnation).as_deref() == Some("up"));
            up.then_some(())
        })
        .await;
    }

    // A service registered on node 1 answers through nodes 2 and 3, one counter per key,
    // hosted on node 1 (the only member with the `counter` role).
    for (i, via) in [&two, &three, &one].into_iter().enumerate() {
        let output = send(via, "counter", r#"{"key": "visits", "add": 1}"#).await;
        assert!(output.status.success(), "{output:?}");
        let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(reply["node"], one.remote.as_str());
        assert_eq!(reply["reply"]["value"], i as u64 + 1);
        assert_eq!(reply["reply"]["key"], "visits");
    }
    let services = json(&["services", "--json", "--node", &three.remote]).await;
    let counter = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "counter")
        .expect("counter listed");
    assert_eq!(counter["nodes"], serde_json::json!([one.remote]));
    // The actors command shows node 1's counter entity and mailbox depths.
    let actors = json(&["actors", "--json", "--top", "100", "--node", &one.remote]).await;
    assert!(actors["actors"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |a| a["actor_type"].as_str().unwrap().ends_with("CounterEntity") && a["processed"] == 3
        ));

    // Two slow echoes through node 2: the first is being handled on node 1, the second waits
    // in its mailbox (depth 1), so both asks are in flight when node 1 dies.
    let slow = r#"{"message": "late", "delay_ms": 60000}"#;
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            command(&[
                "send",
                "--timeout",
                "60s",
                "--node",
                &two.remote,
                "echo",
                slow,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    until_async(BOUND, "node 1's echo has a message waiting", async || {
        let actors = json(&["actors", "--json", "--node", &one.remote]).await;
        actors["actors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["path"] == "/user/echo" && a["depth"] == 1)
            .then_some(())
    })
    .await;

    let mut one = one;
    one.child.start_kill().unwrap();
    let killed = Instant::now();
    one.child.wait().await.unwrap();
    for node in [&two, &three] {
        until_async(DOWN_BOUND, "the killed node is seen down", async || {
            let members = members(node).await;
            (status_of(&members, &one.remote, one.incarnation).as_deref() == Some("down"))
                .then_some(())
        })
        .await;
    }
    eprintln!("SIGKILL to down on both survivors: {:?}", killed.elapsed());

    // The asks in flight failed, saying the node went down.
    for ask in in_flight {
        let output = tokio::time::timeout(BOUND, ask.wait_with_output())
            .await
            .expect("the in-flight ask ended")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("node") && stderr.contains("down"),
            "{stderr}"
        );
    }
    // Its services are gone from the registry everywhere.
    for node in [&two, &three] {
        let output = send(node, "counter", r#"{"key": "visits"}"#).await;
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("has no instance on any up member"),
            "{stderr}"
        );
    }

    // Restarted at the same addresses, it is a new member; the old one stays down.
    let again = start_at(&one.remote, &one.gossip, &["--seed", &two.gossip]).await;
    assert_ne!(again.incarnation, one.incarnation);
    for node in [&two, &three] {
        until_async(
            BOUND,
            "the restarted node is up as a new incarnation",
            async || {
                let members = members(node).await;
                let new = status_of(&members, &again.remote, again.incarnation);
                let old = status_of(&members, &one.remote, one.incarnation);
                (new.as_deref() == Some("up") && old.as_deref() == Some("down")).then_some(())
            },
        )
        .await;
    }
    // And its fresh counter answers through the others.
    let output = send(&three, "counter", r#"{"key": "visits", "add": 1}"#).await;
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reply["reply"]["value"], 1, "{output:?}");
    assert_eq!(reply["node"], again.remote.as_str());
    drop(again);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_the_cluster_gracefully_and_exits_zero() {
    let one = start(&[]).await;
    let mut two = start(&["--seed", &one.gossip, "--shutdown-timeout", "10s"]).await;
    until_async(BOUND, "node 1 sees node 2 up", async || {
        let members = members(&one).await;
        (status_of(&members, &two.remote, two.incarnation).as_deref() == Some("up")).then_some(())
    })
    .await;
    // The metrics endpoint is on by default and reports both members.
    let health = http_get(&two.metrics, "/health/ready").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let listed = http_get(&one.metrics, "/members").await;
    assert!(listed.contains(&two.remote), "{listed}");

    let pid = two.child.id().expect("running") as i32;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(BOUND, two.child.wait())
        .await
        .expect("node 2 exits within its shutdown deadline")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "graceful stop exits 0");
    let members = members(&one).await;
    assert_eq!(
        status_of(&members, &two.remote, two.incarnation).as_deref(),
        Some("left"),
        "{members:?}"
    );
}

/// A minimal HTTP/1.1 GET (the tests need no HTTP client crate for two requests).
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(BOUND, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    response
}

#[tokio::test]
async fn bad_config_is_refused_naming_the_setting() {
    let output = run(&["start", "--down-after", "soon"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`cluster.down_after` (from flag --down-after): `soon` is not a duration"),
        "{stderr}"
    );

    // Refused before the runtime is built (Tokio would panic on zero workers).
    let output = run(&["start", "--worker-threads", "0"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`node.worker_threads`") && stderr.contains("must be from 1 to 1024"),
        "{stderr}"
    );

    let dir = std::env::temp_dir().join(format!("postbox-node-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, "[metrics]\nlisten = \"127.0.0.1:9464\"\nport = 1\n").unwrap();
    let output = run(&["config", "--config", file.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`metrics.port`") && stderr.contains("unknown field"),
        "{stderr}"
    );

    // `config` prints the effective config: file < environment < flags.
    std::fs::write(
        &file,
        "[cluster]\ndown_after = \"3s\"\nseeds = [\"file:1\"]\n",
    )
    .unwrap();
    let mut config = command(&[
        "config",
        "--config",
        file.to_str().unwrap(),
        "--down-after",
        "2s",
    ]);
    config.env("POSTBOX_CLUSTER_SEEDS", "env:1,env:2");
    let output = config.output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("down_after = \"2s\""), "{printed}");
    assert!(
        printed.contains("seeds = [\"env:1\", \"env:2\"]"),
        "{printed}"
    );
    assert!(printed.contains("secret = \"<redacted>\""), "{printed}");
    assert!(!printed.contains(SECRET), "{printed}");
    std::fs::remove_dir_all(&dir).unwrap();

    let output = run(&[
        "start",
        "--remote-listen",
        "127.0.0.1:0",
        "--gossip-listen",
        "127.0.0.1:0",
        "--services",
        "echo,kv",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service `kv`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_secret_is_refused() {
    let one = start(&[]).await;
    // A node with another secret cannot join through it...
    let mut intruder = command(&[
        "start",
        "--remote-listen",
        "127.0.0.1:0",
        "--gossip-listen",
        "127.0.0.1:0",
        "--metrics",
        "false",
        "--seed",
        &one.gossip,
    ]);
    intruder.env("POSTBOX_NODE_SECRET", "not-the-secret");
    let output = tokio::time::timeout(
        BOUND,
        intruder
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("the refused node exits")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    // ... and a client with another secret cannot query it.
    let mut client = command(&["members", "--node", &one.remote]);
    client.env("POSTBOX_NODE_SECRET", "not-the-secret");
    let output = client.output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cluster secret"), "{stderr}");
    // The node kept serving.
    assert_eq!(members(&one).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_mutual_tls_serves_only_tls_clients() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../postbox-remote/tests/fixtures/tls"
    );
    let ca = format!("{fixtures}/ca.pem");
    let cert = format!("{fixtures}/node.pem");
    let key = format!("{fixtures}/node-key.pem");
    let tls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let node = start(&tls).await;

    let mut args = vec![
        "send",
        "--json",
        "--node",
        &node.remote,
        "echo",
        r#"{"message": 7}"#,
    ];
    args.extend_from_slice(&tls);
    let reply = json(&args).await;
    assert_eq!(reply["reply"]["message"], 7);

    // Without TLS the client is refused, and told why.
    let output = run(&["members", "--node", &node.remote]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot talk to the node"), "{stderr}");

    // A missing key file is refused at start, naming the file.
    let output = run(&[
        "start",
        "--remote-listen",
        "127.0.0.1:0",
        "--gossip-listen",
        "127.0.0.1:0",
        "--metrics",
        "false",
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        "/nonexistent/key.pem",
    ])
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/key.pem"), "{stderr}");
}

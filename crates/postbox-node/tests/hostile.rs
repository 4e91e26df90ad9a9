//! The `postbox-node` binary against input meant to hurt it: settings and environments that
//! used to panic (exit 101) or to be refused only once the node was half started, client
//! commands aimed at an address that never answers, bodies too large for a command line, and
//! HTTP clients that never finish a request.
//!
//! Every wait is for a condition, bounded by [`BOUND`]. The only timing asserted is the one
//! a deadline promises: a client command given `--timeout 1s` ends within [`SLACK`] of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use serde_json::Value;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

mod support;

use support::{NodeProcess, BOUND};

/// How far past its `--timeout` a client command may end: starting the process and its
/// runtime, and closing its transport (at most a second), on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// A `postbox-node` command with the test cluster's name and secret.
fn command(args: &[&str]) -> Command {
    support::command(None, args)
}

/// Runs a command to completion.
async fn finish(mut command: Command) -> Output {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    tokio::time::timeout(BOUND, output)
        .await
        .expect("command finished in time")
        .expect("run postbox-node")
}

async fn run(args: &[&str]) -> Output {
    finish(command(args)).await
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Starts a node on free loopback ports with `extra` flags; returns once it printed READY.
async fn start(extra: &[&str]) -> NodeProcess {
    NodeProcess::start(None, "127.0.0.1:0", "127.0.0.1:0", extra).await
}

/// Settings that panicked (exit 101), or passed the node's check and failed in
/// `Cluster::join` under the cluster's own names (exit 1), or were accepted and burnt a core.
#[tokio::test]
async fn out_of_range_settings_exit_2_naming_the_setting_before_anything_starts() {
    let huge = "4000000000000000h";
    let long_cluster = "c".repeat(300);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("gossip-interval", huge, "cluster.gossip_interval"),
        ("gossip-interval", "0.001ms", "cluster.gossip_interval"),
        ("leave-timeout", huge, "cluster.leave_timeout"),
        ("join-timeout", huge, "cluster.join_timeout"),
        ("shutdown-timeout", huge, "node.shutdown_timeout"),
        ("phi-threshold", "1e300", "cluster.phi_threshold"),
        ("down-after", "700s", "cluster.down_after"),
        ("role", "a b", "node.roles"),
        ("cluster", &long_cluster, "node.cluster"),
        ("seed", "not-an-address", "cluster.seeds"),
        ("metrics-max-connections", "0", "metrics.max_connections"),
        (
            "metrics-header-read-timeout",
            huge,
            "metrics.header_read_timeout",
        ),
    ];
    let runs = cases.into_iter().map(|(flag, value, key)| {
        let (flag, value, key) = (flag.to_owned(), value.to_owned(), key.to_owned());
        async move {
            let output = run(&[
                "start",
                "--remote-listen",
                "127.0.0.1:0",
                "--gossip-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                &format!("--{flag}"),
                &value,
            ])
            .await;
            (flag, value, key, output)
        }
    });
    for (flag, value, key, output) in futures_join_all(runs).await {
        let stderr = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "--{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("`{key}` (from flag --{flag})")),
            "--{flag} {value}: {stderr}"
        );
        // Refused by the config check: no node ever started (it would have logged).
        assert!(!stderr.contains("joining the cluster"), "{stderr}");
        assert!(output.stdout.is_empty(), "--{flag} {value}: started");
    }
}

/// Runs the futures concurrently (the tests need no futures crate for one join).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

#[cfg(unix)]
#[tokio::test]
async fn the_environment_and_arguments_may_hold_bytes_that_are_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let junk = OsStr::from_bytes(b"caf\xe9");

    // Someone else's variable: none of our business.
    let mut config = command(&["config"]);
    config.env("SOME_LATIN1_VARIABLE", junk);
    let output = finish(config).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Ours: refused, named, exit 2.
    let mut config = command(&["config"]);
    config.env("POSTBOX_NODE_NAME", junk);
    let output = finish(config).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`node.name` (from environment variable POSTBOX_NODE_NAME)"),
        "{}",
        stderr(&output)
    );

    // A flag's value: refused by the command line parser.
    let mut config = command(&["config"]);
    config.arg("--role").arg(junk);
    let output = finish(config).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("invalid UTF-8"),
        "{}",
        stderr(&output)
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_longest_leave_timeout_leaves_and_exits_zero() {
    let mut node = start(&["--leave-timeout", "1h", "--shutdown-timeout", "1h"]).await;
    let pid = node.child.id().expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(BOUND, node.child.wait())
        .await
        .expect("the node exits")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

/// A TCP listener that accepts connections and never says a word: a node behind a network
/// cut, or a hung one, as a client sees it.
async fn silent_listener() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_end_at_their_deadline_when_the_node_never_answers() {
    let (silent, listener) = silent_listener().await;
    let commands: Vec<Vec<String>> = [
        vec!["members"],
        vec!["actors"],
        vec!["services"],
        vec!["send", "echo", r#"{"message": "hi"}"#],
    ]
    .into_iter()
    .map(|args| {
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        args.extend([
            "--node".into(),
            silent.clone(),
            "--timeout".into(),
            "1s".into(),
        ]);
        args
    })
    .collect();
    let runs = commands.into_iter().map(|args| async move {
        let started = Instant::now();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run(&refs).await;
        (args, started.elapsed(), output)
    });
    for (args, took, output) in futures_join_all(runs).await {
        let stderr = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("no answer from the node at {silent} within 1s")),
            "{args:?}: {stderr}"
        );
        assert!(
            took < Duration::from_secs(1) + SLACK,
            "{args:?} took {took:?} with --timeout 1s"
        );
    }
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_takes_a_large_body_from_a_file_or_stdin_and_refuses_bad_ones_before_sending() {
    let node = start(&[]).await;
    let dir = std::env::temp_dir().join(format!("postbox-node-bodies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // 1 MiB: eight times what a command line can carry.
    let text = "x".repeat(1 << 20);
    let body = serde_json::json!({ "message": text }).to_string();
    let file = dir.join("body.json");
    std::fs::write(&file, &body).unwrap();
    let check = |output: &Output| {
        assert!(output.status.success(), "{}", stderr(output));
        let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            reply["reply"]["message"].as_str().map(str::len),
            Some(1 << 20)
        );
    };
    let from_file = run(&[
        "send",
        "--json",
        "--node",
        &node.remote,
        "echo",
        "--body-file",
        file.to_str().unwrap(),
    ])
    .await;
    check(&from_file);

    let mut from_stdin = command(&[
        "send",
        "--json",
        "--node",
        &node.remote,
        "echo",
        "--body-file",
        "-",
    ]);
    from_stdin
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = from_stdin.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        stdin.write_all(body.as_bytes()).await.unwrap();
    });
    let output = tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .expect("send from stdin finished")
        .unwrap();
    writer.await.unwrap();
    check(&output);

    // Refused before anything is sent: the node given is one that would never answer, so
    // a refusal that came after connecting would read differently.
    let (silent, listener) = silent_listener().await;
    let too_large = dir.join("too-large.json");
    std::fs::write(
        &too_large,
        serde_json::json!({ "message": "x".repeat(4 << 20) }).to_string(),
    )
    .unwrap();
    let not_json = dir.join("not.json");
    std::fs::write(&not_json, "{\"message\": ").unwrap();
    let missing = dir.join("missing.json");
    let refused = [
        (
            too_large.to_str().unwrap(),
            "larger than 4194304 bytes (4 MiB)",
        ),
        (not_json.to_str().unwrap(), "is not JSON"),
        (missing.to_str().unwrap(), "cannot read the body from"),
    ];
    for (path, why) in refused {
        let output = run(&["send", "--node", &silent, "echo", "--body-file", path]).await;
        let stderr = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{path}: {stderr}");
        assert!(
            stderr.contains(why) && stderr.contains(path),
            "{path}: {stderr}"
        );
    }
    let both = run(&["send", "--node", &silent, "echo", "{}", "--body-file", "x"]).await;
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
    listener.abort();
    std::fs::remove_dir_all(&dir).unwrap();
    drop(node);
}

/// A minimal HTTP/1.1 GET; returns the whole response.
async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(BOUND, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_holds_http_clients_to_the_node_s_settings() {
    let node = start(&[
        "--metrics-max-connections",
        "2",
        "--metrics-header-read-timeout",
        // Long enough that the third client surely comes while the first two are held.
        "2s",
    ])
    .await;
    // Two clients that never send a request take both places...
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(&node.metrics).await.unwrap());
    }
    // ... so a third is refused at once ...
    let refused = http_get(&node.metrics, "/health/live").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // ... until the header read timeout has closed them.
    for stream in &mut idle {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut rest))
            .await
            .expect("an idle client is disconnected");
        assert!(read.is_err() || rest.is_empty());
    }
    let scrape = http_get(&node.metrics, "/metrics").await;
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    for series in [
        "postbox_http_connections_max 2",
        "postbox_http_connections_refused_total 1",
        "postbox_http_header_timeouts_total 2",
    ] {
        assert!(
            scrape.lines().any(|line| line == series),
            "no {series} in\n{scrape}"
        );
    }
}

//! Shared fixtures: actors held busy so their mailboxes fill, a small HTTP client, the tools.

use postbox::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

pub(crate) use postbox_testkit::{until, within};

/// The hang guard of these tests: 30 s, three times the testkit's `PATIENCE`, because they
/// run real tools (promtool, Chromium) and a million actors beside each other.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// An actor whose handler waits for a gate, so that what is sent after the first message
/// stays in its mailbox: a mailbox under load, with a depth that does not move.
pub(crate) struct Stuck {
    pub(crate) gate: Arc<Notify>,
}
impl Actor for Stuck {}

/// Held until the gate opens.
pub(crate) struct Hold;
impl Message for Hold {
    type Reply = ();
}
impl Handler<Hold> for Stuck {
    async fn handle(&mut self, _: Hold, _: &mut Context<Self>) {
        self.gate.notified().await;
    }
}

/// Spawns a `Stuck` actor (named if `name` is given) with `depth` messages waiting behind a
/// held one, and waits until they are there.
pub(crate) async fn stuck_with_depth(
    system: &ActorSystem,
    gate: &Arc<Notify>,
    name: Option<&str>,
    depth: usize,
) -> ActorRef<Stuck> {
    let g = gate.clone();
    let mut props = Props::new(move || Stuck { gate: g.clone() });
    if let Some(name) = name {
        props = props.name(name);
    }
    let actor = system.spawn(props).unwrap();
    for _ in 0..=depth {
        actor.tell(Hold).await.unwrap();
    }
    until(PATIENCE, format!("{depth} messages waiting"), || {
        actor.depth() == depth && actor.stats().status == postbox::ActorStatus::Running
    })
    .await;
    actor
}

/// An HTTP response, as the tests need it.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` over a fresh loopback connection (HTTP/1.1, `Connection: close`).
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = within(PATIENCE, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    within(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .get("transfer-encoding")
            .is_some_and(|te| te.contains("chunked")),
        "the test client reads whole bodies only"
    );
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A Debian tool the tests need. When it is missing, the harness installs its package with
/// apt-get (as `.ci/run` does), once per test process; it fails (never skips) with how to
/// install it by hand when it cannot.
pub(crate) fn tool(name: &str, package: &str) -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let find = || {
        ["/usr/bin", "/usr/local/bin", "/bin"]
            .iter()
            .map(|dir| PathBuf::from(dir).join(name))
            .find(|path| path.exists())
    };
    if let Some(path) = find() {
        return path;
    }
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = find() {
        return path;
    }
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    let installed = apt(&["update", "-qq"])
        && apt(&["install", "-y", "-qq", "--no-install-recommends", package]);
    match find() {
        Some(path) => path,
        None => panic!(
            "`{name}` is not installed and installing Debian's `{package}` package failed \
             (installed: {installed}); run `apt-get install --no-install-recommends {package}`"
        ),
    }
}

/// A fresh directory under the target directory, for artifacts and scratch files.
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The value of the series `name{labels}` in an exposition, labels written as in the text.
pub(crate) fn series_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Every sample line (not comments) of an exposition.
pub(crate) fn sample_lines(exposition: &str) -> Vec<&str> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .collect()
}

//! The dashboard in a real headless Chromium, against a system under load.

use crate::common::{scratch_dir, stuck_with_depth, tool, until, within, PATIENCE};
use postbox::prelude::*;
use postbox::MailboxCapacity;
use postbox_metrics::Metrics;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Handles each message in about a millisecond, so a fast producer keeps its mailbox full.
struct Slow;
impl Actor for Slow {}
struct Work;
impl Message for Work {
    type Reply = ();
}
impl Handler<Work> for Slow {
    async fn handle(&mut self, _: Work, _: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=…`), giving the
/// page `virtual_ms` of virtual time (its timers fire as fast as the page goes idle; fetches
/// are real). Returns stdout.
fn chromium(url: &str, mode: &[&str], profile: &Path, virtual_ms: u32) -> String {
    let chromium = tool("chromium", "chromium");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={virtual_ms}"))
        .args(mode)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    // A hang guard: Chromium normally exits within seconds.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("chromium can be waited for") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("chromium did not finish within 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let output = child.wait_with_output().expect("chromium's output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of attribute `name` in the first element whose opening tag contains `marker`.
fn attribute_near<'a>(dom: &'a str, marker: &str, name: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let value = tag.split(&format!("{name}=\"")).nth(1)?;
    value.split('"').next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_tree_and_a_live_chart_of_non_zero_depths() {
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system).build().unwrap();
    metrics.readiness().set_ready(true);

    // Load: two stuck actors with fixed depths, and a slow one fed by a producer as fast as
    // its mailbox of 64 lets it.
    let gate = Arc::new(Notify::new());
    stuck_with_depth(&system, &gate, Some("stuck-ledger"), 40).await;
    stuck_with_depth(&system, &gate, Some("stuck-mailer"), 25).await;
    let slow = system
        .spawn(
            Props::new(|| Slow)
                .name("slow-worker")
                .mailbox(MailboxCapacity::bounded(64)),
        )
        .unwrap();
    let producing = Arc::new(AtomicBool::new(true));
    let producer = tokio::spawn({
        let slow = slow.clone();
        let producing = producing.clone();
        async move {
            let mut sent = 0u64;
            while producing.load(Ordering::Acquire) && sent < 1_000_000 {
                if slow.tell(Work).await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
    });
    until(PATIENCE, "32 messages waiting", || slow.depth() >= 32).await;

    let server = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}/", server.local_addr());
    let artifacts = scratch_dir("dashboard");

    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        let profile = artifacts.join("profile-dom");
        move || chromium(&url, &["--dump-dom"], &profile, 5_000)
    })
    .await
    .unwrap();
    std::fs::write(artifacts.join("dashboard.html"), &dom).unwrap();

    // The tree lists the loaded actors with their (non-zero) depths.
    for (path, expected) in [
        ("/user/stuck-ledger", Some(40)),
        ("/user/stuck-mailer", Some(25)),
    ] {
        let depth = attribute_near(&dom, &format!("data-path=\"{path}\""), "data-depth")
            .unwrap_or_else(|| panic!("{path} is not in the tree:\n{dom}"));
        assert_eq!(depth.parse::<u64>().ok(), expected, "{path}");
    }
    let slow_depth = attribute_near(&dom, "data-path=\"/user/slow-worker\"", "data-depth")
        .and_then(|d| d.parse::<u64>().ok())
        .expect("the slow worker is in the tree");
    assert!(slow_depth > 0, "the slow worker's mailbox is under load");

    // The chart has sampled several times and draws the deepest actors, non-zero.
    let samples: u32 = attribute_near(&dom, "id=\"depth-chart\"", "data-samples")
        .and_then(|s| s.parse().ok())
        .expect("the chart reports its samples");
    assert!(samples >= 2, "the chart updated only {samples} time(s)");
    let charted = attribute_near(&dom, "data-series=\"/user/stuck-ledger\"", "data-last")
        .and_then(|d| d.parse::<u64>().ok())
        .expect("the chart has a line for the deepest mailbox");
    assert_eq!(charted, 40);
    let total = attribute_near(&dom, "<polyline", "data-last")
        .and_then(|d| d.parse::<u64>().ok())
        .expect("the chart has a total line");
    assert!(total >= 65, "total depth charted: {total}");
    let max: u64 = attribute_near(&dom, "id=\"depth-chart\"", "data-max")
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(max >= 65);

    // Members and the summary.
    assert!(
        dom.contains("data-status=\"up\""),
        "this node is listed as up"
    );
    assert!(dom.contains("messages waiting"));
    assert!(
        !dom.contains("update failed"),
        "the page's requests succeeded"
    );

    // A screenshot for people to look at.
    let screenshot = artifacts.join("dashboard.png");
    tokio::task::spawn_blocking({
        let url = url.clone();
        let profile = artifacts.join("profile-shot");
        let arg = format!("--screenshot={}", screenshot.display());
        move || chromium(&url, &[&arg], &profile, 5_000)
    })
    .await
    .unwrap();
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 10_000, "a page with content, not a blank one");
    eprintln!("dashboard screenshot: {}", screenshot.display());

    producing.store(false, Ordering::Release);
    gate.notify_waiters();
    server.shutdown().await;
    slow.stop();
    within(PATIENCE, producer).await.unwrap();
}

//! `/metrics`: specific series values, and the whole exposition checked by the real promtool.

use crate::common::{
    get, scratch_dir, series_value, stuck_with_depth, tool, until, within, Hold, Stuck, PATIENCE,
};
use postbox::prelude::*;
use postbox::{CircuitBreaker, Router};
use postbox_metrics::{
    ClusterSource, DowningCounters, GossipCounters, Member, MemberStatus, Metrics, TransportSource,
    TransportStats,
};
use postbox_testkit::WireClient;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct FixedTransport;
impl TransportSource for FixedTransport {
    fn transport_stats(&self) -> TransportStats {
        let mut stats = TransportStats::default();
        stats.connections = 2;
        stats.bytes_in = 1_000;
        stats.bytes_out = 2_000;
        stats.frames_in = 10;
        stats.frames_out = 20;
        stats.reconnects = 3;
        stats.auth_failures = 1;
        stats
    }
}

struct ThreeMembers;
impl ClusterSource for ThreeMembers {
    fn members(&self) -> Vec<Member> {
        vec![
            Member::new("a", "127.0.0.1:7001", MemberStatus::Up).this_node(),
            Member::new("b", "127.0.0.1:7002", MemberStatus::Up).with_load(4.0),
            Member::new("c", "127.0.0.1:7003", MemberStatus::Suspect),
        ]
    }

    fn gossip(&self) -> Option<GossipCounters> {
        Some(GossipCounters::new(5, 6, 1, 0, 0, 1, 2, 0))
    }

    fn downing(&self) -> Option<DowningCounters> {
        Some(DowningCounters::new(1, 0, 0, 1, 0, false))
    }
}

struct Echo;
impl Actor for Echo {}
struct Ping;
impl Message for Ping {
    type Reply = ();
}
impl Handler<Ping> for Echo {
    async fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

/// Runs `promtool check metrics` on `exposition`.
///
/// promtool lints the Prometheus text format (0.0.4); prometheus-client writes OpenMetrics,
/// where a counter `foo` has HELP and TYPE lines for `foo` and samples named `foo_total`.
/// promtool reads those samples as a family of their own without HELP and says so. That one
/// finding, for exactly the counters the exposition declares, is the known difference between
/// the two formats; anything else promtool reports (a parse error, any other lint) fails.
fn promtool_check(exposition: &str) -> Result<(), String> {
    let promtool = tool("promtool", "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool: {e}"))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin
            .write_all(exposition.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match output.status.code() {
        Some(0) => Ok(()),
        Some(3) => {
            let unexpected: Vec<&str> = report
                .lines()
                .filter(|line| !line.trim().is_empty())
                .filter(|line| !is_openmetrics_counter_sample_finding(exposition, line))
                .collect();
            if unexpected.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "promtool lint findings:\n{}",
                    unexpected.join("\n")
                ))
            }
        }
        other => Err(format!("promtool failed ({other:?}):\n{report}")),
    }
}

fn is_openmetrics_counter_sample_finding(exposition: &str, line: &str) -> bool {
    let Some(sample_family) = line.strip_suffix(" no help text") else {
        return false;
    };
    let Some(family) = sample_family.strip_suffix("_total") else {
        return false;
    };
    exposition
        .lines()
        .any(|l| l == format!("# TYPE {family} counter"))
        && exposition
            .lines()
            .any(|l| l.starts_with(&format!("# HELP {family} ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_shows_the_system_and_passes_promtool() {
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system)
        .with_transport(FixedTransport)
        .with_cluster(ThreeMembers)
        .max_named_actors(2)
        .build()
        .unwrap();

    // Three named, stuck actors (5, 3 and 1 waiting) and two anonymous ones (7 and 0).
    let gate = Arc::new(Notify::new());
    stuck_with_depth(&system, &gate, Some("alpha"), 5).await;
    stuck_with_depth(&system, &gate, Some("beta"), 3).await;
    stuck_with_depth(&system, &gate, Some("gamma"), 1).await;
    stuck_with_depth(&system, &gate, None, 7).await;
    stuck_with_depth(&system, &gate, None, 0).await;

    // 40 messages through one actor: 3 timed handler runs (1st, 17th, 33rd) and 3 wait
    // samples (slots 0, 16, 32).
    let echo = system.spawn(Props::new(|| Echo)).unwrap();
    for _ in 0..39 {
        echo.tell(Ping).await.unwrap();
    }
    within(PATIENCE, echo.ask(Ping)).await.unwrap();
    until(PATIENCE, "40 messages processed", || {
        echo.stats().processed == 40
    })
    .await;

    // A dead letter, an ask timeout, a breaker and a router.
    echo.stop();
    within(PATIENCE, echo.wait_for_stop()).await;
    assert!(echo.tell(Ping).await.is_err());
    let held = stuck_with_depth(&system, &gate, None, 0).await;
    let timed_out = held.ask(Hold).timeout(Duration::from_millis(10)).await;
    assert!(timed_out.is_err());
    let breaker = CircuitBreaker::builder("payments")
        .max_failures(1)
        .build()
        .unwrap();
    let _ = breaker.call(async { Err::<(), _>("down") }).await;
    let _ = breaker.call(async { Ok::<(), &str>(()) }).await; // rejected: open
    metrics.register_breaker(&breaker).unwrap();
    assert!(
        metrics.register_breaker(&breaker).is_err(),
        "names are unique"
    );
    let router = Router::pool(3, || Echo).spawn(&system).await.unwrap();
    metrics.register_router("echoes", &router).unwrap();

    let server = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let response = get(server.local_addr(), "/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = response.body;
    std::fs::write(scratch_dir("exposition").join("metrics.txt"), &text).unwrap();
    assert!(text.ends_with("# EOF\n"));

    let stuck = std::any::type_name::<Stuck>();
    let echo_type = std::any::type_name::<Echo>();
    let value = |series: String| {
        series_value(&text, &series).unwrap_or_else(|| panic!("no series {series}\n{text}"))
    };
    assert_eq!(
        value(format!("postbox_group_actors{{actor_type=\"{stuck}\"}}")),
        6.0
    );
    assert_eq!(
        value(format!(
            "postbox_group_mailbox_depth{{actor_type=\"{stuck}\"}}"
        )),
        5.0 + 3.0 + 1.0 + 7.0 + 1.0, // the last: the timed-out ask, still queued
    );
    assert_eq!(
        value(format!(
            "postbox_group_mailbox_depth_max{{actor_type=\"{stuck}\"}}"
        )),
        7.0
    );
    // Named gauges: the guardian (/user) and alpha are the two oldest named actors; beta,
    // gamma, the router and its routees are beyond the limit of two.
    assert_eq!(
        value(format!(
            "postbox_actor_mailbox_depth{{actor_type=\"{stuck}\",actor=\"/user/alpha\"}}"
        )),
        5.0
    );
    assert!(!text.contains("actor=\"/user/beta\""));
    let mut named = 0;
    system.for_each_actor(|actor| named += usize::from(actor.name().is_some()));
    assert!(named >= 4);
    assert_eq!(
        value("postbox_named_actors_unexported".into()),
        (named - 2) as f64
    );
    assert_eq!(
        value(format!(
            "postbox_messages_processed_total{{actor_type=\"{echo_type}\"}}"
        )),
        40.0,
        "the stopped actor's messages still count"
    );
    assert_eq!(
        value(format!(
            "postbox_handler_duration_seconds_count{{actor_type=\"{echo_type}\"}}"
        )),
        3.0
    );
    assert_eq!(
        value(format!(
            "postbox_mailbox_wait_seconds_count{{actor_type=\"{echo_type}\"}}"
        )),
        3.0
    );
    assert_eq!(
        value(format!(
            "postbox_mailbox_wait_seconds_bucket{{le=\"+Inf\",actor_type=\"{echo_type}\"}}"
        )),
        3.0
    );
    assert_eq!(
        value("postbox_dead_letters_total{reason=\"actor_stopped\"}".into()),
        1.0
    );
    assert_eq!(value("postbox_ask_timeouts_total".into()), 1.0);
    assert_eq!(
        value("postbox_breaker_state{breaker=\"payments\",state=\"open\"}".into()),
        1.0
    );
    assert_eq!(
        value("postbox_breaker_state{breaker=\"payments\",state=\"closed\"}".into()),
        0.0
    );
    assert_eq!(
        value("postbox_breaker_calls_total{breaker=\"payments\",outcome=\"failure\"}".into()),
        1.0
    );
    assert_eq!(
        value("postbox_breaker_calls_total{breaker=\"payments\",outcome=\"rejected\"}".into()),
        1.0
    );
    assert_eq!(
        value("postbox_router_routees{router=\"echoes\"}".into()),
        3.0
    );
    assert_eq!(value("postbox_remote_connections".into()), 2.0);
    assert_eq!(
        value("postbox_remote_bytes_total{direction=\"out\"}".into()),
        2000.0
    );
    assert_eq!(
        value("postbox_remote_frames_total{direction=\"in\"}".into()),
        10.0
    );
    assert_eq!(value("postbox_remote_reconnects_total".into()), 3.0);
    assert_eq!(value("postbox_remote_auth_failures_total".into()), 1.0);
    assert_eq!(value("postbox_cluster_members{status=\"up\"}".into()), 2.0);
    assert_eq!(
        value("postbox_cluster_members{status=\"suspect\"}".into()),
        1.0
    );
    assert_eq!(
        value("postbox_cluster_members{status=\"down\"}".into()),
        0.0
    );
    assert_eq!(
        value("postbox_actors_live".into()),
        system.actor_count() as f64
    );

    promtool_check(&text).unwrap_or_else(|problems| panic!("{problems}\n\n{text}"));

    // A stopped router is forgotten.
    router.stop();
    until(PATIENCE, "the router to be gone", || {
        system.actor(router.id()).is_none()
    })
    .await;
    let after = metrics.encode().unwrap();
    assert!(!after.contains("router=\"echoes\""));

    server.shutdown().await;
    gate.notify_waiters();
}

#[test]
fn promtool_rejects_what_is_wrong() {
    // The checker above is only worth something if it can fail: a gauge named like a
    // counter and a metric without help are both refused.
    let bad = "# HELP x_total A gauge.\n# TYPE x_total gauge\nx_total 1\ny 2\n# EOF\n";
    assert!(promtool_check(bad).is_err());
    let broken = "# TYPE z gauge\nz{ 1\n";
    assert!(promtool_check(broken).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_s_counters_reach_the_exposition() {
    let system = ActorSystem::new();
    let remote = postbox_remote::Remote::start(&system, postbox_testkit::remote_config())
        .await
        .unwrap();
    let metrics = Metrics::builder(&system)
        .with_remote(remote.clone())
        .build()
        .unwrap();
    let before = metrics.encode().unwrap();
    assert_eq!(
        series_value(&before, "postbox_remote_connections"),
        Some(0.0)
    );
    assert_eq!(
        series_value(&before, "postbox_remote_connections_accepted_total"),
        Some(0.0)
    );

    // A peer that speaks garbage: accepted, then refused at the handshake.
    let mut peer = WireClient::connect(remote.addr()).await.unwrap();
    peer.write_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert!(
        peer.wait_closed().await.is_ok(),
        "the node closes the connection"
    );
    let after = until(PATIENCE, "the refusal to be counted", || {
        let text = metrics.encode().unwrap();
        let refused = series_value(&text, "postbox_remote_refused_total{reason=\"malformed\"}")
            .unwrap_or(0.0);
        (refused >= 1.0).then_some(text)
    })
    .await;
    assert_eq!(
        series_value(&after, "postbox_remote_connections_accepted_total"),
        Some(1.0)
    );
    assert_eq!(
        series_value(&after, "postbox_remote_connections"),
        Some(0.0)
    );
    assert_eq!(
        series_value(&after, "postbox_remote_frames_total{direction=\"out\"}"),
        Some(remote.stats().frames_out as f64)
    );
    remote.shutdown().await;
    system.shutdown().await;
}

struct FixedPersistence;
impl postbox_metrics::PersistenceSource for FixedPersistence {
    fn persistence_stats(&self) -> postbox_metrics::PersistenceStats {
        use postbox_metrics::Distribution;
        let mut stats = postbox_metrics::PersistenceStats::default();
        stats.events_written = 120;
        stats.snapshots_written = 2;
        stats.states_written = 7;
        stats.events_replayed = 40;
        stats.conflicts = 1;
        stats.errors = vec![("unavailable", 3), ("full", 0)];
        stats.commits = 30;
        stats.queue_full = 4;
        stats.persist_latency =
            Distribution::new(vec![(0.001, 100), (0.01, 20), (f64::INFINITY, 0)], 0.25);
        stats.batch_size = Distribution::new(vec![(1.0, 10), (8.0, 20), (f64::INFINITY, 0)], 120.0);
        stats.recovery_time = Distribution::new(vec![(0.01, 5), (f64::INFINITY, 1)], 2.0);
        stats
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_series_come_from_the_source_and_pass_promtool() {
    let system = ActorSystem::new();
    let without = Metrics::builder(&system).build().unwrap().encode().unwrap();
    assert!(!without.contains("postbox_persist"), "no source, no series");
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system)
        .with_persistence(FixedPersistence)
        .build()
        .unwrap();
    let text = metrics.encode().unwrap();
    let value = |series: &str| {
        series_value(&text, series).unwrap_or_else(|| panic!("no series {series}\n{text}"))
    };
    assert_eq!(
        value("postbox_persist_written_total{what=\"event\"}"),
        120.0
    );
    assert_eq!(
        value("postbox_persist_written_total{what=\"snapshot\"}"),
        2.0
    );
    assert_eq!(value("postbox_persist_written_total{what=\"state\"}"), 7.0);
    assert_eq!(value("postbox_persist_events_replayed_total"), 40.0);
    assert_eq!(value("postbox_persist_conflicts_total"), 1.0);
    assert_eq!(
        value("postbox_persist_errors_total{kind=\"unavailable\"}"),
        3.0
    );
    assert_eq!(value("postbox_persist_errors_total{kind=\"full\"}"), 0.0);
    assert_eq!(value("postbox_persist_commits_total"), 30.0);
    assert_eq!(value("postbox_persist_queue_full_total"), 4.0);
    assert_eq!(value("postbox_persist_latency_seconds_count"), 120.0);
    assert_eq!(
        value("postbox_persist_latency_seconds_bucket{le=\"0.01\"}"),
        120.0
    );
    assert_eq!(value("postbox_persist_batch_events_sum"), 120.0);
    assert_eq!(value("postbox_persist_recovery_seconds_count"), 6.0);
    promtool_check(&text).unwrap();

    // A source without any observation yet (a store without group commit) is still valid.
    struct Empty;
    impl postbox_metrics::PersistenceSource for Empty {
        fn persistence_stats(&self) -> postbox_metrics::PersistenceStats {
            postbox_metrics::PersistenceStats::default()
        }
    }
    let empty = Metrics::builder(&ActorSystem::new())
        .with_persistence(Empty)
        .build()
        .unwrap()
        .encode()
        .unwrap();
    assert_eq!(
        series_value(&empty, "postbox_persist_batch_events_bucket{le=\"+Inf\"}"),
        Some(0.0),
        "{empty}"
    );
    promtool_check(&empty).unwrap();
    system.shutdown().await;
}

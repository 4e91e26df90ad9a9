//! The accept loop and connection bounds against in-memory connections, on Tokio's paused
//! clock: no sockets, no real waiting, every timeout deterministic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use axum::routing::get;
use postbox_testkit::time::advance_until;
use postbox_testkit::within;
use std::sync::atomic::AtomicBool;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// Connections the test hands in one by one; fails every accept with `EMFILE` while `failing`.
struct Script {
    incoming: mpsc::UnboundedReceiver<DuplexStream>,
    failing: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
}

impl Listener for Script {
    type Io = DuplexStream;

    async fn accept(&mut self) -> io::Result<DuplexStream> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(24)); // EMFILE
        }
        match self.incoming.recv().await {
            Some(io) => Ok(io),
            None => std::future::pending().await,
        }
    }
}

struct Server {
    connect: mpsc::UnboundedSender<DuplexStream>,
    failing: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
    stats: Arc<HttpStats>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// `/` answers "ok"; `/slow` after 2 s; `/big` with 1 MiB.
fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow"
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 1 << 20] }))
}

fn start(limits: HttpLimits) -> Server {
    let (connect, incoming) = mpsc::unbounded_channel();
    let failing = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(HttpStats::default());
    let (stop, stopped) = oneshot::channel();
    let listener = Script {
        incoming,
        failing: failing.clone(),
        attempts: attempts.clone(),
    };
    let task = tokio::spawn(serve(listener, router(), limits, stats.clone(), stopped));
    Server {
        connect,
        failing,
        attempts,
        stats,
        stop: Some(stop),
        task,
    }
}

impl Server {
    fn connect(&self) -> DuplexStream {
        self.connect_with_buffer(64 * 1024)
    }

    fn connect_with_buffer(&self, buffer: usize) -> DuplexStream {
        let (client, server) = tokio::io::duplex(buffer);
        self.connect.send(server).unwrap();
        client
    }

    /// Lets the server run until `done` holds (virtual time passes only while all wait), in
    /// steps of 1 ms, for at most 10 s of virtual time.
    async fn until(&self, what: &str, done: impl Fn(&HttpSnapshot) -> bool) {
        advance_until(
            Duration::from_millis(1),
            Duration::from_secs(10),
            what,
            || {
                let snapshot = self.stats.snapshot();
                if done(&snapshot) {
                    Ok(())
                } else {
                    Err(snapshot)
                }
            },
        )
        .await;
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";

/// The hang guard, in virtual time: a hang fails at once, in real time, since nothing else
/// can happen.
const HANG_GUARD: Duration = Duration::from_secs(600);

/// Reads until the server closes the connection.
async fn read_to_close(client: &mut DuplexStream) -> String {
    let mut text = Vec::new();
    within(HANG_GUARD, client.read_to_end(&mut text))
        .await
        .unwrap();
    String::from_utf8_lossy(&text).into_owned()
}

/// Reads one response to `GET /` (it ends with the body "ok").
async fn read_ok(client: &mut DuplexStream) -> String {
    let mut text = Vec::new();
    let mut buf = [0; 1024];
    while !text.ends_with(b"ok") {
        let n = within(HANG_GUARD, client.read(&mut buf)).await.unwrap();
        assert_ne!(n, 0, "closed after {:?}", String::from_utf8_lossy(&text));
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test(start_paused = true)]
async fn failed_accepts_back_off_are_counted_and_the_loop_recovers() {
    let server = start(HttpLimits::default());
    server.failing.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = server.attempts.load(Ordering::Relaxed);
    // 10 ms, 20 ms, ... doubling to 1 s: 8 pauses take 1.27 s, then one a second.
    assert!(
        (10..=20).contains(&attempts),
        "{attempts} accepts in 10 s of EMFILE"
    );
    assert_eq!(server.stats.snapshot().accept_errors, attempts);

    // Descriptors are back: the next connection is served.
    server.failing.store(false, Ordering::Relaxed);
    let mut client = server.connect();
    client.write_all(GET).await.unwrap();
    let response = read_ok(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert_eq!(server.stats.snapshot().accepted, 1);
}

#[test]
fn the_backoff_doubles_to_its_cap_and_resets() {
    let mut backoff = Backoff::default();
    let pauses: Vec<Duration> = (0..9).map(|_| backoff.next()).collect();
    assert_eq!(pauses[0], FIRST_BACKOFF);
    assert_eq!(pauses[1], FIRST_BACKOFF * 2);
    assert_eq!(pauses[8], MAX_BACKOFF);
    backoff.reset();
    assert_eq!(backoff.next(), FIRST_BACKOFF);
}

#[tokio::test(start_paused = true)]
async fn logs_are_rate_limited_and_count_what_they_left_out() {
    let mut log = RateLimitedLog::default();
    let start = Instant::now();
    assert_eq!(log.admit(start), Some(0));
    for i in 1..=5 {
        assert_eq!(log.admit(start + Duration::from_secs(i)), None);
    }
    assert_eq!(log.admit(start + LOG_EVERY), Some(5));
    assert_eq!(log.admit(start + LOG_EVERY), None);
}

#[tokio::test(start_paused = true)]
async fn a_connection_over_the_bound_is_answered_503_and_closed() {
    let server = start(HttpLimits::default().max_connections(2));
    let mut held: Vec<DuplexStream> = (0..2).map(|_| server.connect()).collect();
    server.until("two connections open", |s| s.open == 2).await;

    let mut third = server.connect();
    let refused = read_to_close(&mut third).await;
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{refused}"
    );
    assert!(refused.contains("too many connections"), "{refused}");
    let stats = server.stats.snapshot();
    assert_eq!((stats.accepted, stats.refused, stats.open), (2, 1, 2));

    // The held ones are served; closing one makes room for the next client.
    held[0].write_all(GET).await.unwrap();
    read_ok(&mut held[0]).await;
    drop(held.remove(0));
    server.until("one connection open", |s| s.open == 1).await;
    let mut fourth = server.connect();
    fourth.write_all(GET).await.unwrap();
    read_ok(&mut fourth).await;
    assert_eq!(server.stats.snapshot().refused, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_and_idle_clients_are_cut_at_the_header_read_timeout() {
    let timeout = Duration::from_secs(1);
    let server = start(HttpLimits::default().header_read_timeout(timeout));

    // Slowloris: one header byte every 100 ms never finishes a head.
    let mut slow = server.connect();
    let started = Instant::now();
    let dripping = async {
        for byte in b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    dripping.await;
    let cut = read_to_close(&mut slow).await;
    assert!(!cut.contains("200 OK"), "{cut}");
    assert!(started.elapsed() <= timeout + Duration::from_millis(100));

    // A kept-alive connection that goes quiet after a request gives its place back too.
    let mut idle = server.connect();
    idle.write_all(GET).await.unwrap();
    read_ok(&mut idle).await;
    let idle_since = Instant::now();
    let rest = read_to_close(&mut idle).await;
    assert_eq!(rest, "");
    assert!(idle_since.elapsed() <= timeout + Duration::from_millis(10));

    server
        .until("both closed", |s| s.open == 0 && s.header_timeouts == 2)
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_at_the_write_timeout() {
    let server = start(HttpLimits::default().write_timeout(Duration::from_secs(1)));
    let mut client = server.connect_with_buffer(4096);
    client
        .write_all(b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing: the 1 MiB response fills the pipe and the write blocks.
    server
        .until("cut for not reading", |s| {
            s.write_timeouts == 1 && s.open == 0
        })
        .await;
    let _ = client;
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_request_in_progress_finish() {
    let mut server = start(HttpLimits::default());
    let mut client = server.connect();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    server.until("serving", |s| s.open == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop.take().unwrap().send(()).unwrap();
    let response = read_to_close(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("slow"), "{response}");
    (&mut server.task).await.unwrap();
    assert_eq!(server.stats.snapshot().open, 0);
}

#[test]
fn limits_out_of_range_are_named() {
    let setting = |limits: HttpLimits| match limits.validate() {
        Err(MetricsError::InvalidLimit { setting, .. }) => setting,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(HttpLimits::default().validate().is_ok());
    assert_eq!(
        setting(HttpLimits::default().max_connections(0)),
        "max_connections"
    );
    assert_eq!(
        setting(HttpLimits::default().max_connections(MAX_MAX_CONNECTIONS + 1)),
        "max_connections"
    );
    assert_eq!(
        setting(HttpLimits::default().header_read_timeout(Duration::ZERO)),
        "header_read_timeout"
    );
    assert_eq!(
        setting(HttpLimits::default().write_timeout(Duration::MAX)),
        "write_timeout"
    );
}

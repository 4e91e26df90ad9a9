//! A node's resident memory under hostile load (plain `main`, `harness = false`): issue 12's
//! overload benchmark.
//!
//! The parent re-executes this binary as the node under test (`--child`): a postbox node
//! (actor system and transport, default settings) hosting `victim` — a service that takes a
//! millisecond per request, about a thousand requests a second — and `ping`, which answers at
//! once. The parent reads the child's resident set (`VmRSS` in `/proc/<pid>/status`) idle,
//! then every 50 ms through each scenario, and reports the peak above idle:
//!
//! 1. **A peer that never reads its replies**: four authenticated connections that pipeline
//!    asks for 16 KiB replies as fast as TCP lets them, and never read a byte.
//! 2. **A 10× overload of a service**: four pipelined connections offering `victim` more
//!    than ten times what it can serve (as fast as TCP lets them), reading every reply.
//!
//! Throughout both, a well-behaved client node asks `ping` every 10 ms; the report gives how
//! many of those asks succeeded and their latency. Usage: `cargo bench --bench overload --
//! [--seconds S]` (default 10).

use bytes::BytesMut;
use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message, Remote, RemoteConfig};
use postbox_testkit::FakeNode;
use postbox_wire::{Envelope, Frame, FrameCodec, Target};
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

const CLUSTER: &str = "overload";
const SECRET: &[u8] = b"overload-bench-secret";

#[derive(Default)]
struct Victim;
impl Actor for Victim {}

/// Asks for `n` bytes back, after a millisecond of work.
#[derive(Serialize, Deserialize)]
struct Work(usize);
impl Message for Work {
    type Reply = Vec<u8>;
    remote_message!("overload.Work");
}
impl Handler<Work> for Victim {
    async fn handle(&mut self, Work(n): Work, _: &mut Context<Self>) -> Vec<u8> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        vec![1; n]
    }
}

/// Answers at once.
#[derive(Serialize, Deserialize)]
struct Ping;
impl Message for Ping {
    type Reply = ();
    remote_message!("overload.Ping");
}
impl Handler<Ping> for Victim {
    async fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

remote_actor!(Victim: Work, Ping);

fn config() -> RemoteConfig {
    RemoteConfig::new("127.0.0.1:0".parse().expect("addr"), CLUSTER, SECRET)
}

async fn child() {
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config()).await.expect("listen");
    remote.expose::<Victim>();
    for name in ["victim", "ping"] {
        let actor = system.spawn(Props::new(|| Victim)).expect("spawn");
        system.registry().register(name, &actor).expect("register");
    }
    println!("LISTENING {}", remote.addr());
    if std::env::var_os("OVERLOAD_DEBUG").is_some() {
        let remote = remote.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!("{:?}", remote.stats());
            }
        });
    }
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// An authenticated raw connection, split: the handshake as a fake member, then frames.
async fn member(
    addr: &str,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut read, mut write) = stream.into_split();
    let me = FakeNode::new(CLUSTER, SECRET);
    let nonce = [7u8; 32];
    let mut out = BytesMut::new();
    FrameCodec::new(postbox_wire::MAX_HANDSHAKE_FRAME)
        .encode(&me.hello(nonce), &mut out)
        .expect("hello");
    write.write_all(&out).await.expect("send hello");
    let mut buf = BytesMut::new();
    let Frame::Challenge(challenge) = next_frame(&mut read, &mut buf).await else {
        panic!("no challenge")
    };
    out.clear();
    FrameCodec::new(postbox_wire::MAX_HANDSHAKE_FRAME)
        .encode(&me.proof(&challenge, &nonce), &mut out)
        .expect("proof");
    write.write_all(&out).await.expect("send proof");
    let welcome = next_frame(&mut read, &mut buf).await;
    assert!(
        matches!(welcome, Frame::Welcome),
        "not welcomed: {welcome:?}"
    );
    (read, write)
}

async fn next_frame(read: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut BytesMut) -> Frame {
    let mut codec = FrameCodec::new(postbox_wire::MAX_HANDSHAKE_FRAME);
    loop {
        if let Some(frame) = codec.decode(buf).expect("decode") {
            return frame;
        }
        assert!(read.read_buf(buf).await.expect("read") > 0, "closed");
    }
}

/// Sends pipelined asks for `reply` bytes, in batches of 256 frames, as fast as TCP lets it,
/// until aborted.
async fn flood(mut write: tokio::net::tcp::OwnedWriteHalf, reply: usize, sent: Arc<AtomicU64>) {
    let mut payload = Vec::new();
    postbox_wire::to_payload(&Work(reply), &mut payload).expect("encode");
    let mut correlation = 1u64;
    let mut out = BytesMut::new();
    loop {
        out.clear();
        for _ in 0..256 {
            let mut envelope = Envelope::new(
                Target::Name("victim".into()),
                "overload.Work",
                bytes::Bytes::from(payload.clone()),
            );
            envelope.correlation = Some(correlation);
            correlation += 1;
            postbox_wire::encode_frame(&Frame::Message(envelope), &mut out).expect("encode");
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
        sent.fetch_add(256, Ordering::Relaxed);
    }
}

/// Reads and counts replies until the connection ends.
async fn drain(mut read: tokio::net::tcp::OwnedReadHalf, answered: Arc<AtomicU64>) {
    let mut codec = FrameCodec::new(postbox_wire::DEFAULT_MAX_FRAME);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            if matches!(frame, Frame::Reply { .. } | Frame::Error { .. }) {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

struct Outcome {
    peak_kib: u64,
    pings_ok: u64,
    pings_failed: u64,
    p50: Duration,
    p99: Duration,
}

/// Runs a scenario for `seconds`, sampling the child's memory and pinging it meanwhile.
async fn observe(pid: u32, addr: &str, seconds: u64) -> Outcome {
    let client = ActorSystem::new();
    let remote = Remote::start(&client, config()).await.expect("client");
    let ping: ActorRef<Victim> = remote.lookup(addr, "ping").await.expect("lookup ping");
    let mut peak = 0;
    let mut latencies = Vec::new();
    let mut failed = 0;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut sample = tokio::time::interval(Duration::from_millis(10));
    let mut tick = 0u64;
    while Instant::now() < until {
        sample.tick().await;
        tick += 1;
        if tick.is_multiple_of(5) {
            peak = peak.max(resident_kib(pid));
        }
        let started = Instant::now();
        match ping.ask(Ping).timeout(Duration::from_secs(2)).await {
            Ok(()) => latencies.push(started.elapsed()),
            Err(_) => failed += 1,
        }
    }
    peak = peak.max(resident_kib(pid));
    remote.shutdown().await;
    client.shutdown().await;
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Outcome {
        peak_kib: peak,
        pings_ok: latencies.len() as u64,
        pings_failed: failed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn report(name: &str, idle: u64, outcome: &Outcome, extra: &str) {
    println!(
        "{name}: idle {:.1} MiB, peak {:.1} MiB (+{:.1} MiB); pings {} ok, {} failed, p50 {:?}, p99 {:?}{extra}",
        idle as f64 / 1024.0,
        outcome.peak_kib as f64 / 1024.0,
        outcome.peak_kib.saturating_sub(idle) as f64 / 1024.0,
        outcome.pings_ok,
        outcome.pings_failed,
        outcome.p50,
        outcome.p99,
    );
}

/// A fresh node process: the child, its pid and its address.
async fn node() -> (tokio::process::Child, u32, String) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = tokio::process::Command::new(exe)
        .arg("--child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the node");
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines.next_line().await.expect("read").expect("LISTENING");
        if let Some(addr) = line.strip_prefix("LISTENING ") {
            break addr.to_owned();
        }
    };
    (child, pid, addr)
}

async fn stop(mut child: tokio::process::Child) {
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

async fn parent(seconds: u64) {
    // 1. Four peers that never read: 16 KiB replies.
    let (child, pid, addr) = node().await;
    let idle = observe(pid, &addr, 2).await;
    report("idle", idle.peak_kib, &idle, "");
    let sent = Arc::new(AtomicU64::new(0));
    let mut held = Vec::new();
    let mut floods = Vec::new();
    for _ in 0..4 {
        let (read, write) = member(&addr).await;
        held.push(read);
        floods.push(tokio::spawn(flood(write, 16 * 1024, sent.clone())));
    }
    let never_read = observe(pid, &addr, seconds).await;
    report(
        "peer that never reads its replies (4 connections, 16 KiB replies)",
        idle.peak_kib,
        &never_read,
        &format!(
            "; {} asks written before TCP pushed back",
            sent.load(Ordering::Relaxed)
        ),
    );
    for flood in floods.drain(..) {
        flood.abort();
    }
    drop(held);
    stop(child).await;

    // 2. Far more than the service's capacity, replies read.
    let (child, pid, addr) = node().await;
    let idle = observe(pid, &addr, 2).await;
    report("idle", idle.peak_kib, &idle, "");
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (read, write) = member(&addr).await;
        readers.push(tokio::spawn(drain(read, answered.clone())));
        floods.push(tokio::spawn(flood(write, 100, sent.clone())));
    }
    let overload = observe(pid, &addr, seconds).await;
    let offered = sent.load(Ordering::Relaxed) as f64 / seconds as f64;
    let served = answered.load(Ordering::Relaxed) as f64 / seconds as f64;
    report(
        "overload of a 1 ms/request service (4 pipelined connections)",
        idle.peak_kib,
        &overload,
        &format!(
            "; offered {offered:.0}/s (what TCP let through), served {served:.0}/s ({:.0}x overload)",
            offered / served.max(1.0)
        ),
    );
    for flood in floods {
        flood.abort();
    }
    for reader in readers {
        reader.abort();
    }
    stop(child).await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.iter().any(|a| a == "--child") {
        runtime.block_on(child());
        return;
    }
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    runtime.block_on(parent(seconds));
}

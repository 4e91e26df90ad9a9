//! Remote messaging between two processes on loopback (plain `main`, `harness = false`).
//!
//! The parent re-executes this binary as the far node (`--child postbox` or `--child raw`),
//! which prints `LISTENING <addr>` and serves until its stdin closes. In the same run:
//!
//! - **postbox**: a client node looks up a `Sink` actor on the child node and `tell`s it `n`
//!   messages of 100 payload bytes through the remote `ActorRef`, then asks it for its count
//!   (FIFO behind the tells): throughput = `n` / time until that answer. Then `k` sequential
//!   asks (`Ping` → `Pong`) for round-trip latency percentiles.
//! - **raw**: the same frames (`postbox-wire` `Message` frames with the same 100-byte payload,
//!   the same batching into 64 KiB writes) over a plain TCP connection to a child that only
//!   decodes and counts them — no actors, no proxies, no mailboxes: the practical limit of the
//!   framing. Then `k` sequential request/reply frames.
//!
//! - **raw + task**: the raw baseline with the one thing a remote tell does that it does not:
//!   hand each message to another task. Its child decodes each payload into the message type
//!   (`Blob`) and passes it through a bounded `tokio::sync::mpsc` channel (4 096, the size of
//!   the `Sink`'s mailbox) to a task that counts it and answers asks — a hand-written actor.
//! - **postbox, no actor**: the postbox run with the child's transport intercepting `Blob` on
//!   the connection's reader (`Remote::intercept`) and counting it there: everything a remote
//!   tell costs except its delivery into the actor's mailbox and the actor's turn.
//!
//! - **postbox + TLS**: the postbox run again with mutual TLS on both nodes (certificates from
//!   `crates/postbox-remote/tests/fixtures/tls`).
//!
//! - **fan-in**: eight client nodes (eight connections) tell one actor on one node at once,
//!   then ask it at once; **fan-out**: one client node tells eight actors spread over three
//!   nodes at once, then asks them. Each beside a raw baseline doing the same over as many
//!   connections.
//! - **open loop**: the most asks per second 64 concurrent askers get, then an open-loop client
//!   offering half that rate (asks started on schedule whether or not earlier ones were
//!   answered) for the latency under load.
//!
//! Usage: `cargo bench --bench remote -- [--tells N] [--asks K] [--only LIST]` (defaults
//! 1 000 000 and 20 000, × `POSTBOX_BENCH_SCALE`; `LIST` picks scenarios: `raw`, `postbox`,
//! `raw-task`, `no-actor`, `tls`, `fan-in`, `fan-out`, `open-loop`). Every process runs a multi-thread Tokio runtime
//! of 2 workers, or `POSTBOX_BENCH_WORKERS` (inherited by the children); `--features
//! mimalloc` puts every process on mimalloc instead of the system allocator.
//!
//! Instructions per message on each side: run `--only postbox` under callgrind with
//! `--trace-children=yes` at two sizes; the slope of each process's total is its cost per
//! message (BENCHMARKS.md).

/// `--features mimalloc`: both nodes and the raw baseline's, on mimalloc (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::{Bytes, BytesMut};
use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message, Remote, RemoteConfig, TlsConfig};
use postbox_wire::{Envelope, Frame, FrameCodec, Target};
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;

const CLUSTER: &str = "bench";
const SECRET: &[u8] = b"bench-secret";
const PAYLOAD: usize = 100;

#[derive(Default)]
struct Sink {
    count: u64,
}
impl Actor for Sink {}

/// 100 bytes of binary payload, as MessagePack `bin` (serde_bytes): without it serde writes
/// a `Vec<u8>` as a sequence of 100 separately encoded integers, which is what a user with
/// binary data avoids.
#[derive(Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);
impl Message for Blob {
    type Reply = ();
    remote_message!("bench.Blob");
}
impl Handler<Blob> for Sink {
    async fn handle(&mut self, _: Blob, _: &mut Context<Self>) {
        self.count += 1;
    }
}

/// `Blob`s counted by the no-actor child's reader instead of delivered to its `Sink`.
static INTERCEPTED: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
struct Count;
impl Message for Count {
    type Reply = u64;
    remote_message!("bench.Count");
}
impl Handler<Count> for Sink {
    async fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u64 {
        self.count + INTERCEPTED.load(Relaxed)
    }
}

#[derive(Serialize, Deserialize)]
struct Ping(u64);
impl Message for Ping {
    type Reply = u64;
    remote_message!("bench.Ping");
}
impl Handler<Ping> for Sink {
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> u64 {
        n + 1
    }
}

remote_actor!(Sink: Blob, Count, Ping);

fn config(tls: bool) -> RemoteConfig {
    let config = RemoteConfig::new("127.0.0.1:0".parse().expect("addr"), CLUSTER, SECRET);
    if !tls {
        return config;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/postbox-remote/tests/fixtures/tls");
    config.tls(
        TlsConfig::from_files(
            dir.join("ca.pem"),
            dir.join("node.pem"),
            dir.join("node-key.pem"),
        )
        .expect("TLS fixtures"),
    )
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i % 100) as u8).collect()
}

async fn wait_for_stdin_eof() {
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

/// The far node. With `intercept`, its reader counts every `Blob` on arrival (undecoded) and
/// drops it instead of delivering it to the `Sink`.
async fn child_postbox(tls: bool, intercept: bool) {
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config(tls)).await.expect("listen");
    remote.expose::<Sink>();
    if intercept {
        remote.intercept::<Sink, Blob>(|_, _, _| {
            INTERCEPTED.fetch_add(1, Relaxed);
            postbox_remote::Intercepted::Delivered
        });
    }
    let sink = system
        .spawn(Props::new(Sink::default).mailbox(MailboxCapacity::bounded(4096)))
        .expect("spawn");
    system.registry().register("sink", &sink).expect("register");
    // The fan-out scenario's eight actors (some on each of three nodes).
    let mut sinks = Vec::new();
    for i in 0..FAN {
        let sink = system
            .spawn(Props::new(Sink::default).mailbox(MailboxCapacity::bounded(4096)))
            .expect("spawn");
        system
            .registry()
            .register(format!("sink-{i}"), &sink)
            .expect("register");
        sinks.push(sink);
    }
    println!("LISTENING {}", remote.addr());
    wait_for_stdin_eof().await;
}

/// Listens on loopback, prints `LISTENING <addr>`, and serves every connection it accepts
/// with `serve`, each on a task of its own, until stdin closes.
async fn serve_each<F, Fut>(serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    println!("LISTENING {}", listener.local_addr().expect("addr"));
    let accept = async {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::spawn(serve(stream));
        }
    };
    tokio::select! {
        () = accept => {}
        () = wait_for_stdin_eof() => {}
    }
}

/// Decodes frames and counts messages; answers a message that carries a correlation id.
async fn child_raw() {
    serve_each(serve_raw).await;
}

async fn serve_raw(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(128 * 1024);
    let mut out = BytesMut::new();
    let mut count = 0u64;
    loop {
        while let Some(frame) = codec.decode(&mut buf).expect("valid frames") {
            if let Frame::Message(envelope) = frame {
                count += 1;
                if let Some(correlation) = envelope.correlation {
                    let reply = Frame::Reply {
                        correlation,
                        payload: Bytes::from(count.to_le_bytes().to_vec()),
                    };
                    postbox_wire::encode_frame(&reply, &mut out).expect("encode");
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.expect("write");
            out.clear();
        }
        buf.reserve(64 * 1024);
        if stream.read_buf(&mut buf).await.expect("read") == 0 {
            return;
        }
    }
}

/// What the raw + task child's reader hands its counting task.
enum RawItem {
    Blob(Blob),
    /// An ask: answer it with the count so far (after every message before it).
    Ask(u64),
}

/// Decodes frames, decodes each message's payload into a `Blob` and hands it to a task over
/// a bounded channel; that task counts and answers asks on the connection.
async fn child_raw_task() {
    serve_each(serve_raw_task).await;
}

async fn serve_raw_task(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RawItem>(4096);
    let actor = tokio::spawn(async move {
        let mut count = 0u64;
        let mut out = BytesMut::new();
        while let Some(item) = rx.recv().await {
            match item {
                RawItem::Blob(blob) => {
                    std::hint::black_box(blob);
                    count += 1;
                }
                RawItem::Ask(correlation) => {
                    count += 1;
                    let reply = Frame::Reply {
                        correlation,
                        payload: Bytes::from(count.to_le_bytes().to_vec()),
                    };
                    postbox_wire::encode_frame(&reply, &mut out).expect("encode");
                    write.write_all(&out).await.expect("write");
                    out.clear();
                }
            }
        }
    });
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(128 * 1024);
    loop {
        while let Some(frame) = codec.decode(&mut buf).expect("valid frames") {
            if let Frame::Message(envelope) = frame {
                let item = match envelope.correlation {
                    Some(correlation) => RawItem::Ask(correlation),
                    None => RawItem::Blob(
                        postbox_wire::from_payload(&envelope.payload).expect("a Blob"),
                    ),
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        }
        buf.reserve(64 * 1024);
        if read.read_buf(&mut buf).await.expect("read") == 0 {
            break;
        }
    }
    drop(tx);
    let _ = actor.await;
}

async fn start_child(kind: &str) -> (tokio::process::Child, String) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = tokio::process::Command::new(exe)
        .args(["--child", kind])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    while let Some(line) = lines.next_line().await.expect("child output") {
        if let Some(addr) = line.strip_prefix("LISTENING ") {
            return (child, addr.to_owned());
        }
    }
    panic!("child exited before listening");
}

struct Report {
    tells_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// A client node: its system and transport (kept alive as long as its refs are used).
struct Node {
    _system: ActorSystem,
    remote: Remote,
}

async fn node(tls: bool) -> Node {
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config(tls)).await.expect("listen");
    Node {
        _system: system,
        remote,
    }
}

async fn count(sink: &ActorRef<Sink>) -> u64 {
    sink.ask(Count)
        .timeout(Duration::from_secs(300))
        .await
        .expect("count")
}

/// `n` tells, then one ask behind them (FIFO): the tells have all arrived when it answers.
async fn tell_and_confirm(sink: &ActorRef<Sink>, n: u64) {
    let body = payload();
    for _ in 0..n {
        sink.tell(Blob(body.clone())).await.expect("tell");
    }
    count(sink).await;
}

async fn sequential_asks(sink: &ActorRef<Sink>, asks: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(asks);
    for i in 0..asks as u64 {
        let t = Instant::now();
        assert_eq!(sink.ask(Ping(i)).await.expect("ping"), i + 1);
        latencies.push(t.elapsed());
    }
    latencies
}

async fn bench_postbox(tells: u64, asks: usize, kind: &str) -> Report {
    let tls = kind == "postbox-tls";
    let (mut child, addr) = start_child(kind).await;
    let client = node(tls).await;
    let sink: ActorRef<Sink> = client.remote.lookup(&addr, "sink").await.expect("lookup");
    // Warm up the connection and both ends.
    tell_and_confirm(&sink, 10_000).await;
    let before = count(&sink).await;
    let started = Instant::now();
    tell_and_confirm(&sink, tells).await;
    let elapsed = started.elapsed();
    assert_eq!(count(&sink).await - before, tells, "every tell arrived");
    let (p50, p99) = percentiles(sequential_asks(&sink, asks).await);
    drop(child.stdin.take());
    let _ = child.wait().await;
    Report {
        tells_per_sec: tells as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
    }
}

struct OpenLoop {
    max_asks_per_sec: f64,
    offered_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Asks in flight at once while measuring the maximum ask throughput.
const ASK_WINDOW: usize = 64;

/// The maximum ask throughput (closed loop, [`ASK_WINDOW`] askers), then an open-loop client
/// offering half of it: every millisecond it starts the asks due by then, each on a task of
/// its own, whether or not earlier ones have been answered; latency runs from each ask's
/// start to its answer.
async fn bench_open_loop(asks: usize) -> OpenLoop {
    let (mut child, addr) = start_child("postbox").await;
    let client = node(false).await;
    let sink: ActorRef<Sink> = client.remote.lookup(&addr, "sink").await.expect("lookup");
    sequential_asks(&sink, 1_000).await;
    let total = (asks * 5) as u64;
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut askers = tokio::task::JoinSet::new();
    for _ in 0..ASK_WINDOW {
        let sink = sink.clone();
        let issued = issued.clone();
        askers.spawn(async move {
            while issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                sink.ask(Ping(1)).await.expect("ping");
            }
        });
    }
    while askers.join_next().await.is_some() {}
    let max = total as f64 / started.elapsed().as_secs_f64();
    let rate = max / 2.0;
    let n = total / 2;
    let started = Instant::now();
    let mut running = Vec::with_capacity(n as usize);
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while sent < n {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(n);
        while sent < due {
            let sink = sink.clone();
            running.push(tokio::spawn(async move {
                let t = Instant::now();
                sink.ask(Ping(sent)).await.expect("ping");
                t.elapsed()
            }));
            sent += 1;
        }
    }
    let mut latencies = Vec::with_capacity(running.len());
    for ask in running {
        latencies.push(ask.await.expect("ask task"));
    }
    let offered = n as f64 / started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(latencies);
    drop(child.stdin.take());
    let _ = child.wait().await;
    OpenLoop {
        max_asks_per_sec: max,
        offered_per_sec: offered,
        p50,
        p99,
    }
}

/// Client nodes (fan-in) or target actors (fan-out).
const FAN: usize = 8;
/// Server nodes of the fan-out scenario.
const FAN_OUT_NODES: usize = 3;

/// Fan-in: [`FAN`] client nodes, each with its own connection, tell the one sink on one node
/// `tells / FAN` messages each at the same time; then each asks `asks / FAN` sequential asks,
/// all clients at once.
async fn bench_fan_in(tells: u64, asks: usize) -> Report {
    let (mut child, addr) = start_child("postbox").await;
    let mut clients = Vec::new();
    let mut sinks = Vec::new();
    for _ in 0..FAN {
        let client = node(false).await;
        let sink: ActorRef<Sink> = client.remote.lookup(&addr, "sink").await.expect("lookup");
        tell_and_confirm(&sink, 1_000).await;
        clients.push(client);
        sinks.push(sink);
    }
    let report = fan(&sinks, tells, asks).await;
    drop(child.stdin.take());
    let _ = child.wait().await;
    report
}

/// Fan-out: one client node tells [`FAN`] actors spread over [`FAN_OUT_NODES`] nodes,
/// `tells / FAN` messages each, all at once; then asks each `asks / FAN` sequential asks,
/// all at once.
async fn bench_fan_out(tells: u64, asks: usize) -> Report {
    let mut children = Vec::new();
    for _ in 0..FAN_OUT_NODES {
        children.push(start_child("postbox").await);
    }
    let client = node(false).await;
    let mut sinks = Vec::new();
    for i in 0..FAN {
        let (_, addr) = &children[i % FAN_OUT_NODES];
        let sink: ActorRef<Sink> = client
            .remote
            .lookup(addr, &format!("sink-{i}"))
            .await
            .expect("lookup");
        tell_and_confirm(&sink, 1_000).await;
        sinks.push(sink);
    }
    let report = fan(&sinks, tells, asks).await;
    for (mut child, _) in children {
        drop(child.stdin.take());
        let _ = child.wait().await;
    }
    report
}

/// Every sink told its share at once; then asked its share of sequential asks, all at once.
async fn fan(sinks: &[ActorRef<Sink>], tells: u64, asks: usize) -> Report {
    let share = tells / sinks.len() as u64;
    let mut before = 0;
    for sink in sinks {
        before += count(sink).await;
    }
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sink in sinks {
        let sink = sink.clone();
        senders.spawn(async move { tell_and_confirm(&sink, share).await });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("sender");
    }
    let elapsed = started.elapsed();
    let mut after = 0;
    for sink in sinks {
        after += count(sink).await;
    }
    // Each ref reports its actor's count, and an actor shared by several refs counts the
    // tells of all of them.
    let distinct: std::collections::HashSet<_> = sinks.iter().map(|s| s.path()).collect();
    let expected = share * (sinks.len() * sinks.len() / distinct.len()) as u64;
    assert_eq!(after - before, expected, "every tell arrived");
    let mut askers = tokio::task::JoinSet::new();
    for sink in sinks {
        let sink = sink.clone();
        let n = (asks / sinks.len()).max(10);
        askers.spawn(async move { sequential_asks(&sink, n).await });
    }
    let mut latencies = Vec::new();
    while let Some(done) = askers.join_next().await {
        latencies.extend(done.expect("asker"));
    }
    let (p50, p99) = percentiles(latencies);
    Report {
        tells_per_sec: (share * sinks.len() as u64) as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
    }
}

fn message_frame(target: u64, correlation: Option<u64>, payload: &Bytes) -> Frame {
    Frame::Message(Envelope {
        target: Target::Id(target),
        tag: "bench.Blob".into(),
        correlation,
        sender: None,
        trace: None,
        payload: payload.clone(),
    })
}

fn raw_body() -> Bytes {
    let mut encoded = Vec::new();
    postbox_wire::to_payload(&Blob(payload()), &mut encoded).expect("encode");
    Bytes::from(encoded)
}

/// One raw connection: frames written in 64 KiB batches, replies decoded.
struct RawConn {
    read: tokio::net::tcp::OwnedReadHalf,
    write: tokio::net::tcp::OwnedWriteHalf,
    codec: FrameCodec,
    inbuf: BytesMut,
    out: BytesMut,
    body: Bytes,
    next: u64,
}

impl RawConn {
    async fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        RawConn {
            read,
            write,
            codec: FrameCodec::default(),
            inbuf: BytesMut::new(),
            out: BytesMut::with_capacity(64 * 1024),
            body: raw_body(),
            next: 0,
        }
    }

    async fn reply(&mut self) -> u64 {
        loop {
            if let Some(Frame::Reply { correlation, .. }) =
                self.codec.decode(&mut self.inbuf).expect("frame")
            {
                return correlation;
            }
            assert!(
                self.read.read_buf(&mut self.inbuf).await.expect("read") > 0,
                "child closed"
            );
        }
    }

    /// `n` message frames to `targets` in turn, then an ask behind them, answered.
    async fn tells(&mut self, n: u64, targets: &[u64]) {
        for i in 0..n {
            let target = targets[i as usize % targets.len()];
            postbox_wire::encode_frame(&message_frame(target, None, &self.body), &mut self.out)
                .expect("encode");
            if self.out.len() >= 64 * 1024 {
                self.write.write_all(&self.out).await.expect("write");
                self.out.clear();
            }
        }
        self.ask(targets[0]).await;
    }

    async fn ask(&mut self, target: u64) {
        self.next += 1;
        let correlation = self.next;
        postbox_wire::encode_frame(
            &message_frame(target, Some(correlation), &self.body),
            &mut self.out,
        )
        .expect("encode");
        self.write.write_all(&self.out).await.expect("write");
        self.out.clear();
        assert_eq!(self.reply().await, correlation);
    }

    async fn asks(&mut self, n: usize, targets: &[u64]) -> Vec<Duration> {
        let mut latencies = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            self.ask(targets[i % targets.len()]).await;
            latencies.push(t.elapsed());
        }
        latencies
    }
}

async fn bench_raw(tells: u64, asks: usize, kind: &str) -> Report {
    let (mut child, addr) = start_child(kind).await;
    let mut conn = RawConn::connect(&addr).await;
    let started = Instant::now();
    conn.tells(tells, &[1]).await;
    let elapsed = started.elapsed();
    let (p50, p99) = percentiles(conn.asks(asks, &[1]).await);
    drop(child.stdin.take());
    let _ = child.wait().await;
    Report {
        tells_per_sec: (tells + 1) as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
    }
}

/// The raw baseline of a fan: `conns` connections (to `addrs` in turn), each carrying the
/// frames of its share of [`FAN`] targets, all at once; then each connection's sequential
/// asks, all at once.
async fn bench_raw_fan(tells: u64, asks: usize, nodes: usize) -> Report {
    let mut children = Vec::new();
    for _ in 0..nodes {
        children.push(start_child("raw").await);
    }
    // Fan-in: eight connections to one node, one target each. Fan-out: one connection per
    // node, carrying the targets placed there.
    let conns = if nodes == 1 { FAN } else { nodes };
    let share = tells / FAN as u64;
    let mut plans = Vec::new();
    for c in 0..conns {
        let targets: Vec<u64> = (0..FAN as u64)
            .filter(|t| (nodes == 1 && *t as usize == c) || (nodes > 1 && *t as usize % nodes == c))
            .collect();
        let conn = RawConn::connect(&children[c % nodes].1).await;
        plans.push((conn, targets));
    }
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for (mut conn, targets) in plans {
        senders.spawn(async move {
            conn.tells(share * targets.len() as u64, &targets).await;
            (conn, targets)
        });
    }
    let mut plans = Vec::new();
    while let Some(done) = senders.join_next().await {
        plans.push(done.expect("sender"));
    }
    let elapsed = started.elapsed();
    let mut askers = tokio::task::JoinSet::new();
    for (mut conn, targets) in plans {
        let n = (asks / FAN * targets.len()).max(10);
        askers.spawn(async move { conn.asks(n, &targets).await });
    }
    let mut latencies = Vec::new();
    while let Some(done) = askers.join_next().await {
        latencies.extend(done.expect("asker"));
    }
    let (p50, p99) = percentiles(latencies);
    for (mut child, _) in children {
        drop(child.stdin.take());
        let _ = child.wait().await;
    }
    Report {
        tells_per_sec: (share * FAN as u64) as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::env::var("POSTBOX_BENCH_WORKERS").map_or(2, |n| {
            n.parse()
                .expect("POSTBOX_BENCH_WORKERS: a number of worker threads")
        }))
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(kind) = value("--child") {
        let rt = runtime();
        match kind.as_str() {
            "postbox" => rt.block_on(child_postbox(false, false)),
            "postbox-tls" => rt.block_on(child_postbox(true, false)),
            "postbox-no-actor" => rt.block_on(child_postbox(false, true)),
            "raw" => rt.block_on(child_raw()),
            "raw-task" => rt.block_on(child_raw_task()),
            other => panic!("unknown child {other:?}"),
        }
        return;
    }
    let scale: f64 = std::env::var("POSTBOX_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let tells: u64 = value("--tells")
        .and_then(|v| v.parse().ok())
        .unwrap_or((1_000_000.0 * scale) as u64)
        .max(1);
    let asks: usize = value("--asks")
        .and_then(|v| v.parse().ok())
        .unwrap_or((20_000.0 * scale) as usize)
        .max(10);
    // `--only postbox` (for instruction counts under callgrind) or a comma-separated list of
    // raw, raw-task, postbox, no-actor, tls, open-loop, fan-in, fan-out.
    let only = value("--only");
    let runs = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == name))
    };
    let rt = runtime();
    println!("remote, two processes on loopback, {PAYLOAD}-byte payloads, {tells} tells, {asks} sequential asks");
    println!(
        "{:<22} {:>14} {:>12} {:>12}",
        "", "tells/s", "ask p50", "ask p99"
    );
    let show = |name: &str, r: &Report| {
        println!(
            "{:<22} {:>14.0} {:>12.1?} {:>12.1?}",
            name, r.tells_per_sec, r.p50, r.p99
        );
    };
    let raw = runs("raw").then(|| rt.block_on(bench_raw(tells, asks, "raw")));
    if let Some(r) = &raw {
        show("raw", r);
    }
    let raw_task = runs("raw-task").then(|| rt.block_on(bench_raw(tells, asks, "raw-task")));
    if let Some(r) = &raw_task {
        show("raw + task", r);
    }
    let postbox = runs("postbox").then(|| rt.block_on(bench_postbox(tells, asks, "postbox")));
    if let Some(r) = &postbox {
        show("postbox", r);
    }
    let no_actor =
        runs("no-actor").then(|| rt.block_on(bench_postbox(tells, asks, "postbox-no-actor")));
    if let Some(r) = &no_actor {
        show("postbox, no actor", r);
    }
    let tls = runs("tls").then(|| rt.block_on(bench_postbox(tells, asks, "postbox-tls")));
    if let Some(r) = &tls {
        show("postbox+tls", r);
    }
    if runs("fan-in") {
        let raw_in = rt.block_on(bench_raw_fan(tells, asks, 1));
        show("raw fan-in 8→1", &raw_in);
        let fan_in = rt.block_on(bench_fan_in(tells, asks));
        show("postbox fan-in 8→1", &fan_in);
        println!(
            "fan-in postbox / raw: throughput {:.2}×, ask p99 {:.2}×",
            fan_in.tells_per_sec / raw_in.tells_per_sec,
            fan_in.p99.as_secs_f64() / raw_in.p99.as_secs_f64()
        );
    }
    if runs("fan-out") {
        let raw_out = rt.block_on(bench_raw_fan(tells, asks, FAN_OUT_NODES));
        show("raw fan-out 1→8/3", &raw_out);
        let fan_out = rt.block_on(bench_fan_out(tells, asks));
        show("postbox fan-out 1→8/3", &fan_out);
        println!(
            "fan-out postbox / raw: throughput {:.2}×, ask p99 {:.2}×",
            fan_out.tells_per_sec / raw_out.tells_per_sec,
            fan_out.p99.as_secs_f64() / raw_out.p99.as_secs_f64()
        );
    }
    if runs("open-loop") {
        let open = rt.block_on(bench_open_loop(asks));
        println!(
            "postbox asks: max {:.0}/s ({ASK_WINDOW} in flight); open loop at {:.0}/s: p50 {:.1?}, p99 {:.1?}",
            open.max_asks_per_sec, open.offered_per_sec, open.p50, open.p99
        );
    }
    if let (Some(raw), Some(postbox)) = (&raw, &postbox) {
        println!(
            "postbox / raw: throughput {:.2}×, ask p50 {:.2}×, ask p99 {:.2}×",
            postbox.tells_per_sec / raw.tells_per_sec,
            postbox.p50.as_secs_f64() / raw.p50.as_secs_f64(),
            postbox.p99.as_secs_f64() / raw.p99.as_secs_f64()
        );
    }
    let ratio = |name: &str, of: &Option<Report>, to: &Option<Report>, base: &str| {
        if let (Some(of), Some(to)) = (of, to) {
            println!(
                "{name} / {base}: throughput {:.2}×, ask p50 {:.2}×",
                of.tells_per_sec / to.tells_per_sec,
                of.p50.as_secs_f64() / to.p50.as_secs_f64()
            );
        }
    };
    ratio("postbox", &postbox, &raw_task, "raw + task");
    ratio("raw + task", &raw_task, &raw, "raw");
    ratio("postbox, no actor", &no_actor, &raw, "raw");
    if let (Some(raw), Some(postbox), Some(tls)) = (&raw, &postbox, &tls) {
        println!(
            "postbox+tls / raw: throughput {:.2}×, ask p50 {:.2}×; TLS / plain: throughput {:.2}×",
            tls.tells_per_sec / raw.tells_per_sec,
            tls.p50.as_secs_f64() / raw.p50.as_secs_f64(),
            tls.tells_per_sec / postbox.tells_per_sec
        );
    }
}

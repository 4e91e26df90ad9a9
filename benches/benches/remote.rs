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
//! - **postbox + TLS**: the postbox run again with mutual TLS on both nodes (certificates from
//!   `crates/postbox-remote/tests/fixtures/tls`).
//!
//! Usage: `cargo bench --bench remote -- [--tells N] [--asks K]` (defaults 1 000 000 and
//! 20 000, × `POSTBOX_BENCH_SCALE`).

use bytes::{Bytes, BytesMut};
use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message, Remote, RemoteConfig, TlsConfig};
use postbox_wire::{Envelope, Frame, FrameCodec, Target};
use serde::{Deserialize, Serialize};
use std::process::Stdio;
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

#[derive(Serialize, Deserialize)]
struct Count;
impl Message for Count {
    type Reply = u64;
    remote_message!("bench.Count");
}
impl Handler<Count> for Sink {
    async fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u64 {
        self.count
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

async fn child_postbox(tls: bool) {
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config(tls)).await.expect("listen");
    remote.expose::<Sink>();
    let sink = system
        .spawn(Props::new(Sink::default).mailbox(MailboxCapacity::bounded(4096)))
        .expect("spawn");
    system.registry().register("sink", &sink).expect("register");
    println!("LISTENING {}", remote.addr());
    wait_for_stdin_eof().await;
}

/// Decodes frames and counts messages; answers a message that carries a correlation id.
async fn child_raw() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    println!("LISTENING {}", listener.local_addr().expect("addr"));
    let serve = async {
        let (mut stream, _) = listener.accept().await.expect("accept");
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
    };
    tokio::select! {
        () = serve => {}
        () = wait_for_stdin_eof() => {}
    }
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

async fn bench_postbox(tells: u64, asks: usize, tls: bool) -> Report {
    let (mut child, addr) = start_child(if tls { "postbox-tls" } else { "postbox" }).await;
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config(tls)).await.expect("listen");
    let sink: ActorRef<Sink> = remote.lookup(&addr, "sink").await.expect("lookup");
    let body = payload();
    // Warm up the connection and both ends.
    for _ in 0..10_000 {
        sink.tell(Blob(body.clone())).await.expect("tell");
    }
    let before = sink
        .ask(Count)
        .timeout(Duration::from_secs(60))
        .await
        .expect("count");
    let started = Instant::now();
    for _ in 0..tells {
        sink.tell(Blob(body.clone())).await.expect("tell");
    }
    let counted = sink
        .ask(Count)
        .timeout(Duration::from_secs(300))
        .await
        .expect("count");
    let elapsed = started.elapsed();
    assert_eq!(counted - before, tells, "every tell arrived");
    let mut latencies = Vec::with_capacity(asks);
    for i in 0..asks as u64 {
        let t = Instant::now();
        assert_eq!(sink.ask(Ping(i)).await.expect("ping"), i + 1);
        latencies.push(t.elapsed());
    }
    let (p50, p99) = percentiles(latencies);
    drop(child.stdin.take());
    let _ = child.wait().await;
    Report {
        tells_per_sec: tells as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
    }
}

fn message_frame(correlation: Option<u64>, payload: &Bytes) -> Frame {
    Frame::Message(Envelope {
        target: Target::Id(1),
        tag: "bench.Blob".into(),
        correlation,
        sender: None,
        trace: None,
        payload: payload.clone(),
    })
}

async fn bench_raw(tells: u64, asks: usize) -> Report {
    let (mut child, addr) = start_child("raw").await;
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut encoded = Vec::new();
    postbox_wire::to_payload(&Blob(payload()), &mut encoded).expect("encode");
    let body = Bytes::from(encoded);
    let mut codec = FrameCodec::default();
    let mut inbuf = BytesMut::new();
    let ask = |correlation: u64| message_frame(Some(correlation), &body);
    async fn reply(
        read: &mut tokio::net::tcp::OwnedReadHalf,
        codec: &mut FrameCodec,
        buf: &mut BytesMut,
    ) -> u64 {
        loop {
            if let Some(Frame::Reply { correlation, .. }) = codec.decode(buf).expect("frame") {
                return correlation;
            }
            assert!(read.read_buf(buf).await.expect("read") > 0, "child closed");
        }
    }
    let started = Instant::now();
    let mut out = BytesMut::with_capacity(64 * 1024);
    for _ in 0..tells {
        postbox_wire::encode_frame(&message_frame(None, &body), &mut out).expect("encode");
        if out.len() >= 64 * 1024 {
            write.write_all(&out).await.expect("write");
            out.clear();
        }
    }
    postbox_wire::encode_frame(&ask(0), &mut out).expect("encode");
    write.write_all(&out).await.expect("write");
    out.clear();
    reply(&mut read, &mut codec, &mut inbuf).await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(asks);
    for i in 1..=asks as u64 {
        let t = Instant::now();
        postbox_wire::encode_frame(&ask(i), &mut out).expect("encode");
        write.write_all(&out).await.expect("write");
        out.clear();
        assert_eq!(reply(&mut read, &mut codec, &mut inbuf).await, i);
        latencies.push(t.elapsed());
    }
    let (p50, p99) = percentiles(latencies);
    drop(child.stdin.take());
    let _ = child.wait().await;
    Report {
        tells_per_sec: (tells + 1) as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
            "postbox" => rt.block_on(child_postbox(false)),
            "postbox-tls" => rt.block_on(child_postbox(true)),
            "raw" => rt.block_on(child_raw()),
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
    let rt = runtime();
    let raw = rt.block_on(bench_raw(tells, asks));
    let postbox = rt.block_on(bench_postbox(tells, asks, false));
    let tls = rt.block_on(bench_postbox(tells, asks, true));
    println!("remote, two processes on loopback, {PAYLOAD}-byte payloads, {tells} tells, {asks} sequential asks");
    println!(
        "{:<12} {:>14} {:>12} {:>12}",
        "", "tells/s", "ask p50", "ask p99"
    );
    for (name, r) in [("raw", &raw), ("postbox", &postbox), ("postbox+tls", &tls)] {
        println!(
            "{:<12} {:>14.0} {:>12.1?} {:>12.1?}",
            name, r.tells_per_sec, r.p50, r.p99
        );
    }
    println!(
        "postbox / raw: throughput {:.2}×, ask p50 {:.2}×",
        postbox.tells_per_sec / raw.tells_per_sec,
        postbox.p50.as_secs_f64() / raw.p50.as_secs_f64()
    );
    println!(
        "postbox+tls / raw: throughput {:.2}×, ask p50 {:.2}×; TLS / plain: throughput {:.2}×",
        tls.tells_per_sec / raw.tells_per_sec,
        tls.p50.as_secs_f64() / raw.p50.as_secs_f64(),
        tls.tells_per_sec / postbox.tells_per_sec
    );
}

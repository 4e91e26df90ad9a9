//! Idle-actor memory and spawn cost per peer (plain `main`, `harness = false`).
//!
//! The parent process re-executes this binary once per peer as a child
//! (`<exe> --child --peer <name> --actors <N>`), so every peer starts from a fresh process and
//! cannot inherit another peer's heap. The child builds the peer's runtime (2-worker tokio, or an
//! actix System + one worker Arbiter), reads its resident set size from `/proc/self/statm`,
//! spawns `N` idle actors (started, never messaged) and waits until all of them ran their start
//! hook, reads RSS again, and prints one machine-readable `MEMORY ...` line. The parent collects
//! those lines and prints a table of time per spawn and resident bytes per actor
//! (`(rss_after - rss_before) / N`; this includes the caller-side ref each peer hands back).
//!
//! Usage: `cargo bench --bench memory -- [--actors N] [--peers raw,actix,kameo,ractor]`
//! (default N = 1 000 000 × `POSTBOX_BENCH_SCALE`, or `POSTBOX_BENCH_MEMORY_ACTORS`).

use std::process::{Command, Stdio};

mod peers;

use peers::{MemoryReport, Params, PEERS};

fn arg_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).map(|i| {
        args.get(i + 1)
            .unwrap_or_else(|| panic!("{flag} needs a value"))
            .clone()
    })
}

fn child(peer: &str, actors: u64) {
    let report: MemoryReport = match peer {
        "postbox" => peers::postbox::memory(actors),
        "raw" => peers::raw::memory(actors),
        "actix" => peers::actix::memory(actors),
        "kameo" => peers::kameo::memory(actors),
        "ractor" => peers::ractor::memory(actors),
        other => panic!("unknown peer {other:?}; expected one of {PEERS:?}"),
    };
    println!(
        "MEMORY peer={peer} actors={} spawn_ns={} rss_before={} rss_after={}",
        report.actors,
        report.spawn_time.as_nanos(),
        report.rss_before,
        report.rss_after
    );
}

struct Row {
    peer: String,
    actors: u64,
    spawn_ns: u128,
    rss_before: u64,
    rss_after: u64,
}

fn parse_line(line: &str) -> Option<Row> {
    let rest = line.strip_prefix("MEMORY ")?;
    let field = |key: &str| -> Option<&str> {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    Some(Row {
        peer: field("peer")?.to_string(),
        actors: field("actors")?.parse().ok()?,
        spawn_ns: field("spawn_ns")?.parse().ok()?,
        rss_before: field("rss_before")?.parse().ok()?,
        rss_after: field("rss_after")?.parse().ok()?,
    })
}

fn parent(actors: u64, peers: &[String]) {
    let exe = std::env::current_exe().expect("cannot locate the memory bench executable");
    println!("memory: {actors} idle actors per peer, one child process per peer");
    let mut rows = Vec::new();
    for peer in peers {
        let actors_arg = actors.to_string();
        let out = Command::new(&exe)
            .args([
                "--child",
                "--peer",
                peer.as_str(),
                "--actors",
                actors_arg.as_str(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("failed to run the memory child process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(parse_line) {
            Some(row) if out.status.success() => {
                println!("  {}", stdout.trim());
                rows.push(row);
            }
            _ => println!("  {peer}: child failed ({}), no result", out.status),
        }
    }

    println!();
    println!(
        "| {:<7} | {:>9} | {:>12} | {:>10} | {:>13} | {:>13} | {:>11} |",
        "peer", "actors", "spawn total", "per spawn", "RSS before", "RSS after", "bytes/actor"
    );
    println!(
        "|{:-<9}|{:->11}|{:->14}|{:->12}|{:->15}|{:->15}|{:->13}|",
        "", "", "", "", "", "", ""
    );
    for r in &rows {
        let per_spawn_ns = r.spawn_ns as f64 / r.actors as f64;
        let per_actor = r.rss_after.saturating_sub(r.rss_before) as f64 / r.actors as f64;
        println!(
            "| {:<7} | {:>9} | {:>10.1}ms | {:>8.0}ns | {:>10.1}MiB | {:>10.1}MiB | {:>11.0} |",
            r.peer,
            r.actors,
            r.spawn_ns as f64 / 1e6,
            per_spawn_ns,
            r.rss_before as f64 / (1024.0 * 1024.0),
            r.rss_after as f64 / (1024.0 * 1024.0),
            per_actor
        );
    }
}

fn main() {
    // `cargo bench` appends `--bench` (and may pass criterion-style filters); ignore what we do
    // not know.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let actors = match arg_value(&args, "--actors") {
        Some(v) => v.parse().expect("--actors must be an unsigned integer"),
        None => Params::from_env().memory_actors,
    };
    if args.iter().any(|a| a == "--child") {
        let peer = arg_value(&args, "--peer").expect("--child needs --peer <name>");
        child(&peer, actors);
        return;
    }
    let peers: Vec<String> = match arg_value(&args, "--peers") {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => PEERS.iter().map(|p| p.to_string()).collect(),
    };
    parent(actors, &peers);
}

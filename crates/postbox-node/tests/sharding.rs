//! The built-in `counter` as a sharded, persistent entity, with real `postbox-node`
//! processes sharing the default embedded store (one SQLite file, as nodes started from
//! one folder do): one key is one sequence of values through any node, and after SIGKILL
//! of the node hosting it, in the middle of a stream of asks, every ask resolves and every
//! acknowledged increment is in the final value; with `--remember-entities`, the killed
//! host's counter runs again on another node before anyone sends to it. And five nodes in
//! network namespaces cut 3|2: the two down themselves, their entities re-home to the three
//! and continue (a key written from both sides through the cut is acknowledged once per
//! value, with none lost), and the restarted two rejoin after the heal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod support;

use postbox_testkit::{until, until_async, within};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `path` on the node's metrics endpoint, the whole response.
async fn get(node: &NodeProcess, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(&node.metrics).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// `send counter` through `via`: the counter's value and hosting node, or the error.
async fn add(via: &NodeProcess, key: &str, n: i64) -> Result<(i64, String), String> {
    add_through(via.netns.as_deref(), &via.remote, key, n).await
}

/// [`add`] through the node at `remote` (in `netns`, if any).
async fn add_through(
    netns: Option<&str>,
    remote: &str,
    key: &str,
    n: i64,
) -> Result<(i64, String), String> {
    let body = format!(r#"{{"key": "{key}", "add": {n}}}"#);
    let output = run(
        netns,
        &[
            "send",
            "--json",
            "--timeout",
            "20s",
            "--node",
            remote,
            "counter",
            &body,
        ],
    )
    .await;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    Ok((
        reply["reply"]["value"].as_i64().unwrap(),
        reply["reply"]["node"].as_str().unwrap().to_owned(),
    ))
}

/// Three nodes on loopback started with `settings`, the second and third seeded by the
/// first, once each sees all three up.
async fn three_on_loopback(folder: Option<&Path>, settings: &[&str]) -> Vec<NodeProcess> {
    let loopback = "127.0.0.1:0";
    let first = NodeProcess::start_in(folder, None, loopback, loopback, settings).await;
    let seed = first.gossip.clone();
    let mut extra = settings.to_vec();
    extra.extend(["--seed", seed.as_str()]);
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(NodeProcess::start_in(folder, None, loopback, loopback, &extra).await);
    }
    let everyone: Vec<&NodeProcess> = nodes.iter().collect();
    for node in &everyone {
        until_seen(node, &everyone, "up").await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_one_counter_across_nodes_and_survives_sigkill_of_its_host() {
    // As the README runs it: three nodes started from one folder, no store settings.
    let folder = tempfile::tempdir().unwrap();
    let nodes = three_on_loopback(Some(folder.path()), &[]).await;
    assert!(
        folder.path().join("postbox-data/postbox.db").exists(),
        "the default store, shared from the folder"
    );

    // One key, one sequence of values, whichever node is asked; one hosting node.
    let mut host = None;
    for (i, via) in nodes.iter().cycle().take(6).enumerate() {
        let (value, node) = until_async(BOUND, "the counter answers", async || {
            add(via, "visits", 1).await.ok()
        })
        .await;
        assert_eq!(value, i as i64 + 1, "through {}", via.remote);
        assert_eq!(host.get_or_insert(node.clone()), &node, "one home");
    }
    let host = host.unwrap();

    // `shards` lists every up member's counter shards: each shard once, the key's entity on
    // its host.
    let shards = json(None, &["shards", "--json", "--node", &nodes[0].remote]).await;
    let shards = shards.as_array().unwrap();
    assert_eq!(shards.len(), 3, "{shards:?}");
    let mut all: Vec<u64> = shards
        .iter()
        .flat_map(|s| {
            s["shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
        })
        .collect();
    let hosted = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), hosted, "no shard on two nodes: {shards:?}");
    let on_host = shards.iter().find(|s| s["node"] == host.as_str()).unwrap();
    assert_eq!(on_host["entity_type"], "counter");
    assert_eq!(on_host["entities"], 1, "{on_host}");
    // Allocated: the placement puts each of the counter's 100 shards on one member, active
    // there or not (only the one the key lives in has had a message).
    let allocated: u64 = shards
        .iter()
        .map(|s| s["allocated"].as_u64().unwrap())
        .sum();
    assert_eq!(allocated, 100, "{shards:?}");
    let allocated_on_host = on_host["allocated"].as_u64().unwrap();
    assert!(
        allocated_on_host >= on_host["shards"].as_array().unwrap().len() as u64,
        "{on_host}"
    );

    // /metrics on the host: its shards and its one entity (gauges refreshed every second).
    let host_node = nodes.iter().find(|n| n.remote == host).unwrap();
    let shards_on_host = on_host["shards"].as_array().unwrap().len();
    until_async(BOUND, "the host's sharding gauges", async || {
        let text = get(host_node, "/metrics").await;
        let shards = format!("postbox_sharding_shards{{entity_type=\"counter\"}} {shards_on_host}");
        let allocated = format!(
            "postbox_sharding_allocated_shards{{entity_type=\"counter\"}} {allocated_on_host}"
        );
        (text.contains(&shards)
            && text.contains(&allocated)
            && text.contains("postbox_sharding_entities{entity_type=\"counter\"} 1")
            && text.contains("postbox_sharding_activations_total{entity_type=\"counter\"} 1"))
        .then_some(())
    })
    .await;
    // The dashboard's members table: each member's shards, as the node it asks gathered them.
    let other = nodes.iter().find(|n| n.remote != host).unwrap();
    until_async(
        BOUND,
        "/members shows the shards of every member",
        async || {
            let response = get(other, "/members").await;
            let body = response.split("\r\n\r\n").nth(1)?;
            let view: Value = serde_json::from_str(body).ok()?;
            let members = view["members"].as_array()?;
            let host_entry = members.iter().find(|m| m["address"] == host.as_str())?;
            let all_counted = members
                .iter()
                .all(|m| m["shards"].is_u64() && m["allocated_shards"].is_u64());
            (all_counted
                && host_entry["shards"].as_u64()? == shards_on_host as u64
                && host_entry["allocated_shards"].as_u64()? == allocated_on_host)
                .then_some(())
        },
    )
    .await;
    let victim = nodes.iter().position(|n| n.remote == host).unwrap();
    let client = (victim + 1) % nodes.len();

    // A stream of asks through another node; its host is killed in the middle.
    let mut acknowledged = 0i64;
    let mut attempted = 0i64;
    let mut failed = 0;
    let mut killed = false;
    let mut rehomed = None;
    while rehomed.is_none() {
        attempted += 1;
        match add(&nodes[client], "visits", 1).await {
            Ok((value, node)) => {
                acknowledged += 1;
                assert!(
                    value >= 6 + acknowledged,
                    "acknowledged increments kept: {value}"
                );
                assert!(value <= 6 + attempted, "nothing counted twice: {value}");
                if killed && node != host {
                    rehomed = Some(node);
                }
            }
            Err(_) => failed += 1,
        }
        if attempted == 5 {
            nodes[victim].signal("KILL").await;
            killed = true;
        }
        assert!(
            attempted < 400,
            "the key never answered again after its host was killed"
        );
    }
    let rehomed = rehomed.unwrap();
    assert_ne!(rehomed, host);
    let (value, node) = add(&nodes[client], "visits", 0).await.unwrap();
    assert_eq!(node, rehomed);
    assert!(
        (6 + acknowledged..=6 + attempted).contains(&value),
        "final {value}: {acknowledged} acknowledged, {attempted} attempted, {failed} failed"
    );
}

/// The exit code of a node the cluster declared down.
const EXIT_DOWNED: i32 = 3;

/// Five nodes in network namespaces sharing one SQLite file, cut 3 | 2. The two down
/// themselves and exit; their keys re-home to the three and continue from their last
/// acknowledged values; after the heal the two restart and rejoin. One key of the two is
/// written from both sides all through the cut — by the node hosting it until it downs
/// itself, and through one of the three, whose adds wait until the key re-homes: two live
/// instances writing from one state would acknowledge the same value twice, and a lost
/// write would leave the counter short of the acknowledged adds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_of_the_losing_side_of_a_partition_rehome_to_the_winning_side() {
    let folder = tempfile::tempdir().unwrap();
    let store = folder.path().join("postbox.db");
    let store = store.to_str().unwrap().to_owned();
    let lan = support::lan::Lan::new(5);
    let at = |i: usize, port: u16| format!("{}:{port}", lan.addr(i));
    let seed = at(0, 4200);
    let start = async |i: usize| {
        let mut extra = vec!["--store", "sqlite", "--store-path", store.as_str()];
        if i > 0 {
            extra.extend(["--seed", seed.as_str()]);
        }
        let ns = lan.ns(i);
        NodeProcess::start(Some(&ns), &at(i, 4100), &at(i, 4200), &extra).await
    };
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(start(i).await);
    }
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    until_seen(&nodes[0], &all, "up").await;
    until_seen(&nodes[4], &all, "up").await;

    // Keys everywhere, some hosted by the two that will lose.
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let mut hosts = std::collections::HashMap::new();
    for key in &keys {
        let (value, host) = until_async(BOUND, "the counter answers", async || {
            add(&nodes[0], key, 1).await.ok()
        })
        .await;
        assert_eq!(value, 1);
        hosts.insert(key.clone(), host);
    }
    let losers = [nodes[3].remote.clone(), nodes[4].remote.clone()];
    let moving: Vec<&String> = keys
        .iter()
        .filter(|k| losers.contains(&hosts[*k]))
        .collect();
    assert!(!moving.is_empty(), "the two host some keys: {hosts:?}");

    // One more key on the two, written from both sides all through the cut: by the node
    // hosting it (until it downs itself) and by one of the three (once it re-homes there).
    let mut contested = None;
    for i in 0..200 {
        let key = format!("contested-{i}");
        if add(&nodes[0], &key, 0)
            .await
            .is_ok_and(|(_, host)| losers.contains(&host))
        {
            contested = Some(key);
            break;
        }
    }
    let contested = contested.expect("a key hosted by the two");
    let stop = Arc::new(AtomicBool::new(false));
    let minority_acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = [(&nodes[3], Some(&minority_acks)), (&nodes[1], None)]
        .into_iter()
        .map(|(via, acks)| {
            let (netns, remote) = (via.netns.clone(), via.remote.clone());
            let (key, stop, acks) = (contested.clone(), stop.clone(), acks.cloned());
            tokio::spawn(async move {
                let (mut acknowledged, mut failed) = (Vec::new(), 0);
                let mut pace = tokio::time::interval(std::time::Duration::from_millis(50));
                while !stop.load(Relaxed) {
                    pace.tick().await;
                    match add_through(netns.as_deref(), &remote, &key, 1).await {
                        Ok((value, _)) => {
                            acknowledged.push(value);
                            if let Some(acks) = &acks {
                                acks.fetch_add(1, Relaxed);
                            }
                        }
                        Err(_) => failed += 1,
                    }
                }
                (acknowledged, failed)
            })
        })
        .collect();
    until(BOUND, "the two's writer is acknowledged", || {
        minority_acks.load(Relaxed) >= 2
    })
    .await;

    // 3 | 2: the two are a minority of five, down themselves and stop hosting.
    lan.cut(&[3, 4]);
    for node in &mut nodes[3..] {
        let status = node.exited(BOUND).await;
        assert_eq!(status.code(), Some(EXIT_DOWNED), "{status:?}");
    }
    // The contested key answers on the three, then the writers stop.
    until_async(
        BOUND,
        "the contested key answers on the three",
        async || {
            add(&nodes[2], &contested, 0)
                .await
                .ok()
                .filter(|(_, host)| !losers.contains(host))
        },
    )
    .await;
    stop.store(true, Relaxed);
    let (mut acknowledged, mut failed) = (Vec::new(), 0);
    for writer in writers {
        let (values, failures) = within(BOUND, writer).await.unwrap();
        acknowledged.extend(values);
        failed += failures;
    }
    // Two live instances writing from one state would both acknowledge the same value: each
    // value is acknowledged once, and the counter holds every acknowledged add (plus at
    // most the failed ones, which may have been applied).
    let total = acknowledged.len();
    acknowledged.sort_unstable();
    acknowledged.dedup();
    assert_eq!(acknowledged.len(), total, "a value acknowledged twice");
    let (now, _) = until_async(BOUND, "the contested key answers", async || {
        add(&nodes[2], &contested, 0).await.ok()
    })
    .await;
    assert!(total > 0, "no add was acknowledged ({failed} failed)");
    assert!(
        (total as i64..=total as i64 + failed).contains(&now),
        "{now} after {total} acknowledged and {failed} failed adds"
    );
    // Every key answers on the three, continuing from its last acknowledged value.
    let mut values = std::collections::HashMap::new();
    for key in &keys {
        let (value, host) = add_one_acknowledged(&nodes[1], key, 1).await;
        assert!(!losers.contains(&host), "{key} on {host}, a downed node");
        values.insert(key.clone(), value);
    }

    // Heal; the two restart as new incarnations, rejoin, and the keys go on from anywhere.
    lan.heal();
    let mut restarted = Vec::new();
    for i in 3..5 {
        restarted.push(start(i).await);
    }
    let everyone: Vec<&NodeProcess> = nodes[..3].iter().chain(restarted.iter()).collect();
    until_seen(&nodes[0], &everyone, "up").await;
    until_seen(&restarted[1], &everyone, "up").await;
    for key in &keys {
        add_one_acknowledged(&restarted[0], key, values[key]).await;
    }
}

/// Adds 1 to `key` through `via` until an add is acknowledged, and checks the value it
/// acknowledges: `before` (the last acknowledged value) plus this add, plus at most one for
/// each attempt that failed — a failed ask may still have been applied (its reply lost or
/// late), but none is applied twice and none acknowledged is lost. The value and host.
async fn add_one_acknowledged(via: &NodeProcess, key: &str, before: i64) -> (i64, String) {
    let mut failures = Vec::new();
    let (value, host) = until_async(
        BOUND,
        format!("{key} answers through {}", via.remote),
        async || match add(via, key, 1).await {
            Ok(answer) => Some(answer),
            Err(error) => {
                failures.push(error);
                None
            }
        },
    )
    .await;
    let most = before + 1 + failures.len() as i64;
    assert!(
        (before + 1..=most).contains(&value),
        "{key}: {value} after {before}, with {} failed attempts: {failures:?}",
        failures.len()
    );
    (value, host)
}

/// `--remember-entities`: after SIGKILL of the node hosting a counter, the counter runs
/// again on another node before anyone sends to it, with its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_remember_entities_a_killed_hosts_counter_restarts_without_a_message() {
    let folder = tempfile::tempdir().unwrap();
    let store = folder.path().join("postbox.db");
    let store = store.to_str().unwrap();
    let shared = [
        "--store",
        "sqlite",
        "--store-path",
        store,
        "--remember-entities",
        "true",
    ];
    let nodes = three_on_loopback(None, &shared).await;
    let (_, host) = until_async(BOUND, "the counter answers", async || {
        add(&nodes[0], "kept", 5).await.ok()
    })
    .await;
    let victim = nodes.iter().position(|n| n.remote == host).unwrap();
    let survivor = (victim + 1) % nodes.len();
    // Recorded as remembered (in the background) before the kill.
    until_async(BOUND, "the host remembers its counter", async || {
        let shards = json(None, &["shards", "--json", "--node", &host]).await;
        let on_host = shards
            .as_array()?
            .iter()
            .find(|s| s["node"] == host.as_str())?
            .clone();
        (on_host["remembered"].as_u64()? == 1).then_some(())
    })
    .await;
    nodes[victim].signal("KILL").await;
    let survivors: Vec<&NodeProcess> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();
    let victim_node = &nodes[victim];
    for node in &survivors {
        until_seen(node, &[victim_node], "down").await;
    }
    // No message: a survivor starts it because it was remembered.
    let new_host = until_async(BOUND, "the counter runs again, unasked", async || {
        let shards = json(
            None,
            &["shards", "--json", "--node", &nodes[survivor].remote],
        )
        .await;
        shards.as_array()?.iter().find_map(|s| {
            (s["node"] != host.as_str() && s["entities"].as_u64()? == 1)
                .then(|| s["node"].as_str().map(str::to_owned))
                .flatten()
        })
    })
    .await;
    let (value, node) = add(&nodes[survivor], "kept", 1).await.unwrap();
    assert_eq!(value, 6, "its value came with it");
    assert_eq!(node, new_host, "the one started unasked answered");
}

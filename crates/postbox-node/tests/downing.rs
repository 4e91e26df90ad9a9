//! A downed node finds out and gets out of the way (issue 12, finding 2), with real
//! `postbox-node` processes: one paused with SIGSTOP until the others declare it down, and a
//! real network partition of five nodes in network namespaces (`ip netns`, veth pairs, two
//! bridges), made and removed by the test. The node that lost exits with code 3 and says why;
//! the others keep serving; nodes restarted after the heal join as new incarnations.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod support;

use support::lan::Lan;
use support::*;

/// The exit code of a node the cluster declared down.
const EXIT_DOWNED: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_learns_it_is_down_and_exits() {
    let loopback = "127.0.0.1:0";
    // The default strategy, named as an operator would.
    let one = NodeProcess::start(None, loopback, loopback, &["--downing", "keep-majority"]).await;
    let seed = ["--services", "", "--seed", one.gossip.as_str()];
    let two = NodeProcess::start(None, loopback, loopback, &seed).await;
    let mut three = NodeProcess::start(None, loopback, loopback, &seed).await;
    until_seen(&one, &[&one, &two, &three], "up").await;
    until_seen(&three, &[&one, &two, &three], "up").await;

    // A GC pause, a VM migration: the process stops answering, but keeps its sockets.
    three.signal("STOP").await;
    until_seen(&one, &[&three], "down").await;
    until_seen(&two, &[&three], "down").await;
    three.signal("CONT").await;

    // It comes back as a zombie no more: it learns it was downed, says so, and exits.
    let status = three.exited(BOUND).await;
    assert_eq!(status.code(), Some(EXIT_DOWNED), "{status:?}");
    assert!(
        three.logged("declared down by the cluster"),
        "no clear log line"
    );
    // The others never noticed anything but its going.
    until_seen(&one, &[&one, &two], "up").await;
    until_seen(&two, &[&one, &two], "up").await;
    for node in [&one, &two] {
        let members = node.members().await;
        assert_eq!(three.status_in(&members).as_deref(), Some("down"));
    }
    // And their metrics show the decision: one of them at least kept its side (the other
    // may have learned the verdict from gossip), neither is down.
    let mut kept = 0;
    for node in [&one, &two] {
        let text = node.scrape().await;
        let value = |series: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        kept += value("postbox_cluster_downing_decisions_total{decision=\"keep_this_side\"}");
        assert_eq!(value("postbox_cluster_this_node_down"), 0);
        assert_eq!(
            value("postbox_cluster_downing_decisions_total{decision=\"down_this_side\"}"),
            0
        );
    }
    assert!(kept >= 1, "no node recorded its downing decision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losing_side_of_a_partition_downs_itself_and_the_cluster_heals() {
    let lan = Lan::new(5);
    let at = |i: usize, port: u16| format!("{}:{port}", lan.addr(i));
    let seed = at(0, 4200);
    let mut nodes = Vec::new();
    for i in 0..5 {
        let mut extra = vec!["--services", ""];
        if i > 0 {
            extra.extend(["--seed", seed.as_str()]);
        }
        let ns = lan.ns(i);
        nodes.push(NodeProcess::start(Some(&ns), &at(i, 4100), &at(i, 4200), &extra).await);
    }
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    until_seen(&nodes[0], &all, "up").await;
    until_seen(&nodes[4], &all, "up").await;

    // 3 | 2: the two are a minority of five and go; the three stay.
    lan.cut(&[3, 4]);
    for node in &mut nodes[3..] {
        let status = node.exited(BOUND).await;
        assert_eq!(status.code(), Some(EXIT_DOWNED), "{status:?}");
        assert!(
            node.logged("declared down by the cluster"),
            "no clear log line"
        );
    }
    let (majority, minority) = nodes.split_at_mut(3);
    for node in majority.iter_mut() {
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "a majority node exited"
        );
    }
    let stay: Vec<&NodeProcess> = majority.iter().collect();
    let gone: Vec<&NodeProcess> = minority.iter().collect();
    until_seen(&majority[0], &stay, "up").await;
    until_seen(&majority[0], &gone, "down").await;

    // Heal; the orchestrator restarts the two: new incarnations that join the three.
    lan.heal();
    let mut restarted = Vec::new();
    for i in 3..5 {
        let ns = lan.ns(i);
        let extra = ["--services", "", "--seed", seed.as_str()];
        restarted.push(NodeProcess::start(Some(&ns), &at(i, 4100), &at(i, 4200), &extra).await);
    }
    let mut everyone: Vec<&NodeProcess> = majority.iter().collect();
    everyone.extend(restarted.iter());
    until_seen(&majority[0], &everyone, "up").await;
    until_seen(&restarted[1], &everyone, "up").await;
    for node in majority.iter_mut() {
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "a majority node exited"
        );
    }
    drop(restarted);
    drop(nodes);
}

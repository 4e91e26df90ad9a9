//! Remember entities: remembered entities start at their shard's new home without a
//! message; passivated ones are forgotten; the setting off starts nothing eagerly; a
//! failing store is counted while entities serve.

use crate::common::*;
use postbox_cluster::MemberStatus;
use postbox_persistence::{MemoryStore, Persistence, PersistenceId, Versioned};
use postbox_sharding::Entities;
use postbox_testkit::{until, until_async, within, TestCluster, PATIENCE};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The stored shape of a shard's remembered set (a durable state; the format is a stored
/// contract, so the test reads it as an application's tool would).
#[derive(Serialize, Deserialize)]
struct RememberedSet {
    entities: Vec<String>,
}
impl Versioned for RememberedSet {
    const TAG: &'static str = "postbox.sharding.remembered";
}

/// The remembered ids of `shard` of the counter type, as stored.
async fn stored_set(store: &Persistence, shard: u32) -> Vec<String> {
    let id = PersistenceId::new(format!("postbox.sharding.remember/counter/{shard}"));
    match store.state_store().load_state(&id).await.unwrap() {
        Some(stored) => stored
            .record
            .map(|r| r.decode::<RememberedSet>().unwrap().entities)
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Every shard active in exactly one running node's region, none moving, and every remembered
/// set read (each node hosts as many entities as it remembers).
async fn settled(cluster: &Sharded) -> bool {
    let mut shards = 0;
    for (index, counters) in cluster.counters.iter().enumerate() {
        if !cluster.nodes.node(index).is_running() {
            continue;
        }
        let Ok(snapshot) = counters.snapshot().await else {
            continue;
        };
        if snapshot.acquiring > 0
            || snapshot.handing_off > 0
            || snapshot.entities != snapshot.remembered
        {
            return false;
        }
        shards += snapshot.shards.len();
    }
    shards == 16
}

/// Entities started without a message, summed over `regions`.
async fn remembered_starts(regions: &[Entities<Counter>]) -> u64 {
    let mut starts = 0;
    for counters in regions {
        starts += counters
            .snapshot()
            .await
            .unwrap()
            .counters
            .remembered_starts;
    }
    starts
}

/// Adds one to each entity (through node 0, in order): the name and index of the node
/// hosting the last one.
async fn add_one_to_each(cluster: &Sharded, ids: &[&str]) -> (String, usize) {
    let mut home = String::new();
    for id in ids {
        let (_, node) = cluster.add(0, id, 1).await;
        home = node;
    }
    let index = (0..cluster.nodes.len())
        .find(|i| cluster.nodes.node(*i).name() == home)
        .unwrap();
    (home, index)
}

/// The node hosting an entity is killed and downed: its remembered entities start on their
/// shards' new homes with no message sent to them, and with their persisted state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_entities_restart_on_the_new_home_after_node_loss_without_a_message() {
    let mut cluster =
        Sharded::start_remembering(TestCluster::builder().nodes(3), None, |t| t).await;
    let victim_name = cluster.nodes.node(2).name().to_owned();
    let mut on_victim = Vec::new();
    for i in 0..24u64 {
        let id = format!("mem-{i}");
        let (value, node) = cluster.add(0, &id, i + 1).await;
        assert_eq!(value, i + 1);
        if node == victim_name {
            on_victim.push((id, value));
        }
    }
    assert!(!on_victim.is_empty(), "node 2 hosts some of the 24");
    // Recorded before the node goes (written in the background, after the starts).
    until_async(
        PATIENCE,
        "the victim's entities are remembered",
        async || {
            let snapshot = cluster.counters[2].snapshot().await.unwrap();
            snapshot.remembered == on_victim.len()
        },
    )
    .await;

    let victim = cluster.nodes.node(2).node().clone();
    cluster.nodes.kill(2).await;
    cluster.nodes.wait_seen(&victim, MemberStatus::Down).await;
    until(PATIENCE, "remembered entities started elsewhere", || {
        on_victim.iter().all(|(id, _)| {
            cluster.lives.started(id) == 2
                && cluster.lives.live(id).iter().any(|n| *n != victim_name)
        })
    })
    .await;
    // The victim's entities, and any of the survivors' whose shards moved between them as
    // the placement evened out (those may still be moving): each started again without a
    // message, so every second start is a remembered one.
    until_async(
        PATIENCE,
        "every restart is a remembered start",
        async || {
            let remembered_starts = remembered_starts(&cluster.counters[..2]).await;
            let restarted = (0..24)
                .filter(|i| cluster.lives.started(&format!("mem-{i}")) == 2)
                .count();
            assert!(restarted >= on_victim.len());
            (remembered_starts == restarted as u64).then_some(())
        },
    )
    .await;
    for (id, value) in &on_victim {
        let (now, node) = within(PATIENCE, cluster.counters[0].entity_ref(id).ask(Add(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now, *value, "{id} recovered its state");
        assert_ne!(node, victim_name);
        assert_eq!(
            cluster.lives.started(id),
            2,
            "{id}: the ask found it running"
        );
    }
}

/// A passivated entity (least recently used at `max_active`) is forgotten: when its shard's
/// node is lost, the remembered ones start at the new home and it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passivated_entities_are_forgotten_and_not_restarted() {
    // One shard: every entity lives on one node, and the new home reads one set.
    let mut cluster = Sharded::start_remembering(TestCluster::builder().nodes(3), None, |t| {
        t.shards(1).max_active(2).idle_timeout(None)
    })
    .await;
    let (home, home_index) = add_one_to_each(&cluster, &["first", "second", "third"]).await;
    until(PATIENCE, "first passivated", || {
        cluster.lives.live("first").is_empty()
    })
    .await;
    until_async(PATIENCE, "the store holds second and third", async || {
        stored_set(&cluster.persistence, 0).await == ["second", "third"]
    })
    .await;

    let lost = cluster.nodes.node(home_index).node().clone();
    cluster.nodes.kill(home_index).await;
    cluster.nodes.wait_seen(&lost, MemberStatus::Down).await;
    let new_home = until(PATIENCE, "second and third started at the new home", || {
        let started = cluster.lives.started("second") == 2 && cluster.lives.started("third") == 2;
        started
            .then(|| {
                cluster
                    .lives
                    .live("second")
                    .into_iter()
                    .find(|n| *n != home)
            })
            .flatten()
    })
    .await;
    let new_index = (0..3)
        .find(|i| cluster.nodes.node(*i).name() == new_home)
        .unwrap();
    // One set, read once: what was not started with them is not started at all.
    assert_eq!(cluster.lives.started("first"), 1, "first stays passivated");
    let snapshot = cluster.counters[new_index].snapshot().await.unwrap();
    assert_eq!(snapshot.entities, 2, "{snapshot:?}");
    assert_eq!(snapshot.remembered, 2, "{snapshot:?}");
    assert_eq!(snapshot.counters.remembered_starts, 2, "{snapshot:?}");
}

/// An entity that stops on its own is forgotten: the stored set no longer lists it, so its
/// shard's next home would not start it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_that_stops_on_its_own_is_forgotten() {
    let cluster = Sharded::start_remembering(TestCluster::builder().nodes(2), None, |t| {
        t.shards(1).idle_timeout(None)
    })
    .await;
    for id in ["stays", "quits"] {
        within(PATIENCE, cluster.counters[0].entity_ref(id).ask(Add(1)))
            .await
            .unwrap()
            .unwrap();
    }
    until_async(PATIENCE, "both remembered", async || {
        stored_set(&cluster.persistence, 0).await == ["quits", "stays"]
    })
    .await;
    within(PATIENCE, cluster.counters[0].entity_ref("quits").tell(Quit))
        .await
        .unwrap();
    until(PATIENCE, "quits stopped", || {
        cluster.lives.live("quits").is_empty()
    })
    .await;
    until_async(PATIENCE, "quits forgotten", async || {
        stored_set(&cluster.persistence, 0).await == ["stays"]
    })
    .await;
    assert_eq!(cluster.lives.started("quits"), 1, "not started again");
    assert_eq!(cluster.lives.live("stays").len(), 1);
}

/// Graceful hand-offs — a node joins, then leaves — start the remembered entities of the
/// moving shards at their new homes without a message, with their state, never two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handoffs_restart_remembered_entities_on_the_new_home() {
    let mut cluster = Sharded::start_remembering(TestCluster::builder().nodes(2), None, |t| {
        t.idle_timeout(None)
    })
    .await;
    let ids: Vec<String> = (0..40).map(|i| format!("move-{i}")).collect();
    let mut first_home = std::collections::HashMap::new();
    for id in &ids {
        let (_, node) = cluster.add(0, id, 1).await;
        first_home.insert(id.clone(), node);
    }
    until_async(PATIENCE, "all 40 remembered", async || {
        let mut remembered = 0;
        for counters in &cluster.counters {
            remembered += counters.snapshot().await.unwrap().remembered;
        }
        remembered == ids.len()
    })
    .await;

    // Join: the new node's shards move to it, and their entities start there.
    let joined = cluster.add_node().await;
    let joined_name = cluster.nodes.node(joined).name().to_owned();
    until_async(
        PATIENCE,
        "the moved entities run on the new node",
        async || {
            let all_once = ids.iter().all(|id| cluster.lives.live(id).len() == 1);
            all_once && settled(&cluster).await
        },
    )
    .await;
    // Moved: to the new node, or between the old ones as the placement evened out.
    let moved: Vec<&String> = ids
        .iter()
        .filter(|id| cluster.lives.live(id) != [first_home[*id].clone()])
        .collect();
    let on_joined: Vec<&String> = ids
        .iter()
        .filter(|id| cluster.lives.live(id) == [joined_name.clone()])
        .collect();
    assert!(!on_joined.is_empty(), "some entities moved to the new node");
    let snapshot = cluster.counters[joined].snapshot().await.unwrap();
    assert_eq!(
        snapshot.counters.remembered_starts,
        on_joined.len() as u64,
        "{snapshot:?}"
    );
    assert_eq!(snapshot.entities, on_joined.len(), "{snapshot:?}");
    let remembered_starts = remembered_starts(&cluster.counters[..]).await;
    assert_eq!(remembered_starts, moved.len() as u64);
    let mut started_before_leave = std::collections::HashMap::new();
    for id in &ids {
        let expected = if moved.contains(&id) { 2 } else { 1 };
        assert_eq!(cluster.lives.started(id), expected, "{id}");
        assert_eq!(cluster.lives.most_at_once(id), 1, "{id} never live twice");
        started_before_leave.insert(id.clone(), expected);
    }

    // Leave: the same entities start again on the remaining nodes.
    within(PATIENCE, cluster.shardings[joined].leave()).await;
    cluster.nodes.leave(joined).await;
    until_async(
        PATIENCE,
        "the leaver's entities run elsewhere",
        async || {
            let all_once = ids.iter().all(|id| {
                let live = cluster.lives.live(id);
                live.len() == 1 && live[0] != joined_name
            });
            all_once && settled(&cluster).await
        },
    )
    .await;
    for id in &ids {
        // The leaver's entities once more (others may move between the remaining nodes too).
        let before = started_before_leave[id];
        let started = cluster.lives.started(id);
        if on_joined.contains(&id) {
            assert_eq!(started, before + 1, "{id}");
        } else {
            assert!((before..=before + 1).contains(&started), "{id}: {started}");
        }
        let expected = started;
        assert_eq!(cluster.lives.most_at_once(id), 1, "{id} never live twice");
        let (value, node) = cluster.add(0, id, 0).await;
        assert_eq!(value, 1, "{id} kept its state");
        assert_ne!(node, joined_name);
        assert_eq!(
            cluster.lives.started(id),
            expected,
            "{id}: the ask found it running"
        );
    }
}

/// With the setting off, a shard's new home starts nothing until a message comes: after
/// node loss, only the entity that was sent a message runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_remember_entities_nothing_starts_before_a_message() {
    let mut cluster = Sharded::start_with(TestCluster::builder().nodes(3), |t| {
        t.shards(1).idle_timeout(None)
    })
    .await;
    let (_, home_index) = add_one_to_each(&cluster, &["a", "b"]).await;
    let sender = (home_index + 1) % 3;
    let lost = cluster.nodes.node(home_index).node().clone();
    cluster.nodes.kill(home_index).await;
    cluster.nodes.wait_seen(&lost, MemberStatus::Down).await;
    // The one shard becomes active at a survivor with this message.
    let (value, node) = within(
        PATIENCE,
        cluster.counters[sender].entity_ref("c").ask(Add(1)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(value, 1);
    let new_index = (0..3)
        .find(|i| cluster.nodes.node(*i).name() == node)
        .unwrap();
    assert_ne!(new_index, home_index);
    let snapshot = cluster.counters[new_index].snapshot().await.unwrap();
    assert_eq!(snapshot.shards, vec![0], "{snapshot:?}");
    assert_eq!(snapshot.allocated, 1, "{snapshot:?}");
    assert_eq!(snapshot.entities, 1, "{snapshot:?}");
    // The other survivor: nothing placed there, nothing active.
    let other = (0..3)
        .find(|i| *i != home_index && *i != new_index)
        .unwrap();
    let snapshot = cluster.counters[other].snapshot().await.unwrap();
    assert_eq!(
        (snapshot.allocated, snapshot.shards.len()),
        (0, 0),
        "{snapshot:?}"
    );
    assert_eq!(snapshot.remembered, 0, "{snapshot:?}");
    assert_eq!(snapshot.counters.remembered_starts, 0, "{snapshot:?}");
    assert_eq!(cluster.lives.started("a"), 1);
    assert_eq!(cluster.lives.started("b"), 1);
}

/// The store that keeps remembered entities is down: the entity serves anyway, the
/// failures are counted, and the write goes through once the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_remember_store_is_counted_while_the_entity_serves() {
    let store = Arc::new(MemoryStore::new());
    store.set_available(false);
    let remember = Persistence::from_parts(store.clone(), store.clone(), store.clone());
    let cluster = Sharded::start_remembering(
        TestCluster::builder().nodes(1),
        Some(remember.clone()),
        |t| t,
    )
    .await;
    let counters = &cluster.counters[0];
    let (value, _) = counters
        .entity_ref("steady")
        .ask(Add(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, 3);
    until_async(PATIENCE, "failures counted", async || {
        counters
            .snapshot()
            .await
            .unwrap()
            .counters
            .remember_failures
            >= 1
    })
    .await;
    assert_eq!(
        counters
            .entity_ref("steady")
            .ask(Add(1))
            .await
            .unwrap()
            .unwrap()
            .0,
        4
    );
    assert_eq!(cluster.lives.started("steady"), 1);

    store.set_available(true);
    until_async(PATIENCE, "remembered once the store is back", async || {
        counters.snapshot().await.unwrap().remembered == 1
    })
    .await;
    let mut found = Vec::new();
    for shard in 0..16 {
        found.extend(stored_set(&remember, shard).await);
    }
    assert_eq!(found, ["steady"]);
}

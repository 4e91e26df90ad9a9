use postbox::prelude::*;
use postbox_remote::remote_message;
use postbox_sharding::{entity, EntityRef, Sharding};
use postbox_testkit::{within, TestCluster, PATIENCE};
use serde::{Deserialize, Serialize};

struct Leader {
    node: String,
}
impl Actor for Leader {}

#[derive(Serialize, Deserialize)]
struct WhereAreYou;
impl Message for WhereAreYou {
    type Reply = String;
    remote_message!("test.WhereAreYou");
}
impl Handler<WhereAreYou> for Leader {
    async fn handle(&mut self, _: WhereAreYou, _: &mut Context<Self>) -> String {
        self.node.clone()
    }
}
entity!(Leader: WhereAreYou);

fn leader(index: usize, nodes: &TestCluster) -> (Sharding, EntityRef<Leader>) {
    let node = nodes.node(index);
    let name = node.name().to_owned();
    let sharding = Sharding::new(&node.system, &node.remote, &node.cluster);
    let proxy = sharding
        .register_singleton("leader", None, move || Leader { node: name.clone() })
        .unwrap();
    (sharding, proxy)
}

/// The singleton runs on the oldest member; when it leaves, the next oldest takes over, and
/// when that one is lost (three of four left: the majority stays up), the next; proxies
/// buffer meanwhile and every ask is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_singleton_moves_to_the_oldest_member_on_leave_and_on_loss() {
    let mut nodes = TestCluster::start(4).await;
    let (shardings, proxies): (Vec<Sharding>, Vec<EntityRef<Leader>>) =
        (0..4).map(|i| leader(i, &nodes)).unzip();
    let index_of = |name: &str| -> usize { name.trim_start_matches('n').parse().unwrap() };
    let first = within(PATIENCE, proxies[0].ask(WhereAreYou)).await.unwrap();
    let oldest = nodes.node(0).cluster.members_by_age()[0].node.clone();
    assert_eq!(
        nodes.node(index_of(&first)).node(),
        &oldest,
        "on the oldest"
    );
    for proxy in &proxies {
        assert_eq!(
            within(PATIENCE, proxy.ask(WhereAreYou)).await.unwrap(),
            first
        );
    }
    let leaver = index_of(&first);
    let others: Vec<usize> = (0..4).filter(|i| *i != leaver).collect();
    // Asks sent while it moves are buffered and answered by the old or the new one.
    let asks: Vec<_> = (0..20)
        .map(|_| {
            let proxy = proxies[others[0]].clone();
            tokio::spawn(async move { proxy.ask(WhereAreYou).await })
        })
        .collect();
    within(PATIENCE, shardings[leaver].leave()).await;
    nodes.leave(leaver).await;
    for ask in asks {
        within(PATIENCE, ask).await.unwrap().unwrap();
    }
    let second = within(PATIENCE, proxies[others[0]].ask(WhereAreYou))
        .await
        .unwrap();
    assert_ne!(second, first);
    for i in &others {
        assert_eq!(
            within(PATIENCE, proxies[*i].ask(WhereAreYou))
                .await
                .unwrap(),
            second
        );
    }

    // Lost: three of four remain members, a majority of the three up before.
    let lost = index_of(&second);
    let victim = nodes.node(lost).node().clone();
    nodes.kill(lost).await;
    let survivors: Vec<usize> = others.into_iter().filter(|i| *i != lost).collect();
    nodes
        .wait_seen(&victim, postbox_cluster::MemberStatus::Down)
        .await;
    let third = within(PATIENCE, proxies[survivors[0]].ask(WhereAreYou))
        .await
        .unwrap();
    assert!(third != first && third != second, "{third}");
    for i in &survivors {
        assert_eq!(
            within(PATIENCE, proxies[*i].ask(WhereAreYou))
                .await
                .unwrap(),
            third
        );
    }
}

/// With a role, the singleton runs on the oldest member that has it, never on the one
/// without (started first, so usually the oldest of all); when that member is lost, on the next oldest with the role. Asks sent
/// while its host is lost and not yet down each resolve — answered by the new host, or
/// failed `NodeDown` — and none waits forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_with_a_role_runs_on_the_oldest_member_that_has_it() {
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The first node has no role; the three that join after it, one at a time, lead.
    let mut nodes = TestCluster::builder()
        .nodes(1)
        .cluster_config(move |config| {
            match started.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => config,
                _ => config.role("leads"),
            }
        })
        .start()
        .await;
    for _ in 0..3 {
        nodes.add_node().await;
    }
    let proxies: Vec<EntityRef<Leader>> = (0..4)
        .map(|i| {
            let node = nodes.node(i);
            let name = node.name().to_owned();
            Sharding::new(&node.system, &node.remote, &node.cluster)
                .register_singleton("leader", Some("leads"), move || Leader {
                    node: name.clone(),
                })
                .unwrap()
        })
        .collect();
    let by_age = nodes.node(0).cluster.members_by_age();
    let leaders: Vec<usize> = by_age
        .iter()
        .filter(|m| m.roles.contains("leads"))
        .map(|m| (0..4).find(|i| nodes.node(*i).node() == &m.node).unwrap())
        .collect();
    assert_eq!(leaders.len(), 3);
    let host = within(PATIENCE, proxies[0].ask(WhereAreYou)).await.unwrap();
    assert_eq!(
        host,
        nodes.node(leaders[0]).name(),
        "the oldest with the role"
    );
    assert_ne!(host, nodes.node(0).name(), "never on the member without it");
    for proxy in &proxies {
        assert_eq!(
            within(PATIENCE, proxy.ask(WhereAreYou)).await.unwrap(),
            host
        );
    }

    let victim = nodes.node(leaders[0]).node().clone();
    nodes.kill(leaders[0]).await;
    let asks: Vec<_> = (0..10)
        .map(|_| {
            let proxy = proxies[0].clone();
            tokio::spawn(async move { proxy.ask(WhereAreYou).await })
        })
        .collect();
    nodes
        .wait_seen(&victim, postbox_cluster::MemberStatus::Down)
        .await;
    let next = nodes.node(leaders[1]).name().to_owned();
    for ask in asks {
        match within(PATIENCE, ask).await.unwrap() {
            Ok(answer) => assert_eq!(answer, next, "answered by the new host"),
            Err(error) => assert_eq!(error, AskError::NodeDown),
        }
    }
    for i in (0..4).filter(|i| *i != leaders[0]) {
        assert_eq!(
            within(PATIENCE, proxies[i].ask(WhereAreYou)).await.unwrap(),
            next,
            "the next oldest with the role"
        );
    }
}

//! A persistent counter entity that records its life, and a cluster with sharding on every
//! node.

use postbox::prelude::*;
use postbox_persistence::prelude::*;
use postbox_remote::remote_message;
use postbox_sharding::{entity, Entities, EntityType, Sharding};
use postbox_testkit::cluster::TestClusterBuilder;
use postbox_testkit::TestCluster;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Event {
    Added(u64),
    Recorded(u64),
}
impl Versioned for Event {
    const TAG: &'static str = "test.counter.event";
}

#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) value: u64,
    pub(crate) seen: Vec<u64>,
}
impl Versioned for State {
    const TAG: &'static str = "test.counter.state";
}
impl EventSourced for State {
    type Event = Event;
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Added(n) => self.value += n,
            Event::Recorded(n) => self.seen.push(*n),
        }
    }
}

/// Who is alive, where, and how often each entity was started.
#[derive(Default)]
pub(crate) struct Lives {
    inner: Mutex<LivesInner>,
}

#[derive(Default)]
struct LivesInner {
    slow_started: usize,
    live: HashMap<String, Vec<String>>,
    started: HashMap<String, u64>,
    most_at_once: HashMap<String, usize>,
}

impl Lives {
    fn start(&self, id: &str, node: &str) {
        let mut inner = self.inner.lock().unwrap();
        let live = inner.live.entry(id.to_owned()).or_default();
        live.push(node.to_owned());
        let now = live.len();
        *inner.started.entry(id.to_owned()).or_default() += 1;
        let most = inner.most_at_once.entry(id.to_owned()).or_default();
        *most = (*most).max(now);
    }

    fn stop(&self, id: &str, node: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(live) = inner.live.get_mut(id) {
            if let Some(at) = live.iter().position(|n| n == node) {
                live.remove(at);
            }
        }
    }

    /// How many `Slow` messages entities began to handle.
    pub(crate) fn slow_started(&self) -> usize {
        self.inner.lock().unwrap().slow_started
    }

    /// The nodes where `id` is live now.
    pub(crate) fn live(&self, id: &str) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .live
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// How many instances of `id` were started.
    pub(crate) fn started(&self, id: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .started
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// The most instances of `id` live at once.
    pub(crate) fn most_at_once(&self, id: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .most_at_once
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

pub(crate) struct Counter {
    id: String,
    node: String,
    state: Journaled<State>,
    lives: Arc<Lives>,
}

impl Actor for Counter {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.lives.start(&self.id, &self.node);
        self.state.recover().await?;
        Ok(())
    }

    async fn stopped(&mut self, _: &mut Context<Self>, _: &postbox::ExitReason) {
        self.lives.stop(&self.id, &self.node);
    }
}

/// Adds; replies with the new value and the hosting node.
#[derive(Serialize, Deserialize)]
pub(crate) struct Add(pub(crate) u64);
impl Message for Add {
    type Reply = Result<(u64, String), String>;
    remote_message!("test.Add");
}
impl Handler<Add> for Counter {
    async fn handle(
        &mut self,
        Add(n): Add,
        ctx: &mut Context<Self>,
    ) -> Result<(u64, String), String> {
        self.state
            .persist(ctx, Event::Added(n))
            .await
            .map_err(|e| e.to_string())?;
        Ok((self.state.state().value, self.node.clone()))
    }
}

/// Records a number (told); the sequence is read with `Seen`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record(pub(crate) u64);
impl Message for Record {
    type Reply = ();
    remote_message!("test.Record");
}
impl Handler<Record> for Counter {
    async fn handle(&mut self, Record(n): Record, ctx: &mut Context<Self>) {
        let _ = self.state.persist(ctx, Event::Recorded(n)).await;
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Seen;
impl Message for Seen {
    type Reply = (Vec<u64>, String);
    remote_message!("test.Seen");
}
impl Handler<Seen> for Counter {
    async fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> (Vec<u64>, String) {
        (self.state.state().seen.clone(), self.node.clone())
    }
}

/// Answers after `ms` milliseconds, with the node.
#[derive(Serialize, Deserialize)]
pub(crate) struct Slow(pub(crate) u64);
impl Message for Slow {
    type Reply = String;
    remote_message!("test.Slow");
}
impl Handler<Slow> for Counter {
    async fn handle(&mut self, Slow(ms): Slow, _: &mut Context<Self>) -> String {
        self.lives.inner.lock().unwrap().slow_started += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.node.clone()
    }
}

/// Stops the entity (on its own: not passivated, not handed off).
#[derive(Serialize, Deserialize)]
pub(crate) struct Quit;
impl Message for Quit {
    type Reply = ();
    remote_message!("test.Quit");
}
impl Handler<Quit> for Counter {
    async fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

entity!(Counter: Add, Record, Seen, Slow, Quit);

/// The counter type for a node named `node`.
pub(crate) fn counter_type(
    node: &str,
    persistence: &Persistence,
    lives: &Arc<Lives>,
) -> EntityType<Counter> {
    let node = node.to_owned();
    let persistence = persistence.clone();
    let lives = lives.clone();
    EntityType::new("counter", move |id: &str| Counter {
        id: id.to_owned(),
        node: node.clone(),
        state: persistence.journaled(PersistenceId::of("counter", id)),
        lives: lives.clone(),
    })
    .shards(16)
    .ask_timeout(Duration::from_secs(10))
}

/// A cluster whose every node runs sharding with the counter type registered.
pub(crate) struct Sharded {
    pub(crate) nodes: TestCluster,
    pub(crate) shardings: Vec<Sharding>,
    pub(crate) counters: Vec<Entities<Counter>>,
    pub(crate) persistence: Persistence,
    pub(crate) lives: Arc<Lives>,
    /// Where remembered entities are kept (remember entities on).
    pub(crate) remember: Option<Persistence>,
    tune: Tune,
}

type Tune = Arc<dyn Fn(EntityType<Counter>) -> EntityType<Counter> + Send + Sync>;

impl Sharded {
    pub(crate) async fn start(nodes: usize) -> Self {
        Self::start_with(TestCluster::builder().nodes(nodes), |t| t).await
    }

    pub(crate) async fn start_with(
        builder: TestClusterBuilder,
        tune: impl Fn(EntityType<Counter>) -> EntityType<Counter> + Send + Sync + 'static,
    ) -> Self {
        Self::start_inner(builder, None, tune).await
    }

    /// With remember entities on, kept in `remember` (`None`: the entities' own store).
    pub(crate) async fn start_remembering(
        builder: TestClusterBuilder,
        remember: Option<Persistence>,
        tune: impl Fn(EntityType<Counter>) -> EntityType<Counter> + Send + Sync + 'static,
    ) -> Self {
        Self::start_inner(builder, Some(remember), tune).await
    }

    async fn start_inner(
        builder: TestClusterBuilder,
        remember: Option<Option<Persistence>>,
        tune: impl Fn(EntityType<Counter>) -> EntityType<Counter> + Send + Sync + 'static,
    ) -> Self {
        let nodes = builder.start().await;
        let persistence = Persistence::in_memory();
        let remember = remember.map(|store| store.unwrap_or_else(|| persistence.clone()));
        let mut sharded = Sharded {
            nodes,
            shardings: Vec::new(),
            counters: Vec::new(),
            persistence,
            lives: Arc::new(Lives::default()),
            remember,
            tune: Arc::new(tune),
        };
        for index in 0..sharded.nodes.len() {
            sharded.attach(index);
        }
        sharded
    }

    fn attach(&mut self, index: usize) {
        let node = self.nodes.node(index);
        let sharding = Sharding::new(&node.system, &node.remote, &node.cluster);
        let mut entity_type = counter_type(node.name(), &self.persistence, &self.lives);
        if let Some(remember) = &self.remember {
            entity_type = entity_type.remember_entities(remember);
        }
        let counters = sharding.register((self.tune)(entity_type)).unwrap();
        if index < self.shardings.len() {
            self.shardings[index] = sharding;
            self.counters[index] = counters;
        } else {
            self.shardings.push(sharding);
            self.counters.push(counters);
        }
    }

    pub(crate) async fn add_node(&mut self) -> usize {
        self.nodes.add_node().await;
        let index = self.nodes.len() - 1;
        self.attach(index);
        index
    }

    /// Adds `n` to entity `id` through node `via`'s sharding: the new value and the node
    /// hosting it (panics if the ask or the persist fails).
    pub(crate) async fn add(&self, via: usize, id: &str, n: u64) -> (u64, String) {
        self.counters[via]
            .entity_ref(id)
            .ask(Add(n))
            .await
            .unwrap()
            .unwrap()
    }

    /// How many entities each node hosts now.
    pub(crate) async fn hosted(&self) -> Vec<usize> {
        let mut hosted = Vec::new();
        for (index, counters) in self.counters.iter().enumerate() {
            if self.nodes.node(index).is_running() {
                hosted.push(counters.snapshot().await.map(|s| s.entities).unwrap_or(0));
            } else {
                hosted.push(0);
            }
        }
        hosted
    }
}

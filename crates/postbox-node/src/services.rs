//! The built-in services of the `postbox-node` binary, so a cluster can be tried with no code.
//!
//! * `echo` ([`Echo`]): answers with the JSON it was given and the node that answered,
//!   optionally after a delay (to watch mailboxes fill, asks time out, or a node die with
//!   asks in flight).
//! * `counter` ([`Counters`]): one counter per key in the whole cluster, each a sharded,
//!   persistent entity ([`CounterEntity`], `postbox-sharding` and `postbox-persistence`):
//!   through any node the same key gives one sequence of values, kept by the node that hosts
//!   the key's shard; after that node is lost the key continues from its last acknowledged
//!   value on another (with a store the nodes share, as the default SQLite file of nodes
//!   started from one folder is). The `counter` actor only routes; it never waits for a key.
//!
//! Both are registered with the cluster's receptionist under their service name, so any node
//! can reach them (`postbox-node send counter '{"key": "a", "add": 1}'`).

use postbox::prelude::*;
use postbox_persistence::prelude::*;
use postbox_remote::{remote_actor, remote_message};
use postbox_sharding::{entity, Entities, EntityType};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest delay [`Echo`] accepts.
pub const MAX_ECHO_DELAY: Duration = Duration::from_secs(60);

/// The `echo` service: replies with what it was sent.
#[derive(Debug)]
pub struct EchoService {
    node: String,
}

impl EchoService {
    /// An echo that signs its replies with `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self { node: node.into() }
    }
}

impl Actor for EchoService {}

/// A message for `echo`: any JSON value, answered after `delay_ms` (at most a minute).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Echo {
    /// What to send back.
    pub message: serde_json::Value,
    /// How long to wait before answering, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

/// The answer of `echo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echoed {
    /// What was sent.
    pub message: serde_json::Value,
    /// The node that answered.
    pub node: String,
}

impl Message for Echo {
    type Reply = Echoed;
    remote_message!("postbox.node.Echo");
}

impl Handler<Echo> for EchoService {
    async fn handle(&mut self, echo: Echo, _: &mut Context<Self>) -> Echoed {
        if echo.delay_ms > 0 {
            let delay = Duration::from_millis(echo.delay_ms).min(MAX_ECHO_DELAY);
            tokio::time::sleep(delay).await;
        }
        Echoed {
            message: echo.message,
            node: self.node.clone(),
        }
    }
}

remote_actor!(EchoService: Echo);

/// The `counter` service: routes each key to its sharded [`CounterEntity`], wherever it
/// lives.
#[derive(Debug)]
pub struct Counters {
    counters: Entities<CounterEntity>,
}

impl Counters {
    /// A counter service over the registered counter entities.
    pub fn new(counters: Entities<CounterEntity>) -> Self {
        Self { counters }
    }
}

impl Actor for Counters {}

/// A message for `counter`: add `add` (which may be 0 or negative) to `key` and return the
/// new value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    /// Which counter.
    pub key: String,
    /// How much to add.
    #[serde(default)]
    pub add: i64,
}

/// The value of one counter after a [`Count`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    /// Which counter.
    pub key: String,
    /// Its value now.
    pub value: i64,
    /// The node that hosts it.
    pub node: String,
}

impl Message for Count {
    type Reply = Result<Counted, String>;
    remote_message!("postbox.node.Count");
}

impl Handler<Count> for Counters {
    async fn handle(&mut self, count: Count, _: &mut Context<Self>) -> Result<Counted, String> {
        ask_counter(&self.counters, count).await
    }

    fn handle_reply(
        &mut self,
        count: Count,
        reply: Option<ReplyTo<Result<Counted, String>>>,
        _: &mut Context<Self>,
    ) -> impl std::future::Future<Output = ()> + Send {
        // The key's entity does the work, perhaps on another node: this actor takes its next
        // message at once.
        let counters = self.counters.clone();
        tokio::spawn(async move {
            let counted = ask_counter(&counters, count).await;
            if let Some(reply) = reply {
                let _ = reply.send(counted);
            }
        });
        async {}
    }
}

async fn ask_counter(counters: &Entities<CounterEntity>, count: Count) -> Result<Counted, String> {
    let (value, node) = counters
        .entity_ref(&count.key)
        .ask(AddTo(count.add))
        .await
        .map_err(|e| format!("counter {:?}: {e}", count.key))??;
    Ok(Counted {
        key: count.key,
        value,
        node,
    })
}

remote_actor!(Counters: Count);

/// What happened to a counter.
#[derive(Debug, Serialize, Deserialize)]
pub enum CounterEvent {
    /// This much was added.
    Added(i64),
}

impl Versioned for CounterEvent {
    const TAG: &'static str = "postbox.node.counter.event";
}

/// A counter's value.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CounterValue(pub i64);

impl Versioned for CounterValue {
    const TAG: &'static str = "postbox.node.counter.value";
}

impl EventSourced for CounterValue {
    type Event = CounterEvent;
    fn apply(&mut self, CounterEvent::Added(n): &CounterEvent) {
        self.0 = self.0.saturating_add(*n);
    }
}

enum Value {
    Journaled(Journaled<CounterValue>),
    InMemory(i64),
}

/// One key's counter: a sharded entity, journaled when the node has a store.
pub struct CounterEntity {
    node: String,
    value: Value,
}

impl std::fmt::Debug for CounterEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterEntity")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl CounterEntity {
    /// The entity type `counter`, hosted by members with the role `counter`, its entities
    /// signing their replies with `node` and journaled in `persistence` (in memory only,
    /// without one).
    pub fn entity_type(node: String, persistence: Option<Persistence>) -> EntityType<Self> {
        EntityType::new("counter", move |key: &str| CounterEntity {
            node: node.clone(),
            value: match &persistence {
                Some(persistence) => {
                    Value::Journaled(persistence.journaled(PersistenceId::of("counter", key)))
                }
                None => Value::InMemory(0),
            },
        })
        .role(COUNTER_ROLE)
    }
}

/// The role of the members that host `counter` entities.
pub const COUNTER_ROLE: &str = "counter";

impl Actor for CounterEntity {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        if let Value::Journaled(journal) = &mut self.value {
            journal.recover().await?;
        }
        Ok(())
    }
}

/// Adds to one counter; replies with its new value and the hosting node, once durable.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddTo(pub i64);

impl Message for AddTo {
    type Reply = Result<(i64, String), String>;
    remote_message!("postbox.node.AddTo");
}

impl Handler<AddTo> for CounterEntity {
    async fn handle(
        &mut self,
        AddTo(n): AddTo,
        ctx: &mut Context<Self>,
    ) -> Result<(i64, String), String> {
        let value = match &mut self.value {
            Value::Journaled(journal) => {
                journal
                    .persist(ctx, CounterEvent::Added(n))
                    .await
                    .map_err(|e| e.to_string())?;
                journal.state().0
            }
            Value::InMemory(value) => {
                *value = value.saturating_add(n);
                *value
            }
        };
        Ok((value, self.node.clone()))
    }
}

entity!(CounterEntity: AddTo);

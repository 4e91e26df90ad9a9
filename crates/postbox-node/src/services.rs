//! The built-in services of the `postbox-node` binary, so a cluster can be tried with no code.
//!
//! * `echo` ([`Echo`]): answers with the JSON it was given and the node that answered,
//!   optionally after a delay (to watch mailboxes fill, asks time out, or a node die with
//!   asks in flight).
//! * `counter` ([`Counters`]): one counter per key, each its own actor — the per-entity queue:
//!   updates of one key are serialized by that key's mailbox, different keys proceed
//!   independently, and the `counter` actor only routes.
//!
//! Both are registered with the cluster's receptionist under their service name, so any node
//! can reach them (`postbox-node send counter '{"key": "a", "add": 1}'`).

use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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

/// The `counter` service: routes each key to its own [`KeyCounter`] actor, spawned on first
/// use and supervised by this one.
#[derive(Debug)]
pub struct Counters {
    node: String,
    keys: HashMap<String, ActorRef<KeyCounter>>,
}

impl Counters {
    /// A counter service that signs its replies with `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            keys: HashMap::new(),
        }
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
    /// The node that keeps it.
    pub node: String,
}

impl Message for Count {
    type Reply = Result<Counted, String>;
    remote_message!("postbox.node.Count");
}

impl Handler<Count> for Counters {
    async fn handle(&mut self, count: Count, ctx: &mut Context<Self>) -> Result<Counted, String> {
        let counter = match self.keys.get(&count.key) {
            Some(counter) if counter.is_alive() => counter.clone(),
            _ => {
                let counter = ctx
                    .spawn(Props::new(KeyCounter::default))
                    .map_err(|e| format!("cannot start the counter of {:?}: {e}", count.key))?;
                self.keys.insert(count.key.clone(), counter.clone());
                counter
            }
        };
        // The key's actor does the work; this one waits only for its turn in that mailbox.
        let value = counter
            .ask(Add(count.add))
            .await
            .map_err(|e| format!("counter {:?}: {e}", count.key))?;
        Ok(Counted {
            key: count.key,
            value,
            node: self.node.clone(),
        })
    }
}

remote_actor!(Counters: Count);

/// One key's counter.
#[derive(Debug, Default)]
pub struct KeyCounter {
    value: i64,
}

impl Actor for KeyCounter {}

/// Adds to one counter; replies with its new value.
#[derive(Debug)]
pub struct Add(pub i64);

impl Message for Add {
    type Reply = i64;
}

impl Handler<Add> for KeyCounter {
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> i64 {
        self.value = self.value.saturating_add(n);
        self.value
    }
}

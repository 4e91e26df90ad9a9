//! Services: actors a node offers to the whole cluster under a name.
//!
//! A [`Service`] is spawned when the node starts, registered locally under its name (so
//! [`Remote::lookup`](postbox_remote::Remote::lookup) finds it) and with the cluster's
//! receptionist under a [`ServiceKey`] of the same name (so every node finds it, and cluster
//! routers route to it). Give it a JSON message type with [`Service::json`] and
//! `postbox-node send <name> '<json>'` can talk to it from any node.

use crate::admin::Invoked;
use postbox::prelude::*;
use postbox_cluster::{Cluster, ServiceKey};
use postbox_remote::{NodeAddr, Remote, RemoteActor};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An actor offered to the cluster under a name: spawned when the node starts, registered
/// locally under its name (so [`Remote::lookup`](postbox_remote::Remote::lookup) finds it)
/// and with the cluster's receptionist under a [`ServiceKey`] of the same name (so every node
/// finds it, and cluster routers route to it). With [`json`](Self::json),
/// `postbox-node send <name> '<json>'` reaches it from any node.
pub struct Service<A: RemoteActor> {
    name: String,
    props: Props<A>,
    json: Option<Arc<dyn JsonService>>,
}

impl<A: RemoteActor> fmt::Debug for Service<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("json", &self.json.is_some())
            .finish()
    }
}

impl<A: RemoteActor> Service<A> {
    /// A service named `name`, run by the actor `props` spawn.
    pub fn new(name: impl Into<String>, props: impl Into<Props<A>>) -> Self {
        Self {
            name: name.into(),
            props: props.into(),
            json: None,
        }
    }

    /// Lets clients send it `M` as JSON (`postbox-node send`), and read its reply as JSON. A
    /// reply that is a `Result` is unwrapped: `Ok(v)` answers `v`, `Err(e)` is reported as the
    /// service's failure.
    pub fn json<M>(mut self) -> Self
    where
        A: Handler<M>,
        M: Message + DeserializeOwned,
        M::Reply: Serialize,
    {
        self.json = Some(json_entry::<A, M>(&self.name));
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A service, its type erased, waiting for the node to start.
pub(crate) trait StartService: Send {
    fn name(&self) -> &str;
    fn json(&self) -> Option<Arc<dyn JsonService>>;
    fn start<'a>(
        self: Box<Self>,
        system: &'a ActorSystem,
        remote: &'a Remote,
        cluster: &'a Cluster,
    ) -> BoxFuture<'a, Result<(), String>>;
}

impl<A: RemoteActor> StartService for Service<A> {
    fn name(&self) -> &str {
        &self.name
    }

    fn json(&self) -> Option<Arc<dyn JsonService>> {
        self.json.clone()
    }

    fn start<'a>(
        self: Box<Self>,
        system: &'a ActorSystem,
        remote: &'a Remote,
        cluster: &'a Cluster,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Service { name, props, .. } = *self;
            remote.expose::<A>();
            let actor = system
                .spawn(props.name(name.clone()))
                .map_err(|e| format!("service `{name}`: cannot spawn its actor: {e}"))?;
            system
                .registry()
                .register(&name, &actor)
                .map_err(|e| format!("service `{name}`: {e}"))?;
            cluster
                .receptionist()
                .register(&ServiceKey::<A>::new(name.clone()), &actor)
                .await
                .map_err(|e| format!("service `{name}`: cannot register with the cluster: {e}"))
        })
    }
}

/// A service that takes JSON, its actor and message types erased.
pub(crate) trait JsonService: Send + Sync + fmt::Debug + 'static {
    fn name(&self) -> &str;

    /// The up members that offer it.
    fn nodes<'a>(&'a self, cluster: &'a Cluster) -> BoxFuture<'a, Vec<NodeAddr>>;

    /// Decodes `body`, asks an instance (this node's own first, else the least loaded) and
    /// encodes its reply.
    fn invoke<'a>(
        &'a self,
        cluster: &'a Cluster,
        body: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Invoked, String>>;
}

/// The JSON entry of service `name`, run by `A`, taking `M`.
pub(crate) fn json_entry<A, M>(name: &str) -> Arc<dyn JsonService>
where
    A: RemoteActor + Handler<M>,
    M: Message + DeserializeOwned,
    M::Reply: Serialize,
{
    Arc::new(JsonEntry::<A, M> {
        key: ServiceKey::new(name),
        _message: PhantomData,
    })
}

struct JsonEntry<A: Actor, M> {
    key: ServiceKey<A>,
    _message: PhantomData<fn() -> M>,
}

impl<A: Actor, M> fmt::Debug for JsonEntry<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonEntry")
            .field("service", &self.key.name())
            .field("message", &std::any::type_name::<M>())
            .finish()
    }
}

impl<A, M> JsonService for JsonEntry<A, M>
where
    A: RemoteActor + Handler<M>,
    M: Message + DeserializeOwned,
    M::Reply: Serialize,
{
    fn name(&self) -> &str {
        self.key.name()
    }

    fn nodes<'a>(&'a self, cluster: &'a Cluster) -> BoxFuture<'a, Vec<NodeAddr>> {
        Box::pin(async move { cluster.receptionist().lookup(&self.key).await.nodes() })
    }

    fn invoke<'a>(
        &'a self,
        cluster: &'a Cluster,
        body: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Invoked, String>> {
        Box::pin(async move {
            let name = self.key.name();
            let message: M = serde_json::from_str(body)
                .map_err(|e| format!("not a message for `{name}`: {e}"))?;
            let listing = cluster.receptionist().lookup(&self.key).await;
            let me = cluster.node();
            let instance = listing
                .instances()
                .iter()
                .find(|instance| instance.node == *me)
                .or_else(|| {
                    listing
                        .instances()
                        .iter()
                        .min_by_key(|instance| instance.reported_depth())
                })
                .ok_or_else(|| format!("service `{name}` has no instance on any up member"))?;
            let reply =
                instance
                    .actor
                    .ask(message)
                    .timeout(timeout)
                    .await
                    .map_err(|e| match e {
                        AskError::NodeDown => {
                            format!("`{name}` on {}: node down ({e})", instance.node.addr)
                        }
                        e => format!("`{name}` on {}: {e}", instance.node.addr),
                    })?;
            let reply = serde_json::to_value(&reply)
                .map_err(|e| format!("`{name}` replied with something JSON cannot hold: {e}"))?;
            let reply = match unwrap_result(reply) {
                Ok(reply) => reply.to_string(),
                Err(error) => {
                    let error = error
                        .as_str()
                        .map_or_else(|| error.to_string(), str::to_owned);
                    return Err(format!(
                        "`{name}` on {} failed: {error}",
                        instance.node.addr
                    ));
                }
            };
            Ok(Invoked {
                node: instance.node.addr.clone(),
                reply,
            })
        })
    }
}

/// A `Result` reply, as serde writes it (`{"Ok": v}` / `{"Err": e}`), unwrapped; any other
/// reply as it is.
fn unwrap_result(reply: serde_json::Value) -> Result<serde_json::Value, serde_json::Value> {
    match reply {
        serde_json::Value::Object(mut map) if map.len() == 1 => {
            if let Some(ok) = map.remove("Ok") {
                Ok(ok)
            } else if let Some(err) = map.remove("Err") {
                Err(err)
            } else {
                Ok(serde_json::Value::Object(map))
            }
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn result_replies_are_unwrapped() {
        let ok: Result<u32, String> = Ok(3);
        let err: Result<u32, String> = Err("no".into());
        assert_eq!(
            unwrap_result(serde_json::to_value(ok).unwrap()),
            Ok(json!(3))
        );
        assert_eq!(
            unwrap_result(serde_json::to_value(err).unwrap()),
            Err(json!("no"))
        );
        assert_eq!(unwrap_result(json!({"other": 1})), Ok(json!({"other": 1})));
        assert_eq!(unwrap_result(json!([1])), Ok(json!([1])));
    }
}

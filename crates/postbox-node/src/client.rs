//! Talking to a running node from outside: what `postbox-node members`, `actors`, `services`
//! and `send` do. The client is a short-lived transport endpoint of its own, so it
//! authenticates like a node (same cluster name, secret and TLS) and reaches the node's admin
//! actors by name.

use crate::admin::{
    self, ActorsReport, Invoke, Invoked, Invoker, ListActors, ListMembers, ListServices,
    MemberEntry, NodeAdmin, OpenInvocation, ServiceEntry,
};
use crate::config::NodeConfig;
use postbox::prelude::*;
use postbox_remote::{ConnectError, Remote, RemoteConfig, RemoteError};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How long status queries may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a command against a node failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The node could not be reached or refused us.
    Connect(String),
    /// The node did not answer the query.
    Query(String),
    /// The service could not be invoked or failed.
    Service(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) | ClientError::Query(e) | ClientError::Service(e) => {
                f.write_str(e)
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// A connection to one node's admin actors.
#[derive(Debug)]
pub struct Client {
    system: ActorSystem,
    remote: Remote,
    node: String,
    admin: ActorRef<NodeAdmin>,
}

impl Client {
    /// Connects to the node at `node` with `config`'s cluster name, secret and TLS.
    pub async fn connect(config: &NodeConfig, node: SocketAddr) -> Result<Client, ClientError> {
        let node = node.to_string();
        let mut remote_config = RemoteConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            config.node.cluster.clone(),
            config.node.secret.as_bytes(),
        )
        .reconnect(1, Duration::from_millis(100));
        if let Some(tls) = config
            .tls()
            .map_err(|e| ClientError::Connect(e.to_string()))?
        {
            remote_config = remote_config.tls(tls);
        }
        let system = ActorSystem::builder().name("postbox-node client").build();
        let remote = Remote::start(&system, remote_config)
            .await
            .map_err(|e| ClientError::Connect(format!("cannot start the client: {e}")))?;
        match remote.lookup::<NodeAdmin>(&node, admin::ADMIN).await {
            Ok(admin) => Ok(Client {
                system,
                remote,
                node,
                admin,
            }),
            Err(error) => {
                remote.shutdown().await;
                system.shutdown().await;
                Err(ClientError::Connect(explain(&node, &error)))
            }
        }
    }

    /// The node's members: current ones, then recently gone ones.
    pub async fn members(&self) -> Result<Vec<MemberEntry>, ClientError> {
        self.admin
            .ask(ListMembers)
            .timeout(QUERY_TIMEOUT)
            .await
            .map_err(|e| self.query_failed(e))
    }

    /// The node's `top` deepest mailboxes.
    pub async fn actors(&self, top: usize) -> Result<ActorsReport, ClientError> {
        self.admin
            .ask(ListActors { top })
            .timeout(QUERY_TIMEOUT)
            .await
            .map_err(|e| self.query_failed(e))
    }

    /// The services the node knows and where they run.
    pub async fn services(&self) -> Result<Vec<ServiceEntry>, ClientError> {
        self.admin
            .ask(ListServices)
            .timeout(QUERY_TIMEOUT)
            .await
            .map_err(|e| self.query_failed(e))
    }

    /// Sends `body` (JSON) to `service` through the node, which finds an instance anywhere
    /// in the cluster; waits up to `timeout` for the reply.
    pub async fn send(
        &self,
        service: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<Invoked, ClientError> {
        let name = self
            .admin
            .ask(OpenInvocation)
            .timeout(QUERY_TIMEOUT)
            .await
            .map_err(|e| self.query_failed(e))?
            .map_err(ClientError::Service)?;
        let invoker = self
            .remote
            .lookup::<Invoker>(&self.node, &name)
            .await
            .map_err(|e| ClientError::Connect(explain(&self.node, &e)))?;
        let invoke = Invoke {
            service: service.to_owned(),
            body: body.to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        invoker
            .ask(invoke)
            .timeout(timeout + QUERY_TIMEOUT)
            .await
            .map_err(|e| self.query_failed(e))?
            .map_err(ClientError::Service)
    }

    /// Disconnects.
    pub async fn close(self) {
        self.remote.shutdown().await;
        self.system.shutdown_within(Duration::from_secs(1)).await;
    }

    fn query_failed(&self, error: AskError) -> ClientError {
        ClientError::Query(format!("the node at {} did not answer: {error}", self.node))
    }
}

fn explain(node: &str, error: &RemoteError) -> String {
    let hint = match error {
        RemoteError::Connect(ConnectError::AuthenticationFailed)
        | RemoteError::Connect(ConnectError::Refused { .. }) => {
            " (are the cluster name and secret the node's?)"
        }
        RemoteError::Connect(ConnectError::Io(_)) => " (is a node running there?)",
        RemoteError::NotFound(_) => " (is it a postbox-node?)",
        _ => "",
    };
    format!("cannot talk to the node at {node}: {error}{hint}")
}

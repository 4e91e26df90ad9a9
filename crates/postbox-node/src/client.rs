//! Talking to a running node from outside: what `postbox-node members`, `actors`, `services`
//! and `send` do. The client is a short-lived transport endpoint of its own, so it
//! authenticates like a node (same cluster name, secret and TLS) and reaches the node's admin
//! actors by name.
//!
//! Every call takes a deadline that covers all of its network work: [`Client::connect`]'s
//! covers the TCP connect, the handshake and the lookup of the node's admin actor; each
//! query's covers the request and the reply. A node that accepts and never answers, or an
//! address behind a network cut, costs at most that long, and the error says so
//! ([`ClientError::TimedOut`]). The command line gives one deadline to the whole command.

use crate::admin::{
    self, ActorsReport, Invoke, Invoked, Invoker, ListActors, ListMembers, ListServices,
    ListShards, MemberEntry, NodeAdmin, OpenInvocation, ServiceEntry, ShardsEntry,
};
use crate::config::NodeConfig;
use postbox::prelude::*;
use postbox_remote::{ConnectError, Remote, RemoteConfig, RemoteError};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// How long a command may take unless told otherwise (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest deadline a command takes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The largest body [`Client::send`] sends: 4 MiB. The message and the service's reply each
/// travel in one transport frame, whose hard limit is the transport's
/// [`max_frame`](postbox_remote::RemoteConfig::max_frame) (8 MiB by default); half of it
/// leaves room for the envelope and for a reply that repeats the body (as `echo`'s does).
pub const MAX_BODY: usize = 4 << 20;

/// How long closing a client may take, after its command is done or has failed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// The deadline passed before the node answered.
    TimedOut {
        /// The node's address.
        node: String,
        /// The deadline the call was given.
        after: Duration,
        /// What was under way: connecting, or waiting for an answer.
        during: &'static str,
    },
    /// The body of a `send` was refused before anything was sent.
    Body(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e)
            | ClientError::Query(e)
            | ClientError::Service(e)
            | ClientError::Body(e) => f.write_str(e),
            ClientError::TimedOut {
                node,
                after,
                during,
            } => write!(
                f,
                "no answer from the node at {node} within {} ({during}); \
                 is it running, and reachable from here?",
                crate::config::format_duration(*after)
            ),
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

/// `future`, or [`ClientError::TimedOut`] once `timeout` has passed.
async fn within<T>(
    node: &str,
    timeout: Duration,
    during: &'static str,
    future: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ClientError::TimedOut {
            node: node.to_owned(),
            after: timeout,
            during,
        }),
    }
}

impl Client {
    /// Connects to the node at `node` with `config`'s cluster name, secret and TLS, within
    /// `timeout` (TCP connect, handshake and the lookup of its admin actor; at most
    /// [`MAX_TIMEOUT`]).
    pub async fn connect(
        config: &NodeConfig,
        node: SocketAddr,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let timeout = timeout.min(MAX_TIMEOUT);
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
        let looked_up = within(
            &node,
            timeout,
            "connecting: TCP connect, handshake, lookup of postbox.admin",
            async {
                remote
                    .lookup::<NodeAdmin>(&node, admin::ADMIN)
                    .await
                    .map_err(|error| ClientError::Connect(explain(&node, &error)))
            },
        )
        .await;
        match looked_up {
            Ok(admin) => Ok(Client {
                system,
                remote,
                node,
                admin,
            }),
            Err(error) => {
                close(&system, &remote).await;
                Err(error)
            }
        }
    }

    /// The node's members: current ones, then recently gone ones; within `timeout`.
    pub async fn members(&self, timeout: Duration) -> Result<Vec<MemberEntry>, ClientError> {
        self.query(timeout, ListMembers).await
    }

    /// The node's `top` deepest mailboxes, within `timeout`.
    pub async fn actors(&self, top: usize, timeout: Duration) -> Result<ActorsReport, ClientError> {
        self.query(timeout, ListActors { top }).await
    }

    /// The services the node knows and where they run, within `timeout`.
    pub async fn services(&self, timeout: Duration) -> Result<Vec<ServiceEntry>, ClientError> {
        self.query(timeout, ListServices).await
    }

    /// What every up member hosts of each sharded entity type (asked of each member's own
    /// admin, through the node's member list), within `timeout`. A member that does not
    /// answer in time is left out.
    pub async fn shards(&self, timeout: Duration) -> Result<Vec<ShardsEntry>, ClientError> {
        let timeout = timeout.min(MAX_TIMEOUT);
        let started = Instant::now();
        let members = self.members(timeout).await?;
        let mut asks = tokio::task::JoinSet::new();
        for member in members.into_iter().filter(|m| m.status == "up") {
            let left = timeout.saturating_sub(started.elapsed());
            let (remote, own) = (self.remote.clone(), self.admin.clone());
            asks.spawn(async move {
                let answer = async {
                    let admin = if member.is_self {
                        own
                    } else {
                        remote
                            .lookup::<NodeAdmin>(&member.address, admin::ADMIN)
                            .await
                            .ok()?
                    };
                    admin.ask(ListShards).timeout(left).await.ok()
                };
                tokio::time::timeout(left, answer).await.ok().flatten()
            });
        }
        let mut entries = Vec::new();
        while let Some(answer) = asks.join_next().await {
            entries.extend(answer.ok().flatten().unwrap_or_default());
        }
        entries.sort_by(|a, b| (&a.entity_type, &a.node).cmp(&(&b.entity_type, &b.node)));
        Ok(entries)
    }

    /// Sends `body` (JSON, at most [`MAX_BODY`] bytes) to `service` through the node, which
    /// finds an instance anywhere in the cluster; everything — opening the invocation, the
    /// service's work and the reply — within `timeout`. The node gives the service nine
    /// tenths of what is left (keeping at most a second for the reply's way back), so that a
    /// slow service is reported as the service's timeout rather than as silence.
    pub async fn send(
        &self,
        service: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<Invoked, ClientError> {
        if body.len() > MAX_BODY {
            return Err(ClientError::Body(format!(
                "the body is {} bytes; `send` takes at most {MAX_BODY} (4 MiB)",
                body.len()
            )));
        }
        let timeout = timeout.min(MAX_TIMEOUT);
        let deadline = Instant::now() + timeout;
        within(&self.node, timeout, "waiting for the reply", async {
            let name = self
                .admin
                .ask(OpenInvocation)
                .timeout(timeout)
                .await
                .map_err(|e| self.query_failed(e))?
                .map_err(ClientError::Service)?;
            let invoker = self
                .remote
                .lookup::<Invoker>(&self.node, &name)
                .await
                .map_err(|e| ClientError::Connect(explain(&self.node, &e)))?;
            let left = deadline.saturating_duration_since(Instant::now());
            let for_the_service = left - (left / 10).min(Duration::from_secs(1));
            let invoke = Invoke {
                service: service.to_owned(),
                body: body.to_owned(),
                timeout_ms: u64::try_from(for_the_service.as_millis()).unwrap_or(u64::MAX),
            };
            invoker
                .ask(invoke)
                .timeout(left)
                .await
                .map_err(|e| self.query_failed(e))?
                .map_err(ClientError::Service)
        })
        .await
    }

    /// Disconnects (within a second).
    pub async fn close(self) {
        close(&self.system, &self.remote).await;
    }

    async fn query<M>(&self, timeout: Duration, message: M) -> Result<M::Reply, ClientError>
    where
        NodeAdmin: Handler<M>,
        M: Message,
    {
        let timeout = timeout.min(MAX_TIMEOUT);
        within(&self.node, timeout, "waiting for the reply", async {
            self.admin
                .ask(message)
                .timeout(timeout)
                .await
                .map_err(|e| self.query_failed(e))
        })
        .await
    }

    fn query_failed(&self, error: AskError) -> ClientError {
        ClientError::Query(format!("the node at {} did not answer: {error}", self.node))
    }
}

async fn close(system: &ActorSystem, remote: &Remote) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, remote.shutdown()).await;
    system.shutdown_within(CLOSE_TIMEOUT).await;
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

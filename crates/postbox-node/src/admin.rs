//! What a running node answers about itself, over the authenticated transport: the actors
//! behind `postbox-node members`, `actors`, `services`, `shards` and `send`.
//!
//! Two kinds of actor, so that a slow service never delays a status query or another send:
//!
//! * `postbox.admin` ([`NodeAdmin`]) answers [`ListMembers`], [`ListActors`],
//!   [`ListServices`] and [`ListShards`] from local state, and opens invocations ([`OpenInvocation`]).
//! * an [`Invoker`] per invocation, a temporary child of the admin registered as
//!   `postbox.invoke.N`, runs one [`Invoke`]: decode the JSON, find an instance of the
//!   service through the receptionist (this node's own first, else the least loaded), ask
//!   it, encode the reply; then it stops. One that is never used stops after
//!   [`INVOKER_IDLE`]. At most [`MAX_OPEN_INVOCATIONS`] are open at once; one more is
//!   refused. Either way it leaves nothing behind: its idle timer ends with it, so a
//!   normal invocation produces no dead letter (nothing is ever sent to a stopped invoker).

use crate::service::JsonService;
use postbox::prelude::*;
use postbox_cluster::{Cluster, Member, MemberStatus};
use postbox_remote::{remote_actor, remote_message};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The name the admin actor is registered under.
pub const ADMIN: &str = "postbox.admin";

/// How long an opened invocation waits for its [`Invoke`] before it stops.
pub const INVOKER_IDLE: Duration = Duration::from_secs(30);

/// Most invocations open at once on one node (opened and not yet finished or expired); one
/// more is refused with an error saying so, and the refusals are logged (at most one line a
/// minute, with how many were not logged).
pub const MAX_OPEN_INVOCATIONS: usize = 1024;

/// How many gone members (down or left) a node remembers for `members`.
const GONE_KEPT: usize = 64;

/// One member, as `postbox-node members` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// Its transport address (`host:port`).
    pub address: String,
    /// Its node id, hex.
    pub node_id: String,
    /// Its incarnation: a restarted node has a new one.
    pub incarnation: u64,
    /// Where it gossips.
    pub gossip: String,
    /// `joining`, `up`, `unreachable`, `down` or `left`.
    pub status: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its live actors, as it last reported.
    pub actors: usize,
    /// Messages waiting in all its mailboxes, as it last reported.
    pub total_depth: usize,
    /// Messages waiting in its deepest mailbox, as it last reported.
    pub max_depth: usize,
    /// Whether it is the node that answered.
    pub is_self: bool,
}

impl MemberEntry {
    fn of(member: &Member, me: &Member) -> Self {
        Self {
            address: member.node.addr.clone(),
            node_id: format!("{:016x}", member.node.node_id),
            incarnation: member.node.incarnation,
            gossip: member.gossip_addr.to_string(),
            status: status_name(member.status).to_owned(),
            roles: member.roles.iter().cloned().collect(),
            actors: member.load.actors,
            total_depth: member.load.total_depth,
            max_depth: member.load.max_depth,
            is_self: member.node == me.node,
        }
    }
}

/// The lower-case name of a status.
pub fn status_name(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Joining => "joining",
        MemberStatus::Up => "up",
        MemberStatus::Unreachable => "unreachable",
        MemberStatus::Down => "down",
        MemberStatus::Left => "left",
    }
}

/// One actor, as `postbox-node actors` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorEntry {
    /// Its path.
    pub path: String,
    /// Its Rust type.
    pub actor_type: String,
    /// Messages waiting in its mailbox.
    pub depth: usize,
    /// Messages it has handled.
    pub processed: u64,
    /// Times it was restarted.
    pub restarts: u64,
}

/// The deepest mailboxes of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorsReport {
    /// Live actors on the node.
    pub total: usize,
    /// Messages waiting in all their mailboxes.
    pub total_depth: usize,
    /// The deepest `top` of them, deepest first.
    pub actors: Vec<ActorEntry>,
}

/// One service and the members that offer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// The service's name.
    pub name: String,
    /// Transport addresses of the up members that host an instance.
    pub nodes: Vec<String>,
}

/// The members this node knows: current ones, then recently gone ones.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListMembers;
impl Message for ListMembers {
    type Reply = Vec<MemberEntry>;
    remote_message!("postbox.node.ListMembers");
}

/// The `top` deepest mailboxes of this node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListActors {
    /// How many to list.
    pub top: usize,
}
impl Message for ListActors {
    type Reply = ActorsReport;
    remote_message!("postbox.node.ListActors");
}

/// The JSON services this node knows, with the members offering each.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListServices;
impl Message for ListServices {
    type Reply = Vec<ServiceEntry>;
    remote_message!("postbox.node.ListServices");
}

/// What this node hosts of each sharded entity type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListShards;
impl Message for ListShards {
    type Reply = Vec<ShardsEntry>;
    remote_message!("postbox.node.ListShards");
}

/// One entity type on one node, as `postbox-node shards` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsEntry {
    /// The node's transport address.
    pub node: String,
    /// The entity type.
    pub entity_type: String,
    /// The shards active on it (activated by a message, a singleton or remember entities).
    pub shards: Vec<u32>,
    /// How many shards the placement puts on it by its membership view, active or not
    /// (0 from a node that does not report it).
    #[serde(default)]
    pub allocated: usize,
    /// Its active entities.
    pub entities: usize,
    /// Entities recorded as remembered for its active shards (remember entities on; 0 from
    /// a node that does not report it).
    #[serde(default)]
    pub remembered: usize,
    /// Messages waiting in its buffers (shards moving, homes not reachable yet).
    pub buffered: usize,
    /// Shards it handed off since it started.
    pub handoffs: u64,
    /// Entities it passivated since it started.
    pub passivations: u64,
}

/// Starts an [`Invoker`] for one [`Invoke`]; replies with the name it is registered under.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OpenInvocation;
impl Message for OpenInvocation {
    type Reply = Result<String, String>;
    remote_message!("postbox.node.OpenInvocation");
}

/// Sends `body` (JSON) to service `service`, wherever in the cluster it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invoke {
    /// The service's name.
    pub service: String,
    /// The message, as JSON.
    pub body: String,
    /// How long to wait for the service's answer.
    pub timeout_ms: u64,
}

/// The answer to an [`Invoke`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoked {
    /// The transport address of the node whose instance answered.
    pub node: String,
    /// The reply, as JSON text.
    pub reply: String,
}

impl Message for Invoke {
    type Reply = Result<Invoked, String>;
    remote_message!("postbox.node.Invoke");
}

/// The members that are gone, newest last; fed by the cluster's events.
#[derive(Debug, Clone, Default)]
pub(crate) struct GoneMembers(Arc<Mutex<VecDeque<Member>>>);

impl GoneMembers {
    pub(crate) fn record(&self, member: Member) {
        let Ok(mut gone) = self.0.lock() else { return };
        gone.retain(|m| m.node != member.node);
        if gone.len() == GONE_KEPT {
            gone.pop_front();
        }
        gone.push_back(member);
    }

    fn list(&self) -> Vec<Member> {
        self.0
            .lock()
            .map(|gone| gone.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Follows `cluster`'s events until they end.
    pub(crate) fn follow(&self, cluster: &Cluster) -> tokio::task::JoinHandle<()> {
        let mut events = cluster.events();
        let gone = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) if event.member().status.is_final() => {
                        gone.record(event.member().clone());
                    }
                    Ok(_) => {}
                    Err(postbox_cluster::EventsError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        })
    }
}

/// Answers status queries about its node.
#[derive(Debug)]
pub struct NodeAdmin {
    cluster: Cluster,
    sharding: postbox_sharding::Sharding,
    services: Arc<Vec<Arc<dyn JsonService>>>,
    gone: GoneMembers,
    invocations: u64,
    refused_since_logged: u64,
    refusal_logged: Option<std::time::Instant>,
}

impl NodeAdmin {
    pub(crate) fn new(
        cluster: Cluster,
        sharding: postbox_sharding::Sharding,
        services: Arc<Vec<Arc<dyn JsonService>>>,
        gone: GoneMembers,
    ) -> Self {
        Self {
            cluster,
            sharding,
            services,
            gone,
            invocations: 0,
            refused_since_logged: 0,
            refusal_logged: None,
        }
    }
}

impl Actor for NodeAdmin {}

impl Handler<ListMembers> for NodeAdmin {
    async fn handle(&mut self, _: ListMembers, _: &mut Context<Self>) -> Vec<MemberEntry> {
        let me = self.cluster.myself();
        let current = self.cluster.members();
        let mut entries: Vec<MemberEntry> =
            current.iter().map(|m| MemberEntry::of(m, &me)).collect();
        entries.extend(
            self.gone
                .list()
                .iter()
                .filter(|gone| current.iter().all(|m| m.node != gone.node))
                .map(|m| MemberEntry::of(m, &me)),
        );
        entries
    }
}

impl Handler<ListActors> for NodeAdmin {
    async fn handle(&mut self, list: ListActors, ctx: &mut Context<Self>) -> ActorsReport {
        let mut actors = Vec::new();
        let mut total = 0;
        let mut total_depth = 0;
        ctx.system().for_each_actor(|actor| {
            total += 1;
            total_depth += actor.depth();
            actors.push((actor.depth(), actor.id()));
        });
        actors.sort_by_key(|&(depth, _)| std::cmp::Reverse(depth));
        // An actor may stop between the walk and this lookup; it is then left out.
        let entries: Vec<ActorEntry> = actors
            .into_iter()
            .take(list.top)
            .filter_map(|(_, id)| ctx.system().actor(id))
            .map(|info| ActorEntry {
                path: info.path,
                actor_type: info.actor_type.to_owned(),
                depth: info.stats.depth,
                processed: info.stats.processed,
                restarts: u64::from(info.stats.restarts),
            })
            .collect();
        ActorsReport {
            total,
            total_depth,
            actors: entries,
        }
    }
}

impl Handler<ListServices> for NodeAdmin {
    async fn handle(&mut self, _: ListServices, _: &mut Context<Self>) -> Vec<ServiceEntry> {
        let mut entries = Vec::with_capacity(self.services.len());
        for service in self.services.iter() {
            let mut nodes: Vec<String> = service
                .nodes(&self.cluster)
                .await
                .into_iter()
                .map(|node| node.addr)
                .collect();
            nodes.sort();
            nodes.dedup();
            entries.push(ServiceEntry {
                name: service.name().to_owned(),
                nodes,
            });
        }
        entries
    }
}

impl Handler<ListShards> for NodeAdmin {
    async fn handle(&mut self, _: ListShards, _: &mut Context<Self>) -> Vec<ShardsEntry> {
        // Only this node's own regions: quick, and never waits for another node.
        self.sharding
            .snapshot()
            .await
            .into_iter()
            .map(|region| ShardsEntry {
                node: region.node.addr,
                entity_type: region.entity_type,
                shards: region.shards,
                allocated: region.allocated,
                remembered: region.remembered,
                entities: region.entities,
                buffered: region.buffered,
                handoffs: region.counters.handoffs,
                passivations: region.counters.passivations,
            })
            .collect()
    }
}

impl Handler<OpenInvocation> for NodeAdmin {
    async fn handle(
        &mut self,
        _: OpenInvocation,
        ctx: &mut Context<Self>,
    ) -> Result<String, String> {
        // The invokers are the admin's only children.
        if ctx.children().len() >= MAX_OPEN_INVOCATIONS {
            self.refused_since_logged += 1;
            let now = std::time::Instant::now();
            if self
                .refusal_logged
                .is_none_or(|logged| now.duration_since(logged) >= Duration::from_secs(60))
            {
                tracing::warn!(
                    open = MAX_OPEN_INVOCATIONS,
                    refused = self.refused_since_logged,
                    "refusing invocations: too many open"
                );
                self.refusal_logged = Some(now);
                self.refused_since_logged = 0;
            }
            return Err(format!(
                "this node has {MAX_OPEN_INVOCATIONS} invocations open already, the most it \
                 allows; try again once some have finished"
            ));
        }
        self.invocations += 1;
        let name = format!("postbox.invoke.{}", self.invocations);
        let (cluster, services) = (self.cluster.clone(), self.services.clone());
        let invoker = ctx
            .spawn(
                Props::new(move || Invoker::new(cluster.clone(), services.clone(), INVOKER_IDLE))
                    .name(format!("invoke-{}", self.invocations))
                    .restart(Restart::Temporary),
            )
            .map_err(|e| format!("cannot start an invocation: {e}"))?;
        ctx.system()
            .registry()
            .register(name.clone(), &invoker)
            .map_err(|e| format!("cannot register {name}: {e}"))?;
        Ok(name)
    }
}

remote_actor!(NodeAdmin: ListMembers, ListActors, ListServices, ListShards, OpenInvocation);

/// Runs one [`Invoke`], then stops; stops after its idle time if none comes.
#[derive(Debug)]
pub struct Invoker {
    cluster: Cluster,
    services: Arc<Vec<Arc<dyn JsonService>>>,
    idle: Duration,
}

impl Invoker {
    pub(crate) fn new(
        cluster: Cluster,
        services: Arc<Vec<Arc<dyn JsonService>>>,
        idle: Duration,
    ) -> Self {
        Self {
            cluster,
            services,
            idle,
        }
    }
}

impl Actor for Invoker {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        // The timer lives exactly as long as the invoker: it ends when the invoker stops
        // (after its one invocation), and it stops the invoker with a signal, never a message,
        // so no outcome leaves a dead letter.
        let me = ctx.myself().clone();
        let idle = self.idle;
        tokio::spawn(async move {
            tokio::select! {
                _ = me.wait_for_stop() => {}
                _ = tokio::time::sleep(idle) => me.stop(),
            }
        });
        Ok(())
    }
}

impl Handler<Invoke> for Invoker {
    async fn handle(&mut self, invoke: Invoke, ctx: &mut Context<Self>) -> Result<Invoked, String> {
        ctx.stop();
        let Some(service) = self.services.iter().find(|s| s.name() == invoke.service) else {
            let known: Vec<&str> = self.services.iter().map(|s| s.name()).collect();
            return Err(format!(
                "no service named `{}` (known: {})",
                invoke.service,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        let timeout = Duration::from_millis(invoke.timeout_ms.max(1));
        service.invoke(&self.cluster, &invoke.body, timeout).await
    }
}

remote_actor!(Invoker: Invoke);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use postbox_cluster::ClusterConfig;
    use postbox_remote::{Remote, RemoteConfig};

    /// A node's admin actor on loopback, with no services.
    async fn admin() -> (ActorSystem, Remote, ActorRef<NodeAdmin>) {
        let system = ActorSystem::new();
        let loopback = "127.0.0.1:0".parse().unwrap();
        let remote = Remote::start(&system, RemoteConfig::new(loopback, "admin-tests", b"s"))
            .await
            .unwrap();
        let cluster = Cluster::join(
            &system,
            &remote,
            ClusterConfig::new("admin-tests", b"s", loopback),
        )
        .await
        .unwrap();
        let sharding = postbox_sharding::Sharding::new(&system, &remote, &cluster);
        let admin = system
            .spawn(Props::new(move || {
                NodeAdmin::new(
                    cluster.clone(),
                    sharding.clone(),
                    Arc::default(),
                    GoneMembers::default(),
                )
            }))
            .unwrap();
        (system, remote, admin)
    }

    async fn open(system: &ActorSystem, admin: &ActorRef<NodeAdmin>) -> ActorRef<Invoker> {
        let name = admin.ask(OpenInvocation).await.unwrap().unwrap();
        system.registry().lookup::<Invoker>(&name).unwrap()
    }

    // The clock is paused once the sockets are up, so that waiting out INVOKER_IDLE costs no
    // real time and every timer due in it fires, in order, before the assertions.

    #[tokio::test]
    async fn a_completed_invocation_leaves_no_dead_letter() {
        let (system, _remote, admin) = admin().await;
        tokio::time::pause();
        let invoker = open(&system, &admin).await;
        let answer = invoker
            .ask(Invoke {
                service: "nope".into(),
                body: "{}".into(),
                timeout_ms: 1_000,
            })
            .await
            .unwrap();
        assert!(answer.unwrap_err().contains("no service named `nope`"));
        invoker.wait_for_stop().await;
        tokio::time::sleep(INVOKER_IDLE * 2).await;
        assert_eq!(
            system.dead_letters().total(),
            0,
            "dead letters after an invocation"
        );
    }

    #[tokio::test]
    async fn open_invocations_are_bounded_and_a_finished_one_makes_room() {
        let (system, _remote, admin) = admin().await;
        tokio::time::pause();
        let mut open_ones = Vec::new();
        for _ in 0..MAX_OPEN_INVOCATIONS {
            open_ones.push(open(&system, &admin).await);
        }
        let refused = admin.ask(OpenInvocation).await.unwrap().unwrap_err();
        assert!(refused.contains("invocations open already"), "{refused}");
        let done = open_ones.pop().unwrap();
        let _ = done
            .ask(Invoke {
                service: "nope".into(),
                body: "{}".into(),
                timeout_ms: 1_000,
            })
            .await
            .unwrap();
        done.wait_for_stop().await;
        // The admin hears of its child's end just after the child's watchers do.
        tokio::time::timeout(Duration::from_secs(60), async {
            while admin.ask(OpenInvocation).await.unwrap().is_err() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("room for one more once one has finished");
    }

    #[tokio::test]
    async fn an_unused_invoker_stops_after_its_idle_time_and_leaves_no_dead_letter() {
        let (system, _remote, admin) = admin().await;
        tokio::time::pause();
        let invoker = open(&system, &admin).await;
        let opened = tokio::time::Instant::now();
        tokio::time::timeout(INVOKER_IDLE * 2, invoker.wait_for_stop())
            .await
            .expect("the idle invoker stops");
        assert!(opened.elapsed() >= INVOKER_IDLE);
        tokio::time::sleep(INVOKER_IDLE).await;
        assert_eq!(system.dead_letters().total(), 0);
    }
}

//! # postbox-cluster
//!
//! Cluster membership for postbox nodes: who is in the cluster, who failed, who left; a
//! cluster-wide registry of services (the *receptionist*); and routers whose routees are the
//! registered actors on every live member.
//!
//! Membership is [chitchat](https://docs.rs/chitchat)'s: scuttlebutt gossip over UDP, a
//! phi-accrual failure detector, and a key-value state per node, in which each node publishes
//! its [`Remote`](postbox_remote::Remote) address, roles, load and registrations. This crate
//! adds authentication of every datagram, member statuses and events, graceful leave,
//! restart detection, DNS seeds, the receptionist and the routers.
//!
//! ```no_run
//! use postbox::prelude::*;
//! use postbox_cluster::{Cluster, ClusterConfig, ClusterEvent, ServiceKey};
//! use postbox_remote::{remote_actor, remote_message, Remote, RemoteConfig};
//! use serde::{Deserialize, Serialize};
//!
//! struct Greeter;
//! impl Actor for Greeter {}
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hello(String);
//! impl Message for Hello {
//!     type Reply = String;
//!     remote_message!("demo.Hello");
//! }
//! impl Handler<Hello> for Greeter {
//!     async fn handle(&mut self, Hello(name): Hello, _: &mut Context<Self>) -> String {
//!         format!("hello, {name}")
//!     }
//! }
//! remote_actor!(Greeter: Hello);
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let system = ActorSystem::new();
//! let remote = Remote::start(&system, RemoteConfig::new("127.0.0.1:4001".parse()?, "demo", b"secret")).await?;
//! // Seeds may be DNS names: a headless Kubernetes service resolves to every pod.
//! let config = ClusterConfig::new("demo", b"secret", "127.0.0.1:7001".parse()?)
//!     .seed("127.0.0.1:7000")
//!     .role("greeter");
//! let cluster = Cluster::join(&system, &remote, config).await?;
//!
//! // Offer a service on this node; any node can find it.
//! let key = ServiceKey::<Greeter>::new("greeter");
//! let greeter = system.spawn(Props::new(|| Greeter))?;
//! cluster.receptionist().register(&key, &greeter).await?;
//! for instance in cluster.receptionist().lookup(&key).await.instances() {
//!     println!("{}: {}", instance.node, instance.actor.ask(Hello("you".into())).await?);
//! }
//!
//! // Or route over every greeter in the cluster, least loaded first.
//! let greeters = cluster.router::<Greeter, Hello>(&key).smallest_mailbox().spawn().await?;
//! greeters.ask(Hello("anyone".into())).await?;
//!
//! // Follow membership.
//! let mut events = cluster.events();
//! while let Ok(event) = events.recv().await {
//!     if let ClusterEvent::MemberDown(member) = event {
//!         println!("{member} is down");
//!     }
//! }
//! cluster.leave().await?; // others see `Left`, not `Down`
//! # Ok(())
//! # }
//! ```
//!
//! ## Members and events
//!
//! A [`Member`] is one incarnation of a node: its [`NodeAddr`](postbox_remote::NodeAddr)
//! (remote address, node id, incarnation), gossip address, roles and [`NodeLoad`]. Its
//! [`MemberStatus`] goes `Joining → Up ⇄ Unreachable → Down`, or to `Left` after a graceful
//! leave; `Down` and `Left` are final. [`Cluster::events`] yields a [`ClusterEvent`] for each
//! transition, per member in that order, after one event per current member.
//!
//! - **Joining → Up**: chitchat's failure detector has heard the node's heartbeat twice
//!   (it is live) and its published metadata is complete and valid.
//! - **Up → Unreachable**: no fresh heartbeat for `phi_threshold` × its mean heartbeat
//!   interval ([`FailureDetection`]). Back to `Up` if it is heard from again.
//! - **Unreachable → Down**: *unreachable is not down*. Once the set of unreachable members
//!   has been stable for [`down_after`](FailureDetection::down_after), the
//!   [`DowningStrategy`] decides which side of the partition goes (keep-majority by default):
//!   the winners declare the unreachable members down, each loser declares **itself** down
//!   and stops ([`Cluster::downed`]). See the [`downing`] module for the strategies and the
//!   timeline of a partition. A member never confirmed live is down after the same time plus
//!   the detection window.
//! - **This node down**: by its strategy's decision, or because another member declared it
//!   down — published in gossip, and said by every member's transport, which refuses a downed
//!   incarnation with `Quarantined`. A node that was paused or cut off therefore finds out as
//!   soon as it hears from the others, instead of carrying on as a zombie. It emits
//!   `MemberDown` for itself, stops gossiping, leaves every listing;
//!   [`Cluster::is_down`]/[`Cluster::downed`] tell the application, which should restart it
//!   as a new incarnation (`postbox-node` exits non-zero).
//! - **Restart**: a node that restarts has a new incarnation: a new member. Once it is up,
//!   any other member at its remote or gossip address is declared down at once, whether
//!   or not the failure detector had noticed.
//! - **Leave**: [`Cluster::leave`] publishes `leaving`; every member that sees it reports
//!   the node `Left` (never `Down`) and acknowledges in its own state; the leaver stops
//!   gossiping once all joining and up members acknowledged, or after `leave_timeout`.
//!
//! With the default tuning (200 ms gossip, phi 8, down after 1 s) a killed node is seen
//! down by every other node in about 3 s on loopback; BENCHMARKS.md has the measured median
//! and maximum.
//!
//! A member declared down is quarantined in the remote transport at once
//! ([`Remote::quarantine`](postbox_remote::Remote::quarantine), that incarnation only): its
//! connection is told why and closed, asks in flight to it fail with `AskError::NodeDown`
//! when the cluster decides (even if the node is hung rather than crashed and its TCP
//! connection still open), and it is refused from then on. The transport also asks the
//! membership about every authenticated peer (an [`Admission`](postbox_remote::Admission)):
//! a peer that claims the address of another member that is up is refused (`AddressInUse`),
//! so a node that knows the secret cannot take over a live member's address.
//!
//! ## Receptionist and routers
//!
//! See the [`receptionist`] and [`router`] module docs: entries are listed only for up
//! members; smallest-mailbox routing across nodes estimates a remote actor's queue from the
//! depth its node gossips plus what this node has sent it since.
//!
//! ## Security
//!
//! Every gossip datagram carries an HMAC-SHA256 tag over the cluster name and secret; a
//! datagram that fails is dropped, counted ([`GossipStats`]) and answered with a refusal
//! that echoes the refused datagram's tag. A refusal is believed only if it echoes a
//! datagram this node recently sent to that address — an unauthenticated datagram from
//! anyone else never changes a node's decisions — and a believed one makes
//! [`Cluster::join`] fail with [`ClusterError::Refused`] on the refused side.
//! Messages between actors travel over the remote transport, which authenticates its own
//! connections.

mod cluster;
mod config;
pub mod downing;
mod error;
mod member;
mod membership;
mod meta;
pub mod receptionist;
pub mod router;
mod transport;

pub use cluster::Cluster;
pub use config::{ClusterConfig, FailureDetection};
pub use downing::{DowningStats, DowningStrategy};
pub use error::{ClusterError, Refusal, RegisterError};
pub use member::{ClusterEvent, Member, MemberStatus, NodeLoad};
pub use membership::{ClusterEvents, EventsError};
pub use receptionist::{Instance, Listing, ListingSubscription, Receptionist, ServiceKey};
pub use router::ClusterRouterBuilder;
pub use transport::GossipStats;

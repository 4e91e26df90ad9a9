//! # postbox-sharding
//!
//! Entities by key across the cluster: one live instance per entity id in the whole
//! cluster, placed by the runtime, moved when nodes come and go, reached from any node
//! through an [`EntityRef`] with the same `tell` / `try_tell` / `ask` as an `ActorRef`.
//! And cluster singletons, on the same machinery.
//!
//! ```no_run
//! use postbox::prelude::*;
//! use postbox_cluster::{Cluster, ClusterConfig};
//! use postbox_remote::{remote_message, Remote, RemoteConfig};
//! use postbox_sharding::{entity, EntityType, Sharding};
//! use serde::{Deserialize, Serialize};
//!
//! struct Account { id: String, balance: i64 }
//! impl Actor for Account {}
//!
//! #[derive(Serialize, Deserialize)]
//! struct Deposit(i64);
//! impl Message for Deposit {
//!     type Reply = i64;
//!     remote_message!("bank.Deposit");
//! }
//! impl Handler<Deposit> for Account {
//!     async fn handle(&mut self, Deposit(cents): Deposit, _: &mut Context<Self>) -> i64 {
//!         self.balance += cents;
//!         self.balance
//!     }
//! }
//! entity!(Account: Deposit); // Deposit may reach an Account from any node
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let system = ActorSystem::new();
//! let remote = Remote::start(&system, RemoteConfig::new("127.0.0.1:4001".parse()?, "bank", b"secret")).await?;
//! let config = ClusterConfig::new("bank", b"secret", "127.0.0.1:7001".parse()?).role("accounts");
//! let cluster = Cluster::join(&system, &remote, config).await?;
//!
//! // On every node: the same type, the same name; hosted where the role is.
//! let sharding = Sharding::new(&system, &remote, &cluster);
//! let accounts = sharding.register(
//!     EntityType::new("account", |id: &str| Account { id: id.to_owned(), balance: 0 })
//!         .role("accounts"),
//! )?;
//!
//! // From any node: started on its first message, wherever its shard lives.
//! let alice = accounts.entity_ref("alice");
//! assert_eq!(alice.ask(Deposit(100)).await?, 100);
//!
//! // Before leaving: hand the shards off first.
//! sharding.leave().await;
//! cluster.leave().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Placement
//!
//! An entity id maps to one of the type's shards by a stable hash (FNV-1a); a shard maps to
//! a node by an [`Allocation`] strategy computed by **every node from its own membership
//! view** — the up (and unreachable, which is not down) members with the type's role,
//! oldest first: [`LeastShards`](Allocation::LeastShards) by default (rendezvous hashing
//! with bounded loads: every node the same number of shards, ±1, and few moves when a node
//! joins), [`LoadAware`](Allocation::LoadAware) (shares weighted by the mailbox depths the
//! members gossip), or [`Oldest`](Allocation::Oldest) (singletons). There is no coordinator
//! and no consensus of this crate's own: membership is the agreement.
//!
//! ## One live instance
//!
//! A region (one actor per type per node) activates a shard only after every other region
//! of the type on a member that is not gone has said it does not hold it (*acquire*); a
//! region that holds a shard whose home moved hands it off first. While membership views
//! agree, a shard is therefore active in one region at most. While they disagree (a node
//! seen up by some and not yet by others, a partition before the downing decision), two
//! regions may activate the same entity; entities that keep their state with
//! `postbox-persistence` are still safe, because the store's single-writer check lets only
//! one of them acknowledge a write — the other's persist fails with `Conflict` and it stops.
//! After a partition, the downing strategy takes the losing side down and its regions stop
//! hosting at once.
//!
//! ## Moving
//!
//! - **Join**: the shards whose home is now the new node are handed off, at most
//!   [`max_handoffs`](EntityType::max_handoffs) at a time per node: entities drain their
//!   mailboxes and stop, messages arriving meanwhile are buffered and then forwarded, in
//!   order and ahead of what the new home buffered itself.
//! - **Graceful leave** ([`Sharding::leave`]): the same for every shard of the node, before
//!   it leaves the cluster. No message accepted by a region is lost in a graceful hand-off.
//! - **Order**: each sender's messages reach the new home in the order it sent them, also
//!   from a node whose own view changes in the middle of the move: its region sends a fence
//!   after its messages still on the old way and holds the next ones until the fence comes
//!   back behind them ([`RegionCounts::fences`]); a message that reaches a region whose
//!   view disagrees waits there in line instead of circling.
//! - **Node loss**: once membership declares the node down, its shards are acquired by their
//!   new homes and its entities start again on their first message, recovering from their
//!   journal. `tell`s in flight to the lost node are lost (at-most-once); `ask`s in flight
//!   fail with `AskError::NodeDown`, never hang.
//!
//! ## Direct paths
//!
//! A message normally passes this node's region (which finds the home) and the home's
//! region (which finds or starts the entity). Once an entity's place is settled, a `tell`
//! skips both: the [`EntityRef`] sends it straight to the home's region over the same
//! connection the region uses — encoded once, in place — and the home's transport puts it
//! straight into the entity's mailbox, reading the envelope where it lies. So a stream of
//! tells to a remote entity costs about what it costs through a direct remote `ActorRef`
//! (BENCHMARKS.md). An `ask` skips this node's region the same way, and passes the home's
//! (whose answer it needs). A message takes a direct path only when
//! nothing of its shard is still on its way through the region it skips, so each sender's
//! order holds across the switch; a region closes the paths of a shard before it starts
//! moving it and opens them only between its own messages. Counted in
//! [`RegionCounts::direct`] (`postbox_sharding_direct_total`).
//!
//! ## Remember entities
//!
//! With [`EntityType::remember_entities`], each shard's active entities are recorded in the
//! application's store (one durable state per shard), and whenever a shard becomes active
//! on a node — first placement, a join or a graceful leave, a lost node downed — that node
//! starts the shard's remembered entities at once, without waiting for a message; each
//! recovers its own state from its own journal. Started → remembered; passivated or stopped
//! on its own → forgotten; stopped for a hand-off or lost with its node → still remembered.
//! The set is written in the background when entities start and stop, never per message; a
//! store failure is logged, counted ([`RegionCounts::remember_failures`]) and retried while
//! the entity serves. Counted in [`RegionCounts::remembered_starts`].
//!
//! ## Bounds
//!
//! Every buffer is bounded: per shard while it is acquired or handed off, per entity while
//! it is passivated, per shard while its home is unknown or unreachable
//! ([`buffer`](EntityType::buffer) messages each). Beyond it a message is a
//! `ShardUnavailable` dead letter (an ask fails with `Remote(Refused)`), counted in
//! [`RegionCounts::dropped`]. A message that another node sent to a region as to its
//! shard's home, while that region counts another node as the home (their views disagree:
//! one has not yet seen a member join or leave, say), is parked there in line, in the same
//! bounded buffer, rather than sent round again, and routed again when that region's view
//! changes, when the home asks for its shard, or on a timer (50 ms, doubling to 1 s while
//! any stay parked: the stale view may be another region's), counted in
//! [`RegionCounts::bounced`]. While a shard moves, this node's messages for it wait behind
//! a fence (in the same bound; [`RegionCounts::fences`]) until its earlier ones, still on
//! the old way, are ahead of them. Active entities per node are
//! capped ([`max_active`](EntityType::max_active): the least recently used is passivated;
//! remembered entities beyond it are not started eagerly, but on their first message)
//! and idle ones passivated ([`idle_timeout`](EntityType::idle_timeout)).
//!
//! ## Where an `ActorRef` goes
//!
//! [`EntityRef::recipient`] makes an entity a `Recipient<M>`: a router's routee, a breaker's
//! guarded recipient, anything that takes one. It starts a small local actor that passes
//! each `M` on to the entity, in its senders' order, asks with the entity's own errors and
//! ask timeout; the asks awaiting their reply count in its depth, at most
//! [`FORWARDER_MAX_ASKS`], beyond which it takes no further message (its mailbox fills and
//! holds its senders back). It stops with this node's region. For a single guarded call no
//! recipient is needed: `breaker.call(entity.ask(msg))`.
//!
//! ```no_run
//! # use postbox::prelude::*;
//! # use postbox::{CircuitBreaker, Router};
//! # use postbox_remote::remote_message;
//! # use postbox_sharding::{entity, Entities};
//! # use serde::{Deserialize, Serialize};
//! # struct Account;
//! # impl Actor for Account {}
//! # #[derive(Serialize, Deserialize)]
//! # struct Deposit(i64);
//! # impl Message for Deposit { type Reply = i64; remote_message!("bank.Deposit"); }
//! # impl Handler<Deposit> for Account {
//! #     async fn handle(&mut self, Deposit(c): Deposit, _: &mut Context<Self>) -> i64 { c }
//! # }
//! # entity!(Account: Deposit);
//! # async fn run(system: ActorSystem, accounts: Entities<Account>) -> Result<(), Box<dyn std::error::Error>> {
//! let tills = ["till-1", "till-2", "till-3"].map(|id| accounts.entity_ref(id).recipient::<Deposit>());
//! let tills = Router::group(tills.into_iter().collect::<Result<Vec<_>, _>>()?)
//!     .spawn(&system)
//!     .await?;
//! tills.tell(Deposit(100)).await?;
//!
//! let breaker = CircuitBreaker::builder("alice").max_failures(5).build()?;
//! let alice = breaker.guard_recipient(accounts.entity_ref("alice").recipient::<Deposit>()?);
//! let balance = alice.ask(Deposit(5)).await?;
//! # let _ = balance;
//! # Ok(())
//! # }
//! ```
//!
//! ## Singletons
//!
//! [`Sharding::register_singleton`]: one entity of a type with one shard placed on the
//! oldest member with the role, started as soon as that member's region has it, reached
//! through an [`EntityRef`] that buffers while it moves.

mod allocation;
mod direct;
mod entity;
mod error;
mod parcel;
mod recipient;
mod region;
mod remember;
mod sharding;
mod stats;
mod wire;

pub use allocation::Allocation;
pub use entity::{Entity, EntityMessages, EntityType};
pub use error::ShardingError;
pub use recipient::FORWARDER_MAX_ASKS;
pub use sharding::{Entities, EntityRef, Sharding};
pub use stats::{RegionCounts, RegionSnapshot};

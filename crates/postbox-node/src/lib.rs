//! # postbox-node
//!
//! A postbox cluster node, as a library and as the `postbox-node` binary.
//!
//! The library starts everything a node needs, in order — an
//! [`ActorSystem`](postbox::ActorSystem), the authenticated transport
//! ([`postbox_remote::Remote`]), cluster membership ([`postbox_cluster::Cluster`]), your
//! [`Service`]s, the admin actors that the command-line client talks to, and the metrics
//! endpoint ([`postbox_metrics`], on by default on 127.0.0.1:9464) — and stops it gracefully:
//! not ready, leave the cluster (others see `left`, not `down`), drain the transport, stop the
//! actors, all within `node.shutdown_timeout`.
//!
//! ```no_run
//! use postbox::prelude::*;
//! use postbox_node::{Node, NodeConfig, Service};
//! use postbox_remote::{remote_actor, remote_message};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default)]
//! struct Inventory { items: u64 }
//! impl Actor for Inventory {}
//!
//! #[derive(Serialize, Deserialize)]
//! struct Restock { count: u64 }
//! impl Message for Restock {
//!     type Reply = u64;
//!     remote_message!("shop.Restock");
//! }
//! impl Handler<Restock> for Inventory {
//!     async fn handle(&mut self, r: Restock, _: &mut Context<Self>) -> u64 {
//!         self.items += r.count;
//!         self.items
//!     }
//! }
//! remote_actor!(Inventory: Restock);
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Defaults, then postbox.toml / POSTBOX_* variables, as the binary reads them.
//!     let config = NodeConfig::load(None, std::env::vars_os(), Vec::new())?;
//!     let node = Node::builder()
//!         .config(config)
//!         .service(Service::new("inventory", Props::new(Inventory::default)).json::<Restock>())
//!         .start()
//!         .await?;
//!     // `postbox-node send inventory '{"count": 3}'` now works from any node.
//!     node.run_until_signal().await; // SIGTERM / Ctrl-C: leave, drain, stop
//!     Ok(())
//! }
//! ```
//!
//! ## The binary
//!
//! ```text
//! postbox-node start                  # a single node on loopback, metrics on 127.0.0.1:9464
//! postbox-node config                 # the effective config, as TOML (secret redacted)
//! postbox-node members                # the cluster as the node sees it
//! postbox-node actors --top 20        # its deepest mailboxes
//! postbox-node services               # services and the members offering them
//! postbox-node send echo '{"message": "hi"}'
//! postbox-node send counter '{"key": "a", "add": 1}'
//! postbox-node send echo --body-file body.json   # or `--body-file -` for stdin
//! ```
//!
//! Client commands end within `--timeout` (default 10s), which covers connecting, the
//! handshake, the request and the reply ([`client`]); a `send` body is at most
//! [`client::MAX_BODY`] (4 MiB) of JSON, checked before anything is sent. Out-of-range
//! settings are refused before anything starts, naming the setting (exit 2).
//!
//! Settings come from defaults, a TOML file (`--config`, `POSTBOX_CONFIG`), `POSTBOX_*`
//! variables and flags, each overriding the one before ([`config`] lists them all). The
//! client commands read the same settings to find the node (`remote.listen`, or `--node`)
//! and to authenticate (cluster name, secret, TLS).
//!
//! The built-in services ([`services`]) are `echo` and `counter` (one actor per key).
//!
//! ## Persistence
//!
//! The node opens the store named by `[persistence]` at start and hands it out as
//! [`Node::persistence`], for `postbox_persistence` actors: by default the SQLite file
//! `postbox-data/postbox.db` under the working directory, which every node started from the
//! same folder shares (an entity re-homed to another node finds its events); `store =
//! "postgres"` with `url` for nodes on several machines; `memory` or `none`. A store that
//! cannot be opened stops the start with [`NodeError::Persistence`]. Its counters are on
//! `/metrics` (`postbox_persist_*`).
//!
//! ## Admin actors
//!
//! Each node runs `postbox.admin` ([`admin`]), reachable only through the authenticated
//! transport, which answers status queries and starts one short-lived invoker per `send`. A
//! `send` goes to the node named on the command line, which finds an instance of the service through the receptionist — its own if it
//! hosts one, else the least loaded up member's — so a service on one node is reachable
//! from every node.

pub mod admin;
pub mod client;
pub mod config;
mod metrics;
mod node;
mod service;
pub mod services;

pub use client::{Client, ClientError};
pub use config::{ConfigError, NodeConfig};
pub use metrics::{ClusterMembers, PersistenceCounters, ShardingGauges};
pub use node::{Node, NodeBuilder, NodeError, NodeShutdown};
pub use service::Service;

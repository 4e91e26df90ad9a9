//! # postbox-testkit
//!
//! What tests of postbox actors need, as Akka's `ActorTestKit` gives it to Akka users:
//!
//! - [`TestProbe`]: an actor that records what it receives, with expectations under a
//!   deadline (`expect_msg`, `expect_no_msg`, `receive_n`, `fish_for`, …), that can watch
//!   other actors (`expect_terminated`) and answer asks by hand or automatically
//!   ([`probe`] module docs).
//! - Bounded waits: [`within`] a deadline, [`until`] a condition holds ([`wait`] module
//!   docs).
//! - Paused time: run a test on a clock that jumps from timer to timer
//!   ([`time`] module docs).
//! - With the `remote` feature (on by default): [`RemoteNode`], an actor system with a
//!   transport on loopback, and [`WireClient`], a connection to a node spoken by hand for
//!   hostile-input tests ([`wire`] module docs).
//! - With the `cluster` feature (on by default): [`TestCluster`], N nodes with membership
//!   in one process, which can be crashed, made to leave and restarted, and whose links can
//!   be cut and healed — [`TestCluster::partition`], [`TestCluster::cut`],
//!   [`TestCluster::heal_all`]: once the call returns no gossip datagram and no transport
//!   frame passes between the two sides, so the downing strategy decides as in a real
//!   partition ([`cluster`] module docs).
//!
//! Add it as a **dev-dependency** only: it panics by design (a failed expectation fails the
//! test) and has no place in a program. `default-features = false` keeps the network stack
//! out of a crate that tests only local actors.
//!
//! ## Testing an actor
//!
//! A greeter answers to whoever the message names. The test hands it a probe as that
//! recipient, and checks what arrives, that nothing more arrives, and that the greeter stops
//! when told:
//!
//! ```
//! use postbox::prelude::*;
//! use postbox_testkit::{within, TestProbe, PATIENCE};
//!
//! /// Greets whoever `Greet` names, on the recipient it gives.
//! struct Greeter;
//! impl Actor for Greeter {}
//!
//! struct Greet { name: String, reply_to: Recipient<Greeting> }
//! impl Message for Greet { type Reply = (); }
//!
//! #[derive(Debug, PartialEq)]
//! struct Greeting(String);
//! impl Message for Greeting { type Reply = (); }
//!
//! impl Handler<Greet> for Greeter {
//!     async fn handle(&mut self, greet: Greet, _: &mut Context<Self>) {
//!         let _ = greet.reply_to.tell(Greeting(format!("hello, {}", greet.name))).await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In a test: #[tokio::test] async fn greets_by_name() { ... }
//! let system = ActorSystem::new();
//! let greeter = system.spawn(|| Greeter).unwrap();
//! let mut probe = TestProbe::<Greeting>::new(&system);
//!
//! greeter.tell(Greet { name: "Ada".into(), reply_to: probe.recipient() }).await.unwrap();
//! probe.expect_msg_eq(Greeting("hello, Ada".into())).await; // at most 10 s
//! probe.expect_no_msg().await;                               // nothing else for 100 ms
//!
//! probe.watch(&greeter).await;
//! greeter.stop();
//! probe.expect_terminated(&greeter).await;
//! within(PATIENCE, system.shutdown()).await;                 // fails instead of hanging
//! # }
//! ```
//!
//! A failed expectation panics with what was expected, what came instead, and where, e.g.
//! `testprobe-1 (probe of app::Greeting): expected Greeting("hello, Ada"), got
//! Greeting("hello, ada") (expect_msg_eq at tests/it/greeter.rs:31:11)`.
//!
//! ## Standing in for an actor that is asked
//!
//! ```
//! # use postbox::prelude::*;
//! # use postbox_testkit::TestProbe;
//! struct Price(&'static str);
//! impl Message for Price { type Reply = u64; }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let system = ActorSystem::new();
//! let mut prices = TestProbe::<Price>::new(&system);
//! let catalog = prices.recipient();       // what the code under test would be given
//!
//! // By hand: the test sees the ask and answers it.
//! let asking = tokio::spawn(async move { catalog.ask(Price("tea")).await });
//! let (Price(item), reply) = prices.expect_ask().await;
//! assert_eq!(item, "tea");
//! reply.send(350).unwrap();
//! assert_eq!(asking.await.unwrap(), Ok(350));
//!
//! // Or automatically, for every ask from now on.
//! prices.reply_with(|Price(item)| item.len() as u64);
//! assert_eq!(prices.recipient().ask(Price("coffee")).await, Ok(6));
//! # }
//! ```

// The crate docs link the `remote` and `cluster` items, which a build without them lacks.
#![cfg_attr(
    not(all(feature = "remote", feature = "cluster")),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod probe;
pub mod time;
pub mod wait;

#[cfg(feature = "remote")]
pub mod node;
#[cfg(feature = "remote")]
pub mod wire;

#[cfg(feature = "cluster")]
pub mod cluster;

pub use probe::{Expect, NoMessage, ProbeActor, TestProbe, Watched};
pub use wait::{until, until_async, within, Outcome, PATIENCE};

#[cfg(feature = "remote")]
pub use node::{remote_config, RemoteNode, TEST_CLUSTER, TEST_SECRET};
#[cfg(feature = "remote")]
pub use wire::{ClientError, CloseReason, FakeNode, WireClient};

#[cfg(feature = "cluster")]
pub use cluster::{ClusterNode, TestCluster};

//! # postbox
//!
//! An actor runtime for Rust. Actors own their state and talk only by messages posted to
//! mailboxes; a mailbox is a real, bounded queue whose depth anyone can read in O(1), so load
//! is visible and producers feel backpressure instead of memory growing without bound.
//! Failures are contained: a panic fails one actor, and its supervisor restarts it by the
//! rules you chose (Erlang/OTP semantics). Nothing is lost silently: every undeliverable
//! message is counted as a dead letter with its reason.
//!
//! ```
//! use postbox::prelude::*;
//!
//! #[derive(Default)]
//! struct Counter { total: u64 }
//! impl Actor for Counter {}
//!
//! struct Add(u64);
//! impl Message for Add { type Reply = u64; }
//!
//! impl Handler<Add> for Counter {
//!     async fn handle(&mut self, msg: Add, _ctx: &mut Context<Self>) -> u64 {
//!         self.total += msg.0;
//!         self.total
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let system = ActorSystem::new();
//! let counter = system.spawn(Props::new(Counter::default).name("counter"))?;
//! counter.tell(Add(40)).await?;                 // waits only if the mailbox is full
//! assert_eq!(counter.ask(Add(2)).await?, 42);   // request–response, with a timeout
//! assert_eq!(counter.depth(), 0);               // O(1) mailbox depth
//! system.shutdown().await;                      // drains mailboxes, stops children first
//! # Ok(())
//! # }
//! ```
//!
//! The pieces: [`Actor`] and [`Handler`] define behaviour; [`ActorRef`] and [`Recipient`] send;
//! [`Context`] spawns children, watches other actors and stops or fails the actor;
//! [`Props`] and [`SupervisorStrategy`] say how actors are created and restarted;
//! [`ActorSystem`] holds the root guardian, the [`Registry`], the [`DeadLetters`] and the
//! actor table. A [`CircuitBreaker`] fails calls to a dependency fast while it is down;
//! [`Router`]s spread work over replicas; [`Dispatcher`] (threads of their own for a group
//! of actors) and [`Bulkhead`] (a concurrency limit for a group of calls) compartmentalize.
//! Every handled message gets a `tracing` span, and [`trace`] follows one request across
//! actors and nodes (W3C trace context). Module docs of each piece state its semantics.

mod actor;
mod actor_ref;
mod ask;
mod backoff;
#[cfg(feature = "bench-api")]
#[doc(hidden)]
pub mod bench_api;
mod breaker;
mod bulkhead;
mod cell;
mod context;
mod dead_letters;
mod deadline;
mod dispatcher;
mod error;
mod in_flight;
mod letter;
mod lifecycle;
mod mailbox;
mod observe;
mod props;
mod registry;
#[doc(hidden)]
pub mod remote;
mod router;
mod runner;
mod slot;
mod supervision;
mod sync;
mod system;
pub mod trace;

#[cfg(test)]
mod testkit;

pub use actor::{Actor, ActorId, Handler, Message};
pub use actor_ref::{ActorRef, Recipient, WatchTarget, Watchable};
pub use ask::{Ask, AskFuture, AskWith, RecipientAsk, ReplyTo};
pub use backoff::{BackoffSupervisor, WhileDown};
pub use breaker::{
    BreakerConfigError, BreakerError, BreakerEvent, BreakerState, BreakerStats, CallOutcome,
    CircuitBreaker, CircuitBreakerBuilder, GuardedAskError, GuardedRecipient, GuardedRef,
    GuardedSendError, GuardedTrySendError,
};
pub use bulkhead::{Bulkhead, BulkheadFull, BulkheadStats};
pub use cell::{ActorStats, ActorStatus};
pub use context::Context;
pub use dead_letters::{
    DeadLetter, DeadLetterReason, DeadLetterRecvError, DeadLetterStream, DeadLetters, LOG_BURST,
};
pub use dispatcher::Dispatcher;
pub use error::{AskError, BoxError, RegistryError, SendError, SpawnError, TrySendError};
pub use in_flight::{InFlight, InFlightGuard};
pub use lifecycle::{ExitReason, Failure, Terminated};
pub use mailbox::MailboxCapacity;
pub use observe::{Observer, ObserverAlreadySet};
pub use props::Props;
pub use registry::Registry;
pub use remote::RemoteFailure;
pub use router::{GroupBuilder, PoolBuilder, Resizer, Router, RouterAsk, Routing};
pub use supervision::{Backoff, Restart, SupervisorStrategy};
pub use system::{
    ActorInfo, ActorSystem, ActorSystemBuilder, ActorView, ShutdownReport, SystemConfig,
    SystemCounters,
};

/// The types most actor code needs.
pub mod prelude {
    pub use crate::{
        Actor, ActorId, ActorRef, ActorSystem, AskError, BoxError, Context, ExitReason, Handler,
        MailboxCapacity, Message, Props, Recipient, ReplyTo, Restart, SendError, SpawnError,
        SupervisorStrategy, Terminated, TrySendError,
    };
}

/// The README's example, compiled and run as a doctest so it cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;

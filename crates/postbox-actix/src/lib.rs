//! # postbox-actix
//!
//! Brings actix actors into postbox's location-transparent world, so that a codebase built on
//! actix can join a postbox cluster one actor at a time instead of being rewritten.
//!
//! * **actix → postbox refs.** An [`ActixHost<A>`] is a postbox actor that stands for the
//!   actix actor behind an `actix::Addr<A>`. It handles every message `A` handles that is also
//!   a postbox [`Message`](postbox::Message) with the same reply type ([`bridge_message!`]),
//!   so its `ActorRef<ActixHost<A>>` is a `Recipient<M>` for each of them: postbox actors,
//!   routers and circuit breakers `tell` and `ask` it; it can be registered by name, watched,
//!   and shown in the actor table and metrics with the actix side's messages in flight
//!   counted in its depth.
//! * **Other nodes.** With [`remote_actix!`] the host is a `RemoteActor`: expose it on a
//!   `postbox_remote::Remote` or register it with the cluster receptionist, and other nodes
//!   reach the actix actor — their envelopes are decoded, delivered into the actix mailbox,
//!   and the replies travel back.
//! * **postbox refs from actix.** [`SendFromActix`] gives actix handlers owned futures of
//!   postbox asks and tells (local or remote refs) that fit actix's `ResponseFuture` and
//!   `ResponseActFuture`.
//! * **Two runtimes.** [`ActixRuntime`] runs an actix System on a thread of its own next to
//!   postbox's Tokio runtime; the [`runtime`] module docs say how the two coexist and why
//!   neither can deadlock the other.
//!
//! ```
//! use postbox::prelude::*;
//! use postbox_actix::{bridge_message, ActixHost, ActixRuntime};
//!
//! // An existing actix actor, unchanged.
//! #[derive(Default)]
//! struct Greeter { greeted: u64 }
//! impl actix::Actor for Greeter { type Context = actix::Context<Self>; }
//!
//! struct Greet(String);
//! impl actix::Message for Greet { type Result = String; }
//! impl actix::Handler<Greet> for Greeter {
//!     type Result = String;
//!     fn handle(&mut self, Greet(name): Greet, _: &mut actix::Context<Self>) -> String {
//!         self.greeted += 1;
//!         format!("hello {name} (#{})", self.greeted)
//!     }
//! }
//!
//! // What it takes to reach it from postbox.
//! bridge_message!(Greet);
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let actix = ActixRuntime::new("actix")?;
//! let system = ActorSystem::new();
//! let greeter = system.spawn(ActixHost::props(actix.start(|_| Greeter::default())))?;
//! assert_eq!(greeter.ask(Greet("postbox".into())).await?, "hello postbox (#1)");
//! # system.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! To let other nodes in (the full program is `examples/actix_bridge.rs`):
//!
//! ```no_run
//! # use postbox::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! use postbox_actix::{bridge_message, remote_actix, ActixHost, ActixRuntime};
//! use postbox_remote::{Remote, RemoteConfig};
//! # #[derive(Default)]
//! # struct Greeter;
//! # impl actix::Actor for Greeter { type Context = actix::Context<Self>; }
//! # #[derive(Serialize, Deserialize)]
//! # struct Greet(String);
//! # impl actix::Message for Greet { type Result = String; }
//! # impl actix::Handler<Greet> for Greeter {
//! #     type Result = String;
//! #     fn handle(&mut self, Greet(name): Greet, _: &mut actix::Context<Self>) -> String { name }
//! # }
//!
//! bridge_message!(Greet, "demo.Greet"); // a wire tag: Greet (and its String) may cross nodes
//! remote_actix!(Greeter: Greet);        // the host answers Greet from other nodes
//!
//! # async fn run(actix: ActixRuntime, system: ActorSystem) -> Result<(), Box<dyn std::error::Error>> {
//! let remote = Remote::start(&system, RemoteConfig::new("127.0.0.1:4001".parse()?, "demo", b"secret")).await?;
//! remote.expose::<ActixHost<Greeter>>();
//! let greeter = system.spawn(ActixHost::props(actix.start(|_| Greeter::default())))?;
//! system.registry().register("greeter", &greeter)?;
//!
//! // On another node:
//! # let other = remote.clone();
//! let greeter: ActorRef<ActixHost<Greeter>> = other.lookup("127.0.0.1:4001", "greeter").await?;
//! let hello = greeter.ask(Greet("from afar".into())).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # From actix to postbox: a migration guide
//!
//! | actix | postbox | what changes |
//! | --- | --- | --- |
//! | `Actor`, `Context<Self>`, `started` / `stopping` / `stopped` | [`Actor`](postbox::Actor), [`Context`](postbox::Context), the same hooks (`async`), plus `restarting` | `stopping` cannot veto a stop; the mailbox is already closed when it runs |
//! | `Message` (`type Result`), `Handler<M>` (`type Result`, `MessageResult`, `ResponseFuture`, `ResponseActFuture`) | [`Message`](postbox::Message) (`type Reply`), [`Handler<M>`](postbox::Handler) with an `async fn handle(&mut self, ..)` | a handler may `.await` with `&mut self`; for long waits reply from elsewhere (`ask_with`, [`Handler::handle_reply`](postbox::Handler::handle_reply)) so the mailbox keeps moving |
//! | `Addr<A>`: `send` (→ `Request`), `do_send`, `try_send` | [`ActorRef<A>`](postbox::ActorRef): `ask` (with a timeout), `tell`, `try_tell` | mailboxes are bounded (1024 by default): `tell` waits for room instead of `do_send`'s unbounded push; refused messages are handed back *and* counted as dead letters; an `ActorRef` may point to another node |
//! | `Recipient<M>` | [`Recipient<M>`](postbox::Recipient) | the same idea; also the routee type of routers |
//! | `Supervisor`, `Supervised::restarting` | a parent's [`SupervisorStrategy`](postbox::SupervisorStrategy) and each child's [`Restart`](postbox::Restart) in its [`Props`](postbox::Props) | restarts build a fresh instance from the props' factory; one-for-one, all-for-one, rest-for-one, restart intensity and backoff; a panic fails one actor only |
//! | `Arbiter` (a thread with an event loop), `SyncArbiter` | [`Dispatcher`](postbox::Dispatcher) (a runtime of its own for a group of actors), `Props::blocking` (a thread of its own) | actors are `Send` tasks on a multi-thread runtime unless you choose otherwise |
//! | `System` | [`ActorSystem`](postbox::ActorSystem) on a Tokio runtime | graceful `shutdown` drains mailboxes, children first |
//! | `Registry` / `SystemService` | [`Registry`](postbox::Registry) (names), the cluster receptionist (`ServiceKey`) | names are explicit; services are found across the cluster |
//! | `MailboxError::Closed` / `Timeout` | [`AskError`](postbox::AskError)`::Stopped` / `Timeout`, plus `Panicked`, `NodeDown`, `Remote` | every undeliverable message is a counted [`DeadLetter`](postbox::DeadLetter) |
//! | (none) | death watch (`Context::watch` → `Terminated`), routers, circuit breakers, bulkheads, remote refs, metrics | |
//!
//! A migration can go actor by actor: host the actix actors you keep ([`ActixHost`]), write
//! new actors for postbox, and let both sides call each other ([`SendFromActix`]) until the
//! last actix actor is gone.

pub mod host;
mod remote;
pub mod runtime;
pub mod send;

pub use host::{ActixHost, ActixHostBuilder, DEFAULT_LIVENESS_INTERVAL, DEFAULT_MAX_IN_FLIGHT};
pub use remote::ActixRemote;
pub use runtime::ActixRuntime;
pub use send::{OwnedAsk, OwnedTell, SendFromActix};

/// Makes an actix message a postbox [`Message`](postbox::Message) too, whose reply is its
/// actix `Result`: `bridge_message!(Greet)` for local use, `bridge_message!(Greet,
/// "demo.Greet")` to let it cross nodes under that stable tag (the message and its result
/// must then implement serde's `Serialize` and `Deserialize`).
#[macro_export]
macro_rules! bridge_message {
    ($message:ty) => {
        impl $crate::__private::postbox::Message for $message {
            type Reply = <$message as $crate::__private::actix::Message>::Result;
        }
    };
    ($message:ty, $tag:expr) => {
        impl $crate::__private::postbox::Message for $message {
            type Reply = <$message as $crate::__private::actix::Message>::Result;
            $crate::__private::remote_message!($tag);
        }
    };
}

/// Lets other nodes send the listed message types to the [`ActixHost`] of an actix actor
/// type (after `Remote::expose::<ActixHost<Actor>>()`, which the cluster receptionist also
/// does when it registers a host). Each message type needs `bridge_message!(M, "tag")`.
#[macro_export]
macro_rules! remote_actix {
    ($actor:ty : $($message:ty),+ $(,)?) => {
        impl $crate::ActixRemote for $actor {
            fn register(
                handlers: &mut $crate::__private::Handlers<$crate::ActixHost<Self>>,
            ) {
                $( handlers.handle::<$message>(); )+
            }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use actix;
    pub use postbox;
    pub use postbox_remote::{remote_message, Handlers};
}

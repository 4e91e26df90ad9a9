//! # postbox-remote
//!
//! Location-transparent actors across processes: an [`ActorRef<A>`](postbox::ActorRef) to an
//! actor on another node has the same type and the same `tell` / `try_tell` / `ask` API as a
//! local one, over TCP.
//!
//! ```no_run
//! use postbox::prelude::*;
//! use postbox_remote::{remote_actor, remote_message, Remote, RemoteConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default)]
//! struct Counter { total: u64 }
//! impl Actor for Counter {}
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add(u64);
//! impl Message for Add {
//!     type Reply = u64;
//!     remote_message!("demo.Add");          // a stable tag: this message may cross nodes
//! }
//! impl Handler<Add> for Counter {
//!     async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
//!         self.total += n;
//!         self.total
//!     }
//! }
//! remote_actor!(Counter: Add);              // Counter answers Add from other nodes
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Node A hosts the counter under a registered name.
//! let a = ActorSystem::new();
//! let remote_a = Remote::start(&a, RemoteConfig::new("127.0.0.1:4001".parse()?, "demo", b"secret")).await?;
//! remote_a.expose::<Counter>();
//! let counter = a.spawn(Props::new(Counter::default))?;
//! a.registry().register("counter", &counter)?;
//!
//! // Node B looks it up and talks to it like a local actor.
//! let b = ActorSystem::new();
//! let remote_b = Remote::start(&b, RemoteConfig::new("127.0.0.1:4002".parse()?, "demo", b"secret")).await?;
//! let counter: ActorRef<Counter> = remote_b.lookup("127.0.0.1:4001", "counter").await?;
//! counter.tell(Add(40)).await?;
//! assert_eq!(counter.ask(Add(2)).await?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! ## Semantics
//!
//! - **Ordering**: messages from one sender to one remote actor arrive in send order: the
//!   proxy's mailbox is FIFO, one task forwards it to the peer's outbound queue, one connection
//!   carries it, and the receiving node enqueues each message before reading the next frame.
//! - **Backpressure**: the outbound queue per peer is bounded; when it is full the proxy waits,
//!   its mailbox fills, and `tell` waits (or `try_tell` returns `Full`) — as for a local actor.
//!   On the receiving side a full mailbox stops the connection's reader.
//! - **Nothing lost silently**: when the peer is unreachable (connection lost, handshake
//!   refused), the remote refs to it end: queued messages become dead letters with reason
//!   `Unreachable`, asks in flight fail at once with `AskError::NodeDown`, and watchers of
//!   those refs get `Terminated` with `ExitReason::NodeDown`. A later `lookup` reconnects
//!   (with exponential backoff) and gets a fresh ref — a ref to a node that restarted never
//!   reaches the new incarnation's actors.
//! - **Bad input**: an unknown target, an unknown message tag or an undecodable payload is
//!   answered with an error reply (asks resolve with `AskError::Remote(..)`) and counted as a
//!   `RemoteRejected` dead letter on the receiving node; malformed frames, oversized frames,
//!   a wrong protocol version, a wrong cluster name or a failed authentication close that one
//!   connection with a specific, logged and counted reason. The node keeps serving the others.
//! - **Refs inside messages**: an `ActorRef<A>` field in a message or a reply (serde derive
//!   as for any field) travels as its actor's address — node, incarnation, id — and resolves
//!   on arrival: to the local actor itself when it lives on the receiving node, else to a
//!   remote ref (connecting to that node if needed). A ref to an actor that is gone resolves to
//!   one that has already terminated: sends to it are counted dead letters, watching it
//!   delivers `Terminated` at once. An address whose actor is not an `A` fails the decode
//!   (`Undecodable`). A node that sends refs to its actors must `expose` their types, so that
//!   messages sent through those refs are accepted.
//! - **No implicit sender**: as in Akka Typed, whoever should get an answer is an `ActorRef`
//!   field of the message (or the ask's reply), so the wire envelope's `sender` stays empty;
//!   asks are correlated by id and watches by the proxy's id.
//! - **One trace across nodes**: a message sent while a trace context is current (inside a
//!   handler whose `handle` span a subscriber enabled, or inside
//!   [`TraceContext::scope`](postbox::trace::TraceContext::scope)) carries it in the wire
//!   envelope's `trace` field as a W3C `traceparent` (`00-<trace id>-<sender's span id>-<flags>`).
//!   The receiving node delivers the message inside that context, so the remote handler's span
//!   has the same `trace_id`, the sender's span as its `parent_span_id`, and the sending node
//!   (`postbox://host:port`) as its `sender` (see [`postbox::trace`]). A malformed
//!   `traceparent` is ignored — the message is delivered, its handler starts a new trace —
//!   counted in [`RemoteStats::invalid_trace_contexts`] and logged at `debug`. Untraced
//!   messages carry nothing: the field is absent from the frame.
//! - **One connection per pair of nodes**, used in both directions. When two nodes dial each
//!   other at the same moment, the dial of the node with the smaller node id wins on both
//!   sides; the other is refused with `SimultaneousConnect` and its dialer uses the winner.
//! - **Shutdown drains**: [`Remote::shutdown`] stops accepting, lets every remote ref forward
//!   what is queued in it (later sends are refused and counted), writes out each outbound queue
//!   followed by a `Goodbye`, all within [`RemoteConfig::drain_timeout`], then closes. Peers
//!   see the node leave at once instead of waiting for a heartbeat timeout.
//! - **Authentication**: every connection starts with a mutual HMAC-SHA256 challenge–response
//!   over the shared cluster secret (see `postbox-wire`), bound to both nonces, the cluster
//!   name and each node's address and incarnation.
//! - **TLS** (optional, [`RemoteConfig::tls`] with [`TlsConfig::from_files`]): mutual TLS on
//!   every connection, both directions verified against the cluster's CA; the HMAC handshake
//!   runs inside the session. A peer without a certificate from that CA, or without TLS, is
//!   refused (`ConnectError::Tls` on the dialing side) and counted as an authentication
//!   failure.

mod admission;
mod config;
mod connection;
#[cfg(feature = "fault-injection")]
pub mod cuts;
mod error;
mod handlers;
mod handshake;
mod outbox;
mod peer;
mod refs;
mod remote;
mod stats;
mod tls;

pub use admission::{Admission, QUARANTINE_MAX};
pub use config::RemoteConfig;
pub use connection::REQUEST_BACKLOG;
#[cfg(feature = "fault-injection")]
pub use cuts::{LinkCuts, LinkPeer};
pub use error::{ConnectError, RemoteError};
pub use handlers::{Arrival, Handlers, Intercepted, RemoteActor};
pub use postbox_wire::{ActorAddr, NodeAddr, RefuseReason};
pub use remote::Remote;
pub use stats::{Refusal, RemoteStats};
pub use tls::{TlsConfig, TlsConfigError};

/// Implements [`Message::remote`](postbox::Message::remote) inside an `impl Message` block:
/// the message (and its reply) travel as MessagePack, under the given stable tag. Both types
/// must implement serde's `Serialize` and `Deserialize`.
#[macro_export]
macro_rules! remote_message {
    ($tag:expr) => {
        fn remote() -> ::core::option::Option<$crate::__private::RemoteCodec<Self>> {
            ::core::option::Option::Some($crate::__private::codec::<Self>($tag))
        }
    };
}

/// Lets other nodes send the listed message types to actors of this type (after
/// [`Remote::expose`]). Each message type must use [`remote_message!`].
#[macro_export]
macro_rules! remote_actor {
    ($actor:ty : $($message:ty),+ $(,)?) => {
        impl $crate::RemoteActor for $actor {
            fn register(handlers: &mut $crate::Handlers<Self>) {
                $( handlers.handle::<$message>(); )+
            }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use postbox::remote::RemoteCodec;
    use postbox::{BoxError, Message};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    /// The MessagePack codec of `M` and its reply.
    pub fn codec<M>(tag: &'static str) -> RemoteCodec<M>
    where
        M: Message + Serialize + DeserializeOwned,
        M::Reply: Serialize + DeserializeOwned,
    {
        RemoteCodec {
            tag,
            encode: |msg, out| postbox_wire::to_payload(msg, out).map_err(BoxError::from),
            decode: |bytes| postbox_wire::from_payload(bytes).map_err(BoxError::from),
            encode_reply: |reply, out| postbox_wire::to_payload(reply, out).map_err(BoxError::from),
            decode_reply: |bytes| postbox_wire::from_payload(bytes).map_err(BoxError::from),
        }
    }
}

//! `ActorRef`s inside remote messages: an `ActorRef<A>` serializes to the [`ActorAddress`] of
//! its actor and resolves back to a working ref on arrival (feature `serde`).
//!
//! Serializing needs to know this node's address, and resolving needs the transport (to build a
//! proxy for an actor on another node), so both only work while a transport has installed its
//! [`RefCodec`] on the current thread ([`with_ref_codec`]) — which `postbox-remote` does around
//! every encode and decode of a message or reply. Outside of that, (de)serializing an `ActorRef`
//! fails with an error saying so, instead of producing an address that cannot be resolved.
//!
//! Resolution on arrival: the address of an actor on this node (same node id and incarnation)
//! becomes the local ref itself; the address of an actor on another node becomes a proxy, as
//! if looked up (it ends, with `NodeDown`, when that node is lost or turns out to be another
//! incarnation); the address of an actor that is gone, or of a previous incarnation of this
//! node, becomes a ref that has already terminated (sends to it are dead letters, watchers
//! get `Terminated` at once) — as in Akka, a ref to a dead actor is still a ref. Only an
//! address whose actor is of another type than the message declares fails the decode: the
//! message is refused with `Undecodable` and counted, like any payload that does not decode.

use super::{ProxyHandle, RemoteLink};
use crate::actor::{Actor, ActorId};
use crate::actor_ref::ActorRef;
use crate::lifecycle::ExitReason;
use crate::mailbox::MailboxCapacity;
use crate::system::ActorSystem;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// Where an actor lives, as an `ActorRef` travels inside a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ActorAddress {
    /// The node's listening address, `host:port`.
    pub node: String,
    /// The node's id.
    pub node_id: u64,
    /// The node's incarnation: a ref never reaches a later incarnation's actors.
    pub incarnation: u64,
    /// The actor's id on that node.
    pub id: u64,
}

impl fmt::Display for ActorAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postbox://{}/#{}", self.node, self.id)
    }
}

/// What an address resolves to on this node.
pub enum Resolved {
    /// An actor of this node.
    Local(super::LocalActor),
    /// An actor on another node: reach it through a proxy forwarding to `link`. The transport
    /// is told of the proxy through `adopt`.
    Remote {
        /// Forwards the proxy's messages.
        link: Arc<dyn RemoteLink>,
        /// The proxy's name (its path).
        name: String,
        /// The proxy's mailbox.
        mailbox: MailboxCapacity,
        /// Receives the proxy once spawned.
        adopt: Box<dyn FnOnce(ProxyHandle) + Send>,
    },
    /// The actor is gone (stopped, or its node is down or restarted): the ref resolves to one
    /// that has already terminated with this reason — sends to it are dead letters, watching it
    /// delivers `Terminated` at once.
    Dead(ExitReason),
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolved::Local(actor) => f.debug_tuple("Local").field(actor).finish(),
            Resolved::Remote { name, .. } => f.debug_struct("Remote").field("name", name).finish(),
            Resolved::Dead(reason) => f.debug_tuple("Dead").field(reason).finish(),
        }
    }
}

/// The transport's side of refs in messages.
pub trait RefCodec: Send + Sync {
    /// The system refs resolve in.
    fn system(&self) -> &ActorSystem;
    /// The address of the actor with this local id: for a proxy, the remote actor's address;
    /// otherwise this node's.
    fn address_of(&self, id: ActorId) -> ActorAddress;
    /// What `address` reaches from here.
    fn resolve(&self, address: &ActorAddress) -> Resolved;
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn RefCodec>>> = const { RefCell::new(None) };
}

/// Runs `f` (an encode or decode) with `codec` serving the `ActorRef`s inside it.
pub fn with_ref_codec<R>(codec: &Arc<dyn RefCodec>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn RefCodec>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|current| current.borrow_mut().replace(codec.clone()));
    let _restore = Restore(previous);
    f()
}

fn current() -> Option<Arc<dyn RefCodec>> {
    CURRENT.with(|current| current.borrow().clone())
}

const NO_CODEC: &str =
    "an ActorRef travels only inside a message sent through postbox-remote (no transport here)";

/// The address `actor` serializes to.
#[cfg_attr(not(feature = "serde"), allow(dead_code))]
pub(crate) fn address_of<A: Actor>(actor: &ActorRef<A>) -> Result<ActorAddress, &'static str> {
    let codec = current().ok_or(NO_CODEC)?;
    Ok(codec.address_of(actor.id()))
}

/// The ref `address` resolves to, if it reaches an `A`.
#[cfg_attr(not(feature = "serde"), allow(dead_code))]
pub(crate) fn resolve<A: Actor>(address: &ActorAddress) -> Result<ActorRef<A>, String> {
    let codec = current().ok_or(NO_CODEC)?;
    match codec.resolve(address) {
        Resolved::Local(actor) => actor.downcast::<A>().ok_or_else(|| {
            format!(
                "{address} is a {}, not a {}",
                actor.actor_type(),
                std::any::type_name::<A>()
            )
        }),
        Resolved::Remote {
            link,
            name,
            mailbox,
            adopt,
        } => {
            let (actor, handle) = super::spawn_proxy::<A>(codec.system(), name, mailbox, link);
            adopt(handle);
            Ok(actor)
        }
        Resolved::Dead(reason) => {
            let (actor, handle) = super::spawn_proxy::<A>(
                codec.system(),
                address.to_string(),
                MailboxCapacity::bounded(1),
                Arc::new(DeadLink),
            );
            handle.terminate(reason);
            Ok(actor)
        }
    }
}

/// The link of a ref that resolved to an actor that is gone: nothing goes through.
struct DeadLink;

impl RemoteLink for DeadLink {
    fn send<'a>(&'a self, _: &'a mut super::OutboundBatch) -> super::LinkSend<'a> {
        Box::pin(async { Err(super::LinkError::Unreachable) })
    }
    fn try_send(&self, _: &mut super::OutboundBatch) -> Result<(), super::LinkError> {
        Err(super::LinkError::Unreachable)
    }
    fn watch(&self) {}
    fn closed(&self) {}
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl<A: Actor> Serialize for ActorRef<A> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            address_of(self)
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer)
        }
    }

    impl<'de, A: Actor> Deserialize<'de> for ActorRef<A> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let address = ActorAddress::deserialize(deserializer)?;
            resolve(&address).map_err(serde::de::Error::custom)
        }
    }
}

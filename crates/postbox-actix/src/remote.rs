//! Reaching hosted actix actors from other nodes.
//!
//! `postbox-remote` delivers a message to an actor type it was told about with
//! `Remote::expose::<A>()`, where `A: RemoteActor` lists the message types other nodes may
//! send. `ActixHost<A>` is a type of this crate, so an application cannot implement
//! `RemoteActor` for it (Rust's orphan rule); it implements [`ActixRemote`] for its own actix
//! actor instead, with [`remote_actix!`](crate::remote_actix), and this crate turns that into
//! `RemoteActor for ActixHost<A>`. From there on the host is exposed, looked up, registered
//! in the receptionist and watched like any remote actor: the far node decodes the envelope,
//! puts the message in the host's mailbox, the host forwards it into the actix mailbox, and
//! the actix reply goes back as the ask's `Reply` frame.

use crate::ActixHost;
use postbox_remote::{Handlers, RemoteActor};

/// An actix actor whose host answers messages from other nodes. Implement it with
/// [`remote_actix!`](crate::remote_actix).
pub trait ActixRemote: actix::Actor {
    /// Lists the message types the host of this actor accepts from other nodes; each needs
    /// `Handler<M> for ActixHost<Self>` (actix handles it, and it is a postbox message whose
    /// reply is actix's result) and a remote codec (`bridge_message!(M, "tag")`).
    fn register(handlers: &mut Handlers<ActixHost<Self>>);
}

impl<A: ActixRemote> RemoteActor for ActixHost<A> {
    fn register(handlers: &mut Handlers<Self>) {
        A::register(handlers);
    }
}

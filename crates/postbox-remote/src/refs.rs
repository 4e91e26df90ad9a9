//! `ActorRef`s inside messages: what a ref serializes to on this node, and what an arriving
//! address resolves to (see `postbox::remote::RefCodec`).

use crate::peer::ActorLink;
use crate::remote::{connect, TransportState};
use postbox::remote::{ActorAddress, LocalActor, RefCodec, Resolved};
use postbox::{ActorId, ActorSystem, ExitReason, MailboxCapacity};
use std::sync::Weak;

/// The transport's [`RefCodec`]. Holds its node weakly: a ref codec kept by a proxy must not
/// keep a stopped transport alive.
pub(crate) struct RefContext {
    pub(crate) shared: Weak<TransportState>,
    /// The system, for resolving while the transport is being torn down.
    pub(crate) system: ActorSystem,
}

impl RefCodec for RefContext {
    fn system(&self) -> &ActorSystem {
        &self.system
    }

    fn address_of(&self, id: ActorId) -> ActorAddress {
        let Some(shared) = self.shared.upgrade() else {
            return ActorAddress {
                node: String::new(),
                node_id: 0,
                incarnation: 0,
                id: id.get(),
            };
        };
        if let Some(target) = shared.proxy_targets.get(&id.get()) {
            return target.clone();
        }
        ActorAddress {
            node: shared.me.addr.clone(),
            node_id: shared.me.node_id,
            incarnation: shared.me.incarnation,
            id: id.get(),
        }
    }

    fn resolve(&self, address: &ActorAddress) -> Resolved {
        let Some(shared) = self.shared.upgrade() else {
            return Resolved::Dead(ExitReason::NodeDown);
        };
        let me = &shared.me;
        if address.node_id == me.node_id {
            if address.incarnation != me.incarnation {
                // A previous life of this node: its actors are gone.
                return Resolved::Dead(ExitReason::NodeDown);
            }
            return match LocalActor::by_id(&shared.system, ActorId::from_raw(address.id)) {
                Some(actor) => Resolved::Local(actor),
                None => Resolved::Dead(ExitReason::AlreadyTerminated),
            };
        }
        let peer = shared.peer(&address.node);
        if let Some(conn) = peer.connection() {
            if conn.peer_node.node_id != address.node_id
                || conn.peer_node.incarnation != address.incarnation
            {
                // Another node, or a later life of it, now answers at that address.
                return Resolved::Dead(ExitReason::NodeDown);
            }
        }
        let link = ActorLink::new(&shared, peer.clone(), address.id, address.incarnation);
        let address = address.clone();
        let adopt_link = link.clone();
        Resolved::Remote {
            name: address.to_string(),
            mailbox: MailboxCapacity::bounded(shared.config.proxy_mailbox),
            link,
            adopt: Box::new(move |handle| {
                let node = postbox_wire::NodeAddr {
                    addr: address.node.clone(),
                    node_id: address.node_id,
                    incarnation: address.incarnation,
                };
                adopt_link.adopt(&shared, &node, handle.clone());
                if peer.connection().is_some() {
                    return;
                }
                // A node we have not talked to yet: connect in the background; the proxy's
                // sends wait for it. If it cannot be reached, or a later incarnation answers,
                // the ref ends as for a lost node.
                let connecting = peer.connecting();
                tokio::spawn(async move {
                    let connected = connect(&shared, &peer, Some(&node)).await;
                    drop(connecting);
                    match connected {
                        Ok(conn)
                            if conn.peer_node.node_id == node.node_id
                                && conn.peer_node.incarnation == node.incarnation => {}
                        _ => handle.terminate(ExitReason::NodeDown),
                    }
                });
            }),
        }
    }
}

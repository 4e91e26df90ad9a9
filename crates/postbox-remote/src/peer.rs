//! Peers (one per remote address: its current connection and the proxies through it) and
//! `ActorLink`, the `RemoteLink` of one remote ref.

use crate::connection::Connection;
use crate::outbox::NoRoom;
use crate::remote::TransportState;
use dashmap::DashMap;
use postbox::remote::{
    ActorAddress, LinkError, LinkSend, Outbound, OutboundBatch, ProxyHandle, RefCodec, RemoteLink,
};
use postbox::ExitReason;
use postbox_wire::{Frame, MessageHead, NodeAddr, TargetRef};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Everything known about one peer node (keyed by its address).
pub(crate) struct Peer {
    pub(crate) addr: String,
    conn: Mutex<Option<Arc<Connection>>>,
    /// Serializes connection attempts to this peer.
    pub(crate) dialing: Arc<tokio::sync::Mutex<()>>,
    /// Remote refs through this peer, by proxy id.
    proxies: DashMap<u64, ProxyHandle>,
    /// Woken whenever a connection to this peer is established or a background attempt ends.
    connected: tokio::sync::Notify,
    /// Background connection attempts under way (see [`Peer::connecting`]).
    attempts: std::sync::atomic::AtomicUsize,
}

/// A background connection attempt to a peer, counted while it lives; its end wakes the
/// sends waiting for it.
pub(crate) struct Connecting(Arc<Peer>);

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0.attempts.fetch_sub(1, Relaxed);
        self.0.connected.notify_waiters();
    }
}

impl Peer {
    pub(crate) fn new(addr: String) -> Self {
        Self {
            addr,
            conn: Mutex::new(None),
            dialing: Arc::new(tokio::sync::Mutex::new(())),
            proxies: DashMap::new(),
            connected: tokio::sync::Notify::new(),
            attempts: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Marks a background connection attempt until the returned guard drops: sends through
    /// this peer wait for it instead of failing.
    pub(crate) fn connecting(self: &Arc<Self>) -> Connecting {
        self.attempts.fetch_add(1, Relaxed);
        Connecting(self.clone())
    }

    /// Whether a connection to this peer is being established right now.
    fn is_connecting(&self) -> bool {
        self.attempts.load(Relaxed) > 0 || self.dialing.try_lock().is_err()
    }

    /// Waits up to `limit` for a connection to this peer (one the peer is dialing to us).
    pub(crate) async fn wait_connection(
        &self,
        limit: std::time::Duration,
    ) -> Option<Arc<Connection>> {
        let wait = async {
            loop {
                let notified = self.connected.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(conn) = self.connection() {
                    return conn;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.ok()
    }

    /// The remote refs through this peer.
    pub(crate) fn proxies(&self) -> Vec<ProxyHandle> {
        self.proxies.iter().map(|p| p.value().clone()).collect()
    }

    pub(crate) fn connection(&self) -> Option<Arc<Connection>> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// The connection registered for this peer, even if it is closing.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn current_connection(&self) -> Option<Arc<Connection>> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_connection(&self, conn: &Arc<Connection>) {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        self.connected.notify_waiters();
    }

    /// The peer reports that the actor watched by proxy `watcher` terminated.
    pub(crate) fn remote_terminated(&self, watcher: u64, reason: &str) {
        if let Some(proxy) = self.proxies.get(&watcher) {
            proxy.terminate(ExitReason::Remote(Arc::from(reason)));
        }
    }

    /// The connection `conn` was lost: if it was this peer's, every remote ref through it ends.
    pub(crate) fn lost(&self, conn: &Arc<Connection>) {
        let mut current = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *current = None;
            drop(current);
            for proxy in self.proxies() {
                proxy.terminate(ExitReason::NodeDown);
            }
        }
    }

    pub(crate) fn add_proxy(&self, handle: ProxyHandle) {
        self.proxies.insert(handle.id().get(), handle);
    }

    pub(crate) fn proxy_count(&self) -> usize {
        self.proxies.len()
    }
}

/// The link of one remote ref: its peer, the actor's id there and the peer's incarnation it
/// belongs to (a connection to a later incarnation does not carry it).
pub(crate) struct ActorLink {
    pub(crate) peer: Arc<Peer>,
    pub(crate) target: u64,
    incarnation: u64,
    proxy_id: OnceLock<u64>,
    next_correlation: Arc<AtomicU64>,
    refs: Arc<dyn RefCodec>,
    shared: std::sync::Weak<TransportState>,
    /// How often a send waiting for a connection checks that it is still being established.
    connect_wait: std::time::Duration,
    /// The largest frame this node sends.
    max_frame: usize,
}

impl ActorLink {
    pub(crate) fn new(
        shared: &Arc<TransportState>,
        peer: Arc<Peer>,
        target: u64,
        incarnation: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            peer,
            target,
            incarnation,
            proxy_id: OnceLock::new(),
            next_correlation: shared.correlation(),
            refs: shared.refs.clone(),
            shared: Arc::downgrade(shared),
            connect_wait: shared.config.handshake_timeout,
            max_frame: shared.config.max_frame,
        })
    }

    /// Registers the proxy `handle` forwarding through this link, to the actor at `node`.
    pub(crate) fn adopt(&self, shared: &TransportState, node: &NodeAddr, handle: ProxyHandle) {
        let id = handle.id().get();
        let _ = self.proxy_id.set(id);
        shared.proxy_targets.insert(
            id,
            ActorAddress {
                node: node.addr.clone(),
                node_id: node.node_id,
                incarnation: node.incarnation,
                id: self.target,
            },
        );
        self.peer.add_proxy(handle);
    }

    /// The connection that carries this link's messages, if it is up.
    fn connection(&self) -> Option<Arc<Connection>> {
        self.peer
            .connection()
            .filter(|conn| conn.peer_node.incarnation == self.incarnation)
    }

    /// Encodes messages from the front of `batch` into `conn`'s outbox, under one lock, while
    /// there is room; an ask is filed in the pending map before the writer can see it.
    fn push(&self, conn: &Connection, batch: &mut OutboundBatch) -> Result<(), LinkError> {
        let mut outbox = conn.outbox.lock();
        while let Some((message, payload)) = batch.front() {
            if payload.len() > self.max_frame {
                return Err(LinkError::TooLarge);
            }
            let cost = conn.outbox.cost(size(message));
            let correlation = message
                .reply
                .as_ref()
                .map(|_| self.next_correlation.fetch_add(1, Relaxed));
            let trace = message.trace.map(|context| context.to_string());
            let head = MessageHead {
                target: TargetRef::Id(self.target),
                tag: message.tag,
                correlation,
                sender: None,
                trace: trace.as_deref(),
            };
            let encoded = outbox.push(cost, false, |buf| {
                postbox_wire::encode_message(&head, payload, buf, self.max_frame)
            });
            match encoded {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    if let Some(shared) = self.shared.upgrade() {
                        shared.stats.too_large.fetch_add(1, Relaxed);
                    }
                    return Err(LinkError::TooLarge);
                }
                Err(NoRoom::Full) => return Err(LinkError::Full),
                Err(NoRoom::Closed) => return Err(LinkError::Unreachable),
            }
            if let Some((message, _)) = batch.pop_front() {
                if let (Some(correlation), Some(reply)) = (correlation, message.reply) {
                    // The writer cannot take the frame before the outbox is unlocked.
                    conn.pending.insert(correlation, reply);
                }
            }
        }
        Ok(())
    }

    /// The connection to send on, waiting while one is being established (its attempts are
    /// bounded).
    async fn wait_connection(&self) -> Option<Arc<Connection>> {
        loop {
            let woken = self.peer.connected.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(conn) = self.connection() {
                return Some(conn);
            }
            if !self.peer.is_connecting() {
                return None;
            }
            let _ = tokio::time::timeout(self.connect_wait, woken).await;
        }
    }
}

/// About how many bytes `message` takes as a frame.
fn size(message: &Outbound) -> usize {
    message.len + message.tag.len()
}

impl RemoteLink for ActorLink {
    fn try_send(&self, batch: &mut OutboundBatch) -> Result<(), LinkError> {
        if batch
            .front()
            .is_some_and(|(_, payload)| payload.len() > self.max_frame)
        {
            return Err(LinkError::TooLarge);
        }
        let Some(conn) = self.connection() else {
            // Still connecting: `send` waits for it.
            return Err(if self.peer.is_connecting() {
                LinkError::Full
            } else {
                LinkError::Unreachable
            });
        };
        self.push(&conn, batch)
    }

    fn send<'a>(&'a self, batch: &'a mut OutboundBatch) -> LinkSend<'a> {
        Box::pin(async move {
            loop {
                let Some((message, payload)) = batch.front() else {
                    return Ok(());
                };
                if payload.len() > self.max_frame {
                    return Err(LinkError::TooLarge);
                }
                let cost = size(message);
                let conn = self.wait_connection().await.ok_or(LinkError::Unreachable)?;
                match self.push(&conn, batch) {
                    Err(LinkError::Full) => {}
                    other => return other,
                }
                // Wait for room for the first message left, then go on.
                if !conn.outbox.room(conn.outbox.cost(cost)).await {
                    return Err(LinkError::Unreachable);
                }
            }
        })
    }

    fn watch(&self) {
        self.send_control(|watcher, target| Frame::Watch { watcher, target });
    }

    fn unwatch(&self) {
        self.send_control(|watcher, target| Frame::Unwatch { watcher, target });
    }

    fn closed(&self) {
        if let Some(&id) = self.proxy_id.get() {
            self.peer.proxies.remove(&id);
            if let Some(shared) = self.shared.upgrade() {
                shared.proxy_targets.remove(&id);
            }
        }
    }

    fn ref_codec(&self) -> Option<Arc<dyn RefCodec>> {
        Some(self.refs.clone())
    }
}

impl ActorLink {
    /// Queues a watch-related frame for this link's actor, waiting for room on a task of its
    /// own (the proxy's watch signal handling must not wait).
    fn send_control(&self, frame: impl FnOnce(u64, u64) -> Frame) {
        let (Some(conn), Some(&watcher)) = (self.connection(), self.proxy_id.get()) else {
            return;
        };
        let frame = frame(watcher, self.target);
        tokio::spawn(async move {
            let _ = conn.send(frame).await;
        });
    }
}

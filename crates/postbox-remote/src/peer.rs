//! Peers and their connections: the reader and the batching writer of each connection, the
//! pending asks and lookups it carries, and the proxies (remote refs) that go through it.

use crate::remote::Shared;
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use postbox::remote::{
    with_ref_codec, ActorAddress, InboundTrace, LinkError, LinkSend, LocalActor, Outbound,
    PendingReply, ProxyHandle, RefCodec, RemoteFailure, RemoteLink,
};
use postbox::trace::TraceContext;
use postbox::{AskError, ExitReason};
use postbox_wire::{Envelope, ErrorKind, Frame, FrameCodec, NodeAddr, RemoteError, Target};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

/// The reading half of a connection's stream (plain TCP or TLS).
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection's stream (plain TCP or TLS).
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Most frames the writer takes from its queue for one write.
const WRITE_BATCH: usize = 512;

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

    fn set_connection(&self, conn: &Arc<Connection>) {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        self.connected.notify_waiters();
    }

    /// The connection `conn` was lost: if it was this peer's, every remote ref through it ends.
    fn lost(&self, conn: &Arc<Connection>) {
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

/// One established, authenticated connection.
pub(crate) struct Connection {
    pub(crate) peer_node: NodeAddr,
    /// The peer as the `sender` of the spans of the messages it sends: `postbox://host:port`.
    origin: Arc<str>,
    out: mpsc::Sender<Frame>,
    pending: DashMap<u64, PendingReply>,
    lookups: DashMap<u64, oneshot::Sender<Option<u64>>>,
    closed: AtomicBool,
    /// Cancelled when the writer has stopped (after writing a `Goodbye`, or on failure).
    writer_done: CancellationToken,
    /// Cancelled to close the connection from this side.
    stop: CancellationToken,
}

impl Connection {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    pub(crate) fn pending_asks(&self) -> usize {
        self.pending.len()
    }

    /// Sends `frame`, waiting for room in the outbound queue.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), Frame> {
        self.out.send(frame).await.map_err(|e| e.0)
    }

    /// Queues a `Goodbye` behind everything already queued and waits until the writer has
    /// written it (or failed).
    pub(crate) async fn say_goodbye(&self) {
        if self.send(Frame::Goodbye).await.is_ok() {
            self.writer_done.cancelled().await;
        }
    }

    /// Closes the connection from this side: in-flight asks fail with `NodeDown` and the
    /// remote refs through it end.
    pub(crate) fn abort(&self) {
        self.stop.cancel();
    }

    /// Asks the peer for the id registered as `name`.
    pub(crate) async fn lookup(&self, shared: &Shared, name: &str) -> Option<Option<u64>> {
        let correlation = shared.next_correlation();
        let (tx, rx) = oneshot::channel();
        self.lookups.insert(correlation, tx);
        let frame = Frame::Lookup {
            correlation,
            name: name.to_owned(),
        };
        if self.send(frame).await.is_err() {
            self.lookups.remove(&correlation);
            return None;
        }
        rx.await.ok()
    }

    /// Forgets asks whose askers stopped waiting (timed out): the pending map never holds
    /// entries nobody waits for longer than one sweep.
    pub(crate) fn sweep(&self) {
        self.pending.retain(|_, reply| !reply.is_closed());
    }

    /// Fails everything in flight: asks with `NodeDown`, lookups with "down".
    fn close(&self) {
        self.closed.store(true, Relaxed);
        let keys: Vec<u64> = self.pending.iter().map(|e| *e.key()).collect();
        for key in keys {
            if let Some((_, reply)) = self.pending.remove(&key) {
                reply.fail(AskError::NodeDown);
            }
        }
        self.lookups.clear();
    }
}

/// Starts the reader and writer of an authenticated connection and registers it with `peer`.
pub(crate) fn run_connection(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    peer_node: NodeAddr,
    read: ReadHalf,
    leftover: BytesMut,
    write: WriteHalf,
    guard: Option<Box<dyn std::any::Any + Send>>,
) -> Arc<Connection> {
    let (out, rx) = mpsc::channel(shared.config.outbound_capacity);
    let conn = Arc::new(Connection {
        origin: Arc::from(format!("postbox://{}", peer_node.addr)),
        peer_node,
        out,
        pending: DashMap::new(),
        lookups: DashMap::new(),
        closed: AtomicBool::new(false),
        writer_done: CancellationToken::new(),
        stop: CancellationToken::new(),
    });
    peer.set_connection(&conn);
    shared.stats.connections.fetch_add(1, Relaxed);
    let writer_done = conn.writer_done.clone();
    let writer_shared = shared.clone();
    let writer = tokio::spawn(async move {
        let _done = writer_done.drop_guard();
        write_loop(writer_shared, write, rx).await;
    });
    let reader_shared = shared.clone();
    let reader_peer = peer.clone();
    let reader_conn = conn.clone();
    tokio::spawn(async move {
        let why = tokio::select! {
            why = read_loop(&reader_shared, &reader_peer, &reader_conn, read, leftover) => why,
            () = reader_conn.stop.cancelled() => "closed by this node".to_owned(),
        };
        tracing::debug!(
            peer = %reader_peer.addr,
            incarnation = reader_conn.peer_node.incarnation,
            why,
            "connection closed"
        );
        writer.abort();
        reader_conn.close();
        reader_peer.lost(&reader_conn);
        reader_shared.stats.connections.fetch_sub(1, Relaxed);
        drop(guard);
    });
    conn
}

/// Takes frames in batches, encodes them into one buffer and writes it with one call;
/// heartbeats while idle. Ends after writing a `Goodbye`.
async fn write_loop(shared: Arc<Shared>, mut write: WriteHalf, mut rx: mpsc::Receiver<Frame>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut seq = 0;
    loop {
        let taken = match tokio::time::timeout(
            shared.config.heartbeat_interval,
            rx.recv_many(&mut batch, WRITE_BATCH),
        )
        .await
        {
            Ok(0) => return,
            Ok(n) => n,
            Err(_) => {
                seq += 1;
                batch.push(Frame::Heartbeat { seq });
                1
            }
        };
        let mut goodbye = false;
        for frame in batch.drain(..) {
            goodbye |= matches!(frame, Frame::Goodbye);
            if let Err(error) = postbox_wire::encode_frame(&frame, &mut buf) {
                // Our own frame is too big: its asker learns why; the connection goes on.
                tracing::warn!(%error, kind = frame.kind(), "frame not sent");
            }
        }
        shared.stats.frames_out.fetch_add(taken as u64, Relaxed);
        shared.stats.bytes_out.fetch_add(buf.len() as u64, Relaxed);
        if write.write_all(&buf).await.is_err() {
            return;
        }
        if goodbye {
            let _ = write.shutdown().await;
            return;
        }
        buf.clear();
    }
}

/// Reads and handles frames until the connection ends; returns why it ended.
async fn read_loop(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    conn: &Arc<Connection>,
    mut read: ReadHalf,
    mut buf: BytesMut,
) -> String {
    let mut codec = FrameCodec::new(shared.config.max_frame);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    shared.stats.frames_in.fetch_add(1, Relaxed);
                    if let Some(end) = on_frame(shared, peer, conn, frame).await {
                        return end;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shared.stats.protocol_errors.fetch_add(1, Relaxed);
                    tracing::warn!(peer = %peer.addr, %error, "bad frame; closing the connection");
                    return error.to_string();
                }
            }
        }
        buf.reserve(64 * 1024);
        match tokio::time::timeout(shared.config.heartbeat_timeout, read.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return "closed by the peer".into(),
            Ok(Ok(n)) => {
                shared.stats.bytes_in.fetch_add(n as u64, Relaxed);
            }
            Ok(Err(error)) => return error.to_string(),
            Err(_) => return "no heartbeat from the peer".into(),
        }
    }
}

async fn on_frame(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    conn: &Arc<Connection>,
    frame: Frame,
) -> Option<String> {
    match frame {
        Frame::Message(envelope) => deliver(shared, conn, envelope).await,
        Frame::Reply {
            correlation,
            payload,
        } => {
            if let Some((_, reply)) = conn.pending.remove(&correlation) {
                let _ = with_ref_codec(&shared.refs, || reply.complete(&payload));
            }
        }
        Frame::Error { correlation, error } => {
            if let Some((_, reply)) = conn.pending.remove(&correlation) {
                reply.fail(ask_error(&error));
            }
        }
        Frame::Heartbeat { seq } => {
            let _ = conn.out.try_send(Frame::HeartbeatAck { seq });
        }
        Frame::HeartbeatAck { .. } => {}
        Frame::Watch { watcher, target } => {
            let conn = conn.clone();
            let local = LocalActor::by_id(&shared.system, postbox::ActorId::from_raw(target));
            tokio::spawn(async move {
                let reason = match local {
                    Some(local) => local.terminated().await.to_string(),
                    None => "no such actor".to_owned(),
                };
                let _ = conn
                    .send(Frame::Terminated {
                        target,
                        watcher,
                        reason,
                    })
                    .await;
            });
        }
        Frame::Unwatch { .. } => {}
        Frame::Terminated {
            watcher, reason, ..
        } => {
            if let Some(proxy) = peer.proxies.get(&watcher) {
                proxy.terminate(ExitReason::Remote(Arc::from(reason.as_str())));
            }
        }
        Frame::Lookup { correlation, name } => {
            let id = LocalActor::by_name(&shared.system, &name).map(|a| a.id().get());
            let _ = conn.send(Frame::Found { correlation, id }).await;
        }
        Frame::Found { correlation, id } => {
            if let Some((_, tx)) = conn.lookups.remove(&correlation) {
                let _ = tx.send(id);
            }
        }
        Frame::Goodbye => return Some("the peer left".into()),
        other => {
            shared.stats.protocol_errors.fetch_add(1, Relaxed);
            return Some(format!(
                "unexpected {} frame after the handshake",
                other.kind()
            ));
        }
    }
    None
}

/// Puts a message from the peer into the target's mailbox (waiting for room, which keeps the
/// peer's order and pushes back on it); answers an ask when its reply comes.
async fn deliver(shared: &Arc<Shared>, conn: &Arc<Connection>, envelope: Envelope) {
    let Envelope {
        target,
        tag,
        correlation,
        payload,
        trace,
        ..
    } = envelope;
    let trace = trace.and_then(|traceparent| inbound_trace(shared, conn, &traceparent));
    let local = match &target {
        Target::Id(id) => LocalActor::by_id(&shared.system, postbox::ActorId::from_raw(*id)),
        Target::Name(name) => LocalActor::by_name(&shared.system, name),
    };
    let refuse = |failure: RemoteFailure| {
        if let Some(correlation) = correlation {
            let _ = conn.out.try_send(Frame::Error {
                correlation,
                error: RemoteError {
                    kind: error_kind(failure),
                    message: format!("{failure} (tag {tag:?})"),
                },
            });
        }
    };
    let Some(local) = local else {
        postbox::remote::reject_unknown_target(&shared.system, "remote message");
        refuse(RemoteFailure::UnknownTarget);
        return;
    };
    let deliver = || {
        with_ref_codec(&shared.refs, || {
            shared
                .types
                .deliver(&local, &tag, payload, correlation.is_some(), &shared.refs)
        })
    };
    // The message is put in the mailbox (now, or by `enqueue`) inside the sender's trace
    // context, so that its envelope carries it to the handler.
    let delivery = match &trace {
        Some(trace) => trace.in_scope(deliver),
        None => deliver(),
    };
    let enqueue = match delivery {
        Ok(Some(enqueue)) => enqueue,
        Ok(None) => return,
        Err(failure) => {
            local.rejected("remote message");
            refuse(failure);
            return;
        }
    };
    let reply = match &trace {
        Some(trace) => trace.scope(enqueue).await,
        None => enqueue.await,
    };
    if let (Some(reply), Some(correlation)) = (reply, correlation) {
        let conn = conn.clone();
        tokio::spawn(async move {
            let frame = match reply.await {
                Some(Ok(bytes)) => Frame::Reply {
                    correlation,
                    payload: Bytes::from(bytes),
                },
                Some(Err(failure)) => Frame::Error {
                    correlation,
                    error: RemoteError {
                        kind: error_kind(failure),
                        message: failure.to_string(),
                    },
                },
                None => return,
            };
            let _ = conn.send(frame).await;
        });
    }
}

/// The trace context of an inbound message, from its `traceparent`. A malformed one is
/// counted, logged at `debug` and ignored: the message is delivered all the same.
fn inbound_trace(shared: &Shared, conn: &Connection, traceparent: &str) -> Option<InboundTrace> {
    match TraceContext::parse(traceparent) {
        Ok(context) => Some(InboundTrace::new(context, conn.origin.clone())),
        Err(error) => {
            shared.stats.invalid_traces.fetch_add(1, Relaxed);
            tracing::debug!(
                peer = %conn.peer_node,
                %error,
                // Bounded: a traceparent is 55 bytes; show no more of a bad one than that.
                traceparent = %traceparent.chars().take(64).collect::<String>(),
                "ignoring a malformed traceparent"
            );
            None
        }
    }
}

fn error_kind(failure: RemoteFailure) -> ErrorKind {
    match failure {
        RemoteFailure::UnknownTarget => ErrorKind::UnknownTarget,
        RemoteFailure::UnknownTag => ErrorKind::UnknownTag,
        RemoteFailure::Undecodable => ErrorKind::Undecodable,
        _ => ErrorKind::Refused,
    }
}

fn ask_error(error: &RemoteError) -> AskError {
    AskError::Remote(match error.kind {
        ErrorKind::UnknownTarget => RemoteFailure::UnknownTarget,
        ErrorKind::UnknownTag => RemoteFailure::UnknownTag,
        ErrorKind::Undecodable => RemoteFailure::Undecodable,
        ErrorKind::Stopped => return AskError::Stopped,
        ErrorKind::Panicked => return AskError::Panicked,
        _ => RemoteFailure::Refused,
    })
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
    shared: std::sync::Weak<Shared>,
    /// How often a send waiting for a connection checks that it is still being established.
    connect_wait: std::time::Duration,
}

impl ActorLink {
    pub(crate) fn new(
        shared: &Arc<Shared>,
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
        })
    }

    /// Registers the proxy `handle` forwarding through this link, to the actor at `node`.
    pub(crate) fn adopt(&self, shared: &Shared, node: &NodeAddr, handle: ProxyHandle) {
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

    /// The frame for `message`, its ask filed in `conn`'s pending map.
    fn frame(&self, conn: &Connection, message: Outbound) -> (Frame, Option<u64>) {
        let Outbound {
            tag,
            payload,
            reply,
            trace,
        } = message;
        let correlation = reply.map(|reply| {
            let correlation = self.next_correlation.fetch_add(1, Relaxed);
            conn.pending.insert(correlation, reply);
            correlation
        });
        let frame = Frame::Message(Envelope {
            target: Target::Id(self.target),
            tag: std::borrow::Cow::Borrowed(tag),
            correlation,
            sender: None,
            trace: trace.map(|context| context.to_string()),
            payload: Bytes::from(payload),
        });
        (frame, correlation)
    }
}

impl RemoteLink for ActorLink {
    fn try_send(&self, message: Outbound) -> Result<(), (Outbound, LinkError)> {
        let Some(conn) = self.connection() else {
            // Still connecting: `send` waits for it.
            let error = if self.peer.is_connecting() {
                LinkError::Full
            } else {
                LinkError::Unreachable
            };
            return Err((message, error));
        };
        let result = match conn.out.try_reserve() {
            Ok(permit) => {
                permit.send(self.frame(&conn, message).0);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err((message, LinkError::Full)),
            Err(mpsc::error::TrySendError::Closed(())) => Err((message, LinkError::Unreachable)),
        };
        result
    }

    fn send(&self, message: Outbound) -> LinkSend<'_> {
        Box::pin(async move {
            // Wait while a connection is being established (its attempts are bounded).
            let conn = loop {
                let woken = self.peer.connected.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if let Some(conn) = self.connection() {
                    break conn;
                }
                if !self.peer.is_connecting() {
                    return Err((message, LinkError::Unreachable));
                }
                let _ = tokio::time::timeout(self.connect_wait, woken).await;
            };
            let tag = message.tag;
            let (frame, correlation) = self.frame(&conn, message);
            match conn.send(frame).await {
                Ok(()) => Ok(()),
                Err(_) => Err((
                    Outbound {
                        tag,
                        payload: Vec::new(),
                        reply: correlation
                            .and_then(|c| conn.pending.remove(&c))
                            .map(|(_, reply)| reply),
                        trace: None,
                    },
                    LinkError::Unreachable,
                )),
            }
        })
    }

    fn watch(&self) {
        let (Some(conn), Some(&watcher)) = (self.connection(), self.proxy_id.get()) else {
            return;
        };
        let _ = conn.out.try_send(Frame::Watch {
            watcher,
            target: self.target,
        });
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

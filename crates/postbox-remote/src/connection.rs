//! One authenticated connection: its reader, its batching writer, and the service task that
//! answers the peer's asks and reports the terminations it watches.
//!
//! Every resource the peer can grow is bounded here, and what happens at the bound is
//! backpressure on the peer, never memory:
//!
//! - **Outbound bytes.** Frames are encoded by their senders into the connection's
//!   [`Outbox`], a byte buffer the writer takes whole; queued and being written, at most
//!   [`outbound_capacity`](crate::RemoteConfig::outbound_capacity) frames and
//!   [`outbound_bytes`](crate::RemoteConfig::outbound_bytes) bytes (a frame larger than that
//!   takes the whole budget); a sender waits for room. A peer that stops reading altogether
//!   fills it; once the writer has made no progress for the heartbeat timeout, the
//!   connection is closed (`write_stalls`).
//! - **Asks in flight.** Each ask from the peer holds one of
//!   [`max_inbound_asks`](crate::RemoteConfig::max_inbound_asks) permits until its reply is
//!   queued. With none left, the connection stops taking the peer's *requests* (messages,
//!   watches, lookups) — in order, so per-sender ordering holds — and stops reading once the
//!   requests it has read fill [`REQUEST_BACKLOG`] bytes (a message counts its frame's whole
//!   body, which waits copied into the reader's backlog buffer), counted in `reads_paused`:
//!   TCP pushes back on the peer.
//!   Replies to this node's own asks, heartbeats and termination notices are still read and
//!   handled meanwhile, so two nodes asking each other never wait on each other's readers.
//!   A full mailbox holds back the peer's requests the same way.
//! - **Watches.** A `Watch` is an entry in the connection's table and in the watched actor's
//!   watcher list — no task — and ends with the connection or an `Unwatch`. At most
//!   [`max_watches`](crate::RemoteConfig::max_watches) per connection; a watch beyond is
//!   answered at once with `Terminated` naming the limit (so the watcher's remote ref ends
//!   loudly) and counted.
//!
//! Frames over the frame limit are never queued: the sender fails the ask they belong to
//! (`AskError::Remote(TooLarge)`) or counts the tell as a `TooLarge` dead letter, and
//! answers a reply that is too large with a `TooLarge` error, so that the asker on the other
//! node learns why.

use crate::handlers::{Delivery, ReplyFailure};
use crate::outbox::{Appender, NoRoom, Outbox, FRAME_OVERHEAD};
use crate::peer::Peer;
use crate::remote::TransportState;
use bytes::{Buf, Bytes, BytesMut};
use dashmap::DashMap;
use postbox::remote::{with_ref_codec, InboundTrace, LocalActor, PendingReply, RemoteFailure};
use postbox::trace::TraceContext;
use postbox::{ActorId, AskError, DeadLetter, DeadLetterReason, ExitReason};
use postbox_wire::{
    ErrorKind, Frame, FrameBody, FrameClass, FrameCodec, Incoming, MessageFrame, NodeAddr,
    RefuseReason, RemoteError, TargetRef, WireError,
};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::Encoder;
use tokio_util::sync::CancellationToken;

/// The reading half of a connection's stream (plain TCP or TLS).
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection's stream (plain TCP or TLS).
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// What each of the outbox's two buffers starts with (and goes back to after a very large
/// frame).
const WRITE_CHUNK: usize = 256 * 1024;
/// Bytes of the peer's requests read ahead while they wait (for an ask permit or mailbox
/// room) — a message's whole frame body, a rarer request's variable parts, each plus a fixed
/// overhead; the reader stops reading beyond this (one whole frame is always let in).
pub const REQUEST_BACKLOG: usize = 256 * 1024;
/// How long a connection closed with a reason (`Refused` after the handshake) waits for that
/// frame to be written before closing regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the service task does for the connection.
enum Work {
    /// The reply to an ask from the peer, which found no room in the outbox when its actor
    /// answered: queued once there is room, and then the ask's permit is let go.
    Reply {
        frame: Frame,
        permit: OwnedSemaphorePermit,
    },
    /// A watched actor terminated.
    Terminated {
        watcher: u64,
        target: u64,
        reason: String,
    },
}

/// One established, authenticated connection.
pub(crate) struct Connection {
    pub(crate) peer_node: NodeAddr,
    /// The protocol version this connection speaks: the highest both sides do.
    pub(crate) version: u16,
    /// The peer as the `sender` of the spans of the messages it sends: `postbox://host:port`.
    origin: Arc<str>,
    /// The outbound queue, shared with the writer.
    pub(crate) outbox: Outbox,
    /// The largest frame this node sends.
    max_frame: usize,
    /// For counting what cannot be sent (frames over the limit).
    shared: std::sync::Weak<TransportState>,
    pub(crate) pending: DashMap<u64, PendingReply>,
    lookups: DashMap<u64, oneshot::Sender<Option<u64>>>,
    /// Permits for the peer's asks in flight.
    asks: Arc<Semaphore>,
    max_asks: usize,
    /// The peer's watches: (watcher, target) → the watched actor and the watch's id.
    watches: Mutex<HashMap<(u64, u64), (LocalActor, ActorId)>>,
    service: mpsc::UnboundedSender<Work>,
    closed: AtomicBool,
    /// Cancelled when the writer has stopped (after writing a `Goodbye`, or on failure).
    writer_done: CancellationToken,
    /// Cancelled to close the connection from this side.
    stop: CancellationToken,
    /// Cancelled when this side closes the connection with a reason (`close_with`): from
    /// then on nothing more from the peer is read or delivered, while the writer still has
    /// its grace period to tell the peer why.
    refusing: CancellationToken,
    /// Cancelled when the reader has stopped: nothing more from the peer is delivered.
    #[cfg(feature = "fault-injection")]
    pub(crate) reader_done: CancellationToken,
    opened: Instant,
    /// Milliseconds after `opened` when something was last read from the peer.
    last_heard: AtomicU64,
}

impl Connection {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    pub(crate) fn pending_asks(&self) -> usize {
        self.pending.len()
    }

    /// The peer's asks in flight now.
    pub(crate) fn inbound_asks(&self) -> usize {
        self.max_asks.saturating_sub(self.asks.available_permits())
    }

    /// The peer's watches held now.
    pub(crate) fn watches(&self) -> usize {
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the peer has been heard from within `window` (it heartbeats every second
    /// while otherwise silent, so a live peer always has).
    pub(crate) fn heard_within(&self, window: Duration) -> bool {
        let now = elapsed_ms(self.opened);
        now.saturating_sub(self.last_heard.load(Relaxed)) <= window.as_millis() as u64
    }

    /// Appends the frame in `slot` (as the peer's version reads it) to the locked outbox if
    /// there is room, taking it out of `slot`; leaves it there if not.
    fn push_frame(
        &self,
        outbox: &mut Appender<'_>,
        slot: &mut Option<Frame>,
    ) -> Result<(), NoRoom> {
        let Some(frame) = slot.as_ref() else {
            return Ok(());
        };
        let cost = self.outbox.cost(frame_bytes(frame));
        outbox.check(cost)?;
        let Some(frame) = slot.take() else {
            return Ok(());
        };
        let last = matches!(frame, Frame::Goodbye | Frame::Refused { .. });
        let Some(frame) = for_version(frame, self.version) else {
            // Nothing to tell this peer, but the connection still ends there.
            if last {
                let _ = outbox.push(self.outbox.cost(0), true, |_| Ok::<(), ()>(()));
            }
            return Ok(());
        };
        let encoded = outbox.push(cost, last, |buf| {
            FrameCodec::new(self.max_frame).encode(&frame, buf)
        });
        match encoded {
            Ok(Ok(())) => Ok(()),
            Ok(Err(WireError::FrameTooLarge { len, max })) => {
                let mut instead = self.too_large(frame, len, max);
                let _ = self.push_frame(outbox, &mut instead);
                Ok(())
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, kind = %frame.kind(), "frame not sent");
                Ok(())
            }
            Err(no_room) => {
                *slot = Some(frame);
                Err(no_room)
            }
        }
    }

    /// Queues `frame` if there is room now.
    fn try_push(&self, frame: Frame) -> Result<(), NoRoom> {
        self.push_frame(&mut self.outbox.lock(), &mut Some(frame))
    }

    /// Sends `frame`, waiting for room in the outbound queue; hands it back once the
    /// connection is closed.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), Frame> {
        let cost = self.outbox.cost(frame_bytes(&frame));
        let mut slot = Some(frame);
        loop {
            let closed = !self.outbox.room(cost).await
                || self.push_frame(&mut self.outbox.lock(), &mut slot) == Err(NoRoom::Closed);
            match slot.take() {
                None => return Ok(()),
                Some(frame) if closed => return Err(frame),
                Some(frame) => slot = Some(frame),
            }
        }
    }

    /// Sends `frame` if there is room now; drops it otherwise (heartbeat answers).
    fn try_send(&self, frame: Frame) {
        let _ = self.try_push(frame);
    }

    /// A frame over the limit: whoever waits for it learns why, and nothing is lost
    /// uncounted. Returns the frame to send instead, if any (a reply's `TooLarge` error).
    fn too_large(&self, frame: Frame, len: usize, max: usize) -> Option<Frame> {
        let why = format!(
            "{} frame of {len} bytes is over the frame limit of {max}",
            frame.kind()
        );
        tracing::warn!(peer = %self.peer_node, "{why}; not sent");
        let shared = self.shared.upgrade()?;
        shared.stats.too_large.fetch_add(1, Relaxed);
        match frame {
            Frame::Message(envelope) => {
                let message_type = match envelope.tag {
                    std::borrow::Cow::Borrowed(tag) => tag,
                    std::borrow::Cow::Owned(_) => "remote message",
                };
                // Counted before the asker learns of it.
                shared.system.dead_letters().record(DeadLetter::new(
                    ActorId::from_raw(0),
                    "",
                    message_type,
                    DeadLetterReason::TooLarge,
                ));
                if let Some((_, reply)) = envelope
                    .correlation
                    .and_then(|correlation| self.pending.remove(&correlation))
                {
                    reply.fail(AskError::Remote(RemoteFailure::TooLarge));
                }
            }
            Frame::Reply { correlation, .. } => {
                return Some(Frame::Error {
                    correlation,
                    error: RemoteError {
                        kind: ErrorKind::TooLarge,
                        message: why,
                    },
                });
            }
            _ => {}
        }
        None
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

    /// Tells the peer why (a `Refused` frame after the handshake), then closes: at once if
    /// the frame cannot be queued, else once it is written or after a short grace period.
    /// Nothing more from the peer is delivered from this call on (a quarantined incarnation
    /// gets no message in edgeways during the grace period).
    pub(crate) fn close_with(self: &Arc<Self>, reason: RefuseReason, message: String) {
        self.refusing.cancel();
        let frame = Frame::Refused { reason, message };
        if self.try_push(frame).is_err() {
            self.abort();
            return;
        }
        let conn = self.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_GRACE, conn.writer_done.cancelled()).await;
            conn.abort();
        });
    }

    /// Asks the peer for the id registered as `name`: `Ok(None)` if nothing is, `Err` if the
    /// connection closed or no answer came within `limit`.
    pub(crate) async fn lookup(
        &self,
        shared: &TransportState,
        name: &str,
        limit: Duration,
    ) -> Result<Option<u64>, LookupFailed> {
        let correlation = shared.next_correlation();
        let (tx, rx) = oneshot::channel();
        self.lookups.insert(correlation, tx);
        let frame = Frame::Lookup {
            correlation,
            name: name.to_owned(),
        };
        let asked = async {
            if self.send(frame).await.is_err() {
                return Err(LookupFailed::Closed);
            }
            rx.await.map_err(|_| LookupFailed::Closed)
        };
        let outcome = match tokio::time::timeout(limit, asked).await {
            Ok(outcome) => outcome,
            Err(_) => {
                shared.stats.lookup_timeouts.fetch_add(1, Relaxed);
                Err(LookupFailed::Timeout)
            }
        };
        self.lookups.remove(&correlation);
        outcome
    }

    /// Forgets asks whose askers stopped waiting (timed out): the pending map never holds
    /// entries nobody waits for longer than one sweep.
    pub(crate) fn sweep(&self) {
        self.pending.retain(|_, reply| !reply.is_closed());
    }

    /// Fails everything in flight (asks with `NodeDown`, lookups with "closed") and drops
    /// the peer's watches.
    fn close(&self) {
        self.closed.store(true, Relaxed);
        self.outbox.close();
        let keys: Vec<u64> = self.pending.iter().map(|e| *e.key()).collect();
        for key in keys {
            if let Some((_, reply)) = self.pending.remove(&key) {
                reply.fail(AskError::NodeDown);
            }
        }
        self.lookups.clear();
        let watches =
            std::mem::take(&mut *self.watches.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, (actor, id)) in watches {
            actor.unwatch(id);
        }
    }
}

/// Why a lookup got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupFailed {
    Closed,
    Timeout,
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// About how many bytes `frame` takes encoded (its variable parts).
fn frame_bytes(frame: &Frame) -> usize {
    match frame {
        Frame::Message(envelope) => {
            envelope.payload.len()
                + envelope.tag.len()
                + envelope.trace.as_ref().map_or(0, String::len)
        }
        Frame::Reply { payload, .. } => payload.len(),
        Frame::Error { error, .. } => error.message.len(),
        Frame::Terminated { reason, .. } => reason.len(),
        Frame::Lookup { name, .. } => name.len(),
        Frame::Refused { message, .. } => message.len(),
        _ => 0,
    }
}

/// Starts the reader, writer and service task of an authenticated connection and registers
/// it with `peer`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_connection(
    shared: &Arc<TransportState>,
    peer: &Arc<Peer>,
    peer_node: NodeAddr,
    version: u16,
    read: ReadHalf,
    leftover: BytesMut,
    write: WriteHalf,
    guard: Option<Box<dyn std::any::Any + Send>>,
) -> Arc<Connection> {
    let config = &shared.config;
    let (service, work) = mpsc::unbounded_channel();
    let max_asks = config.max_inbound_asks.max(1);
    let conn = Arc::new(Connection {
        origin: Arc::from(format!("postbox://{}", peer_node.addr)),
        peer_node,
        version,
        outbox: Outbox::new(config.outbound_capacity, config.outbound_bytes, WRITE_CHUNK),
        max_frame: config.max_frame,
        shared: Arc::downgrade(shared),
        pending: DashMap::new(),
        lookups: DashMap::new(),
        asks: Arc::new(Semaphore::new(max_asks)),
        max_asks,
        watches: Mutex::new(HashMap::new()),
        service,
        closed: AtomicBool::new(false),
        writer_done: CancellationToken::new(),
        stop: CancellationToken::new(),
        refusing: CancellationToken::new(),
        #[cfg(feature = "fault-injection")]
        reader_done: CancellationToken::new(),
        opened: Instant::now(),
        last_heard: AtomicU64::new(0),
    });
    peer.set_connection(&conn);
    // Registered first, checked second: a quarantine that began after the handshake checked
    // the incarnation but before this registration is seen here; one after it finds this
    // connection and closes it (`Remote::quarantine` adds first, looks second). Without this,
    // a downed incarnation that reconnected in that window would be served as a live peer.
    if shared.quarantine.contains(&conn.peer_node) {
        conn.close_with(
            RefuseReason::Quarantined,
            format!(
                "{} was declared down by the cluster; restart as a new incarnation",
                conn.peer_node
            ),
        );
    }
    // Likewise for cuts: a cut that registered before this check is seen here; one after
    // finds this connection and closes it (see `cuts.rs`).
    #[cfg(feature = "fault-injection")]
    if shared.cuts.is_addr_cut(&conn.peer_node.addr) {
        conn.abort();
    }
    shared.stats.connections.fetch_add(1, Relaxed);
    let writer = tokio::spawn({
        let shared = shared.clone();
        let conn = conn.clone();
        async move {
            let _done = conn.writer_done.clone().drop_guard();
            let _closed = CloseOutbox(&conn);
            write_loop(&shared, &conn, write).await;
        }
    });
    let service = tokio::spawn(serve(conn.clone(), work));
    let reader_shared = shared.clone();
    let reader_peer = peer.clone();
    let reader_conn = conn.clone();
    tokio::spawn(async move {
        #[cfg(feature = "fault-injection")]
        let _reader_done = reader_conn.reader_done.clone().drop_guard();
        let why = tokio::select! {
            // A closed connection delivers nothing more, even with frames buffered; nor does
            // one this node is closing with a reason (it ends once the reason is written).
            biased;
            () = reader_conn.stop.cancelled() => "closed by this node".to_owned(),
            () = reader_conn.refusing.cancelled() => {
                reader_conn.stop.cancelled().await;
                "closed by this node, with a reason".to_owned()
            }
            why = read_loop(&reader_shared, &reader_peer, &reader_conn, read, leftover) => why,
        };
        tracing::debug!(
            peer = %reader_peer.addr,
            incarnation = reader_conn.peer_node.incarnation,
            why,
            "connection closed"
        );
        writer.abort();
        // Replies still being computed go nowhere now: dropping them makes each a counted
        // dead letter when its actor answers.
        service.abort();
        reader_conn.close();
        reader_peer.lost(&reader_conn);
        reader_shared.stats.connections.fetch_sub(1, Relaxed);
        drop(guard);
    });
    conn
}

/// The service task: sends the replies to the peer's asks that found the outbound queue full
/// when their actors answered (a reply is otherwise queued by the answering task itself, see
/// [`AskReply`]), and the terminations of the actors the peer watches. Waiting for room here
/// holds on to the asks' permits, which is what stops the reader when the peer does not read.
async fn serve(conn: Arc<Connection>, mut work: mpsc::UnboundedReceiver<Work>) {
    while let Some(next) = work.recv().await {
        match next {
            Work::Reply { frame, permit } => {
                let sent = conn.send(frame).await;
                drop(permit);
                if sent.is_err() {
                    return;
                }
            }
            Work::Terminated {
                watcher,
                target,
                reason,
            } => {
                let held = conn
                    .watches
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(watcher, target))
                    .is_some();
                if held
                    && conn
                        .send(Frame::Terminated {
                            target,
                            watcher,
                            reason,
                        })
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Closes the outbox when the writer stops, however it stops (aborted included): waiting
/// senders learn that nothing more will be written.
struct CloseOutbox<'a>(&'a Connection);

impl Drop for CloseOutbox<'_> {
    fn drop(&mut self) {
        self.0.outbox.close();
    }
}

/// Takes what the senders encoded into the outbox, whole, and writes it; heartbeats while
/// idle. Ends after writing a `Goodbye` or a `Refused`, when the peer stops reading for the
/// heartbeat timeout, or on a write error.
async fn write_loop(shared: &Arc<TransportState>, conn: &Arc<Connection>, mut write: WriteHalf) {
    let config = &shared.config;
    let mut buf = BytesMut::with_capacity(WRITE_CHUNK);
    let mut seq = 0;
    loop {
        let taken = match conn.outbox.take(&mut buf) {
            Some(taken) => Some(taken),
            None => {
                if tokio::time::timeout(config.heartbeat_interval, conn.outbox.ready())
                    .await
                    .is_ok()
                {
                    continue;
                }
                seq += 1;
                let _ = postbox_wire::encode_frame(&Frame::Heartbeat { seq }, &mut buf);
                None
            }
        };
        shared
            .stats
            .frames_out
            .fetch_add(taken.as_ref().map_or(1, |t| t.frames as u64), Relaxed);
        shared.stats.bytes_out.fetch_add(buf.len() as u64, Relaxed);
        if write_all(&mut write, &buf, config.heartbeat_timeout)
            .await
            .is_err()
        {
            shared.stats.write_stalls.fetch_add(1, Relaxed);
            tracing::warn!(
                peer = %conn.peer_node,
                limit = ?config.heartbeat_timeout,
                "the peer has not read for the heartbeat timeout; closing the connection"
            );
            conn.abort();
            return;
        }
        buf.clear();
        if buf.capacity() > 4 * WRITE_CHUNK {
            // A very large frame went through: give its room back.
            buf = BytesMut::with_capacity(WRITE_CHUNK);
        }
        if let Some(taken) = taken {
            conn.outbox.written(&taken);
            if taken.last {
                let _ = write.shutdown().await;
                return;
            }
        }
    }
}

/// `frame` as the peer's protocol version can read it: codes it does not know become the
/// nearest older ones (the text keeps the details), and a version-1 peer is not told why a
/// connection closes (it only sees the close). `None`: nothing to send.
fn for_version(frame: Frame, version: u16) -> Option<Frame> {
    if version >= postbox_wire::PROTOCOL_VERSION {
        return Some(frame);
    }
    Some(match frame {
        Frame::Error { correlation, error } => Frame::Error {
            correlation,
            error: RemoteError {
                kind: error.kind.for_version(version),
                message: error.message,
            },
        },
        Frame::Refused { .. } if version < 2 => return None,
        other => other,
    })
}

/// The write failed or made no progress for `stall`.
struct Stalled;

async fn write_all(write: &mut WriteHalf, mut buf: &[u8], stall: Duration) -> Result<(), Stalled> {
    while !buf.is_empty() {
        match tokio::time::timeout(stall, write.write(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Stalled),
            Ok(Ok(n)) => buf = buf.get(n..).unwrap_or_default(),
            Err(_) => return Err(Stalled),
        }
    }
    match tokio::time::timeout(stall, write.flush()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Stalled),
    }
}

/// One of the peer's requests: a message (its checked fields here, its frame's body in the
/// reader's backlog), or a watch, unwatch, lookup or goodbye (boxed: rare, and a `Frame` is
/// large to move through the queue).
enum Request {
    /// Its fields, checked when it was read, over the length of its body, which waits in
    /// [`Requests::backlog`] (bodies in queue order, back to back).
    Message(MessageFrame<usize>),
    Other(Box<Frame>),
}

impl Request {
    /// About how many bytes it holds: a message its whole body, as held in the backlog (a long
    /// target name or sender counts too, not only payload, tag and trace); another request
    /// its variable parts.
    fn bytes(&self) -> usize {
        match self {
            Request::Message(message) => message.body_len(),
            Request::Other(frame) => frame_bytes(frame),
        }
    }
}

/// The last target and tag resolved on a connection: a run of messages to one actor (the
/// common case: a remote ref forwards its mailbox in order) finds its actor and handler,
/// already bound to each other, without a lookup. It keeps that one actor's cell alive while the connection lives, and is
/// used only while the actor takes messages (else the lookup says what became of it).
struct LastTarget {
    id: u64,
    tag: String,
    actor: LocalActor,
    deliver: Delivery,
}

/// What the reader holds while the peer's requests wait.
struct Requests {
    queue: VecDeque<Request>,
    bytes: usize,
    /// The request being delivered, if it had to wait.
    running: Option<BoxFuture>,
    /// The bodies of the queued messages, in queue order. A message that has to wait is
    /// copied here out of the read buffer rather than split off it as `Bytes`: a read buffer
    /// with pieces still out is shared, and each read into it would allocate a fresh one.
    /// Its live bytes are what [`REQUEST_BACKLOG`] bounds, plus one frame.
    backlog: BytesMut,
    /// The queue reached its bound and has not drained since (counted once).
    paused: bool,
}

/// Capacity the backlog keeps once its queue has drained; a larger one (after a large frame,
/// or a long queue) is given back.
const BACKLOG_KEPT: usize = 64 * 1024;

impl Requests {
    fn is_full(&self) -> bool {
        self.bytes >= REQUEST_BACKLOG
    }

    /// Queues a message behind what waits, its body copied into the backlog.
    fn push_message<B: FrameBody>(&mut self, message: MessageFrame<B>) -> bool {
        let body = message.body();
        let len = body.len();
        self.backlog.extend_from_slice(body);
        self.push(Request::Message(message.rebody(len)))
    }

    /// Queues a request; whether the queue is now full.
    fn push(&mut self, request: Request) -> bool {
        self.bytes += request.bytes() + FRAME_OVERHEAD;
        self.queue.push_back(request);
        self.is_full()
    }

    /// The next request, if any (its message's body is then the backlog's front).
    fn pop(&mut self) -> Option<Request> {
        let request = self.queue.pop_front()?;
        self.bytes = self.bytes.saturating_sub(request.bytes() + FRAME_OVERHEAD);
        Some(request)
    }

    /// Counts a stop at the bound in `reads_paused` — once per episode: refills of a queue
    /// that has not drained since are the same pause.
    fn count_pause(&mut self, shared: &TransportState) {
        if !self.paused {
            self.paused = true;
            shared.stats.reads_paused.fetch_add(1, Relaxed);
        }
    }

    /// Empties the backlog once nothing waits, keeping at most [`BACKLOG_KEPT`] of room; the
    /// pause, if any, is over.
    fn reset_backlog_if_drained(&mut self) {
        if self.queue.is_empty() {
            self.paused = false;
            if self.backlog.capacity() > BACKLOG_KEPT {
                self.backlog = BytesMut::new();
            } else {
                self.backlog.clear();
            }
        }
    }
}

/// Reads frames until the connection ends; returns why it ended. Responses (replies to this
/// node's asks, heartbeats, termination notices, lookup answers) are handled as they come;
/// requests (messages, watches, lookups) in order, each one after the previous is delivered.
async fn read_loop(
    shared: &Arc<TransportState>,
    peer: &Arc<Peer>,
    conn: &Arc<Connection>,
    mut read: ReadHalf,
    mut buf: BytesMut,
) -> String {
    let mut codec = FrameCodec::new(shared.config.max_frame);
    let mut requests = Requests {
        queue: VecDeque::new(),
        bytes: 0,
        running: None,
        backlog: BytesMut::new(),
        paused: false,
    };
    let mut last: Option<LastTarget> = None;
    // Why reading stopped (the peer closed, or the socket failed): what was read before is
    // still handled, in order, before the connection ends.
    let mut ended: Option<String> = None;
    loop {
        // Everything already read: responses now, requests into the queue. Bytes are read
        // only when what is buffered holds no whole frame: the queue of requests bounds what
        // is decoded, and this bounds what is buffered behind it.
        let mut needs_bytes = false;
        if !requests.is_full() {
            loop {
                match codec.peek_message(&buf) {
                    Ok(Some((message, taken))) => {
                        shared.stats.frames_in.fetch_add(1, Relaxed);
                        let full = if requests.running.is_none() && requests.queue.is_empty() {
                            // Nothing waits ahead of it: delivered straight from the read
                            // buffer, nothing copied.
                            requests.running = with_ref_codec(&shared.refs, || {
                                deliver(shared, conn, &message, &mut last)
                            });
                            drop(message);
                            false
                        } else {
                            requests.push_message(message)
                        };
                        buf.advance(taken);
                        if full {
                            // Read no more until the queue drains: TCP pushes back on the peer.
                            requests.count_pause(shared);
                            break;
                        }
                        continue;
                    }
                    // Not a whole message frame: `decode_incoming` below says what.
                    Ok(None) => {}
                    Err(error) => {
                        shared.stats.protocol_errors.fetch_add(1, Relaxed);
                        tracing::warn!(peer = %peer.addr, %error, "bad frame; closing the connection");
                        return error.to_string();
                    }
                }
                match codec.decode_incoming(&mut buf) {
                    Ok(Some(incoming)) => {
                        shared.stats.frames_in.fetch_add(1, Relaxed);
                        let full = match incoming {
                            // `peek_message` takes every whole message frame; queued the same
                            // way should one come through here.
                            Incoming::Message(message) => requests.push_message(message),
                            Incoming::Other(frame) if is_request(&frame) => {
                                requests.push(Request::Other(Box::new(frame)))
                            }
                            Incoming::Other(frame) => {
                                if let Some(end) = on_response(shared, peer, conn, frame) {
                                    return end;
                                }
                                continue;
                            }
                        };
                        if full {
                            // Read no more until the queue drains: TCP pushes back on the peer.
                            requests.count_pause(shared);
                            break;
                        }
                    }
                    Ok(None) => {
                        needs_bytes = true;
                        break;
                    }
                    Err(error) => {
                        shared.stats.protocol_errors.fetch_add(1, Relaxed);
                        tracing::warn!(peer = %peer.addr, %error, "bad frame; closing the connection");
                        return error.to_string();
                    }
                }
            }
        }
        // Requests, in order, as far as they go without waiting; payloads are decoded with
        // the transport serving the `ActorRef`s inside them.
        if requests.running.is_none() && !requests.queue.is_empty() {
            let left = with_ref_codec(&shared.refs, || {
                while requests.running.is_none() {
                    let Some(request) = requests.pop() else {
                        break;
                    };
                    // The peer's goodbye comes after everything it sent: only now is it
                    // leaving.
                    if matches!(&request, Request::Other(frame) if matches!(**frame, Frame::Goodbye))
                    {
                        return true;
                    }
                    requests.running =
                        on_request(shared, conn, request, &mut requests.backlog, &mut last);
                }
                requests.reset_backlog_if_drained();
                false
            });
            if left {
                return "the peer left".into();
            }
        }
        if let Some(why) = &ended {
            if requests.running.is_none() && requests.queue.is_empty() {
                return why.clone();
            }
        }
        if ended.is_none() && !needs_bytes && requests.running.is_none() {
            // Stopped decoding for a full queue that has drained since: decode on.
            continue;
        }
        let reading = ended.is_none() && needs_bytes && !requests.is_full();
        if reading {
            buf.reserve(64 * 1024);
        }
        let heartbeat = tokio::time::sleep(shared.config.heartbeat_timeout);
        tokio::select! {
            read = read.read_buf(&mut buf), if reading => match read {
                Ok(0) => ended = Some("closed by the peer".into()),
                Ok(n) => {
                    shared.stats.bytes_in.fetch_add(n as u64, Relaxed);
                    conn.last_heard.store(elapsed_ms(conn.opened), Relaxed);
                }
                Err(error) => ended = Some(error.to_string()),
            },
            () = async { if let Some(running) = requests.running.as_mut() { running.await } },
                if requests.running.is_some() => {
                requests.running = None;
            }
            () = heartbeat, if reading => return "no heartbeat from the peer".into(),
            else => return "nothing to wait for (a bug)".into(),
        }
    }
}

/// Whether `frame` is one of the peer's requests, taken in order (a `Goodbye` ends them).
fn is_request(frame: &Frame) -> bool {
    frame.kind().class() == FrameClass::Request
}

/// Handles a response; `Some(why)` if the connection is to end.
fn on_response(
    shared: &Arc<TransportState>,
    peer: &Arc<Peer>,
    conn: &Arc<Connection>,
    frame: Frame,
) -> Option<String> {
    match frame {
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
                reply.fail(ask_error(error.kind));
            }
        }
        Frame::Heartbeat { seq } => conn.try_send(Frame::HeartbeatAck { seq }),
        Frame::HeartbeatAck { .. } => {}
        Frame::Terminated {
            watcher, reason, ..
        } => peer.remote_terminated(watcher, &reason),
        Frame::Found { correlation, id } => {
            if let Some((_, tx)) = conn.lookups.remove(&correlation) {
                let _ = tx.send(id);
            }
        }
        Frame::Refused { reason, message } => {
            if reason == RefuseReason::Quarantined {
                shared.quarantined_by(&conn.peer_node, &message);
            }
            return Some(format!(
                "the peer closed the connection: {reason}: {message}"
            ));
        }
        // Requests never come here (`is_request`); handshake frames do not belong here.
        other @ (Frame::Hello(_)
        | Frame::Challenge(_)
        | Frame::Proof(_)
        | Frame::Welcome
        | Frame::Message(_)
        | Frame::Watch { .. }
        | Frame::Unwatch { .. }
        | Frame::Lookup { .. }
        | Frame::Goodbye) => {
            shared.stats.protocol_errors.fetch_add(1, Relaxed);
            return Some(format!(
                "unexpected {} frame after the handshake",
                other.kind()
            ));
        }
    }
    None
}

/// Starts handling a request; a future if it has to wait (for an ask permit, mailbox room or
/// outbound room).
fn on_request(
    shared: &Arc<TransportState>,
    conn: &Arc<Connection>,
    request: Request,
    backlog: &mut BytesMut,
    last: &mut Option<LastTarget>,
) -> Option<BoxFuture> {
    let frame = match request {
        Request::Message(frame) => {
            // Its body is the backlog's front (bodies are copied and taken in queue order).
            debug_assert!(
                frame.body_len() <= backlog.len(),
                "the backlog holds the body"
            );
            let len = frame.body_len().min(backlog.len());
            let message = frame.rebody(backlog.get(..len).unwrap_or_default());
            let next = deliver(shared, conn, &message, last);
            drop(message);
            backlog.advance(len);
            return next;
        }
        Request::Other(frame) => *frame,
    };
    match frame {
        // Messages come as `Request::Message` (`decode_incoming`).
        Frame::Message(_) => None,
        Frame::Watch { watcher, target } => watch(shared, conn, watcher, target),
        Frame::Unwatch { watcher, target } => {
            let removed = conn
                .watches
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(watcher, target));
            if let Some((actor, id)) = removed {
                actor.unwatch(id);
            }
            None
        }
        Frame::Lookup { correlation, name } => {
            let id = LocalActor::by_name(&shared.system, &name).map(|a| a.id().get());
            let conn = conn.clone();
            Some(Box::pin(async move {
                let _ = conn.send(Frame::Found { correlation, id }).await;
            }))
        }
        // The reader hands only requests here (`is_request`); a goodbye ends it before.
        Frame::Goodbye
        | Frame::Hello(_)
        | Frame::Challenge(_)
        | Frame::Proof(_)
        | Frame::Welcome
        | Frame::Refused { .. }
        | Frame::Reply { .. }
        | Frame::Error { .. }
        | Frame::Heartbeat { .. }
        | Frame::HeartbeatAck { .. }
        | Frame::Terminated { .. }
        | Frame::Found { .. } => None,
    }
}

/// Registers the peer's watch of a local actor: an entry in the connection's table and in
/// the actor's watcher list.
fn watch(
    shared: &Arc<TransportState>,
    conn: &Arc<Connection>,
    watcher: u64,
    target: u64,
) -> Option<BoxFuture> {
    let refuse = |reason: String| -> Option<BoxFuture> {
        let conn = conn.clone();
        Some(Box::pin(async move {
            let _ = conn
                .send(Frame::Terminated {
                    target,
                    watcher,
                    reason,
                })
                .await;
        }))
    };
    let Some(actor) = LocalActor::by_id(&shared.system, ActorId::from_raw(target)) else {
        return refuse("no such actor".to_owned());
    };
    let mut watches = conn.watches.lock().unwrap_or_else(PoisonError::into_inner);
    if watches.contains_key(&(watcher, target)) {
        return None;
    }
    let max = shared.config.max_watches;
    if watches.len() >= max {
        drop(watches);
        shared.stats.watches_refused.fetch_add(1, Relaxed);
        return refuse(format!(
            "watch refused: this connection already holds the most watches ({max})"
        ));
    }
    let service = conn.service.clone();
    // Holding the table's lock until the entry is in keeps a termination reported at once
    // (an actor already gone) from looking for it too early.
    let id = actor.watch(Box::new(move |reason: ExitReason| {
        let _ = service.send(Work::Terminated {
            watcher,
            target,
            reason: reason.to_string(),
        });
    }));
    watches.insert((watcher, target), (actor, id));
    None
}

/// Where the reply to one ask from the peer goes. The task that answers the ask (the actor's,
/// or whichever drops the reply handle) encodes the reply and queues its frame into the
/// outbox itself, and the writer takes it from there: no task of the transport's wakes in
/// between. Only when the outbox is full does the frame go to the service task, which waits
/// for room. The ask's permit is let go once the frame is queued. It holds the connection
/// weakly: an ask still queued behind a slow actor keeps no closed connection's buffers alive.
pub(crate) struct AskReply {
    conn: std::sync::Weak<Connection>,
    correlation: u64,
    permit: OwnedSemaphorePermit,
}

impl AskReply {
    /// Sends the encoded reply, or the error that stands for it.
    pub(crate) fn send(self, reply: Result<Vec<u8>, ReplyFailure>) {
        let AskReply {
            conn,
            correlation,
            permit,
        } = self;
        // Gone: the connection has closed, and its asker learned that from the close.
        let Some(conn) = conn.upgrade() else {
            return;
        };
        let frame = match reply {
            Ok(bytes) => Frame::Reply {
                correlation,
                payload: Bytes::from(bytes),
            },
            Err(failure) => {
                let (kind, message) = match failure {
                    ReplyFailure::Ask(error) => (ask_error_kind(&error), error.to_string()),
                    ReplyFailure::Unencodable(why) => (
                        ErrorKind::Unencodable,
                        format!("{}: {why}", RemoteFailure::Unencodable),
                    ),
                };
                Frame::Error {
                    correlation,
                    error: RemoteError { kind, message },
                }
            }
        };
        let mut slot = Some(frame);
        let pushed = conn.push_frame(&mut conn.outbox.lock(), &mut slot);
        match (pushed, slot) {
            (Err(NoRoom::Full), Some(frame)) => {
                // The service task waits for room; if it has stopped, so has the connection.
                let _ = conn.service.send(Work::Reply { frame, permit });
            }
            // Queued, or the connection is closed (the asker learns it from the close).
            _ => drop(permit),
        }
    }
}

/// Puts a message from the peer into the target's mailbox (waiting for room, which keeps the
/// peer's order and pushes back on it); an ask goes with its [`AskReply`].
/// Runs with the transport's `RefCodec` installed (the payload is decoded here).
fn deliver<B: FrameBody>(
    shared: &Arc<TransportState>,
    conn: &Arc<Connection>,
    message: &MessageFrame<B>,
    last: &mut Option<LastTarget>,
) -> Option<BoxFuture> {
    // An ask holds a permit until its reply is queued; without one, wait for it here (the
    // reader then takes no more requests).
    let permit = match message.correlation() {
        None => None,
        Some(_) => match conn.asks.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                shared.stats.reads_paused.fetch_add(1, Relaxed);
                let shared = shared.clone();
                let conn = conn.clone();
                let message = message.to_shared();
                return Some(Box::pin(async move {
                    let Ok(permit) = conn.asks.clone().acquire_owned().await else {
                        return;
                    };
                    let next = with_ref_codec(&shared.refs, || {
                        deliver_with(&shared, &conn, &message, Some(permit), &mut None)
                    });
                    if let Some(next) = next {
                        next.await;
                    }
                }));
            }
        },
    };
    deliver_with(shared, conn, message, permit, last)
}

fn deliver_with<B: FrameBody>(
    shared: &Arc<TransportState>,
    conn: &Arc<Connection>,
    message: &MessageFrame<B>,
    permit: Option<OwnedSemaphorePermit>,
    last: &mut Option<LastTarget>,
) -> Option<BoxFuture> {
    let correlation = message.correlation();
    let trace = message
        .trace()
        .and_then(|traceparent| inbound_trace(shared, conn, traceparent));
    // A refused ask is answered with why (waiting for room: an asker must never be left to
    // its timeout); a refused tell is only counted.
    let refuse = |failure: RemoteFailure| -> Option<BoxFuture> {
        let correlation = correlation?;
        let conn = conn.clone();
        let frame = Frame::Error {
            correlation,
            error: RemoteError {
                kind: failure_kind(failure),
                message: format!("{failure} (tag {:?})", message.tag()),
            },
        };
        Some(Box::pin(async move {
            let _ = conn.send(frame).await;
        }))
    };
    let hit = match (message.target(), last.as_ref()) {
        (TargetRef::Id(id), Some(last)) => {
            last.id == id && last.tag.as_bytes() == message.tag_bytes() && last.actor.is_alive()
        }
        _ => false,
    };
    let mut by_name = None;
    if !hit {
        let tag = message.tag();
        let local = match message.target() {
            TargetRef::Id(id) => LocalActor::by_id(&shared.system, ActorId::from_raw(id)),
            TargetRef::Name(name) => LocalActor::by_name(&shared.system, name),
        };
        let Some(local) = local else {
            postbox::remote::reject_unknown_target(&shared.system, "remote message");
            // Ids are never reused: an id that finds no actor is one that has stopped, and its
            // asker is told so, as a local asker would be. A name that finds none is unknown.
            return match message.target() {
                TargetRef::Id(_) => correlation.map(|correlation| {
                    let conn = conn.clone();
                    let frame = Frame::Error {
                        correlation,
                        error: RemoteError {
                            kind: ErrorKind::Stopped,
                            message: AskError::Stopped.to_string(),
                        },
                    };
                    Box::pin(async move {
                        let _ = conn.send(frame).await;
                    }) as BoxFuture
                }),
                TargetRef::Name(_) => refuse(RemoteFailure::UnknownTarget),
            };
        };
        let deliver = match shared.types.delivery(&local, tag) {
            Ok(deliver) => deliver,
            Err(failure) => {
                local.rejected("remote message");
                return refuse(failure);
            }
        };
        let resolved = LastTarget {
            id: local.id().get(),
            tag: tag.to_owned(),
            actor: local,
            deliver,
        };
        match message.target() {
            TargetRef::Id(_) => *last = Some(resolved),
            TargetRef::Name(_) => by_name = Some(resolved),
        }
    }
    let target = by_name.as_ref().or(last.as_ref())?;
    let ask = match (correlation, permit) {
        (Some(correlation), Some(permit)) => Some(AskReply {
            conn: Arc::downgrade(conn),
            correlation,
            permit,
        }),
        _ => None,
    };
    let deliver = || (target.deliver)(message.payload_bytes(), ask, &shared.refs);
    // The message is put in the mailbox (now, or by `enqueue`) inside the sender's trace
    // context, so that its envelope carries it to the handler.
    let delivery = match &trace {
        Some(trace) => trace.in_scope(deliver),
        None => deliver(),
    };
    let enqueue = match delivery {
        Ok(Some(enqueue)) => enqueue,
        Ok(None) => return None,
        Err(failure) => {
            target.actor.rejected("remote message");
            return refuse(failure);
        }
    };
    Some(match trace {
        Some(trace) => Box::pin(trace.scope(enqueue)),
        None => enqueue,
    })
}

/// The trace context of an inbound message, from its `traceparent`. A malformed one is
/// counted, logged at `debug` and ignored: the message is delivered all the same.
fn inbound_trace(
    shared: &TransportState,
    conn: &Connection,
    traceparent: &str,
) -> Option<InboundTrace> {
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

/// The wire kind of a failure to deliver on this node.
fn failure_kind(failure: RemoteFailure) -> ErrorKind {
    match failure {
        RemoteFailure::UnknownTarget => ErrorKind::UnknownTarget,
        RemoteFailure::UnknownTag => ErrorKind::UnknownTag,
        RemoteFailure::Undecodable => ErrorKind::Undecodable,
        RemoteFailure::Unencodable => ErrorKind::Unencodable,
        RemoteFailure::TooLarge => ErrorKind::TooLarge,
        _ => ErrorKind::Refused,
    }
}

/// The wire kind of a local ask's failure: the asker on the other node gets the same
/// `AskError` it would have got here.
fn ask_error_kind(error: &AskError) -> ErrorKind {
    match error {
        AskError::Timeout(_) => ErrorKind::Timeout,
        AskError::Stopped => ErrorKind::Stopped,
        AskError::Panicked => ErrorKind::Panicked,
        AskError::NoReply => ErrorKind::NoReply,
        AskError::NoRoutees => ErrorKind::NoRoutees,
        AskError::NodeDown => ErrorKind::NodeDown,
        AskError::Remote(failure) => failure_kind(*failure),
        _ => ErrorKind::Internal,
    }
}

/// The `AskError` of a failure the peer answered with.
pub(crate) fn ask_error(kind: ErrorKind) -> AskError {
    match kind {
        ErrorKind::UnknownTarget => AskError::Remote(RemoteFailure::UnknownTarget),
        ErrorKind::UnknownTag => AskError::Remote(RemoteFailure::UnknownTag),
        ErrorKind::Undecodable => AskError::Remote(RemoteFailure::Undecodable),
        ErrorKind::Unencodable => AskError::Remote(RemoteFailure::Unencodable),
        ErrorKind::TooLarge => AskError::Remote(RemoteFailure::TooLarge),
        ErrorKind::Stopped => AskError::Stopped,
        ErrorKind::Panicked => AskError::Panicked,
        ErrorKind::NoReply => AskError::NoReply,
        ErrorKind::NoRoutees => AskError::NoRoutees,
        ErrorKind::NodeDown => AskError::NodeDown,
        // The far side's own deadline; how long it was is not carried.
        ErrorKind::Timeout => AskError::Timeout(Duration::ZERO),
        _ => AskError::Remote(RemoteFailure::Refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ask_error_crosses_the_wire_as_itself() {
        let errors = [
            AskError::Stopped,
            AskError::Panicked,
            AskError::NoReply,
            AskError::NoRoutees,
            AskError::NodeDown,
            AskError::Timeout(Duration::ZERO),
            AskError::Remote(RemoteFailure::UnknownTarget),
            AskError::Remote(RemoteFailure::UnknownTag),
            AskError::Remote(RemoteFailure::Undecodable),
            AskError::Remote(RemoteFailure::Unencodable),
            AskError::Remote(RemoteFailure::TooLarge),
            AskError::Remote(RemoteFailure::Refused),
        ];
        for error in errors {
            assert_eq!(ask_error(ask_error_kind(&error)), error, "{error:?}");
        }
    }
}

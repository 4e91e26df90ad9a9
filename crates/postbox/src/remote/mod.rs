//! The seam between the core and a remote transport (`postbox-remote`).
//!
//! The core never opens sockets or serializes bytes. It reaches other nodes through three
//! pieces defined here:
//!
//! - a message type opts in to travelling between nodes by returning a [`RemoteCodec`] from
//!   [`Message::remote`]: a stable tag and four function pointers that
//!   encode and decode the message and its reply (written by the transport crate's macro, so
//!   the core carries pointers, not a serializer);
//! - a remote actor is reached through a **proxy**: an [`ActorRef<A>`] whose cell is local but
//!   whose mailbox is drained by a forwarder instead of an actor instance. `tell`, `try_tell`,
//!   `ask`, backpressure, depth and death watch work exactly as for a local actor — the same
//!   type, the same code path up to the mailbox — which is what location transparency means
//!   here. The forwarder encodes each message ([`Outbound`]) and hands it to the transport's
//!   [`RemoteLink`], in mailbox order, so per-sender ordering carries over to the connection;
//! - the transport ends a proxy ([`ProxyHandle::terminate`]) when the remote actor terminates or
//!   its node is lost. Messages still queued become dead letters
//!   ([`Unreachable`](crate::DeadLetterReason::Unreachable)), pending asks resolve with
//!   [`AskError::NodeDown`], and the proxy's watchers get `Terminated`.
//!
//! Trace context (see [`crate::trace`]) crosses the seam both ways: an [`Outbound`] carries the
//! context its message was sent in (`trace`, for the wire envelope's `traceparent`), and the
//! transport delivers an inbound message inside an [`InboundTrace`], so that the local handler's
//! span continues the sender's trace.
//!
//! # Stability
//!
//! **This module is not part of postbox's public API.** It is the seam for a transport crate
//! (`postbox-remote`), hidden from the documentation and exempt from semver: its items change
//! whenever the transport needs them to, in any release, and calling them from an application
//! bypasses what the transport guarantees (authentication, bounds, counted refusals).
//! Applications reach other nodes through `postbox-remote` (`Remote`, `RemoteActor`,
//! `remote_message!`). The one type of this module that users meet, [`RemoteFailure`] (inside
//! [`AskError::Remote`]), is re-exported at the crate root as `postbox::RemoteFailure`.

use crate::actor::{Actor, ActorId, Message};
use crate::actor_ref::ActorRef;
use crate::cell::{
    ActorCell, ActorMeta, AnyCell, Signal, Stats, SystemSignal, WatchNotify, Watcher,
};
use crate::dead_letters::{DeadLetter, DeadLetterReason};
use crate::error::{AskError, BoxError};
use crate::letter::Letter;
use crate::lifecycle::ExitReason;
use crate::mailbox::{Consumer, Mailbox, MailboxCapacity, Received};
use crate::system::ActorSystem;
use crate::trace::{Origin, Scoped, TraceContext};
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;

mod refs;
pub use refs::{with_ref_codec, ActorAddress, RefCodec, Resolved};

/// How a message type travels between nodes: a stable tag and its codecs. Build it with the
/// transport crate's `remote_message!` macro rather than by hand.
pub struct RemoteCodec<M: Message> {
    /// The message's stable wire tag, e.g. `"bank.Deposit"`. Unique per message type in a
    /// cluster, and unchanged across releases that must talk to each other.
    pub tag: &'static str,
    /// Appends the encoded message to the buffer.
    pub encode: fn(&M, &mut Vec<u8>) -> Result<(), BoxError>,
    /// Decodes a message.
    pub decode: fn(&[u8]) -> Result<M, BoxError>,
    /// Appends the encoded reply to the buffer.
    pub encode_reply: fn(&M::Reply, &mut Vec<u8>) -> Result<(), BoxError>,
    /// Decodes a reply.
    pub decode_reply: fn(&[u8]) -> Result<M::Reply, BoxError>,
}

impl<M: Message> Clone for RemoteCodec<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Message> Copy for RemoteCodec<M> {}

impl<M: Message> fmt::Debug for RemoteCodec<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCodec")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// Why a remote call failed on the far side (carried by [`AskError::Remote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteFailure {
    /// No actor with that id or name on the target node.
    UnknownTarget,
    /// The target does not handle a message with that tag (or its node never registered it).
    UnknownTag,
    /// The message or its reply could not be decoded.
    Undecodable,
    /// The message or its reply could not be encoded (its `Serialize` failed).
    Unencodable,
    /// The message type has no remote codec (`Message::remote` returns `None`; the
    /// transport's `remote_message!` writes one): it cannot leave this node.
    NotRemotable,
    /// The remote node refused it (shutting down, say).
    Refused,
    /// The message or its reply is larger, once encoded, than the connection carries (the
    /// transport's frame limit).
    TooLarge,
}

impl fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteFailure::UnknownTarget => "no such actor on the remote node",
            RemoteFailure::UnknownTag => "the remote actor does not handle this message type",
            RemoteFailure::Undecodable => "the message or its reply could not be decoded",
            RemoteFailure::Unencodable => "the message or its reply could not be encoded",
            RemoteFailure::NotRemotable => "the message type cannot be sent to another node",
            RemoteFailure::Refused => "the remote node refused the message",
            RemoteFailure::TooLarge => {
                "the message or its reply is larger than the connection's frame limit"
            }
        })
    }
}

/// One message on its way to a remote actor, encoded; its payload is in the
/// [`OutboundBatch`] it belongs to.
pub struct Outbound {
    /// The message type's wire tag.
    pub tag: &'static str,
    /// The message type's Rust name (for dead letters).
    pub message_type: &'static str,
    /// The length of its encoded payload.
    pub len: usize,
    /// For an ask: where the reply goes.
    pub reply: Option<PendingReply>,
    /// The trace context the message was sent in, if any: the receiving handler's span is to
    /// be its child (the transport writes it as a W3C `traceparent`).
    pub trace: Option<TraceContext>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("tag", &self.tag)
            .field("bytes", &self.len)
            .field("ask", &self.reply.is_some())
            .field("trace", &self.trace)
            .finish()
    }
}

/// The messages a proxy forwards at a time, in mailbox order: their payloads encoded back to
/// back into one buffer that the proxy reuses, so that a message costs no allocation of its
/// own and the link takes its connection once per batch.
#[derive(Default)]
pub struct OutboundBatch {
    payloads: Vec<u8>,
    /// Where the first message's payload starts in `payloads`.
    start: usize,
    messages: std::collections::VecDeque<Outbound>,
}

impl OutboundBatch {
    /// Messages left in the batch.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether every message has been taken.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The next message and its payload.
    pub fn front(&self) -> Option<(&Outbound, &[u8])> {
        let message = self.messages.front()?;
        let payload = self
            .payloads
            .get(self.start..self.start + message.len)
            .unwrap_or_default();
        Some((message, payload))
    }

    /// Takes the next message, with its payload.
    pub fn pop_front(&mut self) -> Option<(Outbound, &[u8])> {
        let message = self.messages.pop_front()?;
        let start = self.start;
        self.start += message.len;
        let payload = self
            .payloads
            .get(start..start + message.len)
            .unwrap_or_default();
        Some((message, payload))
    }

    /// Empties the buffer for the next batch (the messages must all have been taken).
    fn reset(&mut self) {
        debug_assert!(self.messages.is_empty());
        self.payloads.clear();
        self.start = 0;
    }

    /// Encodes `letter` at the end of the batch; `refused` counts it if it cannot be.
    fn push<A: Actor>(
        &mut self,
        letter: Letter<A>,
        refused: &dyn Fn(RemoteFailure),
    ) -> Result<(), ()> {
        let message = letter.into_remote(refused, &mut self.payloads)?;
        self.messages.push_back(message);
        Ok(())
    }
}

impl fmt::Debug for OutboundBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundBatch")
            .field("messages", &self.messages.len())
            .field("bytes", &(self.payloads.len() - self.start))
            .finish()
    }
}

/// The trace context of a message that arrived from another node: deliver the message inside
/// it ([`in_scope`](Self::in_scope) around a synchronous enqueue, [`scope`](Self::scope) around
/// an enqueue that waits), and the handler's span becomes a child of the sender's span, with
/// `node` as its `sender`.
#[derive(Debug, Clone)]
pub struct InboundTrace {
    context: TraceContext,
    node: Arc<str>,
}

impl InboundTrace {
    /// The context from the message's `traceparent`, sent by `node` (shown as the handler
    /// span's `sender`, e.g. `postbox://10.0.0.7:4000`).
    pub fn new(context: TraceContext, node: Arc<str>) -> Self {
        Self { context, node }
    }

    /// The sender's context.
    pub fn context(&self) -> TraceContext {
        self.context
    }

    /// Runs `f` (which enqueues the message) inside the sender's context.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::trace::in_scope_from(self.context, Origin::Node(self.node.clone()), f)
    }

    /// Wraps `future` (which enqueues the message) so that it is polled inside the sender's
    /// context.
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped::new(future, self.context, Some(Origin::Node(self.node.clone())))
    }
}

/// The asker's end of a remote ask: completes it from the reply's bytes or with an error.
/// Dropping it unanswered resolves the asker with [`AskError::NodeDown`].
pub struct PendingReply {
    inner: Option<Box<dyn ErasedReply>>,
}

trait ErasedReply: Send + Sync {
    fn complete(self: Box<Self>, bytes: &[u8]) -> Result<(), AskError>;
    fn fail(self: Box<Self>, error: AskError);
    fn is_closed(&self) -> bool;
}

struct TypedReply<R> {
    reply: crate::ask::ReplyTo<R>,
    decode: fn(&[u8]) -> Result<R, BoxError>,
}

impl<R: Send + 'static> ErasedReply for TypedReply<R> {
    fn complete(self: Box<Self>, bytes: &[u8]) -> Result<(), AskError> {
        match (self.decode)(bytes) {
            Ok(value) => {
                let _ = self.reply.send_unrecorded(value);
                Ok(())
            }
            Err(_) => {
                let error = AskError::Remote(RemoteFailure::Undecodable);
                self.fail(error);
                Err(error)
            }
        }
    }

    fn fail(self: Box<Self>, error: AskError) {
        crate::ask::with_abandon_reason(error, || drop(self.reply));
    }

    fn is_closed(&self) -> bool {
        self.reply.is_closed()
    }
}

impl PendingReply {
    pub(crate) fn new<R: Send + 'static>(
        reply: crate::ask::ReplyTo<R>,
        decode: fn(&[u8]) -> Result<R, BoxError>,
    ) -> Self {
        Self {
            inner: Some(Box::new(TypedReply { reply, decode })),
        }
    }

    /// Completes the ask with the encoded reply. Fails (and resolves the asker with
    /// `Remote(Undecodable)`) if the bytes do not decode.
    pub fn complete(mut self, bytes: &[u8]) -> Result<(), AskError> {
        match self.inner.take() {
            Some(inner) => inner.complete(bytes),
            None => Ok(()),
        }
    }

    /// Resolves the ask with `error`.
    pub fn fail(mut self, error: AskError) {
        if let Some(inner) = self.inner.take() {
            inner.fail(error);
        }
    }

    /// Whether the asker has stopped waiting (its ask timed out or was dropped): the transport
    /// can forget this entry.
    pub fn is_closed(&self) -> bool {
        self.inner.as_ref().is_none_or(|inner| inner.is_closed())
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.fail(AskError::NodeDown);
        }
    }
}

impl fmt::Debug for PendingReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReply")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Why a [`RemoteLink`] could not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The peer is unreachable (not connected and not reconnecting, or shut down).
    Unreachable,
    /// The connection's outbound queue is full right now (only from `try_send`).
    Full,
    /// The encoded message is larger than the connection carries. The message is refused
    /// (a `TooLarge` dead letter; an ask fails with `Remote(TooLarge)`), the link goes on.
    TooLarge,
}

/// The boxed future [`RemoteLink::send`] returns.
pub type LinkSend<'a> = Pin<Box<dyn Future<Output = Result<(), LinkError>> + Send + 'a>>;

/// Where a proxy's messages go: one remote actor, through its node's connection.
///
/// Both ways of sending take messages from the front of an [`OutboundBatch`], in order; the
/// messages taken are on their way. On an error the message that caused it is still the
/// batch's first (the proxy counts it, or the rest, as dead letters).
pub trait RemoteLink: Send + Sync + 'static {
    /// Sends the whole batch, waiting while the connection's outbound queue is full
    /// (backpressure). Stops at a message that is too large or when the peer is
    /// unreachable.
    fn send<'a>(&'a self, batch: &'a mut OutboundBatch) -> LinkSend<'a>;
    /// Sends as much of the batch as there is room for right now, without waiting or
    /// allocating a future: `Err(Full)` if some is left (then the proxy uses
    /// [`send`](Self::send)).
    fn try_send(&self, batch: &mut OutboundBatch) -> Result<(), LinkError> {
        if batch.is_empty() {
            Ok(())
        } else {
            Err(LinkError::Full)
        }
    }
    /// The first local watcher of this proxy appeared: ask the remote node to report the
    /// actor's termination.
    fn watch(&self);
    /// The last local watcher of this proxy left: the remote node may forget the watch.
    fn unwatch(&self) {}
    /// The proxy ended (for any reason): release what it holds on the remote side.
    fn closed(&self);
    /// Serves the `ActorRef`s inside the messages this link encodes (see [`RefCodec`]).
    fn ref_codec(&self) -> Option<Arc<dyn RefCodec>> {
        None
    }
}

/// The transport's handle on one proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    cell: Arc<dyn AnyCell>,
}

impl ProxyHandle {
    /// Ends the proxy: what is still queued becomes `Unreachable` dead letters (asks among it
    /// resolve with `NodeDown`), and watchers get `Terminated` with `reason`.
    pub fn terminate(&self, reason: ExitReason) {
        let _ = self.cell.send_system(SystemSignal::Stop {
            drain: false,
            reason,
        });
    }

    /// Ends the proxy once it has forwarded what is already queued (new messages are
    /// refused from now on); resolves when it has ended. Used when the transport shuts down.
    pub fn drain(&self, reason: ExitReason) -> impl Future<Output = ExitReason> + Send + 'static {
        let _ = self.cell.send_system(SystemSignal::Stop {
            drain: true,
            reason,
        });
        crate::runner::wait_for_termination(&self.cell)
    }

    /// The proxy's local id.
    pub fn id(&self) -> ActorId {
        self.cell.meta().id
    }

    /// Whether the proxy still accepts messages.
    pub fn is_alive(&self) -> bool {
        self.cell.stats().status != crate::ActorStatus::Stopped
    }
}

impl fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("id", &self.id())
            .finish()
    }
}

/// Creates a proxy for a remote actor of type `A` named `name` (shown as its path, e.g.
/// `postbox://10.0.0.7:4000/user/counter`), forwarding through `link`. The proxy lives in
/// `system` (its dead letters and id space) but not in its actor table or supervision tree.
pub fn spawn_proxy<A: Actor>(
    system: &ActorSystem,
    name: String,
    mailbox: MailboxCapacity,
    link: Arc<dyn RemoteLink>,
) -> (ActorRef<A>, ProxyHandle) {
    let shared = &system.shared;
    let cell = Arc::new(ActorCell {
        mailbox: Mailbox::new(mailbox),
        meta: ActorMeta {
            id: shared.next_id(),
            name: Some(Arc::from(name)),
            parent: None,
            system: system.clone(),
            stats: Stats::default(),
        },
    });
    cell.meta.stats.set_status(crate::ActorStatus::Running);
    // SAFETY: the cell was created just above; this is the only consumer ever made for it.
    let consumer = unsafe { Consumer::new(cell.clone()) };
    let handle = ProxyHandle { cell: cell.clone() };
    shared.runtime.spawn(forward(consumer, link));
    (ActorRef::from_cell(cell), handle)
}

/// Most messages a proxy takes from its mailbox and encodes before handing them to its link:
/// enough to take the connection once for many small messages, few enough that a signal
/// (stop, watch) waits behind at most this many.
const FORWARD_BATCH: usize = 64;

/// The proxy's task: forwards messages in mailbox order until terminated.
async fn forward<A: Actor>(mut consumer: Consumer<ActorCell<A>>, link: Arc<dyn RemoteLink>) {
    let mut watchers: Vec<Watcher> = Vec::new();
    let mut draining = None;
    let refs = link.ref_codec();
    let mut batch = OutboundBatch::default();
    let reason = loop {
        match poll_fn(|cx| consumer.poll_recv(cx)).await {
            Received::Message(letter) => {
                let reason =
                    forward_batch(&mut consumer, &*link, refs.as_ref(), &mut batch, letter).await;
                if let Some(reason) = reason {
                    break reason;
                }
            }
            Received::Signals(signals) => {
                let mut stop = None;
                for signal in signals {
                    match signal {
                        Signal::System(SystemSignal::Stop {
                            reason,
                            drain: true,
                        }) if draining.is_none() => {
                            // Forward what is queued, then stop (`Received::Drained`).
                            consumer.close();
                            draining = Some(reason);
                        }
                        Signal::System(SystemSignal::Stop { reason, .. }) => stop = Some(reason),
                        Signal::System(SystemSignal::Watch(watcher)) => {
                            if watchers.is_empty() {
                                link.watch();
                            }
                            watchers.push(watcher);
                        }
                        Signal::System(SystemSignal::Unwatch { watcher }) => {
                            let watched = !watchers.is_empty();
                            watchers.retain(|w| w.watcher != watcher);
                            if watched && watchers.is_empty() {
                                link.unwatch();
                            }
                        }
                        Signal::System(SystemSignal::Supervision(_))
                        | Signal::Terminated { .. } => {}
                    }
                }
                if let Some(reason) = stop {
                    break reason;
                }
            }
            Received::Interrupted => {
                consumer.owner().mailbox.clear_interrupts(usize::MAX);
                break ExitReason::Stopped;
            }
            Received::Drained => break draining.take().unwrap_or(ExitReason::Stopped),
        }
    };
    consumer.close();
    let cell = consumer.owner().clone();
    cell.meta.stats.set_status(crate::ActorStatus::Stopped);
    while let Some(envelope) = consumer.try_recv() {
        unreachable_letter(&cell, envelope);
    }
    for signal in consumer.close_signals() {
        if let Signal::System(SystemSignal::Watch(watcher)) = signal {
            watchers.push(watcher);
        }
    }
    link.closed();
    let id = cell.meta.id;
    for watcher in watchers {
        watcher.notify(id, reason.clone());
    }
}

/// Encodes `first` and what else is queued behind it (up to [`FORWARD_BATCH`] messages) and
/// sends them; returns the proxy's end if the link is gone.
async fn forward_batch<A: Actor>(
    consumer: &mut Consumer<ActorCell<A>>,
    link: &dyn RemoteLink,
    refs: Option<&Arc<dyn RefCodec>>,
    batch: &mut OutboundBatch,
    first: Letter<A>,
) -> Option<ExitReason> {
    let cell = consumer.owner().clone();
    batch.reset();
    let encode = |batch: &mut OutboundBatch, consumer: &mut Consumer<ActorCell<A>>| {
        let mut next = Some(first);
        while let Some(letter) = next.take() {
            let message_type = letter.message_type();
            let refused =
                |_: RemoteFailure| record(&cell, message_type, DeadLetterReason::NotRemotable);
            let _ = batch.push(letter, &refused);
            if batch.len() < FORWARD_BATCH {
                next = consumer.try_recv();
            }
        }
    };
    match refs {
        Some(refs) => with_ref_codec(refs, || encode(batch, consumer)),
        None => encode(batch, consumer),
    }
    while !batch.is_empty() {
        let before = batch.len();
        let sent = match link.try_send(batch) {
            Err(LinkError::Full) => link.send(batch).await,
            other => other,
        };
        for _ in batch.len()..before {
            cell.meta.stats.record_message(None);
        }
        match sent {
            Ok(()) => {}
            Err(LinkError::TooLarge) => {
                if let Some((outbound, _)) = batch.pop_front() {
                    record(&cell, outbound.message_type, DeadLetterReason::TooLarge);
                    if let Some(reply) = outbound.reply {
                        reply.fail(AskError::Remote(RemoteFailure::TooLarge));
                    }
                }
            }
            Err(_) => {
                while let Some((outbound, _)) = batch.pop_front() {
                    record(&cell, outbound.message_type, DeadLetterReason::Unreachable);
                    if let Some(reply) = outbound.reply {
                        reply.fail(AskError::NodeDown);
                    }
                }
                return Some(ExitReason::NodeDown);
            }
        }
    }
    None
}

fn unreachable_letter<A: Actor>(cell: &ActorCell<A>, envelope: Letter<A>) {
    cell.meta.system.shared.dead_letters.record_envelope(
        cell.meta.id,
        std::any::type_name::<A>(),
        &envelope,
        DeadLetterReason::Unreachable,
    );
    crate::ask::abandon(envelope, AskError::NodeDown);
}

fn record<A: Actor>(cell: &ActorCell<A>, message_type: &'static str, reason: DeadLetterReason) {
    cell.meta.system.shared.dead_letters.record(DeadLetter {
        recipient: cell.meta.id,
        recipient_type: std::any::type_name::<A>(),
        message_type,
        reason,
    });
}

/// A local actor, found by id or registered name for a message that arrived from another node,
/// before its type is known.
#[derive(Clone)]
pub struct LocalActor {
    cell: Arc<dyn AnyCell>,
}

impl LocalActor {
    /// The live actor with `id` in `system`.
    pub fn by_id(system: &ActorSystem, id: ActorId) -> Option<Self> {
        let cell = system.shared.actors.get(&id)?.clone();
        Some(Self { cell })
    }

    /// The actor registered as `name` in `system`'s registry.
    pub fn by_name(system: &ActorSystem, name: &str) -> Option<Self> {
        let id = system.registry().lookup_id(name)?;
        Self::by_id(system, id)
    }

    /// Its id.
    pub fn id(&self) -> ActorId {
        self.cell.meta().id
    }

    /// `TypeId` of its actor type, to find how to deliver a tag to it.
    pub fn actor_type_id(&self) -> std::any::TypeId {
        self.cell.actor_type_id()
    }

    /// Its actor type's name.
    pub fn actor_type(&self) -> &'static str {
        self.cell.actor_type()
    }

    /// Whether it still takes messages (it is not stopping or stopped): a transport that
    /// keeps a `LocalActor` between messages checks this before each.
    pub fn is_alive(&self) -> bool {
        self.cell.is_alive()
    }

    /// A typed reference, if it is an `A`.
    pub fn downcast<A: Actor>(&self) -> Option<ActorRef<A>> {
        self.cell
            .clone()
            .into_any()
            .downcast::<ActorCell<A>>()
            .ok()
            .map(ActorRef::from_cell)
    }

    /// Resolves when the actor terminates (at once if it already has), with why.
    pub fn terminated(&self) -> impl Future<Output = ExitReason> + Send + 'static {
        crate::runner::wait_for_termination(&self.cell)
    }

    /// Calls `on_terminated` once, with why, when the actor terminates — at once, on this
    /// thread, if it already has — unless [`unwatch`](Self::unwatch)ed first with the returned
    /// id. For a transport watching an actor on behalf of another node: the watch costs the
    /// actor one entry in its watcher list and no task.
    pub fn watch(&self, on_terminated: Box<dyn FnOnce(ExitReason) + Send>) -> ActorId {
        let id = self.cell.meta().system.shared.next_id();
        let watcher = Watcher {
            watcher: id,
            notify: WatchNotify::Callback(on_terminated),
        };
        if let Err(SystemSignal::Watch(watcher)) =
            self.cell.send_system(SystemSignal::Watch(watcher))
        {
            watcher.notify(self.id(), ExitReason::AlreadyTerminated);
        }
        id
    }

    /// Cancels the watch `id` (from [`watch`](Self::watch)); its callback is dropped uncalled
    /// if the actor has not terminated yet.
    pub fn unwatch(&self, id: ActorId) {
        let _ = self.cell.send_system(SystemSignal::Unwatch { watcher: id });
    }

    /// Counts a message that arrived from another node for this actor and could not be
    /// delivered.
    pub fn rejected(&self, message_type: &'static str) {
        self.cell
            .meta()
            .system
            .shared
            .dead_letters
            .record(DeadLetter {
                recipient: self.id(),
                recipient_type: self.actor_type(),
                message_type,
                reason: DeadLetterReason::RemoteRejected,
            });
    }
}

impl fmt::Debug for LocalActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalActor")
            .field("id", &self.id())
            .field("type", &self.actor_type())
            .finish()
    }
}

/// Counts a message from another node that found no recipient here (unknown target).
pub fn reject_unknown_target(system: &ActorSystem, message_type: &'static str) {
    system.shared.dead_letters.record(DeadLetter {
        recipient: ActorId(0),
        recipient_type: "",
        message_type,
        reason: DeadLetterReason::RemoteRejected,
    });
}

/// Puts an ask into a local actor's mailbox (waiting for room), on behalf of another node.
/// Resolves once the message is queued — so that messages from one peer keep their order —
/// to a future of the reply.
pub async fn enqueue_ask<A, M>(
    actor: &ActorRef<A>,
    msg: M,
) -> impl Future<Output = Result<M::Reply, AskError>> + Send + 'static
where
    A: crate::Handler<M>,
    M: Message,
{
    let (reply, rx) = crate::ask::ReplyTo::channel(crate::ask::Unanswered::Stopped);
    actor.cell().send_ask(msg, reply).await;
    async move { rx.await.unwrap_or(Err(AskError::Stopped)) }
}

/// Puts an ask from another node into a local actor's mailbox, its reply — or why there is
/// none (`Stopped`, `Panicked`, …) — passed to `reply` by the task that answers, instead of
/// sent through a channel to a task that waits for it: the transport encodes the reply for
/// the asker right there, and no task of its own wakes in between. `None` when the ask is in
/// the mailbox now (or the actor has stopped, and `reply` has been called with `Stopped`);
/// else the future that waits for room.
pub fn try_enqueue_ask_calling<A, M>(
    actor: &ActorRef<A>,
    msg: M,
    reply: impl FnOnce(Result<M::Reply, AskError>) + Send + Sync + 'static,
) -> Option<impl Future<Output = ()> + Send + 'static>
where
    A: crate::Handler<M>,
    M: Message,
{
    let reply = crate::ask::ReplyTo::calling(reply);
    let (msg, reply) = actor.cell().try_send_ask(msg, reply)?;
    let actor = actor.clone();
    Some(async move { actor.cell().send_ask(msg, reply).await })
}

/// Puts a tell from another node into a local actor's mailbox if there is room right now,
/// without counting a refusal as a dead letter (the transport then waits with `tell`, or
/// counts it).
pub fn try_enqueue<A, M>(actor: &ActorRef<A>, msg: M) -> Result<(), crate::TrySendError<M>>
where
    A: crate::Handler<M>,
    M: Message,
{
    crate::actor_ref::Sink::offer(&**actor.cell(), msg)
}

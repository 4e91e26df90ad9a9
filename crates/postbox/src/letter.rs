//! Type-erased message envelopes.
//!
//! A mailbox carries messages of every type its actor handles, so each one travels in an
//! [`Letter<A>`]: a pointer to a static per-`(A, M)` vtable plus the message and its optional
//! reply handle. Envelopes are what the mailbox's blocks store by value, so to keep the hot path
//! free of allocations the payload is stored **inline** when it fits in [`INLINE_BYTES`] (with
//! pointer alignment); bigger or over-aligned payloads are boxed and the box pointer is stored
//! inline instead.
//!
//! # Soundness
//!
//! An envelope is created only by [`Letter::new::<M>`], which writes a `Packet<M>` (or a
//! `Box<Packet<M>>`) into the payload and records the matching vtable. Every vtable function is
//! monomorphized for that same `(A, M)` and is the only code that reads the payload back, exactly
//! once: `dispatch` and `into_parts` move it out (and the envelope is then forgotten), `drop`
//! drops it in place. So the payload is always read as the type it was written as, once.
//!
//! # Trace context
//!
//! A message sent while a trace context is current (see `trace.rs`) carries it to its
//! handler, boxed in the packet's [`Tail`] beside the reply handle. The tail is no larger than
//! the `Option<ReplyTo>` it replaces, so untraced messages keep every inline byte, and
//! building one costs a thread-local read.

use crate::actor::{Actor, Handler, Message};
use crate::ask::ReplyTo;
use crate::context::Context;
use crate::slot::{HandlerSlot, RunningHandler};
use crate::trace::{self, Carried};
use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};
use std::ptr;
use tracing::Instrument;

/// Bytes of payload stored without allocation: a message of up to 32 bytes plus its reply
/// handle (24 bytes, present but empty for a tell). With the vtable pointer an envelope is one
/// 64-byte cache line.
pub(crate) const INLINE_BYTES: usize = 56;
const INLINE_WORDS: usize = INLINE_BYTES / size_of::<usize>();

type Payload = MaybeUninit<[usize; INLINE_WORDS]>;

/// A message plus the handle its reply goes to and the trace context it carries.
struct Packet<M: Message> {
    message: M,
    tail: Tail<M::Reply>,
}

/// What travels with a message: the reply handle of an ask, and the trace context of a send
/// made while one was current (boxed: rare, and it keeps the tail as small as the
/// `Option<ReplyTo>` alone, whose niche holds the variant).
enum Tail<R> {
    Tell,
    Ask(ReplyTo<R>),
    TracedTell(Box<Carried>),
    TracedAsk(Box<TracedAsk<R>>),
}

struct TracedAsk<R> {
    reply: ReplyTo<R>,
    carried: Carried,
}

impl<R> Tail<R> {
    #[inline]
    fn new(reply: Option<ReplyTo<R>>) -> Self {
        match (reply, trace::capture()) {
            (None, None) => Tail::Tell,
            (Some(reply), None) => Tail::Ask(reply),
            (None, Some(carried)) => Tail::TracedTell(Box::new(carried)),
            (Some(reply), Some(carried)) => Tail::TracedAsk(Box::new(TracedAsk { reply, carried })),
        }
    }

    #[inline]
    fn split(self) -> (Option<ReplyTo<R>>, Option<Carried>) {
        match self {
            Tail::Tell => (None, None),
            Tail::Ask(reply) => (Some(reply), None),
            Tail::TracedTell(carried) => (None, Some(*carried)),
            Tail::TracedAsk(traced) => {
                let TracedAsk { reply, carried } = *traced;
                (Some(reply), Some(carried))
            }
        }
    }
}

/// Encodes a packed message for another node; the callback hears of a refusal before any
/// asker does.
type EncodeRemote = unsafe fn(
    &mut Payload,
    &dyn Fn(crate::remote::RemoteFailure),
    &mut Vec<u8>,
) -> Result<crate::remote::Outbound, ()>;

struct VTable<A: Actor> {
    message_type: fn() -> &'static str,
    /// Identifies `M` (vtable addresses are not unique: constants may be duplicated).
    message_type_id: fn() -> std::any::TypeId,
    dispatch: for<'a> unsafe fn(
        &mut Payload,
        &'a mut A,
        &'a mut Context<A>,
        &'a mut HandlerSlot,
    ) -> RunningHandler<'a>,
    drop: unsafe fn(&mut Payload),
    /// Takes the packet and encodes it for another node (`Err` if the type is not remotable;
    /// the packet is consumed either way, an ask resolving with the failure).
    remote: EncodeRemote,
}

/// One message for an actor of type `A`, of any type `A` handles.
pub(crate) struct Letter<A: Actor> {
    vtable: &'static VTable<A>,
    payload: Payload,
}

// SAFETY: `Letter::new` only accepts `M: Message` (which is `Send`) and a `ReplyTo` (Send),
// so the payload is always `Send`; the vtable is a `'static` table of function pointers.
unsafe impl<A: Actor> Send for Letter<A> {}

struct Packing<A, M>(std::marker::PhantomData<(A, M)>);

impl<A: Handler<M>, M: Message> Packing<A, M> {
    const INLINE: bool = size_of::<Packet<M>>() <= size_of::<Payload>()
        && align_of::<Packet<M>>() <= align_of::<Payload>();

    const VTABLE: VTable<A> = VTable {
        message_type: std::any::type_name::<M>,
        message_type_id: std::any::TypeId::of::<M>,
        dispatch: dispatch::<A, M>,
        drop: drop_packet::<A, M>,
        remote: encode_packet::<A, M>,
    };

    /// # Safety
    /// `payload` holds a packet written by `Letter::new::<M>` that has not been taken yet.
    unsafe fn take(payload: &mut Payload) -> Packet<M> {
        let place = payload.as_mut_ptr();
        if Self::INLINE {
            // SAFETY: written as `Packet<M>` inline (contract), read once.
            unsafe { ptr::read(place.cast::<Packet<M>>()) }
        } else {
            // SAFETY: written as `Box<Packet<M>>` (contract), read once.
            *unsafe { ptr::read(place.cast::<Box<Packet<M>>>()) }
        }
    }
}

impl<A: Actor> Letter<A> {
    /// Wraps `message` (and the handle for its reply, when asked), with the current trace
    /// context if there is one.
    #[inline]
    pub(crate) fn new<M>(message: M, reply: Option<ReplyTo<M::Reply>>) -> Self
    where
        A: Handler<M>,
        M: Message,
    {
        let mut payload = Payload::uninit();
        let packet = Packet {
            message,
            tail: Tail::new(reply),
        };
        let place = payload.as_mut_ptr();
        if Packing::<A, M>::INLINE {
            // SAFETY: `INLINE` checked size and alignment against the payload buffer.
            unsafe { place.cast::<Packet<M>>().write(packet) };
        } else {
            // SAFETY: a box pointer fits in (and is aligned for) the payload buffer.
            unsafe { place.cast::<Box<Packet<M>>>().write(Box::new(packet)) };
        }
        Letter {
            vtable: &Packing::<A, M>::VTABLE,
            payload,
        }
    }

    /// The message's type name, for dead letters and tracing.
    pub(crate) fn message_type(&self) -> &'static str {
        (self.vtable.message_type)()
    }

    /// Moves the message into `slot` and starts its handler.
    #[inline]
    pub(crate) fn dispatch<'a>(
        self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        slot: &'a mut HandlerSlot,
    ) -> RunningHandler<'a> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the payload was written by `new` for this vtable and is taken once, here;
        // `ManuallyDrop` keeps `Drop` from touching it again.
        unsafe { (this.vtable.dispatch)(&mut this.payload, actor, ctx, slot) }
    }

    /// Encodes the message for a remote actor (see `remote.rs`), appending its payload to
    /// `out` (left as it was on failure). When it cannot be encoded, `refused` runs before an
    /// asker learns of it, so the dead letter is counted by the time the ask resolves.
    pub(crate) fn into_remote(
        self,
        refused: &dyn Fn(crate::remote::RemoteFailure),
        out: &mut Vec<u8>,
    ) -> Result<crate::remote::Outbound, ()> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: as in `dispatch`: written by `new` for this vtable, taken once, here.
        unsafe { (this.vtable.remote)(&mut this.payload, refused, out) }
    }

    /// Takes the message and reply handle back out, for a send that failed.
    ///
    /// # Safety
    /// The envelope must have been created by `Letter::new::<M>` with this same `M`.
    pub(crate) unsafe fn into_parts<M>(self) -> (M, Option<ReplyTo<M::Reply>>)
    where
        A: Handler<M>,
        M: Message,
    {
        debug_assert_eq!((self.vtable.message_type_id)(), std::any::TypeId::of::<M>());
        let mut this = ManuallyDrop::new(self);
        // SAFETY: same `M` per the contract; taken once, and `Drop` is suppressed.
        let packet = unsafe { Packing::<A, M>::take(&mut this.payload) };
        (packet.message, packet.tail.split().0)
    }
}

impl<A: Actor> Drop for Letter<A> {
    fn drop(&mut self) {
        // SAFETY: an envelope that is dropped still owns its payload (dispatch and into_parts
        // forget the envelope), and `drop` reads it as the type `new` wrote.
        unsafe { (self.vtable.drop)(&mut self.payload) }
    }
}

impl<A: Actor> std::fmt::Debug for Letter<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Letter")
            .field("message_type", &self.message_type())
            .finish_non_exhaustive()
    }
}

/// SAFETY (callers): see `Packing::take`.
unsafe fn encode_packet<A: Handler<M>, M: Message>(
    payload: &mut Payload,
    refused: &dyn Fn(crate::remote::RemoteFailure),
    out: &mut Vec<u8>,
) -> Result<crate::remote::Outbound, ()> {
    use crate::remote::{Outbound, PendingReply, RemoteFailure};
    // SAFETY: forwarded contract.
    let Packet { message, tail } = unsafe { Packing::<A, M>::take(payload) };
    let (reply, carried) = tail.split();
    let failed = |reply: Option<ReplyTo<M::Reply>>, failure| {
        refused(failure);
        if let Some(reply) = reply {
            crate::ask::with_abandon_reason(crate::AskError::Remote(failure), || drop(reply));
        }
    };
    let Some(codec) = M::remote() else {
        failed(reply, RemoteFailure::NotRemotable);
        return Err(());
    };
    let start = out.len();
    if (codec.encode)(&message, out).is_err() {
        out.truncate(start);
        failed(reply, RemoteFailure::Unencodable);
        return Err(());
    }
    Ok(Outbound {
        tag: codec.tag,
        message_type: std::any::type_name::<M>(),
        len: out.len() - start,
        reply: reply.map(|reply| PendingReply::new(reply, codec.decode_reply)),
        trace: carried.map(|carried| carried.context),
    })
}

/// SAFETY (callers): see `Packing::take`.
unsafe fn drop_packet<A: Handler<M>, M: Message>(payload: &mut Payload) {
    // SAFETY: forwarded contract.
    drop(unsafe { Packing::<A, M>::take(payload) });
}

/// SAFETY (callers): see `Packing::take`.
unsafe fn dispatch<'a, A: Handler<M>, M: Message>(
    payload: &mut Payload,
    actor: &'a mut A,
    ctx: &'a mut Context<A>,
    slot: &'a mut HandlerSlot,
) -> RunningHandler<'a> {
    // SAFETY: forwarded contract.
    let Packet { message, tail } = unsafe { Packing::<A, M>::take(payload) };
    let (reply, carried) = tail.split();
    let id = ctx.id();
    let handling = actor.handle_reply(message, reply, ctx);
    // What the span macro checks first anyway: with no subscriber at this level, this is the
    // whole cost of tracing here (no ids are drawn).
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return slot.start(handling);
    }
    let opened = trace::Opened::new(carried);
    let span = tracing::debug_span!(
        target: "postbox::actor",
        "handle",
        actor.id = id.get(),
        actor.type = std::any::type_name::<A>(),
        message = std::any::type_name::<M>(),
        trace_id = %opened.context.trace_id(),
        span_id = %opened.context.span_id(),
        parent_span_id = opened.parent.map(tracing::field::display),
        sender = opened.sender.as_ref().map(tracing::field::display),
    );
    if span.is_disabled() {
        slot.start(handling)
    } else {
        // The span lives with the future in the slot, entered on every poll and on drop; the
        // context is current around each poll (set before the span is entered, so that
        // layers see it on entry), so the handler's sends carry it.
        let origin = trace::Origin::Actor(id);
        slot.start(trace::Scoped::new(
            handling.instrument(span),
            opened.context,
            Some(origin),
        ))
    }
}

#[cfg(test)]
mod tests {
    //! Part of the Miri suite: `cargo +nightly miri test -p postbox --lib letter::`.
    use super::*;
    use crate::testkit::{block_on_local, TestCell};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct Sink {
        total: u64,
        big_seen: usize,
    }
    impl Actor for Sink {}

    struct Small(u64);
    impl Message for Small {
        type Reply = u64;
    }
    impl Handler<Small> for Sink {
        async fn handle(&mut self, msg: Small, _: &mut Context<Self>) -> u64 {
            self.total += msg.0;
            self.total
        }
    }

    struct Big([u64; 32], Arc<AtomicUsize>);
    impl Message for Big {
        type Reply = ();
    }
    impl Handler<Big> for Sink {
        async fn handle(&mut self, msg: Big, _: &mut Context<Self>) {
            self.big_seen += msg.0.len();
        }
    }
    impl Drop for Big {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn small_messages_are_inline_and_big_ones_boxed() {
        const { assert!(Packing::<Sink, Small>::INLINE) };
        const { assert!(!Packing::<Sink, Big>::INLINE) };
        assert_eq!(size_of::<Letter<Sink>>(), INLINE_BYTES + size_of::<usize>());
    }

    #[test]
    fn the_trace_context_costs_no_inline_bytes() {
        // The tail is exactly as large as the reply handle it replaced: every message that
        // travelled inline still does.
        assert_eq!(size_of::<Tail<u64>>(), size_of::<Option<ReplyTo<u64>>>());
        assert_eq!(
            size_of::<Tail<[u64; 8]>>(),
            size_of::<Option<ReplyTo<[u64; 8]>>>()
        );
    }

    #[test]
    fn a_send_in_a_traced_context_carries_it_to_the_handler_or_back_out() {
        let cx = crate::trace::TraceContext::new_root();
        let env = cx.in_scope(|| Letter::<Sink>::new(Small(1), None));
        // SAFETY: built from `Small` just above.
        let (message, reply) = unsafe { env.into_parts::<Small>() };
        assert_eq!((message.0, reply.is_none()), (1, true));

        let (reply, rx) = ReplyTo::pair_for_test();
        let env = cx.in_scope(|| Letter::<Sink>::new(Small(2), Some(reply)));
        let mut cell = TestCell::new(Sink::default());
        cell.run(env);
        assert_eq!(block_on_local(rx), Ok(Ok(2)));
    }

    #[test]
    fn dispatch_runs_the_handler_for_inline_and_boxed_payloads() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut cell = TestCell::new(Sink::default());
        cell.run(Letter::new(Small(5), None));
        cell.run(Letter::new(Big([1; 32], drops.clone()), None));
        assert_eq!(cell.actor.total, 5);
        assert_eq!(cell.actor.big_seen, 32);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dropping_or_unpacking_an_envelope_releases_the_message_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        drop(Letter::<Sink>::new(Big([0; 32], drops.clone()), None));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let env = Letter::<Sink>::new(Big([0; 32], drops.clone()), None);
        assert_eq!(env.message_type(), std::any::type_name::<Big>());
        // SAFETY: built from `Big` just above.
        let (message, reply) = unsafe { env.into_parts::<Big>() };
        assert!(reply.is_none());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(message);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_asked_message_replies_through_its_handle() {
        let (reply, rx) = ReplyTo::pair_for_test();
        let mut cell = TestCell::new(Sink::default());
        cell.run(Letter::new(Small(7), Some(reply)));
        assert_eq!(block_on_local(rx), Ok(Ok(7)));
    }
}

//! Trace context: one trace follows a request from actor to actor, locally and across nodes.
//!
//! Every handled message gets a `debug`-level span named `handle` (target `postbox::actor`)
//! with the actor's id and type and the message's type. When a subscriber is interested in that
//! span, postbox also gives the handling a [`TraceContext`] in the
//! [W3C Trace Context](https://www.w3.org/TR/trace-context/) model — a 128-bit trace id shared
//! by everything done for one request, and a 64-bit span id of its own — and records it on the
//! span as hex fields, so a plain `tracing` subscriber (no OpenTelemetry needed) sees the trace:
//!
//! | field | value |
//! | --- | --- |
//! | `trace_id` | 32 hex digits, the same for every span of the trace |
//! | `span_id` | 16 hex digits, this handling's id |
//! | `parent_span_id` | 16 hex digits, the span that sent the message (absent for a root) |
//! | `sender` | who sent it, when known: `#17` (an actor, by id) or `postbox://host:port` (a node) |
//!
//! # How the context travels
//!
//! - **Around a handler.** While a traced handler runs (each time its future is polled), its
//!   context is this thread's *current* context ([`TraceContext::current`]).
//! - **In the envelope.** A message sent while a context is current — `tell`, `try_tell`,
//!   `ask`, through a [`Recipient`](crate::Recipient) or a router — carries that context (and
//!   the sending actor's id) in its envelope. The receiving actor's `handle` span is its child:
//!   same trace id, a new span id, `parent_span_id` = the sender's span id.
//! - **Across nodes.** A remote ref's forwarder puts the carried context in the wire envelope as
//!   a `traceparent` string (`00-<trace id>-<parent span id>-<flags>`, see
//!   [`TraceContext::parse`]). The receiving node parses it strictly; a malformed one is ignored
//!   (counted by the transport and logged at `debug`), never refused and never a panic. The
//!   remote handler's span is then the child of the sending handler's span, with the sending
//!   node as its `sender`.
//! - **Roots.** A message that carries no context starts a new trace (a fresh trace id, no
//!   parent) when its `handle` span is enabled. To make several sends belong to one trace, or to
//!   continue a trace that came from elsewhere (an HTTP request's `traceparent`, say), run them
//!   inside [`TraceContext::in_scope`] or [`TraceContext::scope`]:
//!
//! ```
//! use postbox::prelude::*;
//! use postbox::trace::TraceContext;
//!
//! # #[derive(Default)] struct Counter;
//! # impl Actor for Counter {}
//! # struct Add(u64);
//! # impl Message for Add { type Reply = (); }
//! # impl Handler<Add> for Counter { async fn handle(&mut self, _: Add, _: &mut Context<Self>) {} }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let system = ActorSystem::new();
//! let counter = system.spawn(Props::new(Counter::default))?;
//! // Continue the caller's trace (or start one with `TraceContext::new_root()`).
//! let incoming: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
//! incoming.scope(async {
//!     counter.tell(Add(1)).await?;   // the handler's span: child of 00f067aa0ba902b7
//!     counter.ask(Add(2)).await?;    // same trace
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! }).await?;
//! # system.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A handler's context does not follow work it moves elsewhere: a task it `tokio::spawn`s runs
//! without it, unless the handler wraps that task in
//! `TraceContext::current().map(|cx| cx.scope(task))`. A message's context is recorded by its
//! handler's span only: nothing else (lifecycle hooks, supervision, dead letters) is traced.
//!
//! # Cost
//!
//! With no subscriber interested in `handle` spans, nothing here runs on the message path but
//! one thread-local read per send (no context: the envelope is exactly what it would be without
//! tracing) and the level check the span macro always made: no allocation, no lock, no random
//! numbers. When a handler is traced, each send it makes allocates one small box for the
//! context, and a remote send formats one 55-byte `traceparent`.
//!
//! # Sampling
//!
//! Flags travel unchanged (a new root sets *sampled*). postbox itself records every `handle`
//! span a subscriber enables: sample with the subscriber's filter. An OpenTelemetry exporter
//! (`postbox-metrics`' `otlp` feature) exports postbox's ids as they are, so a span seen in the
//! collector has the `trace_id` and `span_id` that the log shows.

use crate::actor::ActorId;
use pin_project_lite::pin_project;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::num::{NonZeroU128, NonZeroU64};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The 16-byte id shared by every span of one trace; never zero. Shown as 32 lowercase hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(NonZeroU128);

/// The 8-byte id of one span; never zero. Shown as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

impl TraceId {
    /// The id with this value (big-endian, as in a `traceparent`), or `None` for zero, which
    /// W3C reserves as invalid.
    pub const fn new(value: u128) -> Option<Self> {
        match NonZeroU128::new(value) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// A random id.
    pub fn random() -> Self {
        loop {
            if let Some(id) = NonZeroU128::new(fastrand::u128(..)) {
                return Self(id);
            }
        }
    }

    /// Its value.
    pub const fn get(self) -> u128 {
        self.0.get()
    }

    /// Its 16 bytes, most significant first (the order of the hex form).
    pub const fn to_bytes(self) -> [u8; 16] {
        self.get().to_be_bytes()
    }
}

impl SpanId {
    /// The id with this value (big-endian, as in a `traceparent`), or `None` for zero, which
    /// W3C reserves as invalid.
    pub const fn new(value: u64) -> Option<Self> {
        match NonZeroU64::new(value) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// A random id.
    pub fn random() -> Self {
        loop {
            if let Some(id) = NonZeroU64::new(fastrand::u64(..)) {
                return Self(id);
            }
        }
    }

    /// Its value.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// Its 8 bytes, most significant first (the order of the hex form).
    pub const fn to_bytes(self) -> [u8; 8] {
        self.get().to_be_bytes()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.get())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.get())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// Parses exactly 32 lowercase hex digits (not all zero).
impl FromStr for TraceId {
    type Err = ParseTraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = parse_hex(s.as_bytes(), 32, ParseTraceError::TraceId)?;
        Self::new(value).ok_or(ParseTraceError::ZeroTraceId)
    }
}

/// Parses exactly 16 lowercase hex digits (not all zero).
impl FromStr for SpanId {
    type Err = ParseTraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = parse_hex(s.as_bytes(), 16, ParseTraceError::SpanId)?;
        let value = u64::try_from(value).map_err(|_| ParseTraceError::SpanId)?;
        Self::new(value).ok_or(ParseTraceError::ZeroSpanId)
    }
}

/// `len` lowercase hex digits, nothing else.
fn parse_hex(digits: &[u8], len: usize, error: ParseTraceError) -> Result<u128, ParseTraceError> {
    if digits.len() != len {
        return Err(error);
    }
    digits.iter().try_fold(0u128, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return Err(error),
        };
        Ok(value << 4 | u128::from(nibble))
    })
}

/// Why a `traceparent` was refused by [`TraceContext::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseTraceError {
    /// Not 55 bytes long (`00-` + 32 + `-` + 16 + `-` + 2).
    Length,
    /// The version is not `00` (the only one defined; `ff` is forbidden, later versions are not
    /// accepted either).
    Version,
    /// The fields are not separated by `-` where the format puts them.
    Separator,
    /// The trace id is not 32 lowercase hex digits.
    TraceId,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent span id is not 16 lowercase hex digits.
    SpanId,
    /// The parent span id is all zeros.
    ZeroSpanId,
    /// The flags are not 2 lowercase hex digits.
    Flags,
}

impl fmt::Display for ParseTraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseTraceError::Length => "a traceparent is 55 characters long",
            ParseTraceError::Version => "unsupported traceparent version (only 00 is accepted)",
            ParseTraceError::Separator => "traceparent fields must be separated by '-'",
            ParseTraceError::TraceId => "the trace id must be 32 lowercase hex digits",
            ParseTraceError::ZeroTraceId => "the trace id must not be all zeros",
            ParseTraceError::SpanId => "the parent id must be 16 lowercase hex digits",
            ParseTraceError::ZeroSpanId => "the parent id must not be all zeros",
            ParseTraceError::Flags => "the trace flags must be 2 lowercase hex digits",
        })
    }
}

impl std::error::Error for ParseTraceError {}

/// A position in a trace: the trace's id, the id of the span that is running (or that sent a
/// message), and the W3C trace flags. Cheap to copy. See the [module docs](self).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
}

impl TraceContext {
    /// The *sampled* bit of the trace flags.
    pub const SAMPLED: u8 = 0x01;

    /// A context with these parts.
    pub const fn new(trace_id: TraceId, span_id: SpanId, flags: u8) -> Self {
        Self {
            trace_id,
            span_id,
            flags,
        }
    }

    /// The start of a new trace: a random trace id and span id, flagged as sampled.
    pub fn new_root() -> Self {
        Self::new(TraceId::random(), SpanId::random(), Self::SAMPLED)
    }

    /// A new span in the same trace (random span id, same flags).
    pub fn child(&self) -> Self {
        Self::new(self.trace_id, SpanId::random(), self.flags)
    }

    /// The context current on this thread: the running handler's, or the one set by
    /// [`in_scope`](Self::in_scope) / [`scope`](Self::scope). `None` outside of those, and in
    /// handlers no subscriber is interested in.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Cell::get).ok().flatten()
    }

    /// The trace's id.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span's id (in a `traceparent`, the *parent id* of whatever receives it).
    pub const fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The W3C trace flags.
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the *sampled* flag is set.
    pub const fn is_sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// Parses a W3C `traceparent` header value, strictly: version `00`, exactly
    /// `00-<32 hex>-<16 hex>-<2 hex>` in lowercase, neither id all zeros. Anything else is an
    /// error (there is no partial result).
    pub fn parse(traceparent: &str) -> Result<Self, ParseTraceError> {
        let bytes = traceparent.as_bytes();
        if bytes.len() != 55 {
            return Err(ParseTraceError::Length);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(ParseTraceError::Separator);
        }
        if &bytes[..2] != b"00" {
            return Err(ParseTraceError::Version);
        }
        // `get` rather than indexing: the separators are ASCII, so these are char boundaries,
        // but the parse must not be able to panic whatever the input.
        let field = |range: std::ops::Range<usize>, error| traceparent.get(range).ok_or(error);
        let trace_id = field(3..35, ParseTraceError::TraceId)?.parse()?;
        let span_id = field(36..52, ParseTraceError::SpanId)?.parse()?;
        let flags = parse_hex(&bytes[53..], 2, ParseTraceError::Flags)?;
        let flags = u8::try_from(flags).map_err(|_| ParseTraceError::Flags)?;
        Ok(Self::new(trace_id, span_id, flags))
    }

    /// Runs `f` with this context as the current one, so that what it sends carries it. The
    /// previous context is back when `f` returns (or panics).
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _restore = enter(self, None);
        f()
    }

    /// Wraps `future` so that this context is the current one whenever it is polled (as
    /// `tracing`'s `Instrument` does for spans). An [`IntoFuture`] (such as an unawaited
    /// `ask`) is turned into its future inside the context too, since that is where an ask
    /// sends its message.
    pub fn scope<F: IntoFuture>(self, future: F) -> Scoped<F::IntoFuture> {
        let inner = self.in_scope(|| future.into_future());
        Scoped::new(inner, self, None)
    }
}

/// Formats the context as a `traceparent` (`00-<trace id>-<span id>-<flags>`).
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

/// Parses a `traceparent`, see [`TraceContext::parse`].
impl FromStr for TraceContext {
    type Err = ParseTraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Who sent a traced message, as far as the receiver can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An actor of this node, sending from its handler.
    Actor(ActorId),
    /// Another node (its address, `postbox://host:port`), for a message that came from there.
    Node(Arc<str>),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Actor(id) => fmt::Display::fmt(id, f),
            Origin::Node(node) => f.write_str(node),
        }
    }
}

thread_local! {
    /// The context current on this thread (see module docs). `Copy` and without a destructor,
    /// so reading it is one load: this is what every send reads.
    static CURRENT: Cell<Option<TraceContext>> = const { Cell::new(None) };
    /// Who is sending while `CURRENT` is set; read only when it is.
    static ORIGIN: RefCell<Option<Origin>> = const { RefCell::new(None) };
}

/// Restores the previous context when dropped.
struct Restore {
    context: Option<TraceContext>,
    origin: Option<Origin>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.context));
        let origin = self.origin.take();
        let _ = ORIGIN.try_with(|o| *o.borrow_mut() = origin);
    }
}

fn enter(context: TraceContext, origin: Option<Origin>) -> Restore {
    let context = CURRENT
        .try_with(|c| c.replace(Some(context)))
        .ok()
        .flatten();
    let origin = ORIGIN
        .try_with(|o| std::mem::replace(&mut *o.borrow_mut(), origin))
        .ok()
        .flatten();
    Restore { context, origin }
}

/// Runs `f` with `context` current and `origin` as the sender (for the transport: a message
/// from another node).
pub(crate) fn in_scope_from<R>(context: TraceContext, origin: Origin, f: impl FnOnce() -> R) -> R {
    let _restore = enter(context, Some(origin));
    f()
}

/// The context a message carries from its sender to its handler.
#[derive(Debug)]
pub(crate) struct Carried {
    pub(crate) context: TraceContext,
    pub(crate) origin: Option<Origin>,
}

/// What a message sent now should carry: `None` (the hot path, one thread-local read) unless
/// a context is current.
#[inline]
pub(crate) fn capture() -> Option<Carried> {
    match CURRENT.try_with(Cell::get) {
        Ok(Some(context)) => Some(capture_with(context)),
        _ => None,
    }
}

#[cold]
#[inline(never)]
fn capture_with(context: TraceContext) -> Carried {
    let origin = ORIGIN.try_with(|o| o.borrow().clone()).ok().flatten();
    Carried { context, origin }
}

/// The trace position of one traced handling: its own context, and where it came from.
pub(crate) struct Opened {
    pub(crate) context: TraceContext,
    pub(crate) parent: Option<SpanId>,
    pub(crate) sender: Option<Origin>,
}

impl Opened {
    /// A child of what the message carried, or a new root.
    pub(crate) fn new(carried: Option<Carried>) -> Self {
        match carried {
            Some(carried) => Self {
                context: carried.context.child(),
                parent: Some(carried.context.span_id()),
                sender: carried.origin,
            },
            None => Self {
                context: TraceContext::new_root(),
                parent: None,
                sender: None,
            },
        }
    }
}

pin_project! {
    /// A future with a [`TraceContext`] that is current whenever it is polled: see
    /// [`TraceContext::scope`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        #[pin]
        inner: F,
        context: TraceContext,
        origin: Option<Origin>,
    }
}

impl<F> Scoped<F> {
    pub(crate) fn new(inner: F, context: TraceContext, origin: Option<Origin>) -> Self {
        Self {
            inner,
            context,
            origin,
        }
    }

    /// The context it runs in.
    pub fn context(&self) -> TraceContext {
        self.context
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = enter(*this.context, this.origin.clone());
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_parses_into_its_parts_and_formats_back() {
        let cx = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(cx.trace_id().get(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(cx.span_id().get(), 0x00f067aa0ba902b7);
        assert_eq!(cx.flags(), 1);
        assert!(cx.is_sampled());
        assert_eq!(cx.to_string(), EXAMPLE);
        assert_eq!(EXAMPLE.parse::<TraceContext>(), Ok(cx));
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(cx.span_id().to_bytes()[..2], [0x00, 0xf0]);

        let unsampled = TraceContext::parse(&EXAMPLE.replace("-01", "-00")).unwrap();
        assert!(!unsampled.is_sampled());
        assert_eq!(unsampled.to_string(), EXAMPLE.replace("-01", "-00"));
    }

    #[test]
    fn small_ids_keep_their_leading_zeros() {
        let cx = TraceContext::new(TraceId::new(1).unwrap(), SpanId::new(2).unwrap(), 0);
        let text = cx.to_string();
        assert_eq!(
            text,
            "00-00000000000000000000000000000001-0000000000000002-00"
        );
        assert_eq!(TraceContext::parse(&text), Ok(cx));
    }

    #[test]
    fn random_contexts_round_trip() {
        for _ in 0..1_000 {
            let cx = TraceContext::new_root();
            assert_eq!(TraceContext::parse(&cx.to_string()), Ok(cx));
            let child = cx.child();
            assert_eq!(child.trace_id(), cx.trace_id());
            assert_eq!(child.flags(), cx.flags());
        }
    }

    #[test]
    fn malformed_traceparents_are_refused_with_the_reason() {
        use ParseTraceError::*;
        let cases: &[(&str, ParseTraceError)] = &[
            ("", Length),
            ("garbage", Length),
            (&EXAMPLE[..54], Length),
            (&format!("{EXAMPLE}-"), Length),
            (&format!("{EXAMPLE} "), Length),
            // A later version with extra fields: strict, so refused.
            (&format!("01{}-extra", &EXAMPLE[2..]), Length),
            (&format!("01{}", &EXAMPLE[2..]), Version),
            (&format!("ff{}", &EXAMPLE[2..]), Version),
            (&format!("0x{}", &EXAMPLE[2..]), Version),
            (&EXAMPLE.replacen('-', "_", 1), Separator),
            (&EXAMPLE.replace("-00f0", "_00f0"), Separator),
            (&EXAMPLE.replace("-01", "+01"), Separator),
            (&EXAMPLE.replace("4bf9", "4BF9"), TraceId),
            (&EXAMPLE.replace("4bf9", "4bg9"), TraceId),
            (&EXAMPLE.replace("4bf9", "+bf9"), TraceId),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
            ),
            (&EXAMPLE.replace("00f067aa", "00F067AA"), SpanId),
            (&EXAMPLE.replace("00f067aa", "00f0 7aa"), SpanId),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroSpanId,
            ),
            (&EXAMPLE.replace("-01", "-0g"), Flags),
            (&EXAMPLE.replace("-01", "-0A"), Flags),
        ];
        for (input, expected) in cases {
            assert_eq!(TraceContext::parse(input), Err(*expected), "{input:?}");
        }
    }

    #[test]
    fn multibyte_input_of_the_right_length_is_refused_without_panicking() {
        // 55 bytes with multi-byte characters where the ids are: no slicing panic.
        let input = format!("00-{}-{}-01", "é".repeat(16), "ü".repeat(8));
        assert_eq!(input.len(), 55);
        assert_eq!(TraceContext::parse(&input), Err(ParseTraceError::TraceId));
        let input = format!("00-{}é-{}-01", "a".repeat(30), "b".repeat(16));
        assert_eq!(input.len(), 55);
        assert_eq!(TraceContext::parse(&input), Err(ParseTraceError::TraceId));
        let input = format!("00-{}-{}-é", "a".repeat(32), "b".repeat(16));
        assert_eq!(input.len(), 55);
        assert_eq!(TraceContext::parse(&input), Err(ParseTraceError::Flags));
        // Every byte at every position: never a panic, never accepted unless it is hex.
        for position in 0..55 {
            for byte in [b'\0', b'G', b'z', b'-', 0xff] {
                let mut bytes = EXAMPLE.as_bytes().to_vec();
                bytes[position] = byte;
                if bytes == EXAMPLE.as_bytes() {
                    continue;
                }
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    assert!(TraceContext::parse(text).is_err(), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn ids_parse_alone_strictly() {
        assert_eq!(
            "4bf92f3577b34da6a3ce929d0e0e4736"
                .parse::<TraceId>()
                .map(TraceId::get),
            Ok(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert!("4bf92f3577b34da6a3ce929d0e0e473"
            .parse::<TraceId>()
            .is_err());
        assert_eq!(
            "0".repeat(16).parse::<SpanId>(),
            Err(ParseTraceError::ZeroSpanId)
        );
        assert_eq!(
            "00f067aa0ba902b7".parse::<SpanId>().map(SpanId::get),
            Ok(0xf067aa0ba902b7)
        );
        assert!(TraceId::new(0).is_none() && SpanId::new(0).is_none());
    }

    #[test]
    fn the_current_context_is_set_in_scope_and_restored_after() {
        assert_eq!(TraceContext::current(), None);
        let outer = TraceContext::new_root();
        let inner = TraceContext::new_root();
        outer.in_scope(|| {
            assert_eq!(TraceContext::current(), Some(outer));
            assert!(capture().is_some_and(|c| c.context == outer && c.origin.is_none()));
            in_scope_from(inner, Origin::Node("postbox://a:1".into()), || {
                assert_eq!(TraceContext::current(), Some(inner));
                let carried = capture().unwrap();
                assert_eq!(carried.origin, Some(Origin::Node("postbox://a:1".into())));
            });
            assert_eq!(TraceContext::current(), Some(outer));
            assert!(capture().unwrap().origin.is_none());
        });
        assert_eq!(TraceContext::current(), None);
        assert!(capture().is_none());
        // Restored after a panic too.
        let _ = std::panic::catch_unwind(|| outer.in_scope(|| panic!("boom")));
        assert_eq!(TraceContext::current(), None);
    }

    #[test]
    fn a_scoped_future_has_its_context_only_while_polled() {
        let cx = TraceContext::new_root();
        let future = cx.scope(async {
            let first = TraceContext::current();
            tokio::task::yield_now().await;
            (first, TraceContext::current())
        });
        assert_eq!(future.context(), cx);
        let (first, second) = crate::testkit::block_on_local(future);
        assert_eq!((first, second), (Some(cx), Some(cx)));
        assert_eq!(TraceContext::current(), None);
    }

    #[test]
    fn a_handling_is_a_child_of_what_its_message_carried_or_a_root() {
        let sender = TraceContext::new_root();
        let opened = Opened::new(Some(Carried {
            context: sender,
            origin: Some(Origin::Actor(ActorId(7))),
        }));
        assert_eq!(opened.context.trace_id(), sender.trace_id());
        assert_ne!(opened.context.span_id(), sender.span_id());
        assert_eq!(opened.parent, Some(sender.span_id()));
        assert_eq!(opened.sender.map(|s| s.to_string()).as_deref(), Some("#7"));

        let root = Opened::new(None);
        assert!(root.parent.is_none() && root.sender.is_none());
        assert!(root.context.is_sampled());
    }
}

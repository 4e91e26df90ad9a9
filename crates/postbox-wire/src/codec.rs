//! Framing and the binary layout of every frame (documented in the crate docs).
//!
//! Encoding writes straight into the caller's `BytesMut`; decoding reads from a slice of the
//! frame, with every read checked (no indexing, no panics), and hands out the payload of a
//! `Message` or `Reply` as a sub-slice of the frame's `Bytes` (no copy).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{
    ActorAddr, Challenge, Envelope, ErrorKind, Frame, FrameKind, Hello, MessageHead, NodeAddr,
    Proof, RefuseReason, RemoteError, Target, TargetRef, WireError, DEFAULT_MAX_FRAME,
};

/// The length prefix: a u32, big-endian.
const HEADER: usize = 4;

/// Flag bits of a `Message` frame.
mod message_flags {
    /// The target is a name (a string), not an id (a varint).
    pub(super) const TARGET_NAME: u8 = 0x01;
    /// A correlation id follows the tag.
    pub(super) const CORRELATION: u8 = 0x02;
    /// A sender follows.
    pub(super) const SENDER: u8 = 0x04;
    /// A trace string follows.
    pub(super) const TRACE: u8 = 0x08;
    /// Every flag this version knows.
    pub(super) const KNOWN: u8 = TARGET_NAME | CORRELATION | SENDER | TRACE;
}

/// Flag bits of a `Found` frame.
mod found_flags {
    /// An id follows.
    pub(super) const ID: u8 = 0x01;
}

/// Length-delimited framing of [`Frame`]s: a u32 big-endian length, then the frame's body
/// (whose first byte is its kind), at most `max_frame` bytes long.
///
/// As a [`Decoder`] it never panics, whatever the input; it refuses a length over `max_frame`
/// before reserving any room for it, and it returns `Ok(None)` until a whole frame has arrived.
/// As an [`Encoder`] it refuses to write a frame over `max_frame`, leaving the buffer as it
/// was.
///
/// Both nodes of a connection should use the same limit.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A codec whose frames (not counting the 4-byte length prefix) are at most `max_frame`
    /// bytes. A limit above `u32::MAX` is lowered to it, the most the prefix can announce.
    pub fn new(max_frame: usize) -> Self {
        let ceiling = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        FrameCodec {
            max_frame: max_frame.min(ceiling),
        }
    }

    /// The largest frame body, in bytes, this codec reads or writes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Default for FrameCodec {
    /// A codec with [`DEFAULT_MAX_FRAME`].
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    /// Like [`decode`](Decoder::decode), but a `Message` frame is checked and left in its
    /// bytes ([`MessageFrame`]): its tag and trace are read in place, nothing is allocated for
    /// it. Every other frame is decoded as `decode` does. Fails exactly where `decode` would.
    pub fn decode_incoming(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
        let Some(body) = self.split_frame(src)? else {
            return Ok(None);
        };
        if body.first() == Some(&FrameKind::Message.code()) {
            MessageFrame::parse(body).map(|m| Some(Incoming::Message(m)))
        } else {
            decode_body(body).map(|f| Some(Incoming::Other(f)))
        }
    }

    /// The next frame in `src`, if it is a whole `Message` frame: checked exactly as
    /// [`decode_incoming`](Self::decode_incoming) checks it and read in place — nothing is
    /// split off `src` or copied — with how many bytes of `src` it takes (advance past them
    /// once done with it). `Ok(None)` when `src` holds no whole frame or the next one is not
    /// a message: `decode_incoming` then says which (and makes room for a partial frame).
    pub fn peek_message<'a>(&self, src: &'a [u8]) -> Result<Option<Peeked<'a>>, WireError> {
        let Some(total) = self.frame_total(src)? else {
            return Ok(None);
        };
        // Not all there yet: `decode_incoming` makes room for the rest.
        let Some(body) = src.get(HEADER..total) else {
            return Ok(None);
        };
        if body.first() != Some(&FrameKind::Message.code()) {
            return Ok(None);
        }
        MessageFrame::parse(body).map(|message| Some((message, total)))
    }

    /// The length of the next frame, header included, once `src` holds its header; an error
    /// if its body is over the limit.
    fn frame_total(&self, src: &[u8]) -> Result<Option<usize>, WireError> {
        let len = match src.get(..HEADER) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            _ => return Ok(None),
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let too_large = || WireError::FrameTooLarge {
            len,
            max: self.max_frame,
        };
        if len > self.max_frame {
            return Err(too_large());
        }
        len.checked_add(HEADER).map(Some).ok_or_else(too_large)
    }

    /// The next whole frame's body (kind byte first), split off `src`.
    fn split_frame(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        let Some(total) = self.frame_total(src)? else {
            return Ok(None);
        };
        if src.len() < total {
            // At most `max_frame + 4` bytes in all: the length was checked above.
            src.reserve(total.saturating_sub(src.len()));
            return Ok(None);
        }
        src.advance(HEADER);
        Ok(Some(src.split_to(total - HEADER).freeze()))
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        match self.split_frame(src)? {
            Some(body) => decode_body(body).map(Some),
            None => Ok(None),
        }
    }
}

/// A message frame read in place by [`FrameCodec::peek_message`], and how many bytes of the
/// buffer it takes.
pub type Peeked<'a> = (MessageFrame<&'a [u8]>, usize);

/// A frame from [`FrameCodec::decode_incoming`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A `Message` frame, checked, still in its bytes.
    Message(MessageFrame),
    /// Any other frame, decoded.
    Other(Frame),
}

/// Where a name sits in a frame's body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum At {
    Id(u64),
    Name(std::ops::Range<usize>),
}

/// A `Message` frame whose fields were checked (as [`FrameCodec::decode`] checks them) and are
/// read in place: the tag, a target name and the trace are slices of the frame, the payload a
/// sub-slice of it. The body is the frame's own `Bytes` ([`FrameCodec::decode_incoming`]) or
/// borrowed from the read buffer ([`FrameCodec::peek_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFrame<B = Bytes> {
    body: B,
    target: At,
    tag: std::ops::Range<usize>,
    correlation: Option<u64>,
    /// Boxed: rare, and the frame is moved through the reader's queue.
    sender: Option<Box<ActorAddr>>,
    trace: Option<std::ops::Range<usize>>,
    payload: usize,
}

/// What a [`MessageFrame`]'s body can be: its own `Bytes`, or a slice of a read buffer.
pub trait FrameBody: AsRef<[u8]> {
    /// The body as `Bytes`: the same ones (a reference count) or a copy of the slice.
    fn to_bytes(&self) -> Bytes;
}

impl FrameBody for Bytes {
    fn to_bytes(&self) -> Bytes {
        self.clone()
    }
}

impl FrameBody for &[u8] {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<B> MessageFrame<B> {
    /// The same checked frame over `body`, which must be this frame's body byte for byte
    /// (a copy of it, or where it was copied to): nothing is read or checked again. The
    /// reader of a connection uses it to keep a queued frame's fields while its body waits
    /// in a buffer of its own (`MessageFrame<usize>`: the body's length). Over any other
    /// bytes the fields read whatever is at their offsets — never out of bounds (a slice out
    /// of range reads as empty), never a panic.
    pub fn rebody<C>(self, body: C) -> MessageFrame<C> {
        MessageFrame {
            body,
            target: self.target,
            tag: self.tag,
            correlation: self.correlation,
            sender: self.sender,
            trace: self.trace,
            payload: self.payload,
        }
    }
}

impl MessageFrame<usize> {
    /// For a frame held over its body's length ([`rebody`](Self::rebody)`(len)`): that length.
    pub fn body_len(&self) -> usize {
        self.body
    }
}

impl<B: FrameBody> MessageFrame<B> {
    /// The frame's body, kind byte first (what follows the 4-byte length on the wire).
    pub fn body(&self) -> &[u8] {
        self.body.as_ref()
    }

    fn parse(body: B) -> Result<Self, WireError> {
        let mut r = Reader {
            buf: body.as_ref(),
            pos: 1,
            frame: FrameKind::Message.label(),
        };
        let flags = r.flags("flags", message_flags::KNOWN)?;
        let target = if flags & message_flags::TARGET_NAME != 0 {
            At::Name(r.str_at("target name")?)
        } else {
            At::Id(r.varint("target id")?)
        };
        let tag = r.str_at("tag")?;
        let correlation = if flags & message_flags::CORRELATION != 0 {
            Some(r.varint("correlation")?)
        } else {
            None
        };
        let sender = if flags & message_flags::SENDER != 0 {
            let node = r.node("sender")?;
            let id = r.varint("sender id")?;
            Some(Box::new(ActorAddr { node, id }))
        } else {
            None
        };
        let trace = if flags & message_flags::TRACE != 0 {
            Some(r.str_at("trace")?)
        } else {
            None
        };
        let payload = r.pos;
        Ok(MessageFrame {
            body,
            target,
            tag,
            correlation,
            sender,
            trace,
            payload,
        })
    }

    /// The same frame with a body of its own (a copy of a borrowed one), to keep past the
    /// read buffer's next change.
    pub fn to_shared(&self) -> MessageFrame {
        MessageFrame {
            body: self.body.to_bytes(),
            target: self.target.clone(),
            tag: self.tag.clone(),
            correlation: self.correlation,
            sender: self.sender.clone(),
            trace: self.trace.clone(),
            payload: self.payload,
        }
    }

    /// A string field, checked as UTF-8 when parsed.
    fn text(&self, at: &std::ops::Range<usize>) -> &str {
        self.body
            .as_ref()
            .get(at.clone())
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }

    /// Who the message is for.
    pub fn target(&self) -> TargetRef<'_> {
        match &self.target {
            At::Id(id) => TargetRef::Id(*id),
            At::Name(at) => TargetRef::Name(self.text(at)),
        }
    }

    /// The message type's tag.
    pub fn tag(&self) -> &str {
        self.text(&self.tag)
    }

    /// The tag's bytes (UTF-8, checked when parsed): for comparing against a known tag
    /// without checking them again.
    pub fn tag_bytes(&self) -> &[u8] {
        self.body.as_ref().get(self.tag.clone()).unwrap_or_default()
    }

    /// About how many bytes the message holds: its payload, tag and trace.
    pub fn len(&self) -> usize {
        let trace = self.trace.as_ref().map_or(0, |at| at.len());
        self.payload_len() + self.tag.len() + trace
    }

    /// Whether it holds no bytes at all (never: a tag or payload is there in practice).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Some(id)` for an ask.
    pub fn correlation(&self) -> Option<u64> {
        self.correlation
    }

    /// The sending actor, if any.
    pub fn sender(&self) -> Option<&ActorAddr> {
        self.sender.as_deref()
    }

    /// The sender's `traceparent`, if any.
    pub fn trace(&self) -> Option<&str> {
        self.trace.as_ref().map(|at| self.text(at))
    }

    /// The payload, in place.
    pub fn payload_bytes(&self) -> &[u8] {
        self.body.as_ref().get(self.payload..).unwrap_or_default()
    }

    /// The payload's length.
    pub fn payload_len(&self) -> usize {
        self.body.as_ref().len().saturating_sub(self.payload)
    }
}

impl MessageFrame {
    /// The payload, as a slice of the frame's bytes (no copy).
    pub fn payload(&self) -> Bytes {
        self.body.slice(self.payload.min(self.body.len())..)
    }

    /// The owned envelope (what [`FrameCodec::decode`] gives).
    pub fn into_envelope(self) -> Envelope {
        Envelope {
            target: match self.target() {
                TargetRef::Id(id) => Target::Id(id),
                TargetRef::Name(name) => Target::Name(name.to_owned()),
            },
            tag: self.tag().to_owned().into(),
            correlation: self.correlation,
            sender: self.sender.as_deref().cloned(),
            trace: self.trace().map(str::to_owned),
            payload: self.payload(),
        }
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        encode_with_limit(frame, dst, self.max_frame)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        encode_with_limit(&frame, dst, self.max_frame)
    }
}

/// Appends one encoded frame, length prefix included, to `out`, under the
/// [`DEFAULT_MAX_FRAME`] limit; the batching writer encodes many frames into one buffer this
/// way. Use a [`FrameCodec`] for another limit.
///
/// On error (`FrameTooLarge`), `out` is left as it was.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) -> Result<(), WireError> {
    encode_with_limit(frame, out, DEFAULT_MAX_FRAME)
}

/// Appends one `Message` frame, length prefix included, to `out`, from its borrowed fields
/// and payload: the same bytes as `encode_frame` of the equivalent [`Envelope`], without
/// building one. Refuses a frame whose body would exceed `max` bytes (`FrameTooLarge`),
/// leaving `out` as it was.
pub fn encode_message(
    head: &MessageHead<'_>,
    payload: &[u8],
    out: &mut BytesMut,
    max: usize,
) -> Result<(), WireError> {
    if payload.len() > max {
        return Err(WireError::FrameTooLarge {
            len: payload.len(),
            max,
        });
    }
    let start = out.len();
    out.reserve(HEADER + message_size_hint(head, payload.len()));
    out.put_u32(0);
    encode_message_body(head, payload, out);
    finish_frame(out, start, max)
}

/// Writes the length prefix of the frame that starts at `start`, or takes the frame back out
/// if it is over `max`.
fn finish_frame(out: &mut BytesMut, start: usize, max: usize) -> Result<(), WireError> {
    let len = out.len().saturating_sub(start + HEADER);
    let prefix = match u32::try_from(len) {
        Ok(prefix) if len <= max => prefix,
        _ => {
            out.truncate(start);
            return Err(WireError::FrameTooLarge { len, max });
        }
    };
    if let Some(header) = out.get_mut(start..start + HEADER) {
        header.copy_from_slice(&prefix.to_be_bytes());
    }
    Ok(())
}

fn encode_with_limit(frame: &Frame, out: &mut BytesMut, max: usize) -> Result<(), WireError> {
    // The payload alone is too large: refuse before copying it.
    if let Frame::Message(Envelope { payload, .. }) | Frame::Reply { payload, .. } = frame {
        if payload.len() > max {
            return Err(WireError::FrameTooLarge {
                len: payload.len(),
                max,
            });
        }
    }
    let start = out.len();
    out.reserve(HEADER + size_hint(frame));
    out.put_u32(0);
    encode_body(frame, out);
    finish_frame(out, start, max)
}

/// A close upper estimate of a frame's body length, so that encoding reserves once.
fn size_hint(frame: &Frame) -> usize {
    const FIXED: usize = 48;
    match frame {
        Frame::Message(env) => message_size_hint(&head(env), env.payload.len()),
        Frame::Reply { payload, .. } => FIXED + payload.len(),
        Frame::Hello(hello) => FIXED + 32 + hello.cluster.len() + hello.node.addr.len(),
        Frame::Challenge(ch) => FIXED + 64 + ch.cluster.len() + ch.node.addr.len(),
        Frame::Refused { message, .. } => FIXED + message.len(),
        Frame::Error { error, .. } => FIXED + error.message.len(),
        Frame::Terminated { reason, .. } => FIXED + reason.len(),
        Frame::Lookup { name, .. } => FIXED + name.len(),
        Frame::Proof(_)
        | Frame::Welcome
        | Frame::Goodbye
        | Frame::Heartbeat { .. }
        | Frame::HeartbeatAck { .. }
        | Frame::Watch { .. }
        | Frame::Unwatch { .. }
        | Frame::Found { .. } => FIXED,
    }
}

/// [`size_hint`] of a `Message` frame.
fn message_size_hint(head: &MessageHead<'_>, payload: usize) -> usize {
    const FIXED: usize = 48;
    let target = match head.target {
        TargetRef::Id(_) => 0,
        TargetRef::Name(name) => name.len(),
    };
    let sender = head.sender.map_or(0, |s| s.node.addr.len() + 32);
    let trace = head.trace.map_or(0, str::len);
    FIXED + target + head.tag.len() + sender + trace + payload
}

/// The borrowed fields of an envelope.
fn head(env: &Envelope) -> MessageHead<'_> {
    MessageHead {
        target: TargetRef::from(&env.target),
        tag: &env.tag,
        correlation: env.correlation,
        sender: env.sender.as_ref(),
        trace: env.trace.as_deref(),
    }
}

fn encode_body(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Hello(hello) => {
            out.put_u8(FrameKind::Hello.code());
            out.put_u16(hello.version);
            put_str(out, &hello.cluster);
            put_node(out, &hello.node);
            out.put_slice(&hello.nonce);
        }
        Frame::Challenge(ch) => {
            out.put_u8(FrameKind::Challenge.code());
            out.put_u16(ch.version);
            put_str(out, &ch.cluster);
            put_node(out, &ch.node);
            out.put_slice(&ch.nonce);
            out.put_slice(&ch.proof);
        }
        Frame::Proof(proof) => {
            out.put_u8(FrameKind::Proof.code());
            out.put_slice(&proof.proof);
        }
        Frame::Welcome => out.put_u8(FrameKind::Welcome.code()),
        Frame::Refused { reason, message } => {
            out.put_u8(FrameKind::Refused.code());
            out.put_u8(reason.code());
            put_str(out, message);
        }
        Frame::Goodbye => out.put_u8(FrameKind::Goodbye.code()),
        Frame::Message(env) => encode_message_body(&head(env), &env.payload, out),
        Frame::Reply {
            correlation,
            payload,
        } => {
            out.put_u8(FrameKind::Reply.code());
            put_varint(out, *correlation);
            out.put_slice(payload);
        }
        Frame::Error { correlation, error } => {
            out.put_u8(FrameKind::Error.code());
            put_varint(out, *correlation);
            out.put_u8(error.kind.code());
            put_str(out, &error.message);
        }
        Frame::Heartbeat { seq } => {
            out.put_u8(FrameKind::Heartbeat.code());
            put_varint(out, *seq);
        }
        Frame::HeartbeatAck { seq } => {
            out.put_u8(FrameKind::HeartbeatAck.code());
            put_varint(out, *seq);
        }
        Frame::Watch { watcher, target } => {
            out.put_u8(FrameKind::Watch.code());
            put_varint(out, *watcher);
            put_varint(out, *target);
        }
        Frame::Unwatch { watcher, target } => {
            out.put_u8(FrameKind::Unwatch.code());
            put_varint(out, *watcher);
            put_varint(out, *target);
        }
        Frame::Terminated {
            target,
            watcher,
            reason,
        } => {
            out.put_u8(FrameKind::Terminated.code());
            put_varint(out, *target);
            put_varint(out, *watcher);
            put_str(out, reason);
        }
        Frame::Lookup { correlation, name } => {
            out.put_u8(FrameKind::Lookup.code());
            put_varint(out, *correlation);
            put_str(out, name);
        }
        Frame::Found { correlation, id } => {
            out.put_u8(FrameKind::Found.code());
            out.put_u8(if id.is_some() { found_flags::ID } else { 0 });
            put_varint(out, *correlation);
            if let Some(id) = id {
                put_varint(out, *id);
            }
        }
    }
}

fn encode_message_body(head: &MessageHead<'_>, payload: &[u8], out: &mut BytesMut) {
    // The head is a dozen small fields: written into a stack buffer and appended with the
    // payload in two copies, rather than one `BufMut` call (each checking for room) per
    // byte and varint. A head too long for the buffer (long names) is written straight into
    // `out`; the bytes are the same either way.
    let mut stack = StackHead::default();
    if write_message_head(&mut stack, head).is_some() {
        out.extend_from_slice(stack.bytes());
        out.extend_from_slice(payload);
        return;
    }
    encode_message_body_by_field(head, payload, out);
}

/// The body written field by field into `out` (what a head too long for the stack takes).
fn encode_message_body_by_field(head: &MessageHead<'_>, payload: &[u8], out: &mut BytesMut) {
    // Writing into a `BytesMut` cannot fail.
    let _ = write_message_head(out, head);
    out.put_slice(payload);
}

/// Where a message head is written: a `BytesMut` (always room) or a [`StackHead`] (`None`
/// once full).
trait HeadOut {
    fn put(&mut self, bytes: &[u8]) -> Option<()>;

    fn varint(&mut self, mut value: u64) -> Option<()> {
        let mut buf = [0u8; 10];
        let mut len = 0;
        while value >= 0x80 {
            buf[len] = (value as u8) | 0x80;
            value >>= 7;
            len += 1;
        }
        buf[len] = value as u8;
        self.put(buf.get(..=len)?)
    }

    fn str(&mut self, s: &str) -> Option<()> {
        self.varint(s.len() as u64)?;
        self.put(s.as_bytes())
    }
}

impl HeadOut for BytesMut {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        self.extend_from_slice(bytes);
        Some(())
    }
}

/// A message frame's head, written on the stack (see `encode_message_body`).
struct StackHead {
    buf: [u8; 160],
    len: usize,
}

impl Default for StackHead {
    fn default() -> Self {
        Self {
            buf: [0; 160],
            len: 0,
        }
    }
}

impl StackHead {
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl HeadOut for StackHead {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    // Byte by byte into the buffer: no intermediate copy (the common case's hot path).
    fn varint(&mut self, mut value: u64) -> Option<()> {
        while value >= 0x80 {
            *self.buf.get_mut(self.len)? = (value as u8) | 0x80;
            self.len += 1;
            value >>= 7;
        }
        *self.buf.get_mut(self.len)? = value as u8;
        self.len += 1;
        Some(())
    }
}

/// A message frame's body up to its payload; `None` if `out` ran out of room.
fn write_message_head(out: &mut impl HeadOut, head: &MessageHead<'_>) -> Option<()> {
    let mut flags = 0;
    if matches!(head.target, TargetRef::Name(_)) {
        flags |= message_flags::TARGET_NAME;
    }
    if head.correlation.is_some() {
        flags |= message_flags::CORRELATION;
    }
    if head.sender.is_some() {
        flags |= message_flags::SENDER;
    }
    if head.trace.is_some() {
        flags |= message_flags::TRACE;
    }
    out.put(&[FrameKind::Message.code(), flags])?;
    match head.target {
        TargetRef::Id(id) => out.varint(id)?,
        TargetRef::Name(name) => out.str(name)?,
    }
    out.str(head.tag)?;
    if let Some(correlation) = head.correlation {
        out.varint(correlation)?;
    }
    if let Some(sender) = head.sender {
        out.str(&sender.node.addr)?;
        out.varint(sender.node.node_id)?;
        out.varint(sender.node.incarnation)?;
        out.varint(sender.id)?;
    }
    if let Some(trace) = head.trace {
        out.str(trace)?;
    }
    Some(())
}

/// Unsigned LEB128: 7 bits a byte, least significant group first, high bit = more follow.
fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_varint(out, s.len() as u64);
    out.put_slice(s.as_bytes());
}

fn put_node(out: &mut BytesMut, node: &NodeAddr) {
    put_str(out, &node.addr);
    put_varint(out, node.node_id);
    put_varint(out, node.incarnation);
}

/// Decodes one frame body (kind byte first, length prefix already removed).
fn decode_body(body: Bytes) -> Result<Frame, WireError> {
    let Some(&code) = body.first() else {
        return Err(WireError::Malformed(
            "empty frame: a length of 0 leaves no room for the kind byte".into(),
        ));
    };
    let Some(kind) = FrameKind::from_code(code) else {
        return Err(WireError::UnknownKind(code));
    };
    let mut r = Reader {
        buf: &body,
        pos: 1,
        frame: kind.label(),
    };
    match kind {
        FrameKind::Hello => {
            let version = r.u16("version")?;
            let cluster = r.str("cluster")?;
            let node = r.node("node")?;
            let nonce = r.array32("nonce")?;
            // Later versions may append fields: not checked for the end (crate docs).
            Ok(Frame::Hello(Hello {
                version,
                cluster,
                node,
                nonce,
            }))
        }
        FrameKind::Challenge => {
            let version = r.u16("version")?;
            let cluster = r.str("cluster")?;
            let node = r.node("node")?;
            let nonce = r.array32("nonce")?;
            let proof = r.array32("proof")?;
            Ok(Frame::Challenge(Challenge {
                version,
                cluster,
                node,
                nonce,
                proof,
            }))
        }
        FrameKind::Proof => {
            let proof = r.array32("proof")?;
            r.end()?;
            Ok(Frame::Proof(Proof { proof }))
        }
        FrameKind::Welcome => {
            r.end()?;
            Ok(Frame::Welcome)
        }
        FrameKind::Refused => {
            let code = r.u8("reason")?;
            let reason = RefuseReason::from_code(code)
                .ok_or_else(|| r.error("reason", format_args!("unknown code {code}")))?;
            let message = r.str("message")?;
            Ok(Frame::Refused { reason, message })
        }
        FrameKind::Goodbye => {
            r.end()?;
            Ok(Frame::Goodbye)
        }
        FrameKind::Message => decode_message(r, &body).map(Frame::Message),
        FrameKind::Reply => {
            let correlation = r.varint("correlation")?;
            let payload = r.rest(&body)?;
            Ok(Frame::Reply {
                correlation,
                payload,
            })
        }
        FrameKind::Error => {
            let correlation = r.varint("correlation")?;
            let code = r.u8("error kind")?;
            let kind = ErrorKind::from_code(code)
                .ok_or_else(|| r.error("error kind", format_args!("unknown code {code}")))?;
            let message = r.str("message")?;
            r.end()?;
            Ok(Frame::Error {
                correlation,
                error: RemoteError { kind, message },
            })
        }
        FrameKind::Heartbeat => {
            let seq = r.varint("seq")?;
            r.end()?;
            Ok(Frame::Heartbeat { seq })
        }
        FrameKind::HeartbeatAck => {
            let seq = r.varint("seq")?;
            r.end()?;
            Ok(Frame::HeartbeatAck { seq })
        }
        FrameKind::Watch | FrameKind::Unwatch => {
            let watcher = r.varint("watcher")?;
            let target = r.varint("target")?;
            r.end()?;
            Ok(if kind == FrameKind::Watch {
                Frame::Watch { watcher, target }
            } else {
                Frame::Unwatch { watcher, target }
            })
        }
        FrameKind::Terminated => {
            let target = r.varint("target")?;
            let watcher = r.varint("watcher")?;
            let reason = r.str("reason")?;
            r.end()?;
            Ok(Frame::Terminated {
                target,
                watcher,
                reason,
            })
        }
        FrameKind::Lookup => {
            let correlation = r.varint("correlation")?;
            let name = r.str("name")?;
            r.end()?;
            Ok(Frame::Lookup { correlation, name })
        }
        FrameKind::Found => {
            let flags = r.flags("flags", found_flags::ID)?;
            let correlation = r.varint("correlation")?;
            let id = if flags & found_flags::ID != 0 {
                Some(r.varint("id")?)
            } else {
                None
            };
            r.end()?;
            Ok(Frame::Found { correlation, id })
        }
    }
}

fn decode_message(mut r: Reader<'_>, body: &Bytes) -> Result<Envelope, WireError> {
    let flags = r.flags("flags", message_flags::KNOWN)?;
    let target = if flags & message_flags::TARGET_NAME != 0 {
        Target::Name(r.str("target name")?)
    } else {
        Target::Id(r.varint("target id")?)
    };
    let tag = r.str("tag")?;
    let correlation = if flags & message_flags::CORRELATION != 0 {
        Some(r.varint("correlation")?)
    } else {
        None
    };
    let sender = if flags & message_flags::SENDER != 0 {
        let node = r.node("sender")?;
        let id = r.varint("sender id")?;
        Some(ActorAddr { node, id })
    } else {
        None
    };
    let trace = if flags & message_flags::TRACE != 0 {
        Some(r.str("trace")?)
    } else {
        None
    };
    let payload = r.rest(body)?;
    Ok(Envelope {
        target,
        tag: tag.into(),
        correlation,
        sender,
        trace,
        payload,
    })
}

/// Checked reads from a frame body. Every error names the frame and the field.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    frame: &'static str,
}

impl<'a> Reader<'a> {
    fn error(&self, field: &str, problem: impl fmt::Display) -> WireError {
        WireError::Malformed(format!("{} frame, {field}: {problem}", self.frame))
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], WireError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end));
        match bytes {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.error(
                field,
                format_args!(
                    "truncated: needs {n} bytes, the frame has {} left",
                    self.remaining()
                ),
            )),
        }
    }

    fn u8(&mut self, field: &str) -> Result<u8, WireError> {
        match self.buf.get(self.pos) {
            Some(&byte) => {
                self.pos += 1;
                Ok(byte)
            }
            None => Err(self.error(field, "truncated: the frame ends before it")),
        }
    }

    fn u16(&mut self, field: &str) -> Result<u16, WireError> {
        match self.take(2, field)? {
            &[a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(self.error(field, "truncated")),
        }
    }

    fn array32(&mut self, field: &str) -> Result<[u8; 32], WireError> {
        let bytes = self.take(32, field)?;
        <[u8; 32]>::try_from(bytes).map_err(|_| self.error(field, "truncated"))
    }

    fn flags(&mut self, field: &str, known: u8) -> Result<u8, WireError> {
        let flags = self.u8(field)?;
        if flags & !known != 0 {
            return Err(self.error(
                field,
                format_args!("unknown flag bits 0x{:02x}", flags & !known),
            ));
        }
        Ok(flags)
    }

    fn varint(&mut self, field: &str) -> Result<u64, WireError> {
        let mut value = 0u64;
        for group in 0..10 {
            let byte = self.u8(field)?;
            // The tenth byte holds bit 63 only.
            if group == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * group);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(field, "varint longer than a u64"))
    }

    fn str(&mut self, field: &str) -> Result<String, WireError> {
        let at = self.str_at(field)?;
        Ok(self
            .buf
            .get(at)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
            .to_owned())
    }

    /// Where the next length-prefixed UTF-8 string is, checked.
    fn str_at(&mut self, field: &str) -> Result<std::ops::Range<usize>, WireError> {
        let len = self.varint(field)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let start = self.pos;
        let bytes = self.take(len, field)?;
        // Tags, names and traces are ASCII in practice: a word-at-a-time check first.
        if bytes.is_ascii() {
            return Ok(start..self.pos);
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(start..self.pos),
            Err(err) => Err(self.error(field, format_args!("not UTF-8 ({err})"))),
        }
    }

    fn node(&mut self, field: &str) -> Result<NodeAddr, WireError> {
        let addr = self.str(field)?;
        let node_id = self.varint(field)?;
        let incarnation = self.varint(field)?;
        Ok(NodeAddr {
            addr,
            node_id,
            incarnation,
        })
    }

    /// The rest of the frame, as a slice of `body` (which `self.buf` borrows from): no copy.
    fn rest(&mut self, body: &Bytes) -> Result<Bytes, WireError> {
        if self.pos > body.len() {
            return Err(self.error("payload", "read past the end of the frame"));
        }
        let rest = body.slice(self.pos..);
        self.pos = body.len();
        Ok(rest)
    }

    /// Checks that every byte of the frame was read.
    fn end(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(
                "end",
                format_args!("{n} unexpected bytes after the last field"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(buf: &[u8]) -> Reader<'_> {
        Reader {
            buf,
            pos: 0,
            frame: "test",
        }
    }

    #[test]
    fn a_head_written_on_the_stack_is_the_head_written_field_by_field() {
        let sender = ActorAddr {
            node: NodeAddr {
                addr: "10.0.0.7:4000".into(),
                node_id: 7,
                incarnation: u64::MAX,
            },
            id: 1 << 40,
        };
        let long = "t".repeat(300);
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let targets = [
            TargetRef::Id(0),
            TargetRef::Id(u64::MAX),
            TargetRef::Name("user/counter"),
        ];
        for target in targets {
            for tag in ["bench.Blob", "é.Ünïcode", long.as_str(), ""] {
                for correlation in [None, Some(0), Some(u64::MAX)] {
                    for sender in [None, Some(&sender)] {
                        for trace in [None, Some(trace)] {
                            let head = MessageHead {
                                target,
                                tag,
                                correlation,
                                sender,
                                trace,
                            };
                            let (mut fast, mut slow) = (BytesMut::new(), BytesMut::new());
                            encode_message_body(&head, b"payload", &mut fast);
                            encode_message_body_by_field(&head, b"payload", &mut slow);
                            assert_eq!(fast, slow, "{head:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_peeked_message_is_what_decode_incoming_splits_off_and_other_frames_are_left_to_it() {
        let message = |trace: Option<&str>| {
            Frame::Message(Envelope {
                target: Target::Name("user/counter".into()),
                tag: "bench.Blob".into(),
                correlation: Some(42),
                sender: None,
                trace: trace.map(str::to_owned),
                payload: Bytes::from_static(b"payload"),
            })
        };
        let mut buf = BytesMut::new();
        encode_frame(
            &message(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )),
            &mut buf,
        )
        .unwrap();
        encode_frame(&Frame::Heartbeat { seq: 7 }, &mut buf).unwrap();
        let mut partial = BytesMut::new();
        encode_frame(&message(None), &mut partial).unwrap();
        buf.extend_from_slice(&partial[..partial.len() - 1]);
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);

        let (peeked, taken) = codec.peek_message(&buf).unwrap().unwrap();
        let peeked = peeked.to_shared();
        let mut split = buf.clone();
        let Some(Incoming::Message(decoded)) = codec.decode_incoming(&mut split).unwrap() else {
            panic!("a message");
        };
        assert_eq!(peeked, decoded);
        assert_eq!(taken, buf.len() - split.len());
        buf.advance(taken);
        // A heartbeat is not a message, and half a frame is not a frame.
        assert_eq!(codec.peek_message(&buf).unwrap(), None);
        assert!(matches!(
            codec.decode_incoming(&mut buf).unwrap(),
            Some(Incoming::Other(Frame::Heartbeat { seq: 7 }))
        ));
        assert_eq!(codec.peek_message(&buf).unwrap(), None);
        assert_eq!(codec.decode_incoming(&mut buf).unwrap(), None);

        // Refused where decode_incoming refuses: a length over the limit, a bad message.
        let mut small = FrameCodec::new(4);
        let mut big = BytesMut::new();
        encode_frame(&message(None), &mut big).unwrap();
        assert!(matches!(
            small.peek_message(&big),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(small.decode_incoming(&mut big.clone()).is_err());
        let mut bad = BytesMut::new();
        encode_frame(&message(None), &mut bad).unwrap();
        bad[HEADER + 1] = 0xff; // unknown flags
        let peek_error = codec.peek_message(&bad).unwrap_err().to_string();
        let decode_error = codec.decode_incoming(&mut bad).unwrap_err().to_string();
        assert_eq!(peek_error, decode_error);
    }

    #[test]
    fn a_message_moved_to_a_copy_of_its_body_reads_the_same() {
        let frame = Frame::Message(Envelope {
            target: Target::Name("user/counter".into()),
            tag: "bench.Blob".into(),
            correlation: Some(42),
            sender: None,
            trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            payload: Bytes::from_static(b"payload"),
        });
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf).unwrap();
        let codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        let (peeked, taken) = codec.peek_message(&buf).unwrap().unwrap();
        assert_eq!(peeked.body(), &buf[HEADER..taken]);
        let mut elsewhere = b"earlier bodies ".to_vec();
        let start = elsewhere.len();
        elsewhere.extend_from_slice(peeked.body());
        let expected = peeked.to_shared();
        let held = peeked.rebody(taken - HEADER);
        drop(buf);
        let moved = held.rebody(&elsewhere[start..]);
        assert_eq!(moved.to_shared(), expected);
        assert_eq!(moved.tag(), "bench.Blob");
        assert_eq!(moved.payload_bytes(), b"payload");
        assert_eq!(moved.target(), TargetRef::Name("user/counter"));
        // Over bytes that are not its body it reads nonsense, but within bounds.
        let short = expected.rebody(&b"xy"[..]);
        assert_eq!(short.tag(), "");
        assert_eq!(short.payload_bytes(), b"");
    }

    #[test]
    fn varints_round_trip_at_every_group_boundary() {
        let mut values = vec![0, 1, u64::MAX, u64::MAX - 1];
        for bits in 1..64 {
            values.extend([(1u64 << bits) - 1, 1u64 << bits, (1u64 << bits) + 1]);
        }
        for value in values {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            let expected_len = (64 - value.leading_zeros()).div_ceil(7).max(1) as usize;
            assert_eq!(out.len(), expected_len, "length of {value}");
            let mut r = reader(&out);
            assert_eq!(r.varint("v").unwrap(), value);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn varint_overflow_and_truncation_are_malformed() {
        // Ten bytes whose last carries more than bit 63.
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        let err = reader(&too_big).varint("v").unwrap_err();
        assert!(
            err.to_string().contains("varint longer than a u64"),
            "{err}"
        );
        // Eleven continuation bytes.
        let err = reader(&[0x80; 11]).varint("v").unwrap_err();
        assert!(
            err.to_string().contains("varint longer than a u64"),
            "{err}"
        );
        // A continuation bit, then the end.
        let err = reader(&[0x80]).varint("v").unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // u64::MAX itself is fine.
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(reader(&max).varint("v").unwrap(), u64::MAX);
    }

    #[test]
    fn a_string_longer_than_the_frame_is_refused_without_allocating_for_it() {
        // Announces u64::MAX bytes.
        let mut buf = vec![0xff; 9];
        buf.push(0x01);
        let err = reader(&buf).str("s").unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn encode_message_writes_the_bytes_of_the_equivalent_envelope() {
        let sender = ActorAddr {
            node: NodeAddr {
                addr: "10.0.0.7:4000".into(),
                node_id: 3,
                incarnation: 9,
            },
            id: 12,
        };
        let envelopes = [
            Envelope::new(7, "a.Tag", Bytes::from_static(&[1; 100])),
            Envelope {
                target: Target::Name("counter".into()),
                tag: "b".into(),
                correlation: Some(300),
                sender: Some(sender),
                trace: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                payload: Bytes::new(),
            },
        ];
        for envelope in envelopes {
            let mut whole = BytesMut::from(&b"before"[..]);
            let mut borrowed = whole.clone();
            encode_frame(&Frame::Message(envelope.clone()), &mut whole).unwrap();
            encode_message(&head(&envelope), &envelope.payload, &mut borrowed, 1 << 20).unwrap();
            assert_eq!(whole, borrowed);
        }
        // Over the limit: refused, the buffer untouched.
        let envelope = Envelope::new(7, "a.Tag", Bytes::from_static(&[1; 100]));
        let mut out = BytesMut::from(&b"x"[..]);
        let err = encode_message(&head(&envelope), &envelope.payload, &mut out, 104).unwrap_err();
        assert!(matches!(err, WireError::FrameTooLarge { .. }), "{err}");
        assert_eq!(&out[..], b"x");
    }

    #[test]
    fn a_message_decoded_in_place_reads_as_the_decoded_envelope() {
        let sender = ActorAddr {
            node: NodeAddr {
                addr: "10.0.0.7:4000".into(),
                node_id: 3,
                incarnation: 9,
            },
            id: 12,
        };
        let frames = [
            Frame::Message(Envelope::new(7, "a.Tag", Bytes::from_static(&[1; 100]))),
            Frame::Message(Envelope {
                target: Target::Name("counter".into()),
                tag: "b".into(),
                correlation: Some(300),
                sender: Some(sender),
                trace: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                payload: Bytes::new(),
            }),
            Frame::Heartbeat { seq: 4 },
        ];
        let mut buf = BytesMut::new();
        for frame in &frames {
            encode_frame(frame, &mut buf).unwrap();
        }
        let mut codec = FrameCodec::default();
        for frame in frames {
            let incoming = codec.decode_incoming(&mut buf).unwrap().unwrap();
            match (incoming, frame) {
                (Incoming::Message(message), Frame::Message(envelope)) => {
                    assert_eq!(message.tag(), envelope.tag);
                    assert_eq!(message.tag_bytes(), envelope.tag.as_bytes());
                    let trace = envelope.trace.as_ref().map_or(0, String::len);
                    assert_eq!(
                        message.len(),
                        envelope.payload.len() + envelope.tag.len() + trace
                    );
                    assert_eq!(message.target(), TargetRef::from(&envelope.target));
                    assert_eq!(message.payload_len(), envelope.payload.len());
                    assert_eq!(message.into_envelope(), envelope);
                }
                (Incoming::Other(decoded), frame) => assert_eq!(decoded, frame),
                (incoming, frame) => panic!("{incoming:?} for {frame:?}"),
            }
        }
        assert_eq!(codec.decode_incoming(&mut buf).unwrap(), None);
    }

    #[test]
    fn a_message_decoded_in_place_fails_where_decode_fails() {
        let frame = Frame::Message(Envelope::new("name", "tag", Bytes::from_static(b"p")));
        let mut whole = BytesMut::new();
        encode_frame(&frame, &mut whole).unwrap();
        // Every truncation of the body (a shorter length prefix) and a bad UTF-8 byte in
        // the tag: the same outcome both ways.
        let mut cases = Vec::new();
        for cut in 1..whole.len() - HEADER {
            let mut bytes = BytesMut::new();
            bytes.put_u32(cut as u32);
            bytes.put_slice(&whole[HEADER..HEADER + cut]);
            cases.push(bytes);
        }
        let mut bad = whole.clone();
        let tag_at = bad.iter().rposition(|&b| b == b't').unwrap();
        bad[tag_at] = 0xff;
        cases.push(bad);
        for case in cases {
            let decoded = FrameCodec::default().decode(&mut case.clone());
            let incoming = FrameCodec::default().decode_incoming(&mut case.clone());
            match (decoded, incoming) {
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (Ok(Some(Frame::Message(a))), Ok(Some(Incoming::Message(b)))) => {
                    assert_eq!(a, b.into_envelope())
                }
                (a, b) => panic!("{a:?} but {b:?}"),
            }
        }
    }

    #[test]
    fn the_payload_of_a_decoded_message_shares_the_frame_buffer() {
        let frame = Frame::Message(Envelope::new(7, "t", Bytes::from_static(&[9; 100])));
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf).unwrap();
        let base = buf.as_ptr() as usize;
        let decoded = FrameCodec::default().decode(&mut buf).unwrap().unwrap();
        let Frame::Message(env) = decoded else {
            panic!("not a message")
        };
        let at = env.payload.as_ptr() as usize;
        assert!(
            at > base && at < base + 200,
            "payload was copied out of the frame buffer"
        );
    }
}

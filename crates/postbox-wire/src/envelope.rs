//! The envelope of a remote message.

use bytes::Bytes;
use std::borrow::Cow;

use crate::{ActorAddr, Target};

/// One message for an actor on another node: the body of a [`Frame::Message`](crate::Frame).
///
/// The payload is opaque to this crate: the sender serialized it (typically with
/// [`to_payload`](crate::to_payload)) and the receiver picks the type to decode it as from
/// `tag`. A decoded envelope's payload is a slice of the frame's buffer, not a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Who the message is for on the receiving node.
    pub target: Target,
    /// The explicit, stable tag of the message's type, registered on both nodes. Borrowed on
    /// the sending side (tags are `&'static str` constants), owned when decoded.
    pub tag: Cow<'static, str>,
    /// `Some(id)` for an ask: the receiver answers with a `Reply` or an `Error` frame carrying
    /// the same id.
    pub correlation: Option<u64>,
    /// The sending actor, if the message has one (it may be told to reply or be watched).
    pub sender: Option<ActorAddr>,
    /// The sender's trace context as a W3C `traceparent`
    /// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), present when the message was
    /// sent inside a trace. This crate carries it opaque: `postbox-remote` writes it from the
    /// message's context and parses it (strictly, ignoring a malformed one) on arrival.
    pub trace: Option<String>,
    /// The serialized message.
    pub payload: Bytes,
}

impl Envelope {
    /// An envelope for a `tell`: no correlation, no sender, no trace.
    pub fn new(
        target: impl Into<Target>,
        tag: impl Into<Cow<'static, str>>,
        payload: Bytes,
    ) -> Self {
        Envelope {
            target: target.into(),
            tag: tag.into(),
            correlation: None,
            sender: None,
            trace: None,
            payload,
        }
    }
}

/// Who a message is for, borrowed (see [`Target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetRef<'a> {
    /// The actor with this id on the receiving node.
    Id(u64),
    /// The actor registered under this name on the receiving node.
    Name(&'a str),
}

impl<'a> From<&'a Target> for TargetRef<'a> {
    fn from(target: &'a Target) -> Self {
        match target {
            Target::Id(id) => TargetRef::Id(*id),
            Target::Name(name) => TargetRef::Name(name),
        }
    }
}

/// The fields of a `Message` frame ahead of its payload, borrowed: what a sender that encodes
/// messages straight into its write buffer hands to [`encode_message`](crate::encode_message)
/// (no [`Envelope`], no payload `Bytes`). Same layout on the wire as an [`Envelope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHead<'a> {
    /// Who the message is for.
    pub target: TargetRef<'a>,
    /// The message type's tag.
    pub tag: &'a str,
    /// `Some(id)` for an ask.
    pub correlation: Option<u64>,
    /// The sending actor, if any.
    pub sender: Option<&'a ActorAddr>,
    /// The sender's `traceparent`, if any.
    pub trace: Option<&'a str>,
}

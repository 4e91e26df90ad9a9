//! What regions say to each other across nodes. Every kind has a stable tag; payloads are
//! MessagePack (the transport's codec).

use postbox::{AskError, Message, RemoteFailure};
use postbox_remote::remote_message;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Bytes that serialize as a MessagePack `bin` (not as an array of numbers).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Bin(pub(crate) Vec<u8>);

impl fmt::Debug for Bin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bin({} bytes)", self.0.len())
    }
}

impl Serialize for Bin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bin;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bin, E> {
                Ok(Bin(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bin, E> {
                Ok(Bin(v))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Bin, S::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(byte) = seq.next_element::<u8>()? {
                    out.push(byte);
                }
                Ok(Bin(out))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// A message for an entity, encoded: told (`Deliver`) or asked (`DeliverAsk`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The entity id.
    pub(crate) entity: String,
    /// The message type's tag.
    pub(crate) tag: String,
    /// The encoded message.
    pub(crate) payload: Bin,
    /// How many regions forwarded it so far.
    pub(crate) hops: u8,
    /// Sent by a region that just handed the entity's shard off, from its buffer: the new
    /// home delivers these before what it buffered itself.
    pub(crate) handed_off: bool,
}

/// A told message for an entity.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Deliver(pub(crate) Envelope);

impl Message for Deliver {
    type Reply = ();
    remote_message!("postbox.sharding.Deliver");
}

/// An asked message for an entity; the reply is the entity's reply, encoded.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DeliverAsk(pub(crate) Envelope);

impl Message for DeliverAsk {
    type Reply = WireReply;
    remote_message!("postbox.sharding.DeliverAsk");
}

/// An entity's reply across nodes.
pub(crate) type WireReply = Result<Bin, WireFailure>;

/// An [`AskError`] across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireFailure {
    Timeout(u64),
    Stopped,
    Panicked,
    NoReply,
    NoRoutees,
    NodeDown,
    UnknownTarget,
    UnknownTag,
    Undecodable,
    Unencodable,
    NotRemotable,
    Refused,
    TooLarge,
}

impl From<AskError> for WireFailure {
    fn from(error: AskError) -> Self {
        match error {
            AskError::Timeout(limit) => {
                WireFailure::Timeout(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX))
            }
            AskError::Stopped => WireFailure::Stopped,
            AskError::Panicked => WireFailure::Panicked,
            AskError::NoReply => WireFailure::NoReply,
            AskError::NoRoutees => WireFailure::NoRoutees,
            AskError::NodeDown => WireFailure::NodeDown,
            AskError::Remote(failure) => match failure {
                RemoteFailure::UnknownTarget => WireFailure::UnknownTarget,
                RemoteFailure::UnknownTag => WireFailure::UnknownTag,
                RemoteFailure::Undecodable => WireFailure::Undecodable,
                RemoteFailure::Unencodable => WireFailure::Unencodable,
                RemoteFailure::NotRemotable => WireFailure::NotRemotable,
                RemoteFailure::TooLarge => WireFailure::TooLarge,
                _ => WireFailure::Refused,
            },
            _ => WireFailure::Refused,
        }
    }
}

impl From<WireFailure> for AskError {
    fn from(failure: WireFailure) -> Self {
        match failure {
            WireFailure::Timeout(ms) => AskError::Timeout(Duration::from_millis(ms)),
            WireFailure::Stopped => AskError::Stopped,
            WireFailure::Panicked => AskError::Panicked,
            WireFailure::NoReply => AskError::NoReply,
            WireFailure::NoRoutees => AskError::NoRoutees,
            WireFailure::NodeDown => AskError::NodeDown,
            WireFailure::UnknownTarget => AskError::Remote(RemoteFailure::UnknownTarget),
            WireFailure::UnknownTag => AskError::Remote(RemoteFailure::UnknownTag),
            WireFailure::Undecodable => AskError::Remote(RemoteFailure::Undecodable),
            WireFailure::Unencodable => AskError::Remote(RemoteFailure::Unencodable),
            WireFailure::NotRemotable => AskError::Remote(RemoteFailure::NotRemotable),
            WireFailure::Refused => AskError::Remote(RemoteFailure::Refused),
            WireFailure::TooLarge => AskError::Remote(RemoteFailure::TooLarge),
        }
    }
}

/// "May I host this shard?" — asked of every other region of the type before activating it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Acquire {
    pub(crate) shard: u32,
    /// The asking node's id and incarnation.
    pub(crate) from: (u64, u64),
}

impl Message for Acquire {
    type Reply = AcquireAnswer;
    remote_message!("postbox.sharding.Acquire");
}

/// The answer to [`Acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AcquireAnswer {
    /// This region does not host the shard. It forwarded `handed` messages of its last
    /// hand-off of the shard to the asker; the asker delivers those first.
    Free { handed: u64 },
    /// This region hosts the shard (it believes it is its home, or is handing it off): ask
    /// again later.
    Held,
}

/// "The shard you are waiting for is free now": sent by a region that finished handing a
/// shard off, to its new home, after the messages it buffered.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Nudge {
    pub(crate) shard: u32,
}

impl Message for Nudge {
    type Reply = ();
    remote_message!("postbox.sharding.Nudge");
}

/// "This node is leaving: do not count it as a home any more" — told by a leaving region to
/// every other region of its type, so that messages stop bouncing between the leaver and
/// regions that have not yet seen it leave.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Leaving {
    pub(crate) node: (u64, u64),
}

impl Message for Leaving {
    type Reply = ();
    remote_message!("postbox.sharding.Leaving");
}

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

/// An [`Envelope`] read in place from its encoding: nothing copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EnvelopeRef<'a> {
    /// The entity id's bytes (UTF-8 unchecked: the hot path looks them up as bytes).
    pub(crate) entity: &'a [u8],
    /// The message tag's bytes (unchecked, likewise).
    pub(crate) tag: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) handed_off: bool,
}

/// The envelope's encoding, as serde writes `Envelope` (rmp_serde writes a struct as an
/// array of its fields): `[entity: str, tag: str, payload: bin, hops: uint, handed_off: bool]`.
/// `None` if `bytes` is not that (the regular decode then says why).
pub(crate) fn read_envelope(bytes: &[u8]) -> Option<EnvelopeRef<'_>> {
    // By hand rather than through rmp's readers: this runs for every told message on the
    // receiving node's hot path, and reads three headers and two short strings.
    let mut rest = bytes;
    match take(&mut rest, 1)? {
        [0x95] => {}
        [0xdc] if take(&mut rest, 2)? == [0, 5] => {}
        [0xdd] if take(&mut rest, 4)? == [0, 0, 0, 5] => {}
        _ => return None,
    }
    let entity = take_str(&mut rest)?;
    let tag = take_str(&mut rest)?;
    let len = match take(&mut rest, 1)? {
        [0xc4] => usize::from(take(&mut rest, 1)?[0]),
        [0xc5] => usize::from(u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?)),
        [0xc6] => usize::try_from(u32::from_be_bytes(take(&mut rest, 4)?.try_into().ok()?)).ok()?,
        _ => return None,
    };
    let payload = take(&mut rest, len)?;
    // hops: any unsigned integer (its value matters only to the region's path).
    match take(&mut rest, 1)? {
        [0x00..=0x7f] => {}
        [0xcc] => {
            take(&mut rest, 1)?;
        }
        [0xcd] => {
            take(&mut rest, 2)?;
        }
        [0xce] => {
            take(&mut rest, 4)?;
        }
        [0xcf] => {
            take(&mut rest, 8)?;
        }
        _ => return None,
    }
    let handed_off = match take(&mut rest, 1)? {
        [0xc2] => false,
        [0xc3] => true,
        _ => return None,
    };
    Some(EnvelopeRef {
        entity,
        tag,
        payload,
        handed_off,
    })
}

/// The next `n` bytes.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (taken, after) = (rest.get(..n)?, rest.get(n..)?);
    *rest = after;
    Some(taken)
}

/// A MessagePack str's bytes.
fn take_str<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = match take(rest, 1)?[0] {
        marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
        0xd9 => usize::from(take(rest, 1)?[0]),
        0xda => usize::from(u16::from_be_bytes(take(rest, 2)?.try_into().ok()?)),
        0xdb => usize::try_from(u32::from_be_bytes(take(rest, 4)?.try_into().ok()?)).ok()?,
        _ => return None,
    };
    take(rest, len)
}

/// Writes an envelope in the same encoding, the payload written in place by `payload`
/// (no buffer of its own): what a direct send puts on the wire as a [`Deliver`].
pub(crate) fn write_envelope(
    out: &mut Vec<u8>,
    entity: &str,
    tag: &str,
    hops: u8,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), postbox::BoxError>,
) -> Result<(), postbox::BoxError> {
    use rmp::encode;
    encode::write_array_len(out, 5)?;
    encode::write_str(out, entity)?;
    encode::write_str(out, tag)?;
    // bin 32, its length filled in once the payload is written.
    out.push(0xc6);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    payload(out)?;
    let len = u32::try_from(out.len() - start)?;
    out[at..start].copy_from_slice(&len.to_be_bytes());
    encode::write_uint(out, u64::from(hops))?;
    encode::write_bool(out, false)?;
    Ok(())
}

impl Envelope {
    /// `msg` encoded with `codec`, for `entity`; `None` if it does not encode.
    pub(crate) fn encode<M: Message>(
        entity: &str,
        codec: &postbox::remote::RemoteCodec<M>,
        msg: &M,
        hops: u8,
        handed_off: bool,
    ) -> Option<Self> {
        let mut payload = Vec::with_capacity(64);
        (codec.encode)(msg, &mut payload).ok()?;
        Some(Envelope {
            entity: entity.to_owned(),
            tag: codec.tag.to_owned(),
            payload: Bin(payload),
            hops,
            handed_off,
        })
    }
}

/// A told message for an entity.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Deliver(pub(crate) Envelope);

impl Message for Deliver {
    type Reply = ();
    remote_message!(DELIVER_TAG);
}

/// A told message for an entity, sent by an [`EntityRef`](crate::EntityRef) straight to its
/// home's region (the outbound direct path): on the wire it is a [`Deliver`] — same tag,
/// same envelope — written in place, the message encoded once, into the connection's
/// buffer.
pub(crate) struct DeliverDirect<M> {
    /// A thin pointer: with a small message the whole letter stays inline in the sender's
    /// queue (no allocation per message; a fat `Arc<str>` tips it over).
    pub(crate) entity: ThinId,
    pub(crate) msg: M,
}

/// An entity id behind one thin pointer.
pub(crate) type ThinId = std::sync::Arc<std::sync::Arc<str>>;

impl<M: Message> Message for DeliverDirect<M> {
    type Reply = ();

    fn remote() -> Option<postbox::remote::RemoteCodec<Self>> {
        Some(postbox::remote::RemoteCodec {
            tag: DELIVER_TAG,
            encode: encode_direct::<M>,
            decode: decode_direct::<M>,
            encode_reply: |(), out| postbox_wire_unit(out),
            decode_reply: |_| Ok(()),
        })
    }
}

const DELIVER_TAG: &str = "postbox.sharding.Deliver";

fn encode_direct<M: Message>(
    direct: &DeliverDirect<M>,
    out: &mut Vec<u8>,
) -> Result<(), postbox::BoxError> {
    write_direct(&direct.entity, &direct.msg, out)
}

/// The envelope of a message sent by a direct path (told or asked), encoded in place.
fn write_direct<M: Message>(
    entity: &ThinId,
    msg: &M,
    out: &mut Vec<u8>,
) -> Result<(), postbox::BoxError> {
    let codec = M::remote().ok_or("the message type has no remote codec")?;
    write_envelope(out, entity, codec.tag, 1, |buf| (codec.encode)(msg, buf))
}

fn decode_direct<M: Message>(bytes: &[u8]) -> Result<DeliverDirect<M>, postbox::BoxError> {
    let codec = M::remote().ok_or("the message type has no remote codec")?;
    let envelope = read_envelope(bytes).ok_or("not a sharding envelope")?;
    if envelope.tag != codec.tag.as_bytes() {
        return Err(format!(
            "tag {:?}, not {:?}",
            String::from_utf8_lossy(envelope.tag),
            codec.tag
        )
        .into());
    }
    Ok(DeliverDirect {
        entity: std::sync::Arc::new(std::sync::Arc::from(std::str::from_utf8(envelope.entity)?)),
        msg: (codec.decode)(envelope.payload)?,
    })
}

/// `()` as MessagePack (nil), as serde writes it.
fn postbox_wire_unit(out: &mut Vec<u8>) -> Result<(), postbox::BoxError> {
    out.push(0xc0);
    Ok(())
}

/// An asked message for an entity, sent by an [`EntityRef`](crate::EntityRef) straight to
/// its home's region, as [`DeliverDirect`] is for a told one: on the wire a
/// [`DeliverAsk`], the message encoded once, in place.
pub(crate) struct DeliverAskDirect<M> {
    pub(crate) entity: ThinId,
    pub(crate) msg: M,
}

impl<M: Message> Message for DeliverAskDirect<M> {
    type Reply = WireReply;

    fn remote() -> Option<postbox::remote::RemoteCodec<Self>> {
        // The reply's codec is `DeliverAsk`'s: the same bytes come back.
        let asked = DeliverAsk::remote()?;
        Some(postbox::remote::RemoteCodec {
            tag: asked.tag,
            encode: encode_direct_ask::<M>,
            decode: decode_direct_ask::<M>,
            encode_reply: asked.encode_reply,
            decode_reply: asked.decode_reply,
        })
    }
}

fn encode_direct_ask<M: Message>(
    direct: &DeliverAskDirect<M>,
    out: &mut Vec<u8>,
) -> Result<(), postbox::BoxError> {
    write_direct(&direct.entity, &direct.msg, out)
}

fn decode_direct_ask<M: Message>(bytes: &[u8]) -> Result<DeliverAskDirect<M>, postbox::BoxError> {
    let DeliverDirect { entity, msg } = decode_direct::<M>(bytes)?;
    Ok(DeliverAskDirect { entity, msg })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            entity: "account-42".to_owned(),
            tag: "bank.Deposit".to_owned(),
            payload: Bin((0..=255).collect()),
            hops: 1,
            handed_off: false,
        }
    }

    #[test]
    fn an_envelope_serde_wrote_reads_in_place() {
        let mut out = Vec::new();
        postbox_wire::to_payload(&Deliver(envelope()), &mut out).unwrap();
        let read = read_envelope(&out).unwrap();
        let expected = envelope();
        assert_eq!(read.entity, expected.entity.as_bytes());
        assert_eq!(read.tag, expected.tag.as_bytes());
        assert_eq!(read.payload, &expected.payload.0[..]);
        assert!(!read.handed_off);
    }

    #[test]
    fn an_envelope_written_in_place_decodes_as_serde_reads_it() {
        let mut out = Vec::new();
        let expected = envelope();
        write_envelope(&mut out, &expected.entity, &expected.tag, 1, |buf| {
            buf.extend_from_slice(&expected.payload.0);
            Ok(())
        })
        .unwrap();
        let Deliver(decoded) = postbox_wire::from_payload::<Deliver>(&out).unwrap();
        assert_eq!(decoded.entity, expected.entity);
        assert_eq!(decoded.tag, expected.tag);
        assert_eq!(decoded.payload, expected.payload);
        assert_eq!(decoded.hops, 1);
        assert!(!decoded.handed_off);
    }

    #[test]
    fn long_ids_and_every_flag_read_in_place() {
        for (len, handed_off, hops) in [
            (31, true, 0),
            (32, false, 200),
            (300, true, 4),
            (70_000, false, 1),
        ] {
            let envelope = Envelope {
                entity: "e".repeat(len),
                tag: "t".repeat(len),
                payload: Bin(vec![1; len]),
                hops,
                handed_off,
            };
            let mut out = Vec::new();
            postbox_wire::to_payload(&Deliver(envelope.clone()), &mut out).unwrap();
            let read = read_envelope(&out).unwrap();
            assert_eq!(read.entity, envelope.entity.as_bytes());
            assert_eq!(read.tag, envelope.tag.as_bytes());
            assert_eq!(read.payload, &envelope.payload.0[..]);
            assert_eq!(read.handed_off, handed_off);
        }
    }

    #[test]
    fn what_is_not_an_envelope_is_refused() {
        assert_eq!(read_envelope(&[]), None);
        assert_eq!(read_envelope(&[0x93, 0xa1, b'a']), None);
        let mut out = Vec::new();
        postbox_wire::to_payload(&Deliver(envelope()), &mut out).unwrap();
        for cut in 0..out.len() {
            assert_eq!(read_envelope(&out[..cut]), None, "cut at {cut}");
        }
    }
}

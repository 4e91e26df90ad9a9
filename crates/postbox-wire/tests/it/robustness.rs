//! Bad input: oversized lengths, garbage, truncation, unknown kinds, flags and codes. The
//! decoder answers each with a specific error and never panics.

use bytes::{Bytes, BytesMut};
use postbox_wire::{Envelope, Frame, FrameCodec, WireError, DEFAULT_MAX_FRAME};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use crate::strategies::{self, encoded, framed};

const KNOWN_KINDS: [u8; 16] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x20, 0x21, 0x30, 0x31, 0x32, 0x40, 0x41,
];

fn malformed(result: Result<Option<Frame>, WireError>) -> String {
    match result {
        Err(WireError::Malformed(what)) => what,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// Decodes until the input is used up, or an error; re-encodes whatever decoded and checks it
/// decodes to the same frame.
fn drain(codec: &mut FrameCodec, buf: &mut BytesMut) -> Result<(), TestCaseError> {
    loop {
        let before = buf.len();
        match codec.decode(buf) {
            Ok(Some(frame)) => {
                prop_assert!(buf.len() < before, "a decoded frame consumes bytes");
                let mut again = BytesMut::new();
                codec.encode(&frame, &mut again).unwrap();
                prop_assert_eq!(codec.decode(&mut again).unwrap(), Some(frame));
            }
            Ok(None) => return Ok(()),
            Err(err) => {
                prop_assert!(!err.to_string().is_empty());
                return Ok(());
            }
        }
    }
}

#[test]
fn a_4_gib_length_is_refused_before_anything_is_reserved() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x10]);
    let capacity = buf.capacity();
    match codec.decode(&mut buf) {
        Err(WireError::FrameTooLarge { len, max }) => {
            assert_eq!(len, u32::MAX as usize);
            assert_eq!(max, DEFAULT_MAX_FRAME);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(buf.capacity(), capacity, "nothing was reserved");
    assert_eq!(buf.len(), 5, "nothing was consumed");
}

#[test]
fn a_length_one_over_the_limit_is_refused_and_one_at_the_limit_waits() {
    let mut codec = FrameCodec::new(1000);
    let mut over = BytesMut::from(&1001u32.to_be_bytes()[..]);
    assert!(matches!(
        codec.decode(&mut over),
        Err(WireError::FrameTooLarge {
            len: 1001,
            max: 1000
        })
    ));
    assert_eq!(
        over.capacity(),
        4,
        "nothing was reserved for the refused frame"
    );

    let mut at = BytesMut::from(&1000u32.to_be_bytes()[..]);
    assert_eq!(codec.decode(&mut at).unwrap(), None);
    assert!(
        at.capacity() >= 1004,
        "room for the whole frame is reserved"
    );
    assert!(at.capacity() <= 2 * 1004, "but not much more");
}

#[test]
fn max_frame_is_at_most_what_the_prefix_can_announce() {
    assert_eq!(FrameCodec::default().max_frame(), DEFAULT_MAX_FRAME);
    assert_eq!(FrameCodec::new(10).max_frame(), 10);
    assert_eq!(FrameCodec::new(usize::MAX).max_frame(), u32::MAX as usize);
}

#[test]
fn the_encoder_refuses_frames_over_its_limit_and_leaves_the_buffer_as_it_was() {
    let mut codec = FrameCodec::new(100);
    let mut buf = BytesMut::from(&b"earlier frames"[..]);

    // The payload alone is over the limit: refused before it is copied.
    let big = Frame::Message(Envelope::new(1, "t", Bytes::from(vec![0; 101])));
    match codec.encode(&big, &mut buf) {
        Err(WireError::FrameTooLarge { len: 101, max: 100 }) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(&buf[..], b"earlier frames");

    // The payload fits but the whole frame does not: kind, flags, id, tag (2) + 96 = 101.
    let just_over = Frame::Message(Envelope::new(1, "t", Bytes::from(vec![0; 96])));
    match codec.encode(&just_over, &mut buf) {
        Err(WireError::FrameTooLarge { len: 101, max: 100 }) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(&buf[..], b"earlier frames");

    // Exactly at the limit: written, and read back by a codec with the same limit.
    let at_limit = Frame::Message(Envelope::new(1, "t", Bytes::from(vec![0; 95])));
    codec.encode(&at_limit, &mut buf).unwrap();
    assert_eq!(buf.len(), 14 + 4 + 100);
    let _ = buf.split_to(14);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(at_limit));
}

#[test]
fn encode_frame_uses_the_default_limit() {
    let frame = Frame::Reply {
        correlation: 1,
        payload: Bytes::from(vec![0; DEFAULT_MAX_FRAME]),
    };
    let mut buf = BytesMut::new();
    assert!(matches!(
        postbox_wire::encode_frame(&frame, &mut buf),
        Err(WireError::FrameTooLarge { .. })
    ));
    assert!(buf.is_empty());
}

#[test]
fn a_zero_length_frame_is_malformed() {
    let what = malformed(FrameCodec::default().decode(&mut framed(&[])));
    assert!(what.contains("empty frame"), "{what}");
}

#[test]
fn every_unknown_kind_byte_is_refused_and_its_frame_consumed() {
    let mut codec = FrameCodec::default();
    for kind in 0..=u8::MAX {
        if KNOWN_KINDS.contains(&kind) {
            continue;
        }
        let mut buf = framed(&[kind, 1, 2, 3]);
        buf.extend_from_slice(&encoded(&Frame::Goodbye));
        match codec.decode(&mut buf) {
            Err(WireError::UnknownKind(k)) => assert_eq!(k, kind),
            other => panic!("kind {kind:#04x}: expected UnknownKind, got {other:?}"),
        }
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Goodbye));
    }
}

#[test]
fn truncated_bodies_are_malformed_and_name_the_frame_and_field() {
    let mut codec = FrameCodec::default();
    for frame in strategies::one_of_each_kind() {
        let full = encoded(&frame);
        let body = &full[4..];
        for cut in 1..body.len() {
            let result = codec.decode(&mut framed(&body[..cut]));
            match &frame {
                // The payload is the rest of the frame: cutting into it leaves a shorter
                // payload, cutting before it is malformed.
                Frame::Message(env) if cut >= body.len() - env.payload.len() => {
                    let Ok(Some(Frame::Message(got))) = result else {
                        panic!("cut at {cut}: {result:?}")
                    };
                    assert_eq!(&got.payload[..], &env.payload[..got.payload.len()]);
                }
                Frame::Reply { payload, .. } if cut >= body.len() - payload.len() => {
                    let Ok(Some(Frame::Reply { payload: got, .. })) = result else {
                        panic!("cut at {cut}: {result:?}")
                    };
                    assert_eq!(&got[..], &payload[..got.len()]);
                }
                _ => {
                    let what = malformed(result);
                    assert!(
                        what.starts_with(&format!("{} frame, ", frame.kind())),
                        "{what}"
                    );
                    assert!(what.contains("truncated"), "{what}");
                }
            }
        }
    }
}

#[test]
fn trailing_bytes_are_malformed_except_where_later_versions_may_append() {
    let mut codec = FrameCodec::default();
    for frame in strategies::one_of_each_kind() {
        let mut body = encoded(&frame)[4..].to_vec();
        body.extend_from_slice(&[0xee, 0xee]);
        let result = codec.decode(&mut framed(&body));
        match &frame {
            // Frozen handshake frames: appended fields are skipped.
            Frame::Hello(_) | Frame::Challenge(_) | Frame::Refused { .. } => {
                assert_eq!(result.unwrap(), Some(frame.clone()));
            }
            // The payload takes the rest.
            Frame::Message(_) | Frame::Reply { .. } => {
                let (Some(Frame::Message(Envelope { payload, .. }))
                | Some(Frame::Reply { payload, .. })) = result.unwrap()
                else {
                    panic!("not a message or reply")
                };
                assert!(payload.ends_with(&[0xee, 0xee]));
            }
            _ => {
                let what = malformed(result);
                assert!(what.contains("2 unexpected bytes"), "{what}");
            }
        }
    }
}

#[test]
fn unknown_flag_bits_are_malformed() {
    // Message with flag 0x10, unknown in version 1.
    let what = malformed(FrameCodec::default().decode(&mut framed(&[0x10, 0x10, 1, 0])));
    assert_eq!(what, "message frame, flags: unknown flag bits 0x10");
    // Found with flag 0x02.
    let what = malformed(FrameCodec::default().decode(&mut framed(&[0x41, 0x03, 1, 2])));
    assert_eq!(what, "found frame, flags: unknown flag bits 0x02");
}

#[test]
fn unknown_codes_are_malformed() {
    let mut codec = FrameCodec::default();
    for code in [0, 10, 0xff] {
        let what = malformed(codec.decode(&mut framed(&[0x05, code, 0])));
        assert_eq!(what, format!("refused frame, reason: unknown code {code}"));
    }
    for code in [0, 14, 0xff] {
        let what = malformed(codec.decode(&mut framed(&[0x12, 1, code, 0])));
        assert_eq!(
            what,
            format!("error frame, error kind: unknown code {code}")
        );
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    let what = malformed(FrameCodec::default().decode(&mut framed(&[0x40, 1, 2, 0xc3, 0x28])));
    assert!(what.starts_with("lookup frame, name: not UTF-8"), "{what}");
}

#[test]
fn a_string_length_past_the_end_of_the_frame_is_malformed() {
    // Lookup whose name announces 2^63 bytes.
    let mut body = vec![0x40, 1];
    body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    let what = malformed(FrameCodec::default().decode(&mut framed(&body)));
    assert!(what.contains("truncated"), "{what}");
}

#[test]
fn a_stream_that_ends_inside_a_frame_is_an_io_error_at_eof() {
    let bytes = encoded(&Frame::Heartbeat { seq: 1 });
    let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
    match FrameCodec::default().decode_eof(&mut buf) {
        Err(WireError::Io(err)) => assert!(!err.to_string().is_empty()),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn errors_say_what_to_do() {
    let too_large = WireError::FrameTooLarge { len: 10, max: 5 }.to_string();
    assert!(too_large.contains("10 bytes") && too_large.contains("limit of 5"));
    assert!(too_large.contains("max_frame"));
    let unknown = WireError::UnknownKind(0xab).to_string();
    assert!(unknown.contains("0xab") && unknown.contains("protocol version"));
    let io = WireError::from(std::io::Error::other("reset"));
    assert!(std::error::Error::source(&io).is_some());
}

proptest! {
    /// Arbitrary bytes, with limits from tiny to the default: the decoder returns frames,
    /// `Ok(None)` or an error, and never panics.
    #[test]
    fn garbage_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        max in prop_oneof![Just(0usize), Just(16), Just(1024), Just(DEFAULT_MAX_FRAME)],
    ) {
        let mut codec = FrameCodec::new(max);
        drain(&mut codec, &mut BytesMut::from(&bytes[..]))?;
    }

    /// A correct length and a known kind, then garbage: this reaches the body decoders. The
    /// result is a frame or a Malformed error, never "incomplete", and the frame is consumed.
    #[test]
    fn well_framed_garbage_is_a_frame_or_malformed(
        kind in proptest::sample::select(KNOWN_KINDS.to_vec()),
        tail in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut body = vec![kind];
        body.extend_from_slice(&tail);
        let mut buf = framed(&body);
        let mut codec = FrameCodec::default();
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                let mut again = BytesMut::new();
                codec.encode(&frame, &mut again).unwrap();
                prop_assert_eq!(codec.decode(&mut again).unwrap(), Some(frame));
            }
            Err(WireError::Malformed(what)) => prop_assert!(!what.is_empty()),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        prop_assert!(buf.is_empty());
    }

    /// Valid frames with bytes flipped, the length prefix included: never a panic.
    #[test]
    fn mutated_frames_never_panic(
        frame in strategies::any_frame(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1..=255u8), 1..8),
    ) {
        let mut bytes = encoded(&frame);
        for (at, xor) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        drain(&mut FrameCodec::default(), &mut bytes)?;
    }
}

//! encode → decode gives the same frame, whole or arriving in pieces.

use std::collections::HashSet;

use bytes::BytesMut;
use postbox_wire::{encode_frame, Frame, FrameCodec, FrameKind};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_util::codec::{Decoder, Encoder};

use crate::strategies::{self, encoded};

/// Checks every way of encoding `frame` and of feeding its bytes to the decoder.
fn check_round_trip(frame: &Frame, split: Index) -> Result<(), TestCaseError> {
    let bytes = encoded(frame);
    let body_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    prop_assert_eq!(
        body_len,
        bytes.len() - 4,
        "the length prefix counts the body"
    );

    // The three encoders agree.
    let mut codec = FrameCodec::default();
    let mut by_ref = BytesMut::new();
    codec.encode(frame, &mut by_ref).unwrap();
    let mut by_value = BytesMut::new();
    codec.encode(frame.clone(), &mut by_value).unwrap();
    prop_assert_eq!(&by_ref, &bytes);
    prop_assert_eq!(&by_value, &bytes);

    // Whole.
    let mut buf = bytes.clone();
    prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame.clone()));
    prop_assert!(buf.is_empty(), "the frame's bytes are consumed");
    prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);

    // One byte at a time: every proper prefix is incomplete, the last byte completes it.
    let mut buf = BytesMut::new();
    for (i, byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let decoded = codec.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            prop_assert_eq!(decoded, None, "decoded early, at byte {}", i);
        } else {
            prop_assert_eq!(decoded.as_ref(), Some(frame));
        }
    }
    prop_assert!(buf.is_empty());

    // Two pieces, split anywhere.
    let at = split.index(bytes.len() + 1);
    let mut buf = BytesMut::from(&bytes[..at]);
    if at < bytes.len() {
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
    buf.extend_from_slice(&bytes[at..]);
    prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(frame.clone()));
    prop_assert!(buf.is_empty());
    Ok(())
}

macro_rules! round_trips {
    ($($name:ident => $strategy:expr;)*) => {
        proptest! {
            $(
                #[test]
                fn $name(frame in $strategy, split in any::<Index>()) {
                    check_round_trip(&frame, split)?;
                }
            )*
        }
    };
}

round_trips! {
    hello_round_trips => strategies::hello();
    challenge_round_trips => strategies::challenge();
    proof_round_trips => strategies::proof();
    welcome_round_trips => strategies::welcome();
    refused_round_trips => strategies::refused();
    message_round_trips => strategies::message();
    reply_round_trips => strategies::reply();
    error_round_trips => strategies::error();
    heartbeat_round_trips => strategies::heartbeat();
    heartbeat_ack_round_trips => strategies::heartbeat_ack();
    watch_round_trips => strategies::watch();
    unwatch_round_trips => strategies::unwatch();
    terminated_round_trips => strategies::terminated();
    lookup_round_trips => strategies::lookup();
    found_round_trips => strategies::found();
    goodbye_round_trips => strategies::goodbye();
}

proptest! {
    /// A stream of frames, encoded into one buffer by the batching writer's function and
    /// delivered in chunks of arbitrary sizes, decodes to the same frames in the same order.
    #[test]
    fn a_batch_of_frames_in_arbitrary_chunks_decodes_in_order(
        frames in proptest::collection::vec(strategies::any_frame(), 1..8),
        chunks in proptest::collection::vec(1..600usize, 1..64),
    ) {
        let mut stream = BytesMut::new();
        for frame in &frames {
            encode_frame(frame, &mut stream).unwrap();
        }
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut rest = &stream[..];
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    /// For small frames, literally every split point into two reads.
    #[test]
    fn every_split_point_of_a_small_frame_decodes(
        frame in strategies::any_frame().prop_filter("small", |f| encoded(f).len() <= 512),
    ) {
        let bytes = encoded(&frame);
        let mut codec = FrameCodec::default();
        for at in 0..=bytes.len() {
            let mut buf = BytesMut::from(&bytes[..at]);
            let first = codec.decode(&mut buf).unwrap();
            if at < bytes.len() {
                prop_assert_eq!(first, None, "decoded early, split at {}", at);
                buf.extend_from_slice(&bytes[at..]);
                prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame.clone()));
            } else {
                prop_assert_eq!(first.as_ref(), Some(&frame));
            }
            prop_assert!(buf.is_empty());
        }
    }
}

#[test]
fn every_kind_has_its_own_stable_label_and_kind_byte() {
    let frames = strategies::one_of_each_kind();
    let labels: Vec<&str> = frames.iter().map(|f| f.kind().label()).collect();
    assert_eq!(
        labels,
        [
            "hello",
            "challenge",
            "proof",
            "welcome",
            "refused",
            "message",
            "reply",
            "error",
            "heartbeat",
            "heartbeat_ack",
            "watch",
            "unwatch",
            "terminated",
            "lookup",
            "found",
            "goodbye"
        ]
    );
    let kind_bytes: Vec<u8> = frames.iter().map(|f| encoded(f)[4]).collect();
    assert_eq!(
        kind_bytes,
        [
            0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x11, 0x12, 0x20, 0x21, 0x30, 0x31, 0x32, 0x40,
            0x41, 0x06
        ]
    );
    assert_eq!(
        kind_bytes.iter().collect::<HashSet<_>>().len(),
        frames.len()
    );
    // The table agrees with the encoder, and every kind of the table has a frame here.
    for frame in &frames {
        assert_eq!(encoded(frame)[4], frame.kind().code());
        assert_eq!(
            FrameKind::from_code(frame.kind().code()),
            Some(frame.kind())
        );
    }
    assert_eq!(frames.len(), FrameKind::ALL.len());
}

#[test]
fn the_layout_of_a_tell_is_as_documented() {
    use bytes::Bytes;
    use postbox_wire::{Envelope, Target};

    let frame = Frame::Message(Envelope::new(
        Target::Id(5),
        "app.Add123",
        Bytes::from(vec![0xaa; 100]),
    ));
    let bytes = encoded(&frame);
    assert_eq!(bytes.len(), 118, "the crate docs' example size");
    let mut expected = vec![0, 0, 0, 114, 0x10, 0x00, 5, 10];
    expected.extend_from_slice(b"app.Add123");
    expected.extend_from_slice(&[0xaa; 100]);
    assert_eq!(&bytes[..], &expected[..]);
}

#[test]
fn the_layout_of_every_optional_message_field_is_as_documented() {
    use bytes::Bytes;
    use postbox_wire::{ActorAddr, Envelope, NodeAddr, Target};

    let frame = Frame::Message(Envelope {
        target: Target::Name("n".into()),
        tag: "t".into(),
        correlation: Some(300),
        sender: Some(ActorAddr {
            node: NodeAddr {
                addr: "a".into(),
                node_id: 1,
                incarnation: 2,
            },
            id: 3,
        }),
        trace: Some("x".into()),
        payload: Bytes::from_static(b"P"),
    });
    let bytes = encoded(&frame);
    let body = [
        0x10, 0x0f, // kind, flags: name | correlation | sender | trace
        1, b'n', // target name
        1, b't', // tag
        0xac, 0x02, // correlation 300
        1, b'a', 1, 2, 3, // sender: addr, node_id, incarnation, id
        1, b'x', // trace
        b'P', // payload: the rest
    ];
    assert_eq!(&bytes[4..], &body[..]);
}

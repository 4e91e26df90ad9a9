//! proptest strategies for every frame kind, and helpers shared by the tests.

use bytes::{Bytes, BytesMut};
use postbox_wire::{
    encode_frame, ActorAddr, Challenge, Envelope, ErrorKind, Frame, Hello, NodeAddr, Proof,
    RefuseReason, RemoteError, Target,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// u64s with the extremes and the varint group boundaries well represented.
pub(crate) fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(127),
        Just(128),
        Just(16_383),
        Just(16_384),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        any::<u64>(),
        0..300u64,
    ]
}

/// Strings: empty, ASCII, arbitrary unicode, and some multi-byte samples.
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("héllo, 世界 🦀\u{0}\u{ffff}".to_owned()),
        "[a-z.:0-9]{1,24}",
        any::<String>(),
    ]
}

/// Payloads of 0 to 4095 bytes.
pub(crate) fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        4 => vec(any::<u8>(), 0..4096).prop_map(Bytes::from),
    ]
}

pub(crate) fn nonce() -> impl Strategy<Value = [u8; 32]> {
    prop_oneof![Just([0; 32]), Just([0xff; 32]), any::<[u8; 32]>()]
}

pub(crate) fn node() -> impl Strategy<Value = NodeAddr> {
    (text(), number(), number()).prop_map(|(addr, node_id, incarnation)| NodeAddr {
        addr,
        node_id,
        incarnation,
    })
}

pub(crate) fn actor() -> impl Strategy<Value = ActorAddr> {
    (node(), number()).prop_map(|(node, id)| ActorAddr { node, id })
}

pub(crate) fn target() -> impl Strategy<Value = Target> {
    prop_oneof![number().prop_map(Target::Id), text().prop_map(Target::Name)]
}

pub(crate) fn envelope() -> impl Strategy<Value = Envelope> {
    (
        target(),
        text(),
        option::of(number()),
        option::of(actor()),
        option::of(text()),
        payload(),
    )
        .prop_map(
            |(target, tag, correlation, sender, trace, payload)| Envelope {
                target,
                tag: tag.into(),
                correlation,
                sender,
                trace,
                payload,
            },
        )
}

pub(crate) fn error_kind() -> impl Strategy<Value = ErrorKind> {
    proptest::sample::select(ErrorKind::ALL.to_vec())
}

pub(crate) fn refuse_reason() -> impl Strategy<Value = RefuseReason> {
    proptest::sample::select(RefuseReason::ALL.to_vec())
}

pub(crate) fn hello() -> impl Strategy<Value = Frame> {
    (any::<u16>(), text(), node(), nonce()).prop_map(|(version, cluster, node, nonce)| {
        Frame::Hello(Hello {
            version,
            cluster,
            node,
            nonce,
        })
    })
}

pub(crate) fn challenge() -> impl Strategy<Value = Frame> {
    (any::<u16>(), text(), node(), nonce(), nonce()).prop_map(
        |(version, cluster, node, nonce, proof)| {
            Frame::Challenge(Challenge {
                version,
                cluster,
                node,
                nonce,
                proof,
            })
        },
    )
}

pub(crate) fn proof() -> impl Strategy<Value = Frame> {
    nonce().prop_map(|proof| Frame::Proof(Proof { proof }))
}

pub(crate) fn welcome() -> impl Strategy<Value = Frame> {
    Just(Frame::Welcome)
}

pub(crate) fn refused() -> impl Strategy<Value = Frame> {
    (refuse_reason(), text()).prop_map(|(reason, message)| Frame::Refused { reason, message })
}

pub(crate) fn message() -> impl Strategy<Value = Frame> {
    envelope().prop_map(Frame::Message)
}

pub(crate) fn reply() -> impl Strategy<Value = Frame> {
    (number(), payload()).prop_map(|(correlation, payload)| Frame::Reply {
        correlation,
        payload,
    })
}

pub(crate) fn error() -> impl Strategy<Value = Frame> {
    (number(), error_kind(), text()).prop_map(|(correlation, kind, message)| Frame::Error {
        correlation,
        error: RemoteError { kind, message },
    })
}

pub(crate) fn heartbeat() -> impl Strategy<Value = Frame> {
    number().prop_map(|seq| Frame::Heartbeat { seq })
}

pub(crate) fn heartbeat_ack() -> impl Strategy<Value = Frame> {
    number().prop_map(|seq| Frame::HeartbeatAck { seq })
}

pub(crate) fn watch() -> impl Strategy<Value = Frame> {
    (number(), number()).prop_map(|(watcher, target)| Frame::Watch { watcher, target })
}

pub(crate) fn unwatch() -> impl Strategy<Value = Frame> {
    (number(), number()).prop_map(|(watcher, target)| Frame::Unwatch { watcher, target })
}

pub(crate) fn terminated() -> impl Strategy<Value = Frame> {
    (number(), number(), text()).prop_map(|(target, watcher, reason)| Frame::Terminated {
        target,
        watcher,
        reason,
    })
}

pub(crate) fn lookup() -> impl Strategy<Value = Frame> {
    (number(), text()).prop_map(|(correlation, name)| Frame::Lookup { correlation, name })
}

pub(crate) fn found() -> impl Strategy<Value = Frame> {
    (number(), option::of(number())).prop_map(|(correlation, id)| Frame::Found { correlation, id })
}

pub(crate) fn goodbye() -> impl Strategy<Value = Frame> {
    Just(Frame::Goodbye)
}

/// Any frame, every kind equally likely.
pub(crate) fn any_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        hello(),
        challenge(),
        proof(),
        welcome(),
        refused(),
        message(),
        reply(),
        error(),
        heartbeat(),
        heartbeat_ack(),
        watch(),
        unwatch(),
        terminated(),
        lookup(),
        found(),
        goodbye(),
    ]
}

/// One fixed example of every frame kind, with every optional field set where it has one.
pub(crate) fn one_of_each_kind() -> Vec<Frame> {
    let node = NodeAddr {
        addr: "10.0.0.1:7000".into(),
        node_id: 0xdead_beef_0000_0001,
        incarnation: 3,
    };
    vec![
        Frame::Hello(Hello {
            version: 1,
            cluster: "prod".into(),
            node: node.clone(),
            nonce: [1; 32],
        }),
        Frame::Challenge(Challenge {
            version: 1,
            cluster: "prod".into(),
            node: node.clone(),
            nonce: [2; 32],
            proof: [3; 32],
        }),
        Frame::Proof(Proof { proof: [4; 32] }),
        Frame::Welcome,
        Frame::Refused {
            reason: RefuseReason::WrongCluster,
            message: "this is cluster prod".into(),
        },
        Frame::Message(Envelope {
            target: Target::Name("counter".into()),
            tag: "app.Add".into(),
            correlation: Some(300),
            sender: Some(ActorAddr {
                node: node.clone(),
                id: 42,
            }),
            trace: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            payload: Bytes::from_static(b"payload bytes"),
        }),
        Frame::Reply {
            correlation: 300,
            payload: Bytes::from_static(b"reply bytes"),
        },
        Frame::Error {
            correlation: 301,
            error: RemoteError {
                kind: ErrorKind::UnknownTag,
                message: "no type app.Sub".into(),
            },
        },
        Frame::Heartbeat { seq: 9 },
        Frame::HeartbeatAck { seq: 9 },
        Frame::Watch {
            watcher: 5,
            target: 6,
        },
        Frame::Unwatch {
            watcher: 5,
            target: 6,
        },
        Frame::Terminated {
            target: 6,
            watcher: 5,
            reason: "stopped".into(),
        },
        Frame::Lookup {
            correlation: 7,
            name: "counter".into(),
        },
        Frame::Found {
            correlation: 7,
            id: Some(42),
        },
        Frame::Goodbye,
    ]
}

/// The frame's encoding, length prefix included.
pub(crate) fn encoded(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).unwrap();
    buf
}

/// `body` with a correct length prefix in front.
pub(crate) fn framed(body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    buf.extend_from_slice(body);
    buf
}

//! Payload helpers: rmp-serde round trips and specific errors.

use postbox_wire::{from_payload, to_payload, ActorAddr, NodeAddr, WireError};
use proptest::prelude::*;
use serde::{Deserialize, Serialize, Serializer};

use crate::strategies::{actor, number, text};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transfer {
    amount: u64,
    memo: String,
    reply_to: Option<ActorAddr>,
    items: Vec<i32>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Debit,
    Credit { fee: u32 },
}

fn transfer() -> impl Strategy<Value = Transfer> {
    (
        number(),
        text(),
        proptest::option::of(actor()),
        proptest::collection::vec(any::<i32>(), 0..16),
        prop_oneof![
            Just(Kind::Debit),
            any::<u32>().prop_map(|fee| Kind::Credit { fee })
        ],
    )
        .prop_map(|(amount, memo, reply_to, items, kind)| Transfer {
            amount,
            memo,
            reply_to,
            items,
            kind,
        })
}

proptest! {
    #[test]
    fn payloads_round_trip_including_actor_refs(value in transfer()) {
        let mut buf = Vec::new();
        to_payload(&value, &mut buf).unwrap();
        prop_assert_eq!(from_payload::<Transfer>(&buf).unwrap(), value);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_payload_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        match from_payload::<Transfer>(&bytes) {
            Ok(value) => {
                // Whatever decoded re-encodes to something that decodes to it again.
                let mut again = Vec::new();
                to_payload(&value, &mut again).unwrap();
                prop_assert_eq!(from_payload::<Transfer>(&again).unwrap(), value);
            }
            Err(WireError::Malformed(what)) => prop_assert!(what.contains("Transfer")),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn to_payload_appends_and_uses_the_compact_encoding() {
    let addr = ActorAddr {
        node: NodeAddr {
            addr: "h:1".into(),
            node_id: 2,
            incarnation: 3,
        },
        id: 4,
    };
    let mut buf = vec![0xaa];
    to_payload(&addr, &mut buf).unwrap();
    // fixarray of 2 (node, id); node is a fixarray of 3: no field names on the wire.
    assert_eq!(buf, [0xaa, 0x92, 0x93, 0xa3, b'h', b':', b'1', 2, 3, 4]);
    assert_eq!(from_payload::<ActorAddr>(&buf[1..]).unwrap(), addr);
}

#[test]
fn a_payload_of_another_type_is_malformed_and_names_the_expected_type() {
    let mut buf = Vec::new();
    to_payload(&"just a string", &mut buf).unwrap();
    match from_payload::<Transfer>(&buf) {
        Err(WireError::Malformed(what)) => {
            assert!(what.starts_with("payload is not a valid "), "{what}");
            assert!(what.contains("Transfer"), "{what}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert!(matches!(
        from_payload::<u64>(&[]),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn a_failing_serialize_is_an_encode_error() {
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not today"))
        }
    }
    let mut buf = Vec::new();
    match to_payload(&Refuses, &mut buf) {
        Err(err @ WireError::Encode(_)) => {
            let text = err.to_string();
            assert!(
                text.contains("Refuses") && text.contains("not today"),
                "{text}"
            );
        }
        other => panic!("expected Encode, got {other:?}"),
    }
}

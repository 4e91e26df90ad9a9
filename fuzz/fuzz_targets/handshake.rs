//! Bytes decoded as one frame; a `Hello`, `Challenge` or `Proof` is then run through the
//! handshake's proof checks against a fixed secret, as a server or client would. Nothing may
//! panic, and a proof that verifies must be exactly the one `prove` computes.
//!
//! The fixed identities are also in `crates/postbox-wire/tests/it/seeds.rs`, which writes this
//! target's seed corpus: keep the two in step.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postbox_wire::auth::{prove, verify, Role};
use postbox_wire::{Frame, FrameCodec, NodeAddr};
use tokio_util::codec::Decoder;

const SECRET: &[u8] = b"postbox-fuzz-secret";
const CLUSTER: &str = "fuzz";
const CLIENT_NONCE: [u8; 32] = [0x11; 32];
const SERVER_NONCE: [u8; 32] = [0x22; 32];

fn client() -> NodeAddr {
    NodeAddr {
        addr: "127.0.0.1:7001".into(),
        node_id: 1,
        incarnation: 1,
    }
}

fn server() -> NodeAddr {
    NodeAddr {
        addr: "127.0.0.1:7002".into(),
        node_id: 2,
        incarnation: 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let Ok(Some(frame)) = FrameCodec::default().decode(&mut buf) else {
        return;
    };
    match frame {
        // Server side: answer the Hello with a proof over its nonce, which must verify.
        Frame::Hello(hello) => {
            let proof = prove(
                SECRET,
                Role::Server,
                &server(),
                &hello.cluster,
                &hello.nonce,
                &SERVER_NONCE,
            );
            assert!(verify(
                SECRET,
                Role::Server,
                &server(),
                &hello.cluster,
                &hello.nonce,
                &SERVER_NONCE,
                &proof
            ));
            // The client's node is never the prover of a server proof.
            assert!(!verify(
                SECRET,
                Role::Client,
                &hello.node,
                &hello.cluster,
                &hello.nonce,
                &SERVER_NONCE,
                &proof
            ));
        }
        // Client side: check the server's proof over the client's nonce.
        Frame::Challenge(ch) => {
            let ok = verify(
                SECRET,
                Role::Server,
                &ch.node,
                &ch.cluster,
                &CLIENT_NONCE,
                &ch.nonce,
                &ch.proof,
            );
            let expected = prove(
                SECRET,
                Role::Server,
                &ch.node,
                &ch.cluster,
                &CLIENT_NONCE,
                &ch.nonce,
            );
            assert_eq!(ok, ch.proof == expected);
        }
        // Server side: check the client's proof over the server's nonce.
        Frame::Proof(p) => {
            let ok = verify(
                SECRET,
                Role::Client,
                &client(),
                CLUSTER,
                &SERVER_NONCE,
                &CLIENT_NONCE,
                &p.proof,
            );
            let expected = prove(
                SECRET,
                Role::Client,
                &client(),
                CLUSTER,
                &SERVER_NONCE,
                &CLIENT_NONCE,
            );
            assert_eq!(ok, p.proof == expected);
        }
        _ => {}
    }
});

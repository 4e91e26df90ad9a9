//! The handshake's proofs: the right secret verifies; anything changed does not.

use postbox_wire::auth::{prove, verify, Role};
use postbox_wire::{Challenge, Frame, FrameCodec, Hello, NodeAddr, Proof, PROTOCOL_VERSION};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

use crate::strategies::{encoded, node, nonce, text};

/// Everything one proof is computed over.
#[derive(Debug, Clone)]
struct Case {
    secret: Vec<u8>,
    role: Role,
    prover: NodeAddr,
    cluster: String,
    peer_nonce: [u8; 32],
    own_nonce: [u8; 32],
}

impl Case {
    fn prove(&self) -> [u8; 32] {
        prove(
            &self.secret,
            self.role,
            &self.prover,
            &self.cluster,
            &self.peer_nonce,
            &self.own_nonce,
        )
    }

    fn verifies(&self, proof: &[u8; 32]) -> bool {
        verify(
            &self.secret,
            self.role,
            &self.prover,
            &self.cluster,
            &self.peer_nonce,
            &self.own_nonce,
            proof,
        )
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(any::<u8>(), 0..100),
        prop_oneof![Just(Role::Client), Just(Role::Server)],
        node(),
        text(),
        nonce(),
        nonce(),
    )
        .prop_map(
            |(secret, role, prover, cluster, peer_nonce, own_nonce)| Case {
                secret,
                role,
                prover,
                cluster,
                peer_nonce,
                own_nonce,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_right_secret_verifies(case in case()) {
        prop_assert!(case.verifies(&case.prove()));
    }

    #[test]
    fn a_wrong_secret_fails(case in case(), other in proptest::collection::vec(any::<u8>(), 0..100)) {
        prop_assume!(other != case.secret);
        let proof = case.prove();
        let wrong = Case { secret: other, ..case.clone() };
        prop_assert!(!wrong.verifies(&proof));
        prop_assert!(!case.verifies(&wrong.prove()));
    }

    #[test]
    fn swapped_roles_fail(case in case()) {
        let role = match case.role { Role::Client => Role::Server, Role::Server => Role::Client };
        let swapped = Case { role, ..case.clone() };
        prop_assert!(!swapped.verifies(&case.prove()));
    }

    #[test]
    fn swapped_nonces_fail(case in case()) {
        prop_assume!(case.peer_nonce != case.own_nonce);
        let swapped = Case {
            peer_nonce: case.own_nonce,
            own_nonce: case.peer_nonce,
            ..case.clone()
        };
        prop_assert!(!swapped.verifies(&case.prove()));
    }

    #[test]
    fn another_nonce_fails(case in case(), other in nonce(), which in any::<bool>()) {
        let mut changed = case.clone();
        if which { changed.peer_nonce = other } else { changed.own_nonce = other }
        prop_assume!(changed.peer_nonce != case.peer_nonce || changed.own_nonce != case.own_nonce);
        prop_assert!(!changed.verifies(&case.prove()));
    }

    #[test]
    fn another_cluster_fails(case in case(), other in text()) {
        prop_assume!(other != case.cluster);
        let changed = Case { cluster: other, ..case.clone() };
        prop_assert!(!changed.verifies(&case.prove()));
    }

    #[test]
    fn an_altered_node_fails(case in case(), field in 0..3u8, bump in 1..u64::MAX) {
        let mut changed = case.clone();
        match field {
            0 => changed.prover.addr.push('x'),
            1 => changed.prover.node_id = changed.prover.node_id.wrapping_add(bump),
            _ => changed.prover.incarnation = changed.prover.incarnation.wrapping_add(bump),
        }
        prop_assert!(!changed.verifies(&case.prove()));
    }

    #[test]
    fn an_altered_proof_fails(case in case(), byte in 0..32usize, bit in 0..8u8) {
        let mut proof = case.prove();
        proof[byte] ^= 1 << bit;
        prop_assert!(!case.verifies(&proof));
    }
}

#[test]
fn field_boundaries_are_unambiguous() {
    // Moving a character between the cluster and the address must change the proof.
    let node = |addr: &str| NodeAddr {
        addr: addr.into(),
        node_id: 1,
        incarnation: 1,
    };
    let a = prove(b"s", Role::Client, &node("bc"), "a", &[0; 32], &[1; 32]);
    let b = prove(b"s", Role::Client, &node("c"), "ab", &[0; 32], &[1; 32]);
    assert_ne!(a, b);
}

#[test]
fn a_full_handshake_over_the_codec_authenticates_both_sides_and_rejects_an_impostor() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let client = NodeAddr {
        addr: "127.0.0.1:7001".into(),
        node_id: 11,
        incarnation: 1,
    };
    let server = NodeAddr {
        addr: "127.0.0.1:7002".into(),
        node_id: 22,
        incarnation: 5,
    };
    let mut codec = FrameCodec::default();
    let mut wire = |frame: Frame| codec.decode(&mut encoded(&frame)).unwrap().unwrap();

    // 1. Hello.
    let nc = [0xc1; 32];
    let Frame::Hello(hello) = wire(Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        cluster: "prod".into(),
        node: client.clone(),
        nonce: nc,
    })) else {
        panic!("not a hello")
    };

    // 2. Challenge, with the server's proof over the client's nonce.
    let ns = [0x5e; 32];
    let server_proof = prove(
        secret,
        Role::Server,
        &server,
        &hello.cluster,
        &hello.nonce,
        &ns,
    );
    let Frame::Challenge(challenge) = wire(Frame::Challenge(Challenge {
        version: PROTOCOL_VERSION,
        cluster: "prod".into(),
        node: server.clone(),
        nonce: ns,
        proof: server_proof,
    })) else {
        panic!("not a challenge")
    };
    assert!(verify(
        secret,
        Role::Server,
        &challenge.node,
        &challenge.cluster,
        &nc,
        &challenge.nonce,
        &challenge.proof
    ));
    // A server without the secret is caught by the client.
    let forged = prove(b"guess", Role::Server, &server, "prod", &nc, &ns);
    assert!(!verify(
        secret,
        Role::Server,
        &server,
        "prod",
        &nc,
        &ns,
        &forged
    ));

    // 3. Proof, over the server's nonce.
    let client_proof = prove(secret, Role::Client, &client, "prod", &challenge.nonce, &nc);
    let Frame::Proof(proof) = wire(Frame::Proof(Proof {
        proof: client_proof,
    })) else {
        panic!("not a proof")
    };
    assert!(verify(
        secret,
        Role::Client,
        &hello.node,
        &hello.cluster,
        &ns,
        &hello.nonce,
        &proof.proof
    ));
    // The server's own proof, reflected back, is not a client proof.
    assert!(!verify(
        secret,
        Role::Client,
        &hello.node,
        "prod",
        &ns,
        &nc,
        &server_proof
    ));
}

//! Mutual authentication of two nodes that share a cluster secret.
//!
//! Each side proves that it knows the secret by sending an HMAC-SHA256 over a transcript that
//! binds its [`Role`], both nonces, the cluster's name and its own [`NodeAddr`]:
//!
//! ```text
//! proof = HMAC-SHA256(key = secret, message =
//!     len(label) ‖ label            label = "postbox-client" or "postbox-server"
//!   ‖ peer_nonce ‖ own_nonce        32 bytes each, the prover's peer's nonce first
//!   ‖ len(cluster) ‖ cluster        UTF-8
//!   ‖ len(addr) ‖ addr              the prover's NodeAddr: addr as UTF-8,
//!   ‖ node_id ‖ incarnation         then two u64 big-endian
//! )                                 len(x) = byte length of x as u64 big-endian
//! ```
//!
//! So the server's proof is `HMAC(secret, "postbox-server", client_nonce, server_nonce, cluster,
//! server node)` and the client's is `HMAC(secret, "postbox-client", server_nonce,
//! client_nonce, cluster, client node)`. The role label keeps a proof from being reflected
//! back as the other side's; the verifier's own fresh nonce makes every proof single-use; the
//! node makes a proof useless to anyone claiming another identity.
//!
//! In [`prove`] and [`verify`] the nonces are always named from the **prover's** point of view:
//! the verifier passes the same arguments the prover passed, so its own nonce goes in
//! `peer_nonce`.
//!
//! ```
//! use postbox_wire::auth::{prove, verify, Role};
//! use postbox_wire::NodeAddr;
//!
//! let secret = b"a long random cluster secret....";
//! let client = NodeAddr { addr: "10.0.0.1:7000".into(), node_id: 1, incarnation: 1 };
//! let server = NodeAddr { addr: "10.0.0.2:7000".into(), node_id: 2, incarnation: 9 };
//! let (client_nonce, server_nonce) = ([1u8; 32], [2u8; 32]);
//!
//! // Server, on Hello: proves itself in the Challenge.
//! let server_proof = prove(secret, Role::Server, &server, "prod", &client_nonce, &server_nonce);
//! // Client, on Challenge: checks the server, then proves itself.
//! assert!(verify(secret, Role::Server, &server, "prod", &client_nonce, &server_nonce, &server_proof));
//! let client_proof = prove(secret, Role::Client, &client, "prod", &server_nonce, &client_nonce);
//! // Server, on Proof: checks the client (the NodeAddr is the one from its Hello).
//! assert!(verify(secret, Role::Client, &client, "prod", &server_nonce, &client_nonce, &client_proof));
//! ```
//!
//! The secret should be at least 32 random bytes; this module accepts any length (HMAC hashes
//! keys longer than 64 bytes).

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::NodeAddr;

type HmacSha256 = Hmac<Sha256>;

/// Which side of the handshake a proof is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The node that opened the connection (sent `Hello`).
    Client,
    /// The node that accepted it (sent `Challenge`).
    Server,
}

impl Role {
    /// The domain-separation label that starts the transcript.
    fn label(self) -> &'static [u8] {
        match self {
            Role::Client => b"postbox-client",
            Role::Server => b"postbox-server",
        }
    }
}

/// The HMAC-SHA256 proof a party sends, binding its `role`, both nonces (`peer_nonce` first:
/// the nonce the prover received; then `own_nonce`: the one it sent), the `cluster` name and
/// the `prover`'s own [`NodeAddr`]. The exact transcript is in the [module docs](self).
pub fn prove(
    secret: &[u8],
    role: Role,
    prover: &NodeAddr,
    cluster: &str,
    peer_nonce: &[u8; 32],
    own_nonce: &[u8; 32],
) -> [u8; 32] {
    transcript(secret, role, prover, cluster, peer_nonce, own_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `proof` is what [`prove`] gives for the same arguments, compared in constant time.
///
/// The nonces are named from the prover's point of view: the verifier's own nonce is the
/// prover's `peer_nonce`.
pub fn verify(
    secret: &[u8],
    role: Role,
    prover: &NodeAddr,
    cluster: &str,
    peer_nonce: &[u8; 32],
    own_nonce: &[u8; 32],
    proof: &[u8; 32],
) -> bool {
    transcript(secret, role, prover, cluster, peer_nonce, own_nonce)
        .verify_slice(proof)
        .is_ok()
}

fn transcript(
    secret: &[u8],
    role: Role,
    prover: &NodeAddr,
    cluster: &str,
    peer_nonce: &[u8; 32],
    own_nonce: &[u8; 32],
) -> HmacSha256 {
    let mut mac = keyed(secret);
    field(&mut mac, role.label());
    mac.update(peer_nonce);
    mac.update(own_nonce);
    field(&mut mac, cluster.as_bytes());
    field(&mut mac, prover.addr.as_bytes());
    mac.update(&prover.node_id.to_be_bytes());
    mac.update(&prover.incarnation.to_be_bytes());
    mac
}

/// A variable-length field: its length (u64 big-endian), then its bytes.
/// An HMAC-SHA256 keyed with the cluster secret and bound to a `domain` (raw bytes, e.g.
/// `b"postbox-cluster gossip v1\0"`) and the cluster name (length-prefixed): what any other
/// part of postbox that authenticates with the cluster secret uses (the cluster's gossip
/// datagrams), so that the secret is keyed and compared in one place. Cheap to clone;
/// [`tag`](Self::tag) and [`verify`](Self::verify) continue from the bound prefix.
#[derive(Clone)]
pub struct ClusterMac {
    mac: HmacSha256,
}

impl ClusterMac {
    /// The MAC of `cluster`'s `secret` for `domain`.
    pub fn new(secret: &[u8], domain: &[u8], cluster: &str) -> Self {
        let mut mac = keyed(secret);
        mac.update(domain);
        field(&mut mac, cluster.as_bytes());
        Self { mac }
    }

    /// The tag of `bytes`.
    pub fn tag(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `bytes`, compared in constant time.
    pub fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for ClusterMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterMac(<keyed>)")
    }
}

fn field(mac: &mut HmacSha256, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

/// An HMAC keyed with `secret`, without the fallible `new_from_slice`: the key is normalized
/// here exactly as RFC 2104 (and the `hmac` crate) does it — hashed if longer than a block,
/// then zero-padded to a block — and handed to the infallible block-sized constructor.
fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut key = Key::<HmacSha256>::default();
    let hashed;
    let source: &[u8] = if secret.len() > key.len() {
        hashed = Sha256::digest(secret);
        &hashed
    } else {
        secret
    };
    for (k, s) in key.iter_mut().zip(source) {
        *k = *s;
    }
    <HmacSha256 as KeyInit>::new(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_normalization_matches_the_hmac_crate_for_every_key_length() {
        for len in [0, 1, 31, 32, 63, 64, 65, 128, 1000] {
            let secret: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let ours = keyed(&secret)
                .chain_update(b"message")
                .finalize()
                .into_bytes();
            let theirs = <HmacSha256 as KeyInit>::new_from_slice(&secret)
                .unwrap()
                .chain_update(b"message")
                .finalize()
                .into_bytes();
            assert_eq!(ours, theirs, "key length {len}");
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // Key "Jefe", data "what do ya want for nothing?".
        let tag = keyed(b"Jefe")
            .chain_update(b"what do ya want for nothing?")
            .finalize()
            .into_bytes();
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn transcript_layout_is_as_documented() {
        let node = NodeAddr {
            addr: "h:1".into(),
            node_id: 0x0102_0304_0506_0708,
            incarnation: 9,
        };
        let mut message = Vec::new();
        message.extend_from_slice(&14u64.to_be_bytes());
        message.extend_from_slice(b"postbox-server");
        message.extend_from_slice(&[1; 32]);
        message.extend_from_slice(&[2; 32]);
        message.extend_from_slice(&1u64.to_be_bytes());
        message.extend_from_slice(b"c");
        message.extend_from_slice(&3u64.to_be_bytes());
        message.extend_from_slice(b"h:1");
        message.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        message.extend_from_slice(&9u64.to_be_bytes());
        let expected: [u8; 32] = <HmacSha256 as KeyInit>::new_from_slice(b"s")
            .unwrap()
            .chain_update(&message)
            .finalize()
            .into_bytes()
            .into();
        assert_eq!(
            prove(b"s", Role::Server, &node, "c", &[1; 32], &[2; 32]),
            expected
        );
    }
}

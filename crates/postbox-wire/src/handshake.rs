//! The messages of the handshake. How they are used is in the [crate docs](crate) and in
//! [`auth`](crate::auth).

use crate::NodeAddr;

/// Handshake step 1, client → server.
///
/// Its layout up to `nonce` is frozen across protocol versions (later versions may only append
/// fields), so that any server can read the client's `version` and refuse it cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The client's protocol version ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    pub version: u16,
    /// The name of the cluster the client belongs to.
    pub cluster: String,
    /// The client node.
    pub node: NodeAddr,
    /// 32 fresh random bytes, never reused.
    pub nonce: [u8; 32],
}

/// Handshake step 2, server → client.
///
/// Its layout up to `proof` is frozen across protocol versions (later versions may only append
/// fields), so that any client can read the server's `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The server's protocol version ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    pub version: u16,
    /// The name of the cluster the server belongs to.
    pub cluster: String,
    /// The server node.
    pub node: NodeAddr,
    /// 32 fresh random bytes, never reused.
    pub nonce: [u8; 32],
    /// The server's proof that it knows the cluster secret:
    /// `auth::prove(secret, Role::Server, &server_node, cluster, &client_nonce, &server_nonce)`.
    pub proof: [u8; 32],
}

/// Handshake step 3, client → server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The client's proof that it knows the cluster secret:
    /// `auth::prove(secret, Role::Client, &client_node, cluster, &server_nonce, &client_nonce)`.
    pub proof: [u8; 32],
}

//! Errors of the transport.

use postbox_wire::{RefuseReason, WireError};
use std::fmt;

/// Why a connection to a peer could not be established.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address is not a valid `host:port`.
    BadAddress(String),
    /// TCP connection failed (after all attempts).
    Io(std::io::Error),
    /// The peer refused the handshake, saying why.
    Refused {
        /// Its reason.
        reason: RefuseReason,
        /// Its explanation.
        message: String,
    },
    /// The peer failed to prove it knows the cluster secret.
    AuthenticationFailed,
    /// The peer speaks another protocol version or belongs to another cluster.
    Incompatible(String),
    /// The peer sent something that is not a valid handshake frame.
    Protocol(String),
    /// The handshake did not finish in time.
    Timeout,
    /// The TLS handshake failed: the peer's certificate is not from the cluster's CA or does
    /// not name the dialed address, the peer does not speak TLS, or it refused ours.
    Tls(String),
    /// The node answering at that address is an incarnation this node has quarantined
    /// (declared down).
    Quarantined(postbox_wire::NodeAddr),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::BadAddress(a) => write!(f, "not a host:port address: {a:?}"),
            ConnectError::Io(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Refused { reason, message } => {
                write!(f, "the peer refused the connection ({reason:?}): {message}")
            }
            ConnectError::AuthenticationFailed => {
                f.write_str("the peer could not prove it knows the cluster secret")
            }
            ConnectError::Incompatible(what) => write!(f, "incompatible peer: {what}"),
            ConnectError::Protocol(what) => write!(f, "handshake protocol error: {what}"),
            ConnectError::Timeout => f.write_str("the handshake timed out"),
            ConnectError::Tls(what) => write!(f, "TLS handshake failed: {what}"),
            ConnectError::Quarantined(node) => {
                write!(f, "{node} was declared down and is quarantined")
            }
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<WireError> for ConnectError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Io(e) => ConnectError::Io(e),
            other => ConnectError::Protocol(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ConnectError {
    fn from(error: std::io::Error) -> Self {
        ConnectError::Io(error)
    }
}

/// Why a remote operation (lookup, start) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoteError {
    /// Could not bind the listening socket.
    Bind(std::io::Error),
    /// Could not reach the peer.
    Connect(ConnectError),
    /// No actor is registered under that name on the peer.
    NotFound(String),
    /// The connection was lost before the peer answered.
    NodeDown,
    /// No answer within [`lookup_timeout`](crate::RemoteConfig::lookup_timeout) (connecting
    /// included).
    Timeout(std::time::Duration),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Bind(e) => write!(f, "cannot listen: {e}"),
            RemoteError::Connect(e) => write!(f, "{e}"),
            RemoteError::NotFound(name) => write!(f, "no actor named {name:?} on that node"),
            RemoteError::NodeDown => f.write_str("the node went down before answering"),
            RemoteError::Timeout(limit) => write!(f, "no answer within {limit:?}"),
        }
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RemoteError::Bind(e) => Some(e),
            RemoteError::Connect(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConnectError> for RemoteError {
    fn from(error: ConnectError) -> Self {
        RemoteError::Connect(error)
    }
}

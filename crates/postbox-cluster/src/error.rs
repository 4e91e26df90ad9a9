//! Errors of the cluster: joining, registering.

use std::fmt;
use std::net::SocketAddr;

/// Why a node could not join (or act in) the cluster.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterError {
    /// A configuration field is invalid.
    Config {
        /// The field, as named in [`ClusterConfig`](crate::ClusterConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The gossip socket could not be bound.
    Bind(std::io::Error),
    /// The gossip service could not start.
    Start(String),
    /// A seed refused our gossip: we are not of its cluster, or do not know its secret.
    Refused {
        /// The seed that refused.
        seed: SocketAddr,
        /// Why.
        reason: Refusal,
    },
    /// This node has left the cluster (or was stopped).
    Stopped,
}

/// Why a node refused gossip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The gossip came from another cluster (another cluster name).
    WrongCluster,
    /// The gossip was not authenticated with this cluster's secret.
    AuthenticationFailed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::WrongCluster => "it belongs to another cluster (the cluster name differs)",
            Refusal::AuthenticationFailed => {
                "our gossip failed authentication (the cluster secret differs)"
            }
        })
    }
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Config { field, reason } => {
                write!(f, "invalid cluster configuration: {field}: {reason}")
            }
            ClusterError::Bind(e) => write!(f, "cannot listen for gossip: {e}"),
            ClusterError::Start(e) => write!(f, "cannot start gossip: {e}"),
            ClusterError::Refused { seed, reason } => {
                write!(f, "seed {seed} refused to let us join: {reason}")
            }
            ClusterError::Stopped => f.write_str("this node has left the cluster"),
        }
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClusterError::Bind(e) => Some(e),
            _ => None,
        }
    }
}

/// Why an actor could not be registered with the receptionist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The ref points to an actor on another node: register it on its own node.
    NotLocal,
    /// The actor has stopped.
    NotRunning,
    /// The service key is empty or longer than 255 bytes.
    InvalidKey(String),
    /// This node has left the cluster.
    Stopped,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::NotLocal => {
                f.write_str("only actors of this node can be registered here (the ref is remote)")
            }
            RegisterError::NotRunning => f.write_str("the actor has stopped"),
            RegisterError::InvalidKey(key) => {
                write!(f, "invalid service key {key:?}: 1 to 255 bytes")
            }
            RegisterError::Stopped => f.write_str("this node has left the cluster"),
        }
    }
}

impl std::error::Error for RegisterError {}

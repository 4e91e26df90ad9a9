//! Addresses: which actor a message is for, and where nodes and actors live.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who a message is for on the receiving node.
///
/// On the wire a `Message` frame carries one flag bit that says which variant follows: an
/// `Id` as a varint, a `Name` as a length-prefixed UTF-8 string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The actor with this id on the receiving node.
    Id(u64),
    /// The actor registered under this name on the receiving node.
    Name(String),
}

impl From<u64> for Target {
    fn from(id: u64) -> Self {
        Target::Id(id)
    }
}

impl From<String> for Target {
    fn from(name: String) -> Self {
        Target::Name(name)
    }
}

impl From<&str> for Target {
    fn from(name: &str) -> Self {
        Target::Name(name.to_owned())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Id(id) => write!(f, "#{id}"),
            Target::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// A node of the cluster: where it listens, and who it is.
///
/// `node_id` is random, chosen when the node is created; `incarnation` changes at every start,
/// so a restarted node at the same address is told apart from the one that was there before
/// (its actors, watches and pending asks are gone).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAddr {
    /// The node's listening address as text, `"host:port"`.
    pub addr: String,
    /// The node's random id.
    pub node_id: u64,
    /// Changes at every start of the node.
    pub incarnation: u64,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{:016x}.{}",
            self.addr, self.node_id, self.incarnation
        )
    }
}

/// An actor anywhere in the cluster: its node and its id there.
///
/// It is serializable, so that references to actors can travel inside payloads (see
/// [`to_payload`](crate::to_payload)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActorAddr {
    /// The node the actor lives on.
    pub node: NodeAddr,
    /// The actor's id on that node.
    pub id: u64,
}

impl fmt::Display for ActorAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.node, self.id)
    }
}

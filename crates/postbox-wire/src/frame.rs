//! The frames of the protocol.

use std::fmt;

use bytes::Bytes;

use crate::{Challenge, Envelope, Hello, Proof};

/// One unit of the protocol, as read from or written to a connection.
///
/// See the [crate documentation](crate) for the byte layout of each kind and for the order in
/// which they may appear.
///
/// Deliberately not `#[non_exhaustive]`: a transport matches every kind, and a new kind (one
/// line in the table of [`FrameKind`]s, with a new protocol version) must fail to compile
/// wherever it is not handled yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Handshake step 1, client → server: who the client is, and its nonce.
    Hello(Hello),
    /// Handshake step 2, server → client: who the server is, its nonce, and its proof.
    Challenge(Challenge),
    /// Handshake step 3, client → server: the client's proof.
    Proof(Proof),
    /// Handshake step 4, server → client: the connection is open for traffic.
    Welcome,
    /// Handshake step 4 (or any time before it), server → client: the connection is refused
    /// and will be closed.
    Refused {
        /// Why, for the program.
        reason: RefuseReason,
        /// Why, for a person reading the logs.
        message: String,
    },
    /// A message for an actor (a `tell`, or an `ask` if it has a correlation id).
    Message(Envelope),
    /// The successful answer to the ask with this correlation id.
    Reply {
        /// The ask's correlation id.
        correlation: u64,
        /// The serialized reply.
        payload: Bytes,
    },
    /// The failed answer to the ask with this correlation id.
    Error {
        /// The ask's correlation id.
        correlation: u64,
        /// What went wrong.
        error: RemoteError,
    },
    /// A liveness probe; the peer answers with a `HeartbeatAck` of the same `seq`.
    Heartbeat {
        /// The probe's sequence number.
        seq: u64,
    },
    /// The answer to a `Heartbeat`.
    HeartbeatAck {
        /// The sequence number of the probe answered.
        seq: u64,
    },
    /// Actor `watcher` (on the sending node) wants to be told when actor `target` (on the
    /// receiving node) terminates.
    Watch {
        /// The watching actor's id, on the sending node.
        watcher: u64,
        /// The watched actor's id, on the receiving node.
        target: u64,
    },
    /// Cancels a `Watch`.
    Unwatch {
        /// The watching actor's id, on the sending node.
        watcher: u64,
        /// The watched actor's id, on the receiving node.
        target: u64,
    },
    /// Actor `target` (on the sending node) has terminated; told to `watcher` (on the receiving
    /// node).
    Terminated {
        /// The terminated actor's id, on the sending node.
        target: u64,
        /// The watching actor's id, on the receiving node.
        watcher: u64,
        /// Why it terminated, for people.
        reason: String,
    },
    /// Asks the receiving node for the id of the actor registered under `name`.
    Lookup {
        /// Correlates the `Found` answer.
        correlation: u64,
        /// The registered name.
        name: String,
    },
    /// The answer to a `Lookup`: the actor's id, or `None` if no actor has that name.
    Found {
        /// The `Lookup`'s correlation id.
        correlation: u64,
        /// The actor's id, if the name is registered.
        id: Option<u64>,
    },
    /// The sender is closing the connection on purpose (graceful leave); nothing follows.
    Goodbye,
}

impl Frame {
    /// The frame's kind: its byte, label, class and version (see [`FrameKind`]).
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello(_) => FrameKind::Hello,
            Frame::Challenge(_) => FrameKind::Challenge,
            Frame::Proof(_) => FrameKind::Proof,
            Frame::Welcome => FrameKind::Welcome,
            Frame::Refused { .. } => FrameKind::Refused,
            Frame::Message(_) => FrameKind::Message,
            Frame::Reply { .. } => FrameKind::Reply,
            Frame::Error { .. } => FrameKind::Error,
            Frame::Heartbeat { .. } => FrameKind::Heartbeat,
            Frame::HeartbeatAck { .. } => FrameKind::HeartbeatAck,
            Frame::Watch { .. } => FrameKind::Watch,
            Frame::Unwatch { .. } => FrameKind::Unwatch,
            Frame::Terminated { .. } => FrameKind::Terminated,
            Frame::Lookup { .. } => FrameKind::Lookup,
            Frame::Found { .. } => FrameKind::Found,
            Frame::Goodbye => FrameKind::Goodbye,
        }
    }
}

/// What a frame is for, which decides how a connection handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameClass {
    /// Before `Welcome` only.
    Handshake,
    /// The peer asks something of this node (a message, a watch, a lookup) or ends its
    /// requests (`Goodbye`): handled in order, and may wait (for mailbox room, say).
    Request,
    /// An answer to this node's requests, or connection upkeep (heartbeats, a refusal that
    /// ends the connection): handled at once, never behind the peer's requests.
    Response,
}

/// Declares every frame kind once: its variant, wire byte, label, class and the protocol
/// version that introduced it. Adding a kind is one line here; the compiler then points at
/// every place that must handle it (encoding, decoding, size hints, the transport's
/// dispatch — all exhaustive matches, none with a catch-all).
macro_rules! frame_kinds {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $label:literal, $class:ident, since $since:literal; )*) => {
        /// The kind of a [`Frame`], from the one table of frame kinds (`frame.rs`). Not
        /// `#[non_exhaustive]`, for the same reason as [`Frame`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FrameKind {
            $( $(#[$doc])* $name, )*
        }

        impl FrameKind {
            /// Every kind, in table order.
            pub const ALL: &'static [FrameKind] = &[ $( FrameKind::$name, )* ];

            /// The kind's byte on the wire (the body's first byte).
            pub const fn code(self) -> u8 {
                match self { $( FrameKind::$name => $code, )* }
            }

            /// The kind with this byte, if any.
            pub const fn from_code(code: u8) -> Option<FrameKind> {
                match code { $( $code => Some(FrameKind::$name), )* _ => None }
            }

            /// A short, stable label, for metrics and logs (`"hello"`, `"heartbeat_ack"`).
            pub const fn label(self) -> &'static str {
                match self { $( FrameKind::$name => $label, )* }
            }

            /// What the frame is for.
            pub const fn class(self) -> FrameClass {
                match self { $( FrameKind::$name => FrameClass::$class, )* }
            }

            /// The first protocol version that has this kind.
            pub const fn since(self) -> u16 {
                match self { $( FrameKind::$name => $since, )* }
            }
        }
    };
}

frame_kinds! {
    /// Handshake step 1.
    Hello = 0x01, "hello", Handshake, since 1;
    /// Handshake step 2.
    Challenge = 0x02, "challenge", Handshake, since 1;
    /// Handshake step 3.
    Proof = 0x03, "proof", Handshake, since 1;
    /// Handshake step 4.
    Welcome = 0x04, "welcome", Handshake, since 1;
    /// A refusal: in the handshake, or (version 2) closing a connection.
    Refused = 0x05, "refused", Response, since 1;
    /// The sender closes on purpose; nothing follows.
    Goodbye = 0x06, "goodbye", Request, since 1;
    /// A message for an actor.
    Message = 0x10, "message", Request, since 1;
    /// An ask's reply.
    Reply = 0x11, "reply", Response, since 1;
    /// An ask's failure.
    Error = 0x12, "error", Response, since 1;
    /// A liveness probe.
    Heartbeat = 0x20, "heartbeat", Response, since 1;
    /// Its answer.
    HeartbeatAck = 0x21, "heartbeat_ack", Response, since 1;
    /// Watch an actor.
    Watch = 0x30, "watch", Request, since 1;
    /// Stop watching it.
    Unwatch = 0x31, "unwatch", Request, since 1;
    /// A watched actor terminated.
    Terminated = 0x32, "terminated", Response, since 1;
    /// Find an actor by name.
    Lookup = 0x40, "lookup", Request, since 1;
    /// The answer to a lookup.
    Found = 0x41, "found", Response, since 1;
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What kind of failure a remote ask ended with. Travels as one byte (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The receiving node has no message type registered under the envelope's tag.
    UnknownTag,
    /// The payload could not be decoded as the tag's type.
    Undecodable,
    /// No actor with the target id or name on the receiving node.
    UnknownTarget,
    /// The actor stopped before it replied.
    Stopped,
    /// The actor's handler panicked.
    Panicked,
    /// The receiving side gave up waiting.
    Timeout,
    /// The message was refused (mailbox full or closed, breaker open, bulkhead full).
    Refused,
    /// Anything else: a bug on the receiving node.
    Internal,
    /// The handler dropped its reply handle without replying.
    NoReply,
    /// The target was a router with no live routee.
    NoRoutees,
    /// The target forwarded the ask to a node that was lost before it replied.
    NodeDown,
    /// The message or its reply is larger than the connection's frame limit.
    TooLarge,
    /// The reply could not be encoded on the receiving node.
    Unencodable,
}

impl ErrorKind {
    /// Every kind, in wire-code order (code = index + 1).
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::UnknownTag,
        ErrorKind::Undecodable,
        ErrorKind::UnknownTarget,
        ErrorKind::Stopped,
        ErrorKind::Panicked,
        ErrorKind::Timeout,
        ErrorKind::Refused,
        ErrorKind::Internal,
        ErrorKind::NoReply,
        ErrorKind::NoRoutees,
        ErrorKind::NodeDown,
        ErrorKind::TooLarge,
        ErrorKind::Unencodable,
    ];

    /// The first protocol version that has this kind; to a peer of an older version,
    /// [`for_version`](Self::for_version) says what to send instead.
    pub const fn since(self) -> u16 {
        match self {
            ErrorKind::NoReply
            | ErrorKind::NoRoutees
            | ErrorKind::NodeDown
            | ErrorKind::TooLarge
            | ErrorKind::Unencodable => 2,
            _ => 1,
        }
    }

    /// This kind as a peer speaking `version` can read it: itself, or the nearest older
    /// kind (the message keeps the details).
    pub const fn for_version(self, version: u16) -> ErrorKind {
        if self.since() <= version {
            return self;
        }
        match self {
            ErrorKind::Unencodable => ErrorKind::Undecodable,
            ErrorKind::TooLarge | ErrorKind::NoRoutees => ErrorKind::Refused,
            _ => ErrorKind::Internal,
        }
    }

    /// The kind's byte on the wire.
    pub(crate) fn code(self) -> u8 {
        match self {
            ErrorKind::UnknownTag => 1,
            ErrorKind::Undecodable => 2,
            ErrorKind::UnknownTarget => 3,
            ErrorKind::Stopped => 4,
            ErrorKind::Panicked => 5,
            ErrorKind::Timeout => 6,
            ErrorKind::Refused => 7,
            ErrorKind::Internal => 8,
            ErrorKind::NoReply => 9,
            ErrorKind::NoRoutees => 10,
            ErrorKind::NodeDown => 11,
            ErrorKind::TooLarge => 12,
            ErrorKind::Unencodable => 13,
        }
    }

    /// The kind with this wire byte, if any.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    fn label(self) -> &'static str {
        match self {
            ErrorKind::UnknownTag => "unknown message tag",
            ErrorKind::Undecodable => "undecodable payload",
            ErrorKind::UnknownTarget => "unknown target actor",
            ErrorKind::Stopped => "actor stopped",
            ErrorKind::Panicked => "actor panicked",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Refused => "refused",
            ErrorKind::Internal => "internal error",
            ErrorKind::NoReply => "no reply",
            ErrorKind::NoRoutees => "no routees",
            ErrorKind::NodeDown => "node down",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Unencodable => "unencodable reply",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The failure a remote node answered an ask with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// What kind of failure, for the program.
    pub kind: ErrorKind,
    /// Details, for people.
    pub message: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "remote {}", self.kind)
        } else {
            write!(f, "remote {}: {}", self.kind, self.message)
        }
    }
}

impl std::error::Error for RemoteError {}

/// Why a server refused a connection. Travels as one byte (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The client's protocol version is not the server's.
    VersionMismatch,
    /// The client belongs to another cluster.
    WrongCluster,
    /// The client's proof did not verify: it does not know the cluster's secret.
    AuthenticationFailed,
    /// The server has reached its connection limit.
    TooManyConnections,
    /// The client sent something other than the expected handshake frame.
    Malformed,
    /// The server is shutting down.
    ShuttingDown,
    /// Both nodes dialed each other at once and the server's own connection wins the
    /// tie-break (the one dialed by the node with the smaller id); the client is to use that
    /// one instead.
    SimultaneousConnect,
    /// The cluster declared the client's incarnation down: it is no longer a member, and no
    /// node accepts it again. It is to stop acting as a member and restart as a new
    /// incarnation. Also sent after the handshake, just before the server closes a connection
    /// to a node it has just declared down.
    Quarantined,
    /// Another live incarnation of a node already holds the address the client claims; an
    /// address is not taken over while its holder answers.
    AddressInUse,
}

impl RefuseReason {
    /// Every reason, in wire-code order (code = index + 1).
    pub const ALL: [RefuseReason; 9] = [
        RefuseReason::VersionMismatch,
        RefuseReason::WrongCluster,
        RefuseReason::AuthenticationFailed,
        RefuseReason::TooManyConnections,
        RefuseReason::Malformed,
        RefuseReason::ShuttingDown,
        RefuseReason::SimultaneousConnect,
        RefuseReason::Quarantined,
        RefuseReason::AddressInUse,
    ];

    /// The reason's byte on the wire.
    pub(crate) fn code(&self) -> u8 {
        match self {
            RefuseReason::VersionMismatch => 1,
            RefuseReason::WrongCluster => 2,
            RefuseReason::AuthenticationFailed => 3,
            RefuseReason::TooManyConnections => 4,
            RefuseReason::Malformed => 5,
            RefuseReason::ShuttingDown => 6,
            RefuseReason::SimultaneousConnect => 7,
            RefuseReason::Quarantined => 8,
            RefuseReason::AddressInUse => 9,
        }
    }

    /// The reason with this wire byte, if any.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// The first protocol version that has this reason.
    pub fn since(&self) -> u16 {
        match self {
            RefuseReason::Quarantined | RefuseReason::AddressInUse => 2,
            _ => 1,
        }
    }

    /// This reason as a peer speaking `version` can read it: itself, or `Malformed` (code
    /// 5, known to every version; the message keeps the details).
    pub fn for_version(&self, version: u16) -> RefuseReason {
        if self.since() <= version {
            self.clone()
        } else {
            RefuseReason::Malformed
        }
    }

    /// A short, stable snake_case label, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            RefuseReason::VersionMismatch => "version_mismatch",
            RefuseReason::WrongCluster => "wrong_cluster",
            RefuseReason::AuthenticationFailed => "authentication_failed",
            RefuseReason::TooManyConnections => "too_many_connections",
            RefuseReason::Malformed => "malformed",
            RefuseReason::ShuttingDown => "shutting_down",
            RefuseReason::SimultaneousConnect => "simultaneous_connect",
            RefuseReason::Quarantined => "quarantined",
            RefuseReason::AddressInUse => "address_in_use",
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefuseReason::VersionMismatch => "protocol version mismatch",
            RefuseReason::WrongCluster => "wrong cluster",
            RefuseReason::AuthenticationFailed => "authentication failed",
            RefuseReason::TooManyConnections => "too many connections",
            RefuseReason::Malformed => "malformed handshake",
            RefuseReason::ShuttingDown => "shutting down",
            RefuseReason::SimultaneousConnect => "simultaneous connect; the other connection wins",
            RefuseReason::Quarantined => "this incarnation was declared down by the cluster",
            RefuseReason::AddressInUse => "another live incarnation holds this address",
        })
    }
}

//! # postbox-wire
//!
//! The wire format of postbox: the frames two nodes exchange over one connection, their
//! binary layout, the handshake that authenticates the nodes, versioning and size limits.
//! This crate owns formats only: it opens no sockets and knows nothing of actors
//! (`postbox-remote` does both, on top of it).
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use postbox_wire::{encode_frame, Envelope, Frame, FrameCodec, Target};
//! use tokio_util::codec::Decoder;
//!
//! let mut envelope = Envelope::new(Target::Name("counter".into()), "app.Add", Bytes::from_static(b"\x2a"));
//! envelope.correlation = Some(7); // an ask
//! let frame = Frame::Message(envelope);
//!
//! let mut buf = BytesMut::new();
//! encode_frame(&frame, &mut buf)?;            // length prefix + body, appended
//! let decoded = FrameCodec::default().decode(&mut buf)?;
//! assert_eq!(decoded, Some(frame));
//! assert!(buf.is_empty());
//! # Ok::<(), postbox_wire::WireError>(())
//! ```
//!
//! ## Framing
//!
//! A connection is a stream of frames. Each is a **length prefix** (u32, big-endian: the
//! number of bytes that follow) and a **body** whose first byte is the frame's **kind**.
//! [`FrameCodec`] is the `tokio_util` codec for it; [`encode_frame`] appends one frame to a
//! buffer, for writers that batch many frames into one write.
//!
//! ## Layout
//!
//! Every frame is written by hand, control frames too, in one compact scheme (no serde on the
//! frame level: it is faster, allocation-free apart from decoded strings, and fully specified
//! here). The primitives:
//!
//! | name | bytes |
//! | --- | --- |
//! | `u8`, `u16` | fixed width, big-endian |
//! | `varint` | unsigned LEB128: 7 bits a byte, least significant first, high bit set on every byte but the last; 1 to 10 bytes for a u64 |
//! | `str` | `varint` byte length, then that many bytes of UTF-8 |
//! | `[32]` | 32 raw bytes |
//! | `node` ([`NodeAddr`]) | `addr: str`, `node_id: varint`, `incarnation: varint` |
//! | `actor` ([`ActorAddr`]) | `node`, then `id: varint` |
//! | `rest` | every byte up to the end of the frame, without a length of its own |
//!
//! The frames (fields in order, after the kind byte; `[x]` is present only if its flag is set;
//! `…` marks where later versions may append fields, see [Versioning](#versioning)):
//!
//! | kind | byte | body after the kind byte |
//! | --- | --- | --- |
//! | `Hello` | `0x01` | `version: u16`, `cluster: str`, `node: node`, `nonce: [32]`, … |
//! | `Challenge` | `0x02` | `version: u16`, `cluster: str`, `node: node`, `nonce: [32]`, `proof: [32]`, … |
//! | `Proof` | `0x03` | `proof: [32]` |
//! | `Welcome` | `0x04` | (nothing) |
//! | `Refused` | `0x05` | `reason: u8` (table below), `message: str`, … |
//! | `Goodbye` | `0x06` | (nothing) |
//! | `Message` | `0x10` | `flags: u8`, `target: varint` (id) or `str` (name, flag `0x01`), `tag: str`, `[correlation: varint]` (flag `0x02`), `[sender: actor]` (flag `0x04`), `[trace: str]` (flag `0x08`), `payload: rest` |
//! | `Reply` | `0x11` | `correlation: varint`, `payload: rest` |
//! | `Error` | `0x12` | `correlation: varint`, `kind: u8` (table below), `message: str` |
//! | `Heartbeat` | `0x20` | `seq: varint` |
//! | `HeartbeatAck` | `0x21` | `seq: varint` |
//! | `Watch` | `0x30` | `watcher: varint`, `target: varint` |
//! | `Unwatch` | `0x31` | `watcher: varint`, `target: varint` |
//! | `Terminated` | `0x32` | `target: varint`, `watcher: varint`, `reason: str` |
//! | `Lookup` | `0x40` | `correlation: varint`, `name: str` |
//! | `Found` | `0x41` | `flags: u8`, `correlation: varint`, `[id: varint]` (flag `0x01`) |
//!
//! A `tell` of a 100-byte payload to actor 5 with a 10-byte tag is 4 + 1 + 1 + 1 + 11 + 100 =
//! 118 bytes. A decoded `Message` or `Reply` payload is a slice of the frame's buffer, not a
//! copy.
//!
//! Codes of [`RefuseReason`]: 1 `VersionMismatch`, 2 `WrongCluster`, 3
//! `AuthenticationFailed`, 4 `TooManyConnections`, 5 `Malformed`, 6 `ShuttingDown`,
//! 7 `SimultaneousConnect`, 8 `Quarantined`, 9 `AddressInUse`.
//! Codes of [`ErrorKind`]: 1 `UnknownTag`, 2 `Undecodable`, 3 `UnknownTarget`, 4 `Stopped`, 5
//! `Panicked`, 6 `Timeout`, 7 `Refused`, 8 `Internal`, 9 `NoReply`, 10 `NoRoutees`,
//! 11 `NodeDown`, 12 `TooLarge`, 13 `Unencodable`. Code 0 is never used.
//!
//! Payloads are opaque here; [`to_payload`] and [`from_payload`] encode application values
//! with rmp-serde's compact MessagePack (structs as arrays: field order is the schema).
//!
//! ## Versioning
//!
//! A node speaks every version from [`MIN_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`]. The
//! client's [`Hello::version`] is the highest it speaks; the server answers in
//! [`Challenge::version`] with the highest version both speak (the smaller of the two
//! highest), or refuses with `VersionMismatch` (code 1) naming both if that is below its own
//! lowest; the client closes if the chosen version is not one it speaks. The connection then
//! speaks exactly that version: a node never sends a frame kind, flag or code that version
//! does not have — an error kind or refusal reason from a later version goes out as the
//! nearest one the peer knows (`ErrorKind::for_version`, `RefuseReason::for_version`; the
//! message keeps the details), and a `Refused` after `Welcome` (version 2) is not sent to a
//! version-1 peer, which only sees the connection close.
//!
//! | version | adds |
//! | --- | --- |
//! | 1 | every frame kind in the table above |
//! | 2 | refusal codes 8 `Quarantined` and 9 `AddressInUse`; error kinds 9–13; `Refused` after `Welcome` to say why a connection closes |
//!
//! So that negotiation stays possible between any two versions, some things are **frozen
//! forever**: the length prefix; kinds `0x01` `Hello`, `0x02` `Challenge` and `0x05`
//! `Refused`; their fields as listed above (later versions may only append fields where `…`
//! is shown, which older decoders skip); and refusal code 1, `VersionMismatch`.
//!
//! Everything else may change, but only with a new version: a new frame kind (one line in
//! the table of kinds in `frame.rs`, which also records the version that added it), a new
//! flag, a new code, a changed layout. Within a connection nothing unknown is skipped: an
//! unknown kind is [`WireError::UnknownKind`]; unknown flag bits, unknown codes, trailing
//! bytes after the last field (except where `…` is shown) and invalid UTF-8 are
//! [`WireError::Malformed`]. A peer that sends them is broken, not newer, and the connection
//! is closed.
//!
//! **Upgrading a cluster one node at a time.** Release *n* speaks versions up to *v* and
//! down to *v − 1*. Replace nodes one at a time; old and new nodes talk at *v − 1*, new
//! pairs at *v*. Once no node older than release *n* is left, a later release may raise its
//! `MIN_PROTOCOL_VERSION` to *v*. Never skip a release that raised the highest version: two
//! nodes must always share one.
//!
//! ## Limits
//!
//! - Before `Welcome`, a frame body is at most [`MAX_HANDSHAKE_FRAME`] bytes (4 KiB; the
//!   largest handshake frame is well under 1 KiB): an unauthenticated peer cannot make a
//!   node reserve more than that.
//! - A frame body is at most `max_frame` bytes ([`DEFAULT_MAX_FRAME`], 8 MiB; at most
//!   `u32::MAX`). The decoder checks the announced length **before** reserving room for it and
//!   answers [`WireError::FrameTooLarge`], so one frame never makes it allocate more than
//!   `max_frame + 4` bytes; the encoder refuses larger frames too, leaving its buffer as it
//!   was. Both nodes should use the same limit.
//! - A length of 0 (no kind byte) is malformed. Strings and payloads are bounded by their
//!   frame: a length that points past the frame's end is malformed, whatever it announces.
//! - A varint is at most 10 bytes and fits a u64, or it is malformed.
//! - The decoder never panics: every read is checked, whatever the bytes. It returns
//!   `Ok(None)` until a whole frame has arrived.
//!
//! ## Handshake
//!
//! A mutual challenge–response over the cluster's shared secret: each node proves that it
//! knows the secret without sending it, and each proof is bound to the other side's fresh
//! nonce, so it cannot be replayed. [`auth`] computes and checks the proofs (its docs give
//! the exact HMAC transcript).
//!
//! 1. **client → server: `Hello`** with its version, cluster name, [`NodeAddr`] and a fresh
//!    random 32-byte nonce `nc`. The server refuses (`Refused`, then closes) on another
//!    version (`VersionMismatch`), another cluster (`WrongCluster`), when full
//!    (`TooManyConnections`) or when stopping (`ShuttingDown`).
//! 2. **server → client: `Challenge`** with its version, cluster, node, its own fresh nonce
//!    `ns` and the **server's proof** `prove(secret, Server, server node, cluster, nc, ns)`.
//!    The client checks version and cluster, then verifies the proof; if it fails, the server
//!    does not know the secret and the client closes the connection.
//! 3. **client → server: `Proof`** with the **client's proof** `prove(secret, Client, client
//!    node, cluster, ns, nc)`, over the node the client announced in its `Hello`.
//! 4. **server → client: `Welcome`** if the proof verifies, else `Refused {
//!    AuthenticationFailed }` and the server closes. Any frame out of this order before
//!    `Welcome` is answered with `Refused { Malformed }`. When both nodes are dialing each
//!    other at that moment, the connection dialed by the node with the smaller node id wins:
//!    the server whose own dial wins answers `Refused { SimultaneousConnect }`, and the
//!    client waits for the server's connection instead — one connection per pair of nodes.
//!
//! After `Welcome` both sides may send any traffic frame (`Message`, `Reply`, `Error`,
//! heartbeats, watches, lookups) until one of them sends `Goodbye` or the connection drops.
//! A node may also end a connection with `Refused` after `Welcome`, to say why it closes it
//! (`Quarantined`: the cluster has declared the other node's incarnation down).
//! The handshake authenticates the nodes; it does not encrypt or sign later frames: use TLS
//! where the network is not trusted.

mod addr;
pub mod auth;
mod codec;
mod envelope;
mod error;
mod frame;
mod handshake;
mod payload;

pub use crate::addr::{ActorAddr, NodeAddr, Target};
pub use crate::codec::{
    encode_frame, encode_message, FrameBody, FrameCodec, Incoming, MessageFrame, Peeked,
};
pub use crate::envelope::{Envelope, MessageHead, TargetRef};
pub use crate::error::WireError;
pub use crate::frame::{ErrorKind, Frame, FrameClass, FrameKind, RefuseReason, RemoteError};
pub use crate::handshake::{Challenge, Hello, Proof};
pub use crate::payload::{from_payload, to_payload};

/// The highest protocol version this crate speaks: a client sends it in [`Hello`], and the
/// server answers in [`Challenge`] with the highest version both speak (see
/// [Versioning](crate#versioning)).
pub const PROTOCOL_VERSION: u16 = 2;

/// The lowest protocol version this crate still speaks, so that a cluster can be upgraded one
/// node at a time.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The limit on a frame's body before the handshake is complete (both sides): 4 KiB.
/// Handshake frames are small (a `Hello` with a 255-byte cluster name and a 255-byte address
/// is under 600 bytes), so an unauthenticated peer never makes a node reserve more than this.
pub const MAX_HANDSHAKE_FRAME: usize = 4 * 1024;

/// The default limit on a frame's body, in bytes: 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

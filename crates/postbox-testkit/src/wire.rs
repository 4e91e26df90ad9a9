//! `WireClient`: a connection to a node's transport driven by hand, for tests of what the
//! transport does with input no well-behaved node would send.
//!
//! A [`WireClient`] is a plain TCP connection and nothing more until told otherwise. It can
//!
//! - stay idle, unauthenticated ([`WireClient::connect`] and do nothing);
//! - write any bytes ([`write_raw`](WireClient::write_raw)), e.g. a length prefix announcing a
//!   huge frame ([`announce_frame`](WireClient::announce_frame)) followed by a dribble or by
//!   nothing at all;
//! - perform the handshake (`Hello`, `Challenge`, `Proof`, `Welcome`; see `postbox-wire`'s
//!   crate docs) as a [`FakeNode`] with any cluster name, secret, claimed
//!   [`NodeAddr`] (address, node id, incarnation — to impersonate) and protocol version;
//! - then send any [`Frame`] ([`send`](WireClient::send)): messages with any target, tag,
//!   payload and correlation (typed helpers [`tell`](WireClient::tell),
//!   [`ask`](WireClient::ask), [`send_ask`](WireClient::send_ask) encode a registered
//!   message type with its own codec), lookups, watches, heartbeats, goodbyes;
//! - read frames under a deadline ([`recv`](WireClient::recv),
//!   [`recv_reply`](WireClient::recv_reply)), or not read at all, so that what the node
//!   writes backs up (open with a small receive buffer,
//!   [`ClientOptions::recv_buffer`], to make that happen after a few kilobytes);
//! - tell why the node closed the connection ([`wait_closed`](WireClient::wait_closed):
//!   its `Refused` reason and message, its `Goodbye`, or a close without a word);
//! - or play the other side: [`accept`](WireClient::accept) a connection the node under test
//!   dials and [`serve_handshake`](WireClient::serve_handshake) as a `FakeNode` (an older
//!   version, a node that then says nothing), with everything above available afterwards.
//!
//! Frames are encoded and decoded by `postbox-wire` itself ([`FrameCodec`]), so the client
//! speaks exactly the node's format; proofs come from `postbox_wire::auth`.
//!
//! # Deadlines and errors
//!
//! Every read and every write waits at most the client's deadline
//! ([`PATIENCE`] unless [`set_deadline`](WireClient::set_deadline) changed
//! it; [`recv_within`](WireClient::recv_within) for one read). Nothing here panics on what
//! the node does: the outcome is a [`ClientError`] for the test to assert on —
//! [`Timeout`](ClientError::Timeout) (the connection is still open: nothing came, or the node
//! stopped reading what the client writes), [`Closed`](ClientError::Closed) with a
//! [`CloseReason`], [`Undecodable`](ClientError::Undecodable) bytes from the node, or a
//! [`Handshake`](ClientError::Handshake) that went off script. A write that timed out may
//! have been partly written: the connection's framing is then unknown.
//!
//! # Heartbeats
//!
//! A node closes a connection it hears nothing on for its heartbeat timeout, and sends a
//! `Heartbeat` after a second of silence. By default the client answers each `Heartbeat` it
//! reads with a `HeartbeatAck` and does not return it (only while it is reading: a client
//! that never reads never answers); [`pass_heartbeats`](WireClient::pass_heartbeats) returns
//! them unanswered instead. Frames read while waiting for something else (a reply, the
//! close) are kept, in order, for the next [`recv`](WireClient::recv).
//!
//! ```no_run
//! use postbox_testkit::wire::{FakeNode, WireClient};
//! use postbox_testkit::{TEST_CLUSTER, TEST_SECRET};
//! use postbox_wire::{Frame, RefuseReason};
//!
//! # async fn run(node_addr: &str) -> Result<(), Box<dyn std::error::Error>> {
//! // A node of another cluster is refused, and told why.
//! let stranger = FakeNode::new("another-cluster", TEST_SECRET);
//! let refused = WireClient::connect_as(node_addr, &stranger).await.unwrap_err();
//! assert_eq!(refused.refusal(), Some(&RefuseReason::WrongCluster));
//!
//! // A member may look actors up.
//! let member = FakeNode::new(TEST_CLUSTER, TEST_SECRET);
//! let mut client = WireClient::connect_as(node_addr, &member).await?;
//! let id = client.lookup("journal").await?;
//! assert!(id.is_some());
//! client.send(&Frame::Goodbye).await?;
//! # Ok(())
//! # }
//! ```

use crate::wait::PATIENCE;
use bytes::{Bytes, BytesMut};
use postbox::{BoxError, Message};
use postbox_wire::auth::{self, Role};
use postbox_wire::{
    Challenge, Envelope, Frame, FrameCodec, Hello, NodeAddr, Proof, RefuseReason, RemoteError,
    Target, WireError, DEFAULT_MAX_FRAME, PROTOCOL_VERSION,
};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

/// A loopback address on port 1, where nothing listens, so a node that tries to dial it back
/// fails at once: what a [`FakeNode`] claims unless told otherwise. Each fake node gets its
/// own (a random address in `127.0.0.0/8`), because a node refuses a second live
/// incarnation at an address that one already holds.
pub fn unreachable_addr() -> String {
    let [a, b, c] = [fastrand::u8(..), fastrand::u8(..), fastrand::u8(1..)];
    format!("127.{a}.{b}.{c}:1")
}

/// Who a [`WireClient`] claims to be in its handshake, and what it knows.
#[derive(Clone)]
pub struct FakeNode {
    /// The cluster name sent in `Hello` and bound into the proof.
    pub cluster: String,
    /// The secret the proofs are computed with.
    pub secret: Vec<u8>,
    /// The node claimed in `Hello`: address, node id and incarnation.
    pub node: NodeAddr,
    /// The protocol version sent in `Hello`.
    pub version: u16,
    /// Whether the handshake checks the other side's proof (it does unless told not to): the
    /// server's in [`WireClient::handshake`], the node's in [`WireClient::serve_handshake`].
    pub verify_server: bool,
}

impl FakeNode {
    /// A node of `cluster` knowing `secret`, at an [`unreachable_addr`] with a random node id
    /// and incarnation, speaking this build's [`PROTOCOL_VERSION`].
    pub fn new(cluster: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        Self {
            cluster: cluster.into(),
            secret: secret.as_ref().to_vec(),
            node: NodeAddr {
                addr: unreachable_addr(),
                node_id: fastrand::u64(..),
                incarnation: fastrand::u64(..),
            },
            version: PROTOCOL_VERSION,
            verify_server: true,
        }
    }

    /// Claims to be `node` (another node's address, id and incarnation, to impersonate it).
    pub fn node(mut self, node: NodeAddr) -> Self {
        self.node = node;
        self
    }

    /// Claims the listening address `addr`.
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.node.addr = addr.into();
        self
    }

    /// Claims node id `node_id`.
    pub fn node_id(mut self, node_id: u64) -> Self {
        self.node.node_id = node_id;
        self
    }

    /// Claims incarnation `incarnation`.
    pub fn incarnation(mut self, incarnation: u64) -> Self {
        self.node.incarnation = incarnation;
        self
    }

    /// Announces protocol version `version`.
    pub fn version(mut self, version: u16) -> Self {
        self.version = version;
        self
    }

    /// Does not check the server's proof (to get as far as `Proof` with a server whose secret
    /// differs).
    pub fn skip_server_verification(mut self) -> Self {
        self.verify_server = false;
        self
    }

    /// The `Hello` this node sends with `nonce`.
    pub fn hello(&self, nonce: [u8; 32]) -> Frame {
        Frame::Hello(Hello {
            version: self.version,
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            nonce,
        })
    }

    /// The `Proof` this node answers `challenge` with, having sent `nonce` in its `Hello`.
    pub fn proof(&self, challenge: &Challenge, nonce: &[u8; 32]) -> Frame {
        Frame::Proof(Proof {
            proof: auth::prove(
                &self.secret,
                Role::Client,
                &self.node,
                &self.cluster,
                &challenge.nonce,
                nonce,
            ),
        })
    }

    /// The `Challenge` this node answers `hello` with when it plays the server: the highest
    /// version both speak, its own `nonce`, and its proof.
    pub fn challenge(&self, hello: &Hello, nonce: [u8; 32]) -> Frame {
        Frame::Challenge(Challenge {
            version: hello.version.min(self.version),
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            nonce,
            proof: auth::prove(
                &self.secret,
                Role::Server,
                &self.node,
                &self.cluster,
                &hello.nonce,
                &nonce,
            ),
        })
    }

    /// Whether `proof` is a valid client proof of the node that sent `hello`, for the `nonce`
    /// of our `Challenge`.
    pub fn verifies_client(&self, hello: &Hello, nonce: &[u8; 32], proof: &Proof) -> bool {
        auth::verify(
            &self.secret,
            Role::Client,
            &hello.node,
            &hello.cluster,
            nonce,
            &hello.nonce,
            &proof.proof,
        )
    }

    /// Whether `challenge` carries a valid server proof for our `nonce`.
    pub fn verifies(&self, challenge: &Challenge, nonce: &[u8; 32]) -> bool {
        auth::verify(
            &self.secret,
            Role::Server,
            &challenge.node,
            &challenge.cluster,
            nonce,
            &challenge.nonce,
            &challenge.proof,
        )
    }
}

impl fmt::Debug for FakeNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeNode")
            .field("cluster", &self.cluster)
            .field("secret", &"<redacted>")
            .field("node", &self.node)
            .field("version", &self.version)
            .field("verify_server", &self.verify_server)
            .finish()
    }
}

/// Why the node's side of the connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// It sent `Refused` (and closed, or was about to).
    Refused {
        /// Its reason.
        reason: RefuseReason,
        /// Its explanation.
        message: String,
    },
    /// It sent `Goodbye`, then closed.
    Goodbye,
    /// It closed without a word (end of stream).
    Eof,
    /// The connection was reset, or reading failed.
    Reset(io::Error),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Refused { reason, message } => {
                write!(f, "refused ({reason:?}): {message}")
            }
            CloseReason::Goodbye => f.write_str("goodbye"),
            CloseReason::Eof => f.write_str("closed without a word"),
            CloseReason::Reset(error) => write!(f, "reset: {error}"),
        }
    }
}

/// What went other than expected on a [`WireClient`]'s connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting failed.
    Connect(io::Error),
    /// Nothing (or not what was awaited) within the deadline. The connection is still open.
    Timeout {
        /// What the client was waiting for.
        waiting_for: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The node's side of the connection ended.
    Closed(CloseReason),
    /// The node sent bytes that do not decode as a frame.
    Undecodable(WireError),
    /// The handshake went off script: an unexpected frame, or a server proof that does not
    /// verify.
    Handshake(String),
    /// A frame could not be encoded (larger than the client's `max_frame`).
    Encode(WireError),
    /// A message or reply payload could not be encoded or decoded with its type's codec.
    Payload(String),
}

impl ClientError {
    /// The refusal's reason, if the node refused the connection.
    pub fn refusal(&self) -> Option<&RefuseReason> {
        match self {
            ClientError::Closed(CloseReason::Refused { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    /// Whether the deadline passed with the connection still open.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }

    /// Whether the node's side of the connection has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self, ClientError::Closed(_))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(error) => write!(f, "cannot connect: {error}"),
            ClientError::Timeout { waiting_for, after } => {
                write!(f, "still open, but no {waiting_for} within {after:?}")
            }
            ClientError::Closed(reason) => write!(f, "connection closed by the node: {reason}"),
            ClientError::Undecodable(error) => {
                write!(f, "the node sent an undecodable frame: {error}")
            }
            ClientError::Handshake(what) => write!(f, "handshake off script: {what}"),
            ClientError::Encode(error) => write!(f, "cannot encode the frame: {error}"),
            ClientError::Payload(what) => write!(f, "payload: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// How a [`WireClient`] opens its socket.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    recv_buffer: Option<u32>,
    send_buffer: Option<u32>,
    deadline: Option<Duration>,
}

impl ClientOptions {
    /// Sets the socket's receive buffer (`SO_RCVBUF`; the kernel may round it up): small, so
    /// that a client that does not read makes the node's writes back up soon.
    pub fn recv_buffer(mut self, bytes: u32) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Sets the socket's send buffer (`SO_SNDBUF`).
    pub fn send_buffer(mut self, bytes: u32) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    /// Sets the client's deadline (see [`WireClient::set_deadline`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Connects to `addr` with these options.
    pub async fn connect(self, addr: impl ToSocketAddrs) -> Result<WireClient, ClientError> {
        let deadline = self.deadline.unwrap_or(PATIENCE);
        let connecting = async {
            let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
            for target in tokio::net::lookup_host(addr).await? {
                match self.open(target).await {
                    Ok(client) => return Ok(client),
                    Err(error) => last = error,
                }
            }
            Err(last)
        };
        let mut client = match tokio::time::timeout(deadline, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(ClientError::Connect(error)),
            Err(_) => {
                return Err(ClientError::Timeout {
                    waiting_for: "connection",
                    after: deadline,
                })
            }
        };
        client.deadline = deadline;
        Ok(client)
    }

    async fn open(&self, target: SocketAddr) -> io::Result<WireClient> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(bytes) = self.recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        if let Some(bytes) = self.send_buffer {
            socket.set_send_buffer_size(bytes)?;
        }
        let stream = socket.connect(target).await?;
        WireClient::from_stream(stream)
    }
}

impl WireClient {
    /// A client over `stream`, with the default settings.
    fn from_stream(stream: TcpStream) -> io::Result<WireClient> {
        stream.set_nodelay(true)?;
        let local_addr = stream.local_addr()?;
        let (read, write) = stream.into_split();
        Ok(WireClient {
            read,
            write,
            local_addr,
            buf: BytesMut::new(),
            max_frame: DEFAULT_MAX_FRAME,
            deadline: PATIENCE,
            answer_heartbeats: true,
            unread: VecDeque::new(),
            farewell: None,
            closed: false,
            next_correlation: 1,
            next_heartbeat: 1,
            peer: None,
            peer_version: None,
        })
    }
}

/// A connection to a node's transport, driven by hand. See the [module docs](self).
pub struct WireClient {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    local_addr: SocketAddr,
    buf: BytesMut,
    max_frame: usize,
    deadline: Duration,
    answer_heartbeats: bool,
    /// Frames read while waiting for something else, for the next `recv`.
    unread: VecDeque<Frame>,
    /// The last `Refused` or `Goodbye` read: why the close that follows happens.
    farewell: Option<CloseReason>,
    /// Whether the node's side has ended (end of stream or error).
    closed: bool,
    next_correlation: u64,
    next_heartbeat: u64,
    /// The node, once a handshake has told who it is.
    peer: Option<NodeAddr>,
    /// The protocol version its `Challenge` chose.
    peer_version: Option<u16>,
}

impl WireClient {
    /// Opens a TCP connection to `addr` and does nothing else: an idle, unauthenticated
    /// connection until told otherwise.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<WireClient, ClientError> {
        ClientOptions::default().connect(addr).await
    }

    /// Accepts one connection on `listener` and does nothing else: the test plays a node that
    /// the node under test dials (an older version, a node that never answers, one that
    /// refuses). [`serve_handshake`](Self::serve_handshake) then plays the server's side.
    /// Waits at most [`PATIENCE`].
    pub async fn accept(listener: &TcpListener) -> Result<WireClient, ClientError> {
        match tokio::time::timeout(PATIENCE, listener.accept()).await {
            Ok(Ok((stream, _))) => Self::from_stream(stream).map_err(ClientError::Connect),
            Ok(Err(error)) => Err(ClientError::Connect(error)),
            Err(_) => Err(ClientError::Timeout {
                waiting_for: "a connection to accept",
                after: PATIENCE,
            }),
        }
    }

    /// Options for opening the socket (buffer sizes, deadline).
    pub fn options() -> ClientOptions {
        ClientOptions::default()
    }

    /// Connects to `addr` and performs the handshake as `me` (see
    /// [`handshake`](Self::handshake)).
    pub async fn connect_as(
        addr: impl ToSocketAddrs,
        me: &FakeNode,
    ) -> Result<WireClient, ClientError> {
        let mut client = Self::connect(addr).await?;
        client.handshake(me).await?;
        Ok(client)
    }

    /// Performs the client side of the handshake as `me`: `Hello` with a fresh nonce, then
    /// the node's `Challenge` (whose proof is checked unless `me` says otherwise), our
    /// `Proof`, and the node's `Welcome`. Returns the node as its `Challenge` named it.
    ///
    /// The node's version and cluster in its `Challenge` are not compared with ours (a test
    /// may want to see what it answers); a `Refused` at any step ends it with
    /// [`ClientError::Closed`] and the reason.
    pub async fn handshake(&mut self, me: &FakeNode) -> Result<NodeAddr, ClientError> {
        self.handshake_pipelining(me, &[]).await
    }

    /// [`handshake`](Self::handshake), with `frames` written in the same write as the
    /// `Proof`, before the node has welcomed us: a peer that pipelines its first messages.
    pub async fn handshake_pipelining(
        &mut self,
        me: &FakeNode,
        frames: &[Frame],
    ) -> Result<NodeAddr, ClientError> {
        let nonce: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
        self.send(&me.hello(nonce)).await?;
        let challenge = match self.handshake_frame("challenge").await? {
            Frame::Challenge(challenge) => challenge,
            other => {
                return Err(ClientError::Handshake(format!(
                    "expected a challenge, got {other:?}"
                )))
            }
        };
        if me.verify_server && !me.verifies(&challenge, &nonce) {
            return Err(ClientError::Handshake(format!(
                "the server's proof does not verify (it claims to be {})",
                challenge.node
            )));
        }
        let mut proof_and_after = vec![me.proof(&challenge, &nonce)];
        proof_and_after.extend_from_slice(frames);
        self.send_all(&proof_and_after).await?;
        match self.handshake_frame("welcome").await? {
            Frame::Welcome => {
                self.peer = Some(challenge.node.clone());
                self.peer_version = Some(challenge.version);
                Ok(challenge.node)
            }
            other => Err(ClientError::Handshake(format!(
                "expected welcome, got {other:?}"
            ))),
        }
    }

    /// Performs the server side of the handshake as `me`, on an
    /// [`accept`](Self::accept)ed connection: the node's `Hello`, our `Challenge` (at the
    /// highest version both speak, see [`FakeNode::challenge`]), the node's `Proof` (checked
    /// unless `me` says otherwise) and our `Welcome`. Returns the node's `Hello`, for the test
    /// to check what it claimed.
    pub async fn serve_handshake(&mut self, me: &FakeNode) -> Result<Hello, ClientError> {
        let hello = match self.handshake_frame("hello").await? {
            Frame::Hello(hello) => hello,
            other => {
                return Err(ClientError::Handshake(format!(
                    "expected a hello, got {other:?}"
                )))
            }
        };
        let nonce: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
        self.send(&me.challenge(&hello, nonce)).await?;
        let proof = match self.handshake_frame("proof").await? {
            Frame::Proof(proof) => proof,
            other => {
                return Err(ClientError::Handshake(format!(
                    "expected a proof, got {other:?}"
                )))
            }
        };
        if me.verify_server && !me.verifies_client(&hello, &nonce, &proof) {
            return Err(ClientError::Handshake(format!(
                "the node's proof does not verify (it claims to be {})",
                hello.node
            )));
        }
        self.send(&Frame::Welcome).await?;
        self.peer = Some(hello.node.clone());
        self.peer_version = Some(hello.version.min(me.version));
        Ok(hello)
    }

    /// The next frame of the handshake; a refusal ends it.
    async fn handshake_frame(&mut self, waiting_for: &'static str) -> Result<Frame, ClientError> {
        let deadline = Instant::now() + self.deadline;
        match self.next_frame(deadline, waiting_for).await? {
            Frame::Refused { reason, message } => Err(ClientError::Closed(CloseReason::Refused {
                reason,
                message,
            })),
            frame => Ok(frame),
        }
    }

    /// The protocol version of the connection (the highest both speak: the node's choice in
    /// its `Challenge`, or ours when serving), once a handshake has completed.
    pub fn peer_version(&self) -> Option<u16> {
        self.peer_version
    }

    /// The node this client completed a handshake with, as its `Challenge` (or, when serving,
    /// its `Hello`) named it.
    pub fn peer(&self) -> Option<&NodeAddr> {
        self.peer.as_ref()
    }

    /// The client's own socket address (to tell its connection apart in the node's logs).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The deadline of every read and write (`PATIENCE` by default).
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Sets the deadline of every read and write.
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }

    /// Sets the largest frame the client encodes and decodes (8 MiB by default): larger, to
    /// send a well-formed frame over the node's limit.
    pub fn set_max_frame(&mut self, bytes: usize) {
        self.max_frame = bytes;
    }

    /// Returns heartbeats from [`recv`](Self::recv), unanswered (`true`), or answers and
    /// hides them (`false`, the default).
    pub fn pass_heartbeats(&mut self, pass: bool) {
        self.answer_heartbeats = !pass;
    }

    /// A fresh correlation id (1, 2, …) for an ask or a lookup of this client.
    pub fn next_correlation(&mut self) -> u64 {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        correlation
    }

    /// Writes `bytes` as they are. Fails with [`ClientError::Timeout`] if the node does not
    /// take them within the deadline (it stopped reading).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let deadline = self.deadline;
        match tokio::time::timeout(deadline, self.write.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ClientError::Closed(CloseReason::Reset(error))),
            Err(_) => Err(ClientError::Timeout {
                waiting_for: "room to write (the node is not reading)",
                after: deadline,
            }),
        }
    }

    /// Writes a frame's 4-byte length prefix announcing `len` bytes, and nothing of the body.
    pub async fn announce_frame(&mut self, len: u32) -> Result<(), ClientError> {
        self.write_raw(&len.to_be_bytes()).await
    }

    /// Encodes `frame` with the wire codec and writes it.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.send_all(std::slice::from_ref(frame)).await
    }

    /// Encodes `frames` into one buffer and writes it with one call (as the node's batching
    /// writer does).
    pub async fn send_all(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        let mut codec = FrameCodec::new(self.max_frame);
        for frame in frames {
            codec.encode(frame, &mut out).map_err(ClientError::Encode)?;
        }
        self.write_raw(&out).await
    }

    /// Tells `message` to `target` (an actor id or a registered name on the node), encoded
    /// with its type's codec under its tag.
    pub async fn tell<M: Message>(
        &mut self,
        target: impl Into<Target>,
        message: &M,
    ) -> Result<(), ClientError> {
        let envelope = envelope(target, message)?;
        self.send(&Frame::Message(envelope)).await
    }

    /// Sends `message` to `target` as an ask, without waiting for the answer; returns its
    /// correlation id (for [`recv_reply`](Self::recv_reply)).
    pub async fn send_ask<M: Message>(
        &mut self,
        target: impl Into<Target>,
        message: &M,
    ) -> Result<u64, ClientError> {
        let mut envelope = envelope(target, message)?;
        let correlation = self.next_correlation();
        envelope.correlation = Some(correlation);
        self.send(&Frame::Message(envelope)).await?;
        Ok(correlation)
    }

    /// Asks `target` with `message` and waits for the answer: the decoded reply, or the
    /// node's error frame.
    pub async fn ask<M: Message>(
        &mut self,
        target: impl Into<Target>,
        message: &M,
    ) -> Result<Result<M::Reply, RemoteError>, ClientError> {
        let correlation = self.send_ask(target, message).await?;
        match self.recv_reply(correlation).await? {
            Ok(payload) => decode_reply::<M>(&payload)
                .map(Ok)
                .map_err(|error| ClientError::Payload(error.to_string())),
            Err(error) => Ok(Err(error)),
        }
    }

    /// Waits for the `Reply` or `Error` frame of ask `correlation`: its payload, or the
    /// node's error. Other frames read meanwhile are kept for [`recv`](Self::recv).
    pub async fn recv_reply(
        &mut self,
        correlation: u64,
    ) -> Result<Result<Bytes, RemoteError>, ClientError> {
        let answer = self
            .recv_matching("reply", |frame| match frame {
                Frame::Reply {
                    correlation: c,
                    payload,
                } if *c == correlation => Some(Ok(payload.clone())),
                Frame::Error {
                    correlation: c,
                    error,
                } if *c == correlation => Some(Err(error.clone())),
                _ => None,
            })
            .await?;
        Ok(answer)
    }

    /// Sends a `Heartbeat` (keeps the node from timing the connection out while the test
    /// reads nothing); returns its sequence number. The node answers with a `HeartbeatAck`.
    pub async fn heartbeat(&mut self) -> Result<u64, ClientError> {
        let seq = self.next_heartbeat;
        self.next_heartbeat += 1;
        self.send(&Frame::Heartbeat { seq }).await?;
        Ok(seq)
    }

    /// Looks up the actor registered as `name` on the node: its id, if there is one.
    pub async fn lookup(&mut self, name: &str) -> Result<Option<u64>, ClientError> {
        let correlation = self.next_correlation();
        self.send(&Frame::Lookup {
            correlation,
            name: name.to_owned(),
        })
        .await?;
        self.recv_matching("lookup answer", |frame| match frame {
            Frame::Found { correlation: c, id } if *c == correlation => Some(*id),
            _ => None,
        })
        .await
    }

    /// The next frame (kept ones first), within the client's deadline.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        self.recv_within(self.deadline).await
    }

    /// The next frame (kept ones first), within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Frame, ClientError> {
        if let Some(frame) = self.unread.pop_front() {
            return Ok(frame);
        }
        self.next_frame(Instant::now() + limit, "frame").await
    }

    /// Reads until the node closes the connection and says why: the `Refused` or `Goodbye` it
    /// sent last, else [`CloseReason::Eof`] or the reset. Other frames read meanwhile are
    /// kept for [`recv`](Self::recv). Fails with [`ClientError::Timeout`] if the connection is
    /// still open at the deadline.
    pub async fn wait_closed(&mut self) -> Result<CloseReason, ClientError> {
        let deadline = Instant::now() + self.deadline;
        loop {
            match self.next_frame(deadline, "close").await {
                Ok(frame) => self.unread.push_back(frame),
                Err(ClientError::Closed(reason)) => return Ok(reason),
                Err(other) => return Err(other),
            }
        }
    }

    /// Closes the client's writing side (a TCP FIN); the node may still write to it.
    pub async fn shutdown_write(&mut self) -> Result<(), ClientError> {
        self.write
            .shutdown()
            .await
            .map_err(|error| ClientError::Closed(CloseReason::Reset(error)))
    }

    /// Reads frames until `pick` takes one; keeps the others for `recv`.
    async fn recv_matching<T>(
        &mut self,
        waiting_for: &'static str,
        mut pick: impl FnMut(&Frame) -> Option<T>,
    ) -> Result<T, ClientError> {
        for position in 0..self.unread.len() {
            if let Some(picked) = self.unread.get(position).and_then(&mut pick) {
                self.unread.remove(position);
                return Ok(picked);
            }
        }
        let deadline = Instant::now() + self.deadline;
        loop {
            let frame = self.next_frame(deadline, waiting_for).await?;
            match pick(&frame) {
                Some(picked) => return Ok(picked),
                None => self.unread.push_back(frame),
            }
        }
    }

    /// The next frame from the socket, answering (and hiding) heartbeats unless told not to.
    async fn next_frame(
        &mut self,
        deadline: Instant,
        waiting_for: &'static str,
    ) -> Result<Frame, ClientError> {
        loop {
            let frame = self.read_frame(deadline, waiting_for).await?;
            match frame {
                Frame::Heartbeat { seq } if self.answer_heartbeats => {
                    // A node that does not read its heartbeat answers is no concern here.
                    let _ = self.send(&Frame::HeartbeatAck { seq }).await;
                }
                Frame::Refused { reason, message } => {
                    self.farewell = Some(CloseReason::Refused {
                        reason: reason.clone(),
                        message: message.clone(),
                    });
                    return Ok(Frame::Refused { reason, message });
                }
                Frame::Goodbye => {
                    self.farewell = Some(CloseReason::Goodbye);
                    return Ok(Frame::Goodbye);
                }
                frame => return Ok(frame),
            }
        }
    }

    async fn read_frame(
        &mut self,
        deadline: Instant,
        waiting_for: &'static str,
    ) -> Result<Frame, ClientError> {
        let mut codec = FrameCodec::new(self.max_frame);
        loop {
            match codec.decode(&mut self.buf) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(error) => return Err(ClientError::Undecodable(error)),
            }
            if self.closed {
                return Err(self.closed_error(None));
            }
            match tokio::time::timeout_at(deadline, self.read.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => {
                    self.closed = true;
                    return Err(self.closed_error(None));
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    self.closed = true;
                    return Err(self.closed_error(Some(error)));
                }
                Err(_) => {
                    return Err(ClientError::Timeout {
                        waiting_for,
                        after: self.deadline,
                    })
                }
            }
        }
    }

    /// Why the connection ended: the farewell frame if there was one, else the end of stream
    /// or the error.
    fn closed_error(&mut self, error: Option<io::Error>) -> ClientError {
        let reason = match (self.farewell.take(), error) {
            (Some(farewell), _) => farewell,
            (None, Some(error)) => CloseReason::Reset(error),
            (None, None) => CloseReason::Eof,
        };
        ClientError::Closed(reason)
    }
}

impl fmt::Debug for WireClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireClient")
            .field("local_addr", &self.local_addr)
            .field("peer", &self.peer)
            .field("deadline", &self.deadline)
            .field("unread", &self.unread.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// `message`'s tag and payload, encoded with the codec its type registered with
/// `remote_message!`. Fails if the type has none or the encoding fails.
pub fn payload<M: Message>(message: &M) -> Result<(&'static str, Bytes), ClientError> {
    let codec = M::remote().ok_or_else(|| {
        ClientError::Payload(format!(
            "{} has no remote codec (remote_message!)",
            std::any::type_name::<M>()
        ))
    })?;
    let mut bytes = Vec::new();
    (codec.encode)(message, &mut bytes).map_err(|error| ClientError::Payload(error.to_string()))?;
    Ok((codec.tag, Bytes::from(bytes)))
}

/// A `tell` envelope of `message` for `target`, with its type's tag and payload (set
/// `correlation`, `sender` or `trace` on it as needed).
pub fn envelope<M: Message>(
    target: impl Into<Target>,
    message: &M,
) -> Result<Envelope, ClientError> {
    let (tag, payload) = payload(message)?;
    Ok(Envelope::new(target, tag, payload))
}

/// Decodes a reply payload to an ask of `M` with `M`'s codec.
pub fn decode_reply<M: Message>(payload: &[u8]) -> Result<M::Reply, BoxError> {
    let codec = M::remote().ok_or_else(|| {
        BoxError::from(format!(
            "{} has no remote codec (remote_message!)",
            std::any::type_name::<M>()
        ))
    })?;
    (codec.decode_reply)(payload)
}

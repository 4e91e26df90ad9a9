//! Both sides of the handshake (see `postbox-wire`'s crate docs for the protocol): dialing a
//! peer and accepting one, under the handshake timeout, with frames of at most
//! [`MAX_HANDSHAKE_FRAME`] bytes until the connection is authenticated.
//!
//! Once the client has proven that it knows the secret, the server checks who it claims to
//! be before welcoming it: an incarnation in quarantine is refused (`Quarantined`), so is a
//! claim to an address that another live incarnation holds (`AddressInUse`: a connection at
//! that address that was heard from within three heartbeat intervals, or a refusal by the
//! membership layer's [`Admission`](crate::Admission)); and the limit of authenticated
//! connections applies. A `Quarantined` refusal that arrives after the server has proven
//! itself tells this node that the cluster declared it down.

use crate::admission::PendingSlot;
use crate::connection::{run_connection, Connection, ReadHalf, WriteHalf};
use crate::error::ConnectError;
use crate::peer::Peer;
use crate::remote::TransportState;
use crate::stats::Refusal;
use bytes::BytesMut;
use postbox_wire::auth::{self, Role};
use postbox_wire::{
    Challenge, Frame, FrameCodec, Hello, NodeAddr, Proof, RefuseReason, MAX_HANDSHAKE_FRAME,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

/// How recently an existing connection must have been heard from for its address to count
/// as held, in heartbeat intervals.
const ALIVE_WITHIN_HEARTBEATS: u32 = 3;

fn nonce() -> Result<[u8; 32], ConnectError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce)
        .map_err(|e| ConnectError::Protocol(format!("no randomness for a nonce: {e}")))?;
    Ok(nonce)
}

fn split_plain(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = stream.into_split();
    (Box::new(read), Box::new(write))
}

fn split_tls<S>(stream: S) -> (ReadHalf, WriteHalf)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}

/// Dials `peer` and runs the client side of the handshake; the connection once welcomed.
/// `expected` is the identity the caller is after, if any: a node answering at that address
/// with another identity is an error (the member it names is gone, or an impostor answers).
pub(crate) async fn dial(
    shared: &Arc<TransportState>,
    peer: &Arc<Peer>,
    expected: Option<&NodeAddr>,
) -> Result<Arc<Connection>, ConnectError> {
    let config = &shared.config;
    #[cfg(feature = "fault-injection")]
    if shared.cuts.is_addr_cut(&peer.addr) {
        return Err(ConnectError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("the link to {} is cut (fault injection)", peer.addr),
        )));
    }
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(&peer.addr))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::new();
    let handshake = async {
        let (mut read, mut write) = match &config.tls {
            None => split_plain(stream),
            Some(tls) => {
                let name = crate::tls::server_name(&peer.addr)
                    .ok_or_else(|| ConnectError::BadAddress(peer.addr.clone()))?;
                match tls.connector().connect(name, stream).await {
                    Ok(stream) => split_tls(stream),
                    Err(error) => {
                        shared.stats.auth_failures.fetch_add(1, Relaxed);
                        return Err(ConnectError::Tls(error.to_string()));
                    }
                }
            }
        };
        let my_nonce = nonce()?;
        send_frame(
            &mut write,
            &Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                cluster: config.cluster.clone(),
                node: shared.me.clone(),
                nonce: my_nonce,
            }),
        )
        .await?;
        let challenge = match read_frame(&mut read, &mut buf).await? {
            Frame::Challenge(challenge) => challenge,
            // Unauthenticated: believed as an error, never as a verdict on this node.
            Frame::Refused { reason, message } => {
                if reason == RefuseReason::AuthenticationFailed {
                    shared.stats.auth_failures.fetch_add(1, Relaxed);
                }
                return Err(ConnectError::Refused { reason, message });
            }
            other => {
                return Err(ConnectError::Protocol(format!(
                    "expected a challenge, got {}",
                    other.kind()
                )))
            }
        };
        let Challenge {
            version,
            cluster,
            node,
            nonce: their_nonce,
            proof,
        } = challenge;
        // The server chose the highest version both speak; it must be one we speak.
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
            return Err(ConnectError::Incompatible(format!(
                "protocol version {version}, we speak {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
            )));
        }
        if cluster != config.cluster {
            return Err(ConnectError::Incompatible(format!(
                "cluster {cluster:?}, we are {:?}",
                config.cluster
            )));
        }
        if !auth::verify(
            &config.secret,
            Role::Server,
            &node,
            &cluster,
            &my_nonce,
            &their_nonce,
            &proof,
        ) {
            shared.stats.auth_failures.fetch_add(1, Relaxed);
            return Err(ConnectError::AuthenticationFailed);
        }
        if let Some(expected) = expected {
            if node.node_id != expected.node_id || node.incarnation != expected.incarnation {
                return Err(ConnectError::Incompatible(format!(
                    "{} is now {node}, not the {expected} looked for",
                    peer.addr
                )));
            }
        }
        if shared.quarantine.contains(&node) {
            return Err(ConnectError::Quarantined(node));
        }
        let my_proof = auth::prove(
            &config.secret,
            Role::Client,
            &shared.me,
            &cluster,
            &their_nonce,
            &my_nonce,
        );
        send_frame(&mut write, &Frame::Proof(Proof { proof: my_proof })).await?;
        match read_frame(&mut read, &mut buf).await? {
            Frame::Welcome => Ok((node, version, read, write)),
            Frame::Refused { reason, message } => {
                match reason {
                    RefuseReason::AuthenticationFailed => {
                        shared.stats.auth_failures.fetch_add(1, Relaxed);
                    }
                    // The server proved itself above: its verdict on this node stands.
                    RefuseReason::Quarantined => shared.quarantined_by(&node, &message),
                    _ => {}
                }
                Err(ConnectError::Refused { reason, message })
            }
            other => Err(ConnectError::Protocol(format!(
                "expected welcome, got {}",
                other.kind()
            ))),
        }
    };
    let (node, version, read, write) = tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    Ok(run_connection(
        shared, peer, node, version, read, buf, write, None,
    ))
}

/// Handshakes an inbound connection and runs it. A refusal is counted before the socket
/// closes, so a peer that sees the close can already read the count.
pub(crate) async fn accept(
    shared: &Arc<TransportState>,
    stream: TcpStream,
    slot: PendingSlot,
) -> Result<(), (Refusal, String)> {
    let config = &shared.config;
    let evicted = slot.evicted.clone();
    let handshake = async {
        let (mut read, mut write) = match &config.tls {
            None => split_plain(stream),
            Some(tls) => match tls.acceptor().accept(stream).await {
                Ok(stream) => split_tls(stream),
                Err(error) => {
                    return Err(Unserved::new(
                        Refusal::Tls,
                        format!("TLS handshake failed: {error}"),
                    ))
                }
            },
        };
        let mut buf = BytesMut::new();
        let hello = match read_frame(&mut read, &mut buf).await {
            Ok(Frame::Hello(hello)) => hello,
            Ok(other) => {
                let why = format!("expected hello, got {}", other.kind());
                return refused(
                    shared,
                    &mut write,
                    Refusal::Malformed,
                    RefuseReason::Malformed,
                    why,
                )
                .await;
            }
            Err(ConnectError::Protocol(why)) if why.starts_with("connection closed") => {
                return Err(Unserved::new(Refusal::Closed, why));
            }
            Err(ConnectError::Io(error)) => {
                return Err(Unserved::new(Refusal::Closed, error.to_string()))
            }
            Err(error) => {
                return refused(
                    shared,
                    &mut write,
                    Refusal::Malformed,
                    RefuseReason::Malformed,
                    error.to_string(),
                )
                .await;
            }
        };
        #[cfg(feature = "fault-injection")]
        if shared.cuts.is_addr_cut(&hello.node.addr) {
            // As a cut network would: no answer at all.
            return Err(Unserved::new(
                Refusal::Closed,
                format!("the link to {} is cut (fault injection)", hello.node.addr),
            ));
        }
        // A client says the highest version it speaks; we use the highest both speak.
        let version = hello.version.min(PROTOCOL_VERSION);
        if version < MIN_PROTOCOL_VERSION {
            let why = format!(
                "protocol version {} (we speak {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})",
                hello.version
            );
            return refused(
                shared,
                &mut write,
                Refusal::VersionMismatch,
                RefuseReason::VersionMismatch,
                why,
            )
            .await;
        }
        if hello.cluster != config.cluster {
            let why = format!("cluster {:?} (we are {:?})", hello.cluster, config.cluster);
            return refused(
                shared,
                &mut write,
                Refusal::WrongCluster,
                RefuseReason::WrongCluster,
                why,
            )
            .await;
        }
        let my_nonce = nonce().map_err(|e| Unserved::new(Refusal::Closed, e.to_string()))?;
        let proof = auth::prove(
            &config.secret,
            Role::Server,
            &shared.me,
            &config.cluster,
            &hello.nonce,
            &my_nonce,
        );
        send_frame(
            &mut write,
            &Frame::Challenge(Challenge {
                version,
                cluster: config.cluster.clone(),
                node: shared.me.clone(),
                nonce: my_nonce,
                proof,
            }),
        )
        .await
        .map_err(|e| Unserved::new(Refusal::Closed, e.to_string()))?;
        let proof = match read_frame(&mut read, &mut buf).await {
            Ok(Frame::Proof(proof)) => proof.proof,
            Ok(other) => {
                let why = format!("expected proof, got {}", other.kind());
                return refused(
                    shared,
                    &mut write,
                    Refusal::Malformed,
                    RefuseReason::Malformed,
                    why,
                )
                .await;
            }
            Err(error) => return Err(Unserved::new(Refusal::Closed, error.to_string())),
        };
        if !auth::verify(
            &config.secret,
            Role::Client,
            &hello.node,
            &config.cluster,
            &my_nonce,
            &hello.nonce,
            &proof,
        ) {
            let why = format!(
                "{} failed authentication: wrong cluster secret",
                hello.node.addr
            );
            return refused(
                shared,
                &mut write,
                Refusal::AuthenticationFailed,
                RefuseReason::AuthenticationFailed,
                why,
            )
            .await;
        }
        // Authenticated: now who it claims to be must hold.
        if let Err((refusal, reason, why)) = check_identity(shared, &hello.node) {
            let reason = reason.for_version(version);
            return refused(shared, &mut write, refusal, reason, why).await;
        }
        // One connection per pair of nodes. If one to this very incarnation is already up
        // (its dial overtook ours), the client is to use that one. If we are dialing it right
        // now too, the dial of the node with the smaller id wins, on both sides alike. Holding
        // the dialing lock until the connection is registered keeps a dial of ours from
        // starting in between (it would find this connection instead).
        let peer = shared.peer(&hello.node.addr);
        let not_dialing = peer.dialing.clone().try_lock_owned().ok();
        let connected = peer
            .connection()
            .is_some_and(|conn| conn.peer_node == hello.node);
        if connected || (not_dialing.is_none() && shared.me.node_id < hello.node.node_id) {
            let why = format!(
                "{} dialed while we dialed it; our connection wins (use that one)",
                hello.node.addr
            );
            return refused(
                shared,
                &mut write,
                Refusal::SimultaneousConnect,
                RefuseReason::SimultaneousConnect,
                why,
            )
            .await;
        }
        let Some(admitted) = shared.admit_authenticated() else {
            let why = format!(
                "the limit of {} authenticated connections is reached",
                config.max_connections
            );
            return refused(
                shared,
                &mut write,
                Refusal::TooManyConnections,
                RefuseReason::TooManyConnections,
                why,
            )
            .await;
        };
        send_frame(&mut write, &Frame::Welcome)
            .await
            .map_err(|e| Unserved::new(Refusal::Closed, e.to_string()))?;
        Ok((
            hello.node,
            version,
            peer,
            not_dialing,
            read,
            buf,
            write,
            admitted,
        ))
    };
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(config.handshake_timeout, handshake) => match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(Unserved::new(Refusal::HandshakeTimeout, "handshake timed out".into())),
        },
        // Counted where it was evicted (`Remote`'s accept loop).
        () = evicted.cancelled() => Err(Unserved {
            refusal: Refusal::Evicted,
            why: "still in its handshake when newer connections needed the room".into(),
            counted: true,
        }),
    };
    let (node, version, peer, not_dialing, read, buf, write, admitted) = match outcome {
        Ok(accepted) => accepted,
        Err(Unserved {
            refusal,
            why,
            counted,
        }) => {
            if !counted {
                shared.stats.refuse(refusal);
            }
            return Err((refusal, why));
        }
    };
    // Authenticated: it no longer counts against the budget of pending connections.
    drop(slot);
    run_connection(
        shared,
        &peer,
        node,
        version,
        read,
        buf,
        write,
        Some(Box::new(admitted)),
    );
    drop(not_dialing);
    Ok(())
}

/// Whether an authenticated peer may be the node it claims to be.
fn check_identity(
    shared: &TransportState,
    node: &NodeAddr,
) -> Result<(), (Refusal, RefuseReason, String)> {
    if shared.quarantine.contains(node) {
        return Err((
            Refusal::Quarantined,
            RefuseReason::Quarantined,
            format!("{node} was declared down; restart as a new incarnation"),
        ));
    }
    if node.node_id == shared.me.node_id || node.addr == shared.me.addr {
        return Err((
            Refusal::AddressInUse,
            RefuseReason::AddressInUse,
            format!("{node} claims this node's own identity or address"),
        ));
    }
    let alive = shared.config.heartbeat_interval * ALIVE_WITHIN_HEARTBEATS;
    if let Some(conn) = shared.existing(&node.addr) {
        let same = conn.peer_node.node_id == node.node_id
            && conn.peer_node.incarnation == node.incarnation;
        if !same {
            if conn.heard_within(alive) {
                return Err((
                    Refusal::AddressInUse,
                    RefuseReason::AddressInUse,
                    format!(
                        "{} is held by {}, which is alive",
                        node.addr, conn.peer_node
                    ),
                ));
            }
            // The holder has been silent: a hung or restarted incarnation gives way.
            tracing::info!(held_by = %conn.peer_node, claimed_by = %node, "address taken over from a silent connection");
            conn.abort();
        }
    }
    if let Some(admission) = shared.admission() {
        if let Err((reason, why)) = admission.check(node) {
            let refusal = match reason {
                RefuseReason::Quarantined => Refusal::Quarantined,
                _ => Refusal::AddressInUse,
            };
            return Err((refusal, reason, why));
        }
    }
    Ok(())
}

/// Why an inbound connection was not served; `counted` once the refusal is in the stats.
struct Unserved {
    refusal: Refusal,
    why: String,
    counted: bool,
}

impl Unserved {
    fn new(refusal: Refusal, why: String) -> Self {
        Self {
            refusal,
            why,
            counted: false,
        }
    }
}

/// Refuses the peer, saying why: counted first, so that a peer that reads the refusal can
/// already read the count.
async fn refused<T>(
    shared: &TransportState,
    write: &mut (impl AsyncWrite + Unpin + ?Sized),
    refusal: Refusal,
    reason: RefuseReason,
    why: String,
) -> Result<T, Unserved> {
    shared.stats.refuse(refusal);
    let frame = Frame::Refused {
        reason,
        message: why.clone(),
    };
    let _ = send_frame(write, &frame).await;
    Err(Unserved {
        refusal,
        why,
        counted: true,
    })
}

async fn send_frame(
    write: &mut (impl AsyncWrite + Unpin + ?Sized),
    frame: &Frame,
) -> Result<(), ConnectError> {
    let mut buf = BytesMut::new();
    FrameCodec::new(MAX_HANDSHAKE_FRAME).encode(frame, &mut buf)?;
    write.write_all(&buf).await?;
    Ok(())
}

async fn read_frame(
    read: &mut (impl AsyncRead + Unpin + ?Sized),
    buf: &mut BytesMut,
) -> Result<Frame, ConnectError> {
    let mut codec = FrameCodec::new(MAX_HANDSHAKE_FRAME);
    loop {
        if let Some(frame) = codec.decode(buf)? {
            return Ok(frame);
        }
        buf.reserve(1024);
        if read.read_buf(buf).await? == 0 {
            return Err(ConnectError::Protocol(
                "connection closed during the handshake".into(),
            ));
        }
    }
}

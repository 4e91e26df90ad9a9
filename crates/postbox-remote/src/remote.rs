//! The node's transport: listener, handshakes, peers, lookups.

use crate::config::RemoteConfig;
use crate::error::{ConnectError, RemoteError};
use crate::handlers::{RemoteActor, TypeRegistry};
use crate::peer::{run_connection, ActorLink, Connection, Peer, ReadHalf, WriteHalf};
use crate::refs::RefContext;
use bytes::BytesMut;
use dashmap::DashMap;
use postbox::remote::{ActorAddress, RefCodec};
use postbox::{Actor, ActorRef, ActorSystem, ExitReason, Mailbox};
use postbox_wire::auth::{self, Role};
use postbox_wire::{
    Challenge, Frame, FrameCodec, Hello, NodeAddr, Proof, RefuseReason, PROTOCOL_VERSION,
};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::{Decoder, Encoder};

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) invalid_traces: AtomicU64,
}

/// Transport counters, for the metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RemoteStats {
    /// Authenticated connections open now.
    pub connections: u64,
    /// Inbound connections accepted (before the handshake) since start.
    pub connections_accepted: u64,
    /// Frames read.
    pub frames_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Connection attempts after the first to the same peer.
    pub reconnects: u64,
    /// Handshakes that failed authentication (either side).
    pub auth_failures: u64,
    /// Inbound connections refused (limit, version, cluster, bad handshake, and the losing
    /// side of a simultaneous connect).
    pub refused: u64,
    /// Connections closed for malformed or oversized frames.
    pub protocol_errors: u64,
    /// Messages whose `traceparent` was malformed: delivered all the same, without it (their
    /// handler starts a new trace).
    pub invalid_trace_contexts: u64,
}

pub(crate) struct Shared {
    pub(crate) system: ActorSystem,
    pub(crate) config: RemoteConfig,
    pub(crate) me: NodeAddr,
    pub(crate) types: TypeRegistry,
    peers: DashMap<String, Arc<Peer>>,
    inbound: AtomicUsize,
    correlation: Arc<AtomicU64>,
    pub(crate) stats: Stats,
    /// Serves `ActorRef`s inside messages and replies (see `refs.rs`).
    pub(crate) refs: Arc<dyn RefCodec>,
    /// The remote actor behind each proxy, by proxy id: what a proxy serializes to.
    pub(crate) proxy_targets: DashMap<u64, ActorAddress>,
}

impl Shared {
    pub(crate) fn next_correlation(&self) -> u64 {
        self.correlation.fetch_add(1, Relaxed)
    }

    /// The counter correlation ids come from.
    pub(crate) fn correlation(&self) -> Arc<AtomicU64> {
        self.correlation.clone()
    }

    pub(crate) fn peer(&self, addr: &str) -> Arc<Peer> {
        self.peers
            .entry(addr.to_owned())
            .or_insert_with(|| Arc::new(Peer::new(addr.to_owned())))
            .clone()
    }
}

/// A node's transport. Cheap to clone; the listener stops when
/// [`shutdown`](Self::shutdown) is called.
#[derive(Clone)]
pub struct Remote {
    shared: Arc<Shared>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return clock_fallback();
    }
    u64::from_le_bytes(bytes)
}

fn clock_fallback() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (std::process::id() as u64).rotate_left(32)
}

fn nonce() -> Result<[u8; 32], ConnectError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce)
        .map_err(|e| ConnectError::Protocol(format!("no randomness for a nonce: {e}")))?;
    Ok(nonce)
}

impl Remote {
    /// Starts listening on `config.listen` and serving peers for `system`.
    pub async fn start(system: &ActorSystem, config: RemoteConfig) -> Result<Remote, RemoteError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(RemoteError::Bind)?;
        let local = listener.local_addr().map_err(RemoteError::Bind)?;
        let me = NodeAddr {
            addr: config
                .advertise
                .clone()
                .unwrap_or_else(|| local.to_string()),
            node_id: random_u64(),
            incarnation: random_u64(),
        };
        let shared = Arc::new_cyclic(|weak| Shared {
            system: system.clone(),
            config,
            me,
            types: TypeRegistry::default(),
            peers: DashMap::new(),
            inbound: AtomicUsize::new(0),
            correlation: Arc::new(AtomicU64::new(1)),
            stats: Stats::default(),
            refs: Arc::new(RefContext {
                shared: weak.clone(),
                system: system.clone(),
            }),
            proxy_targets: DashMap::new(),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), listener));
        let sweeper = tokio::spawn(sweep_loop(Arc::downgrade(&shared)));
        Ok(Remote {
            shared,
            tasks: Arc::new(std::sync::Mutex::new(vec![accept, sweeper])),
        })
    }

    /// This node: its listening address, node id and incarnation.
    pub fn node(&self) -> &NodeAddr {
        &self.shared.me
    }

    /// The address peers reach this node at (`host:port`).
    pub fn addr(&self) -> &str {
        &self.shared.me.addr
    }

    /// Lets other nodes send `A`'s registered message types to actors of type `A` here.
    pub fn expose<A: RemoteActor>(&self) {
        self.shared.types.expose::<A>();
    }

    /// A reference to the actor registered as `name` on the node at `addr`, connecting (and
    /// authenticating) first if needed. The reference works like a local one until the
    /// connection is lost; then it ends (see the crate docs).
    pub async fn lookup<A: Actor>(
        &self,
        addr: &str,
        name: &str,
    ) -> Result<ActorRef<A>, RemoteError> {
        let peer = self.shared.peer(addr);
        let conn = connect(&self.shared, &peer).await?;
        let Some(found) = conn.lookup(&self.shared, name).await else {
            return Err(RemoteError::NodeDown);
        };
        let id = found.ok_or_else(|| RemoteError::NotFound(name.to_owned()))?;
        let link = ActorLink::new(&self.shared, peer.clone(), id, conn.peer_node.incarnation);
        let (actor, handle) = postbox::remote::spawn_proxy::<A>(
            &self.shared.system,
            format!("postbox://{}/{name}", peer.addr),
            Mailbox::bounded(self.shared.config.proxy_mailbox),
            link.clone(),
        );
        link.adopt(&self.shared, &conn.peer_node, handle);
        Ok(actor)
    }

    /// Counters of the transport.
    pub fn stats(&self) -> RemoteStats {
        let s = &self.shared.stats;
        RemoteStats {
            connections: s.connections.load(Relaxed),
            connections_accepted: s.connections_accepted.load(Relaxed),
            frames_in: s.frames_in.load(Relaxed),
            frames_out: s.frames_out.load(Relaxed),
            bytes_in: s.bytes_in.load(Relaxed),
            bytes_out: s.bytes_out.load(Relaxed),
            reconnects: s.reconnects.load(Relaxed),
            auth_failures: s.auth_failures.load(Relaxed),
            refused: s.refused.load(Relaxed),
            protocol_errors: s.protocol_errors.load(Relaxed),
            invalid_trace_contexts: s.invalid_traces.load(Relaxed),
        }
    }

    /// Asks waiting for a reply from `addr` (entries leave on reply, on their asker's timeout
    /// within a sweep, and on disconnect).
    pub fn pending_asks(&self, addr: &str) -> usize {
        self.shared
            .peers
            .get(addr)
            .and_then(|p| p.connection())
            .map_or(0, |c| c.pending_asks())
    }

    /// Closes the connection to `node` if it is to that very incarnation, as if it had been
    /// lost: asks in flight to it fail with `NodeDown`, remote refs through it end and their
    /// watchers learn of it. For a membership layer that has declared the node down (a hung
    /// node would otherwise hold its connection until the heartbeat timeout). Returns whether
    /// a connection was closed.
    pub fn disconnect(&self, node: &NodeAddr) -> bool {
        let Some(conn) = self
            .shared
            .peers
            .get(&node.addr)
            .and_then(|peer| peer.connection())
        else {
            return false;
        };
        if conn.peer_node.node_id != node.node_id || conn.peer_node.incarnation != node.incarnation
        {
            return false;
        }
        conn.abort();
        true
    }

    /// Remote refs currently open through `addr`.
    pub fn remote_refs(&self, addr: &str) -> usize {
        self.shared.peers.get(addr).map_or(0, |p| p.proxy_count())
    }

    /// Stops listening, then drains: every remote ref forwards what is already queued in it
    /// (new sends to it are refused and counted), every connection writes out its outbound
    /// queue followed by a `Goodbye` — all within [`RemoteConfig::drain_timeout`] — and then
    /// every connection closes (peers see the node leave; remote refs on both sides end, asks
    /// still waiting for a reply resolve with `NodeDown`).
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
        let peers: Vec<Arc<Peer>> = self
            .shared
            .peers
            .iter()
            .map(|p| p.value().clone())
            .collect();
        let drain = async {
            // Every proxy starts draining at once; then wait for each.
            let proxies: Vec<_> = peers
                .iter()
                .flat_map(|peer| peer.proxies())
                .map(|proxy| proxy.drain(ExitReason::Shutdown))
                .collect();
            for drained in proxies {
                drained.await;
            }
            for peer in &peers {
                if let Some(conn) = peer.connection() {
                    conn.say_goodbye().await;
                }
            }
        };
        if tokio::time::timeout(self.shared.config.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                limit = ?self.shared.config.drain_timeout,
                "remote shutdown: outbound traffic not drained in time; closing anyway"
            );
        }
        for peer in &peers {
            if let Some(conn) = peer.connection() {
                conn.abort();
            }
        }
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("node", &self.shared.me)
            .field("peers", &self.shared.peers.len())
            .finish_non_exhaustive()
    }
}

/// Every second: forget asks whose askers gave up.
async fn sweep_loop(shared: std::sync::Weak<Shared>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for peer in shared.peers.iter() {
            if let Some(conn) = peer.connection() {
                conn.sweep();
            }
        }
    }
}

/// The peer's connection, dialing (with exponential backoff between attempts) if there is
/// none.
pub(crate) async fn connect(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
) -> Result<Arc<Connection>, ConnectError> {
    if let Some(conn) = peer.connection() {
        return Ok(conn);
    }
    let _dialing = peer.dialing.lock().await;
    if let Some(conn) = peer.connection() {
        return Ok(conn);
    }
    let mut delay = shared.config.reconnect_min;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            shared.stats.reconnects.fetch_add(1, Relaxed);
        }
        match dial(shared, peer).await {
            Ok(conn) => return Ok(conn),
            // The peer is dialing us at the same moment and its connection wins the tie-break.
            Err(ConnectError::Refused {
                reason: RefuseReason::SimultaneousConnect,
                ..
            }) => {
                if let Some(conn) = peer.wait_connection(shared.config.handshake_timeout).await {
                    return Ok(conn);
                }
                if attempt >= shared.config.reconnect_attempts {
                    return Err(ConnectError::Timeout);
                }
            }
            // Refusals are answers, not outages: retrying would not change them.
            Err(
                error @ (ConnectError::Refused { .. }
                | ConnectError::AuthenticationFailed
                | ConnectError::Incompatible(_)
                | ConnectError::Tls(_)
                | ConnectError::BadAddress(_)),
            ) => return Err(error),
            Err(error) if attempt >= shared.config.reconnect_attempts => return Err(error),
            Err(error) => {
                tracing::debug!(peer = %peer.addr, %error, ?delay, "connection attempt failed; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
    }
}

async fn dial(shared: &Arc<Shared>, peer: &Arc<Peer>) -> Result<Arc<Connection>, ConnectError> {
    let stream = TcpStream::connect(&peer.addr).await?;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::new();
    let handshake = async {
        let config = &shared.config;
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
            config.max_frame,
        )
        .await?;
        let challenge = match read_frame(&mut read, &mut buf, config.max_frame).await? {
            Frame::Challenge(challenge) => challenge,
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
        if version != PROTOCOL_VERSION {
            return Err(ConnectError::Incompatible(format!(
                "protocol version {version}, we speak {PROTOCOL_VERSION}"
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
        let my_proof = auth::prove(
            &config.secret,
            Role::Client,
            &shared.me,
            &cluster,
            &their_nonce,
            &my_nonce,
        );
        send_frame(
            &mut write,
            &Frame::Proof(Proof { proof: my_proof }),
            config.max_frame,
        )
        .await?;
        match read_frame(&mut read, &mut buf, config.max_frame).await? {
            Frame::Welcome => Ok((node, read, write)),
            Frame::Refused { reason, message } => {
                if reason == RefuseReason::AuthenticationFailed {
                    shared.stats.auth_failures.fetch_add(1, Relaxed);
                }
                Err(ConnectError::Refused { reason, message })
            }
            other => Err(ConnectError::Protocol(format!(
                "expected welcome, got {}",
                other.kind()
            ))),
        }
    };
    let (node, read, write) = tokio::time::timeout(shared.config.handshake_timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    Ok(run_connection(shared, peer, node, read, buf, write, None))
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

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        shared.stats.connections_accepted.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        // Admission in accept order, here rather than in the connection's task.
        let slot = if shared.inbound.fetch_add(1, Relaxed) < shared.config.max_connections {
            Some(InboundSlot(shared.clone()))
        } else {
            shared.inbound.fetch_sub(1, Relaxed);
            None
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(why) = accept(&shared, stream, slot).await {
                tracing::warn!(%from, %why, "inbound connection refused");
            }
        });
    }
}

/// Counts an inbound connection for as long as it lives.
struct InboundSlot(Arc<Shared>);

impl Drop for InboundSlot {
    fn drop(&mut self) {
        self.0.inbound.fetch_sub(1, Relaxed);
    }
}

/// Handshakes an inbound connection and runs it. A refusal is counted before the socket
/// closes, so a peer that sees the close can already read the count.
async fn accept(
    shared: &Arc<Shared>,
    stream: TcpStream,
    slot: Option<InboundSlot>,
) -> Result<(), String> {
    let config = &shared.config;
    let max = config.max_frame;
    let Some(slot) = slot else {
        shared.stats.refused.fetch_add(1, Relaxed);
        // Over the limit there is no TLS session to refuse in: plain refusal, then close.
        let (_, mut write) = split_plain(stream);
        let _ = refuse(
            &mut write,
            RefuseReason::TooManyConnections,
            "connection limit reached",
            max,
        )
        .await;
        return Err("connection limit reached".into());
    };
    let (mut read, mut write) = match &config.tls {
        None => split_plain(stream),
        Some(tls) => {
            match tokio::time::timeout(config.handshake_timeout, tls.acceptor().accept(stream))
                .await
            {
                Ok(Ok(stream)) => split_tls(stream),
                Ok(Err(error)) => {
                    shared.stats.auth_failures.fetch_add(1, Relaxed);
                    shared.stats.refused.fetch_add(1, Relaxed);
                    return Err(format!("TLS handshake failed: {error}"));
                }
                Err(_) => {
                    shared.stats.refused.fetch_add(1, Relaxed);
                    return Err("TLS handshake timed out".into());
                }
            }
        }
    };
    let mut buf = BytesMut::new();
    let handshake = async {
        let hello = match read_frame(&mut read, &mut buf, max).await {
            Ok(Frame::Hello(hello)) => hello,
            Ok(other) => {
                let _ = refuse(&mut write, RefuseReason::Malformed, "expected hello", max).await;
                return Err(format!("expected hello, got {}", other.kind()));
            }
            Err(error) => {
                let _ = refuse(&mut write, RefuseReason::Malformed, &error.to_string(), max).await;
                return Err(error.to_string());
            }
        };
        if hello.version != PROTOCOL_VERSION {
            let why = format!(
                "protocol version {} (we speak {PROTOCOL_VERSION})",
                hello.version
            );
            let _ = refuse(&mut write, RefuseReason::VersionMismatch, &why, max).await;
            return Err(why);
        }
        if hello.cluster != config.cluster {
            let why = format!("cluster {:?} (we are {:?})", hello.cluster, config.cluster);
            let _ = refuse(&mut write, RefuseReason::WrongCluster, &why, max).await;
            return Err(why);
        }
        let my_nonce = nonce().map_err(|e| e.to_string())?;
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
                version: PROTOCOL_VERSION,
                cluster: config.cluster.clone(),
                node: shared.me.clone(),
                nonce: my_nonce,
                proof,
            }),
            max,
        )
        .await
        .map_err(|e| e.to_string())?;
        let proof = match read_frame(&mut read, &mut buf, max).await {
            Ok(Frame::Proof(proof)) => proof.proof,
            Ok(other) => return Err(format!("expected proof, got {}", other.kind())),
            Err(error) => return Err(error.to_string()),
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
            shared.stats.auth_failures.fetch_add(1, Relaxed);
            let _ = refuse(
                &mut write,
                RefuseReason::AuthenticationFailed,
                "wrong cluster secret",
                max,
            )
            .await;
            return Err(format!("{} failed authentication", hello.node.addr));
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
            let _ = refuse(
                &mut write,
                RefuseReason::SimultaneousConnect,
                "we are dialing you; use that connection",
                max,
            )
            .await;
            return Err(format!(
                "{} dialed while we dialed it; our connection wins",
                hello.node.addr
            ));
        }
        send_frame(&mut write, &Frame::Welcome, max)
            .await
            .map_err(|e| e.to_string())?;
        Ok((hello.node, peer, not_dialing))
    };
    let outcome = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(outcome) => outcome,
        Err(_) => Err("handshake timed out".into()),
    };
    let (node, peer, not_dialing) = match outcome {
        Ok(accepted) => accepted,
        Err(why) => {
            shared.stats.refused.fetch_add(1, Relaxed);
            return Err(why);
        }
    };
    run_connection(shared, &peer, node, read, buf, write, Some(Box::new(slot)));
    drop(not_dialing);
    Ok(())
}

async fn refuse(
    write: &mut (impl AsyncWrite + Unpin + ?Sized),
    reason: RefuseReason,
    message: &str,
    max: usize,
) -> Result<(), ConnectError> {
    send_frame(
        write,
        &Frame::Refused {
            reason,
            message: message.to_owned(),
        },
        max,
    )
    .await
}

async fn send_frame(
    write: &mut (impl AsyncWrite + Unpin + ?Sized),
    frame: &Frame,
    max: usize,
) -> Result<(), ConnectError> {
    let mut buf = BytesMut::new();
    FrameCodec::new(max).encode(frame, &mut buf)?;
    write.write_all(&buf).await?;
    Ok(())
}

async fn read_frame(
    read: &mut (impl AsyncRead + Unpin + ?Sized),
    buf: &mut BytesMut,
    max: usize,
) -> Result<Frame, ConnectError> {
    let mut codec = FrameCodec::new(max);
    loop {
        if let Some(frame) = codec.decode(buf)? {
            return Ok(frame);
        }
        if read.read_buf(buf).await? == 0 {
            return Err(ConnectError::Protocol(
                "connection closed during the handshake".into(),
            ));
        }
    }
}

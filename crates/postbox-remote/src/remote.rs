//! The node's transport: listener, admission, peers, lookups.

use crate::admission::{Admission, Pending, Quarantine};
use crate::config::RemoteConfig;
use crate::connection::Connection;
use crate::error::{ConnectError, RemoteError};
use crate::handlers::{Arrival, Intercepted, RemoteActor, TypeRegistry};
use crate::handshake::{accept, dial};
use crate::peer::{ActorLink, Peer};
use crate::refs::RefContext;
use crate::stats::{LogLimiter, RemoteStats, Stats};
use dashmap::DashMap;
use postbox::remote::{ActorAddress, RefCodec};
use postbox::{Actor, ActorRef, ActorSystem, ExitReason, MailboxCapacity};
use postbox_wire::{NodeAddr, RefuseReason};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a kind of refusal (or failure to accept) is logged at most; the next line says
/// how many were held back.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Backoff of the accept loop after a failed `accept` (out of file descriptors, say): from
/// the first delay, doubling, up to the second.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

pub(crate) struct TransportState {
    pub(crate) system: ActorSystem,
    pub(crate) config: RemoteConfig,
    pub(crate) me: NodeAddr,
    pub(crate) types: TypeRegistry,
    peers: DashMap<String, Arc<Peer>>,
    /// Authenticated inbound connections.
    inbound: AtomicUsize,
    /// Inbound connections still in their handshake.
    pub(crate) pending: Arc<Pending>,
    pub(crate) quarantine: Quarantine,
    admission: RwLock<Option<Arc<dyn Admission>>>,
    /// The peer that told this node it is quarantined, if one has.
    quarantined_by: watch::Sender<Option<NodeAddr>>,
    pub(crate) logs: LogLimiter,
    correlation: Arc<AtomicU64>,
    pub(crate) stats: Stats,
    /// Serves `ActorRef`s inside messages and replies (see `refs.rs`).
    pub(crate) refs: Arc<dyn RefCodec>,
    /// The remote actor behind each proxy, by proxy id: what a proxy serializes to.
    pub(crate) proxy_targets: DashMap<u64, ActorAddress>,
    /// The peers this node is cut off from (fault injection, see `cuts.rs`).
    #[cfg(feature = "fault-injection")]
    pub(crate) cuts: Arc<crate::cuts::LinkCuts>,
}

impl TransportState {
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

    /// The open connection to the node at `addr`, if any.
    pub(crate) fn existing(&self, addr: &str) -> Option<Arc<Connection>> {
        self.peers.get(addr).and_then(|peer| peer.connection())
    }

    pub(crate) fn admission(&self) -> Option<Arc<dyn Admission>> {
        self.admission
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts an authenticated inbound connection if the limit allows; the guard uncounts it.
    pub(crate) fn admit_authenticated(self: &Arc<Self>) -> Option<InboundSlot> {
        if self.inbound.fetch_add(1, Relaxed) < self.config.max_connections {
            Some(InboundSlot(self.clone()))
        } else {
            self.inbound.fetch_sub(1, Relaxed);
            None
        }
    }

    /// An authenticated peer (`by`) says the cluster has declared this node down.
    pub(crate) fn quarantined_by(&self, by: &NodeAddr, message: &str) {
        let first = self.quarantined_by.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(by.clone());
            }
            first
        });
        if first {
            tracing::error!(
                node = %self.me,
                by = %by,
                %message,
                "this node was declared down by the cluster and is quarantined: it is no longer a member"
            );
        }
    }

    /// Logs a refused connection, at most once per kind per [`LOG_EVERY`].
    pub(crate) fn log_refusal(&self, from: std::net::SocketAddr, kind: &'static str, why: &str) {
        if let Some(held_back) = self.logs.allow(kind) {
            tracing::warn!(%from, reason = kind, why, held_back, "inbound connection refused");
        }
    }
}

/// A node's transport. Cheap to clone; the listener stops when
/// [`shutdown`](Self::shutdown) is called.
#[derive(Clone)]
pub struct Remote {
    shared: Arc<TransportState>,
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
        let shared = Arc::new_cyclic(|weak| TransportState {
            system: system.clone(),
            pending: Pending::new(
                config.max_unauthenticated,
                config.max_unauthenticated_per_source,
            ),
            config,
            me,
            types: TypeRegistry::default(),
            peers: DashMap::new(),
            inbound: AtomicUsize::new(0),
            quarantine: Quarantine::default(),
            admission: RwLock::new(None),
            quarantined_by: watch::channel(None).0,
            logs: LogLimiter::new(LOG_EVERY),
            correlation: Arc::new(AtomicU64::new(1)),
            stats: Stats::default(),
            refs: Arc::new(RefContext {
                shared: weak.clone(),
                system: system.clone(),
            }),
            proxy_targets: DashMap::new(),
            #[cfg(feature = "fault-injection")]
            cuts: Arc::default(),
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

    /// Puts `hook` in front of the delivery of `M` to actors of type `A` on this node
    /// (exposing `A` first if need be): the connection's reader calls `hook` with the
    /// message's encoded payload before it decodes it. The hook delivers the message itself
    /// ([`Intercepted::Delivered`]; to another actor's mailbox, say), is delivering it
    /// ([`Intercepted::Pending`]: the connection reads its next message once that future is
    /// done), or lets it be decoded and queued in `A`'s mailbox as usual
    /// ([`Intercepted::Queue`]). Messages of one connection reach the hook one at a time, in
    /// the order sent.
    ///
    /// It runs on the reader, so it must not block: a lookup and a `try_tell` at most, and
    /// anything that waits in the `Pending` future. An asked message (`Arrival::Ask`) cannot
    /// be answered by the hook: let it be queued; one that is kept is answered `NoReply`.
    /// For a layer that owns `A`'s traffic — postbox-sharding uses it to put a message for
    /// an active entity straight into the entity's mailbox instead of through its region,
    /// reading the envelope in place.
    ///
    /// Install it before `A` gets traffic: a connection that is delivering to `A` may keep
    /// using the delivery it resolved before (it caches its last target and tag).
    pub fn intercept<A, M>(
        &self,
        hook: impl Fn(&ActorRef<A>, &[u8], Arrival) -> Intercepted + Send + Sync + 'static,
    ) where
        A: RemoteActor + postbox::Handler<M>,
        M: postbox::Message,
    {
        self.shared.types.intercept::<A, M>(Arc::new(hook));
    }

    /// A reference to the actor registered as `name` on the node at `addr`, connecting (and
    /// authenticating) first if needed. The reference works like a local one until the
    /// connection is lost; then it ends (see the crate docs).
    ///
    /// The whole lookup — connecting (with its retries), the handshake and the answer — ends
    /// within [`lookup_timeout`](RemoteConfig::lookup_timeout), with `Timeout` if need be.
    pub async fn lookup<A: Actor>(
        &self,
        addr: &str,
        name: &str,
    ) -> Result<ActorRef<A>, RemoteError> {
        self.lookup_at(addr, None, name).await
    }

    /// Like [`lookup`](Self::lookup), but only on the incarnation `node`: if the node at its
    /// address is another one (it restarted, or something else answers there), the lookup
    /// fails instead of reaching it. For a membership layer that knows whom it means.
    pub async fn lookup_node<A: Actor>(
        &self,
        node: &NodeAddr,
        name: &str,
    ) -> Result<ActorRef<A>, RemoteError> {
        self.lookup_at(&node.addr, Some(node), name).await
    }

    async fn lookup_at<A: Actor>(
        &self,
        addr: &str,
        expected: Option<&NodeAddr>,
        name: &str,
    ) -> Result<ActorRef<A>, RemoteError> {
        let limit = self.shared.config.lookup_timeout;
        match tokio::time::timeout(limit, self.lookup_within(addr, expected, name)).await {
            Ok(found) => found,
            Err(_) => {
                self.shared.stats.lookup_timeouts.fetch_add(1, Relaxed);
                Err(RemoteError::Timeout(limit))
            }
        }
    }

    async fn lookup_within<A: Actor>(
        &self,
        addr: &str,
        expected: Option<&NodeAddr>,
        name: &str,
    ) -> Result<ActorRef<A>, RemoteError> {
        let peer = self.shared.peer(addr);
        let conn = connect(&self.shared, &peer, expected).await?;
        if let Some(expected) = expected {
            if conn.peer_node.node_id != expected.node_id
                || conn.peer_node.incarnation != expected.incarnation
            {
                return Err(RemoteError::Connect(ConnectError::Incompatible(format!(
                    "{addr} is now {}, not the {expected} looked for",
                    conn.peer_node
                ))));
            }
        }
        let limit = self.shared.config.lookup_timeout;
        let found = match conn.lookup(&self.shared, name, limit).await {
            Ok(found) => found,
            Err(crate::connection::LookupFailed::Closed) => return Err(RemoteError::NodeDown),
            Err(crate::connection::LookupFailed::Timeout) => {
                return Err(RemoteError::Timeout(limit))
            }
        };
        let id = found.ok_or_else(|| RemoteError::NotFound(name.to_owned()))?;
        let link = ActorLink::new(&self.shared, peer.clone(), id, conn.peer_node.incarnation);
        let (actor, handle) = postbox::remote::spawn_proxy::<A>(
            &self.shared.system,
            format!("postbox://{}/{name}", peer.addr),
            MailboxCapacity::bounded(self.shared.config.proxy_mailbox),
            link.clone(),
        );
        link.adopt(&self.shared, &conn.peer_node, handle);
        Ok(actor)
    }

    /// Counters of the transport.
    pub fn stats(&self) -> RemoteStats {
        let shared = &self.shared;
        let mut stats = RemoteStats::read(&shared.stats);
        stats.unauthenticated = shared.pending.len() as u64;
        stats.quarantined = shared.quarantine.len() as u64;
        for peer in shared.peers.iter() {
            if let Some(conn) = peer.connection() {
                stats.inbound_asks += conn.inbound_asks() as u64;
                stats.watches += conn.watches() as u64;
            }
        }
        stats
    }

    /// Quarantines the incarnation `node`, for good: it is refused from now on
    /// (`RefuseReason::Quarantined`, in the handshake), and a connection to it that is open
    /// is told so and closed (its asks in flight fail with `NodeDown`, remote refs through it
    /// end). For a membership layer that has declared the node down — a downed incarnation
    /// that comes back (after a pause, or a partition) must learn it is no longer a member.
    /// Returns whether an open connection to it was found and closed; one still in its
    /// handshake is refused, or closed as it is registered.
    pub fn quarantine(&self, node: &NodeAddr) -> bool {
        if self.shared.quarantine.add(node) {
            tracing::info!(%node, "quarantined");
        }
        let Some(conn) = self.shared.existing(&node.addr) else {
            return false;
        };
        if conn.peer_node.node_id != node.node_id || conn.peer_node.incarnation != node.incarnation
        {
            return false;
        }
        conn.close_with(
            RefuseReason::Quarantined,
            format!("{node} was declared down by the cluster; restart as a new incarnation"),
        );
        true
    }

    /// Whether the incarnation `node` is quarantined here.
    pub fn is_quarantined(&self, node: &NodeAddr) -> bool {
        self.shared.quarantine.contains(node)
    }

    /// The peer that told this node that the cluster has declared it down (it refused this
    /// node as `Quarantined`, after proving it knows the cluster secret), if one has.
    pub fn quarantined_by(&self) -> Option<NodeAddr> {
        self.shared.quarantined_by.borrow().clone()
    }

    /// Resolves once a peer has told this node that it is quarantined (see
    /// [`quarantined_by`](Self::quarantined_by)), with that peer.
    pub async fn quarantined(&self) -> NodeAddr {
        let mut told = self.shared.quarantined_by.subscribe();
        loop {
            if let Some(by) = told.borrow_and_update().clone() {
                return by;
            }
            if told.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Lets a membership layer refuse authenticated peers (see [`Admission`]); replaces any
    /// earlier one.
    pub fn set_admission(&self, admission: Arc<dyn Admission>) {
        *self
            .shared
            .admission
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(admission);
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
    /// watchers learn of it. Returns whether a connection was closed. (A membership layer
    /// that has declared the node down uses [`quarantine`](Self::quarantine), which also
    /// tells the node and refuses it from then on.)
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

    /// Cuts this node off from `peer` (feature `fault-injection`, for tests): from the
    /// moment this returns, no connection to or from it is made, the open one is closed as
    /// if lost (its reader has stopped: nothing more from it is delivered), and — if the
    /// membership layer runs on this transport — no gossip datagram to or from
    /// `peer.gossip` passes. Cut both sides for a partition. See the `cuts` module.
    #[cfg(feature = "fault-injection")]
    pub async fn cut_link(&self, peer: &crate::LinkPeer) {
        self.shared.cuts.cut(peer);
        let conn = self
            .shared
            .peers
            .get(&peer.addr)
            .and_then(|p| p.current_connection());
        if let Some(conn) = conn {
            conn.abort();
            conn.reader_done.cancelled().await;
        }
    }

    /// Lets `peer` through again (feature `fault-injection`): connections are made again
    /// when someone needs one, gossip flows again.
    #[cfg(feature = "fault-injection")]
    pub fn heal_link(&self, peer: &crate::LinkPeer) {
        self.shared.cuts.heal(peer);
    }

    /// Heals every cut link of this node (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub fn heal_all_links(&self) {
        self.shared.cuts.heal_all();
    }

    /// The set of cut peers, shared with the membership layer's gossip transport, which
    /// checks it per datagram (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn link_cuts(&self) -> Arc<crate::LinkCuts> {
        self.shared.cuts.clone()
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
async fn sweep_loop(shared: std::sync::Weak<TransportState>) {
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
    shared: &Arc<TransportState>,
    peer: &Arc<Peer>,
    expected: Option<&NodeAddr>,
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
        match dial(shared, peer, expected).await {
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
                | ConnectError::Quarantined(_)
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

/// Accepts connections until the transport stops. Every connection is admitted into the
/// budget of pending ones (evicting the oldest if need be, see `admission.rs`) and handshaken
/// on a task of its own. A failed `accept` (out of file descriptors, say) is counted, logged
/// at most once per [`LOG_EVERY`], frees the oldest pending connection's descriptor and backs
/// off — the loop never spins.
async fn accept_loop(shared: Arc<TransportState>, listener: TcpListener) {
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            Err(error) => {
                shared.stats.accept_errors.fetch_add(1, Relaxed);
                if let Some(held_back) = shared.logs.allow("accept") {
                    tracing::warn!(%error, held_back, retry_in = ?backoff, "cannot accept connections");
                }
                if shared.pending.evict_oldest() {
                    shared.stats.refuse(crate::stats::Refusal::Evicted);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        shared.stats.connections_accepted.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        // Admission in accept order, here rather than in the connection's task.
        let (slot, evicted) = shared.pending.admit(from.ip());
        for _ in 0..evicted {
            shared.stats.refuse(crate::stats::Refusal::Evicted);
        }
        if evicted > 0 {
            shared.log_refusal(
                from,
                "evicted",
                "the budget of connections in their handshake was full; the oldest was closed",
            );
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err((refusal, why)) = accept(&shared, stream, slot).await {
                shared.log_refusal(from, refusal.label(), &why);
            }
        });
    }
}

/// Counts an authenticated inbound connection for as long as it lives.
pub(crate) struct InboundSlot(Arc<TransportState>);

impl Drop for InboundSlot {
    fn drop(&mut self) {
        self.0.inbound.fetch_sub(1, Relaxed);
    }
}

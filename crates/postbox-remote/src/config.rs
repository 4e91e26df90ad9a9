//! Transport settings.

use crate::TlsConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// How a node's transport listens, authenticates and limits its peers: built with
/// [`RemoteConfig::new`] and a builder method per setting (each documents its default).
#[derive(Clone)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// Where to listen (port 0 picks a free one; [`Remote::addr`](crate::Remote::addr) says which).
    pub(crate) listen: SocketAddr,
    /// The `host:port` other nodes dial to reach this one, when it is not the bound address
    /// (listening on `0.0.0.0` in a container, behind NAT). Sent in the handshake and in every
    /// actor address this node hands out.
    pub(crate) advertise: Option<String>,
    /// The cluster's name: peers of another cluster are refused.
    pub(crate) cluster: String,
    /// The shared secret both sides prove they know.
    pub(crate) secret: Vec<u8>,
    /// Largest frame accepted or sent (bytes), once a connection is authenticated (before,
    /// [`MAX_HANDSHAKE_FRAME`](postbox_wire::MAX_HANDSHAKE_FRAME)). Both nodes should use the
    /// same limit.
    pub(crate) max_frame: usize,
    /// Most authenticated inbound connections at once; an authenticated peer beyond is
    /// refused (`TooManyConnections`).
    pub(crate) max_connections: usize,
    /// Most inbound connections still in their handshake, in all: beyond, the oldest is
    /// closed to admit the newest (so idle sockets cannot lock members and clients out).
    pub(crate) max_unauthenticated: usize,
    /// Most inbound connections still in their handshake from one IP address: beyond, that
    /// address's oldest is closed to admit its newest.
    pub(crate) max_unauthenticated_per_source: usize,
    /// Time a peer has to complete the handshake (TLS included).
    pub(crate) handshake_timeout: Duration,
    /// Time a TCP connection attempt may take.
    pub(crate) connect_timeout: Duration,
    /// Time a [`lookup`](crate::Remote::lookup) may take in all: connecting (with retries),
    /// the handshake and the answer.
    pub(crate) lookup_timeout: Duration,
    /// Frames queued per peer before senders wait.
    pub(crate) outbound_capacity: usize,
    /// Bytes queued per peer before senders wait (a frame larger than this takes all of it).
    pub(crate) outbound_bytes: usize,
    /// Most asks from one peer in flight at once (awaiting their reply); beyond, the
    /// connection stops taking that peer's requests until replies are sent, and TCP pushes
    /// back on it.
    pub(crate) max_inbound_asks: usize,
    /// Most watches one peer may hold on this node's actors; a watch beyond is answered at
    /// once with `Terminated` naming the limit.
    pub(crate) max_watches: usize,
    /// Mailbox size of each remote ref (its proxy).
    pub(crate) proxy_mailbox: usize,
    /// First delay between connection attempts; doubles each attempt.
    pub(crate) reconnect_min: Duration,
    /// How many connection attempts before a peer counts as unreachable.
    pub(crate) reconnect_attempts: u32,
    /// A heartbeat is sent after this much write silence.
    pub(crate) heartbeat_interval: Duration,
    /// A connection that received nothing for this long is considered dead.
    pub(crate) heartbeat_timeout: Duration,
    /// How long [`Remote::shutdown`](crate::Remote::shutdown) waits for remote refs and
    /// outbound queues to be written out before closing regardless.
    pub(crate) drain_timeout: Duration,
    /// Mutual TLS for every connection, if set (see [`TlsConfig`]).
    pub(crate) tls: Option<TlsConfig>,
}

impl RemoteConfig {
    /// Settings for listening on `listen` in cluster `cluster` with `secret`, and defaults:
    /// 8 MiB frames; 1024 authenticated connections, 64 in their handshake (8 per source
    /// address); a 5 s handshake timeout, 5 s to connect, 10 s for a whole lookup; 4096
    /// queued frames and 4 MiB per peer; 256 asks in flight and 4096 watches per peer;
    /// proxies with 1024-message mailboxes, 4 connection attempts from 100 ms, heartbeats
    /// every second, a 10 s silence limit and 5 s to drain at shutdown.
    pub fn new(listen: SocketAddr, cluster: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        Self {
            listen,
            advertise: None,
            cluster: cluster.into(),
            secret: secret.as_ref().to_vec(),
            max_frame: postbox_wire::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            max_unauthenticated: 64,
            max_unauthenticated_per_source: 8,
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            lookup_timeout: Duration::from_secs(10),
            outbound_capacity: 4096,
            outbound_bytes: 4 * 1024 * 1024,
            max_inbound_asks: 256,
            max_watches: 4096,
            proxy_mailbox: 1024,
            reconnect_min: Duration::from_millis(100),
            reconnect_attempts: 4,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The cluster secret.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Sets where to listen (port 0 picks a free one).
    pub fn listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the mailbox size of each remote ref (its proxy).
    pub fn proxy_mailbox(mut self, messages: usize) -> Self {
        self.proxy_mailbox = messages;
        self
    }

    /// Sets the `host:port` other nodes dial, when it is not the bound address.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// Sets the largest frame.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets the inbound connection limit.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets the budget of connections in their handshake: in all, and per source address.
    pub fn max_unauthenticated(mut self, total: usize, per_source: usize) -> Self {
        self.max_unauthenticated = total;
        self.max_unauthenticated_per_source = per_source;
        self
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the TCP connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the time a whole lookup may take.
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// Sets the outbound queue's limits per peer: frames and bytes.
    pub fn outbound(mut self, frames: usize, bytes: usize) -> Self {
        self.outbound_capacity = frames;
        self.outbound_bytes = bytes;
        self
    }

    /// Sets the most asks one peer may have in flight here.
    pub fn max_inbound_asks(mut self, asks: usize) -> Self {
        self.max_inbound_asks = asks;
        self
    }

    /// Sets the most watches one peer may hold here.
    pub fn max_watches(mut self, watches: usize) -> Self {
        self.max_watches = watches;
        self
    }

    /// Sets the heartbeat interval and the silence after which a connection is dead (also
    /// how long a peer may leave this node's writes unread).
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// Runs every connection, both accepted and dialed, over mutual TLS: peers must present
    /// a certificate from the cluster's CA, and the HMAC handshake runs inside the session.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets how long shutdown waits for queued messages to be written out.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets the number of connection attempts and the first delay between them.
    pub fn reconnect(mut self, attempts: u32, first_delay: Duration) -> Self {
        self.reconnect_attempts = attempts.max(1);
        self.reconnect_min = first_delay;
        self
    }
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("listen", &self.listen)
            .field("cluster", &self.cluster)
            .field("secret", &"<redacted>")
            .field("max_frame", &self.max_frame)
            .field("max_connections", &self.max_connections)
            .field("max_unauthenticated", &self.max_unauthenticated)
            .field("max_inbound_asks", &self.max_inbound_asks)
            .field("max_watches", &self.max_watches)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

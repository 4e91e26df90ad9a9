//! Transport settings.

use crate::TlsConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// How a node's transport listens, authenticates and limits its peers.
#[derive(Clone)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// Where to listen (port 0 picks a free one; [`Remote::addr`](crate::Remote::addr) says which).
    pub listen: SocketAddr,
    /// The `host:port` other nodes dial to reach this one, when it is not the bound address
    /// (listening on `0.0.0.0` in a container, behind NAT). Sent in the handshake and in every
    /// actor address this node hands out.
    pub advertise: Option<String>,
    /// The cluster's name: peers of another cluster are refused.
    pub cluster: String,
    /// The shared secret both sides prove they know.
    pub secret: Vec<u8>,
    /// Largest frame accepted or sent (bytes).
    pub max_frame: usize,
    /// Most simultaneous inbound connections; more are refused.
    pub max_connections: usize,
    /// Time a peer has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Frames queued per peer before senders wait.
    pub outbound_capacity: usize,
    /// Mailbox size of each remote ref (its proxy).
    pub proxy_mailbox: usize,
    /// First delay between connection attempts; doubles each attempt.
    pub reconnect_min: Duration,
    /// How many connection attempts before a peer counts as unreachable.
    pub reconnect_attempts: u32,
    /// A heartbeat is sent after this much write silence.
    pub heartbeat_interval: Duration,
    /// A connection that received nothing for this long is considered dead.
    pub heartbeat_timeout: Duration,
    /// How long [`Remote::shutdown`](crate::Remote::shutdown) waits for remote refs and
    /// outbound queues to be written out before closing regardless.
    pub drain_timeout: Duration,
    /// Mutual TLS for every connection, if set (see [`TlsConfig`]).
    pub tls: Option<TlsConfig>,
}

impl RemoteConfig {
    /// Settings for listening on `listen` in cluster `cluster` with `secret`, and defaults:
    /// 8 MiB frames, 1024 connections, 5 s handshake timeout, 4096 queued frames per peer,
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
            handshake_timeout: Duration::from_secs(5),
            outbound_capacity: 4096,
            proxy_mailbox: 1024,
            reconnect_min: Duration::from_millis(100),
            reconnect_attempts: 4,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            tls: None,
        }
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

    /// Sets the handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
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
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

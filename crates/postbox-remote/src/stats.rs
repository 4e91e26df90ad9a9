//! Counters of the transport, why connections were refused, and rate-limited logging of
//! refusals (a flood of bad connections costs a log line per period, not one per connection).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Why a connection was refused or cut off by this node, for metrics (`reason` label) and
/// logs. Every inbound connection that does not become an authenticated connection ends in
/// exactly one of these; so does an authenticated connection this node closes on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// Still in its handshake when the budget of such connections (per source address, or in
    /// all) was full and a newer one arrived: the oldest was closed to make room.
    Evicted,
    /// Over the limit of authenticated inbound connections.
    TooManyConnections,
    /// The handshake did not complete within the handshake timeout.
    HandshakeTimeout,
    /// The TLS handshake failed (no certificate from the cluster's CA, or no TLS at all).
    Tls,
    /// A handshake frame out of order, oversized or undecodable.
    Malformed,
    /// Another protocol version.
    VersionMismatch,
    /// Another cluster's name.
    WrongCluster,
    /// The peer's proof did not verify: it does not know the cluster secret.
    AuthenticationFailed,
    /// The losing side of two nodes dialing each other at once.
    SimultaneousConnect,
    /// The peer is an incarnation this node has quarantined (declared down).
    Quarantined,
    /// The peer claimed an address that another live incarnation holds.
    AddressInUse,
    /// The peer hung up (or its socket failed) during the handshake.
    Closed,
}

impl Refusal {
    /// Every cause, in a stable order.
    pub const ALL: [Refusal; 12] = [
        Refusal::Evicted,
        Refusal::TooManyConnections,
        Refusal::HandshakeTimeout,
        Refusal::Tls,
        Refusal::Malformed,
        Refusal::VersionMismatch,
        Refusal::WrongCluster,
        Refusal::AuthenticationFailed,
        Refusal::SimultaneousConnect,
        Refusal::Quarantined,
        Refusal::AddressInUse,
        Refusal::Closed,
    ];

    /// A short, stable snake_case label (the metrics' `reason`).
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::Evicted => "evicted",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::Tls => "tls",
            Refusal::Malformed => "malformed",
            Refusal::VersionMismatch => "version_mismatch",
            Refusal::WrongCluster => "wrong_cluster",
            Refusal::AuthenticationFailed => "authentication_failed",
            Refusal::SimultaneousConnect => "simultaneous_connect",
            Refusal::Quarantined => "quarantined",
            Refusal::AddressInUse => "address_in_use",
            Refusal::Closed => "closed",
        }
    }

    const fn index(self) -> usize {
        match self {
            Refusal::Evicted => 0,
            Refusal::TooManyConnections => 1,
            Refusal::HandshakeTimeout => 2,
            Refusal::Tls => 3,
            Refusal::Malformed => 4,
            Refusal::VersionMismatch => 5,
            Refusal::WrongCluster => 6,
            Refusal::AuthenticationFailed => 7,
            Refusal::SimultaneousConnect => 8,
            Refusal::Quarantined => 9,
            Refusal::AddressInUse => 10,
            Refusal::Closed => 11,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) unauthenticated: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) refused: AtomicU64,
    refusals: [AtomicU64; Refusal::ALL.len()],
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) invalid_traces: AtomicU64,
    pub(crate) reads_paused: AtomicU64,
    pub(crate) watches_refused: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) write_stalls: AtomicU64,
    pub(crate) lookup_timeouts: AtomicU64,
}

impl Stats {
    /// Counts a refused connection, by cause.
    pub(crate) fn refuse(&self, why: Refusal) {
        self.refused.fetch_add(1, Relaxed);
        self.refusals[why.index()].fetch_add(1, Relaxed);
        if why == Refusal::AuthenticationFailed || why == Refusal::Tls {
            self.auth_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn refusals(&self) -> [u64; Refusal::ALL.len()] {
        std::array::from_fn(|i| self.refusals[i].load(Relaxed))
    }
}

/// Transport counters, for the metrics endpoint. Counts are monotonic since the transport
/// started; fields documented as "now" are gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RemoteStats {
    /// Authenticated connections open now.
    pub connections: u64,
    /// Inbound connections accepted (before the handshake) since start.
    pub connections_accepted: u64,
    /// Inbound connections in their handshake now (not yet authenticated).
    pub unauthenticated: u64,
    /// Failed `accept` calls on the listener (out of file descriptors, say); the listener
    /// backs off after each.
    pub accept_errors: u64,
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
    /// Handshakes that failed authentication (either side; TLS failures included).
    pub auth_failures: u64,
    /// Connections refused or cut off by this node, every cause together
    /// (see [`refused_by`](Self::refused_by)).
    pub refused: u64,
    refusals: [u64; Refusal::ALL.len()],
    /// Connections closed for malformed or oversized frames.
    pub protocol_errors: u64,
    /// Messages whose `traceparent` was malformed: delivered all the same, without it (their
    /// handler starts a new trace).
    pub invalid_trace_contexts: u64,
    /// Asks from peers being handled now, awaiting their reply (at most
    /// [`max_inbound_asks`](crate::RemoteConfig::max_inbound_asks) per connection).
    pub inbound_asks: u64,
    /// Times a connection's reader stopped reading because its peer had the most asks in
    /// flight (once per ask that had to wait), or
    /// [`REQUEST_BACKLOG`](crate::REQUEST_BACKLOG) bytes of requests waiting behind one that
    /// waits for its actor's mailbox (once per episode, until that queue drains); TCP then
    /// pushes back on the peer.
    pub reads_paused: u64,
    /// Watches held for peers now (at most [`max_watches`](crate::RemoteConfig::max_watches)
    /// per connection).
    pub watches: u64,
    /// Watches refused because their connection held the most.
    pub watches_refused: u64,
    /// Frames not sent because they were over the frame limit (the message became a
    /// `TooLarge` dead letter or failed its ask; a reply was answered with a `TooLarge` error).
    pub too_large: u64,
    /// Connections closed because the peer stopped reading for a heartbeat timeout.
    pub write_stalls: u64,
    /// Lookups that got no answer within the lookup timeout.
    pub lookup_timeouts: u64,
    /// Incarnations quarantined now (declared down; refused for good).
    pub quarantined: u64,
}

impl RemoteStats {
    /// Connections refused or cut off for `why`.
    pub fn refused_by(&self, why: Refusal) -> u64 {
        self.refusals[why.index()]
    }

    pub(crate) fn read(stats: &Stats) -> Self {
        RemoteStats {
            connections: stats.connections.load(Relaxed),
            connections_accepted: stats.connections_accepted.load(Relaxed),
            unauthenticated: stats.unauthenticated.load(Relaxed),
            accept_errors: stats.accept_errors.load(Relaxed),
            frames_in: stats.frames_in.load(Relaxed),
            frames_out: stats.frames_out.load(Relaxed),
            bytes_in: stats.bytes_in.load(Relaxed),
            bytes_out: stats.bytes_out.load(Relaxed),
            reconnects: stats.reconnects.load(Relaxed),
            auth_failures: stats.auth_failures.load(Relaxed),
            refused: stats.refused.load(Relaxed),
            refusals: stats.refusals(),
            protocol_errors: stats.protocol_errors.load(Relaxed),
            invalid_trace_contexts: stats.invalid_traces.load(Relaxed),
            inbound_asks: 0,
            reads_paused: stats.reads_paused.load(Relaxed),
            watches: 0,
            watches_refused: stats.watches_refused.load(Relaxed),
            too_large: stats.too_large.load(Relaxed),
            write_stalls: stats.write_stalls.load(Relaxed),
            lookup_timeouts: stats.lookup_timeouts.load(Relaxed),
            quarantined: 0,
        }
    }
}

/// Allows a log line per key at most once per period, and counts the lines it held back so
/// that the next one can say how many there were.
pub(crate) struct LogLimiter {
    period: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(lines held back since the last one)` if a line for `key` may be logged now.
    pub(crate) fn allow(&self, key: &'static str) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match last.get_mut(key) {
            Some((at, held)) if now.duration_since(*at) < self.period => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let suppressed = *held;
                *at = now;
                *held = 0;
                Some(suppressed)
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_cause_and_in_all() {
        let stats = Stats::default();
        stats.refuse(Refusal::Evicted);
        stats.refuse(Refusal::Evicted);
        stats.refuse(Refusal::AuthenticationFailed);
        let read = RemoteStats::read(&stats);
        assert_eq!(read.refused, 3);
        assert_eq!(read.refused_by(Refusal::Evicted), 2);
        assert_eq!(read.refused_by(Refusal::AuthenticationFailed), 1);
        assert_eq!(read.auth_failures, 1);
        assert_eq!(read.refused_by(Refusal::Closed), 0);
    }

    #[test]
    fn every_cause_has_its_own_slot_and_label() {
        let mut labels: Vec<&str> = Refusal::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
        for (i, refusal) in Refusal::ALL.iter().enumerate() {
            assert_eq!(refusal.index(), i);
        }
    }

    #[test]
    fn the_limiter_allows_one_line_per_period_and_counts_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(3_600));
        assert_eq!(limiter.allow("a"), Some(0));
        assert_eq!(limiter.allow("a"), None);
        assert_eq!(limiter.allow("a"), None);
        assert_eq!(limiter.allow("b"), Some(0));
        let limiter = LogLimiter::new(Duration::ZERO);
        assert_eq!(limiter.allow("a"), Some(0));
        assert_eq!(limiter.allow("a"), Some(0));
    }
}

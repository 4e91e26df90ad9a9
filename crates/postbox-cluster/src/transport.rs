//! Gossip over UDP, authenticated: chitchat's `Transport`, with every datagram sealed with an
//! HMAC-SHA256 tag over the cluster's secret and name.
//!
//! Layout of a datagram:
//!
//! | bytes | gossip (kind 1) | refusal (kind 2) |
//! | --- | --- | --- |
//! | 0..4 | magic `PBXC` | magic `PBXC` |
//! | 4 | `1` | `2` |
//! | 5.. | 8-byte cluster tag (SHA-256 of the cluster name, truncated), the chitchat message, then a 32-byte HMAC-SHA256 tag | one reason byte: `1` wrong cluster, `2` authentication failed; then the first 8 bytes of the refused datagram's HMAC tag (the *echo*) |
//!
//! The HMAC key is the secret; its input is a domain string, the cluster name and every byte
//! of the datagram before the tag, so a datagram proves its sender knows both. A datagram
//! that fails is dropped, counted, logged (at most once per source per second, and once per
//! 10 s in all) and answered with a refusal (at most one per source per second, and never
//! larger than what it answers, so it cannot amplify a flood).
//!
//! Refusals cannot be authenticated — the refusing node does not share our secret — so one
//! is believed only if its echo is the tag of a datagram this node sent to that very address
//! recently (the last 16 per destination): an attacker who does not see our traffic cannot
//! forge one, and an unauthenticated datagram never changes a node's decisions. A believed
//! refusal is counted and logged, and fails a [`Cluster::join`](crate::Cluster::join) that
//! has heard nothing better; any other is counted as ignored.
//!
//! With the feature `fault-injection` (tests only), datagrams to or from a gossip address the
//! transport's link cuts name are dropped, both ways, before anything else is done with them
//! (see `postbox_remote::Remote::cut_link`).
//!
//! Replayed gossip is harmless: chitchat ignores versions and heartbeats it already has.
//! Chitchat fills a datagram up to 65 506 bytes; the 45 bytes of framing come on top, so a
//! delta within 45 bytes of that limit cannot be sent (counted in `oversized`; chitchat
//! compresses deltas, so it takes thousands of registrations to get there).

use crate::error::Refusal;
use anyhow::anyhow;
use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use postbox_wire::auth::ClusterMac;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const MAGIC: &[u8; 4] = b"PBXC";
const KIND_GOSSIP: u8 = 1;
const KIND_REFUSAL: u8 = 2;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 4 + 1 + 8;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
const DOMAIN: &[u8] = b"postbox-cluster gossip v1\0";
/// At most one refusal (and one warning) per source in this time.
const REFUSAL_EVERY: Duration = Duration::from_secs(1);
/// Bytes of a refused datagram's tag echoed in the refusal.
const ECHO_LEN: usize = 8;
/// Tags remembered per destination, to check echoes against …
const ECHOES_PER_DESTINATION: usize = 16;
/// … for at most this many destinations (then forgotten all at once).
const ECHO_DESTINATIONS_MAX: usize = 4_096;
/// At most one warning about malformed or ignored datagrams, in all, in this time.
const NOISE_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a joining node heard first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstAnswer {
    Nothing,
    /// Authenticated gossip from another node.
    Contact,
    Refused(SocketAddr, Refusal),
}

/// Counters of the gossip transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GossipStats {
    /// Authenticated datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received (all datagrams).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Datagrams that were not ours or could not be decoded.
    pub malformed: u64,
    /// Datagrams from another cluster.
    pub wrong_cluster: u64,
    /// Datagrams that failed authentication (wrong secret, or tampered with).
    pub auth_failures: u64,
    /// Refusals received that echoed a datagram this node sent (believed).
    pub refusals_received: u64,
    /// Refusals received that did not (forged, stale or of an older version): ignored.
    pub refusals_ignored: u64,
    /// Gossip too large to send once framed.
    pub oversized: u64,
}

#[derive(Default)]
struct Counters {
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    malformed: AtomicU64,
    wrong_cluster: AtomicU64,
    auth_failures: AtomicU64,
    refusals_received: AtomicU64,
    refusals_ignored: AtomicU64,
    oversized: AtomicU64,
}

/// What the transport shares with the cluster.
pub(crate) struct GossipState {
    mac: ClusterMac,
    cluster_tag: [u8; 8],
    counters: Counters,
    first_answer: watch::Sender<FirstAnswer>,
    /// When we last refused (or logged a refusal from) each source.
    throttle: Mutex<HashMap<SocketAddr, Instant>>,
    /// The tags of the datagrams recently sent to each destination (their first bytes).
    sent: Mutex<HashMap<SocketAddr, VecDeque<[u8; ECHO_LEN]>>>,
    /// When noise (malformed or ignored datagrams) was last logged, and how much since.
    noise: Mutex<(Option<Instant>, u64)>,
}

impl GossipState {
    pub(crate) fn new(cluster: &str, secret: &[u8]) -> Result<Arc<Self>, String> {
        let mac = ClusterMac::new(secret, DOMAIN, cluster);
        Ok(Arc::new(Self {
            mac,
            cluster_tag: cluster_tag(cluster),
            counters: Counters::default(),
            first_answer: watch::channel(FirstAnswer::Nothing).0,
            throttle: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            noise: Mutex::new((None, 0)),
        }))
    }

    pub(crate) fn first_answer(&self) -> watch::Receiver<FirstAnswer> {
        self.first_answer.subscribe()
    }

    pub(crate) fn stats(&self) -> GossipStats {
        let c = &self.counters;
        GossipStats {
            datagrams_in: c.datagrams_in.load(Relaxed),
            datagrams_out: c.datagrams_out.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            wrong_cluster: c.wrong_cluster.load(Relaxed),
            auth_failures: c.auth_failures.load(Relaxed),
            refusals_received: c.refusals_received.load(Relaxed),
            refusals_ignored: c.refusals_ignored.load(Relaxed),
            oversized: c.oversized.load(Relaxed),
        }
    }

    /// Seals `message` into `out`.
    fn seal(&self, message: &ChitchatMessage, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(MAGIC);
        out.push(KIND_GOSSIP);
        out.extend_from_slice(&self.cluster_tag);
        message.serialize(out);
        let tag = self.mac.tag(out);
        out.extend_from_slice(&tag);
    }

    /// Remembers that `datagram` (sealed) went to `to`, so that a refusal of it is believed.
    fn sent_to(&self, to: SocketAddr, datagram: &[u8]) {
        let Some(echo) = echo_of(datagram) else {
            return;
        };
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if sent.len() >= ECHO_DESTINATIONS_MAX && !sent.contains_key(&to) {
            sent.clear();
        }
        let tags = sent.entry(to).or_default();
        if tags.len() >= ECHOES_PER_DESTINATION {
            tags.pop_front();
        }
        tags.push_back(echo);
    }

    /// Whether `echo` is the tag of a datagram recently sent to `from`.
    fn echoes_ours(&self, from: SocketAddr, echo: &[u8; ECHO_LEN]) -> bool {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&from)
            .is_some_and(|tags| tags.contains(echo))
    }

    /// Logs datagrams that were malformed or ignored, at most once per [`NOISE_LOG_EVERY`]
    /// in all, with how many came since the last line.
    fn noise(&self, from: SocketAddr, what: &str) {
        let mut noise = self.noise.lock().unwrap_or_else(PoisonError::into_inner);
        noise.1 += 1;
        let now = Instant::now();
        if noise
            .0
            .is_none_or(|at| now.duration_since(at) >= NOISE_LOG_EVERY)
        {
            tracing::warn!(%from, what, since_last = noise.1, "gossip datagrams dropped");
            *noise = (Some(now), 0);
        }
    }

    /// Checks a datagram; `Ok` holds the chitchat message's bytes, or a refusal.
    fn open<'a>(&self, datagram: &'a [u8]) -> Result<Opened<'a>, Rejected> {
        let (Some(magic), Some(&kind)) = (datagram.get(..4), datagram.get(4)) else {
            return Err(Rejected::Malformed);
        };
        if magic != MAGIC {
            return Err(Rejected::Malformed);
        }
        match kind {
            KIND_REFUSAL => {
                let (reason, echo) = match datagram.get(5..) {
                    Some([code]) => (*code, None),
                    Some([code, echo @ ..]) => (*code, Some(<[u8; ECHO_LEN]>::try_from(echo))),
                    _ => return Err(Rejected::Malformed),
                };
                let reason = match reason {
                    1 => Refusal::WrongCluster,
                    2 => Refusal::AuthenticationFailed,
                    _ => return Err(Rejected::Malformed),
                };
                match echo {
                    None => Ok(Opened::Refusal(reason, None)),
                    Some(Ok(echo)) => Ok(Opened::Refusal(reason, Some(echo))),
                    Some(Err(_)) => Err(Rejected::Malformed),
                }
            }
            KIND_GOSSIP => {
                if datagram.len() < HEADER_LEN + TAG_LEN {
                    return Err(Rejected::Malformed);
                }
                if datagram[5..HEADER_LEN] != self.cluster_tag {
                    return Err(Rejected::Refuse(Refusal::WrongCluster));
                }
                let (sealed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
                if !self.mac.verify(sealed, tag) {
                    return Err(Rejected::Refuse(Refusal::AuthenticationFailed));
                }
                Ok(Opened::Gossip(&sealed[HEADER_LEN..]))
            }
            _ => Err(Rejected::Malformed),
        }
    }

    /// Whether `from` may be answered (or logged about) now; at most once per
    /// [`REFUSAL_EVERY`].
    fn throttle_allows(&self, from: SocketAddr) -> bool {
        let mut throttle = self.throttle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if throttle.len() > 4_096 {
            throttle.retain(|_, at| now.duration_since(*at) < REFUSAL_EVERY);
        }
        match throttle.get(&from) {
            Some(at) if now.duration_since(*at) < REFUSAL_EVERY => false,
            _ => {
                throttle.insert(from, now);
                true
            }
        }
    }
}

/// The first bytes of a sealed datagram's HMAC tag.
fn echo_of(datagram: &[u8]) -> Option<[u8; ECHO_LEN]> {
    let tag = datagram.get(datagram.len().checked_sub(TAG_LEN)?..)?;
    <[u8; ECHO_LEN]>::try_from(tag.get(..ECHO_LEN)?).ok()
}

fn cluster_tag(cluster: &str) -> [u8; 8] {
    let digest = Sha256::digest(cluster.as_bytes());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

enum Opened<'a> {
    Gossip(&'a [u8]),
    /// A refusal, with its echo (none from an older node).
    Refusal(Refusal, Option<[u8; ECHO_LEN]>),
}

enum Rejected {
    Malformed,
    Refuse(Refusal),
}

/// Hands chitchat the socket bound before it started (so that port 0 works and the
/// advertised address is the real one).
pub(crate) struct GossipTransport {
    socket: Mutex<Option<tokio::net::UdpSocket>>,
    shared: Arc<GossipState>,
    /// The transport's link cuts (fault injection): datagrams to or from a cut peer's gossip
    /// address are dropped, both ways, as a cut network would.
    #[cfg(feature = "fault-injection")]
    cuts: Arc<postbox_remote::LinkCuts>,
}

impl GossipTransport {
    pub(crate) fn new(
        socket: tokio::net::UdpSocket,
        shared: Arc<GossipState>,
        #[cfg(feature = "fault-injection")] cuts: Arc<postbox_remote::LinkCuts>,
    ) -> Self {
        Self {
            socket: Mutex::new(Some(socket)),
            shared,
            #[cfg(feature = "fault-injection")]
            cuts,
        }
    }
}

#[async_trait]
impl Transport for GossipTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self
            .socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| anyhow!("the gossip socket was already handed out"))?;
        let local = socket.local_addr()?;
        Ok(Box::new(AuthenticatedSocket {
            socket,
            local,
            shared: self.shared.clone(),
            #[cfg(feature = "fault-injection")]
            cuts: self.cuts.clone(),
            send_buf: Vec::with_capacity(MAX_DATAGRAM),
            recv_buf: vec![0; 65_536].into_boxed_slice(),
        }))
    }
}

struct AuthenticatedSocket {
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
    shared: Arc<GossipState>,
    #[cfg(feature = "fault-injection")]
    cuts: Arc<postbox_remote::LinkCuts>,
    send_buf: Vec<u8>,
    recv_buf: Box<[u8]>,
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[async_trait]
impl Socket for AuthenticatedSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        #[cfg(feature = "fault-injection")]
        if self.cuts.is_gossip_cut(to) {
            // Lost on the way, as on a cut network: the sender cannot tell.
            return Ok(());
        }
        self.shared.seal(&message, &mut self.send_buf);
        if self.send_buf.len() > MAX_DATAGRAM {
            self.shared.counters.oversized.fetch_add(1, Relaxed);
            return Err(anyhow!(
                "gossip datagram of {} bytes is over the UDP limit once authenticated",
                self.send_buf.len()
            ));
        }
        let sent = self.socket.send_to(&self.send_buf, to).await?;
        self.shared.sent_to(to, &self.send_buf);
        let counters = &self.shared.counters;
        counters.datagrams_out.fetch_add(1, Relaxed);
        counters.bytes_out.fetch_add(sent as u64, Relaxed);
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (len, from) = match self.socket.recv_from(&mut self.recv_buf).await {
                Ok(received) => received,
                Err(error) if is_transient(&error) => continue,
                Err(error) => return Err(anyhow!("gossip socket failed: {error}")),
            };
            #[cfg(feature = "fault-injection")]
            if self.cuts.is_gossip_cut(from) {
                continue;
            }
            if let Some(outcome) = self.accept(from, len).await {
                return Ok(outcome);
            }
        }
    }
}

impl AuthenticatedSocket {
    /// Checks one datagram: an authenticated message is returned, anything else is counted
    /// (and refused or recorded).
    async fn accept(
        &mut self,
        from: SocketAddr,
        len: usize,
    ) -> Option<(SocketAddr, ChitchatMessage)> {
        let shared = self.shared.clone();
        let counters = &shared.counters;
        counters.bytes_in.fetch_add(len as u64, Relaxed);
        let datagram = self.recv_buf.get(..len)?;
        match shared.open(datagram) {
            Ok(Opened::Gossip(mut bytes)) => match ChitchatMessage::deserialize(&mut bytes) {
                Ok(message) => {
                    counters.datagrams_in.fetch_add(1, Relaxed);
                    if from != self.local {
                        shared.first_answer.send_if_modified(|first| {
                            let nothing_yet = *first == FirstAnswer::Nothing;
                            if nothing_yet {
                                *first = FirstAnswer::Contact;
                            }
                            nothing_yet
                        });
                    }
                    Some((from, message))
                }
                Err(error) => {
                    // Authenticated but undecodable: a node of another version.
                    counters.malformed.fetch_add(1, Relaxed);
                    if shared.throttle_allows(from) {
                        tracing::warn!(%from, %error, "undecodable gossip from a cluster member (another version?)");
                    }
                    None
                }
            },
            Ok(Opened::Refusal(reason, echo)) => {
                if !echo.is_some_and(|echo| shared.echoes_ours(from, &echo)) {
                    counters.refusals_ignored.fetch_add(1, Relaxed);
                    shared.noise(from, "a refusal of nothing this node sent (ignored)");
                    return None;
                }
                counters.refusals_received.fetch_add(1, Relaxed);
                if shared.throttle_allows(from) {
                    tracing::warn!(%from, %reason, "a node refused our gossip");
                }
                shared.first_answer.send_if_modified(|first| {
                    let nothing_yet = *first == FirstAnswer::Nothing;
                    if nothing_yet {
                        *first = FirstAnswer::Refused(from, reason);
                    }
                    nothing_yet
                });
                None
            }
            Err(Rejected::Malformed) => {
                counters.malformed.fetch_add(1, Relaxed);
                shared.noise(from, "malformed (not postbox gossip)");
                None
            }
            Err(Rejected::Refuse(reason)) => {
                match reason {
                    Refusal::WrongCluster => counters.wrong_cluster.fetch_add(1, Relaxed),
                    Refusal::AuthenticationFailed => counters.auth_failures.fetch_add(1, Relaxed),
                };
                if shared.throttle_allows(from) {
                    tracing::warn!(%from, ?reason, "gossip refused");
                    let code = match reason {
                        Refusal::WrongCluster => 1,
                        Refusal::AuthenticationFailed => 2,
                    };
                    let mut refusal = Vec::with_capacity(6 + ECHO_LEN);
                    refusal.extend_from_slice(MAGIC);
                    refusal.extend_from_slice(&[KIND_REFUSAL, code]);
                    refusal.extend_from_slice(&echo_of(datagram).unwrap_or_default());
                    let _ = self.socket.send_to(&refusal, from).await;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> ChitchatMessage {
        ChitchatMessage::BadCluster
    }

    fn sealed(shared: &GossipState) -> Vec<u8> {
        let mut out = Vec::new();
        shared.seal(&message(), &mut out);
        out
    }

    #[test]
    fn a_sealed_datagram_opens_with_the_same_cluster_and_secret() {
        let shared = GossipState::new("c", b"secret").unwrap();
        let datagram = sealed(&shared);
        let Ok(Opened::Gossip(mut bytes)) = shared.open(&datagram) else {
            panic!("refused its own datagram");
        };
        assert_eq!(ChitchatMessage::deserialize(&mut bytes).unwrap(), message());
    }

    #[test]
    fn another_cluster_or_secret_or_a_flipped_bit_is_refused() {
        let ours = GossipState::new("c", b"secret").unwrap();
        let other_cluster = sealed(&GossipState::new("d", b"secret").unwrap());
        let other_secret = sealed(&GossipState::new("c", b"guess").unwrap());
        assert!(matches!(
            ours.open(&other_cluster),
            Err(Rejected::Refuse(Refusal::WrongCluster))
        ));
        assert!(matches!(
            ours.open(&other_secret),
            Err(Rejected::Refuse(Refusal::AuthenticationFailed))
        ));
        let good = sealed(&ours);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(ours.open(&bad).is_err(), "bit flip at {i} accepted");
        }
    }

    #[test]
    fn garbage_is_malformed_and_refusals_are_read() {
        let ours = GossipState::new("c", b"secret").unwrap();
        for garbage in [
            &b""[..],
            b"PB",
            b"PBXC",
            b"PBXC\x01short",
            b"XXXX\x01",
            b"PBXC\x09",
        ] {
            assert!(
                matches!(ours.open(garbage), Err(Rejected::Malformed)),
                "{garbage:?}"
            );
        }
        assert!(matches!(
            ours.open(b"PBXC\x02\x02"),
            Ok(Opened::Refusal(Refusal::AuthenticationFailed, None))
        ));
        assert!(matches!(
            ours.open(b"PBXC\x02\x01echo1234"),
            Ok(Opened::Refusal(Refusal::WrongCluster, Some(echo))) if &echo == b"echo1234"
        ));
        assert!(matches!(
            ours.open(b"PBXC\x02\x01short"),
            Err(Rejected::Malformed)
        ));
        assert!(matches!(
            ours.open(b"PBXC\x02\x07"),
            Err(Rejected::Malformed)
        ));
    }

    #[test]
    fn only_the_echo_of_a_datagram_sent_to_that_address_is_believed() {
        let ours = GossipState::new("c", b"secret").unwrap();
        let peer: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let datagram = sealed(&ours);
        ours.sent_to(peer, &datagram);
        let echo = echo_of(&datagram).unwrap();
        assert!(ours.echoes_ours(peer, &echo));
        assert!(!ours.echoes_ours(other, &echo), "sent elsewhere");
        assert!(!ours.echoes_ours(peer, &[0; ECHO_LEN]), "never sent");
        // Older tags are forgotten past the window.
        for _ in 0..ECHOES_PER_DESTINATION {
            let mut newer = sealed(&ours);
            let at = newer.len() - TAG_LEN;
            newer[at] ^= 0xff;
            ours.sent_to(peer, &newer);
        }
        assert!(!ours.echoes_ours(peer, &echo));
    }

    #[test]
    fn refusals_are_throttled_per_source() {
        let ours = GossipState::new("c", b"secret").unwrap();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert!(ours.throttle_allows(a));
        assert!(!ours.throttle_allows(a));
        assert!(ours.throttle_allows(b));
    }
}

//! Settings of a cluster node: who it is, whom it joins, how fast it notices failures.

use crate::downing::DowningStrategy;
use crate::error::ClusterError;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How a node joins and takes part in a cluster. Built with [`ClusterConfig::new`] and the
/// builder methods; checked by [`Cluster::join`](crate::Cluster::join), which names the field
/// and the reason of anything it refuses.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The cluster's name: gossip from another cluster is refused.
    pub cluster: String,
    /// The shared secret every gossip datagram is authenticated with (HMAC-SHA256).
    pub secret: Vec<u8>,
    /// Where to listen for gossip (UDP). Port 0 picks a free port.
    pub gossip_listen: SocketAddr,
    /// The gossip address other nodes should use, when it differs from the bound one (behind
    /// NAT, or when listening on `0.0.0.0`).
    pub gossip_advertise: Option<SocketAddr>,
    /// Seeds to join through: `ip:port` or `host:port`. A host name is resolved to *all* its
    /// addresses (a Kubernetes headless service resolves to every pod), at join and again
    /// every [`seed_refresh`](Self::seed_refresh). Empty: the node starts a cluster of its own
    /// (others may join it).
    pub seeds: Vec<String>,
    /// How often seed names are resolved again, and resolved seeds that are not members yet
    /// are contacted.
    pub seed_refresh: Duration,
    /// The node's roles (free-form names, e.g. `"frontend"`), gossiped with its membership.
    pub roles: BTreeSet<String>,
    /// Failure detection tuning.
    pub failure_detection: FailureDetection,
    /// Which side of a partition goes down (see [`DowningStrategy`]).
    pub downing: DowningStrategy,
    /// How often the node's load (mailbox depths) is measured and gossiped.
    pub load_refresh: Duration,
    /// How long [`Cluster::join`](crate::Cluster::join) waits for a first answer from a seed
    /// before going on alone (the node keeps contacting the seeds afterwards).
    pub join_timeout: Duration,
    /// How long [`Cluster::leave`](crate::Cluster::leave) waits for the other members to
    /// acknowledge the departure before it stops gossiping anyway.
    pub leave_timeout: Duration,
}

/// Failure detection: chitchat's phi-accrual detector over gossip heartbeats, and the time a
/// member stays unreachable before it is declared down.
///
/// A node is *unreachable* once no fresh heartbeat of it has arrived for
/// `phi_threshold` × (mean interval between its heartbeats); with the defaults (200 ms
/// gossip, threshold 8) that is about 1.6 s on a quiet network. It is *down* once it has
/// been unreachable for [`down_after`](Self::down_after) without coming back. Lower
/// values detect faster and raise the risk of declaring a slow node down.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FailureDetection {
    /// Time between gossip rounds (each round: up to 3 live peers, maybe a seed, maybe a dead
    /// node). Heartbeats ride on gossip, so this sets the heartbeat rate.
    pub gossip_interval: Duration,
    /// Suspicion level at which a node is considered unreachable, in multiples of its mean
    /// heartbeat interval.
    pub phi_threshold: f64,
    /// Heartbeat intervals remembered per node.
    pub sampling_window: usize,
    /// Heartbeat intervals longer than this are not sampled (a node that was away does not
    /// teach the detector to wait longer).
    pub max_interval: Duration,
    /// How long the set of unreachable members must stay the same before the downing
    /// strategy decides (Akka's *stable-after*).
    pub down_after: Duration,
    /// How long the gossip state of a dead node is kept before it is forgotten.
    pub dead_node_grace_period: Duration,
}

impl Default for FailureDetection {
    /// 200 ms gossip, phi threshold 8, down after 1 s unreachable: a killed node is seen down
    /// in about 3 s on loopback (BENCHMARKS.md has the measured figures).
    fn default() -> Self {
        Self {
            gossip_interval: Duration::from_millis(200),
            phi_threshold: 8.0,
            sampling_window: 1_000,
            max_interval: Duration::from_secs(2),
            down_after: Duration::from_secs(1),
            dead_node_grace_period: Duration::from_secs(600),
        }
    }
}

impl FailureDetection {
    /// Sets the gossip interval.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// Sets the phi threshold.
    pub fn phi_threshold(mut self, threshold: f64) -> Self {
        self.phi_threshold = threshold;
        self
    }

    /// Sets how long a member stays unreachable before it is down.
    pub fn down_after(mut self, after: Duration) -> Self {
        self.down_after = after;
        self
    }
}

impl ClusterConfig {
    /// A node of cluster `cluster`, authenticating gossip with `secret`, listening for gossip
    /// on `gossip_listen`; no seeds, no roles, default failure detection, load refreshed every
    /// second, seeds re-resolved every 30 s, 3 s join timeout, 5 s leave timeout.
    pub fn new(
        cluster: impl Into<String>,
        secret: impl AsRef<[u8]>,
        gossip_listen: SocketAddr,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            secret: secret.as_ref().to_vec(),
            gossip_listen,
            gossip_advertise: None,
            seeds: Vec::new(),
            seed_refresh: Duration::from_secs(30),
            roles: BTreeSet::new(),
            failure_detection: FailureDetection::default(),
            downing: DowningStrategy::default(),
            load_refresh: Duration::from_secs(1),
            join_timeout: Duration::from_secs(3),
            leave_timeout: Duration::from_secs(5),
        }
    }

    /// Adds a seed (`ip:port` or `host:port`).
    pub fn seed(mut self, seed: impl Into<String>) -> Self {
        self.seeds.push(seed.into());
        self
    }

    /// Adds seeds.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.seeds.extend(seeds.into_iter().map(Into::into));
        self
    }

    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.insert(role.into());
        self
    }

    /// Sets the gossip address advertised to other nodes.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.gossip_advertise = Some(addr);
        self
    }

    /// Sets the failure detection tuning.
    pub fn failure_detection(mut self, tuning: FailureDetection) -> Self {
        self.failure_detection = tuning;
        self
    }

    /// Sets the downing strategy.
    pub fn downing(mut self, strategy: DowningStrategy) -> Self {
        self.downing = strategy;
        self
    }

    /// Sets how often the load is measured and gossiped.
    pub fn load_refresh(mut self, every: Duration) -> Self {
        self.load_refresh = every;
        self
    }

    /// Sets how often seed names are resolved again.
    pub fn seed_refresh(mut self, every: Duration) -> Self {
        self.seed_refresh = every;
        self
    }

    /// Sets how long joining waits for a first answer from a seed.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Sets how long leaving waits for acknowledgements.
    pub fn leave_timeout(mut self, timeout: Duration) -> Self {
        self.leave_timeout = timeout;
        self
    }

    /// Checks every field; the error names the first bad one and why.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |field: &'static str, reason: String| Err(ClusterError::Config { field, reason });
        if self.cluster.is_empty() {
            return bad("cluster", "must not be empty".into());
        }
        if self.cluster.len() > 255 {
            return bad("cluster", "must be at most 255 bytes".into());
        }
        if self.secret.is_empty() {
            return bad("secret", "must not be empty".into());
        }
        if let Err(reason) = self.downing.validate() {
            return bad("downing", reason);
        }
        for seed in &self.seeds {
            if let Err(reason) = split_host_port(seed) {
                return bad("seeds", format!("{seed:?}: {reason}"));
            }
        }
        for role in &self.roles {
            if role.is_empty()
                || role
                    .chars()
                    .any(|c| c == ',' || c.is_whitespace() || c.is_control())
            {
                return bad(
                    "roles",
                    format!("{role:?}: a role is a non-empty name without commas or spaces"),
                );
            }
        }
        let fd = &self.failure_detection;
        let positive = |field: &'static str, value: Duration| {
            if value.is_zero() {
                bad(field, "must be more than zero".into())
            } else {
                Ok(())
            }
        };
        positive("failure_detection.gossip_interval", fd.gossip_interval)?;
        positive("failure_detection.max_interval", fd.max_interval)?;
        positive(
            "failure_detection.dead_node_grace_period",
            fd.dead_node_grace_period,
        )?;
        positive("load_refresh", self.load_refresh)?;
        positive("seed_refresh", self.seed_refresh)?;
        if !(fd.phi_threshold.is_finite() && fd.phi_threshold > 0.0) {
            return bad(
                "failure_detection.phi_threshold",
                format!("must be a positive number, not {}", fd.phi_threshold),
            );
        }
        if fd.sampling_window < 2 {
            return bad(
                "failure_detection.sampling_window",
                "must hold at least 2 intervals".into(),
            );
        }
        if fd.dead_node_grace_period <= fd.down_after {
            return bad(
                "failure_detection.dead_node_grace_period",
                "must be longer than down_after".into(),
            );
        }
        if self.gossip_listen.ip().is_unspecified()
            && self
                .gossip_advertise
                .is_none_or(|addr| addr.ip().is_unspecified())
        {
            return bad(
                "gossip_advertise",
                format!(
                    "listening on {} needs an address other nodes can reach",
                    self.gossip_listen
                ),
            );
        }
        Ok(())
    }
}

/// Splits `host:port` (IPv6 hosts in brackets), checking the port.
pub(crate) fn split_host_port(seed: &str) -> Result<(&str, u16), String> {
    let Some((host, port)) = seed.rsplit_once(':') else {
        return Err("expected host:port".into());
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    if port == 0 {
        return Err("port 0 cannot be contacted".into());
    }
    Ok((host, port))
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("cluster", &self.cluster)
            .field("secret", &"<redacted>")
            .field("gossip_listen", &self.gossip_listen)
            .field("gossip_advertise", &self.gossip_advertise)
            .field("seeds", &self.seeds)
            .field("seed_refresh", &self.seed_refresh)
            .field("roles", &self.roles)
            .field("failure_detection", &self.failure_detection)
            .field("load_refresh", &self.load_refresh)
            .field("join_timeout", &self.join_timeout)
            .field("leave_timeout", &self.leave_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        ClusterConfig::new("c", b"secret", "127.0.0.1:0".parse().unwrap())
    }

    fn refused_field(config: ClusterConfig) -> &'static str {
        match config.validate() {
            Err(ClusterError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert!(config().validate().is_ok());
        assert!(config()
            .seed("pods.svc.cluster.local:7946")
            .seed("[::1]:7000")
            .validate()
            .is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            refused_field(ClusterConfig::new("", b"s", config().gossip_listen)),
            "cluster"
        );
        assert_eq!(
            refused_field(ClusterConfig::new("c", b"", config().gossip_listen)),
            "secret"
        );
        assert_eq!(refused_field(config().seed("no-port")), "seeds");
        assert_eq!(refused_field(config().seed("host:http")), "seeds");
        assert_eq!(refused_field(config().seed(":7000")), "seeds");
        assert_eq!(refused_field(config().role("a,b")), "roles");
        assert_eq!(refused_field(config().role("")), "roles");
        assert_eq!(
            refused_field(
                config().failure_detection(FailureDetection::default().phi_threshold(f64::NAN))
            ),
            "failure_detection.phi_threshold"
        );
        assert_eq!(
            refused_field(
                config()
                    .failure_detection(FailureDetection::default().gossip_interval(Duration::ZERO))
            ),
            "failure_detection.gossip_interval"
        );
        assert_eq!(
            refused_field(config().load_refresh(Duration::ZERO)),
            "load_refresh"
        );
        let unspecified = ClusterConfig::new("c", b"s", "0.0.0.0:7000".parse().unwrap());
        assert_eq!(refused_field(unspecified.clone()), "gossip_advertise");
        assert!(unspecified
            .advertise("10.1.2.3:7000".parse().unwrap())
            .validate()
            .is_ok());
    }

    #[test]
    fn the_secret_is_not_printed() {
        let shown = format!(
            "{:?}",
            ClusterConfig::new("c", b"hunter2", config().gossip_listen)
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

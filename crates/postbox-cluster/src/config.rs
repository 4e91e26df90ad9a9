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
    /// Shortest gossip interval: gossip rounds more often than this only burn CPU.
    pub const MIN_GOSSIP_INTERVAL: Duration = Duration::from_millis(10);
    /// Longest gossip interval.
    pub const MAX_GOSSIP_INTERVAL: Duration = Duration::from_secs(60);
    /// Lowest phi threshold: below it, one late heartbeat makes a member unreachable.
    pub const MIN_PHI_THRESHOLD: f64 = 1.0;
    /// Highest phi threshold: silence of this many mean heartbeat intervals.
    pub const MAX_PHI_THRESHOLD: f64 = 100.0;
    /// Most heartbeat intervals remembered per node.
    pub const MAX_SAMPLING_WINDOW: usize = 100_000;
    /// Longest `down_after`. Past this, a downing strategy, not a timer, should decide.
    pub const MAX_DOWN_AFTER: Duration = Duration::from_secs(300);
    /// Longest `dead_node_grace_period`.
    pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(24 * 3600);

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

    /// Sets the longest heartbeat interval that is sampled (at least twice the gossip
    /// interval).
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval;
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

    /// Longest cluster name, in bytes.
    pub const MAX_CLUSTER_NAME_LEN: usize = 255;
    /// Most roles a node can have.
    pub const MAX_ROLES: usize = 32;
    /// Longest role name, in bytes.
    pub const MAX_ROLE_LEN: usize = 64;
    /// Shortest `load_refresh` and `seed_refresh`: each round walks or resolves something, so
    /// a shorter period would only burn a core.
    pub const MIN_REFRESH: Duration = Duration::from_millis(10);
    /// Longest `load_refresh`, `seed_refresh`, `join_timeout` and `leave_timeout`.
    pub const MAX_WAIT: Duration = Duration::from_secs(3600);

    /// Checks every field; the error names the first bad one and why. Every duration and
    /// number has a range (the associated constants of [`ClusterConfig`] and
    /// [`FailureDetection`]), so nothing derived from them can overflow.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |field: &'static str, reason: String| Err(ClusterError::Config { field, reason });
        if self.cluster.is_empty() {
            return bad("cluster", "must not be empty".into());
        }
        if self.cluster.len() > Self::MAX_CLUSTER_NAME_LEN {
            return bad(
                "cluster",
                format!(
                    "must be at most {} bytes, not {}",
                    Self::MAX_CLUSTER_NAME_LEN,
                    self.cluster.len()
                ),
            );
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
        if self.roles.len() > Self::MAX_ROLES {
            return bad(
                "roles",
                format!(
                    "at most {} roles, not {}",
                    Self::MAX_ROLES,
                    self.roles.len()
                ),
            );
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
            if role.len() > Self::MAX_ROLE_LEN {
                return bad(
                    "roles",
                    format!(
                        "{role:?}: a role is at most {} bytes, not {}",
                        Self::MAX_ROLE_LEN,
                        role.len()
                    ),
                );
            }
        }
        let fd = &self.failure_detection;
        let within = |field: &'static str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                bad(
                    field,
                    format!(
                        "must be from {} to {}, not {}",
                        show(min),
                        show(max),
                        show(value)
                    ),
                )
            } else {
                Ok(())
            }
        };
        within(
            "failure_detection.gossip_interval",
            fd.gossip_interval,
            FailureDetection::MIN_GOSSIP_INTERVAL,
            FailureDetection::MAX_GOSSIP_INTERVAL,
        )?;
        if fd.max_interval < fd.gossip_interval * 2 {
            return bad(
                "failure_detection.max_interval",
                format!(
                    "must be at least twice gossip_interval ({}), or no heartbeat interval \
                     would ever be sampled; not {}",
                    show(fd.gossip_interval),
                    show(fd.max_interval)
                ),
            );
        }
        within(
            "failure_detection.max_interval",
            fd.max_interval,
            Duration::ZERO,
            FailureDetection::MAX_GOSSIP_INTERVAL * 10,
        )?;
        if !(fd.phi_threshold.is_finite()
            && (FailureDetection::MIN_PHI_THRESHOLD..=FailureDetection::MAX_PHI_THRESHOLD)
                .contains(&fd.phi_threshold))
        {
            return bad(
                "failure_detection.phi_threshold",
                format!(
                    "must be a number from {} to {}, not {}",
                    FailureDetection::MIN_PHI_THRESHOLD,
                    FailureDetection::MAX_PHI_THRESHOLD,
                    fd.phi_threshold
                ),
            );
        }
        if !(2..=FailureDetection::MAX_SAMPLING_WINDOW).contains(&fd.sampling_window) {
            return bad(
                "failure_detection.sampling_window",
                format!(
                    "must hold from 2 to {} intervals, not {}",
                    FailureDetection::MAX_SAMPLING_WINDOW,
                    fd.sampling_window
                ),
            );
        }
        within(
            "failure_detection.down_after",
            fd.down_after,
            Duration::ZERO,
            FailureDetection::MAX_DOWN_AFTER,
        )?;
        within(
            "failure_detection.dead_node_grace_period",
            fd.dead_node_grace_period,
            Duration::from_millis(1),
            FailureDetection::MAX_GRACE_PERIOD,
        )?;
        if fd.dead_node_grace_period <= fd.down_after {
            return bad(
                "failure_detection.dead_node_grace_period",
                format!(
                    "must be longer than down_after ({}), not {}",
                    show(fd.down_after),
                    show(fd.dead_node_grace_period)
                ),
            );
        }
        within(
            "load_refresh",
            self.load_refresh,
            Self::MIN_REFRESH,
            Self::MAX_WAIT,
        )?;
        within(
            "seed_refresh",
            self.seed_refresh,
            Self::MIN_REFRESH,
            Self::MAX_WAIT,
        )?;
        within(
            "join_timeout",
            self.join_timeout,
            Duration::ZERO,
            Self::MAX_WAIT,
        )?;
        within(
            "leave_timeout",
            self.leave_timeout,
            Duration::ZERO,
            Self::MAX_WAIT,
        )?;
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

/// A duration as a person would write it in a config: `200ms`, `5s`, `2m30s`.
fn show(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 && !duration.is_zero() {
        format!("{duration:?}")
    } else if millis % 1000 != 0 || millis == 0 {
        format!("{millis}ms")
    } else {
        format!("{}s", millis / 1000)
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
    fn values_out_of_their_range_are_named() {
        let fd = FailureDetection::default;
        let refused = |tuning: FailureDetection| refused_field(config().failure_detection(tuning));
        // What spins: a gossip round every microsecond.
        assert_eq!(
            refused(fd().gossip_interval(Duration::from_micros(1))),
            "failure_detection.gossip_interval"
        );
        // What overflows: durations and factors derived from these.
        assert_eq!(
            refused(fd().gossip_interval(Duration::from_secs(u64::MAX / 4))),
            "failure_detection.gossip_interval"
        );
        assert_eq!(
            refused(fd().phi_threshold(1e300)),
            "failure_detection.phi_threshold"
        );
        assert_eq!(
            refused(fd().phi_threshold(0.5)),
            "failure_detection.phi_threshold"
        );
        assert_eq!(
            refused(fd().down_after(Duration::from_secs(700))),
            "failure_detection.down_after"
        );
        // A gossip interval the detector would never sample.
        assert_eq!(
            refused(fd().gossip_interval(Duration::from_secs(5))),
            "failure_detection.max_interval"
        );
        assert!(config()
            .failure_detection(
                fd().gossip_interval(Duration::from_secs(5))
                    .max_interval(Duration::from_secs(50))
            )
            .validate()
            .is_ok());
        let huge = Duration::from_secs(u64::MAX / 4);
        assert_eq!(refused_field(config().leave_timeout(huge)), "leave_timeout");
        assert_eq!(refused_field(config().join_timeout(huge)), "join_timeout");
        assert_eq!(refused_field(config().seed_refresh(huge)), "seed_refresh");
        assert_eq!(
            refused_field(config().load_refresh(Duration::from_micros(1))),
            "load_refresh"
        );
        assert_eq!(
            refused_field(ClusterConfig::new(
                "c".repeat(300),
                b"s",
                config().gossip_listen
            )),
            "cluster"
        );
        assert_eq!(refused_field(config().role("a b")), "roles");
        assert_eq!(refused_field(config().role("r".repeat(65))), "roles");
        let many = (0..=ClusterConfig::MAX_ROLES).fold(config(), |c, i| c.role(format!("r{i}")));
        assert_eq!(refused_field(many), "roles");
        assert_eq!(refused_field(config().seed("not-an-address")), "seeds");
        // The bounds themselves are accepted.
        assert!(config()
            .failure_detection(
                fd().gossip_interval(FailureDetection::MIN_GOSSIP_INTERVAL)
                    .phi_threshold(FailureDetection::MAX_PHI_THRESHOLD)
                    .down_after(FailureDetection::MAX_DOWN_AFTER)
            )
            .leave_timeout(ClusterConfig::MAX_WAIT)
            .join_timeout(Duration::ZERO)
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

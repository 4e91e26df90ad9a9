//! A node's settings, and where they come from.
//!
//! Four layers, each overriding the one before: the built-in defaults, a TOML file
//! (`--config FILE` or `POSTBOX_CONFIG`), `POSTBOX_*` environment variables, and command-line
//! flags. Every setting has one key (`cluster.down_after`), one environment variable
//! (`POSTBOX_CLUSTER_DOWN_AFTER`) and, for most, one flag (`--down-after`): see [`SETTINGS`].
//!
//! Whatever is refused is refused with the key, where the value came from, and why; an unknown
//! key in the file or an unknown `POSTBOX_*` variable is refused too, because a misspelt
//! setting that is silently ignored is worse than none.
//!
//! The defaults run a single node on loopback: transport on 127.0.0.1:4100, gossip on
//! 127.0.0.1:4200, metrics on 127.0.0.1:9464, both built-in services, and a development
//! secret that is refused on any address that is not loopback.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The secret a node uses when none is configured. Fine on loopback; refused elsewhere.
pub const DEV_SECRET: &str = "postbox-development-secret";

/// Longest `node.name`, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Longest `node.shutdown_timeout`.
pub const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Most `node.worker_threads`.
pub const MAX_WORKER_THREADS: usize = 1024;

/// The built-in services the `postbox-node` binary can host.
pub const BUILTIN_SERVICES: [&str; 2] = ["echo", "counter"];

/// Everything a node needs to start. [`Default`] is a single node on loopback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Who the node is.
    pub node: NodeSection,
    /// The transport between nodes (TCP).
    pub remote: RemoteSection,
    /// Membership (gossip over UDP) and failure detection.
    pub cluster: ClusterSection,
    /// The metrics and health endpoint.
    pub metrics: MetricsSection,
    /// Where persistent actors keep their events, snapshots and durable states.
    pub persistence: PersistenceSection,
    /// The built-in sharded entity types (`counter`).
    pub sharding: ShardingSection,
}

/// `[sharding]`: how the built-in `counter` entities are sharded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ShardingSection {
    /// Remember the active `counter` entities in the store and start them at their shard's
    /// next home without waiting for a message (after a join, a leave, or a node's loss).
    /// Off by default; needs a store (`persistence.store` other than `none`).
    pub remember_entities: bool,
}

/// `[node]`: identity, services, shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NodeSection {
    /// A name for logs and the actor system; defaults to the transport address.
    pub name: Option<String>,
    /// The cluster's name: nodes of other clusters are refused.
    pub cluster: String,
    /// The shared secret that authenticates connections and gossip. Printed redacted.
    #[serde(serialize_with = "redacted")]
    pub secret: String,
    /// The node's roles, gossiped to the other members.
    pub roles: Vec<String>,
    /// Which built-in services this node hosts (`echo`, `counter`).
    pub services: Vec<String>,
    /// How long a graceful stop (leave, drain, stop actors) may take before the node exits
    /// anyway, reporting what was left.
    #[serde(with = "duration_text")]
    pub shutdown_timeout: Duration,
    /// The Tokio worker threads that run the node's actors (Erlang's schedulers, an Akka
    /// dispatcher's pool); unset, one per core the process may use. Read by the
    /// `postbox-node` binary, which builds the runtime; an application that builds its own
    /// node runs it on the runtime it chose.
    pub worker_threads: Option<usize>,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: None,
            cluster: "postbox".into(),
            secret: DEV_SECRET.into(),
            roles: Vec::new(),
            services: BUILTIN_SERVICES.iter().map(|s| s.to_string()).collect(),
            shutdown_timeout: Duration::from_secs(10),
            worker_threads: None,
        }
    }
}

/// `[remote]`: where the node's transport listens, and its TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RemoteSection {
    /// Where to listen (TCP). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The address other nodes should dial, when it differs from `listen`.
    pub advertise: Option<SocketAddr>,
    /// PEM file of the cluster's CA certificate; with `tls_cert` and `tls_key`, turns on
    /// mutual TLS.
    pub tls_ca: Option<PathBuf>,
    /// PEM file of this node's certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM file of this node's private key.
    pub tls_key: Option<PathBuf>,
}

impl Default for RemoteSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4100)),
            advertise: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[cluster]`: gossip, seeds, failure detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClusterSection {
    /// Where to gossip (UDP). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The gossip address other nodes should use, when it differs from `listen`.
    pub advertise: Option<SocketAddr>,
    /// Gossip addresses or DNS names (`host:port`) of nodes to join through. Empty: start a
    /// new cluster.
    pub seeds: Vec<String>,
    /// Time between gossip rounds (and so heartbeats).
    #[serde(with = "duration_text")]
    pub gossip_interval: Duration,
    /// Suspicion level at which a silent member is unreachable.
    pub phi_threshold: f64,
    /// How long the set of unreachable members must stay the same before the downing
    /// strategy decides (Akka's stable-after).
    #[serde(with = "duration_text")]
    pub down_after: Duration,
    /// Which side of a partition goes down: `keep-majority` (the default),
    /// `static-quorum:SIZE`, `keep-oldest`, `keep-oldest:down-if-alone` or `down-all`.
    #[serde(with = "downing_text")]
    pub downing: postbox_cluster::DowningStrategy,
    /// How long joining waits for a seed to answer before going on alone.
    #[serde(with = "duration_text")]
    pub join_timeout: Duration,
    /// How long a graceful leave waits for the others' acknowledgements.
    #[serde(with = "duration_text")]
    pub leave_timeout: Duration,
}

impl Default for ClusterSection {
    fn default() -> Self {
        let detection = postbox_cluster::FailureDetection::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4200)),
            advertise: None,
            seeds: Vec::new(),
            gossip_interval: detection.gossip_interval,
            phi_threshold: detection.phi_threshold,
            down_after: detection.down_after,
            downing: postbox_cluster::DowningStrategy::default(),
            join_timeout: Duration::from_secs(3),
            leave_timeout: Duration::from_secs(5),
        }
    }
}

/// `[metrics]`: the HTTP endpoint with `/metrics`, `/actors`, `/members`, health and the
/// dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsSection {
    /// Whether to serve it.
    pub enabled: bool,
    /// Where to serve it. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Most HTTP connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// How long a request head may take to arrive (also how long an idle kept-alive
    /// connection stays open); slower clients are disconnected.
    #[serde(with = "duration_text")]
    pub header_read_timeout: Duration,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: postbox_metrics::DEFAULT_ADDR,
            max_connections: postbox_metrics::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: postbox_metrics::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

impl MetricsSection {
    /// The bounds of the endpoint's HTTP clients these settings give.
    pub fn http_limits(&self) -> postbox_metrics::HttpLimits {
        postbox_metrics::HttpLimits::default()
            .max_connections(self.max_connections)
            .header_read_timeout(self.header_read_timeout)
    }
}

/// The stores `[persistence].store` can name.
pub const STORES: [&str; 4] = ["sqlite", "postgres", "memory", "none"];

/// `[persistence]`: the store persistent actors use ([`Node::persistence`](crate::Node)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PersistenceSection {
    /// `sqlite` (the default: one file, shared by every node started from the same folder),
    /// `postgres` (for nodes on several machines), `memory` (lost on exit; tests) or `none`.
    pub store: String,
    /// The SQLite file (with `store = "sqlite"`), relative to the working directory.
    pub path: PathBuf,
    /// The PostgreSQL URL (with `store = "postgres"`). Printed with its password redacted.
    #[serde(serialize_with = "redacted_url")]
    pub url: Option<String>,
    /// A snapshot every this many events, for actors that do not choose (0: on demand only).
    pub snapshot_every: u64,
}

impl Default for PersistenceSection {
    fn default() -> Self {
        Self {
            store: "sqlite".into(),
            path: PathBuf::from("postbox-data/postbox.db"),
            url: None,
            snapshot_every: 0,
        }
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag --{flag}"),
        }
    }
}

/// A setting that was refused: which, from where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's key (`cluster.down_after`), or what was wrong when no single key is.
    pub key: String,
    /// Where the value came from; `None` when the combination of settings is at fault.
    pub source: Option<Source>,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, source: Option<Source>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            source,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config: `{}`", self.key)?;
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// How a setting's text is read, for environment variables and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// `ip:port`.
    Address,
    /// A file path.
    Path,
    /// `500ms`, `5s`, `2m`.
    Duration,
    /// A decimal number.
    Number,
    /// A whole number.
    Count,
    /// `true` or `false`.
    Bool,
    /// Comma-separated text (in the environment); a repeated flag on the command line.
    List,
}

/// One setting: its key, environment variable, flag, kind and help.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// `section.field`, as in the TOML file.
    pub key: &'static str,
    /// The `--flag` that sets it, if any.
    pub flag: Option<&'static str>,
    /// How its text is read.
    pub kind: Kind,
    /// What it means, for `--help`.
    pub help: &'static str,
}

impl Setting {
    /// Its environment variable: `POSTBOX_` and the key in upper case, `.` as `_`.
    pub fn env_var(&self) -> String {
        format!("POSTBOX_{}", self.key.replace('.', "_").to_uppercase())
    }
}

const fn setting(key: &'static str, flag: &'static str, kind: Kind, help: &'static str) -> Setting {
    Setting {
        key,
        flag: Some(flag),
        kind,
        help,
    }
}

/// Every setting, in file order.
pub const SETTINGS: &[Setting] = &[
    setting("node.name", "name", Kind::Text, "a name for logs"),
    setting(
        "node.cluster",
        "cluster",
        Kind::Text,
        "the cluster's name (at most 255 bytes)",
    ),
    setting(
        "node.secret",
        "secret",
        Kind::Text,
        "the cluster's shared secret (prefer POSTBOX_NODE_SECRET: flags show in ps)",
    ),
    setting(
        "node.roles",
        "role",
        Kind::List,
        "a role of this node (repeat for several; no commas or spaces, at most 64 bytes)",
    ),
    setting(
        "node.services",
        "services",
        Kind::List,
        "built-in services to host (comma-separated; empty for none)",
    ),
    setting(
        "node.shutdown_timeout",
        "shutdown-timeout",
        Kind::Duration,
        "how long a graceful stop may take (up to 1h)",
    ),
    setting(
        "node.worker_threads",
        "worker-threads",
        Kind::Count,
        "worker threads running the actors (1 to 1024; default one per core)",
    ),
    setting(
        "remote.listen",
        "remote-listen",
        Kind::Address,
        "transport address (TCP)",
    ),
    setting(
        "remote.advertise",
        "remote-advertise",
        Kind::Address,
        "transport address other nodes dial",
    ),
    setting(
        "remote.tls_ca",
        "tls-ca",
        Kind::Path,
        "the cluster CA (PEM), for mutual TLS",
    ),
    setting(
        "remote.tls_cert",
        "tls-cert",
        Kind::Path,
        "this node's certificate (PEM)",
    ),
    setting(
        "remote.tls_key",
        "tls-key",
        Kind::Path,
        "this node's key (PEM)",
    ),
    setting(
        "cluster.listen",
        "gossip-listen",
        Kind::Address,
        "gossip address (UDP)",
    ),
    setting(
        "cluster.advertise",
        "gossip-advertise",
        Kind::Address,
        "gossip address other nodes use",
    ),
    setting(
        "cluster.seeds",
        "seed",
        Kind::List,
        "a seed's gossip address or DNS name (repeat for several)",
    ),
    setting(
        "cluster.gossip_interval",
        "gossip-interval",
        Kind::Duration,
        "time between gossip rounds (10ms to 60s)",
    ),
    setting(
        "cluster.phi_threshold",
        "phi-threshold",
        Kind::Number,
        "suspicion level at which a silent member is unreachable (1 to 100)",
    ),
    setting(
        "cluster.down_after",
        "down-after",
        Kind::Duration,
        "how long the unreachable members must stay the same before the downing strategy decides (up to 5m)",
    ),
    setting(
        "cluster.downing",
        "downing",
        Kind::Text,
        "which side of a partition goes down: keep-majority, static-quorum:SIZE, keep-oldest, keep-oldest:down-if-alone or down-all",
    ),
    setting(
        "cluster.join_timeout",
        "join-timeout",
        Kind::Duration,
        "how long joining waits for a seed (up to 1h)",
    ),
    setting(
        "cluster.leave_timeout",
        "leave-timeout",
        Kind::Duration,
        "how long leaving waits for acknowledgements (up to 1h)",
    ),
    setting(
        "metrics.enabled",
        "metrics",
        Kind::Bool,
        "serve the metrics endpoint (true or false)",
    ),
    setting(
        "metrics.listen",
        "metrics-listen",
        Kind::Address,
        "metrics endpoint address (HTTP)",
    ),
    setting(
        "metrics.max_connections",
        "metrics-max-connections",
        Kind::Count,
        "most HTTP connections at once, 1 to 65536 (more are answered 503)",
    ),
    setting(
        "metrics.header_read_timeout",
        "metrics-header-read-timeout",
        Kind::Duration,
        "how long an HTTP request head may take, and an idle connection stay (10ms to 1h)",
    ),
    setting(
        "persistence.store",
        "store",
        Kind::Text,
        "where persistent actors write: sqlite, postgres, memory or none",
    ),
    setting(
        "persistence.path",
        "store-path",
        Kind::Path,
        "the SQLite file (store = sqlite)",
    ),
    setting(
        "persistence.url",
        "store-url",
        Kind::Text,
        "the PostgreSQL URL (store = postgres; prefer POSTBOX_PERSISTENCE_URL: flags show in ps)",
    ),
    setting(
        "persistence.snapshot_every",
        "snapshot-every",
        Kind::Number,
        "a snapshot every this many events (0: on demand only)",
    ),
    setting(
        "sharding.remember_entities",
        "remember-entities",
        Kind::Bool,
        "restart active counter entities on their shard's next home without a message (true or false; needs a store)",
    ),
];

/// Environment variables that are not settings but are still ours.
const OTHER_ENV: [&str; 1] = ["POSTBOX_CONFIG"];

/// One value from the environment or a flag, as text.
#[derive(Debug, Clone)]
pub struct Override {
    /// The setting's key.
    pub key: &'static str,
    /// Its text; for a list, one item (a flag) or comma-separated items (a variable).
    pub values: Vec<String>,
    /// Where it came from.
    pub source: Source,
}

impl NodeConfig {
    /// The effective config: defaults, then the file (`file`, or `POSTBOX_CONFIG`), then the
    /// `POSTBOX_*` variables in `env`, then `flags`; then checked as a whole
    /// ([`validate`](Self::validate)), an error naming where the refused value came from.
    ///
    /// `env` is the whole environment as the OS gives it (`std::env::vars_os()`): variables
    /// that are not `POSTBOX_*` are ignored whatever their bytes, and a `POSTBOX_*` value that
    /// is not UTF-8 is refused naming its variable.
    pub fn load<K, V>(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (K, V)>,
        flags: Vec<Override>,
    ) -> Result<NodeConfig, ConfigError>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let env: Vec<(String, OsString)> = env
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .filter_map(|(name, value)| {
                // A name that is not UTF-8 keeps its `POSTBOX_` prefix through the lossy
                // conversion, so it is still refused as no setting of ours.
                let name = name.to_string_lossy().into_owned();
                name.starts_with("POSTBOX_").then_some((name, value))
            })
            .collect();
        let file = file.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(name, _)| name == "POSTBOX_CONFIG")
                .map(|(_, path)| PathBuf::from(path))
        });
        // Which layer set each key last, to say where a value refused as a whole came from.
        let mut origins: Vec<(&'static str, Source)> = Vec::new();
        let mut config = match &file {
            Some(path) => {
                let (config, keys) = NodeConfig::from_file_with_keys(path)?;
                origins.extend(
                    keys.into_iter()
                        .map(|key| (key, Source::File(path.clone()))),
                );
                config
            }
            None => NodeConfig::default(),
        };
        for (name, value) in &env {
            if OTHER_ENV.contains(&name.as_str()) {
                continue;
            }
            let Some(setting) = SETTINGS.iter().find(|s| s.env_var() == *name) else {
                return Err(ConfigError::new(
                    name.clone(),
                    Some(Source::Env(name.clone())),
                    "no such setting (POSTBOX_* variables name settings: see `postbox-node config --help`)",
                ));
            };
            let source = Source::Env(name.clone());
            let Some(value) = value.to_str() else {
                return Err(ConfigError::new(
                    setting.key,
                    Some(source),
                    format!("the value is not valid UTF-8 ({})", value.to_string_lossy()),
                ));
            };
            let values = match setting.kind {
                Kind::List => value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => vec![value.to_owned()],
            };
            config.set(&Override {
                key: setting.key,
                values,
                source: source.clone(),
            })?;
            origins.push((setting.key, source));
        }
        // Repeated list flags add up to one list, which replaces the lower layers' list.
        let mut merged: Vec<Override> = Vec::new();
        for flag in flags {
            match merged.iter_mut().find(|m| m.key == flag.key) {
                Some(existing) => existing.values.extend(flag.values),
                None => merged.push(flag),
            }
        }
        for flag in &merged {
            config.set(flag)?;
            origins.push((flag.key, flag.source.clone()));
        }
        config.validate().map_err(|mut error| {
            if error.source.is_none() {
                error.source = origins
                    .iter()
                    .rev()
                    .find(|(key, _)| *key == error.key)
                    .map(|(_, source)| source.clone());
            }
            error
        })?;
        Ok(config)
    }

    /// Reads a TOML file over the defaults (without the whole-config checks of
    /// [`validate`](Self::validate)).
    pub fn from_file(path: &Path) -> Result<NodeConfig, ConfigError> {
        NodeConfig::from_file_with_keys(path).map(|(config, _)| config)
    }

    /// [`from_file`](Self::from_file), and the keys of the settings the file sets.
    fn from_file_with_keys(path: &Path) -> Result<(NodeConfig, Vec<&'static str>), ConfigError> {
        let source = Some(Source::File(path.to_path_buf()));
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("--config", source.clone(), format!("cannot read: {e}"))
        })?;
        let config = NodeConfig::from_toml(&text).map_err(|mut error| {
            error.source = source;
            error
        })?;
        // The text parsed as a config, so it parses as a table.
        let table: toml::Table = toml::from_str(&text).unwrap_or_default();
        let keys = SETTINGS
            .iter()
            .filter(|setting| {
                let (section, field) = setting.key.split_once('.').unwrap_or(("", setting.key));
                table
                    .get(section)
                    .and_then(|section| section.get(field))
                    .is_some()
            })
            .map(|setting| setting.key)
            .collect();
        Ok((config, keys))
    }

    /// Reads TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|error| {
            let key = toml_key(text, error.span()).unwrap_or_else(|| "file".to_owned());
            ConfigError::new(key, None, error.message().to_owned())
        })
    }

    /// Sets one value given as text.
    pub fn set(&mut self, value: &Override) -> Result<(), ConfigError> {
        let Some(setting) = SETTINGS.iter().find(|s| s.key == value.key) else {
            return Err(ConfigError::new(
                value.key,
                Some(value.source.clone()),
                "no such setting",
            ));
        };
        let fail = |reason: String| ConfigError::new(value.key, Some(value.source.clone()), reason);
        let one = || -> Result<&str, ConfigError> {
            match value.values.as_slice() {
                [single] => Ok(single.trim()),
                _ => Err(fail("expected one value".into())),
            }
        };
        let list = || value.values.clone();
        let address = || -> Result<SocketAddr, ConfigError> {
            let text = one()?;
            text.parse()
                .map_err(|_| fail(format!("`{text}` is not an ip:port address")))
        };
        let duration = || -> Result<Duration, ConfigError> { parse_duration(one()?).map_err(fail) };
        let count = || -> Result<usize, ConfigError> {
            let text = one()?;
            text.parse()
                .map_err(|_| fail(format!("`{text}` is not a whole number")))
        };
        match setting.key {
            "node.name" => self.node.name = Some(one()?.to_owned()),
            "node.cluster" => self.node.cluster = one()?.to_owned(),
            "node.secret" => self.node.secret = one()?.to_owned(),
            "node.roles" => self.node.roles = list(),
            "node.services" => self.node.services = list(),
            "node.shutdown_timeout" => self.node.shutdown_timeout = duration()?,
            "node.worker_threads" => self.node.worker_threads = Some(count()?),
            "remote.listen" => self.remote.listen = address()?,
            "remote.advertise" => self.remote.advertise = Some(address()?),
            "remote.tls_ca" => self.remote.tls_ca = Some(one()?.into()),
            "remote.tls_cert" => self.remote.tls_cert = Some(one()?.into()),
            "remote.tls_key" => self.remote.tls_key = Some(one()?.into()),
            "cluster.listen" => self.cluster.listen = address()?,
            "cluster.advertise" => self.cluster.advertise = Some(address()?),
            "cluster.seeds" => self.cluster.seeds = list(),
            "cluster.gossip_interval" => self.cluster.gossip_interval = duration()?,
            "cluster.phi_threshold" => {
                let text = one()?;
                self.cluster.phi_threshold = text
                    .parse()
                    .map_err(|_| fail(format!("`{text}` is not a number")))?;
            }
            "cluster.down_after" => self.cluster.down_after = duration()?,
            "cluster.downing" => self.cluster.downing = one()?.parse().map_err(fail)?,
            "cluster.join_timeout" => self.cluster.join_timeout = duration()?,
            "cluster.leave_timeout" => self.cluster.leave_timeout = duration()?,
            "metrics.enabled" => {
                self.metrics.enabled = match one()? {
                    "true" => true,
                    "false" => false,
                    other => return Err(fail(format!("`{other}` is not true or false"))),
                }
            }
            "metrics.listen" => self.metrics.listen = address()?,
            "metrics.max_connections" => self.metrics.max_connections = count()?,
            "metrics.header_read_timeout" => self.metrics.header_read_timeout = duration()?,
            "persistence.store" => self.persistence.store = one()?.to_owned(),
            "persistence.path" => self.persistence.path = one()?.into(),
            "persistence.url" => self.persistence.url = Some(one()?.to_owned()),
            "persistence.snapshot_every" => {
                let text = one()?;
                self.persistence.snapshot_every = text
                    .parse()
                    .map_err(|_| fail(format!("`{text}` is not a whole number of events")))?;
            }
            "sharding.remember_entities" => {
                self.sharding.remember_entities = match one()? {
                    "true" => true,
                    "false" => false,
                    other => return Err(fail(format!("`{other}` is not true or false"))),
                }
            }
            other => return Err(fail(format!("`{other}` cannot be set here"))),
        }
        Ok(())
    }

    /// The checks that concern the config as a whole.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, reason: String| Err(ConfigError::new(key, None, reason));
        if self.node.cluster.trim().is_empty() {
            return fail("node.cluster", "must not be empty".into());
        }
        if self.node.secret.is_empty() {
            return fail("node.secret", "must not be empty".into());
        }
        if self.node.secret == DEV_SECRET {
            let exposed = [
                Some(self.remote.listen),
                self.remote.advertise,
                Some(self.cluster.listen),
                self.cluster.advertise,
            ]
            .into_iter()
            .flatten()
            .find(|addr| !addr.ip().is_loopback());
            if let Some(addr) = exposed {
                return fail(
                    "node.secret",
                    format!(
                        "the built-in development secret is only allowed on loopback addresses, \
                         and {addr} is not one; set a secret (POSTBOX_NODE_SECRET)"
                    ),
                );
            }
        }
        for service in &self.node.services {
            if !BUILTIN_SERVICES.contains(&service.as_str()) {
                return fail(
                    "node.services",
                    format!(
                        "unknown service `{service}` (built-in services: {})",
                        BUILTIN_SERVICES.join(", ")
                    ),
                );
            }
        }
        if let Some(name) = &self.node.name {
            if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
                return fail(
                    "node.name",
                    format!(
                        "must be 1 to {MAX_NAME_LEN} bytes without control characters, \
                         not {name:?}"
                    ),
                );
            }
        }
        if self.node.shutdown_timeout.is_zero() || self.node.shutdown_timeout > MAX_SHUTDOWN_TIMEOUT
        {
            return fail(
                "node.shutdown_timeout",
                format!(
                    "must be longer than zero and at most {}, not {}",
                    format_duration(MAX_SHUTDOWN_TIMEOUT),
                    format_duration(self.node.shutdown_timeout)
                ),
            );
        }
        if let Some(threads) = self.node.worker_threads {
            if !(1..=MAX_WORKER_THREADS).contains(&threads) {
                return fail(
                    "node.worker_threads",
                    format!("must be from 1 to {MAX_WORKER_THREADS}, not {threads}"),
                );
            }
        }
        let tls = [
            &self.remote.tls_ca,
            &self.remote.tls_cert,
            &self.remote.tls_key,
        ];
        let given = tls.iter().filter(|path| path.is_some()).count();
        if given != 0 && given != 3 {
            return fail(
                "remote.tls_ca",
                "TLS needs all three of tls_ca, tls_cert and tls_key".into(),
            );
        }
        if self.remote.listen.port() != 0 && self.remote.listen == self.cluster.listen {
            // TCP and UDP could share a port number, but one setting copied into the other is
            // almost always a mistake.
            return fail(
                "cluster.listen",
                format!("the same address as remote.listen ({})", self.remote.listen),
            );
        }
        if self.metrics.enabled
            && self.metrics.listen.port() != 0
            && self.metrics.listen == self.remote.listen
        {
            return fail(
                "metrics.listen",
                format!("the same address as remote.listen ({})", self.remote.listen),
            );
        }
        // The cluster's own rules, on the config the node will join with, so that nothing
        // is refused later by `Cluster::join` under a name the user never wrote.
        if let Err(postbox_cluster::ClusterError::Config { field, reason }) =
            self.cluster_config().validate()
        {
            return fail(cluster_field_key(field), reason);
        }
        if let Err(postbox_metrics::MetricsError::InvalidLimit { setting, reason }) =
            self.metrics.http_limits().validate()
        {
            let key = match setting {
                "max_connections" => "metrics.max_connections",
                _ => "metrics.header_read_timeout",
            };
            return fail(key, reason);
        }
        self.validate_persistence()
    }

    fn validate_persistence(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, reason: String| Err(ConfigError::new(key, None, reason));
        let p = &self.persistence;
        if !STORES.contains(&p.store.as_str()) {
            return fail(
                "persistence.store",
                format!(
                    "unknown store `{}` (stores: {})",
                    p.store,
                    STORES.join(", ")
                ),
            );
        }
        match (p.store.as_str(), &p.url) {
            ("postgres", None) => {
                return fail(
                    "persistence.url",
                    "store = postgres needs a URL (POSTBOX_PERSISTENCE_URL)".into(),
                )
            }
            ("postgres", Some(url)) if url.trim().is_empty() => {
                return fail("persistence.url", "must not be empty".into())
            }
            (store, Some(_)) if store != "postgres" => {
                return fail(
                    "persistence.url",
                    format!("is only read with store = postgres, and the store is {store}"),
                )
            }
            _ => {}
        }
        if p.store == "sqlite" && p.path.as_os_str().is_empty() {
            return fail("persistence.path", "must not be empty".into());
        }
        if self.sharding.remember_entities && p.store == "none" {
            return fail(
                "sharding.remember_entities",
                "needs a store to remember entities in, and persistence.store is none".into(),
            );
        }
        Ok(())
    }

    /// The cluster membership settings these give (what [`Node`](crate::Node) joins with).
    /// The heartbeat intervals the failure detector samples grow with the gossip interval
    /// (ten of them, 2 s at least).
    pub fn cluster_config(&self) -> postbox_cluster::ClusterConfig {
        let cluster = &self.cluster;
        let detection = postbox_cluster::FailureDetection::default()
            .gossip_interval(cluster.gossip_interval)
            .max_interval(
                cluster
                    .gossip_interval
                    .saturating_mul(10)
                    .max(Duration::from_secs(2)),
            )
            .phi_threshold(cluster.phi_threshold)
            .down_after(cluster.down_after);
        let mut config = postbox_cluster::ClusterConfig::new(
            self.node.cluster.clone(),
            self.node.secret.as_bytes(),
            cluster.listen,
        )
        .seeds(cluster.seeds.clone())
        .failure_detection(detection)
        .join_timeout(cluster.join_timeout)
        .leave_timeout(cluster.leave_timeout)
        .downing(cluster.downing.clone());
        for role in &self.node.roles {
            config = config.role(role.clone());
        }
        if let Some(advertise) = cluster.advertise {
            config = config.advertise(advertise);
        }
        config
    }

    /// The effective config as TOML, the secret redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the config: {e}\n"))
    }

    /// The transport's mutual TLS, if `remote.tls_*` are set: the PEM files read and checked.
    pub fn tls(&self) -> Result<Option<postbox_remote::TlsConfig>, postbox_remote::TlsConfigError> {
        match (
            &self.remote.tls_ca,
            &self.remote.tls_cert,
            &self.remote.tls_key,
        ) {
            (Some(ca), Some(cert), Some(key)) => {
                postbox_remote::TlsConfig::from_files(ca, cert, key).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The address other nodes (and the command-line client) dial.
    pub fn remote_address(&self) -> SocketAddr {
        self.remote.advertise.unwrap_or(self.remote.listen)
    }
}

/// The node setting behind a field of [`ClusterConfig`](postbox_cluster::ClusterConfig), as
/// [`NodeConfig::cluster_config`] fills it.
fn cluster_field_key(field: &str) -> &'static str {
    match field {
        "cluster" => "node.cluster",
        "secret" => "node.secret",
        "roles" => "node.roles",
        "seeds" => "cluster.seeds",
        "gossip_listen" => "cluster.listen",
        "gossip_advertise" => "cluster.advertise",
        // The node derives the sampled interval from the gossip interval.
        "failure_detection.gossip_interval" | "failure_detection.max_interval" => {
            "cluster.gossip_interval"
        }
        "failure_detection.phi_threshold" => "cluster.phi_threshold",
        // The node keeps the default grace period, so only down_after can collide with it.
        "failure_detection.down_after" | "failure_detection.dead_node_grace_period" => {
            "cluster.down_after"
        }
        "join_timeout" => "cluster.join_timeout",
        "leave_timeout" => "cluster.leave_timeout",
        "downing" => "cluster.downing",
        _ => "cluster",
    }
}

/// Reads `500ms`, `5s`, `1.5s`, `2m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration (a number and a unit: 500ms, 5s, 2m, 1h)");
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Prints a duration the way [`parse_duration`] reads it.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1000 != 0 || millis == 0 {
        format!("{millis}ms")
    } else if millis % 60_000 != 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{}m", millis / 60_000)
    }
}

mod downing_text {
    use super::*;
    use postbox_cluster::DowningStrategy;

    pub(super) fn serialize<S: Serializer>(d: &DowningStrategy, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<DowningStrategy, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod duration_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A PostgreSQL URL with its password hidden: `postgresql://user:<redacted>@host/db`, or
/// `password=<redacted>` in the key=value form.
fn redacted_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let Some(url) = url else {
        return s.serialize_none();
    };
    let shown = if let Some((scheme, rest)) = url.split_once("://") {
        match rest.split_once('@') {
            Some((user, host)) if user.contains(':') => {
                let name = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{name}:<redacted>@{host}")
            }
            _ => url.clone(),
        }
    } else {
        url.split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=<redacted>".to_owned(),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    s.serialize_some(&shown)
}

fn redacted<S: Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    if secret == DEV_SECRET {
        s.serialize_str(secret)
    } else {
        s.serialize_str("<redacted>")
    }
}

/// The dotted key whose value (or name) spans `span` in `text`, for error messages.
fn toml_key(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let span = span?;
    let mut section = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        }
        let end = offset + line.len();
        if span.start < end {
            let key = trimmed.split('=').next().map(str::trim).unwrap_or_default();
            if trimmed.starts_with('[') || key.is_empty() {
                return Some(section).filter(|s| !s.is_empty());
            }
            return Some(if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            });
        }
        offset = end;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn flag(key: &'static str, value: &str) -> Override {
        Override {
            key,
            values: vec![value.into()],
            source: Source::Flag(key.into()),
        }
    }

    #[test]
    fn defaults_are_a_valid_single_node_on_loopback() {
        let config = NodeConfig::load(None, env(&[]), vec![]).unwrap();
        assert_eq!(config, NodeConfig::default());
        assert!(config.remote.listen.ip().is_loopback());
        assert!(config.cluster.listen.ip().is_loopback());
        assert!(config.metrics.enabled && config.metrics.listen.ip().is_loopback());
        assert!(config.cluster.seeds.is_empty());
        assert_eq!(config.node.services, ["echo", "counter"]);
    }

    #[test]
    fn layers_override_in_order_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("postbox-node-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "[node]\ncluster = \"from-file\"\nroles = [\"a\"]\n[cluster]\ndown_after = \"3s\"\nseeds = [\"f:1\"]\n",
        )
        .unwrap();
        let config = NodeConfig::load(
            Some(&path),
            env(&[
                ("POSTBOX_CLUSTER_DOWN_AFTER", "4s"),
                ("POSTBOX_CLUSTER_SEEDS", "e:1, e:2"),
                ("POSTBOX_NODE_ROLES", "env"),
                ("HOME", "/ignored"),
            ]),
            vec![
                flag("cluster.down_after", "500ms"),
                flag("node.roles", "x"),
                flag("node.roles", "y"),
            ],
        )
        .unwrap();
        assert_eq!(config.node.cluster, "from-file");
        assert_eq!(config.cluster.down_after, Duration::from_millis(500));
        assert_eq!(config.cluster.seeds, ["e:1", "e:2"]);
        assert_eq!(config.node.roles, ["x", "y"]);
        // The file is found through POSTBOX_CONFIG as well.
        let via_env = NodeConfig::load(
            None,
            env(&[("POSTBOX_CONFIG", path.to_str().unwrap())]),
            vec![],
        )
        .unwrap();
        assert_eq!(via_env.cluster.down_after, Duration::from_secs(3));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_name_the_setting_and_the_source() {
        let error = NodeConfig::load(None, env(&[("POSTBOX_CLUSTER_DOWN_AFTER", "soon")]), vec![])
            .unwrap_err();
        assert_eq!(error.key, "cluster.down_after");
        assert_eq!(
            error.source,
            Some(Source::Env("POSTBOX_CLUSTER_DOWN_AFTER".into()))
        );
        assert!(
            error.to_string().contains("`soon` is not a duration"),
            "{error}"
        );

        let error =
            NodeConfig::load(None, env(&[]), vec![flag("remote.listen", "localhost")]).unwrap_err();
        assert_eq!(error.key, "remote.listen");
        assert!(
            error.to_string().contains("not an ip:port address"),
            "{error}"
        );

        let error =
            NodeConfig::load(None, env(&[("POSTBOX_CLUSTR_SEEDS", "x:1")]), vec![]).unwrap_err();
        assert_eq!(error.key, "POSTBOX_CLUSTR_SEEDS");
        assert!(error.reason.contains("no such setting"));

        let error = NodeConfig::from_toml("[cluster]\ndown_after = \"later\"\n").unwrap_err();
        assert_eq!(error.key, "cluster.down_after");
        assert!(error.reason.contains("not a duration"), "{error}");

        let error = NodeConfig::from_toml("[cluster]\ndowning = \"keep-minority\"\n").unwrap_err();
        assert_eq!(error.key, "cluster.downing");
        assert!(error.reason.contains("not a downing strategy"), "{error}");
        let error = NodeConfig::load(
            None,
            env(&[("POSTBOX_CLUSTER_DOWNING", "static-quorum:0")]),
            vec![],
        )
        .unwrap_err();
        assert_eq!(error.key, "cluster.downing");
        assert!(error.reason.contains("static quorum of 0"), "{error}");
        let config =
            NodeConfig::from_toml("[cluster]\ndowning = \"keep-oldest:down-if-alone\"\n").unwrap();
        assert_eq!(
            config.cluster.downing,
            postbox_cluster::DowningStrategy::KeepOldest {
                down_if_alone: true
            }
        );
        assert!(config
            .to_toml()
            .contains("downing = \"keep-oldest:down-if-alone\""));

        let error = NodeConfig::from_toml("[cluster]\nseedz = []\n").unwrap_err();
        assert_eq!(error.key, "cluster.seedz");
        assert!(error.reason.contains("unknown field `seedz`"), "{error}");

        let error = NodeConfig::from_toml("[metrics]\nenabled = \"yes\"\n").unwrap_err();
        assert_eq!(error.key, "metrics.enabled");
    }

    #[test]
    fn whole_config_checks() {
        let refused = |flags: Vec<Override>| NodeConfig::load(None, env(&[]), flags).unwrap_err();
        let error = refused(vec![flag("remote.listen", "0.0.0.0:4100")]);
        assert_eq!(error.key, "node.secret");
        assert!(error.reason.contains("only allowed on loopback"), "{error}");
        // With a real secret the same address is fine.
        NodeConfig::load(
            None,
            env(&[("POSTBOX_NODE_SECRET", "s3cret")]),
            vec![flag("remote.listen", "0.0.0.0:4100")],
        )
        .unwrap();

        let error = refused(vec![
            flag("node.services", "echo"),
            flag("node.services", "kv"),
        ]);
        assert_eq!(error.key, "node.services");
        assert!(error.reason.contains("unknown service `kv`"), "{error}");

        let error = refused(vec![flag("remote.tls_ca", "ca.pem")]);
        assert!(error.reason.contains("all three"), "{error}");

        let error = refused(vec![flag("cluster.listen", "127.0.0.1:4100")]);
        assert_eq!(error.key, "cluster.listen");

        let error = refused(vec![flag("cluster.phi_threshold", "-1")]);
        assert_eq!(error.key, "cluster.phi_threshold");

        let error = refused(vec![flag("node.cluster", " ")]);
        assert_eq!(error.key, "node.cluster");
    }

    #[test]
    fn values_that_would_panic_or_fail_later_are_refused_naming_the_setting() {
        let huge = "4000000000000000h";
        let cases: &[(&str, &str, &str)] = &[
            // Finding 11: durations and numbers that overflowed at start or at SIGTERM.
            ("cluster.gossip_interval", huge, "from 10ms to 60s"),
            ("cluster.leave_timeout", huge, "from 0ms to 3600s"),
            ("cluster.join_timeout", huge, "from 0ms to 3600s"),
            ("node.shutdown_timeout", huge, "at most 60m"),
            ("cluster.phi_threshold", "1e300", "from 1 to 100"),
            ("cluster.down_after", huge, "from 0ms to 300s"),
            ("metrics.header_read_timeout", huge, "must be from"),
            // Finding 12: what only Cluster::join used to refuse, or nobody.
            ("node.roles", "a b", "without commas or spaces"),
            ("cluster.seeds", "not-an-address", "expected host:port"),
            ("cluster.down_after", "700s", "from 0ms to 300s"),
            ("cluster.gossip_interval", "0.001ms", "from 10ms to 60s"),
            ("cluster.gossip_interval", "0ms", "from 10ms to 60s"),
            ("cluster.phi_threshold", "0.1", "from 1 to 100"),
            ("metrics.max_connections", "0", "from 1 to 65536"),
            ("node.worker_threads", "0", "from 1 to 1024"),
            ("node.worker_threads", "1025", "from 1 to 1024"),
            ("node.worker_threads", "-1", "not a whole number"),
            ("node.name", "a\nb", "without control characters"),
        ];
        for &(key, value, reason) in cases {
            let error = NodeConfig::load(None, env(&[]), vec![flag(key, value)])
                .expect_err(&format!("{key} = {value} accepted"));
            assert_eq!(error.key, key, "{key} = {value}: {error}");
            assert_eq!(error.source, Some(Source::Flag(key.into())), "{error}");
            assert!(error.reason.contains(reason), "{key} = {value}: {error}");
        }
        let long_name = "c".repeat(300);
        let error =
            NodeConfig::load(None, env(&[]), vec![flag("node.cluster", &long_name)]).unwrap_err();
        assert_eq!(error.key, "node.cluster");
        assert!(error.reason.contains("at most 255 bytes"), "{error}");
        // Listening on every interface needs an address the others can reach.
        let error = NodeConfig::load(
            None,
            env(&[("POSTBOX_NODE_SECRET", "s3cret")]),
            vec![flag("cluster.listen", "0.0.0.0:4200")],
        )
        .unwrap_err();
        assert_eq!(error.key, "cluster.advertise");
        // A long gossip interval is fine: the sampled heartbeat interval grows with it.
        let config =
            NodeConfig::load(None, env(&[]), vec![flag("cluster.gossip_interval", "30s")]).unwrap();
        assert!(config.cluster_config().validate().is_ok());
    }

    #[test]
    fn a_refused_value_from_the_environment_or_the_file_names_where_it_came_from() {
        let error = NodeConfig::load(None, env(&[("POSTBOX_CLUSTER_DOWN_AFTER", "700s")]), vec![])
            .unwrap_err();
        assert_eq!(error.key, "cluster.down_after");
        assert_eq!(
            error.source,
            Some(Source::Env("POSTBOX_CLUSTER_DOWN_AFTER".into()))
        );
        let dir = std::env::temp_dir().join(format!("postbox-node-bounds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(&path, "[node]\nroles = [\"a b\"]\n").unwrap();
        let error = NodeConfig::load(Some(&path), env(&[]), vec![]).unwrap_err();
        assert_eq!(error.key, "node.roles");
        assert_eq!(error.source, Some(Source::File(path.clone())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_environment_may_hold_anything_that_is_not_ours() {
        use std::os::unix::ffi::OsStringExt;
        let junk = || OsString::from_vec(vec![b'x', 0xff, 0xfe]);
        // Not ours, whatever the bytes: ignored.
        let config = NodeConfig::load(
            None,
            vec![
                (OsString::from("LANG"), junk()),
                (junk(), OsString::from("1")),
                (OsString::from("POSTBOX_NODE_CLUSTER"), OsString::from("c")),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(config.node.cluster, "c");
        // Ours but not UTF-8: refused, named.
        let error = NodeConfig::load(
            None,
            vec![(OsString::from("POSTBOX_NODE_NAME"), junk())],
            vec![],
        )
        .unwrap_err();
        assert_eq!(error.key, "node.name");
        assert_eq!(error.source, Some(Source::Env("POSTBOX_NODE_NAME".into())));
        assert!(error.reason.contains("not valid UTF-8"), "{error}");
        // A name of ours with bytes that are not UTF-8 is no setting.
        let mut name = b"POSTBOX_NODE_".to_vec();
        name.push(0xff);
        let error = NodeConfig::load(
            None,
            vec![(OsString::from_vec(name), OsString::from("x"))],
            vec![],
        )
        .unwrap_err();
        assert!(error.reason.contains("no such setting"), "{error}");
        // A config file whose path is not UTF-8 is still a path.
        let error = NodeConfig::load(
            None,
            vec![(OsString::from("POSTBOX_CONFIG"), junk())],
            vec![],
        )
        .unwrap_err();
        assert_eq!(error.key, "--config");
        assert!(error.reason.contains("cannot read"), "{error}");
    }

    #[test]
    fn printed_config_reads_back_and_hides_the_secret() {
        let mut config = NodeConfig::default();
        config.node.secret = "hunter2".into();
        config.cluster.seeds = vec!["seed-0.postbox:4200".into()];
        config.cluster.down_after = Duration::from_millis(1500);
        let text = config.to_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("secret = \"<redacted>\""), "{text}");
        let mut back = NodeConfig::from_toml(&text).unwrap();
        back.node.secret = "hunter2".into();
        assert_eq!(back, config);
    }

    #[test]
    fn remember_entities_is_a_checked_switch_that_needs_a_store() {
        let load = |flags: Vec<Override>| NodeConfig::load(None, env(&[]), flags);
        assert!(!load(vec![]).unwrap().sharding.remember_entities);
        let config = load(vec![flag("sharding.remember_entities", "true")]).unwrap();
        assert!(config.sharding.remember_entities);
        assert!(config
            .to_toml()
            .contains("[sharding]\nremember_entities = true"));
        let error = load(vec![flag("sharding.remember_entities", "yes")]).unwrap_err();
        assert_eq!(error.key, "sharding.remember_entities");
        assert!(error.reason.contains("not true or false"), "{error}");
        let error = load(vec![
            flag("sharding.remember_entities", "true"),
            flag("persistence.store", "none"),
        ])
        .unwrap_err();
        assert_eq!(error.key, "sharding.remember_entities");
        assert!(error.reason.contains("needs a store"), "{error}");
        let from_env = NodeConfig::load(
            None,
            env(&[("POSTBOX_SHARDING_REMEMBER_ENTITIES", "true")]),
            vec![],
        )
        .unwrap();
        assert!(from_env.sharding.remember_entities);
    }

    #[test]
    fn persistence_settings_are_checked_by_name() {
        let refused = |flags: Vec<Override>| NodeConfig::load(None, env(&[]), flags).unwrap_err();
        let error = refused(vec![flag("persistence.store", "mongo")]);
        assert_eq!(error.key, "persistence.store");
        assert!(error.reason.contains("unknown store `mongo`"), "{error}");
        let error = refused(vec![flag("persistence.store", "postgres")]);
        assert_eq!(error.key, "persistence.url");
        assert!(error.reason.contains("needs a URL"), "{error}");
        let error = refused(vec![flag("persistence.url", "host=db")]);
        assert_eq!(error.key, "persistence.url");
        assert!(
            error.reason.contains("only read with store = postgres"),
            "{error}"
        );
        let error = refused(vec![flag("persistence.path", "")]);
        assert_eq!(error.key, "persistence.path");
        let error = NodeConfig::load(
            None,
            env(&[("POSTBOX_PERSISTENCE_SNAPSHOT_EVERY", "often")]),
            vec![],
        )
        .unwrap_err();
        assert_eq!(error.key, "persistence.snapshot_every");
        assert!(error.reason.contains("not a whole number"), "{error}");
        let config = NodeConfig::load(
            None,
            env(&[
                ("POSTBOX_PERSISTENCE_STORE", "postgres"),
                ("POSTBOX_PERSISTENCE_URL", "postgresql://app:pw@db:5432/app"),
            ]),
            vec![flag("persistence.snapshot_every", "500")],
        )
        .unwrap();
        assert_eq!(config.persistence.snapshot_every, 500);
        let text = config.to_toml();
        assert!(!text.contains(":pw@"), "{text}");
        assert!(
            text.contains("postgresql://app:<redacted>@db:5432/app"),
            "{text}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        for bad in ["", "5", "s", "5 sec", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [
            Duration::from_millis(1500),
            Duration::from_secs(5),
            Duration::from_secs(120),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn every_setting_can_be_set_from_text() {
        let samples = |kind: Kind| match kind {
            Kind::Text => "x",
            Kind::Address => "127.0.0.1:1",
            Kind::Path => "/tmp/x.pem",
            Kind::Duration => "7s",
            Kind::Number => "3",
            Kind::Count => "3",
            Kind::Bool => "false",
            Kind::List => "echo",
        };
        for setting in SETTINGS {
            let mut config = NodeConfig::default();
            config
                .set(&flag(
                    setting.key,
                    match setting.key {
                        // Text, but one of a few words.
                        "cluster.downing" => "down-all",
                        // A switch that is off by default.
                        "sharding.remember_entities" => "true",
                        _ => samples(setting.kind),
                    },
                ))
                .unwrap_or_else(|e| panic!("{}: {e}", setting.key));
            assert_ne!(
                config,
                NodeConfig::default(),
                "{} changed nothing",
                setting.key
            );
        }
    }

    #[test]
    fn the_kubernetes_manifest_sets_only_real_settings() {
        let manifest = include_str!("../../../deploy/kubernetes/postbox.yaml");
        let vars: Vec<(String, String)> = manifest
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- name: POSTBOX_"))
            .map(|rest| (format!("POSTBOX_{rest}"), "x".to_owned()))
            .collect();
        assert!(vars.len() >= 8, "{vars:?}");
        for (var, _) in &vars {
            assert!(
                SETTINGS.iter().any(|s| s.env_var() == *var),
                "{var} in deploy/kubernetes/postbox.yaml is not a setting"
            );
        }
    }
}

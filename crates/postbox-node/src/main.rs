//! `postbox-node`: run a postbox cluster node, or talk to one. See the crate docs.

use clap::{Args, Parser, Subcommand};
use postbox_node::admin::{ActorsReport, MemberEntry, ServiceEntry};
use postbox_node::config::{Override, Source, SETTINGS};
use postbox_node::{Client, Node, NodeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A postbox cluster node.
///
/// Settings come from the defaults, a TOML file (--config or POSTBOX_CONFIG), POSTBOX_*
/// environment variables (POSTBOX_CLUSTER_SEEDS=a:1,b:2 ...) and the flags below, each
/// overriding the one before. `postbox-node config` prints the result.
#[derive(Debug, Parser)]
#[command(name = "postbox-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node until SIGTERM or Ctrl-C (then leave the cluster, drain, exit 0).
    Start,
    /// Print the effective config as TOML (the secret redacted).
    Config,
    /// List the members of the cluster, as a running node sees them.
    Members(Query),
    /// List a running node's deepest mailboxes.
    Actors {
        #[command(flatten)]
        query: Query,
        /// How many actors to list.
        #[arg(long, default_value_t = 20)]
        top: usize,
    },
    /// List the services a running node knows and the members offering them.
    Services(Query),
    /// Send a JSON message to a service, through a running node, and print the reply.
    Send {
        #[command(flatten)]
        query: Query,
        /// The service: echo, counter, or one your node offers.
        service: String,
        /// The message, as JSON: '{"message": "hi"}' for echo, '{"key": "a", "add": 1}' for
        /// counter.
        body: String,
        /// How long to wait for the reply.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Debug, Args)]
struct Query {
    /// The node to ask (its transport address); default: remote.advertise or remote.listen.
    #[arg(long)]
    node: Option<SocketAddr>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Flags that override settings (each also a POSTBOX_* variable and a config-file key).
#[derive(Debug, Args)]
struct Settings {
    /// TOML config file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// node.name: a name for logs.
    #[arg(long, global = true)]
    name: Option<String>,
    /// node.cluster: the cluster's name.
    #[arg(long, global = true)]
    cluster: Option<String>,
    /// node.secret: the cluster's shared secret (prefer POSTBOX_NODE_SECRET: flags show in ps).
    #[arg(long, global = true)]
    secret: Option<String>,
    /// node.roles: a role of this node (repeat for several).
    #[arg(long, global = true)]
    role: Vec<String>,
    /// node.services: built-in services to host (comma-separated; empty for none).
    #[arg(long, global = true, value_delimiter = ',', num_args = 0..)]
    services: Option<Vec<String>>,
    /// node.shutdown_timeout: how long a graceful stop may take.
    #[arg(long, global = true)]
    shutdown_timeout: Option<String>,
    /// remote.listen: transport address (TCP).
    #[arg(long, global = true)]
    remote_listen: Option<String>,
    /// remote.advertise: transport address other nodes dial.
    #[arg(long, global = true)]
    remote_advertise: Option<String>,
    /// remote.tls_ca: the cluster CA (PEM), for mutual TLS.
    #[arg(long, global = true)]
    tls_ca: Option<String>,
    /// remote.tls_cert: this node's certificate (PEM).
    #[arg(long, global = true)]
    tls_cert: Option<String>,
    /// remote.tls_key: this node's key (PEM).
    #[arg(long, global = true)]
    tls_key: Option<String>,
    /// cluster.listen: gossip address (UDP).
    #[arg(long, global = true)]
    gossip_listen: Option<String>,
    /// cluster.advertise: gossip address other nodes use.
    #[arg(long, global = true)]
    gossip_advertise: Option<String>,
    /// cluster.seeds: a seed's gossip address or DNS name (repeat for several).
    #[arg(long, global = true)]
    seed: Vec<String>,
    /// cluster.gossip_interval.
    #[arg(long, global = true)]
    gossip_interval: Option<String>,
    /// cluster.phi_threshold.
    #[arg(long, global = true)]
    phi_threshold: Option<String>,
    /// cluster.down_after: how long a member stays unreachable before it is down.
    #[arg(long, global = true)]
    down_after: Option<String>,
    /// cluster.join_timeout.
    #[arg(long, global = true)]
    join_timeout: Option<String>,
    /// cluster.leave_timeout.
    #[arg(long, global = true)]
    leave_timeout: Option<String>,
    /// metrics.enabled: serve the metrics endpoint (true or false).
    #[arg(long, global = true)]
    metrics: Option<String>,
    /// metrics.listen: metrics endpoint address (HTTP).
    #[arg(long, global = true)]
    metrics_listen: Option<String>,
}

impl Settings {
    /// The flags given, as overrides of the settings they name.
    fn overrides(&self) -> Vec<Override> {
        let lists: [(&str, &[String]); 3] = [
            ("role", &self.role),
            ("seed", &self.seed),
            ("services", self.services.as_deref().unwrap_or_default()),
        ];
        let single: [(&str, &Option<String>); 18] = [
            ("name", &self.name),
            ("cluster", &self.cluster),
            ("secret", &self.secret),
            ("shutdown-timeout", &self.shutdown_timeout),
            ("remote-listen", &self.remote_listen),
            ("remote-advertise", &self.remote_advertise),
            ("tls-ca", &self.tls_ca),
            ("tls-cert", &self.tls_cert),
            ("tls-key", &self.tls_key),
            ("gossip-listen", &self.gossip_listen),
            ("gossip-advertise", &self.gossip_advertise),
            ("gossip-interval", &self.gossip_interval),
            ("phi-threshold", &self.phi_threshold),
            ("down-after", &self.down_after),
            ("join-timeout", &self.join_timeout),
            ("leave-timeout", &self.leave_timeout),
            ("metrics", &self.metrics),
            ("metrics-listen", &self.metrics_listen),
        ];
        let mut overrides = Vec::new();
        for setting in SETTINGS {
            let Some(flag) = setting.flag else { continue };
            let values: Vec<String> =
                if let Some((_, list)) = lists.iter().find(|(f, _)| *f == flag) {
                    // `--services ""` (or a bare `--services`) means none.
                    if flag == "services" && self.services.is_some() {
                        list.iter().filter(|s| !s.is_empty()).cloned().collect()
                    } else if list.is_empty() {
                        continue;
                    } else {
                        list.to_vec()
                    }
                } else if let Some((_, Some(value))) = single.iter().find(|(f, _)| *f == flag) {
                    vec![value.clone()]
                } else {
                    continue;
                };
            overrides.push(Override {
                key: setting.key,
                values,
                source: Source::Flag(flag.to_owned()),
            });
        }
        overrides
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    postbox_node::config::parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match NodeConfig::load(
        cli.settings.config.as_deref(),
        std::env::vars(),
        cli.settings.overrides(),
    ) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("postbox-node: {error}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config = cli.command {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("postbox-node: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Start => start(config).await,
            command => client(config, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("postbox-node: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: NodeConfig) -> Result<(), String> {
    init_logging();
    let node = Node::builder()
        .config(config)
        .builtin_services()
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let metrics = node
        .metrics_addr()
        .map(|addr| format!("http://{addr}/"))
        .unwrap_or_else(|| "off".into());
    let me = node.cluster().node().clone();
    tracing::info!(
        node = %me,
        gossip = %node.cluster().gossip_addr(),
        %metrics,
        services = ?node.config().node.services,
        "node started"
    );
    // One machine-readable line on stdout, for scripts and tests.
    println!(
        "READY remote={} gossip={} metrics={} node_id={:016x} incarnation={}",
        me.addr,
        node.cluster().gossip_addr(),
        node.metrics_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        me.node_id,
        me.incarnation
    );
    let report = node.run_until_signal().await;
    tracing::info!(
        completed = report.completed,
        left_cleanly = report.left_cleanly,
        elapsed = ?report.elapsed,
        aborted = report.actors.as_ref().map(|r| r.actors_aborted).unwrap_or_default(),
        dropped = report.actors.as_ref().map(|r| r.messages_dropped).unwrap_or_default(),
        "node stopped"
    );
    if report.completed {
        Ok(())
    } else {
        Err(format!(
            "the graceful stop did not finish within {:?}",
            report.elapsed
        ))
    }
}

async fn client(config: NodeConfig, command: Command) -> Result<(), String> {
    let query = match &command {
        Command::Members(query) | Command::Services(query) => query,
        Command::Actors { query, .. } | Command::Send { query, .. } => query,
        Command::Start | Command::Config => return Ok(()),
    };
    let node = query.node.unwrap_or_else(|| config.remote_address());
    let json = query.json;
    let client = Client::connect(&config, node)
        .await
        .map_err(|e| e.to_string())?;
    let result = run_query(&client, command, json).await;
    client.close().await;
    result.map_err(|e| e.to_string())
}

async fn run_query(
    client: &Client,
    command: Command,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Members(_) => {
            let members = client.members().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&members)?);
            } else {
                print_members(&members);
            }
        }
        Command::Actors { top, .. } => {
            let report = client.actors(top).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_actors(&report);
            }
        }
        Command::Services(_) => {
            let services = client.services().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&services)?);
            } else {
                print_services(&services);
            }
        }
        Command::Send {
            service,
            body,
            timeout,
            ..
        } => {
            let invoked = client.send(&service, &body, timeout).await?;
            let reply: serde_json::Value = serde_json::from_str(&invoked.reply)?;
            if json {
                let both = serde_json::json!({ "node": invoked.node, "reply": reply });
                println!("{}", serde_json::to_string_pretty(&both)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&reply)?);
                eprintln!("(answered by {})", invoked.node);
            }
        }
        Command::Start | Command::Config => {}
    }
    Ok(())
}

fn print_members(members: &[MemberEntry]) {
    println!(
        "{:<22} {:<16} {:>20} {:<12} {:>7} {:>7}  roles",
        "ADDRESS", "NODE ID", "INCARNATION", "STATUS", "ACTORS", "DEPTH"
    );
    for m in members {
        println!(
            "{:<22} {:<16} {:>20} {:<12} {:>7} {:>7}  {}{}",
            m.address,
            m.node_id,
            m.incarnation,
            m.status,
            m.actors,
            m.total_depth,
            m.roles.join(","),
            if m.is_self { "  (this node)" } else { "" }
        );
    }
}

fn print_actors(report: &ActorsReport) {
    println!(
        "{} actors, {} messages waiting; deepest {}:",
        report.total,
        report.total_depth,
        report.actors.len()
    );
    println!(
        "{:>7} {:>10} {:>8}  {:<40} TYPE",
        "DEPTH", "PROCESSED", "RESTARTS", "PATH"
    );
    for a in &report.actors {
        println!(
            "{:>7} {:>10} {:>8}  {:<40} {}",
            a.depth, a.processed, a.restarts, a.path, a.actor_type
        );
    }
}

fn print_services(services: &[ServiceEntry]) {
    println!("{:<16} NODES", "SERVICE");
    for s in services {
        let nodes = if s.nodes.is_empty() {
            "(none up)".to_owned()
        } else {
            s.nodes.join(", ")
        };
        println!("{:<16} {}", s.name, nodes);
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

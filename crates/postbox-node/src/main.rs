//! `postbox-node`: run a postbox cluster node, or talk to one. See the crate docs.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use postbox_node::admin::{ActorsReport, MemberEntry, ServiceEntry};
use postbox_node::config::{Kind, Override, Source, SETTINGS};
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
    /// TOML config file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
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

/// The command line: [`Cli`] plus one global flag per setting in [`SETTINGS`], so that
/// flags, variables and file keys cannot drift apart.
fn command_line() -> clap::Command {
    SETTINGS.iter().fold(Cli::command(), |command, setting| {
        let Some(flag) = setting.flag else {
            return command;
        };
        let arg = Arg::new(flag)
            .long(flag)
            .global(true)
            .help(format!("{}: {}", setting.key, setting.help));
        let arg = match setting.kind {
            // `--services ""` (or a bare `--services`) means none.
            Kind::List if flag == "services" => arg.value_delimiter(',').num_args(0..),
            Kind::List => arg.action(ArgAction::Append),
            _ => arg.action(ArgAction::Set),
        };
        command.arg(arg)
    })
}

/// The settings given as flags, as overrides.
fn overrides(matches: &ArgMatches) -> Vec<Override> {
    SETTINGS
        .iter()
        .filter_map(|setting| {
            let flag = setting.flag?;
            if matches.value_source(flag) != Some(ValueSource::CommandLine) {
                return None;
            }
            let values = matches
                .get_many::<String>(flag)
                .into_iter()
                .flatten()
                .filter(|value| setting.kind != Kind::List || !value.is_empty())
                .cloned()
                .collect();
            Some(Override {
                key: setting.key,
                values,
                source: Source::Flag(flag.to_owned()),
            })
        })
        .collect()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    postbox_node::config::parse_duration(text)
}

fn main() -> ExitCode {
    let matches = command_line().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let config =
        match NodeConfig::load(cli.config.as_deref(), std::env::vars(), overrides(&matches)) {
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
        persistence = ?node.persistence(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn given(args: &[&str]) -> Vec<(&'static str, Vec<String>)> {
        let matches = command_line()
            .try_get_matches_from(std::iter::once("postbox-node").chain(args.iter().copied()))
            .unwrap();
        overrides(&matches)
            .into_iter()
            .map(|o| (o.key, o.values))
            .collect()
    }

    #[test]
    fn every_setting_has_a_flag_and_flags_become_overrides() {
        command_line().debug_assert();
        assert!(SETTINGS.iter().all(|s| s.flag.is_some()));
        assert_eq!(given(&["start"]), vec![]);
        assert_eq!(
            given(&[
                "--down-after",
                "2s",
                "start",
                "--seed",
                "a:1",
                "--seed",
                "b:2",
                "--role",
                "x"
            ]),
            vec![
                ("node.roles", vec!["x".to_owned()]),
                ("cluster.seeds", vec!["a:1".to_owned(), "b:2".to_owned()]),
                ("cluster.down_after", vec!["2s".to_owned()]),
            ]
        );
        assert_eq!(
            given(&["start", "--services", ""]),
            vec![("node.services", vec![])]
        );
        assert_eq!(
            given(&["start", "--services", "echo,counter"]),
            vec![(
                "node.services",
                vec!["echo".to_owned(), "counter".to_owned()]
            )]
        );
    }
}

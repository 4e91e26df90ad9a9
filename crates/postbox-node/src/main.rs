//! `postbox-node`: run a postbox cluster node, or talk to one. See the crate docs.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use postbox_node::admin::{ActorsReport, MemberEntry, ServiceEntry, ShardsEntry};
use postbox_node::client::{MAX_BODY, MAX_TIMEOUT};
use postbox_node::config::{Kind, Override, Source, SETTINGS};
use postbox_node::{Client, ClientError, Node, NodeConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// List the shards and active entities of each sharded entity type on every up member.
    Shards(Query),
    /// Send a JSON message to a service, through a running node, and print the reply.
    ///
    /// The body is the BODY argument, or read from --body-file (`-` for stdin); either way at
    /// most 4 MiB of JSON, checked before anything is sent.
    Send {
        #[command(flatten)]
        query: Query,
        /// The service: echo, counter, or one your node offers.
        service: String,
        /// The message, as JSON: '{"message": "hi"}' for echo, '{"key": "a", "add": 1}' for
        /// counter.
        #[arg(required_unless_present = "body_file")]
        body: Option<String>,
        /// Read the message from this file instead (`-`: standard input), for bodies too
        /// large for a command line.
        #[arg(long, value_name = "PATH", conflicts_with = "body")]
        body_file: Option<PathBuf>,
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
    /// How long the whole command may take: connecting, the handshake, the request and the
    /// reply (for send, the service's work too). Up to 1h.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    timeout: Duration,
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

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = postbox_node::config::parse_duration(text)?;
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(format!(
            "must be longer than zero and at most {}",
            postbox_node::config::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(timeout)
}

/// Where the body of `send` came from, for error messages.
fn body_source(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// The body of `send`: the argument, or the file (`-`: stdin), read up to one byte past
/// [`MAX_BODY`] so that a huge input costs no more than that; it must be UTF-8 JSON.
fn read_body(inline: Option<String>, file: Option<&Path>) -> Result<String, String> {
    use std::io::Read;
    let (bytes, from) = match (inline, file) {
        (Some(body), _) => (body.into_bytes(), "the BODY argument".to_owned()),
        (None, Some(path)) => {
            let from = body_source(path);
            let limit = MAX_BODY as u64 + 1;
            let mut bytes = Vec::new();
            let read = if path == Path::new("-") {
                std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
            } else {
                std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
            };
            read.map_err(|e| format!("cannot read the body from {from}: {e}"))?;
            (bytes, from)
        }
        (None, None) => return Err("no body: give BODY or --body-file".to_owned()),
    };
    if bytes.len() > MAX_BODY {
        return Err(format!(
            "the body from {from} is larger than {MAX_BODY} bytes (4 MiB), the most `send` takes"
        ));
    }
    let body = String::from_utf8(bytes)
        .map_err(|e| format!("the body from {from} is not UTF-8 text: {e}"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&body)
        .map_err(|e| format!("the body from {from} is not JSON: {e}"))?;
    Ok(body)
}

fn main() -> ExitCode {
    let matches = command_line().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // `vars_os`: `vars` panics on any variable that is not UTF-8, ours or not.
    let config = match NodeConfig::load(
        cli.config.as_deref(),
        std::env::vars_os(),
        overrides(&matches),
    ) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("postbox-node: {error}");
            return ExitCode::from(2);
        }
    };
    let mut command = cli.command;
    match &mut command {
        Command::Config => {
            print!("{}", config.to_toml());
            return ExitCode::SUCCESS;
        }
        // Read (and refused, if need be) before anything is started or sent.
        Command::Send {
            body, body_file, ..
        } => match read_body(body.take(), body_file.as_deref()) {
            Ok(read) => *body = Some(read),
            Err(error) => {
                eprintln!("postbox-node: {error}");
                return ExitCode::from(2);
            }
        },
        _ => {}
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.node.worker_threads {
        // In range: `NodeConfig::load` refused anything else (tokio panics on 0).
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("postbox-node: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Start => start(config).await,
            command => client(config, command).await.map(|()| Stopped::Done),
        }
    });
    // Whatever a failed command left running (a dial to an address that never answers) must
    // not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(Stopped::Done) => ExitCode::SUCCESS,
        Ok(Stopped::Downed) => ExitCode::from(EXIT_DOWNED),
        Err(error) => {
            eprintln!("postbox-node: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a node that the cluster declared down (restart it: it comes back as a
/// new incarnation).
const EXIT_DOWNED: u8 = 3;

/// How a command ended without an error.
enum Stopped {
    Done,
    /// The cluster declared this node down.
    Downed,
}

async fn start(config: NodeConfig) -> Result<Stopped, String> {
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
    // Listen for SIGTERM/SIGINT before announcing READY: a signal that came between READY and
    // the listener would otherwise kill the process instead of stopping it gracefully.
    let mut signals = StopSignals::install();
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
    let report = node.run_until(signals.wait()).await;
    tracing::info!(
        completed = report.completed,
        left_cleanly = report.left_cleanly,
        elapsed = ?report.elapsed,
        aborted = report.actors.as_ref().map(|r| r.actors_aborted).unwrap_or_default(),
        dropped = report.actors.as_ref().map(|r| r.messages_dropped).unwrap_or_default(),
        "node stopped"
    );
    if let Some(why) = &report.downed {
        let message = format!(
            "this node was declared down by the cluster ({why}); exiting with code {EXIT_DOWNED} so that it restarts as a new incarnation"
        );
        tracing::error!("{message}");
        eprintln!("postbox-node: {message}");
        return Ok(Stopped::Downed);
    }
    if report.completed {
        Ok(Stopped::Done)
    } else {
        Err(format!(
            "the graceful stop did not finish within {:?}",
            report.elapsed
        ))
    }
}

async fn client(config: NodeConfig, command: Command) -> Result<(), String> {
    let query = match &command {
        Command::Members(query) | Command::Services(query) | Command::Shards(query) => query,
        Command::Actors { query, .. } | Command::Send { query, .. } => query,
        Command::Start | Command::Config => return Ok(()),
    };
    let node = query.node.unwrap_or_else(|| config.remote_address());
    let json = query.json;
    // One deadline for the whole command; each step gets what is left of it.
    let deadline = Deadline::after(query.timeout);
    let client = Client::connect(&config, node, deadline.left())
        .await
        .map_err(|e| deadline.explain(e).to_string())?;
    let result = run_query(&client, command, json, deadline).await;
    client.close().await;
    result.map_err(|e| e.to_string())
}

/// When a client command must be done by.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        // `timeout` is at most MAX_TIMEOUT (parse_timeout), so this cannot overflow.
        Self {
            at: tokio::time::Instant::now() + timeout,
            timeout,
        }
    }

    fn left(self) -> Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// A step's timeout reported as the command's: the user gave `--timeout`, not what was
    /// left of it when the step began.
    fn explain(self, error: ClientError) -> ClientError {
        match error {
            ClientError::TimedOut { node, during, .. } => ClientError::TimedOut {
                node,
                after: self.timeout,
                during,
            },
            other => other,
        }
    }
}

async fn run_query(
    client: &Client,
    command: Command,
    json: bool,
    deadline: Deadline,
) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Members(_) => {
            let members = client
                .members(deadline.left())
                .await
                .map_err(|e| deadline.explain(e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&members)?);
            } else {
                print_members(&members);
            }
        }
        Command::Actors { top, .. } => {
            let report = client
                .actors(top, deadline.left())
                .await
                .map_err(|e| deadline.explain(e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_actors(&report);
            }
        }
        Command::Services(_) => {
            let services = client
                .services(deadline.left())
                .await
                .map_err(|e| deadline.explain(e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&services)?);
            } else {
                print_services(&services);
            }
        }
        Command::Shards(_) => {
            let shards = client
                .shards(deadline.left())
                .await
                .map_err(|e| deadline.explain(e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shards)?);
            } else {
                print_shards(&shards);
            }
        }
        Command::Send { service, body, .. } => {
            let body = body.unwrap_or_default();
            let invoked = client
                .send(&service, &body, deadline.left())
                .await
                .map_err(|e| deadline.explain(e))?;
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

fn print_shards(shards: &[ShardsEntry]) {
    println!(
        "{:<16} {:<22} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "TYPE", "NODE", "SHARDS", "ALLOCATED", "ENTITIES", "BUFFERED", "HANDOFFS"
    );
    for s in shards {
        println!(
            "{:<16} {:<22} {:>7} {:>9} {:>9} {:>9} {:>9}",
            s.entity_type,
            s.node,
            s.shards.len(),
            s.allocated,
            s.entities,
            s.buffered,
            s.handoffs
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

/// The signals that stop a node gracefully, listened for from the moment they are installed.
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(listener) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}; it will not stop the node gracefully");
                    None
                }
            };
            Self {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for one, and says which.
    async fn wait(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(listener: &mut Option<tokio::signal::unix::Signal>) {
                match listener {
                    Some(listener) => {
                        listener.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => "SIGTERM",
                _ = next(&mut self.interrupt) => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
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

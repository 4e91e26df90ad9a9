//! Workspace-level scenarios: whole-system behaviour that crosses module, crate and process
//! boundaries. The tests live in `scenarios/`; this library holds what they share with the
//! peer process they start (`bin/remote_peer.rs`).

#![allow(missing_docs)] // test fixtures

use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message, Remote, RemoteConfig, TlsConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const CLUSTER: &str = "test-cluster";
pub const SECRET: &[u8] = b"correct horse battery staple";

/// Keeps a log of what it was told, answers asks about it.
#[derive(Default)]
pub struct Journal {
    log: Vec<u64>,
}

impl Actor for Journal {}

#[derive(Serialize, Deserialize, Debug)]
pub struct Record(pub u64);
impl Message for Record {
    type Reply = ();
    remote_message!("test.Record");
}
impl Handler<Record> for Journal {
    async fn handle(&mut self, Record(n): Record, _: &mut Context<Self>) {
        self.log.push(n);
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub struct ReadLog;
impl Message for ReadLog {
    type Reply = Vec<u64>;
    remote_message!("test.ReadLog");
}
impl Handler<ReadLog> for Journal {
    async fn handle(&mut self, _: ReadLog, _: &mut Context<Self>) -> Vec<u64> {
        self.log.clone()
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Echo(pub String);
impl Message for Echo {
    type Reply = String;
    remote_message!("test.Echo");
}
impl Handler<Echo> for Journal {
    async fn handle(&mut self, Echo(s): Echo, _: &mut Context<Self>) -> String {
        s
    }
}

/// Never answers in time: sleeps for the given milliseconds.
/// Answers with that many bytes of text.
#[derive(Serialize, Deserialize, Debug)]
pub struct Pad(pub usize);
impl Message for Pad {
    type Reply = String;
    remote_message!("test.Pad");
}
impl Handler<Pad> for Journal {
    async fn handle(&mut self, Pad(n): Pad, _: &mut Context<Self>) -> String {
        "x".repeat(n)
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Stall(pub u64);
impl Message for Stall {
    type Reply = ();
    remote_message!("test.Stall");
}
impl Handler<Stall> for Journal {
    async fn handle(&mut self, Stall(ms): Stall, _: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Quit;
impl Message for Quit {
    type Reply = ();
    remote_message!("test.Quit");
}
impl Handler<Quit> for Journal {
    async fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Registered as a remote message type, but `Journal` does not expose it to other nodes.
#[derive(Serialize, Deserialize, Debug)]
pub struct Secret;
impl Message for Secret {
    type Reply = ();
    remote_message!("test.Secret");
}
impl Handler<Secret> for Journal {
    async fn handle(&mut self, _: Secret, _: &mut Context<Self>) {}
}

/// Has no codec: it cannot leave its node.
#[derive(Debug)]
pub struct LocalOnly;
impl Message for LocalOnly {
    type Reply = ();
}
impl Handler<LocalOnly> for Journal {
    async fn handle(&mut self, _: LocalOnly, _: &mut Context<Self>) {}
}

/// Carries a ref: the journal tells `to` a `Record(n)` (wherever `to` lives).
#[derive(Serialize, Deserialize, Debug)]
pub struct Forward {
    pub to: ActorRef<Journal>,
    pub n: u64,
}
impl Message for Forward {
    type Reply = ();
    remote_message!("test.Forward");
}
impl Handler<Forward> for Journal {
    async fn handle(&mut self, Forward { to, n }: Forward, _: &mut Context<Self>) {
        let _ = to.tell(Record(n)).await;
    }
}

/// Answers with the ref it was given: a ref in a message and in a reply.
#[derive(Serialize, Deserialize, Debug)]
pub struct Reflect(pub ActorRef<Journal>);
impl Message for Reflect {
    type Reply = ActorRef<Journal>;
    remote_message!("test.Reflect");
}
impl Handler<Reflect> for Journal {
    async fn handle(&mut self, Reflect(to): Reflect, _: &mut Context<Self>) -> ActorRef<Journal> {
        to
    }
}

remote_actor!(Journal: Record, ReadLog, Echo, Pad, Stall, Quit, Forward, Reflect);

pub fn config(secret: &[u8]) -> RemoteConfig {
    RemoteConfig::new("127.0.0.1:0".parse().expect("address"), CLUSTER, secret)
        .reconnect(3, Duration::from_millis(20))
        .handshake_timeout(Duration::from_secs(2))
}

/// Mutual TLS from the test fixtures: `"node"` has a certificate from the cluster CA,
/// `"rogue-node"` one from an unrelated CA (both trust only their own CA).
pub fn tls(node: &str) -> TlsConfig {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let ca = if node == "rogue-node" {
        "rogue-ca.pem"
    } else {
        "ca.pem"
    };
    TlsConfig::from_files(
        dir.join(ca),
        dir.join(format!("{node}.pem")),
        dir.join(format!("{node}-key.pem")),
    )
    .expect("TLS fixtures")
}

/// A node hosting a `Journal` registered as "journal" (transient: `Quit` ends it for good).
pub async fn host() -> (ActorSystem, Remote, ActorRef<Journal>) {
    host_with(config(SECRET)).await
}

/// [`host`] with the given transport settings.
pub async fn host_with(config: RemoteConfig) -> (ActorSystem, Remote, ActorRef<Journal>) {
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config).await.expect("listen");
    remote.expose::<Journal>();
    let journal = system
        .spawn(Props::new(Journal::default).restart(Restart::Transient))
        .expect("spawn");
    system
        .registry()
        .register("journal", &journal)
        .expect("register");
    (system, remote, journal)
}

/// A node with nothing on it.
pub async fn client() -> (ActorSystem, Remote) {
    client_with(config(SECRET)).await
}

/// [`client`] with the given transport settings.
pub async fn client_with(config: RemoteConfig) -> (ActorSystem, Remote) {
    let system = ActorSystem::new();
    let remote = Remote::start(&system, config).await.expect("listen");
    (system, remote)
}

/// Reports the `Terminated` it receives for `target`, which it watches from its start.
pub struct Watcher {
    target: ActorRef<Journal>,
    report: tokio::sync::mpsc::UnboundedSender<Terminated>,
    watching: std::sync::Arc<tokio::sync::Notify>,
}

impl Actor for Watcher {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.watch(&self.target);
        self.watching.notify_one();
        Ok(())
    }
}

impl Handler<Terminated> for Watcher {
    async fn handle(&mut self, terminated: Terminated, _: &mut Context<Self>) {
        let _ = self.report.send(terminated);
    }
}

/// Spawns a [`Watcher`] of `target` in `system` and returns once it has asked to watch (so a
/// message sent to `target` afterwards reaches it after the watch); its reports arrive on the
/// returned channel.
pub async fn watch(
    system: &ActorSystem,
    target: &ActorRef<Journal>,
) -> tokio::sync::mpsc::UnboundedReceiver<Terminated> {
    let (report, reports) = tokio::sync::mpsc::unbounded_channel();
    let watching = std::sync::Arc::new(tokio::sync::Notify::new());
    let target = target.clone();
    let notify = watching.clone();
    system
        .spawn(Props::new(move || Watcher {
            target: target.clone(),
            report: report.clone(),
            watching: notify.clone(),
        }))
        .expect("spawn the watcher");
    watching.notified().await;
    reports
}

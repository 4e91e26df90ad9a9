//! The actors the transport's tests talk to: [`Journal`], a log that answers questions about
//! itself (the two-node scenarios), and [`Prey`], the target of the hostile peers.
//!
//! One file for two packages: it is a module of postbox-remote's integration tests, and the
//! workspace's `postbox-tests` library compiles it too (`#[path]`), so that the peer
//! processes of the multi-process scenarios host the very same actors, with the same tags.
//! Hence `pub` items and no `crate::` paths.

use postbox::prelude::*;
use postbox_remote::{remote_actor, remote_message, Remote};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Keeps a log of what it was told, answers asks about it.
#[derive(Default)]
pub struct Journal {
    log: Vec<u64>,
    /// What `Hold` waits for a permit of, if set.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Journal {
    /// A journal whose `Hold` handler waits for a permit of `gate`.
    pub fn gated(gate: Arc<tokio::sync::Semaphore>) -> Self {
        Self {
            log: Vec::new(),
            gate: Some(gate),
        }
    }
}

/// Keeps the journal busy until its gate gives it a permit (at once if it has no gate).
#[derive(Serialize, Deserialize, Debug)]
pub struct Hold;
impl Message for Hold {
    type Reply = ();
    remote_message!("test.Hold");
}
impl Handler<Hold> for Journal {
    async fn handle(&mut self, _: Hold, _: &mut Context<Self>) {
        if let Some(gate) = &self.gate {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
    }
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

/// Never answers in time: sleeps for the given milliseconds.
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

remote_actor!(Journal: Record, ReadLog, Echo, Pad, Stall, Quit, Forward, Reflect, Hold);

/// Spawns a `Journal` in `system` (transient: `Quit` ends it for good), registers it as
/// "journal" and exposes the type to other nodes through `remote`.
pub fn serve_journal(system: &ActorSystem, remote: &Remote) -> ActorRef<Journal> {
    remote.expose::<Journal>();
    let journal = system
        .spawn(Props::new(Journal::default).restart(Restart::Transient))
        .expect("spawn");
    system
        .registry()
        .register("journal", &journal)
        .expect("register");
    journal
}

/// An ask `journal` will not answer for a minute, running on its own task.
pub fn stalled_ask(journal: &ActorRef<Journal>) -> JoinHandle<Result<(), AskError>> {
    let journal = journal.clone();
    tokio::spawn(async move {
        journal
            .ask(Stall(60_000))
            .timeout(Duration::from_secs(60))
            .await
    })
}

/// The actor the hostile peers aim at, registered as `"prey"`.
#[derive(Default)]
pub struct Prey;

impl Actor for Prey {}

/// Answers with `n` bytes.
#[derive(Serialize, Deserialize, Debug)]
pub struct Blob(pub usize);
impl Message for Blob {
    type Reply = Vec<u8>;
    remote_message!("hostile.Blob");
}
impl Handler<Blob> for Prey {
    async fn handle(&mut self, Blob(n): Blob, _: &mut Context<Self>) -> Vec<u8> {
        vec![7; n]
    }
}

/// Answers with its number.
#[derive(Serialize, Deserialize, Debug)]
pub struct Ping(pub u64);
impl Message for Ping {
    type Reply = u64;
    remote_message!("hostile.Ping");
}
impl Handler<Ping> for Prey {
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> u64 {
        n
    }
}

/// Panics in its handler.
#[derive(Serialize, Deserialize, Debug)]
pub struct Boom;
impl Message for Boom {
    type Reply = ();
    remote_message!("hostile.Boom");
}
impl Handler<Boom> for Prey {
    async fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
        panic!("boom (on purpose)");
    }
}

/// Stops the actor (for good: it is transient).
#[derive(Serialize, Deserialize, Debug)]
pub struct Vanish;
impl Message for Vanish {
    type Reply = ();
    remote_message!("hostile.Vanish");
}
impl Handler<Vanish> for Prey {
    async fn handle(&mut self, _: Vanish, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Takes `ms` milliseconds.
#[derive(Serialize, Deserialize, Debug)]
pub struct Slow(pub u64);
impl Message for Slow {
    type Reply = u64;
    remote_message!("hostile.Slow");
}
impl Handler<Slow> for Prey {
    async fn handle(&mut self, Slow(ms): Slow, _: &mut Context<Self>) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

/// Takes bytes, answers how many.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Swallow(pub Vec<u8>);
impl Message for Swallow {
    type Reply = usize;
    remote_message!("hostile.Swallow");
}
impl Handler<Swallow> for Prey {
    async fn handle(&mut self, Swallow(bytes): Swallow, _: &mut Context<Self>) -> usize {
        bytes.len()
    }
}

remote_actor!(Prey: Blob, Ping, Boom, Vanish, Slow, Swallow);

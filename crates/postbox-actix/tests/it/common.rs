//! Actix actors and postbox actors the tests share; bounded waits and probes come from the
//! testkit.

use actix::prelude::*;
use postbox::{ActorRef, AskError};
use postbox_actix::{bridge_message, remote_actix, SendFromActix};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::oneshot;

pub(crate) use postbox_testkit::{until, within, TestProbe, PATIENCE};

/// One actix System thread for the whole test binary (as an application would have one).
pub(crate) fn actix() -> &'static postbox_actix::ActixRuntime {
    static RUNTIME: OnceLock<postbox_actix::ActixRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| postbox_actix::ActixRuntime::new("actix-it").expect("actix System"))
}

// ---- an actix actor, as an application would already have it ------------------------------

/// Adds numbers, logs them in arrival order, can be held up and stopped.
#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) total: u64,
    pub(crate) log: Vec<u64>,
    /// Replies of `Wait`s, sent on `Release`.
    pub(crate) waiting: Vec<oneshot::Sender<()>>,
    /// Told when the actor stops (`stopped` hook).
    pub(crate) on_stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Actor for Counter {
    type Context = actix::Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(tx) = self.on_stop.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Add(pub(crate) u64);
impl actix::Message for Add {
    type Result = u64;
}
impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, Add(n): Add, _: &mut Self::Context) -> u64 {
        self.total += n;
        self.log.push(n);
        self.total
    }
}
bridge_message!(Add, "actix-it.Add");

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ReadLog;
impl actix::Message for ReadLog {
    type Result = Vec<u64>;
}
impl Handler<ReadLog> for Counter {
    type Result = Vec<u64>;
    fn handle(&mut self, _: ReadLog, _: &mut Self::Context) -> Vec<u64> {
        self.log.clone()
    }
}
bridge_message!(ReadLog, "actix-it.ReadLog");

/// Answered only once a `Release` comes; the actor keeps handling other messages meanwhile
/// (a `ResponseActFuture` runs beside the mailbox).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Wait;
impl actix::Message for Wait {
    type Result = &'static str;
}
impl Handler<Wait> for Counter {
    type Result = ResponseActFuture<Self, &'static str>;
    fn handle(&mut self, _: Wait, _: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        Box::pin(
            async move {
                let _ = rx.await;
                "released"
            }
            .into_actor(self),
        )
    }
}
impl postbox::Message for Wait {
    type Reply = &'static str;
}

/// Answers every `Wait` so far; replies how many.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Release;
impl actix::Message for Release {
    type Result = usize;
}
impl Handler<Release> for Counter {
    type Result = usize;
    fn handle(&mut self, _: Release, _: &mut Self::Context) -> usize {
        let n = self.waiting.len();
        for tx in self.waiting.drain(..) {
            let _ = tx.send(());
        }
        n
    }
}
bridge_message!(Release, "actix-it.Release");

/// Stops the actix actor.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Halt;
impl actix::Message for Halt {
    type Result = ();
}
impl Handler<Halt> for Counter {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
bridge_message!(Halt, "actix-it.Halt");

remote_actix!(Counter: Add, ReadLog, Release, Halt);

// ---- postbox actors ------------------------------------------------------------------------

/// Records what it is sent; answers with how many it has.
#[derive(Default)]
pub(crate) struct Ledger {
    pub(crate) entries: Vec<u64>,
}
impl postbox::Actor for Ledger {}

pub(crate) struct Record(pub(crate) u64);
impl postbox::Message for Record {
    type Reply = usize;
}
impl postbox::Handler<Record> for Ledger {
    async fn handle(&mut self, Record(n): Record, _: &mut postbox::Context<Self>) -> usize {
        self.entries.push(n);
        self.entries.len()
    }
}

pub(crate) struct Entries;
impl postbox::Message for Entries {
    type Reply = Vec<u64>;
}
impl postbox::Handler<Entries> for Ledger {
    async fn handle(&mut self, _: Entries, _: &mut postbox::Context<Self>) -> Vec<u64> {
        self.entries.clone()
    }
}

/// Never answers (within a test's time).
pub(crate) struct Ignore;
impl postbox::Message for Ignore {
    type Reply = ();
}
impl postbox::Handler<Ignore> for Ledger {
    async fn handle(&mut self, _: Ignore, _: &mut postbox::Context<Self>) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

// ---- an actix actor that calls postbox ------------------------------------------------------

/// An actix actor in front of a postbox `Ledger`.
pub(crate) struct Frontend {
    pub(crate) ledger: ActorRef<Ledger>,
    pub(crate) forwarded: u64,
}
impl Actor for Frontend {
    type Context = actix::Context<Self>;
}

/// Records through an `ActorFuture` that updates the actix actor on the way back.
pub(crate) struct Forward(pub(crate) u64);
impl actix::Message for Forward {
    type Result = Result<(usize, u64), AskError>;
}
impl Handler<Forward> for Frontend {
    type Result = ResponseActFuture<Self, Result<(usize, u64), AskError>>;
    fn handle(&mut self, Forward(n): Forward, _: &mut Self::Context) -> Self::Result {
        self.ledger
            .ask_act::<Self>(Record(n))
            .map(|reply, this, _| {
                this.forwarded += 1;
                reply.map(|len| (len, this.forwarded))
            })
            .boxed_local()
    }
}

/// Records through a plain `ResponseFuture`.
pub(crate) struct ForwardPlain(pub(crate) u64);
impl actix::Message for ForwardPlain {
    type Result = Result<usize, AskError>;
}
impl Handler<ForwardPlain> for Frontend {
    type Result = ResponseFuture<Result<usize, AskError>>;
    fn handle(&mut self, ForwardPlain(n): ForwardPlain, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.ledger.ask_owned(Record(n)))
    }
}

/// Tells the ledger (waiting for room), then reports.
pub(crate) struct Notify(pub(crate) u64);
impl actix::Message for Notify {
    type Result = bool;
}
impl Handler<Notify> for Frontend {
    type Result = ResponseFuture<bool>;
    fn handle(&mut self, Notify(n): Notify, _: &mut Self::Context) -> Self::Result {
        let tell = self.ledger.tell_owned(Record(n));
        Box::pin(async move { tell.await.is_ok() })
    }
}

/// Asks the ledger something it never answers, with a short timeout.
pub(crate) struct Impatient;
impl actix::Message for Impatient {
    type Result = Result<(), AskError>;
}
impl Handler<Impatient> for Frontend {
    type Result = ResponseFuture<Result<(), AskError>>;
    fn handle(&mut self, _: Impatient, _: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.ledger
                .ask_owned(Ignore)
                .timeout(Duration::from_millis(50)),
        )
    }
}

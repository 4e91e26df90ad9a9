//! actix's runtime beside postbox's: cross calls and one side blocking on the other.

use crate::common::*;
use actix::prelude::*;
use postbox::{ActorSystem, AskError, Props};
use postbox_actix::{bridge_message, ActixHost, SendFromActix};

// ---- X → P → X: an actix actor asks a postbox actor that asks the actix actor back ---------

/// The actix side of the round trip.
struct Echoer {
    partner: Option<postbox::ActorRef<Relay>>,
}
impl Actor for Echoer {
    type Context = actix::Context<Self>;
}

/// Sets the postbox partner.
struct Partner(postbox::ActorRef<Relay>);
impl actix::Message for Partner {
    type Result = ();
}
impl Handler<Partner> for Echoer {
    type Result = ();
    fn handle(&mut self, Partner(p): Partner, _: &mut Self::Context) {
        self.partner = Some(p);
    }
}

/// Start of a round: the actix actor asks its postbox partner, and waits for it.
struct Round(u64);
impl actix::Message for Round {
    type Result = Result<u64, AskError>;
}
impl Handler<Round> for Echoer {
    type Result = ResponseActFuture<Self, Result<u64, AskError>>;
    fn handle(&mut self, Round(n): Round, _: &mut Self::Context) -> Self::Result {
        match &self.partner {
            Some(partner) => partner.ask_act::<Self>(Hop(n)).boxed_local(),
            None => Box::pin(actix::fut::ready(Err(AskError::Stopped))),
        }
    }
}

/// Answered by the actix actor, while it waits for its own round.
struct Echo(u64);
impl actix::Message for Echo {
    type Result = u64;
}
impl Handler<Echo> for Echoer {
    type Result = u64;
    fn handle(&mut self, Echo(n): Echo, _: &mut Self::Context) -> u64 {
        n + 1
    }
}
bridge_message!(Echo);

/// The postbox side: its handler awaits the actix actor (through its host) in place.
struct Relay {
    echoer: postbox::ActorRef<ActixHost<Echoer>>,
}
impl postbox::Actor for Relay {}

struct Hop(u64);
impl postbox::Message for Hop {
    type Reply = u64;
}
impl postbox::Handler<Hop> for Relay {
    async fn handle(&mut self, Hop(n): Hop, _: &mut postbox::Context<Self>) -> u64 {
        self.echoer.ask(Echo(n)).await.unwrap_or(0) * 2
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_calls_between_postbox_and_actix_do_not_deadlock() {
    let system = ActorSystem::new();
    let echoer = actix().start(|_| Echoer { partner: None });
    let host = system.spawn(ActixHost::props(echoer.clone())).unwrap();
    let relays: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            system.spawn(Props::new(move || Relay {
                echoer: host.clone(),
            }))
        })
        .collect::<Result<_, _>>()
        .unwrap();

    // Started on both sides at once: actix rounds wait on postbox handlers that wait on the
    // actix actor, and postbox hops wait on the actix actor too.
    let mut calls = tokio::task::JoinSet::new();
    for (i, relay) in relays.iter().enumerate() {
        within(PATIENCE, echoer.send(Partner(relay.clone())))
            .await
            .unwrap();
        for n in 0..25u64 {
            let echoer = echoer.clone();
            calls.spawn(async move { echoer.send(Round(n)).await.unwrap() });
            let relay = relay.clone();
            let n = n + 100 * i as u64;
            calls.spawn(async move { relay.ask(Hop(n)).await });
        }
    }
    let mut answered = 0;
    while let Some(result) = within(PATIENCE, calls.join_next()).await {
        let value = result.unwrap().unwrap();
        assert!(value >= 2 && value % 2 == 0);
        answered += 1;
    }
    assert_eq!(answered, 200);
    system.shutdown().await;
}

// ---- one side blocks its thread on the other ------------------------------------------------

/// An actix actor whose handler blocks its arbiter's thread until a postbox ask, run on
/// postbox's runtime, answers.
struct Blocker {
    ledger: postbox::ActorRef<Ledger>,
    postbox: tokio::runtime::Handle,
}
impl Actor for Blocker {
    type Context = actix::Context<Self>;
}

struct BlockOn(u64);
impl actix::Message for BlockOn {
    type Result = Result<usize, AskError>;
}
impl Handler<BlockOn> for Blocker {
    type Result = Result<usize, AskError>;
    fn handle(&mut self, BlockOn(n): BlockOn, _: &mut Self::Context) -> Self::Result {
        let (tx, rx) = std::sync::mpsc::channel();
        let ask = self.ledger.ask_owned(Record(n));
        self.postbox.spawn(async move {
            let _ = tx.send(ask.await);
        });
        rx.recv_timeout(PATIENCE).unwrap_or(Err(AskError::Stopped))
    }
}

/// A postbox actor on a thread of its own whose handler blocks that thread until the actix
/// actor answers.
struct Waiter {
    counter: actix::Addr<Counter>,
    arbiter: actix_rt::ArbiterHandle,
}
impl postbox::Actor for Waiter {}

struct BlockOnActix(u64);
impl postbox::Message for BlockOnActix {
    type Reply = Option<u64>;
}
impl postbox::Handler<BlockOnActix> for Waiter {
    async fn handle(
        &mut self,
        BlockOnActix(n): BlockOnActix,
        _: &mut postbox::Context<Self>,
    ) -> Option<u64> {
        let (tx, rx) = std::sync::mpsc::channel();
        let request = self.counter.send(Add(n));
        self.arbiter.spawn(async move {
            let _ = tx.send(request.await.ok());
        });
        rx.recv_timeout(PATIENCE).ok().flatten()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_side_blocking_its_thread_on_the_other_does_not_deadlock() {
    // An actix System of its own: this test blocks its thread on purpose.
    let actix = postbox_actix::ActixRuntime::new("actix-blocking").unwrap();
    let system = ActorSystem::new();
    let ledger = system.spawn(Ledger::default).unwrap();
    let counter = actix.start(|_| Counter::default());
    let host = system.spawn(ActixHost::props(counter.clone())).unwrap();
    let blocker = {
        let ledger = ledger.clone();
        let postbox = tokio::runtime::Handle::current();
        actix.start(move |_| Blocker { ledger, postbox })
    };
    let waiter = {
        let counter = counter.clone();
        let arbiter = actix.arbiter().clone();
        system
            .spawn(
                Props::new(move || Waiter {
                    counter: counter.clone(),
                    arbiter: arbiter.clone(),
                })
                .blocking(),
            )
            .unwrap()
    };

    // All at once: actix handlers block the actix thread on postbox asks, a blocking postbox
    // actor blocks its thread on actix replies, and async postbox code asks the actix actor
    // (through its host) on the thread being blocked.
    let mut calls = tokio::task::JoinSet::new();
    for n in 1..=20u64 {
        let blocker = blocker.clone();
        calls.spawn(async move { u64::from(blocker.send(BlockOn(n)).await.unwrap().is_ok()) });
        let waiter = waiter.clone();
        calls.spawn(async move { u64::from(waiter.ask(BlockOnActix(n)).await.unwrap().is_some()) });
        let host = host.clone();
        calls.spawn(async move { u64::from(host.ask(Add(n)).await.is_ok()) });
    }
    let mut succeeded = 0;
    while let Some(result) = within(PATIENCE, calls.join_next()).await {
        succeeded += result.unwrap();
    }
    assert_eq!(succeeded, 60);
    assert_eq!(
        within(PATIENCE, ledger.ask(Entries)).await.unwrap().len(),
        20
    );
    // Both adders reached the same actix actor: 2 × (1 + … + 20).
    assert_eq!(within(PATIENCE, host.ask(Add(0))).await.unwrap(), 420);

    system.shutdown().await;
    within(PATIENCE, tokio::task::spawn_blocking(move || actix.stop()))
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn postbox_may_share_the_actix_system_thread_while_nothing_blocks_it() {
    actix_rt::System::new().block_on(async {
        // postbox on the actix System's own (current-thread) runtime: everything below runs on
        // this one thread, which is fine for code that only awaits.
        let system = ActorSystem::new();
        let ledger = system.spawn(Ledger::default).unwrap();
        let frontend = Frontend {
            ledger: ledger.clone(),
            forwarded: 0,
        }
        .start();
        let counter = system
            .spawn(ActixHost::props(Counter::default().start()))
            .unwrap();

        assert_eq!(
            within(PATIENCE, frontend.send(Forward(7))).await.unwrap(),
            Ok((1, 1))
        );
        assert_eq!(within(PATIENCE, counter.ask(Add(5))).await.unwrap(), 5);
        let (from_actix, from_postbox) =
            tokio::join!(frontend.send(ForwardPlain(8)), counter.ask(Add(6)));
        assert_eq!(from_actix.unwrap(), Ok(2));
        assert_eq!(from_postbox.unwrap(), 11);
        assert_eq!(
            within(PATIENCE, ledger.ask(Entries)).await.unwrap(),
            vec![7, 8]
        );
        system.shutdown().await;
    });
}

//! Replies produced elsewhere (`Handler::handle_reply`) and work in flight elsewhere
//! (`InFlight`), the two hooks of actors that front another runtime.

use crate::common::{until, within, PATIENCE};
use postbox::prelude::*;
use postbox::{DeadLetter, DeadLetterReason, InFlight, InFlightGuard};

/// Keeps the replies of `Hold`s until a `Free` answers them all; counts what it holds as in
/// flight.
#[derive(Default)]
struct Deferring {
    held: Vec<(ReplyTo<u32>, InFlightGuard)>,
    in_flight: Option<InFlight>,
}

impl Actor for Deferring {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.in_flight = Some(ctx.in_flight());
        Ok(())
    }
}

struct Hold;
impl Message for Hold {
    type Reply = u32;
}
impl Handler<Hold> for Deferring {
    async fn handle(&mut self, _: Hold, _: &mut Context<Self>) -> u32 {
        0
    }

    fn handle_reply(
        &mut self,
        _: Hold,
        reply: Option<ReplyTo<u32>>,
        _: &mut Context<Self>,
    ) -> impl std::future::Future<Output = ()> + Send {
        if let (Some(reply), Some(in_flight)) = (reply, &self.in_flight) {
            self.held.push((reply, in_flight.enter()));
        }
        async {}
    }
}

/// Answers every held `Hold` with its position, from a spawned task; replies how many.
struct Free;
impl Message for Free {
    type Reply = usize;
}
impl Handler<Free> for Deferring {
    async fn handle(&mut self, _: Free, ctx: &mut Context<Self>) -> usize {
        let held = std::mem::take(&mut self.held);
        let n = held.len();
        let system = ctx.system().clone();
        let me = ctx.id();
        tokio::spawn(async move {
            for (i, (reply, counted)) in held.into_iter().enumerate() {
                if reply.send(i as u32).is_err() {
                    system.dead_letters().record(DeadLetter::new(
                        me,
                        std::any::type_name::<Deferring>(),
                        std::any::type_name::<Hold>(),
                        DeadLetterReason::ReplyUndeliverable,
                    ));
                }
                drop(counted);
            }
        });
        n
    }
}

/// Drops what it holds unanswered.
struct Forget;
impl Message for Forget {
    type Reply = ();
}
impl Handler<Forget> for Deferring {
    async fn handle(&mut self, _: Forget, _: &mut Context<Self>) {
        self.held.clear();
    }
}

/// Fails every held `Hold` with `NodeDown`; replies how many reached a waiting asker.
struct Refuse;
impl Message for Refuse {
    type Reply = usize;
}
impl Handler<Refuse> for Deferring {
    async fn handle(&mut self, _: Refuse, _: &mut Context<Self>) -> usize {
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|(reply, _counted)| reply.fail(AskError::NodeDown))
            .filter(Result::is_ok)
            .count()
    }
}

/// Panics in the synchronous part of `handle_reply`, before any future exists.
struct Explode;
impl Message for Explode {
    type Reply = ();
}
impl Handler<Explode> for Deferring {
    async fn handle(&mut self, _: Explode, _: &mut Context<Self>) {}

    #[allow(unreachable_code)]
    fn handle_reply(
        &mut self,
        _: Explode,
        _: Option<ReplyTo<()>>,
        _: &mut Context<Self>,
    ) -> impl std::future::Future<Output = ()> + Send {
        panic!("boom");
        async {}
    }
}

fn hold(actor: &ActorRef<Deferring>) -> tokio::task::JoinHandle<Result<u32, AskError>> {
    let actor = actor.clone();
    tokio::spawn(async move { actor.ask(Hold).await })
}

async fn until_depth(actor: &ActorRef<Deferring>, depth: usize) {
    until(PATIENCE, format!("depth {depth}"), || {
        actor.depth() == depth
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_replies_later_keeps_its_mailbox_moving_and_publishes_its_backlog() {
    let system = ActorSystem::new();
    let actor = system.spawn(Deferring::default).unwrap();
    let holds: Vec<_> = (0..3).map(|_| hold(&actor)).collect();
    // The holds are answered by nobody yet, but the actor is idle: its mailbox is empty and
    // its depth is what it published.
    until_depth(&actor, 3).await;
    let stats = actor.stats();
    assert_eq!((stats.depth, stats.in_flight, stats.processed), (3, 3, 3));
    assert_eq!(actor.load(), 3);
    assert_eq!(system.depth(actor.id()), Some(3));
    assert_eq!(system.actor(actor.id()).unwrap().stats.depth, 3);
    let recipient: Recipient<Hold> = actor.recipient();
    assert_eq!(recipient.depth(), 3);
    let mut walked = None;
    system.for_each_actor(|view| {
        if view.id() == actor.id() {
            walked = Some(view.depth());
        }
    });
    assert_eq!(walked, Some(3));

    // A later message is handled at once and answers the earlier ones.
    assert_eq!(within(PATIENCE, actor.ask(Free)).await.unwrap(), 3);
    let mut answers = Vec::new();
    for h in holds {
        answers.push(within(PATIENCE, h).await.unwrap().unwrap());
    }
    answers.sort();
    assert_eq!(answers, [0, 1, 2]);
    until_depth(&actor, 0).await;
    assert_eq!(actor.stats().in_flight, 0);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_reply_dropped_unanswered_tells_the_asker_the_actor_stopped() {
    let system = ActorSystem::new();
    let actor = system.spawn(Deferring::default).unwrap();
    let held = hold(&actor);
    until_depth(&actor, 1).await;
    within(PATIENCE, actor.ask(Forget)).await.unwrap();
    assert_eq!(
        within(PATIENCE, held).await.unwrap(),
        Err(AskError::Stopped)
    );
    assert_eq!(actor.depth(), 0);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_reply_can_fail_with_the_real_cause() {
    let system = ActorSystem::new();
    let actor = system.spawn(Deferring::default).unwrap();
    let waiting = hold(&actor);
    let gone = hold(&actor);
    until_depth(&actor, 2).await;
    // The second asker gives up: its handle can no longer be answered, value or error.
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    assert_eq!(within(PATIENCE, actor.ask(Refuse)).await.unwrap(), 1);
    assert_eq!(
        within(PATIENCE, waiting).await.unwrap(),
        Err(AskError::NodeDown)
    );
    until_depth(&actor, 0).await;
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_handle_reply_itself_fails_only_that_actor() {
    let system = ActorSystem::new();
    let actor = system.spawn(Deferring::default).unwrap();
    let held = hold(&actor);
    until_depth(&actor, 1).await;
    assert_eq!(
        within(PATIENCE, actor.ask(Explode)).await,
        Err(AskError::Panicked)
    );
    // Restarted (permanent, one-for-one): the old instance's held reply went with it, the
    // new instance publishes into the same counter, and it works.
    assert_eq!(
        within(PATIENCE, held).await.unwrap(),
        Err(AskError::Stopped)
    );
    until_depth(&actor, 0).await;
    assert_eq!(actor.stats().restarts, 1);
    let again = hold(&actor);
    until_depth(&actor, 1).await;
    assert_eq!(within(PATIENCE, actor.ask(Free)).await.unwrap(), 1);
    assert_eq!(within(PATIENCE, again).await.unwrap(), Ok(0));
    assert_eq!(system.counters().panics, 1);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_nobody_waits_for_is_counted_by_whoever_sends_it() {
    let system = ActorSystem::new();
    let actor = system.spawn(Deferring::default).unwrap();
    let impatient = {
        let actor = actor.clone();
        tokio::spawn(async move {
            actor
                .ask(Hold)
                .timeout(std::time::Duration::from_millis(20))
                .await
        })
    };
    assert!(matches!(
        within(PATIENCE, impatient).await.unwrap(),
        Err(AskError::Timeout(_))
    ));
    let mut dead = system.dead_letters().subscribe();
    assert_eq!(within(PATIENCE, actor.ask(Free)).await.unwrap(), 1);
    let letter = within(PATIENCE, dead.recv()).await.unwrap();
    assert_eq!(
        (letter.recipient, letter.reason),
        (actor.id(), DeadLetterReason::ReplyUndeliverable)
    );
    assert_eq!(
        system
            .dead_letters()
            .count(DeadLetterReason::ReplyUndeliverable),
        1
    );
    system.shutdown().await;
}

//! Circuit breakers guarding real actors: failing and panicking handlers trip them, open
//! breakers hand messages back, and they heal once the dependency recovers.

use crate::common::{within, PATIENCE};
use postbox::prelude::*;
use postbox::{
    BreakerError, BreakerState, CircuitBreaker, DeadLetterReason, GuardedAskError,
    GuardedSendError, GuardedTrySendError,
};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::advance;

const CALL_TIMEOUT: Duration = Duration::from_millis(100);
const RESET: Duration = Duration::from_secs(1);

fn breaker(max_failures: u32) -> CircuitBreaker {
    CircuitBreaker::builder("upstream")
        .max_failures(max_failures)
        .call_timeout(CALL_TIMEOUT)
        .reset_timeout(RESET)
        .exponential_backoff(2.0)
        .build()
        .unwrap()
}

/// A dependency that answers with an error while it is unhealthy, and can be made to panic.
struct Upstream {
    healthy: Arc<AtomicBool>,
}
impl Actor for Upstream {}

#[derive(Debug, PartialEq)]
struct Fetch(u32);
impl Message for Fetch {
    type Reply = Result<u32, String>;
}
impl Handler<Fetch> for Upstream {
    async fn handle(&mut self, Fetch(n): Fetch, _: &mut Context<Self>) -> Result<u32, String> {
        if self.healthy.load(Relaxed) {
            Ok(n * 2)
        } else {
            Err("upstream unavailable".into())
        }
    }
}

#[derive(Debug, PartialEq)]
struct Crash;
impl Message for Crash {
    type Reply = u32;
}
impl Handler<Crash> for Upstream {
    async fn handle(&mut self, _: Crash, _: &mut Context<Self>) -> u32 {
        panic!("upstream crashes (expected by the test)");
    }
}

/// Never replies.
#[derive(Debug, PartialEq)]
struct Stall;
impl Message for Stall {
    type Reply = ();
}
impl Handler<Stall> for Upstream {
    async fn handle(&mut self, _: Stall, _: &mut Context<Self>) {
        std::future::pending::<()>().await;
    }
}

fn upstream(system: &ActorSystem, healthy: bool) -> (ActorRef<Upstream>, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(healthy));
    let flag = healthy.clone();
    let actor = system
        .spawn(move || Upstream {
            healthy: flag.clone(),
        })
        .unwrap();
    (actor, healthy)
}

fn unavailable() -> Result<u32, String> {
    Err("upstream unavailable".into())
}

fn is_err(reply: &Result<u32, String>) -> bool {
    reply.is_err()
}

#[tokio::test(start_paused = true)]
async fn failing_replies_trip_the_breaker_and_it_heals_once_the_dependency_recovers() {
    let system = ActorSystem::new();
    let (actor, healthy) = upstream(&system, false);
    let breaker = breaker(3);
    let guarded = breaker.guard(actor);
    for _ in 0..3 {
        assert_eq!(
            guarded.ask_classified(Fetch(1), is_err).await,
            Ok(unavailable())
        );
    }
    assert_eq!(breaker.state(), BreakerState::Open);

    // Open: the ask is not sent, and the message comes back.
    match guarded.ask_classified(Fetch(7), is_err).await {
        Err(GuardedAskError::Open { msg, remaining }) => {
            assert_eq!(msg, Fetch(7));
            assert_eq!(remaining, RESET);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // Still down at the trial: open again, for twice as long.
    advance(RESET).await;
    assert_eq!(
        guarded.ask_classified(Fetch(1), is_err).await,
        Ok(unavailable())
    );
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.stats().reset_timeout, 2 * RESET);

    // The dependency recovers; the next trial closes the breaker, without anyone resetting it.
    healthy.store(true, Relaxed);
    advance(2 * RESET).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(guarded.ask_classified(Fetch(21), is_err).await, Ok(Ok(42)));
    assert_eq!(guarded.ask(Fetch(2)).await, Ok(Ok(4)));
    let stats = breaker.stats();
    assert_eq!(stats.state, BreakerState::Closed);
    assert_eq!(
        (stats.successes, stats.failures, stats.rejections),
        (2, 4, 1)
    );
    assert_eq!(stats.times_opened, 2);
    assert_eq!(stats.reset_timeout, RESET);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_trips_the_breaker() {
    let system = ActorSystem::new();
    let (actor, _) = upstream(&system, true);
    let breaker = breaker(2);
    let guarded = breaker.guard(actor);
    for _ in 0..2 {
        assert_eq!(
            guarded.ask(Crash).await,
            Err(GuardedAskError::Ask(AskError::Panicked))
        );
    }
    let stats = breaker.stats();
    assert_eq!((stats.state, stats.panics), (BreakerState::Open, 2));
    assert!(guarded.ask(Fetch(1)).await.unwrap_err().is_rejected());

    // The supervisor restarted the actor meanwhile: the trial succeeds.
    advance(RESET).await;
    assert_eq!(guarded.ask(Fetch(5)).await, Ok(Ok(10)));
    assert_eq!(breaker.state(), BreakerState::Closed);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_ask_without_a_reply_times_out_at_the_call_timeout() {
    let system = ActorSystem::new();
    let (actor, _) = upstream(&system, true);
    let breaker = breaker(1);
    let guarded = breaker.guard(actor.clone());
    assert_eq!(
        guarded.ask(Stall).await,
        Err(GuardedAskError::Ask(AskError::Timeout(CALL_TIMEOUT)))
    );
    let stats = breaker.stats();
    assert_eq!((stats.state, stats.timeouts), (BreakerState::Open, 1));
    actor.kill();
    system.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_rejects_tell_and_try_tell_handing_the_message_back() {
    let system = ActorSystem::new();
    let (actor, _) = upstream(&system, true);
    let breaker = breaker(2);
    let guarded = breaker.guard_recipient(actor.recipient::<Fetch>());
    assert_eq!(guarded.tell(Fetch(1)).await, Ok(()));
    assert_eq!(guarded.try_tell(Fetch(2)), Ok(()));
    // Handled in order: once this is answered, both tells have been handled (a stop would
    // otherwise overtake them and drop them as dead letters).
    assert_eq!(actor.ask(Fetch(0)).await, Ok(Ok(0)));
    actor.stop();
    actor.wait_for_stop().await;

    // Sends to a stopped actor fail (and are dead letters, as without a breaker)...
    assert_eq!(
        guarded.tell(Fetch(3)).await,
        Err(GuardedSendError::Closed(Fetch(3)))
    );
    assert_eq!(
        guarded.try_tell(Fetch(4)),
        Err(GuardedTrySendError::Closed(Fetch(4)))
    );
    assert_eq!(breaker.state(), BreakerState::Open);

    // ...and once open, the breaker refuses without sending, handing each message back.
    match guarded.tell(Fetch(5)).await {
        Err(GuardedSendError::Open { msg, remaining }) => {
            assert_eq!((msg, remaining), (Fetch(5), RESET));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let refused = guarded.try_tell(Fetch(6)).unwrap_err();
    assert!(refused.is_rejected());
    assert_eq!(refused.into_inner(), Fetch(6));

    let stats = breaker.stats();
    assert_eq!(
        (stats.successes, stats.failures, stats.rejections),
        (2, 2, 2)
    );
    // Only the two sends that reached the stopped actor are dead letters.
    let dead = system.dead_letters();
    assert_eq!(dead.count(DeadLetterReason::ActorStopped), 2);
    assert_eq!(dead.total(), 2);
    system.shutdown().await;
}

/// Handles `Hold` by waiting for the gate; records every `Note`.
struct Gated {
    gate: Arc<Notify>,
    seen: Vec<u32>,
}
impl Actor for Gated {}

struct Hold(oneshot::Sender<()>);
impl Message for Hold {
    type Reply = ();
}
impl Handler<Hold> for Gated {
    async fn handle(&mut self, Hold(entered): Hold, _: &mut Context<Self>) {
        let _ = entered.send(());
        self.gate.notified().await;
    }
}

#[derive(Debug, PartialEq)]
struct Note(u32);
impl Message for Note {
    type Reply = ();
}
impl Handler<Note> for Gated {
    async fn handle(&mut self, Note(n): Note, _: &mut Context<Self>) {
        self.seen.push(n);
    }
}

struct Seen;
impl Message for Seen {
    type Reply = Vec<u32>;
}
impl Handler<Seen> for Gated {
    async fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Vec<u32> {
        self.seen.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_tell_stuck_on_a_full_mailbox_times_out_and_counts_as_failure() {
    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system
        .spawn(
            Props::new(move || Gated {
                gate: g.clone(),
                seen: Vec::new(),
            })
            .mailbox(MailboxCapacity::bounded(1)),
        )
        .unwrap();
    let breaker = breaker(2);
    let guarded = breaker.guard(actor.clone());
    let (entered, handler_entered) = oneshot::channel();
    guarded.tell(Hold(entered)).await.unwrap();
    within(PATIENCE, handler_entered).await.unwrap();
    guarded.tell(Note(1)).await.unwrap(); // fills the mailbox

    // Full: try_tell hands the message back and counts neither way.
    assert_eq!(
        guarded.try_tell(Note(2)),
        Err(GuardedTrySendError::Full(Note(2)))
    );
    assert_eq!(breaker.stats().ignored, 1);

    // tell waits for room, but no longer than the call timeout.
    let started = tokio::time::Instant::now();
    assert_eq!(
        guarded.tell(Note(3)).await,
        Err(GuardedSendError::Timeout(CALL_TIMEOUT))
    );
    assert_eq!(started.elapsed(), CALL_TIMEOUT);
    let stats = breaker.stats();
    assert_eq!((stats.timeouts, stats.consecutive_failures), (1, 1));
    // The dropped message is accounted for (as is the one try_tell refused).
    assert_eq!(
        system.dead_letters().count(DeadLetterReason::MailboxFull),
        2
    );

    // The actor catches up: sends succeed again and the failure count resets.
    gate.notify_one();
    guarded.tell(Note(4)).await.unwrap();
    assert_eq!(breaker.stats().consecutive_failures, 0);
    assert_eq!(actor.ask(Seen).await.unwrap(), vec![1, 4]);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_guarded_recipient_judges_replies_with_its_predicate() {
    let system = ActorSystem::new();
    let (actor, healthy) = upstream(&system, false);
    let breaker = breaker(2);
    let guarded = breaker
        .guard_recipient(actor.recipient::<Fetch>())
        .failure_if(is_err);
    assert_eq!(guarded.ask(Fetch(1)).await, Ok(unavailable()));
    assert_eq!(breaker.stats().consecutive_failures, 1);
    // A per-call predicate overrides the handle's.
    assert_eq!(
        guarded.ask_classified(Fetch(1), |_| false).await,
        Ok(unavailable())
    );
    assert_eq!(breaker.stats().consecutive_failures, 0);
    guarded.ask(Fetch(1)).await.unwrap().unwrap_err();
    guarded.clone().ask(Fetch(1)).await.unwrap().unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open);
    match guarded.ask(Fetch(9)).await {
        Err(GuardedAskError::Open { msg, .. }) => assert_eq!(msg, Fetch(9)),
        other => panic!("expected a rejection, got {other:?}"),
    }

    healthy.store(true, Relaxed);
    advance(RESET).await;
    assert_eq!(guarded.ask(Fetch(4)).await, Ok(Ok(8)));
    assert_eq!(breaker.state(), BreakerState::Closed);
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn call_wraps_a_plain_ask() {
    let system = ActorSystem::new();
    let (actor, _) = upstream(&system, true);
    let breaker = breaker(1);
    assert_eq!(breaker.call(actor.ask(Fetch(3))).await, Ok(Ok(6)));
    actor.stop();
    actor.wait_for_stop().await;
    assert_eq!(
        breaker.call(actor.ask(Fetch(3))).await,
        Err(BreakerError::Inner(AskError::Stopped))
    );
    assert_eq!(breaker.state(), BreakerState::Open);
    // Open: the ask is never made, so the stopped actor gets no further dead letter.
    let before = system.dead_letters().total();
    assert!(breaker
        .call(actor.ask(Fetch(3)))
        .await
        .unwrap_err()
        .is_rejected());
    assert_eq!(system.dead_letters().total(), before);
    system.shutdown().await;
}

/// An actor that guards its calls to a dependency with the breaker its props gave it, and
/// fails (is restarted) when a call fails.
struct Caller {
    dependency_up: Arc<AtomicBool>,
}

impl Actor for Caller {}

struct CallDependency;
impl Message for CallDependency {
    type Reply = Result<(), String>;
}

impl Handler<CallDependency> for Caller {
    async fn handle(&mut self, _: CallDependency, ctx: &mut Context<Self>) -> Result<(), String> {
        let up = self.dependency_up.load(Relaxed);
        let breaker = ctx.circuit_breaker().expect("given by props").clone();
        let result = breaker
            .call(async move {
                if up {
                    Ok(())
                } else {
                    Err("down")
                }
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.is_rejected() => Err("rejected".into()),
            Err(error) => {
                // A real failure: let the supervisor restart this actor.
                ctx.fail(format!("dependency call failed: {error}"));
                Err("failed".into())
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_breaker_given_through_props_outlives_restarts_of_the_actor_it_guards() {
    let system = ActorSystem::new();
    let dependency_up = Arc::new(AtomicBool::new(false));
    let up = dependency_up.clone();
    let guard = breaker(2);
    let caller = system
        .spawn(
            Props::new(move || Caller {
                dependency_up: up.clone(),
            })
            .circuit_breaker(guard.clone()),
        )
        .unwrap();

    // Two failed calls, each restarting the actor, trip the shared breaker.
    for _ in 0..2 {
        assert_eq!(
            caller.ask(CallDependency).await.unwrap(),
            Err("failed".into())
        );
    }
    assert_eq!(guard.state(), BreakerState::Open);
    // The restarted instance finds the breaker open: it fails fast and does not fail itself.
    assert_eq!(
        caller.ask(CallDependency).await.unwrap(),
        Err("rejected".into())
    );

    // The dependency recovers; after the reset timeout the trial call closes the breaker.
    dependency_up.store(true, Relaxed);
    advance(RESET).await;
    assert_eq!(caller.ask(CallDependency).await.unwrap(), Ok(()));
    assert_eq!(guard.state(), BreakerState::Closed);
    // Two restarts, from the two real failures; the rejected call restarted nothing.
    assert_eq!(caller.stats().restarts, 2);
    system.shutdown().await;
}

//! tell / try_tell / ask semantics: ordering, backpressure, every ask outcome, delegation.

use crate::common::{until, within, PATIENCE};
use postbox::prelude::*;
use postbox::{DeadLetterReason, MailboxCapacity};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Records `(sender, seq)` pairs and checks per-sender order on arrival.
#[derive(Default)]
struct Recorder {
    next: HashMap<u32, u64>,
    out_of_order: u64,
}
impl Actor for Recorder {}

struct Item {
    sender: u32,
    seq: u64,
}
impl Message for Item {
    type Reply = ();
}
impl Handler<Item> for Recorder {
    async fn handle(&mut self, msg: Item, _: &mut Context<Self>) {
        let expected = self.next.entry(msg.sender).or_default();
        if *expected != msg.seq {
            self.out_of_order += 1;
        }
        *expected = msg.seq + 1;
    }
}

struct Report;
impl Message for Report {
    type Reply = (HashMap<u32, u64>, u64);
}
impl Handler<Report> for Recorder {
    async fn handle(&mut self, _: Report, _: &mut Context<Self>) -> (HashMap<u32, u64>, u64) {
        (self.next.clone(), self.out_of_order)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sender_s_messages_arrive_in_send_order() {
    let system = ActorSystem::new();
    // A small mailbox so that senders keep hitting backpressure and racing each other.
    let recorder = system
        .spawn(Props::new(Recorder::default).mailbox(MailboxCapacity::bounded(16)))
        .unwrap();
    const SENDERS: u32 = 4;
    const PER_SENDER: u64 = 5_000;
    let tasks: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                for seq in 0..PER_SENDER {
                    recorder.tell(Item { sender, seq }).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        within(PATIENCE, task).await.unwrap();
    }
    let (next, out_of_order) = recorder.ask(Report).await.unwrap();
    assert_eq!(out_of_order, 0);
    for sender in 0..SENDERS {
        assert_eq!(next[&sender], PER_SENDER, "sender {sender} lost messages");
    }
    system.shutdown().await;
}

/// Handles `Hold` by waiting for the gate to open; counts everything else.
struct Gated {
    gate: Arc<Notify>,
    seen: Vec<u32>,
}
impl Actor for Gated {}

struct Hold;
impl Message for Hold {
    type Reply = ();
}
impl Handler<Hold> for Gated {
    async fn handle(&mut self, _: Hold, _: &mut Context<Self>) {
        self.gate.notified().await;
    }
}

struct N(u32);
impl Message for N {
    type Reply = ();
}
impl Handler<N> for Gated {
    async fn handle(&mut self, N(n): N, _: &mut Context<Self>) {
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

fn gated(system: &ActorSystem, mailbox: MailboxCapacity) -> (ActorRef<Gated>, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system
        .spawn(
            Props::new(move || Gated {
                gate: g.clone(),
                seen: Vec::new(),
            })
            .mailbox(mailbox),
        )
        .unwrap();
    (actor, gate)
}

/// Waits until the actor has taken `Hold` out of its mailbox and is blocked in its handler.
async fn until_holding(actor: &ActorRef<Gated>) {
    until(PATIENCE, "Hold in the handler", || {
        actor.depth() == 0 && actor.stats().processed == 0
    })
    .await;
}

#[tokio::test]
async fn tell_waits_for_room_and_resumes_in_order() {
    let system = ActorSystem::new();
    let (actor, gate) = gated(&system, MailboxCapacity::bounded(2));
    actor.tell(Hold).await.unwrap();
    until_holding(&actor).await;
    actor.tell(N(1)).await.unwrap();
    actor.tell(N(2)).await.unwrap();
    assert_eq!(actor.depth(), 2);
    assert!(actor.try_tell(N(99)).unwrap_err().is_full());

    let sender = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.tell(N(3)).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !sender.is_finished(),
        "tell must wait while the mailbox is full"
    );
    assert_eq!(actor.depth(), 2);

    gate.notify_one();
    within(PATIENCE, sender).await.unwrap().unwrap();
    assert_eq!(actor.ask(Seen).await.unwrap(), vec![1, 2, 3]);
    system.shutdown().await;
}

/// An ask made while there is room is in the mailbox at once; one made on a full mailbox is
/// not (`AskFuture::is_queued`), and goes in once polled and room is made.
#[tokio::test]
async fn an_ask_on_a_full_mailbox_is_not_queued_until_there_is_room() {
    use std::future::IntoFuture;
    let system = ActorSystem::new();
    let (actor, gate) = gated(&system, MailboxCapacity::bounded(1));
    actor.tell(Hold).await.unwrap();
    until_holding(&actor).await;
    let first = actor.ask(Seen).into_future();
    assert!(first.is_queued(), "room for one: in the mailbox at once");
    let second = actor.ask(Seen).into_future();
    assert!(
        !second.is_queued(),
        "the mailbox is full: it waits for room"
    );
    assert_eq!(actor.depth(), 1);
    gate.notify_one();
    assert_eq!(within(PATIENCE, first).await.unwrap(), Vec::<u32>::new());
    assert_eq!(within(PATIENCE, second).await.unwrap(), Vec::<u32>::new());
    system.shutdown().await;
}

#[tokio::test]
async fn a_recipient_tell_that_waits_for_room_is_not_a_dead_letter() {
    let system = ActorSystem::new();
    let (actor, gate) = gated(&system, MailboxCapacity::bounded(1));
    actor.tell(Hold).await.unwrap();
    until_holding(&actor).await;
    actor.tell(N(1)).await.unwrap();
    let recipient: Recipient<N> = actor.recipient();
    let sender = tokio::spawn(async move { recipient.tell(N(2)).await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sender.is_finished(), "the mailbox is full: tell waits");
    gate.notify_one();
    within(PATIENCE, sender).await.unwrap().unwrap();
    assert_eq!(actor.ask(Seen).await.unwrap(), vec![1, 2]);
    assert_eq!(system.dead_letters().total(), 0, "waiting is not a refusal");
    system.shutdown().await;
}

#[tokio::test]
async fn try_tell_hands_the_message_back_when_full_or_closed() {
    let system = ActorSystem::new();
    let (actor, gate) = gated(&system, MailboxCapacity::bounded(1));
    actor.tell(Hold).await.unwrap();
    until_holding(&actor).await;
    actor.try_tell(N(1)).unwrap();
    match actor.try_tell(N(2)) {
        Err(TrySendError::Full(N(2))) => {}
        other => panic!("expected Full(N(2)), got {other:?}"),
    }
    gate.notify_one();
    actor.stop();
    actor.wait_for_stop().await;
    match actor.try_tell(N(3)) {
        Err(TrySendError::Closed(N(3))) => {}
        other => panic!("expected Closed(N(3)), got {other:?}"),
    }
    match actor.tell(N(4)).await {
        Err(SendError(N(4))) => {}
        other => panic!("expected SendError(N(4)), got {other:?}"),
    }
    let dead = system.dead_letters();
    assert_eq!(dead.count(DeadLetterReason::MailboxFull), 1);
    assert_eq!(dead.count(DeadLetterReason::ActorStopped), 2);
    system.shutdown().await;
}

struct Echo;
impl Actor for Echo {}

struct Ping(u64);
impl Message for Ping {
    type Reply = u64;
}
impl Handler<Ping> for Echo {
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> u64 {
        n * 2
    }
}

struct Boom;
impl Message for Boom {
    type Reply = u64;
}
impl Handler<Boom> for Echo {
    async fn handle(&mut self, _: Boom, _: &mut Context<Self>) -> u64 {
        panic!("boom (expected by the test)");
    }
}

/// Never finishes; reports (if asked to) that its handler has started.
struct Forever(Option<oneshot::Sender<()>>);
impl Message for Forever {
    type Reply = ();
}
impl Handler<Forever> for Echo {
    async fn handle(&mut self, Forever(entered): Forever, _: &mut Context<Self>) {
        if let Some(entered) = entered {
            let _ = entered.send(());
        }
        std::future::pending::<()>().await;
    }
}

#[tokio::test]
async fn ask_returns_the_handler_s_reply() {
    let system = ActorSystem::new();
    let echo = system.spawn(|| Echo).unwrap();
    assert_eq!(echo.ask(Ping(21)).await, Ok(42));
    system.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ask_times_out_when_the_handler_never_replies() {
    let system = ActorSystem::new();
    let echo = system.spawn(|| Echo).unwrap();
    let started = tokio::time::Instant::now();
    let result = echo
        .ask(Forever(None))
        .timeout(Duration::from_millis(50))
        .await;
    assert_eq!(result, Err(AskError::Timeout(Duration::from_millis(50))));
    let waited = started.elapsed();
    // Ask deadlines fire at most two sweeper ticks (20 ms) late, never early.
    assert!(waited >= Duration::from_millis(50) && waited <= Duration::from_millis(70));
    // The actor is still busy with Forever; a kill frees it.
    echo.kill();
    system.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn ask_uses_the_system_default_timeout() {
    let system = ActorSystem::builder()
        .ask_timeout(Duration::from_millis(30))
        .build();
    let echo = system.spawn(|| Echo).unwrap();
    let result = within(PATIENCE, echo.ask(Forever(None))).await;
    assert_eq!(result, Err(AskError::Timeout(Duration::from_millis(30))));
    echo.kill();
    system.shutdown().await;
}

#[tokio::test]
async fn ask_reports_a_panicking_handler() {
    let system = ActorSystem::new();
    let echo = system.spawn(|| Echo).unwrap();
    assert_eq!(echo.ask(Boom).await, Err(AskError::Panicked));
    // Restarted (permanent, default strategy): it answers again.
    assert_eq!(echo.ask(Ping(1)).await, Ok(2));
    system.shutdown().await;
}

#[tokio::test]
async fn ask_reports_an_actor_that_is_not_running() {
    let system = ActorSystem::new();
    let echo = system.spawn(|| Echo).unwrap();
    echo.stop();
    echo.wait_for_stop().await;
    assert_eq!(echo.ask(Ping(1)).await, Err(AskError::Stopped));
    system.shutdown().await;
}

#[tokio::test]
async fn ask_queued_behind_a_stop_resolves_as_stopped() {
    let system = ActorSystem::new();
    let (actor, gate) = gated(&system, MailboxCapacity::default());
    actor.tell(Hold).await.unwrap();
    until_holding(&actor).await;
    let queued = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.ask(Seen).await })
    };
    until(PATIENCE, "the ask queued", || actor.depth() > 0).await;
    actor.stop();
    gate.notify_one();
    assert_eq!(
        within(PATIENCE, queued).await.unwrap(),
        Err(AskError::Stopped)
    );
    assert_eq!(
        system.dead_letters().count(DeadLetterReason::DroppedAtStop),
        1
    );
    system.shutdown().await;
}

#[tokio::test]
async fn ask_of_a_killed_handler_resolves_as_stopped() {
    let system = ActorSystem::new();
    let echo = system.spawn(|| Echo).unwrap();
    let (entered, entered_rx) = oneshot::channel();
    let pending = {
        let echo = echo.clone();
        tokio::spawn(async move { echo.ask(Forever(Some(entered))).await })
    };
    within(PATIENCE, entered_rx).await.unwrap();
    echo.kill();
    assert_eq!(
        within(PATIENCE, pending).await.unwrap(),
        Err(AskError::Stopped)
    );
    system.shutdown().await;
}

/// Answers `Slow` from a spawned task (after a gate opens) while handling `Ping`s meanwhile.
struct Delegator {
    gate: Arc<Notify>,
}
impl Actor for Delegator {}

struct Slow {
    reply: ReplyTo<&'static str>,
}
impl Message for Slow {
    type Reply = ();
}
impl Handler<Slow> for Delegator {
    async fn handle(&mut self, msg: Slow, _: &mut Context<Self>) {
        let gate = self.gate.clone();
        tokio::spawn(async move {
            gate.notified().await;
            let _ = msg.reply.send("done later");
        });
    }
}
impl Handler<Ping> for Delegator {
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> u64 {
        n + 1
    }
}

struct Forget {
    reply: ReplyTo<u8>,
}
impl Message for Forget {
    type Reply = ();
}
impl Handler<Forget> for Delegator {
    async fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        drop(msg.reply);
    }
}

#[tokio::test]
async fn a_delegated_reply_does_not_block_the_mailbox() {
    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system.spawn(move || Delegator { gate: g.clone() }).unwrap();
    let slow = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.ask_with(|reply| Slow { reply }).await })
    };
    // While the slow reply is outstanding, the actor keeps answering.
    for n in 0..10 {
        assert_eq!(actor.ask(Ping(n)).await, Ok(n + 1));
    }
    assert!(!slow.is_finished());
    gate.notify_one();
    assert_eq!(within(PATIENCE, slow).await.unwrap(), Ok("done later"));
    assert_eq!(
        actor.ask_with(|reply| Forget { reply }).await,
        Err(AskError::NoReply)
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_late_delegated_reply_is_a_dead_letter() {
    let system = ActorSystem::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system.spawn(move || Delegator { gate: g.clone() }).unwrap();
    let (sent_tx, sent_rx) = oneshot::channel();
    let result = actor
        .ask_with(|reply| {
            let _ = sent_tx.send(());
            Slow { reply }
        })
        .timeout(Duration::from_millis(20))
        .await;
    assert!(matches!(result, Err(AskError::Timeout(_))));
    sent_rx.await.unwrap();
    let mut dead = system.dead_letters().subscribe();
    gate.notify_one();
    let letter = within(PATIENCE, dead.recv()).await.unwrap();
    assert_eq!(letter.reason, DeadLetterReason::ReplyUndeliverable);
    system.shutdown().await;
}

#[tokio::test]
async fn recipients_reach_the_same_actor_and_compare_by_id() {
    let system = ActorSystem::new();
    let echo = system.spawn(|| Echo).unwrap();
    let recipient: Recipient<Ping> = echo.recipient();
    let other: Recipient<Ping> = echo.clone().into();
    assert_eq!(recipient, other);
    assert_eq!(recipient.id(), echo.id());
    assert_eq!(recipient.ask(Ping(4)).await, Ok(8));
    recipient.tell(Ping(1)).await.unwrap();
    recipient.try_tell(Ping(2)).unwrap();
    assert_eq!(
        recipient.ask(Ping(5)).timeout(Duration::from_secs(1)).await,
        Ok(10)
    );
    let set: std::collections::HashSet<_> = [recipient.clone(), other].into_iter().collect();
    assert_eq!(set.len(), 1);
    echo.stop();
    echo.wait_for_stop().await;
    assert!(!recipient.is_alive());
    assert!(matches!(
        recipient.tell(Ping(1)).await,
        Err(SendError(Ping(1)))
    ));
    assert_eq!(recipient.ask(Ping(1)).await, Err(AskError::Stopped));
    system.shutdown().await;
}

#[tokio::test]
async fn an_unbounded_mailbox_never_refuses() {
    let system = ActorSystem::new();
    let (actor, gate) = gated(&system, MailboxCapacity::Unbounded);
    actor.tell(Hold).await.unwrap();
    until_holding(&actor).await;
    for n in 0..100_000 {
        actor.try_tell(N(n)).unwrap();
    }
    assert_eq!(actor.depth(), 100_000);
    assert_eq!(actor.stats().capacity, None);
    gate.notify_one();
    let seen = actor.ask(Seen).await.unwrap();
    assert_eq!(seen.len(), 100_000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    system.shutdown().await;
}

#[tokio::test]
async fn big_messages_travel_like_small_ones() {
    struct Big([u64; 64]);
    impl Message for Big {
        type Reply = u64;
    }
    impl Handler<Big> for Echo {
        async fn handle(&mut self, Big(values): Big, _: &mut Context<Self>) -> u64 {
            values.iter().sum()
        }
    }
    let system = ActorSystem::new();
    let echo = system.spawn(|| Echo).unwrap();
    assert_eq!(echo.ask(Big([2; 64])).await, Ok(128));
    system.shutdown().await;
}

//! Dead letters: exact counts per reason, the subscription, rate-limited logging.

use crate::common::{until, within, PATIENCE};
use postbox::prelude::*;
use postbox::{DeadLetterReason, MailboxCapacity};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct Slow {
    gate: Arc<Notify>,
}
impl Actor for Slow {}

struct Hold;
impl Message for Hold {
    type Reply = ();
}
impl Handler<Hold> for Slow {
    async fn handle(&mut self, _: Hold, _: &mut Context<Self>) {
        self.gate.notified().await;
    }
}

struct Note(u32);
impl Message for Note {
    type Reply = u32;
}
impl Handler<Note> for Slow {
    async fn handle(&mut self, Note(n): Note, _: &mut Context<Self>) -> u32 {
        n
    }
}

fn slow(system: &ActorSystem, mailbox: MailboxCapacity) -> (ActorRef<Slow>, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let actor = system
        .spawn(Props::new(move || Slow { gate: g.clone() }).mailbox(mailbox))
        .unwrap();
    (actor, gate)
}

async fn until_busy(actor: &ActorRef<Slow>) {
    until(PATIENCE, "Hold in the handler", || actor.depth() == 0).await;
}

#[tokio::test]
async fn every_undeliverable_message_is_counted_exactly_once_with_its_reason() {
    let system = ActorSystem::new();
    let mut stream = system.dead_letters().subscribe();
    let (actor, gate) = slow(&system, MailboxCapacity::bounded(3));
    actor.tell(Hold).await.unwrap();
    until_busy(&actor).await;
    for n in 0..3 {
        actor.tell(Note(n)).await.unwrap();
    }
    // Refused because full: 2.
    assert!(actor.try_tell(Note(10)).is_err());
    assert!(actor.try_tell(Note(11)).is_err());
    // Left in the mailbox at stop: the 3 queued notes.
    actor.stop();
    gate.notify_one();
    actor.wait_for_stop().await;
    // Sent to the stopped actor: tell, try_tell, ask = 3.
    assert!(actor.tell(Note(20)).await.is_err());
    assert!(actor.try_tell(Note(21)).is_err());
    assert_eq!(actor.ask(Note(22)).await, Err(AskError::Stopped));

    let dead = system.dead_letters();
    assert_eq!(dead.count(DeadLetterReason::MailboxFull), 2);
    assert_eq!(dead.count(DeadLetterReason::DroppedAtStop), 3);
    assert_eq!(dead.count(DeadLetterReason::ActorStopped), 3);
    assert_eq!(dead.count(DeadLetterReason::ReplyUndeliverable), 0);
    assert_eq!(dead.total(), 8);

    let mut seen = Vec::new();
    for _ in 0..8 {
        let letter = within(PATIENCE, stream.recv()).await.unwrap();
        assert_eq!(letter.recipient, actor.id());
        assert!(letter.message_type.ends_with("Note"), "{letter:?}");
        seen.push(letter.reason);
    }
    assert_eq!(
        seen,
        [
            DeadLetterReason::MailboxFull,
            DeadLetterReason::MailboxFull,
            DeadLetterReason::DroppedAtStop,
            DeadLetterReason::DroppedAtStop,
            DeadLetterReason::DroppedAtStop,
            DeadLetterReason::ActorStopped,
            DeadLetterReason::ActorStopped,
            DeadLetterReason::ActorStopped,
        ]
    );
    assert!(stream.try_recv().is_none());
    system.shutdown().await;
}

#[tokio::test]
async fn a_reply_to_an_ask_that_timed_out_is_a_dead_letter() {
    let system = ActorSystem::new();
    let (actor, gate) = slow(&system, MailboxCapacity::default());
    actor.tell(Hold).await.unwrap();
    until_busy(&actor).await;
    let result = actor.ask(Note(1)).timeout(Duration::from_millis(10)).await;
    assert!(matches!(result, Err(AskError::Timeout(_))));
    gate.notify_one();
    // The handler replied into the void once the gate opened.
    actor.ask(Note(2)).await.unwrap();
    assert_eq!(
        system
            .dead_letters()
            .count(DeadLetterReason::ReplyUndeliverable),
        1
    );
    system.shutdown().await;
}

//! A peer that sends faster than an actor takes its messages: the connection's reader queues
//! what arrives behind a message waiting for mailbox room, up to `REQUEST_BACKLOG` bytes of
//! the frames' bodies, then stops reading (counted; TCP pushes back), and delivers all of it
//! in order once the actor moves. What counts is the whole body held — a frame with a long
//! target name and a tiny payload counts its name too.

use super::*;
use postbox_remote::REQUEST_BACKLOG;
use postbox_testkit::{until, within, PATIENCE};
use postbox_wire::Target;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Frames whose bodies are a long target name (no actor has it) and a small `Record`.
const LONG_NAMES: usize = 40;
const NAME_LEN: usize = 60 * 1024;
/// Records to the journal after them.
const RECORDS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_reads_ahead_at_most_its_backlog_counted_by_whole_frames_then_delivers_in_order() {
    let gate = Arc::new(Semaphore::new(0));
    let node = RemoteNode::start_with(remote_config()).await;
    node.remote.expose::<Journal>();
    let journal = node
        .system
        .spawn(
            Props::new({
                let gate = gate.clone();
                move || Journal::gated(gate.clone())
            })
            .mailbox(MailboxCapacity::bounded(1)),
        )
        .expect("spawn");
    node.system
        .registry()
        .register("journal", &journal)
        .expect("register");
    let mut peer = member_client(&node).await;
    let sending = tokio::spawn(async move {
        // The journal holds, `Record(0)` fills its mailbox, `Record(1)` waits for room:
        // everything after queues in the reader.
        peer.tell(Target::Name("journal".into()), &Hold).await?;
        for n in 0..2 {
            peer.tell(Target::Name("journal".into()), &Record(n))
                .await?;
        }
        for i in 0..LONG_NAMES {
            let name = format!("{i:0>width$}", width = NAME_LEN);
            peer.tell(Target::Name(name), &Record(u64::MAX)).await?;
        }
        for n in 2..RECORDS {
            peer.tell(Target::Name("journal".into()), &Record(n))
                .await?;
        }
        Ok::<_, postbox_testkit::ClientError>(peer)
    });
    until(PATIENCE, "the reader to stop at its backlog", || {
        stats(&node.remote).reads_paused >= 1
    })
    .await;
    // It stopped with the three messages ahead of the queue and as many long names as fill
    // its backlog (the last one crossing the bound) — not with the megabytes of long names
    // sent, which would all fit if only payloads, tags and traces counted. One pause.
    let after = stats(&node.remote);
    let most = 3 + (REQUEST_BACKLOG / NAME_LEN) as u64 + 1;
    assert!(
        after.frames_in <= most,
        "read {} frames ahead, at most {most} expected",
        after.frames_in
    );
    assert_eq!(after.reads_paused, 1, "one pause, counted once");

    // The journal moves: everything arrives, the long names refused and counted, the
    // records in the order sent.
    gate.add_permits(1);
    let mut peer = within(PATIENCE, sending)
        .await
        .expect("the sender ends")
        .expect("every frame written");
    let log = peer
        .ask(Target::Name("journal".into()), &ReadLog)
        .await
        .expect("answered")
        .expect("a log");
    assert_eq!(log, (0..RECORDS).collect::<Vec<_>>());
    assert_eq!(
        node.system.dead_letters().total(),
        LONG_NAMES as u64,
        "each unknown target counted"
    );
    still_serving_journal(&node).await;
    node.shutdown().await;
}

/// A well-behaved client still gets answers from the journal.
async fn still_serving_journal(node: &RemoteNode) {
    let client = RemoteNode::start_with(remote_config()).await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.remote.lookup(node.addr(), "journal"))
        .await
        .expect("a well-behaved client is served");
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("hi".into()))).await,
        Ok("hi".to_owned())
    );
    client.shutdown().await;
}

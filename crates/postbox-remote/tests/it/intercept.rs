//! `Remote::intercept`: a hook on the connection's reader that sees a message's payload
//! before it is decoded and queued, and delivers it itself, later, or not at all.

use super::common::*;
use postbox::prelude::*;
use postbox_remote::{Arrival, Intercepted};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_delivers_holds_or_passes_messages_in_the_connections_order() {
    let (_host_system, host, _journal) = host().await;
    let taken: Arc<Mutex<Vec<u64>>> = Arc::default();
    let asks_seen: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    {
        let taken = taken.clone();
        host.intercept::<Journal, Record>(move |_, payload, arrival| {
            assert_eq!(arrival, Arrival::Tell);
            let Record(n) = postbox_wire::from_payload(payload).unwrap();
            match n % 3 {
                // Delivered by the hook.
                0 => {
                    taken.lock().unwrap().push(n);
                    Intercepted::Delivered
                }
                // Delivered later: the connection waits for it before the next message.
                1 => {
                    let taken = taken.clone();
                    Intercepted::Pending(Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(u64::from(n % 2 == 0))).await;
                        taken.lock().unwrap().push(n);
                    }))
                }
                // Queued in the journal as without a hook.
                _ => Intercepted::Queue,
            }
        });
    }
    {
        let asks_seen = asks_seen.clone();
        host.intercept::<Journal, ReadLog>(move |_, _, arrival| {
            asks_seen.lock().unwrap().push(arrival);
            Intercepted::Queue
        });
    }
    let (_system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    for n in 0..600 {
        journal.tell(Record(n)).await.unwrap();
    }
    // An ask behind the tells is queued (the hook cannot answer it) and sees every queued
    // tell before it.
    let log = within(PATIENCE, journal.ask(ReadLog)).await.unwrap();
    assert_eq!(log, (0..600).filter(|n| n % 3 == 2).collect::<Vec<_>>());
    assert_eq!(
        *taken.lock().unwrap(),
        (0..600).filter(|n| n % 3 != 2).collect::<Vec<_>>(),
        "delivered and pending ones, in the order sent"
    );
    assert_eq!(*asks_seen.lock().unwrap(), vec![Arrival::Ask]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_a_hook_keeps_is_answered_no_reply() {
    let (_host_system, host, _journal) = host().await;
    host.intercept::<Journal, ReadLog>(|_, _, _| Intercepted::Delivered);
    let (_system, client) = client().await;
    let journal: ActorRef<Journal> = within(PATIENCE, client.lookup(host.addr(), "journal"))
        .await
        .unwrap();
    assert_eq!(
        within(PATIENCE, journal.ask(ReadLog)).await,
        Err(AskError::NoReply)
    );
    // The connection serves on.
    assert_eq!(
        within(PATIENCE, journal.ask(Echo("still here".into())))
            .await
            .unwrap(),
        "still here"
    );
}

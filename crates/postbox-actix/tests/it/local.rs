//! Local tell and ask in both directions; the host as an ordinary actor (recipients, routers,
//! breakers, the registry); its depth.

use crate::common::*;
use postbox::prelude::*;
use postbox::{CircuitBreaker, Router, Routing};
use postbox_actix::{ActixHost, SendFromActix};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postbox_tells_and_asks_reach_the_actix_actor_in_send_order() {
    let system = ActorSystem::new();
    let addr = actix().start(|_| Counter::default());
    let host = system.spawn(ActixHost::props(addr.clone())).unwrap();

    for n in 1..=200 {
        host.tell(Add(n)).await.unwrap();
    }
    assert_eq!(
        within(PATIENCE, host.ask(Add(0))).await.unwrap(),
        (1..=200).sum::<u64>()
    );
    let mut expected: Vec<u64> = (1..=200).collect();
    expected.push(0);
    assert_eq!(within(PATIENCE, host.ask(ReadLog)).await.unwrap(), expected);

    // A `Recipient<M>` made from the host, and the registry, hand out the same actor.
    let recipient: Recipient<Add> = host.recipient();
    assert_eq!(
        within(PATIENCE, recipient.ask(Add(1))).await.unwrap(),
        20_101
    );
    system.registry().register("counter", &host).unwrap();
    let found: ActorRef<ActixHost<Counter>> = system.registry().lookup("counter").unwrap();
    assert_eq!(found, host);
    assert_eq!(within(PATIENCE, found.ask(Add(1))).await.unwrap(), 20_102);

    // The actix side sees exactly what went through the host.
    assert_eq!(within(PATIENCE, addr.send(Add(0))).await.unwrap(), 20_102);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_and_circuit_breakers_use_hosts_like_any_actor() {
    let system = ActorSystem::new();
    let a = actix().start(|_| Counter::default());
    let b = actix().start(|_| Counter::default());
    let host_a = system.spawn(ActixHost::props(a.clone())).unwrap();
    let host_b = system.spawn(ActixHost::props(b.clone())).unwrap();

    // Round robin over the two hosts.
    let router = Router::<Add>::group([host_a.clone(), host_b.clone()])
        .spawn(&system)
        .await
        .unwrap();
    for _ in 0..10 {
        router.tell(Add(1)).await.unwrap();
    }
    assert_eq!(within(PATIENCE, host_a.ask(Add(0))).await.unwrap(), 5);
    assert_eq!(within(PATIENCE, host_b.ask(Add(0))).await.unwrap(), 5);

    // Smallest mailbox sees the actix side's backlog: with `a` holding three unanswered
    // `Wait`s, everything goes to `b`.
    let waits: Vec<_> = (0..3)
        .map(|_| {
            let host_a = host_a.clone();
            tokio::spawn(async move { host_a.ask(Wait).await })
        })
        .collect();
    until(PATIENCE, "a's waits to be in flight", || {
        host_a.depth() == 3
    })
    .await;
    let balanced = Router::<Add>::group([host_a.clone(), host_b.clone()])
        .routing(Routing::smallest_mailbox())
        .spawn(&system)
        .await
        .unwrap();
    for _ in 0..4 {
        within(PATIENCE, balanced.ask(Add(10))).await.unwrap();
    }
    assert_eq!(within(PATIENCE, host_b.ask(Add(0))).await.unwrap(), 45);
    assert_eq!(within(PATIENCE, host_a.ask(Release)).await.unwrap(), 3);
    for wait in waits {
        assert_eq!(within(PATIENCE, wait).await.unwrap(), Ok("released"));
    }
    assert_eq!(within(PATIENCE, host_a.ask(Add(0))).await.unwrap(), 5);

    // A breaker guards a host like any actor.
    let breaker = CircuitBreaker::builder("actix-counter").build().unwrap();
    let guarded = breaker.guard(host_a.clone());
    assert_eq!(within(PATIENCE, guarded.ask(Add(1))).await.unwrap(), 6);
    assert_eq!(breaker.stats().successes, 1);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_actix_reply_does_not_hold_up_the_host() {
    let system = ActorSystem::new();
    let host = system
        .spawn(ActixHost::props(actix().start(|_| Counter::default())))
        .unwrap();
    // The `Wait` is answered only after the `Release` sent behind it: a host that waited for
    // each actix reply before taking its next message would never deliver the `Release`.
    let wait = tokio::spawn({
        let host = host.clone();
        async move { host.ask(Wait).await }
    });
    until(PATIENCE, "the wait to be in flight", || host.depth() == 1).await;
    assert_eq!(within(PATIENCE, host.ask(Release)).await.unwrap(), 1);
    assert_eq!(within(PATIENCE, wait).await.unwrap(), Ok("released"));
    until(PATIENCE, "nothing in flight", || host.depth() == 0).await;
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_count_in_the_hosts_depth_wherever_postbox_reports_it() {
    let system = ActorSystem::new();
    let addr = actix().start(|_| Counter::default());
    let host = system
        .spawn(
            ActixHost::builder(addr.clone())
                .max_in_flight(4)
                .props()
                .mailbox(MailboxCapacity::bounded(2)),
        )
        .unwrap();
    let waits: Vec<_> = (0..7)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.ask(Wait).await })
        })
        .collect();
    // Four in the actix mailbox (the bound), one in the host's hand waiting for a place, two
    // in its postbox mailbox (full).
    until(PATIENCE, "the host to fill up", || {
        host.stats().in_flight == 4 && host.depth() == 6
    })
    .await;
    let stats = host.stats();
    assert_eq!((stats.depth, stats.in_flight), (6, 4));
    assert_eq!(host.load(), 7);
    assert!(matches!(host.try_tell(Add(1)), Err(TrySendError::Full(_))));

    // The actor table and its walk (what the metrics endpoint reads) say the same.
    assert_eq!(system.depth(host.id()), Some(6));
    assert_eq!(system.actor(host.id()).unwrap().stats.depth, 6);
    let mut seen = None;
    system.for_each_actor(|view| {
        if view.id() == host.id() {
            seen = Some((view.depth(), view.actor_type()));
        }
    });
    let (depth, actor_type) = seen.unwrap();
    assert_eq!(depth, 6);
    assert!(actor_type.contains("ActixHost"));

    // The host is saturated, so this goes straight to the actix actor (through the host it
    // would queue behind the `Wait`s it releases). Everything drains; the depth follows.
    let mut released = 0;
    while released < 7 {
        released += within(PATIENCE, addr.send(Release)).await.unwrap();
    }
    for wait in waits {
        assert_eq!(within(PATIENCE, wait).await.unwrap(), Ok("released"));
    }
    until(PATIENCE, "the depth to return to 0", || host.depth() == 0).await;
    assert_eq!(host.stats().in_flight, 0);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actix_actor_asks_and_tells_postbox_actors() {
    let system = ActorSystem::new();
    let ledger = system.spawn(Ledger::default).unwrap();
    let frontend = {
        let ledger = ledger.clone();
        actix().start(move |_| Frontend {
            ledger,
            forwarded: 0,
        })
    };

    // `ResponseActFuture` (the actix actor's state updated on the way back), `ResponseFuture`
    // and an owned tell, interleaved; the ledger sees them in order.
    for n in 0..30 {
        let reply = match n % 3 {
            0 => {
                within(PATIENCE, frontend.send(Forward(n)))
                    .await
                    .unwrap()
                    .unwrap()
                    .0
            }
            1 => within(PATIENCE, frontend.send(ForwardPlain(n)))
                .await
                .unwrap()
                .unwrap(),
            _ => {
                assert!(within(PATIENCE, frontend.send(Notify(n))).await.unwrap());
                within(PATIENCE, ledger.ask(Entries)).await.unwrap().len()
            }
        };
        assert_eq!(reply, n as usize + 1);
    }
    assert_eq!(
        within(PATIENCE, frontend.send(Forward(30))).await.unwrap(),
        Ok((31, 11))
    );
    assert_eq!(
        within(PATIENCE, ledger.ask(Entries)).await.unwrap(),
        (0..=30).collect::<Vec<_>>()
    );

    // Through a `Recipient`, from an actix arbiter, with the helper's timeout.
    let recipient: Recipient<Record> = ledger.recipient();
    let on_arbiter = {
        let (tx, rx) = tokio::sync::oneshot::channel();
        actix().arbiter().spawn(async move {
            let _ = tx.send(recipient.ask_owned(Record(99)).await);
        });
        rx
    };
    assert_eq!(within(PATIENCE, on_arbiter).await.unwrap(), Ok(32));
    let stalled = system.spawn(Ledger::default).unwrap();
    let impatient = actix().start(move |_| Frontend {
        ledger: stalled,
        forwarded: 0,
    });
    assert_eq!(
        within(PATIENCE, impatient.send(Impatient)).await.unwrap(),
        Err(AskError::Timeout(Duration::from_millis(50)))
    );
}

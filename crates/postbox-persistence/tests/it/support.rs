//! A persistent counter actor and helpers shared by the tests.

use postbox::prelude::*;
use postbox::{Backoff, BackoffSupervisor};
use postbox_persistence::prelude::*;
use postbox_persistence::Recovery;
use serde::{Deserialize, Serialize, Serializer};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// What happened to a counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum CounterEvent {
    Added(u64),
    /// Never encodes: its serializer fails.
    #[serde(serialize_with = "refuse")]
    Unencodable(u64),
}

fn refuse<S: Serializer>(_: &u64, _: S) -> Result<S::Ok, S::Error> {
    Err(serde::ser::Error::custom(
        "this event refuses to be encoded",
    ))
}

impl Versioned for CounterEvent {
    const TAG: &'static str = "test.counter-event";
}

/// A counter's state: the sum and every amount, in order.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tally {
    pub(crate) total: u64,
    pub(crate) amounts: Vec<u64>,
}

impl Versioned for Tally {
    const TAG: &'static str = "test.tally";
}

impl EventSourced for Tally {
    type Event = CounterEvent;

    fn apply(&mut self, event: &CounterEvent) {
        if let CounterEvent::Added(n) = event {
            self.total += n;
            self.amounts.push(*n);
        }
    }
}

/// An event-sourced counter.
pub(crate) struct Counter {
    pub(crate) tally: Journaled<Tally>,
    pub(crate) recovery: Option<Recovery>,
    /// Skips recovery (to test what happens then).
    pub(crate) forget_recovery: bool,
}

impl Actor for Counter {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        if !self.forget_recovery {
            self.recovery = Some(self.tally.recover().await?);
        }
        Ok(())
    }
}

pub(crate) struct Add(pub(crate) u64);
impl Message for Add {
    type Reply = Result<u64, PersistError>;
}
impl Handler<Add> for Counter {
    async fn handle(&mut self, Add(n): Add, ctx: &mut Context<Self>) -> Result<u64, PersistError> {
        self.tally.persist(ctx, CounterEvent::Added(n)).await?;
        Ok(self.tally.state().total)
    }
}

pub(crate) struct AddAll(pub(crate) Vec<u64>);
impl Message for AddAll {
    type Reply = Result<u64, PersistError>;
}
impl Handler<AddAll> for Counter {
    async fn handle(
        &mut self,
        AddAll(all): AddAll,
        ctx: &mut Context<Self>,
    ) -> Result<u64, PersistError> {
        self.tally
            .persist_all(ctx, all.into_iter().map(CounterEvent::Added))
            .await?;
        Ok(self.tally.state().total)
    }
}

pub(crate) struct AddUnencodable;
impl Message for AddUnencodable {
    type Reply = Result<u64, PersistError>;
}
impl Handler<AddUnencodable> for Counter {
    async fn handle(
        &mut self,
        _: AddUnencodable,
        ctx: &mut Context<Self>,
    ) -> Result<u64, PersistError> {
        self.tally
            .persist(ctx, CounterEvent::Unencodable(1))
            .await?;
        Ok(self.tally.state().total)
    }
}

pub(crate) struct Get;
impl Message for Get {
    type Reply = (Tally, u64);
}
impl Handler<Get> for Counter {
    async fn handle(&mut self, _: Get, _: &mut Context<Self>) -> (Tally, u64) {
        (self.tally.state().clone(), self.tally.seq())
    }
}

pub(crate) struct TakeSnapshot;
impl Message for TakeSnapshot {
    type Reply = Result<(), PersistError>;
}
impl Handler<TakeSnapshot> for Counter {
    async fn handle(&mut self, _: TakeSnapshot, _: &mut Context<Self>) -> Result<(), PersistError> {
        self.tally.snapshot().await
    }
}

pub(crate) struct LastRecovery;
impl Message for LastRecovery {
    type Reply = (Option<Recovery>, u32);
}
impl Handler<LastRecovery> for Counter {
    async fn handle(
        &mut self,
        _: LastRecovery,
        ctx: &mut Context<Self>,
    ) -> (Option<Recovery>, u32) {
        (self.recovery, ctx.restarts())
    }
}

pub(crate) struct Panic;
impl Message for Panic {
    type Reply = ();
}
impl Handler<Panic> for Counter {
    async fn handle(&mut self, _: Panic, _: &mut Context<Self>) {
        panic!("the handler panics on purpose");
    }
}

/// A counter of `id` in `persistence`, restarted only after failures.
pub(crate) fn counter_props(persistence: &Persistence, id: &str) -> Props<Counter> {
    counter_props_with(persistence, id, |j| j)
}

/// A counter whose `Journaled` is adjusted by `configure` (snapshot policy).
pub(crate) fn counter_props_with(
    persistence: &Persistence,
    id: &str,
    configure: impl Fn(Journaled<Tally>) -> Journaled<Tally> + Send + 'static,
) -> Props<Counter> {
    let persistence = persistence.clone();
    let id = PersistenceId::new(id);
    Props::new(move || Counter {
        tally: configure(persistence.journaled(id.clone())),
        recovery: None,
        forget_recovery: false,
    })
    .restart(Restart::Transient)
}

/// A counter kept alive by a backoff supervisor (restarts after 10–50 ms, for ever).
pub(crate) async fn supervised_counter(
    system: &ActorSystem,
    persistence: &Persistence,
    id: &str,
) -> ActorRef<Counter> {
    let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
    BackoffSupervisor::on_failure(counter_props(persistence, id), backoff)
        .spawn(system)
        .await
        .unwrap()
}

/// Every stored event of `id`, as amounts.
pub(crate) async fn stored_amounts(persistence: &Persistence, id: &str) -> Vec<(u64, u64)> {
    persistence
        .journal()
        .replay(&PersistenceId::new(id), 1, u64::MAX, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| match e.record.decode::<CounterEvent>().unwrap() {
            CounterEvent::Added(n) => (e.seq, n),
            other => panic!("unexpected stored event {other:?}"),
        })
        .collect()
}

/// Starts watching `actor` for its end now (the watch is placed before this returns), and
/// resolves with the reason once it has ended. Unlike a bare `wait_for_stop`, the reason is
/// not lost to a race with an actor that ends right after.
pub(crate) async fn watch_stop<A: Actor>(
    actor: &ActorRef<A>,
) -> Pin<Box<dyn Future<Output = ExitReason> + Send>> {
    let actor = actor.clone();
    let mut waiting: Pin<Box<dyn Future<Output = ExitReason> + Send>> =
        Box::pin(async move { actor.wait_for_stop().await });
    match poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await {
        Poll::Ready(reason) => Box::pin(std::future::ready(reason)),
        Poll::Pending => waiting,
    }
}

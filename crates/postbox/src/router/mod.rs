//! Routers: [`Router`] (its docs state the semantics) and [`Routing`]. The routee set is a
//! snapshot in the [`RouterState`] that a router's handles share with its manager; `manager.rs`
//! is the actor behind each router (and the builders), `routing.rs` the strategies.

mod manager;
mod routing;

pub use manager::{GroupBuilder, PoolBuilder, Resizer};
pub use routing::Routing;

use crate::actor::{ActorId, Message};
use crate::actor_ref::{ActorRef, Recipient};
use crate::dead_letters::{DeadLetter, DeadLetterReason};
use crate::error::{AskError, SendError, TrySendError};
use crate::system::SystemShared;
use manager::RouterActor;
use routing::{Kind, Routees};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::Poll;
use std::time::Duration;

/// One address in front of many actors (the *distribute* pattern): a handle to a router, cheap
/// to clone, `Send + Sync`.
///
/// A router sends each `M` to one (or several) of its routees, chosen by its
/// [`Routing`] strategy. Routing happens in the sender's task, straight into the chosen
/// routee's mailbox: there is no router mailbox in the data path, so a router adds no hop, no
/// queue and no ordering hazard — messages from one sender to one routee stay in order.
///
/// Behind every router runs a small manager actor that keeps the routee set:
///
/// - a **pool** router ([`Router::pool`]) spawns its routees as the manager's children,
///   supervises them (its [`SupervisorStrategy`](crate::SupervisorStrategy) restarts failed
///   routees in place), replaces routees that stop for good (same name, so consistent hashing
///   keeps their keys), and optionally resizes between bounds by the routees' real load
///   ([`Resizer`]);
/// - a **group** router ([`Router::group`]) routes over actors that already exist, local or
///   remote: they are all [`Recipient`]s.
///
/// Routees that terminate leave the set at once: the manager watches each of them, and a
/// sender that finds a routee closed removes it and tries the next one before its message can
/// be lost. When no routee is left, a `tell` fails handing the message back and counts it as a
/// dead letter with reason [`NoRoutees`](crate::DeadLetterReason::NoRoutees); an `ask` resolves
/// with [`AskError::NoRoutees`].
///
/// Stopping the router ([`Router::stop`]) stops the manager, and with it a pool's routees; a
/// group's routees keep running.
///
/// ```
/// use postbox::prelude::*;
/// use postbox::{Router, Routing};
///
/// struct Worker;
/// impl Actor for Worker {}
///
/// struct Square(u64);
/// impl Message for Square { type Reply = u64; }
/// impl Handler<Square> for Worker {
///     async fn handle(&mut self, Square(n): Square, _: &mut Context<Self>) -> u64 { n * n }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let system = ActorSystem::new();
/// let workers = Router::pool(4, || Worker)
///     .routing(Routing::smallest_mailbox())
///     .name("squares")
///     .spawn(&system)
///     .await?;
/// assert_eq!(workers.len(), 4);
/// assert_eq!(workers.ask(Square(7)).await?, 49);
/// # system.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Router<M: Message> {
    state: Arc<RouterState<M>>,
}

/// A router's routing, routee set and manager: what its handles and its manager share.
pub(crate) struct RouterState<M: Message> {
    routing: Routing<M>,
    routees: RwLock<Arc<Routees<M>>>,
    cursor: AtomicUsize,
    system: Arc<SystemShared>,
    manager: OnceLock<ActorRef<RouterActor<M>>>,
}

impl<M: Message> RouterState<M> {
    pub(crate) fn new(routing: Routing<M>, system: Arc<SystemShared>) -> Self {
        let empty = Arc::new(Routees::new(Vec::new(), &routing));
        Self {
            routing,
            routees: RwLock::new(empty),
            cursor: AtomicUsize::new(0),
            system,
            manager: OnceLock::new(),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Routees<M>> {
        self.routees
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the routee set with `edit` applied to the current list.
    pub(crate) fn update(&self, edit: impl FnOnce(&mut Vec<Recipient<M>>)) {
        let mut routees = self.routees.write().unwrap_or_else(PoisonError::into_inner);
        let mut list = routees.list.clone();
        edit(&mut list);
        *routees = Arc::new(Routees::new(list, &self.routing));
    }

    pub(crate) fn remove(&self, id: ActorId) {
        if self.snapshot().list.iter().any(|r| r.id() == id) {
            self.update(|list| list.retain(|r| r.id() != id));
        }
    }

    fn manager_id(&self) -> ActorId {
        self.manager.get().map_or(ActorId(0), ActorRef::id)
    }

    fn no_routees(&self) {
        self.system.dead_letters.record(DeadLetter {
            recipient: self.manager_id(),
            recipient_type: "Router",
            message_type: std::any::type_name::<M>(),
            reason: DeadLetterReason::NoRoutees,
        });
    }
}

impl<M: Message> Router<M> {
    /// Sends `msg` to the routee the strategy picks (to all of them for broadcast and
    /// scatter-gather), waiting while its mailbox is full. A routee found stopped leaves the
    /// set and the next one is tried. Fails, handing the message back, only when no routee is
    /// left — then the message is counted as a dead letter
    /// ([`NoRoutees`](crate::DeadLetterReason::NoRoutees)).
    pub async fn tell(&self, msg: M) -> Result<(), SendError<M>> {
        let state = &*self.state;
        if let Kind::Broadcast { clone } | Kind::ScatterGather { clone, .. } = state.routing.kind {
            return self.broadcast(msg, clone).await;
        }
        let mut msg = msg;
        loop {
            let routees = state.snapshot();
            let Some(index) = routees.pick(&state.routing, &state.cursor, &msg) else {
                state.no_routees();
                return Err(SendError(msg));
            };
            let routee = &routees.list[index];
            match routee.offer_waiting(msg).await {
                Ok(()) => return Ok(()),
                Err(SendError(back)) => {
                    state.remove(routee.id());
                    msg = back;
                }
            }
        }
    }

    async fn broadcast(&self, msg: M, clone: fn(&M) -> M) -> Result<(), SendError<M>> {
        let routees = self.state.snapshot();
        let mut delivered = false;
        for routee in &routees.list {
            match routee.offer_waiting(clone(&msg)).await {
                Ok(()) => delivered = true,
                Err(_) => self.state.remove(routee.id()),
            }
        }
        if delivered {
            Ok(())
        } else {
            self.state.no_routees();
            Err(SendError(msg))
        }
    }

    /// Sends `msg` to the picked routee if it has room right now. A full routee hands the
    /// message back with `Full` (counted as a dead letter, like [`ActorRef::try_tell`]); a
    /// stopped routee leaves the set and the next one is tried; with no routee left the
    /// message comes back as `Closed` and counts as a `NoRoutees` dead letter. Broadcast and
    /// scatter-gather routers offer a copy to every routee and succeed if any took one.
    pub fn try_tell(&self, msg: M) -> Result<(), TrySendError<M>> {
        let state = &*self.state;
        if let Kind::Broadcast { clone } | Kind::ScatterGather { clone, .. } = state.routing.kind {
            return self.try_broadcast(msg, clone);
        }
        let mut msg = msg;
        loop {
            let routees = state.snapshot();
            let Some(index) = routees.pick(&state.routing, &state.cursor, &msg) else {
                state.no_routees();
                return Err(TrySendError::Closed(msg));
            };
            let routee = &routees.list[index];
            match routee.offer(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => return routee.try_tell(back),
                Err(TrySendError::Closed(back)) => {
                    state.remove(routee.id());
                    msg = back;
                }
            }
        }
    }

    fn try_broadcast(&self, msg: M, clone: fn(&M) -> M) -> Result<(), TrySendError<M>> {
        let state = &*self.state;
        let routees = state.snapshot();
        let mut accepted = false;
        for routee in &routees.list {
            match routee.offer(clone(&msg)) {
                Ok(()) => accepted = true,
                Err(TrySendError::Closed(_)) => state.remove(routee.id()),
                Err(TrySendError::Full(_)) => {}
            }
        }
        if accepted {
            return Ok(());
        }
        match routees.list.first() {
            Some(routee) => routee.try_tell(msg),
            None => {
                state.no_routees();
                Err(TrySendError::Closed(msg))
            }
        }
    }

    /// Asks through the router: one routee for most strategies; every routee (first reply
    /// wins) for broadcast and scatter-gather; one routee and then more for tail-chopping.
    /// Resolves exactly once, like [`ActorRef::ask`]; with no live routee, with
    /// [`AskError::NoRoutees`].
    pub fn ask(&self, msg: M) -> RouterAsk<'_, M> {
        RouterAsk {
            router: self,
            msg,
            timeout: None,
        }
    }

    /// A snapshot of the current routees.
    pub fn routees(&self) -> Vec<Recipient<M>> {
        self.state.snapshot().list.clone()
    }

    /// How many routees there are now.
    pub fn len(&self) -> usize {
        self.state.snapshot().list.len()
    }

    /// Whether no routee is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The routing strategy.
    pub fn routing(&self) -> &Routing<M> {
        &self.state.routing
    }

    /// The id of the router's manager actor, which names the router in dead letters and the
    /// actor table.
    pub fn id(&self) -> ActorId {
        self.state.manager_id()
    }

    /// Adds a routee (watched: it leaves the set when it terminates). Meant for group routers;
    /// on a pool it adds a routee the pool does not own or replace.
    pub fn add_routee(&self, routee: impl Into<Recipient<M>>) {
        let routee = routee.into();
        if let Some(manager) = self.state.manager.get() {
            let _ = manager.try_tell(manager::Watch(routee.clone()));
        }
        let id = routee.id();
        self.state.update(|list| {
            if !list.iter().any(|r| r.id() == id) {
                list.push(routee);
            }
        });
    }

    /// Removes a routee from the set (it keeps running).
    pub fn remove_routee(&self, id: ActorId) {
        self.state.remove(id);
    }

    /// Stops the router: its manager stops, and a pool's routees with it.
    pub fn stop(&self) {
        if let Some(manager) = self.state.manager.get() {
            manager.stop();
        }
    }

    async fn ask_one(&self, msg: M, timeout: Option<Duration>) -> Result<M::Reply, AskError> {
        let state = &*self.state;
        loop {
            let routees = state.snapshot();
            let Some(index) = routees.pick(&state.routing, &state.cursor, &msg) else {
                state.no_routees();
                return Err(AskError::NoRoutees);
            };
            let routee = &routees.list[index];
            if !routee.is_alive() {
                state.remove(routee.id());
                continue;
            }
            let ask = routee.ask(msg);
            let ask = match timeout {
                Some(timeout) => ask.timeout(timeout),
                None => ask,
            };
            return ask.await;
        }
    }

    /// Scatter-gather and tail-chopping: the same message to several routees, first reply
    /// wins. `interval` is `None` for scatter-gather (all at once).
    async fn ask_many(
        &self,
        msg: M,
        clone: fn(&M) -> M,
        interval: Option<Duration>,
        within: Duration,
    ) -> Result<M::Reply, AskError> {
        let routees = self.state.snapshot();
        let live: Vec<&Recipient<M>> = routees.list.iter().filter(|r| r.is_alive()).collect();
        if live.is_empty() {
            self.state.no_routees();
            return Err(AskError::NoRoutees);
        }
        let start = self
            .state
            .cursor
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // One copy per routee made up front: a `&M` held across the awaits below would demand
        // `M: Sync`.
        let mut copies: Vec<M> = (1..live.len()).map(|_| clone(&msg)).collect();
        copies.push(msg);
        let order = (0..live.len()).map(|i| live[(start + i) % live.len()]);
        let deadline = tokio::time::Instant::now() + within;
        let mut pending = order.zip(copies).collect::<Vec<_>>().into_iter();
        let mut in_flight = Vec::new();
        let launch = |(routee, msg)| launch_ask(routee, msg, deadline);
        match interval {
            None => in_flight.extend(pending.by_ref().map(launch)),
            Some(_) => in_flight.extend(pending.next().map(launch)),
        }
        let mut chop = interval.map(|i| Box::pin(tokio::time::sleep(i)));
        let mut last_error = AskError::Timeout(within);
        let overall = tokio::time::sleep_until(deadline);
        tokio::pin!(overall);
        std::future::poll_fn(|cx| loop {
            let mut index = 0;
            while index < in_flight.len() {
                match in_flight[index].as_mut().poll(cx) {
                    Poll::Ready(Ok(reply)) => return Poll::Ready(Ok(reply)),
                    Poll::Ready(Err(error)) => {
                        if !matches!(error, AskError::Timeout(_)) {
                            last_error = error;
                        }
                        drop(in_flight.swap_remove(index));
                    }
                    Poll::Pending => index += 1,
                }
            }
            // Chop: after each interval without a reply — or at once when every ask so far
            // failed — ask the next routee too.
            let chop_due = match (&mut chop, interval) {
                (Some(timer), Some(every)) => {
                    if timer.as_mut().poll(cx).is_ready() {
                        timer.as_mut().reset(tokio::time::Instant::now() + every);
                        true
                    } else {
                        in_flight.is_empty()
                    }
                }
                _ => false,
            };
            if chop_due {
                if let Some(next) = pending.next() {
                    in_flight.push(launch(next));
                    continue;
                }
            }
            if in_flight.is_empty() && (interval.is_none() || pending.len() == 0) {
                return Poll::Ready(Err(last_error));
            }
            if overall.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(AskError::Timeout(within)));
            }
            return Poll::Pending;
        })
        .await
    }
}

type PendingAsk<'a, R> = Pin<Box<dyn Future<Output = Result<R, AskError>> + Send + 'a>>;

fn launch_ask<M: Message>(
    routee: &Recipient<M>,
    msg: M,
    deadline: tokio::time::Instant,
) -> PendingAsk<'_, M::Reply> {
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    Box::pin(routee.ask(msg).timeout(remaining).into_future())
}

impl<M: Message> Clone for Router<M> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<M: Message> fmt::Debug for Router<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routing", &self.state.routing)
            .field("routees", &self.len())
            .finish_non_exhaustive()
    }
}

/// An ask through a [`Router`]; `.await` it, optionally after [`timeout`](Self::timeout).
#[must_use = "an ask does nothing unless awaited"]
pub struct RouterAsk<'a, M: Message> {
    router: &'a Router<M>,
    msg: M,
    timeout: Option<Duration>,
}

impl<M: Message> RouterAsk<'_, M> {
    /// Overrides the ask timeout (default: the system's, or the strategy's deadline for
    /// scatter-gather and tail-chopping).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a, M: Message> IntoFuture for RouterAsk<'a, M> {
    type Output = Result<M::Reply, AskError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let RouterAsk {
            router,
            msg,
            timeout,
        } = self;
        let default = router.state.system.config.ask_timeout;
        Box::pin(async move {
            match router.state.routing.kind {
                Kind::Broadcast { clone } => {
                    router
                        .ask_many(msg, clone, None, timeout.unwrap_or(default))
                        .await
                }
                Kind::ScatterGather { clone, within } => {
                    router
                        .ask_many(msg, clone, None, timeout.unwrap_or(within))
                        .await
                }
                Kind::TailChopping {
                    clone,
                    interval,
                    within,
                } => {
                    router
                        .ask_many(msg, clone, Some(interval), timeout.unwrap_or(within))
                        .await
                }
                _ => router.ask_one(msg, timeout).await,
            }
        })
    }
}

impl<M: Message> fmt::Debug for RouterAsk<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterAsk")
            .field("router", self.router)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

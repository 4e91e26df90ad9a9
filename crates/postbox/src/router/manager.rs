//! The actor behind every router: keeps the routee set, supervises and replaces a pool's
//! routees, resizes pools.

use super::routing::Routing;
use super::{Router, RouterState};
use crate::actor::{Actor, ActorId, Handler, Message};
use crate::actor_ref::{ActorRef, Recipient};
use crate::context::Context;
use crate::error::SpawnError;
use crate::lifecycle::Terminated;
use crate::mailbox::MailboxCapacity;
use crate::props::Props;
use crate::supervision::{Restart, SupervisorStrategy};
use crate::system::ActorSystem;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Spawns one routee of a pool as a child of the manager.
trait SpawnRoutee<M: Message>: Send + Sync + 'static {
    fn spawn(
        &self,
        ctx: &mut Context<RouterActor<M>>,
        name: String,
        mailbox: Option<MailboxCapacity>,
        restart: Restart,
    ) -> Result<Recipient<M>, SpawnError>;
}

struct PoolSpawner<A, F> {
    factory: Arc<F>,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A, M, F> SpawnRoutee<M> for PoolSpawner<A, F>
where
    A: Handler<M>,
    M: Message,
    F: Fn() -> A + Send + Sync + 'static,
{
    fn spawn(
        &self,
        ctx: &mut Context<RouterActor<M>>,
        name: String,
        mailbox: Option<MailboxCapacity>,
        restart: Restart,
    ) -> Result<Recipient<M>, SpawnError> {
        let factory = self.factory.clone();
        let mut props = Props::new(move || factory()).name(name).restart(restart);
        if let Some(mailbox) = mailbox {
            props = props.mailbox(mailbox);
        }
        ctx.spawn(props).map(Recipient::from)
    }
}

/// Grows and shrinks a pool by its routees' load (Akka's default resizer, checked on a timer).
///
/// Every [`interval`](Self::interval) the pool counts its *busy* routees — those whose
/// [`load`](crate::ActorRef::load) is at least [`pressure_threshold`](Self::pressure_threshold).
/// If all are busy, it grows by `rampup_rate` of its size (at least one routee); if fewer than
/// `backoff_threshold` of them are busy, it shrinks by `backoff_rate` of its size (at least
/// one). The size stays within `[lower, upper]`. Routees removed by shrinking first leave the
/// routing set, then finish what is in their mailboxes and stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resizer {
    lower: usize,
    upper: usize,
    pressure_threshold: usize,
    rampup_rate: f64,
    backoff_threshold: f64,
    backoff_rate: f64,
    interval: Duration,
}

impl Resizer {
    /// A resizer keeping the pool between `lower` and `upper` routees (`lower` is raised to 1,
    /// `upper` to at least `lower`), with defaults: pressure threshold 1 (busy = handling or
    /// queued), ramp-up 20%, back-off below 30% busy by 10%, checked every second.
    pub fn new(lower: usize, upper: usize) -> Self {
        let lower = lower.max(1);
        Self {
            lower,
            upper: upper.max(lower),
            pressure_threshold: 1,
            rampup_rate: 0.2,
            backoff_threshold: 0.3,
            backoff_rate: 0.1,
            interval: Duration::from_secs(1),
        }
    }

    /// The load at which a routee counts as busy (at least 1).
    pub fn pressure_threshold(mut self, load: usize) -> Self {
        self.pressure_threshold = load.max(1);
        self
    }

    /// Growth per check when every routee is busy, as a fraction of the size.
    pub fn rampup_rate(mut self, rate: f64) -> Self {
        self.rampup_rate = rate.max(0.0);
        self
    }

    /// Shrink when fewer than this fraction of routees are busy (0 disables shrinking).
    pub fn backoff_threshold(mut self, fraction: f64) -> Self {
        self.backoff_threshold = fraction.clamp(0.0, 1.0);
        self
    }

    /// Shrinkage per check, as a fraction of the size.
    pub fn backoff_rate(mut self, rate: f64) -> Self {
        self.backoff_rate = rate.max(0.0);
        self
    }

    /// How often the load is checked.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The lower and upper bound.
    pub fn bounds(&self) -> (usize, usize) {
        (self.lower, self.upper)
    }

    /// How many routees to add (positive) or remove (negative) given the routees' loads.
    pub(crate) fn adjustment(&self, loads: &[usize]) -> isize {
        let size = loads.len();
        let busy = loads
            .iter()
            .filter(|&&load| load >= self.pressure_threshold)
            .count();
        let mut change: isize = 0;
        if size > 0 && busy == size {
            change = ((self.rampup_rate * size as f64).ceil() as isize).max(1);
        } else if self.backoff_threshold > 0.0
            && self.backoff_rate > 0.0
            && size > 0
            && (busy as f64) / (size as f64) < self.backoff_threshold
        {
            change = -((self.backoff_rate * size as f64).ceil() as isize).max(1);
        }
        let target = (size as isize + change).clamp(self.lower as isize, self.upper as isize);
        target - size as isize
    }
}

struct Pool<M: Message> {
    spawner: Box<dyn SpawnRoutee<M>>,
    size: usize,
    resizer: Option<Resizer>,
    mailbox: Option<MailboxCapacity>,
    restart: Restart,
}

/// The manager actor of a router.
pub(crate) struct RouterActor<M: Message> {
    state: Arc<RouterState<M>>,
    pool: Option<Arc<Pool<M>>>,
    /// Initial routees of a group router (used by the first instance only).
    group: Vec<Recipient<M>>,
    /// Pool routees by id, with their names (reused by replacements).
    members: Vec<(ActorId, String)>,
    /// Routees removed by shrinking: their termination is expected.
    retiring: HashSet<ActorId>,
    next_name: usize,
}

impl<M: Message> RouterActor<M> {
    fn spawn_routee(&mut self, ctx: &mut Context<Self>, name: Option<String>) {
        let Some(pool) = self.pool.clone() else {
            return;
        };
        let name = name.unwrap_or_else(|| {
            self.next_name += 1;
            format!("routee-{}", self.next_name)
        });
        match pool
            .spawner
            .spawn(ctx, name.clone(), pool.mailbox, pool.restart)
        {
            Ok(routee) => {
                ctx.watch(&routee);
                self.members.push((routee.id(), name));
                self.state.update(|list| list.push(routee));
            }
            Err(SpawnError::NameTaken(_)) => self.spawn_routee(ctx, None),
            Err(error) => {
                tracing::warn!(router = %ctx.path(), %error, "could not spawn a routee");
            }
        }
    }

    fn resize(&mut self, ctx: &mut Context<Self>, resizer: &Resizer) {
        let routees = self.state.snapshot();
        let mine: Vec<&Recipient<M>> = routees
            .list
            .iter()
            .filter(|r| self.members.iter().any(|(id, _)| *id == r.id()))
            .collect();
        let loads: Vec<usize> = mine.iter().map(|r| r.load()).collect();
        let change = resizer.adjustment(&loads);
        if change > 0 {
            for _ in 0..change {
                self.spawn_routee(ctx, None);
            }
        } else if change < 0 {
            // Retire the least loaded routees: they leave the set first, then drain and stop.
            let mut by_load: Vec<(usize, &Recipient<M>)> =
                loads.iter().copied().zip(mine.iter().copied()).collect();
            by_load.sort_by_key(|(load, _)| *load);
            let retire: Vec<Recipient<M>> = by_load
                .iter()
                .take(change.unsigned_abs())
                .map(|(_, r)| (*r).clone())
                .collect();
            for routee in retire {
                self.state.remove(routee.id());
                self.members.retain(|(id, _)| *id != routee.id());
                self.retiring.insert(routee.id());
                routee.drain_and_stop();
            }
        }
    }
}

impl<M: Message> Actor for RouterActor<M> {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), crate::BoxError> {
        match self.pool.clone() {
            Some(pool) => {
                self.state.update(Vec::clear);
                for _ in 0..pool.size {
                    self.spawn_routee(ctx, None);
                }
                if let Some(resizer) = pool.resizer {
                    let me = ctx.myself().clone();
                    tokio::spawn(async move {
                        let mut ticks = tokio::time::interval(resizer.interval);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ticks.tick().await;
                        loop {
                            ticks.tick().await;
                            if let Err(crate::TrySendError::Closed(_)) = me.try_tell(ResizeTick) {
                                break;
                            }
                        }
                    });
                }
            }
            None => {
                // First start: the routees given at build; after a restart: the current set.
                let routees = if self.group.is_empty() {
                    self.state.snapshot().list.clone()
                } else {
                    std::mem::take(&mut self.group)
                };
                for routee in &routees {
                    ctx.watch(routee);
                }
                let live = routees.into_iter().filter(Recipient::is_alive).collect();
                self.state.update(|list| *list = live);
            }
        }
        Ok(())
    }

    async fn stopping(&mut self, _ctx: &mut Context<Self>) {
        self.state.update(Vec::clear);
    }
}

impl<M: Message> fmt::Debug for RouterActor<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterActor")
            .field("routing", &self.state.routing)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl<M: Message> Handler<Terminated> for RouterActor<M> {
    async fn handle(&mut self, terminated: Terminated, ctx: &mut Context<Self>) {
        self.state.remove(terminated.id);
        if self.retiring.remove(&terminated.id) {
            return;
        }
        let Some(at) = self.members.iter().position(|(id, _)| *id == terminated.id) else {
            return;
        };
        let (_, name) = self.members.remove(at);
        tracing::debug!(router = %ctx.path(), routee = %name, reason = %terminated.reason, "replacing a routee");
        self.spawn_routee(ctx, Some(name));
    }
}

/// Watch a routee added through [`Router::add_routee`].
pub(crate) struct Watch<M: Message>(pub(crate) Recipient<M>);

impl<M: Message> Message for Watch<M> {
    type Reply = ();
}

impl<M: Message> Handler<Watch<M>> for RouterActor<M> {
    async fn handle(&mut self, Watch(routee): Watch<M>, ctx: &mut Context<Self>) {
        ctx.watch(&routee);
    }
}

/// The resizer's timer.
struct ResizeTick;

impl Message for ResizeTick {
    type Reply = ();
}

impl<M: Message> Handler<ResizeTick> for RouterActor<M> {
    async fn handle(&mut self, _: ResizeTick, ctx: &mut Context<Self>) {
        if let Some(resizer) = self.pool.as_ref().and_then(|pool| pool.resizer) {
            self.resize(ctx, &resizer);
        }
    }
}

/// Replies once the manager has started (its routees are in place).
struct Ready;

impl Message for Ready {
    type Reply = ();
}

impl<M: Message> Handler<Ready> for RouterActor<M> {
    async fn handle(&mut self, _: Ready, _: &mut Context<Self>) {}
}

/// Settings shared by both builders.
struct Common<M: Message> {
    routing: Routing<M>,
    name: Option<String>,
    supervisor: Option<SupervisorStrategy>,
}

impl<M: Message> Common<M> {
    fn new() -> Self {
        Self {
            routing: Routing::round_robin(),
            name: None,
            supervisor: None,
        }
    }

    async fn spawn(
        self,
        system: &Arc<crate::system::SystemShared>,
        pool: Option<Pool<M>>,
        group: Vec<Recipient<M>>,
        spawn: impl FnOnce(Props<RouterActor<M>>) -> Result<ActorRef<RouterActor<M>>, SpawnError>,
    ) -> Result<Router<M>, SpawnError> {
        let state = Arc::new(RouterState::new(self.routing, system.clone()));
        let pool = pool.map(Arc::new);
        let for_factory = state.clone();
        let mut props = Props::new(move || RouterActor {
            state: for_factory.clone(),
            pool: pool.clone(),
            group: group.clone(),
            members: Vec::new(),
            retiring: HashSet::new(),
            next_name: 0,
        })
        .mailbox(MailboxCapacity::bounded(64));
        if let Some(name) = self.name {
            props = props.name(name);
        }
        if let Some(strategy) = self.supervisor {
            props = props.supervisor(strategy);
        }
        let manager = spawn(props)?;
        let _ = state.manager.set(manager.clone());
        // The routees are in place once the manager has handled this (it starts first).
        let _ = manager.ask(Ready).await;
        Ok(Router { state })
    }
}

/// Builds a pool router: see [`Router::pool`].
pub struct PoolBuilder<M: Message> {
    common: Common<M>,
    spawner: Box<dyn SpawnRoutee<M>>,
    size: usize,
    resizer: Option<Resizer>,
    mailbox: Option<MailboxCapacity>,
    restart: Restart,
}

/// Builds a group router: see [`Router::group`].
pub struct GroupBuilder<M: Message> {
    common: Common<M>,
    routees: Vec<Recipient<M>>,
}

impl<M: Message> Router<M> {
    /// A pool of `size` routees built by `factory` (and rebuilt by it on restart), children of
    /// the router's manager. Defaults: round-robin, routees `Permanent` with the system's
    /// default mailbox, the system's default supervisor strategy for them.
    pub fn pool<A, F>(size: usize, factory: F) -> PoolBuilder<M>
    where
        A: Handler<M>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        PoolBuilder {
            common: Common::new(),
            spawner: Box::new(PoolSpawner {
                factory: Arc::new(factory),
                _actor: std::marker::PhantomData,
            }),
            size,
            resizer: None,
            mailbox: None,
            restart: Restart::Permanent,
        }
    }

    /// A router over existing actors (anything that handles `M`, local or — later — remote).
    /// Default: round-robin.
    pub fn group<R: Into<Recipient<M>>>(routees: impl IntoIterator<Item = R>) -> GroupBuilder<M> {
        GroupBuilder {
            common: Common::new(),
            routees: routees.into_iter().map(Into::into).collect(),
        }
    }
}

macro_rules! common_setters {
    () => {
        /// The routing strategy (default: round-robin).
        pub fn routing(mut self, routing: Routing<M>) -> Self {
            self.common.routing = routing;
            self
        }

        /// Names the router's manager actor (its routees appear under it).
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.common.name = Some(name.into());
            self
        }
    };
}

impl<M: Message> PoolBuilder<M> {
    common_setters!();

    /// How the manager supervises the routees (default: the system's default strategy).
    /// Restarted routees keep their place; routees that stop for good are replaced.
    pub fn supervisor(mut self, strategy: SupervisorStrategy) -> Self {
        self.common.supervisor = Some(strategy);
        self
    }

    /// Grows and shrinks the pool by load. The initial size is clamped to its bounds.
    pub fn resizer(mut self, resizer: Resizer) -> Self {
        self.resizer = Some(resizer);
        self
    }

    /// Each routee's mailbox (default: the system's).
    pub fn mailbox(mut self, mailbox: MailboxCapacity) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// Each routee's restart type (default: `Permanent`).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    fn into_pool(self) -> (Common<M>, Pool<M>) {
        let size = match self.resizer {
            Some(r) => self.size.clamp(r.lower, r.upper),
            None => self.size,
        };
        (
            self.common,
            Pool {
                spawner: self.spawner,
                size,
                resizer: self.resizer,
                mailbox: self.mailbox,
                restart: self.restart,
            },
        )
    }

    /// Spawns the router under the root guardian; resolves once its routees are running.
    pub async fn spawn(self, system: &ActorSystem) -> Result<Router<M>, SpawnError> {
        let (common, pool) = self.into_pool();
        common
            .spawn(&system.shared, Some(pool), Vec::new(), |props| {
                system.spawn(props)
            })
            .await
    }

    /// Spawns the router as a child of the actor owning `ctx`; resolves once its routees run.
    pub async fn spawn_in<P: Actor>(self, ctx: &mut Context<P>) -> Result<Router<M>, SpawnError> {
        let (common, pool) = self.into_pool();
        let system = ctx.system().shared.clone();
        common
            .spawn(&system, Some(pool), Vec::new(), |props| ctx.spawn(props))
            .await
    }
}

impl<M: Message> GroupBuilder<M> {
    common_setters!();

    /// Spawns the router's manager under the root guardian.
    pub async fn spawn(self, system: &ActorSystem) -> Result<Router<M>, SpawnError> {
        self.common
            .spawn(&system.shared, None, self.routees, |props| {
                system.spawn(props)
            })
            .await
    }

    /// Spawns the router's manager as a child of the actor owning `ctx`.
    pub async fn spawn_in<P: Actor>(self, ctx: &mut Context<P>) -> Result<Router<M>, SpawnError> {
        let system = ctx.system().shared.clone();
        self.common
            .spawn(&system, None, self.routees, |props| ctx.spawn(props))
            .await
    }
}

impl<M: Message> fmt::Debug for PoolBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("size", &self.size)
            .field("routing", &self.common.routing)
            .field("resizer", &self.resizer)
            .finish_non_exhaustive()
    }
}

impl<M: Message> fmt::Debug for GroupBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("routees", &self.routees.len())
            .field("routing", &self.common.routing)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Resizer;

    #[test]
    fn resizer_grows_when_all_are_busy_and_shrinks_when_few_are() {
        let resizer = Resizer::new(2, 6);
        assert_eq!(
            resizer.adjustment(&[1, 3, 2]),
            1,
            "all busy: +20% (at least 1)"
        );
        assert_eq!(
            resizer.adjustment(&[1, 1, 1, 1, 1, 1]),
            0,
            "at the upper bound"
        );
        assert_eq!(resizer.adjustment(&[0, 0, 0, 0, 1]), -1, "20% busy < 30%");
        assert_eq!(resizer.adjustment(&[0, 0]), 0, "at the lower bound");
        assert_eq!(resizer.adjustment(&[0, 1, 1]), 0, "some busy: keep");
        assert_eq!(resizer.adjustment(&[0]), 1, "below the lower bound");
        let eager = Resizer::new(1, 100).rampup_rate(0.5).pressure_threshold(3);
        assert_eq!(eager.adjustment(&[3, 5, 4, 9]), 2);
        assert_eq!(
            eager.adjustment(&[2, 2, 2, 2]),
            -1,
            "load 2 is not busy at threshold 3"
        );
    }
}

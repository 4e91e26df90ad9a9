//! [`ActixHost`]: a postbox actor that stands for one actix actor.
//!
//! The host owns an [`actix::Addr<A>`] and handles every message `M` that both `A` handles
//! (`actix::Handler<M>`) and that is a postbox [`Message`] whose reply is actix's result type.
//! It is an ordinary postbox actor, so its `ActorRef<ActixHost<A>>` (or a `Recipient<M>` made
//! from it) goes wherever a postbox ref goes: the registry, routers, circuit breakers, death
//! watch, `Remote::expose` and the cluster receptionist.
//!
//! # A message's path
//!
//! 1. A sender `tell`s or `ask`s the host: the message waits in the host's postbox mailbox
//!    like any other (bounded, with backpressure and an O(1) depth).
//! 2. The host takes it and puts it into the actix mailbox with `Addr::send`, in mailbox
//!    order, then returns at once: it does not wait for the actix handler. The reply handle
//!    goes to a small task that awaits actix's answer and completes the ask
//!    ([`Handler::handle_reply`]), so one slow actix reply never holds up the next message.
//! 3. At most [`max_in_flight`](ActixHostBuilder::max_in_flight) messages are in the actix
//!    mailbox (or being handled) at once; beyond that the host waits for one to finish, its
//!    own mailbox fills up, and postbox senders feel the backpressure as usual.
//!
//! Messages from one sender reach the actix actor in send order (the host forwards in mailbox
//! order, each send completes its push before the next). Replies complete in the order actix
//! produces them.
//!
//! # Depth
//!
//! The host publishes the messages it has forwarded and not yet seen answered as
//! [`InFlight`], so its depth in `ActorRef::depth`, the actor table and the
//! metrics endpoint is what waits in its postbox mailbox *plus* what waits in (or is being
//! handled from) the actix mailbox.
//!
//! # Lifecycle
//!
//! actix has no death watch, so the host notices that its actix actor has stopped in two
//! ways, whichever comes first:
//!
//! * a message in flight resolves with `MailboxError::Closed` while the address no longer
//!   reports `connected()` — at once, since actix drops what is left in a stopped actor's
//!   mailbox;
//! * a probe checks `Addr::connected()` every
//!   [`liveness_interval`](ActixHostBuilder::liveness_interval) (100 ms by default), which
//!   covers an idle actor.
//!
//! Either way the host stops (as [`ActorRef::stop`](postbox::ActorRef::stop) would: it is not
//! restarted), so its watchers get `Terminated` with `ExitReason::Stopped`, it leaves the
//! registry and the receptionist, and later sends are dead letters. The check is one atomic
//! load on the actix channel's state word; the bound on the delay is the interval.
//!
//! In the other direction the host only holds an `Addr`. When it stops it waits (within its
//! shutdown timeout) for the messages it forwarded to be answered, then drops the address;
//! by actix's own rule an actix actor that nobody addresses any more then stops.
//!
//! A message whose actix delivery fails (the actix actor stopped first) is counted as a
//! dead letter (`ActorStopped`) and its asker gets `AskError::Stopped`; a reply whose asker
//! gave up is counted as `ReplyUndeliverable`.
//!
//! # Why a postbox actor
//!
//! The host could have been a bare `Recipient<M>` backend that pushes straight into the actix
//! mailbox. As an actor it costs one more hop (the postbox mailbox) and a small task per
//! message, and in exchange everything that works with postbox actors works with it,
//! unchanged: a name in the registry, an id in the actor table and the metrics, `watch` and
//! `Terminated`, supervision and dispatchers, `Remote::expose` (remote delivery finds actors
//! in the actor table by id or name and needs a `RemoteActor` type) and the cluster
//! receptionist. Its bounded mailbox also gives actix senders what actix's `do_send` lacks:
//! backpressure and an honest depth.

use actix::dev::ToEnvelope;
use actix::{Addr, MailboxError};
use postbox::{
    Actor, ActorRef, ActorSystem, BoxError, Context, DeadLetter, DeadLetterReason, Handler,
    InFlight, Message, Props, ReplyTo,
};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Messages a host keeps in its actix actor's mailbox at most, by default: actix's own default
/// mailbox capacity, so the actix actor sees no more than a well-behaved actix sender would
/// give it.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// How often a host checks, by default, that its actix actor still runs.
pub const DEFAULT_LIVENESS_INTERVAL: Duration = Duration::from_millis(100);

/// A postbox actor standing for the actix actor behind an [`Addr<A>`]. See the
/// [module docs](self) for the semantics.
///
/// ```no_run
/// use postbox::prelude::*;
/// use postbox_actix::{bridge_message, ActixHost, ActixRuntime};
///
/// // An existing actix actor and message.
/// #[derive(Default)]
/// struct Counter(u64);
/// impl actix::Actor for Counter { type Context = actix::Context<Self>; }
///
/// struct Add(u64);
/// impl actix::Message for Add { type Result = u64; }
/// impl actix::Handler<Add> for Counter {
///     type Result = u64;
///     fn handle(&mut self, Add(n): Add, _: &mut actix::Context<Self>) -> u64 {
///         self.0 += n;
///         self.0
///     }
/// }
///
/// bridge_message!(Add); // Add is a postbox message too, with actix's result as its reply
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let actix = ActixRuntime::new("actix")?;
/// let addr = actix.start(|_| Counter::default());
///
/// let system = ActorSystem::new();
/// let counter = system.spawn(ActixHost::props(addr).name("counter"))?;
/// counter.tell(Add(40)).await?;
/// assert_eq!(counter.ask(Add(2)).await?, 42);
/// let as_recipient: Recipient<Add> = counter.recipient();
/// # Ok(())
/// # }
/// ```
pub struct ActixHost<A: actix::Actor> {
    addr: Addr<A>,
    settings: Settings,
    /// Set by `started`: what this instance's forwarding tasks share.
    live: Option<Arc<Live<A>>>,
    /// The liveness probe of this instance, aborted with it.
    probe: Option<AbortOnDrop>,
}

/// What a running host and its forwarding tasks share.
struct Live<A: actix::Actor> {
    addr: Addr<A>,
    /// Free places in the actix mailbox (`max_in_flight` of them).
    slots: Semaphore,
    /// Messages forwarded and not answered yet, published as part of the host's depth.
    in_flight: InFlight,
    myself: ActorRef<ActixHost<A>>,
    system: ActorSystem,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    max_in_flight: usize,
    liveness_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            liveness_interval: DEFAULT_LIVENESS_INTERVAL,
        }
    }
}

impl<A: actix::Actor> ActixHost<A> {
    /// Props of a host for `addr` with the default settings; add a name, a mailbox, a
    /// dispatcher … as for any actor. Every instance (a restart makes a new one) stands for
    /// the same actix actor.
    pub fn props(addr: Addr<A>) -> Props<Self> {
        Self::builder(addr).props()
    }

    /// A builder, to choose how many messages may be in flight and how often liveness is
    /// checked.
    pub fn builder(addr: Addr<A>) -> ActixHostBuilder<A> {
        ActixHostBuilder {
            addr,
            settings: Settings::default(),
        }
    }

    /// The actix actor's address.
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }
}

/// Settings of an [`ActixHost`], from [`ActixHost::builder`].
pub struct ActixHostBuilder<A: actix::Actor> {
    addr: Addr<A>,
    settings: Settings,
}

impl<A: actix::Actor> ActixHostBuilder<A> {
    /// At most `n` messages (at least 1) in the actix mailbox or being handled there at once;
    /// beyond that the host waits and its own mailbox fills, which pushes back on senders.
    /// Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.settings.max_in_flight = n.clamp(1, u32::MAX as usize);
        self
    }

    /// How often the host checks that its actix actor still runs, which bounds how late
    /// watchers hear that an idle actix actor stopped. Default [`DEFAULT_LIVENESS_INTERVAL`].
    pub fn liveness_interval(mut self, interval: Duration) -> Self {
        self.settings.liveness_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The host's props.
    pub fn props(self) -> Props<ActixHost<A>> {
        let Self { addr, settings } = self;
        Props::new(move || ActixHost {
            addr: addr.clone(),
            settings,
            live: None,
            probe: None,
        })
    }
}

impl<A: actix::Actor> fmt::Debug for ActixHostBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActixHostBuilder")
            .field("actor", &std::any::type_name::<A>())
            .field("max_in_flight", &self.settings.max_in_flight)
            .field("liveness_interval", &self.settings.liveness_interval)
            .finish()
    }
}

impl<A: actix::Actor> fmt::Debug for ActixHost<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActixHost")
            .field("actor", &std::any::type_name::<A>())
            .field("connected", &self.addr.connected())
            .field(
                "in_flight",
                &self.live.as_ref().map_or(0, |live| live.in_flight.get()),
            )
            .finish()
    }
}

impl<A: actix::Actor> Actor for ActixHost<A> {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let live = Arc::new(Live {
            addr: self.addr.clone(),
            slots: Semaphore::new(self.settings.max_in_flight),
            in_flight: ctx.in_flight(),
            myself: ctx.myself().clone(),
            system: ctx.system().clone(),
        });
        self.probe = Some(AbortOnDrop(tokio::spawn(probe(
            live.clone(),
            self.settings.liveness_interval,
        ))));
        self.live = Some(live);
        Ok(())
    }

    async fn stopping(&mut self, _ctx: &mut Context<Self>) {
        self.probe = None;
        // Let what was forwarded be answered before the address goes (bounded by the
        // shutdown timeout: a parent aborts a child that takes longer).
        if let Some(live) = &self.live {
            let all = u32::try_from(self.settings.max_in_flight).unwrap_or(u32::MAX);
            if let Ok(permits) = live.slots.acquire_many(all).await {
                permits.forget();
            }
        }
    }
}

/// Stops the host once its actix actor no longer runs.
async fn probe<A: actix::Actor>(live: Arc<Live<A>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !live.addr.connected() {
            tracing::debug!(
                host = %live.myself.id(),
                actor = std::any::type_name::<A>(),
                "actix actor stopped; stopping its host"
            );
            live.myself.stop();
            return;
        }
    }
}

/// Aborts a task when dropped (with the host instance that started it).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<A, M> Handler<M> for ActixHost<A>
where
    A: actix::Actor + actix::Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: actix::Message<Result = <M as Message>::Reply> + Message,
{
    /// Forwards `msg` and waits for the actix reply in place. The runtime never calls this
    /// (it calls [`handle_reply`](Handler::handle_reply), which does not hold the host up);
    /// it answers a direct call the same way, and fails the host if the actix actor is gone,
    /// since there is then no reply to give.
    async fn handle(&mut self, msg: M, _ctx: &mut Context<Self>) -> <M as Message>::Reply {
        match self.addr.clone().send(msg).await {
            Ok(reply) => reply,
            Err(error) => panic!("{}: {error}", std::any::type_name::<A>()),
        }
    }

    fn handle_reply(
        &mut self,
        msg: M,
        reply: Option<ReplyTo<<M as Message>::Reply>>,
        _ctx: &mut Context<Self>,
    ) -> impl Future<Output = ()> + Send {
        let live = self.live.clone();
        async move {
            // `started` has run before any message is handled.
            let Some(live) = live else { return };
            let permit = match live.slots.try_acquire() {
                Ok(permit) => permit,
                // The actix mailbox holds `max_in_flight` of ours: wait for one to finish.
                Err(_) => match live.slots.acquire().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            permit.forget();
            // A fresh sender per message: actix parks a sender that fills the mailbox, and
            // a parked sender's requests would wait for a wake-up nobody sends. The bound is
            // ours (`slots`), not the channel's.
            let request = live.addr.clone().send(msg);
            let flight = Flight {
                _counted: live.in_flight.enter(),
                live,
            };
            tokio::spawn(async move {
                let outcome = request.await;
                flight.finish::<M>(outcome, reply);
            });
        }
    }
}

/// One forwarded message: frees its place when dropped.
struct Flight<A: actix::Actor> {
    live: Arc<Live<A>>,
    _counted: postbox::InFlightGuard,
}

impl<A: actix::Actor> Flight<A> {
    fn finish<M: Message>(
        self,
        outcome: Result<M::Reply, MailboxError>,
        reply: Option<ReplyTo<M::Reply>>,
    ) {
        let live = self.live.clone();
        // The place is free before the asker hears back.
        drop(self);
        match outcome {
            Ok(value) => {
                if let Some(reply) = reply {
                    if reply.send(value).is_err() {
                        live.dead_letter::<M>(DeadLetterReason::ReplyUndeliverable);
                    }
                }
            }
            Err(error) => {
                live.dead_letter::<M>(DeadLetterReason::ActorStopped);
                // Dropping the reply handle tells the asker the actor stopped.
                drop(reply);
                if !live.addr.connected() {
                    tracing::debug!(
                        host = %live.myself.id(),
                        actor = std::any::type_name::<A>(),
                        %error,
                        "actix actor stopped; stopping its host"
                    );
                    live.myself.stop();
                }
            }
        }
    }
}

impl<A: actix::Actor> Drop for Flight<A> {
    fn drop(&mut self) {
        self.live.slots.add_permits(1);
    }
}

impl<A: actix::Actor> Live<A> {
    fn dead_letter<M>(&self, reason: DeadLetterReason) {
        self.system.dead_letters().record(DeadLetter::new(
            self.myself.id(),
            std::any::type_name::<ActixHost<A>>(),
            std::any::type_name::<M>(),
            reason,
        ));
    }
}

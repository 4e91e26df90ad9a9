//! How to spawn an actor: its factory, name, mailbox and supervision settings.

use crate::actor::Actor;
use crate::backoff::WhileDown;
use crate::breaker::CircuitBreaker;
use crate::dispatcher::Dispatcher;
use crate::mailbox::MailboxCapacity;
use crate::supervision::{Restart, SupervisorStrategy};
use std::fmt;
use std::time::Duration;

/// Everything needed to spawn (and restart) an actor.
///
/// The factory builds a fresh instance at spawn and after every restart, so restarts begin from
/// clean state. Any `FnMut() -> A` converts into `Props`, so `system.spawn(Counter::default)`
/// works; use the builder methods for the rest.
///
/// ```
/// use postbox::prelude::*;
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct Worker;
/// impl Actor for Worker {}
///
/// let props = Props::new(Worker::default)
///     .name("worker-1")
///     .mailbox(MailboxCapacity::bounded(64))
///     .restart(Restart::Transient)
///     .shutdown_timeout(Duration::from_secs(1));
/// # let _ = props;
/// ```
pub struct Props<A: Actor> {
    pub(crate) factory: Box<dyn FnMut() -> A + Send>,
    pub(crate) name: Option<String>,
    pub(crate) mailbox: Option<MailboxCapacity>,
    pub(crate) restart: Restart,
    pub(crate) supervisor: Option<SupervisorStrategy>,
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) while_down: WhileDown,
    pub(crate) dispatcher: Option<Dispatcher>,
    pub(crate) blocking: bool,
    pub(crate) breaker: Option<CircuitBreaker>,
}

impl<A: Actor> Props<A> {
    /// Props with `factory` and defaults for everything else: anonymous, the system's default
    /// mailbox, [`Restart::Permanent`], the system's default supervisor strategy for its
    /// children, the system's default shutdown timeout.
    pub fn new(factory: impl FnMut() -> A + Send + 'static) -> Self {
        Self {
            factory: Box::new(factory),
            name: None,
            mailbox: None,
            restart: Restart::default(),
            supervisor: None,
            shutdown_timeout: None,
            while_down: WhileDown::Keep,
            dispatcher: None,
            blocking: false,
            breaker: None,
        }
    }

    /// Names the actor. Names are unique among siblings and appear in its path.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the mailbox kind and size.
    pub fn mailbox(mut self, mailbox: MailboxCapacity) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// Sets when the actor is restarted by its supervisor.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets how this actor supervises its own children.
    pub fn supervisor(mut self, strategy: SupervisorStrategy) -> Self {
        self.supervisor = Some(strategy);
        self
    }

    /// How long the parent waits for this actor to stop (or to suspend for a restart) before
    /// aborting it.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// Runs the actor on `dispatcher`'s threads instead of its parent's dispatcher (or the
    /// system's runtime). Its children inherit it unless they choose their own. See
    /// [`Dispatcher`] for the placement rules.
    ///
    /// ```
    /// use postbox::prelude::*;
    /// use postbox::Dispatcher;
    ///
    /// struct Legacy;
    /// impl Actor for Legacy {}
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let legacy = Dispatcher::new("legacy", 2)?;
    /// let props = Props::new(|| Legacy).name("gateway").dispatcher(&legacy);
    /// # let _ = props;
    /// # Ok(())
    /// # }
    /// ```
    pub fn dispatcher(mut self, dispatcher: &Dispatcher) -> Self {
        self.dispatcher = Some(dispatcher.clone());
        self
    }

    /// Runs the actor on a dedicated OS thread of its own, so that its handlers may block
    /// (synchronous I/O, `std::thread::sleep`, long computations) without holding up any other
    /// actor. The thread is named `postbox-blocking-<id>`, runs a current-thread Tokio runtime
    /// of its own (so the actor's timers work even when every other thread is busy) and ends
    /// with the actor. Not inherited: its children run on its dispatcher (see [`Dispatcher`]).
    /// Costs one OS thread per actor, so it suits a few gateways to blocking resources rather
    /// than many entities.
    pub fn blocking(mut self) -> Self {
        self.blocking = true;
        self
    }
}

impl<A: Actor> Props<A> {
    /// What becomes of messages sent while the actor is down between a failure and its
    /// restart (during a backoff delay, say). Default: [`WhileDown::Keep`].
    pub fn while_down(mut self, while_down: WhileDown) -> Self {
        self.while_down = while_down;
        self
    }
}

impl<A: Actor> Props<A> {
    /// Gives the actor a circuit breaker for its calls to a dependency, read in handlers with
    /// [`Context::circuit_breaker`](crate::Context::circuit_breaker). The breaker belongs to
    /// the actor's place in the supervision tree, not to an instance: a restarted actor finds
    /// it as it was (open, if the dependency is still down), so restarts cannot hammer a
    /// failing dependency. Pass clones of one breaker to several actors to share it.
    ///
    /// ```
    /// use postbox::prelude::*;
    /// use postbox::CircuitBreaker;
    ///
    /// struct Fetcher;
    /// impl Actor for Fetcher {}
    ///
    /// let breaker = CircuitBreaker::builder("inventory-db").max_failures(3).build()?;
    /// let props = Props::new(|| Fetcher).circuit_breaker(breaker);
    /// # let _ = props;
    /// # Ok::<(), postbox::BreakerConfigError>(())
    /// ```
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }
}

impl<A: Actor, F: FnMut() -> A + Send + 'static> From<F> for Props<A> {
    fn from(factory: F) -> Self {
        Props::new(factory)
    }
}

impl<A: Actor> fmt::Debug for Props<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Props")
            .field("actor", &std::any::type_name::<A>())
            .field("name", &self.name)
            .field("mailbox", &self.mailbox)
            .field("restart", &self.restart)
            .field("supervisor", &self.supervisor)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("while_down", &self.while_down)
            .field(
                "dispatcher",
                &self.dispatcher.as_ref().map(Dispatcher::name),
            )
            .field("blocking", &self.blocking)
            .field("breaker", &self.breaker.as_ref().map(CircuitBreaker::name))
            .finish_non_exhaustive()
    }
}

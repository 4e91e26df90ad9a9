//! `TestProbe`: an actor that records what it receives, for tests to assert on.
//!
//! A [`TestProbe<M>`] stands in for an actor that handles messages of type `M`: hand its
//! [`recipient`](TestProbe::recipient) (or [`actor_ref`](TestProbe::actor_ref)) to the code
//! under test, then assert on what arrived, in arrival order:
//! [`expect_msg`](TestProbe::expect_msg), [`expect_msg_eq`](TestProbe::expect_msg_eq),
//! [`expect_msg_matching`](TestProbe::expect_msg_matching), [`receive_n`](TestProbe::receive_n),
//! [`fish_for`](TestProbe::fish_for), [`expect_no_msg`](TestProbe::expect_no_msg). It can also
//! watch other actors ([`watch`](TestProbe::watch),
//! [`expect_terminated`](TestProbe::expect_terminated)) and answer asks, by hand
//! ([`expect_ask`](TestProbe::expect_ask)) or automatically
//! ([`reply_with`](TestProbe::reply_with), an *autopilot*).
//!
//! # Deadlines
//!
//! Every expectation waits at most a deadline, then panics: the probe's default
//! ([`PATIENCE`], 10 s, changed with
//! [`with_deadline`](TestProbe::with_deadline)), or the one given for that call with
//! `.within(d)`:
//!
//! ```text
//! probe.expect_msg().await;                                     // the probe's deadline
//! probe.expect_msg().within(Duration::from_millis(200)).await;  // this call's
//! ```
//!
//! An expectation returns as soon as what it expects has arrived; only a failing one waits
//! out its deadline. [`expect_no_msg`](TestProbe::expect_no_msg) is the exception, by nature:
//! it watches for the whole window (its default is the probe's *quiet period*, 100 ms), so
//! it proves only that nothing came *during that window*. Deadlines are on Tokio's clock, so
//! on a paused clock they are virtual time.
//!
//! # Failures
//!
//! A failed expectation panics (failing the test) with the probe's name and message type,
//! what was expected, what arrived instead (`M: Debug` where that is needed to show it), the
//! deadline, and the source location of the expectation, e.g.
//!
//! ```text
//! testprobe-3 (probe of app::Greeting): no message within 10s (expect_msg at tests/it/greeter.rs:31:11)
//! ```
//!
//! # Messages and termination are two queues
//!
//! The probe's messages and the [`Terminated`] notices of the actors it watches are kept
//! apart: `expect_msg` never trips over a `Terminated`, and `expect_terminated` skips no
//! message. (Termination notices travel on the runtime's priority lane and may overtake
//! messages the watched actor sent just before it ended, so their relative order would not
//! be meaningful anyway.)
//!
//! # Asks
//!
//! A probe can stand in for an actor that is asked. With an autopilot
//! ([`reply_with`](TestProbe::reply_with)) every ask is answered at once with the function's
//! value and the message is recorded as usual. Without one, the reply handle is kept with the
//! message: [`expect_ask`](TestProbe::expect_ask) hands both to the test, which answers when
//! it likes (or drops the handle: the asker then gets `AskError::Stopped`). An ask taken with
//! any other expectation stays unanswered, held by the probe, so the asker waits out its own
//! timeout — as with an actor that never replies — until the probe is dropped.
//!
//! # Watching
//!
//! [`watch`](TestProbe::watch) returns only once the watch is registered with the watched
//! actor, so a stop that happens after it returns is always reported; an actor that is
//! already gone is reported at once with [`ExitReason::AlreadyTerminated`](postbox::ExitReason).
//! For an actor on another node the watch request is on its way to that node in order with
//! every later message sent through the same remote ref.
//!
//! A probe's mailbox is unbounded: it never pushes back on the code under test. Dropping the
//! probe stops its actors.

use crate::wait::PATIENCE;
use postbox::{
    Actor, ActorId, ActorRef, ActorSystem, Context, Handler, MailboxCapacity, Message, Props,
    Recipient, ReplyTo, Terminated, Watchable,
};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long [`TestProbe::expect_no_msg`] watches by default.
pub const QUIET_PERIOD: Duration = Duration::from_millis(100);

/// Numbers probes, for their names.
static PROBES: AtomicU64 = AtomicU64::new(1);

type Autopilot<M> = Box<dyn FnMut(&M) -> <M as Message>::Reply + Send>;
type SharedAutopilot<M> = Arc<Mutex<Option<Autopilot<M>>>>;

/// Why an expectation got no message.
#[derive(Clone, Copy)]
enum Missing {
    Timeout,
    Stopped,
}

/// One message as the probe's actor received it.
struct Received<M: Message> {
    message: M,
    /// The reply handle of an ask nobody has answered yet.
    reply: Option<ReplyTo<M::Reply>>,
}

/// The actor behind a [`TestProbe`]: it records every `M` it receives, in order. It has no
/// constructor of its own; it exists so that `ActorRef<ProbeActor<M>>` can be named.
pub struct ProbeActor<M: Message> {
    received: mpsc::UnboundedSender<Received<M>>,
    autopilot: SharedAutopilot<M>,
}

impl<M: Message> fmt::Debug for ProbeActor<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeActor")
            .field("message", &std::any::type_name::<M>())
            .finish_non_exhaustive()
    }
}

impl<M: Message> Actor for ProbeActor<M> {}

impl<M: Message> Handler<M> for ProbeActor<M> {
    /// Never called: the runtime calls [`handle_reply`](Self::handle_reply), which this actor
    /// overrides to keep reply handles.
    async fn handle(&mut self, _: M, _: &mut Context<Self>) -> M::Reply {
        panic!("ProbeActor::handle is not called by the runtime (handle_reply is)")
    }

    fn handle_reply(
        &mut self,
        message: M,
        reply: Option<ReplyTo<M::Reply>>,
        _: &mut Context<Self>,
    ) -> impl Future<Output = ()> + Send {
        let reply = match reply {
            Some(reply) => {
                let mut autopilot = self
                    .autopilot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match autopilot.as_mut() {
                    Some(answer) => {
                        // The asker may have given up; `send` counts that as a dead letter.
                        let _ = reply.send(answer(&message));
                        None
                    }
                    None => Some(reply),
                }
            }
            None => None,
        };
        // The probe may be gone (dropped); then so is the message, as with a stopped actor.
        let _ = self.received.send(Received { message, reply });
        async {}
    }
}

/// Watches on behalf of a probe (a separate actor, so that a probe of any `M`, `Terminated`
/// included, can watch).
struct ProbeWatcher {
    terminations: mpsc::UnboundedSender<Terminated>,
}

impl Actor for ProbeWatcher {}

impl Handler<Terminated> for ProbeWatcher {
    async fn handle(&mut self, terminated: Terminated, _: &mut Context<Self>) {
        let _ = self.terminations.send(terminated);
    }
}

struct StartWatching<T>(T);

impl<T: Watched> Message for StartWatching<T> {
    type Reply = ();
}

impl<T: Watched> Handler<StartWatching<T>> for ProbeWatcher {
    async fn handle(&mut self, StartWatching(target): StartWatching<T>, ctx: &mut Context<Self>) {
        ctx.watch(&target);
    }
}

struct StopWatching<T>(T);

impl<T: Watched> Message for StopWatching<T> {
    type Reply = ();
}

impl<T: Watched> Handler<StopWatching<T>> for ProbeWatcher {
    async fn handle(&mut self, StopWatching(target): StopWatching<T>, ctx: &mut Context<Self>) {
        ctx.unwatch(&target);
    }
}

/// A reference a probe can watch: an [`ActorRef`] or a [`Recipient`], local or remote.
pub trait Watched: Watchable + Clone + Send + Sync + 'static {
    /// The id of the actor behind it, to recognize its [`Terminated`].
    fn actor_id(&self) -> ActorId;
}

impl<A: Actor> Watched for ActorRef<A> {
    fn actor_id(&self) -> ActorId {
        self.id()
    }
}

impl<M: Message> Watched for Recipient<M> {
    fn actor_id(&self) -> ActorId {
        self.id()
    }
}

/// A message type with no values, for a probe that only watches:
/// [`TestProbe::watcher`] returns a `TestProbe<NoMessage>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMessage {}

impl Message for NoMessage {
    type Reply = ();
}

/// An actor that records the `M`s it receives, with expectations that wait for them under a
/// deadline. See the [module docs](self) for the semantics.
pub struct TestProbe<M: Message> {
    name: String,
    actor: ActorRef<ProbeActor<M>>,
    watcher: ActorRef<ProbeWatcher>,
    received: mpsc::UnboundedReceiver<Received<M>>,
    terminations: mpsc::UnboundedReceiver<Terminated>,
    autopilot: SharedAutopilot<M>,
    /// Asks taken by expectations other than `expect_ask`: held so that their askers wait.
    unanswered: Vec<ReplyTo<M::Reply>>,
    deadline: Duration,
    quiet_period: Duration,
}

impl TestProbe<NoMessage> {
    /// A probe that receives no messages, only the [`Terminated`] of what it
    /// [watches](TestProbe::watch).
    #[track_caller]
    pub fn watcher(system: &ActorSystem) -> Self {
        Self::new(system)
    }
}

impl<M: Message> TestProbe<M> {
    /// Spawns a probe's actors (a recorder with an unbounded mailbox, and a watcher) in
    /// `system`, as top-level actors named `testprobe-<n>` and `testprobe-<n>-watcher`.
    ///
    /// Panics if they cannot be spawned (the system is shutting down).
    #[track_caller]
    pub fn new(system: &ActorSystem) -> Self {
        let name = format!("testprobe-{}", PROBES.fetch_add(1, Ordering::Relaxed));
        let (received_tx, received) = mpsc::unbounded_channel();
        let (terminations_tx, terminations) = mpsc::unbounded_channel();
        let autopilot: SharedAutopilot<M> = Arc::new(Mutex::new(None));
        let pilot = autopilot.clone();
        let actor = system
            .spawn(
                Props::new(move || ProbeActor {
                    received: received_tx.clone(),
                    autopilot: pilot.clone(),
                })
                .name(name.clone())
                .mailbox(MailboxCapacity::unbounded()),
            )
            .unwrap_or_else(|error| panic!("{name}: cannot spawn the probe: {error}"));
        let watcher = system
            .spawn(
                Props::new(move || ProbeWatcher {
                    terminations: terminations_tx.clone(),
                })
                .name(format!("{name}-watcher"))
                .mailbox(MailboxCapacity::unbounded()),
            )
            .unwrap_or_else(|error| panic!("{name}: cannot spawn the probe's watcher: {error}"));
        Self {
            name,
            actor,
            watcher,
            received,
            terminations,
            autopilot,
            unanswered: Vec::new(),
            deadline: PATIENCE,
            quiet_period: QUIET_PERIOD,
        }
    }

    /// This probe with `deadline` as the default of its expectations (instead of
    /// [`PATIENCE`]).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// This probe with `period` as the default window of
    /// [`expect_no_msg`](Self::expect_no_msg) (instead of [`QUIET_PERIOD`]).
    pub fn with_quiet_period(mut self, period: Duration) -> Self {
        self.quiet_period = period;
        self
    }

    /// The default deadline of this probe's expectations.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The probe's name (`testprobe-<n>`), as its failure messages show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The probe's actor.
    pub fn actor_ref(&self) -> &ActorRef<ProbeActor<M>> {
        &self.actor
    }

    /// A [`Recipient`] of the probe's actor, to hand to the code under test.
    pub fn recipient(&self) -> Recipient<M> {
        self.actor.recipient()
    }

    /// The id of the probe's actor.
    pub fn id(&self) -> ActorId {
        self.actor.id()
    }

    /// Answers every ask the probe receives from now on with `answer(&message)`, at once; the
    /// message is recorded as usual. Replaces any earlier autopilot.
    pub fn reply_with(&self, answer: impl FnMut(&M) -> M::Reply + Send + 'static) {
        *self
            .autopilot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(answer));
    }

    /// Stops answering asks automatically: from now on their reply handles are kept for
    /// [`expect_ask`](Self::expect_ask).
    pub fn clear_autopilot(&self) {
        *self
            .autopilot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The next message.
    ///
    /// An ask taken this way stays unanswered (see [Asks](self#asks)).
    #[track_caller]
    pub fn expect_msg(&mut self) -> Expect<'_, M> {
        let at = Location::caller();
        Expect::new(self.deadline, move |limit| async move {
            let received = self.next(limit, "expect_msg", at).await;
            self.keep_unanswered(received)
        })
    }

    /// The next ask and its reply handle, for the test to answer. Fails if the next message
    /// is a tell, or an ask the autopilot already answered.
    #[track_caller]
    pub fn expect_ask(&mut self) -> Expect<'_, (M, ReplyTo<M::Reply>)> {
        let at = Location::caller();
        Expect::new(self.deadline, move |limit| async move {
            let Received { message, reply } = self.next(limit, "expect_ask", at).await;
            match reply {
                Some(reply) => (message, reply),
                None => panic!(
                    "{}: expected an ask, got a tell (or an ask the autopilot answered) \
                     (expect_ask at {at})",
                    self.describe()
                ),
            }
        })
    }

    /// All messages received so far, without waiting. Asks among them stay unanswered.
    pub fn drain(&mut self) -> Vec<M> {
        let mut messages = Vec::new();
        while let Ok(received) = self.received.try_recv() {
            messages.push(self.keep_unanswered(received));
        }
        messages
    }

    /// The next `n` messages, all within the one deadline.
    #[track_caller]
    pub fn receive_n(&mut self, n: usize) -> Expect<'_, Vec<M>> {
        let at = Location::caller();
        Expect::new(self.deadline, move |limit| async move {
            let deadline = Instant::now() + limit;
            let mut messages = Vec::with_capacity(n);
            while messages.len() < n {
                match self.next_until(deadline).await {
                    Ok(received) => messages.push(self.keep_unanswered(received)),
                    Err(missing) => {
                        let note = format!(" (got {} of {n})", messages.len());
                        self.fail(missing, limit, "receive_n", at, &note)
                    }
                }
            }
            messages
        })
    }

    /// Nothing for a while: the probe's quiet period (100 ms unless changed), or the window
    /// given with `.within(d)`. Fails at the first message that arrives in the window, or
    /// that had arrived before it and was not taken yet.
    #[track_caller]
    pub fn expect_no_msg(&mut self) -> Expect<'_, ()>
    where
        M: fmt::Debug,
    {
        let at = Location::caller();
        Expect::new(self.quiet_period, move |window| async move {
            if let Ok(received) = self.next_until(Instant::now() + window).await {
                panic!(
                    "{}: expected no message for {window:?}, got {:?} (expect_no_msg at {at})",
                    self.describe(),
                    received.message
                );
            }
        })
    }

    /// Skips messages until one for which `wanted` is true arrives, and returns it. The
    /// skipped messages are dropped (asks among them stay unanswered); the failure message
    /// lists them.
    #[track_caller]
    pub fn fish_for<'a>(
        &'a mut self,
        mut wanted: impl FnMut(&M) -> bool + Send + 'a,
    ) -> Expect<'a, M>
    where
        M: fmt::Debug,
    {
        let at = Location::caller();
        Expect::new(self.deadline, move |limit| async move {
            let deadline = Instant::now() + limit;
            let mut skipped = Vec::new();
            loop {
                match self.next_until(deadline).await {
                    Ok(received) => {
                        let message = self.keep_unanswered(received);
                        if wanted(&message) {
                            return message;
                        }
                        skipped.push(message);
                    }
                    Err(missing) => {
                        let note = format!("; skipped {skipped:?}");
                        self.fail(missing, limit, "fish_for", at, &note)
                    }
                }
            }
        })
    }

    /// The next message, which must satisfy `check`; returns it.
    #[track_caller]
    pub fn expect_msg_matching<'a>(
        &'a mut self,
        check: impl FnOnce(&M) -> bool + Send + 'a,
    ) -> Expect<'a, M>
    where
        M: fmt::Debug,
    {
        let at = Location::caller();
        Expect::new(self.deadline, move |limit| async move {
            let received = self.next(limit, "expect_msg_matching", at).await;
            let message = self.keep_unanswered(received);
            if !check(&message) {
                panic!(
                    "{}: unexpected message {message:?} (expect_msg_matching at {at})",
                    self.describe()
                );
            }
            message
        })
    }

    /// The next message, which must equal `expected`.
    #[track_caller]
    pub fn expect_msg_eq(&mut self, expected: M) -> Expect<'_, ()>
    where
        M: fmt::Debug + PartialEq,
    {
        let at = Location::caller();
        Expect::new(self.deadline, move |limit| async move {
            let received = self.next(limit, "expect_msg_eq", at).await;
            let message = self.keep_unanswered(received);
            if message != expected {
                panic!(
                    "{}: expected {expected:?}, got {message:?} (expect_msg_eq at {at})",
                    self.describe()
                );
            }
        })
    }

    /// Watches `target` for this probe; returns once the watch is registered (see
    /// [Watching](self#watching)).
    #[track_caller]
    pub fn watch<T: Watched>(&self, target: &T) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        let target = target.clone();
        async move {
            let watching = self
                .watcher
                .ask(StartWatching(target))
                .timeout(self.deadline);
            if let Err(error) = watching.await {
                panic!("{}: cannot watch: {error} (watch at {at})", self.describe());
            }
        }
    }

    /// Stops watching `target`: no `Terminated` of it is recorded after this returns.
    #[track_caller]
    pub fn unwatch<T: Watched>(&self, target: &T) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        let target = target.clone();
        async move {
            let unwatching = self
                .watcher
                .ask(StopWatching(target))
                .timeout(self.deadline);
            if let Err(error) = unwatching.await {
                panic!(
                    "{}: cannot unwatch: {error} (unwatch at {at})",
                    self.describe()
                );
            }
        }
    }

    /// The next termination among the watched actors, which must be `target`'s; returns its
    /// notice (with the reason).
    #[track_caller]
    pub fn expect_terminated<T: Watched>(&mut self, target: &T) -> Expect<'_, Terminated> {
        let at = Location::caller();
        let id = target.actor_id();
        Expect::new(self.deadline, move |limit| async move {
            match tokio::time::timeout(limit, self.terminations.recv()).await {
                Ok(Some(terminated)) if terminated.id == id => terminated,
                Ok(Some(other)) => panic!(
                    "{}: expected the termination of {id}, got {other:?} (expect_terminated at {at})",
                    self.describe()
                ),
                Ok(None) => panic!(
                    "{}: the probe's watcher stopped (expect_terminated at {at})",
                    self.describe()
                ),
                Err(_) => panic!(
                    "{}: {id} did not terminate within {limit:?} (expect_terminated at {at})",
                    self.describe()
                ),
            }
        })
    }

    /// The terminations recorded so far, without waiting.
    pub fn drain_terminated(&mut self) -> Vec<Terminated> {
        let mut terminations = Vec::new();
        while let Ok(terminated) = self.terminations.try_recv() {
            terminations.push(terminated);
        }
        terminations
    }

    /// Stops the probe's actors (dropping the probe does too).
    pub fn stop(&self) {
        self.actor.stop();
        self.watcher.stop();
    }

    fn describe(&self) -> String {
        format!("{} (probe of {})", self.name, std::any::type_name::<M>())
    }

    /// The next message, or a failure naming `expectation` after `limit`.
    async fn next(&mut self, limit: Duration, expectation: &str, at: &Location<'_>) -> Received<M> {
        match self.next_until(Instant::now() + limit).await {
            Ok(received) => received,
            Err(missing) => self.fail(missing, limit, expectation, at, ""),
        }
    }

    /// The next message, or why there is none by `deadline`.
    async fn next_until(&mut self, deadline: Instant) -> Result<Received<M>, Missing> {
        match tokio::time::timeout_at(deadline, self.received.recv()).await {
            Ok(Some(received)) => Ok(received),
            // The recorder's sender lives in its actor's factory: gone once the actor stopped.
            Ok(None) => Err(Missing::Stopped),
            Err(_) => Err(Missing::Timeout),
        }
    }

    fn fail(
        &self,
        missing: Missing,
        limit: Duration,
        expectation: &str,
        at: &Location<'_>,
        note: &str,
    ) -> ! {
        match missing {
            Missing::Timeout => panic!(
                "{}: no message within {limit:?}{note} ({expectation} at {at})",
                self.describe()
            ),
            Missing::Stopped => panic!(
                "{}: the probe's actor has stopped (was its system shut down?){note} \
                 ({expectation} at {at})",
                self.describe()
            ),
        }
    }

    fn keep_unanswered(&mut self, received: Received<M>) -> M {
        if let Some(reply) = received.reply {
            self.unanswered.push(reply);
        }
        received.message
    }
}

impl<M: Message> Drop for TestProbe<M> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<M: Message> fmt::Debug for TestProbe<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestProbe")
            .field("name", &self.name)
            .field("message", &std::any::type_name::<M>())
            .field("actor", &self.actor.id())
            .field("deadline", &self.deadline)
            .field("unanswered_asks", &self.unanswered.len())
            .finish_non_exhaustive()
    }
}

type BoxedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One expectation of a [`TestProbe`], under a deadline: `.await` it, after `.within(d)` to
/// give it a deadline of its own.
#[must_use = "an expectation does nothing unless awaited"]
pub struct Expect<'a, T> {
    limit: Duration,
    run: Box<dyn FnOnce(Duration) -> BoxedFuture<'a, T> + Send + 'a>,
}

impl<'a, T: 'a> Expect<'a, T> {
    fn new<F>(limit: Duration, run: impl FnOnce(Duration) -> F + Send + 'a) -> Self
    where
        F: Future<Output = T> + Send + 'a,
    {
        Self {
            limit,
            run: Box::new(move |limit| Box::pin(run(limit))),
        }
    }

    /// Waits at most `limit` for this expectation (for
    /// [`expect_no_msg`](TestProbe::expect_no_msg): watches for `limit`).
    pub fn within(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }
}

impl<'a, T: 'a> IntoFuture for Expect<'a, T> {
    type Output = T;
    type IntoFuture = BoxedFuture<'a, T>;

    fn into_future(self) -> Self::IntoFuture {
        (self.run)(self.limit)
    }
}

impl<T> fmt::Debug for Expect<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expect")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

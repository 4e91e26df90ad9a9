//! The shared part of an actor: mailbox, identity and statistics.
//!
//! An [`ActorCell`] is what every [`ActorRef`](crate::ActorRef) points at. It outlives restarts
//! (a restarted actor keeps its cell, id and mailbox) and is dropped when the last reference to
//! a terminated actor goes away. Its state is read lock-free from any thread: the mailbox depth
//! is two atomic loads, the statistics are plain atomics written only by the actor's own task.
//!
//! [`AnyCell`] is the type-erased view used by the system's actor table, the registry, parents
//! and watchers.

use crate::actor::{Actor, ActorId};
use crate::letter::Letter;
use crate::lifecycle::{ExitReason, Failure, Terminated};
use crate::mailbox::{AsMailbox, Mailbox};
use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What the actor is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActorStatus {
    /// Created; `started` has not finished yet.
    Starting,
    /// Handling messages.
    Running,
    /// Failed and waiting for (or undergoing) its supervisor's restart.
    Restarting,
    /// Stopping: hooks running, children stopping, mailbox closed.
    Stopping,
    /// Terminated.
    Stopped,
}

impl ActorStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ActorStatus::Starting,
            1 => ActorStatus::Running,
            2 => ActorStatus::Restarting,
            3 => ActorStatus::Stopping,
            _ => ActorStatus::Stopped,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            ActorStatus::Starting => 0,
            ActorStatus::Running => 1,
            ActorStatus::Restarting => 2,
            ActorStatus::Stopping => 3,
            ActorStatus::Stopped => 4,
        }
    }
}

/// One message in this many is timed (a power of two). Reading the clock twice per message
/// cost about 15% of tell throughput; sampling keeps the mean unbiased at a sixteenth of that.
pub(crate) const TIMING_SAMPLE: u64 = 16;

/// Per-actor counters. Written only by the actor's task (so updates are load + store, not
/// read-modify-write), read by anyone.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    processed: AtomicU64,
    /// Sum over the timed messages (the 1st, 17th, 33rd, …; their count is derived).
    busy_nanos: AtomicU64,
    last_nanos: AtomicU64,
    restarts: AtomicU32,
    status: AtomicU8,
    /// Messages taken from the mailbox without being handled while the actor lived (dropped
    /// while down), modulo 256: with `processed` it tells whether a message is being handled
    /// now, without a store per message.
    skipped: AtomicU8,
    /// The actor published an `InFlight` counter (`in_flight.rs`): depth reads look it up.
    /// Lives in what would otherwise be padding, so it costs no memory.
    publishes_in_flight: AtomicBool,
}

impl Stats {
    /// Whether the next message is one of the timed samples.
    #[inline]
    pub(crate) fn sample_next(&self) -> bool {
        self.processed.load(Relaxed) % TIMING_SAMPLE == 0
    }

    /// Counts one handled message; `elapsed` is its handling time if it was sampled.
    #[inline]
    pub(crate) fn record_message(&self, elapsed: Option<Duration>) {
        self.processed
            .store(self.processed.load(Relaxed) + 1, Relaxed);
        if let Some(elapsed) = elapsed {
            let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            self.busy_nanos
                .store(self.busy_nanos.load(Relaxed).saturating_add(nanos), Relaxed);
            self.last_nanos.store(nanos, Relaxed);
        }
    }

    /// Messages handled so far.
    pub(crate) fn processed(&self) -> u64 {
        self.processed.load(Relaxed)
    }

    pub(crate) fn record_restart(&self) {
        self.restarts
            .store(self.restarts.load(Relaxed) + 1, Relaxed);
    }

    pub(crate) fn record_skipped(&self) {
        self.skipped
            .store(self.skipped.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// Whether the actor is handling a message now, given the mailbox's consumer index
    /// `taken()` (read after the counters, so it is never behind them).
    pub(crate) fn is_handling(&self, taken: impl FnOnce() -> usize) -> bool {
        let processed = self.processed.load(Relaxed);
        let skipped = self.skipped.load(Relaxed);
        // Every taken message is counted processed (or skipped) once finished, so the
        // difference is the one in hand; a stale read errs towards "busy".
        ((taken() as u64).wrapping_sub(processed) as u8).wrapping_sub(skipped) != 0
    }

    /// Marks the actor as publishing an `InFlight` counter (for good).
    pub(crate) fn set_publishes_in_flight(&self) {
        self.publishes_in_flight.store(true, Release);
    }

    pub(crate) fn publishes_in_flight(&self) -> bool {
        self.publishes_in_flight.load(Acquire)
    }

    pub(crate) fn set_status(&self, status: ActorStatus) {
        self.status.store(status.as_u8(), Release);
    }

    pub(crate) fn status(&self) -> ActorStatus {
        ActorStatus::from_u8(self.status.load(Acquire))
    }
}

/// A point-in-time view of one actor's mailbox and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActorStats {
    /// Messages waiting: in the mailbox, plus [`in_flight`](Self::in_flight).
    pub depth: usize,
    /// Messages the actor has handed on elsewhere and not finished, as it published them
    /// ([`InFlight`](crate::InFlight)); 0 for most actors. Included in `depth`.
    pub in_flight: usize,
    /// Mailbox bound, `None` when unbounded.
    pub capacity: Option<usize>,
    /// Messages handled so far (across restarts). Counted when the handler finishes, which can
    /// be a moment after its reply reached the asker.
    pub processed: u64,
    /// Time the most recently timed message took. One message in 16 is timed (the first, the
    /// 17th, …), which keeps the clock off the hot path.
    pub last_processing: Duration,
    /// Mean handling time over the timed messages.
    pub mean_processing: Duration,
    /// Times the actor was restarted.
    pub restarts: u32,
    /// Current status.
    pub status: ActorStatus,
}

/// Identity and bookkeeping shared by every cell, whatever its actor type.
pub(crate) struct ActorMeta {
    pub(crate) id: ActorId,
    /// The name given at spawn; anonymous actors are shown as `$<id>`.
    pub(crate) name: Option<Arc<str>>,
    /// `None` only for the root guardian.
    pub(crate) parent: Option<Arc<dyn AnyCell>>,
    pub(crate) system: crate::ActorSystem,
    pub(crate) stats: Stats,
}

impl ActorMeta {
    /// `/user/parent/child`: names up the parent chain (computed on demand, nothing stored).
    pub(crate) fn path(&self) -> String {
        // A remote ref's proxy is named by its full address.
        if let (None, Some(name)) = (&self.parent, &self.name) {
            if name.contains("://") {
                return name.to_string();
            }
        }
        let mut segments = Vec::new();
        self.push_segments(&mut segments);
        let mut path = String::new();
        for segment in segments.iter().rev() {
            path.push('/');
            path.push_str(segment);
        }
        path
    }

    fn push_segments(&self, out: &mut Vec<String>) {
        out.push(self.display_name());
        if let Some(parent) = &self.parent {
            parent.meta().push_segments(out);
        }
    }

    pub(crate) fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.to_string(),
            None => format!("${}", self.id.0),
        }
    }
}

/// A system signal: everything that travels on the priority lane except typed deliveries.
pub(crate) enum SystemSignal {
    /// Stop from outside. With `drain`, handle what is already queued first.
    Stop { drain: bool, reason: ExitReason },
    /// Register a watcher, notified with `Terminated` when this actor terminates.
    Watch(Watcher),
    /// Remove the watchers registered by `watcher`.
    Unwatch { watcher: ActorId },
    /// Supervision protocol between a parent and its children.
    Supervision(Supervision),
}

/// Messages of the supervision protocol (see `supervision.rs` for the state machine).
pub(crate) enum Supervision {
    // child -> parent
    /// The child's instance ended with `failure`; it waits for a directive.
    ChildExited {
        child: ActorId,
        incarnation: u32,
        failure: Failure,
    },
    /// The child is gone for good.
    ChildTerminated { child: ActorId },
    /// Acknowledges `Suspend`: the old instance is gone, the child waits for `Start`.
    ChildSuspended { child: ActorId },
    /// Acknowledges `Start`: the new instance has started.
    ChildStarted { child: ActorId, incarnation: u32 },
    /// A child created from outside the parent's task (top-level spawns) joins the parent.
    Adopt(crate::supervision::ChildRecord),
    // parent -> child
    /// End the current instance because of `cause` (restarting hook, children stop), ack.
    Suspend { cause: Failure },
    /// Start a new instance after `delay`, ack.
    Start { delay: Duration },
    /// The parent gives up on the child: terminate with `reason`.
    Terminate { reason: ExitReason },
}

/// Someone to tell when an actor terminates.
pub(crate) struct Watcher {
    pub(crate) watcher: ActorId,
    pub(crate) notify: WatchNotify,
}

pub(crate) enum WatchNotify {
    /// An actor that handles `Terminated`.
    Actor(Arc<dyn TerminatedSink>),
    /// A future waiting in `ActorRef::wait_for_stop`.
    Waiter(oneshot::Sender<ExitReason>),
    /// A watch on behalf of another node (`LocalActor::watch`): the transport's callback.
    Callback(Box<dyn FnOnce(ExitReason) + Send>),
}

impl Watcher {
    pub(crate) fn notify(self, id: ActorId, reason: ExitReason) {
        match self.notify {
            WatchNotify::Actor(sink) => sink.deliver_terminated(Terminated { id, reason }),
            WatchNotify::Waiter(tx) => {
                let _ = tx.send(reason);
            }
            WatchNotify::Callback(callback) => callback(reason),
        }
    }
}

/// Delivers `Terminated` into a watcher's signal lane.
pub(crate) trait TerminatedSink: Send + Sync {
    fn deliver_terminated(&self, terminated: Terminated);
}

/// What travels on an actor's signal lane.
pub(crate) enum Signal<A: Actor> {
    System(SystemSignal),
    /// A `Terminated` notification, already wrapped for this actor's handler. Dropped if the
    /// actor has unwatched `from` in the meantime.
    Terminated {
        from: ActorId,
        envelope: Letter<A>,
    },
}

/// The shared state of one actor.
pub(crate) struct ActorCell<A: Actor> {
    pub(crate) mailbox: Mailbox<Letter<A>, Signal<A>>,
    pub(crate) meta: ActorMeta,
}

impl<A: Actor> AsMailbox for ActorCell<A> {
    type Item = Letter<A>;
    type Signal = Signal<A>;
    fn mailbox(&self) -> &Mailbox<Letter<A>, Signal<A>> {
        &self.mailbox
    }

    fn on_mailbox_wait(&self, stamp: u64) {
        if let Some(observer) = self.meta.system.shared.observer.get() {
            observer.mailbox_wait(
                std::any::type_name::<A>(),
                crate::observe::since_stamp(stamp),
            );
        }
    }
}

impl<A: Actor> ActorCell<A> {
    pub(crate) fn stats(&self) -> ActorStats {
        let stats = &self.meta.stats;
        let processed = stats.processed.load(Relaxed);
        let timed = processed.div_ceil(TIMING_SAMPLE);
        let busy = stats.busy_nanos.load(Relaxed);
        let in_flight = self.in_flight();
        ActorStats {
            depth: self.mailbox.len() + in_flight,
            in_flight,
            capacity: self.mailbox.capacity(),
            processed,
            last_processing: Duration::from_nanos(stats.last_nanos.load(Relaxed)),
            mean_processing: Duration::from_nanos(busy.checked_div(timed).unwrap_or(0)),
            restarts: stats.restarts.load(Relaxed),
            status: stats.status(),
        }
    }

    /// Messages waiting plus the one being handled: what a new message would queue behind.
    pub(crate) fn load(&self) -> usize {
        let handling = self.meta.stats.is_handling(|| self.mailbox.taken());
        self.depth() + usize::from(handling)
    }

    /// Messages waiting: the mailbox plus what the actor published as in flight.
    pub(crate) fn depth(&self) -> usize {
        self.mailbox.len() + self.in_flight()
    }

    #[inline]
    fn in_flight(&self) -> usize {
        if !self.meta.stats.publishes_in_flight() {
            return 0;
        }
        self.meta.system.shared.in_flight.of(self.meta.id)
    }
}

/// The type-erased view of a cell.
pub(crate) trait AnyCell: Send + Sync + 'static {
    fn meta(&self) -> &ActorMeta;
    fn stats(&self) -> ActorStats;
    fn depth(&self) -> usize;
    fn actor_type(&self) -> &'static str;
    fn actor_type_id(&self) -> std::any::TypeId;
    /// Pushes a system signal; hands it back if the actor has terminated.
    fn send_system(&self, signal: SystemSignal) -> Result<(), SystemSignal>;
    fn interrupt(&self, bits: usize);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// Whether its mailbox still takes messages.
    fn is_alive(&self) -> bool;
}

impl<A: Actor> AnyCell for ActorCell<A> {
    fn meta(&self) -> &ActorMeta {
        &self.meta
    }

    fn stats(&self) -> ActorStats {
        ActorCell::stats(self)
    }

    fn depth(&self) -> usize {
        ActorCell::depth(self)
    }

    fn actor_type(&self) -> &'static str {
        std::any::type_name::<A>()
    }

    fn actor_type_id(&self) -> std::any::TypeId {
        std::any::TypeId::of::<A>()
    }

    fn send_system(&self, signal: SystemSignal) -> Result<(), SystemSignal> {
        self.mailbox
            .send_signal(Signal::System(signal))
            .map_err(|back| match back {
                Signal::System(signal) => signal,
                Signal::Terminated { .. } => unreachable!("pushed a system signal"),
            })
    }

    fn interrupt(&self, bits: usize) {
        self.mailbox.interrupt(bits);
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn is_alive(&self) -> bool {
        !self.mailbox.is_closed()
    }
}

impl<A: crate::Handler<Terminated>> TerminatedSink for ActorCell<A> {
    fn deliver_terminated(&self, terminated: Terminated) {
        let from = terminated.id;
        let envelope = Letter::new(terminated, None);
        if let Err(Signal::Terminated { envelope, .. }) = self
            .mailbox
            .send_signal(Signal::Terminated { from, envelope })
        {
            self.meta.system.shared.dead_letters.record_envelope(
                self.meta.id,
                std::any::type_name::<A>(),
                &envelope,
                crate::DeadLetterReason::ActorStopped,
            );
        }
    }
}

impl<A: Actor> fmt::Debug for ActorCell<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorCell")
            .field("id", &self.meta.id)
            .field("type", &std::any::type_name::<A>())
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_in_flight_flag_fits_in_the_statistics_padding() {
        // Three u64, a u32 and three u8: 31 bytes in a 32-byte, 8-aligned struct. A field
        // that grew it would grow every actor's cell.
        assert_eq!(std::mem::size_of::<super::Stats>(), 32);
    }
}

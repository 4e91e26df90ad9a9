//! Event delivery: [`BreakerEvent`]s go to the broadcast stream and to listeners, in the
//! order the machine produced them, one delivering thread at a time and never under the
//! machine's lock (see `Observers::deliver`). The queue between the machine and delivery is
//! bounded: past `EVENT_CAPACITY`, call outcomes are dropped and counted; transitions never.

use super::{BreakerState, CallOutcome};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it is told it lagged; also the most call
/// outcomes queued for delivery (see `Observers::push`).
pub(super) const EVENT_CAPACITY: usize = 1024;

/// What a [`CircuitBreaker`](super::CircuitBreaker) publishes to subscribers and listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// The breaker changed state.
    Transition {
        /// The state it left.
        from: BreakerState,
        /// The state it entered.
        to: BreakerState,
    },
    /// A call ended (or was rejected). A call's outcome is published before the transition it
    /// causes.
    Call(CallOutcome),
}

/// A registered listener.
pub(super) type Listener = Arc<dyn Fn(&BreakerEvent) + Send + Sync + 'static>;

/// A listener that passes transitions on to `f` as `(from, to)`.
pub(super) fn transition_listener(
    f: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static,
) -> Listener {
    Arc::new(move |event: &BreakerEvent| {
        if let BreakerEvent::Transition { from, to } = *event {
            f(from, to);
        }
    })
}

/// Subscribers and listeners, and the queue that delivers events to them in order.
pub(super) struct Observers {
    /// Someone subscribed or registered a listener (never cleared): until then, no events are
    /// queued.
    active: AtomicBool,
    stream: broadcast::Sender<BreakerEvent>,
    /// Replaced as a whole when a listener is added, so delivery clones one `Arc`.
    listeners: RwLock<Arc<[Listener]>>,
    outbox: Mutex<Outbox>,
    /// Call outcomes not queued because the outbox was full.
    pub(super) dropped: AtomicU64,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<BreakerEvent>,
    /// A thread is delivering; it will also deliver whatever is queued meanwhile.
    delivering: bool,
}

impl Observers {
    pub(super) fn new(listeners: Vec<Listener>) -> Self {
        let (stream, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            active: AtomicBool::new(!listeners.is_empty()),
            stream,
            listeners: RwLock::new(listeners.into()),
            outbox: Mutex::new(Outbox::default()),
            dropped: AtomicU64::new(0),
        }
    }

    /// A stream of the events published from now on; from now on, events are queued.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        let rx = self.stream.subscribe();
        self.active.store(true, Release);
        rx
    }

    pub(super) fn is_active(&self) -> bool {
        self.active.load(Acquire)
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an event. The queue is bounded: listeners slower than the calls would otherwise
    /// grow it without limit, so past `EVENT_CAPACITY` call outcomes are dropped (and
    /// counted). Transitions are always queued; they are rare, since each Open period lasts a
    /// reset timeout.
    pub(super) fn push(&self, event: BreakerEvent) {
        let mut outbox = self.outbox();
        if matches!(event, BreakerEvent::Call(_)) && outbox.queue.len() >= EVENT_CAPACITY {
            drop(outbox);
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        outbox.queue.push_back(event);
    }

    pub(super) fn add_listener(&self, listener: Listener) {
        let mut listeners = self
            .listeners
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *listeners = listeners
            .iter()
            .cloned()
            .chain(std::iter::once(listener))
            .collect();
        drop(listeners);
        self.active.store(true, Release);
    }

    /// Delivers queued events, one thread at a time and in queue order, holding no lock while
    /// listeners run. If another thread is already delivering, it delivers ours too: it only
    /// stops after finding the queue empty under the outbox lock.
    pub(super) fn deliver(&self, name: &str) {
        {
            let mut outbox = self.outbox();
            if outbox.delivering || outbox.queue.is_empty() {
                return;
            }
            outbox.delivering = true;
        }
        loop {
            let event = {
                let mut outbox = self.outbox();
                match outbox.queue.pop_front() {
                    Some(event) => event,
                    None => {
                        outbox.delivering = false;
                        return;
                    }
                }
            };
            // No receivers is not an error here.
            let _ = self.stream.send(event);
            let listeners = self
                .listeners
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            for listener in listeners.iter() {
                if catch_unwind(AssertUnwindSafe(|| listener(&event))).is_err() {
                    tracing::warn!(target: "postbox::breaker", breaker = %name, ?event, "a circuit breaker listener panicked");
                }
            }
        }
    }
}

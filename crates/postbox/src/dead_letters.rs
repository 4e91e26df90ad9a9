//! Dead letters: every message that could not be delivered, counted by reason.
//!
//! Nothing undeliverable disappears silently. Each dead letter
//!
//! * increments a per-reason counter ([`DeadLetters::count`]), exact and lock-free;
//! * is published to subscribers ([`DeadLetters::subscribe`]) — only when there are any, so an
//!   unobserved system pays one atomic load;
//! * is logged through `tracing` (target `postbox::dead_letters`, level `INFO`), at most
//!   [`LOG_BURST`] per second; the rest of each second is summarized in one line.
//!
//! Refused sends (`Closed`, `Full`) hand the message back to the caller *and* are counted here:
//! the count tells operators how much traffic was refused, whatever the caller did next.

use crate::actor::{Actor, ActorId};
use crate::letter::Letter;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::Instant;
use tokio::sync::broadcast;

/// Dead letters logged individually per second before the rest are summarized.
pub const LOG_BURST: u64 = 10;

/// Why a message could not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Sent to an actor that was not running (stopped, or stopping and no longer accepting).
    ActorStopped,
    /// Refused by `try_tell` because the bounded mailbox was full.
    MailboxFull,
    /// Accepted into the mailbox, but the actor stopped before handling it.
    DroppedAtStop,
    /// A reply whose asker had stopped waiting (timed out or dropped the ask).
    ReplyUndeliverable,
    /// Sent through a router that had no live routee left.
    NoRoutees,
    /// Arrived while its actor was down between a failure and its restart, and the actor was
    /// spawned to drop such messages ([`WhileDown::DeadLetter`](crate::WhileDown)).
    ActorDown,
    /// For a remote actor whose node could not be reached.
    Unreachable,
    /// Its type has no remote codec, or its encoding failed, so it cannot leave this node.
    NotRemotable,
    /// Arrived from another node and could not be delivered here (unknown target or message
    /// tag, undecodable payload).
    RemoteRejected,
    /// Larger, once encoded, than the connection to its remote actor's node carries (the
    /// transport's frame limit).
    TooLarge,
    /// For a sharded entity (`postbox-sharding`) whose shard had no home it could reach: the
    /// shard's bounded buffer was full while it was being allocated or handed off, the hops
    /// between regions that disagree ran out, or the region stopped (its node left or was
    /// downed).
    ShardUnavailable,
}

impl DeadLetterReason {
    /// Every reason, in a stable order (for metrics).
    pub const ALL: [DeadLetterReason; 11] = [
        DeadLetterReason::ActorStopped,
        DeadLetterReason::MailboxFull,
        DeadLetterReason::DroppedAtStop,
        DeadLetterReason::ReplyUndeliverable,
        DeadLetterReason::NoRoutees,
        DeadLetterReason::ActorDown,
        DeadLetterReason::Unreachable,
        DeadLetterReason::NotRemotable,
        DeadLetterReason::RemoteRejected,
        DeadLetterReason::TooLarge,
        DeadLetterReason::ShardUnavailable,
    ];

    /// A short snake_case label, stable for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::ActorStopped => "actor_stopped",
            DeadLetterReason::MailboxFull => "mailbox_full",
            DeadLetterReason::DroppedAtStop => "dropped_at_stop",
            DeadLetterReason::ReplyUndeliverable => "reply_undeliverable",
            DeadLetterReason::NoRoutees => "no_routees",
            DeadLetterReason::ActorDown => "actor_down",
            DeadLetterReason::Unreachable => "unreachable",
            DeadLetterReason::NotRemotable => "not_remotable",
            DeadLetterReason::RemoteRejected => "remote_rejected",
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::ShardUnavailable => "shard_unavailable",
        }
    }

    const fn index(self) -> usize {
        match self {
            DeadLetterReason::ActorStopped => 0,
            DeadLetterReason::MailboxFull => 1,
            DeadLetterReason::DroppedAtStop => 2,
            DeadLetterReason::ReplyUndeliverable => 3,
            DeadLetterReason::NoRoutees => 4,
            DeadLetterReason::ActorDown => 5,
            DeadLetterReason::Unreachable => 6,
            DeadLetterReason::NotRemotable => 7,
            DeadLetterReason::RemoteRejected => 8,
            DeadLetterReason::TooLarge => 9,
            DeadLetterReason::ShardUnavailable => 10,
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One undeliverable message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The actor it was meant for.
    pub recipient: ActorId,
    /// The recipient's type name (empty when unknown).
    pub recipient_type: &'static str,
    /// The message's type name.
    pub message_type: &'static str,
    /// Why it was not delivered.
    pub reason: DeadLetterReason,
}

impl DeadLetter {
    /// A dead letter of a `message_type` for `recipient` (of type `recipient_type`, empty when
    /// unknown), for [`DeadLetters::record`]. Type names are usually
    /// `std::any::type_name::<T>()`.
    pub fn new(
        recipient: ActorId,
        recipient_type: &'static str,
        message_type: &'static str,
        reason: DeadLetterReason,
    ) -> Self {
        Self {
            recipient,
            recipient_type,
            message_type,
            reason,
        }
    }
}

/// The system's dead-letter office. Reached through
/// [`ActorSystem::dead_letters`](crate::ActorSystem::dead_letters).
pub struct DeadLetters {
    counts: [AtomicU64; DeadLetterReason::ALL.len()],
    stream: broadcast::Sender<DeadLetter>,
    log: RateLimit,
}

impl DeadLetters {
    pub(crate) fn new() -> Self {
        let (stream, _) = broadcast::channel(1024);
        Self {
            counts: Default::default(),
            stream,
            log: RateLimit::new(),
        }
    }

    /// Dead letters recorded for `reason` since the system started.
    pub fn count(&self, reason: DeadLetterReason) -> u64 {
        self.counts[reason.index()].load(Relaxed)
    }

    /// Dead letters recorded for all reasons.
    pub fn total(&self) -> u64 {
        DeadLetterReason::ALL.iter().map(|r| self.count(*r)).sum()
    }

    /// A stream of dead letters recorded from now on. A subscriber that falls more than 1024
    /// behind is told how many it missed ([`DeadLetterRecvError::Lagged`]); the counters stay
    /// exact regardless.
    pub fn subscribe(&self) -> DeadLetterStream {
        DeadLetterStream {
            rx: self.stream.subscribe(),
        }
    }

    /// Records `letter`: counted, published to subscribers, logged (rate-limited). The
    /// runtime records its own; code that drops messages on its behalf — an adapter that
    /// forwards them to another runtime, an overridden
    /// [`Handler::handle_reply`](crate::Handler::handle_reply) whose asker gave up — records
    /// them here so that nothing disappears uncounted.
    pub fn record(&self, letter: DeadLetter) {
        self.counts[letter.reason.index()].fetch_add(1, Relaxed);
        self.log.log(&letter);
        if self.stream.receiver_count() > 0 {
            let _ = self.stream.send(letter);
        }
    }

    pub(crate) fn record_envelope<A: Actor>(
        &self,
        recipient: ActorId,
        recipient_type: &'static str,
        envelope: &Letter<A>,
        reason: DeadLetterReason,
    ) {
        self.record(DeadLetter {
            recipient,
            recipient_type,
            message_type: envelope.message_type(),
            reason,
        });
    }
}

impl fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("DeadLetters");
        for reason in DeadLetterReason::ALL {
            s.field(reason.as_str(), &self.count(reason));
        }
        s.finish()
    }
}

/// Subscription to dead letters, from [`DeadLetters::subscribe`].
#[derive(Debug)]
pub struct DeadLetterStream {
    rx: broadcast::Receiver<DeadLetter>,
}

/// Why [`DeadLetterStream::recv`] returned no letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterRecvError {
    /// The subscriber fell behind and this many letters were skipped (still counted).
    Lagged(u64),
    /// The actor system is gone.
    Closed,
}

impl fmt::Display for DeadLetterRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterRecvError::Lagged(n) => {
                write!(f, "subscriber lagged; {n} dead letters skipped")
            }
            DeadLetterRecvError::Closed => f.write_str("the actor system is gone"),
        }
    }
}

impl std::error::Error for DeadLetterRecvError {}

impl DeadLetterStream {
    /// The next dead letter.
    pub async fn recv(&mut self) -> Result<DeadLetter, DeadLetterRecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => DeadLetterRecvError::Lagged(n),
            broadcast::error::RecvError::Closed => DeadLetterRecvError::Closed,
        })
    }

    /// The next dead letter if one is waiting.
    pub fn try_recv(&mut self) -> Option<Result<DeadLetter, DeadLetterRecvError>> {
        match self.rx.try_recv() {
            Ok(letter) => Some(Ok(letter)),
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                Some(Err(DeadLetterRecvError::Lagged(n)))
            }
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(DeadLetterRecvError::Closed)),
        }
    }
}

/// At most `LOG_BURST` lines per one-second window, then one summary for the window.
struct RateLimit {
    origin: Instant,
    window: AtomicU64,
    logged: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            window: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    fn log(&self, letter: &DeadLetter) {
        if !tracing::enabled!(target: "postbox::dead_letters", tracing::Level::INFO) {
            return;
        }
        let now = self.origin.elapsed().as_secs();
        let window = self.window.load(Relaxed);
        if now != window
            && self
                .window
                .compare_exchange(window, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.logged.store(0, Relaxed);
            let suppressed = self.suppressed.swap(0, Relaxed);
            if suppressed > 0 {
                tracing::info!(
                    target: "postbox::dead_letters",
                    suppressed,
                    "dead letters not logged in the last window (see the counters)"
                );
            }
        }
        if self.logged.fetch_add(1, Relaxed) < LOG_BURST {
            tracing::info!(
                target: "postbox::dead_letters",
                recipient = %letter.recipient,
                recipient_type = letter.recipient_type,
                message = letter.message_type,
                reason = %letter.reason,
                "dead letter"
            );
        } else {
            self.suppressed.fetch_add(1, Relaxed);
        }
    }
}

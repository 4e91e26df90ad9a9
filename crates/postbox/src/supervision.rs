//! Supervision: how parents restart failed children (Erlang/OTP semantics).
//!
//! Every actor supervises the children it spawns; top-level actors are supervised by the
//! system's root guardian. When a child's instance ends abnormally (panic, [`Context::fail`],
//! an error from `started`, a kill) — or a **permanent** child stops itself — the child
//! suspends and asks its parent, which decides with its [`SupervisorStrategy`]:
//!
//! * **which children restart**: the failed one ([`one_for_one`](SupervisorStrategy::one_for_one)),
//!   all of them ([`all_for_one`](SupervisorStrategy::all_for_one)), or the failed one and those
//!   started after it ([`rest_for_one`](SupervisorStrategy::rest_for_one)). The affected
//!   siblings are stopped in reverse start order, then all are started again in start order,
//!   each waiting for the previous one's `started` hook;
//! * **whether at all**: each child's [`Restart`] type — permanent (always), transient (only
//!   after an abnormal exit), temporary (never; under all/rest-for-one a temporary sibling is
//!   stopped and not restarted);
//! * **how often**: at most `max_restarts` restarts within `within` (the *restart intensity*,
//!   counted per supervisor). One more and the supervisor gives up: it **escalates** by failing
//!   itself with [`Failure::Escalated`], so its own parent decides about it (and a restarted
//!   supervisor starts without its old children). The root guardian cannot escalate; it stops
//!   the child for good and logs an error;
//! * **how soon**: an optional exponential [`Backoff`] with jitter delays each restart of a
//!   child that keeps failing; the count resets once the child has stayed up for `reset_after`.
//!
//! A restart keeps the child's [`ActorId`], mailbox and watchers; the new instance is built by
//! the factory given at spawn. The message that was being handled when the failure happened is
//! lost (its asker gets `Panicked`); the rest of the mailbox is handled by the new instance.
//!
//! [`Context::fail`]: crate::Context::fail
//! [`Failure::Escalated`]: crate::Failure::Escalated

use crate::actor::ActorId;
use crate::cell::{AnyCell, Supervision, SystemSignal};
use crate::lifecycle::{ExitReason, Failure};
use crate::mailbox::INTERRUPT_ABORT;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Whether a child is restarted when it exits (Erlang's child restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Restart {
    /// Always restarted, even after stopping itself normally.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (failure or kill).
    Transient,
    /// Never restarted.
    Temporary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    /// Restart only the failed child.
    One,
    /// Restart every child.
    All,
    /// Restart the failed child and those started after it.
    Rest,
}

/// How an actor supervises its children. Set per actor with
/// [`Props::supervisor`](crate::Props::supervisor); the system default (used by actors that do
/// not set one, and by the root guardian) is
/// [`SystemConfig::default_strategy`](crate::SystemConfig::default_strategy).
///
/// ```
/// use postbox::{Backoff, SupervisorStrategy};
/// use std::time::Duration;
///
/// let strategy = SupervisorStrategy::rest_for_one()
///     .max_restarts(5, Duration::from_secs(10))
///     .backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)));
/// assert_eq!(strategy.intensity(), (5, Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorStrategy {
    scope: Scope,
    max_restarts: u32,
    within: Duration,
    backoff: Backoff,
}

impl SupervisorStrategy {
    fn new(scope: Scope) -> Self {
        Self {
            scope,
            max_restarts: 3,
            within: Duration::from_secs(5),
            backoff: Backoff::none(),
        }
    }

    /// Restart only the failed child. Intensity 3 restarts in 5 s, no backoff.
    pub fn one_for_one() -> Self {
        Self::new(Scope::One)
    }

    /// Restart all children when one fails.
    pub fn all_for_one() -> Self {
        Self::new(Scope::All)
    }

    /// Restart the failed child and every child started after it.
    pub fn rest_for_one() -> Self {
        Self::new(Scope::Rest)
    }

    /// Allow at most `max_restarts` restarts within `within`; one more escalates.
    /// `max_restarts(0, _)` escalates on the first failure.
    pub fn max_restarts(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// Delay restarts of a repeatedly failing child.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// `(max_restarts, within)`.
    pub fn intensity(&self) -> (u32, Duration) {
        (self.max_restarts, self.within)
    }

    /// The backoff policy.
    pub fn backoff_policy(&self) -> &Backoff {
        &self.backoff
    }
}

impl Default for SupervisorStrategy {
    fn default() -> Self {
        Self::one_for_one()
    }
}

/// Exponential backoff with jitter between restarts of a child that keeps failing.
///
/// The `n`-th consecutive restart waits `min(max, min_delay * factor^(n-1))`, stretched by a
/// random `0..=jitter` fraction. The count resets once the child has run for `reset_after`
/// (default: the strategy's intensity period) without failing.
///
/// ```
/// use postbox::Backoff;
/// use std::time::Duration;
///
/// let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(b.base_delay(1), Duration::from_millis(100));
/// assert_eq!(b.base_delay(3), Duration::from_millis(400));
/// assert_eq!(b.base_delay(10), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    min: Duration,
    pub(crate) max: Duration,
    factor: f64,
    jitter: f64,
    pub(crate) reset_after: Option<Duration>,
}

impl Backoff {
    /// Restart immediately (Erlang's and Akka's default).
    pub const fn none() -> Self {
        Self {
            min: Duration::ZERO,
            max: Duration::ZERO,
            factor: 2.0,
            jitter: 0.0,
            reset_after: None,
        }
    }

    /// Doubling delays from `min` up to `max`, with 20% jitter.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            factor: 2.0,
            jitter: 0.2,
            reset_after: None,
        }
    }

    /// Growth factor per consecutive restart (at least 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Random stretch of each delay, as a fraction in `0.0..=1.0` (0 for exact delays).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How long a child must stay up for its consecutive-restart count to reset.
    pub fn reset_after(mut self, period: Duration) -> Self {
        self.reset_after = Some(period);
        self
    }

    /// The delay before the `attempt`-th consecutive restart (1-based), without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        if self.max.is_zero() || attempt == 0 {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
        let scaled = self.min.as_secs_f64() * self.factor.powi(exponent);
        if !scaled.is_finite() || scaled >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(scaled)
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        if self.jitter == 0.0 || base.is_zero() {
            base
        } else {
            base.mul_f64(1.0 + self.jitter * fastrand::f64())
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::none()
    }
}

/// What a parent knows about one child. Kept small: the root guardian holds one per
/// top-level actor.
pub(crate) struct ChildRecord {
    pub(crate) cell: Arc<dyn AnyCell>,
    /// Backoff bookkeeping, allocated at the child's first restart.
    restarts: Option<Box<RestartHistory>>,
    incarnation: u32,
    shutdown_timeout_ms: u32,
    pub(crate) restart: Restart,
}

struct RestartHistory {
    consecutive: u32,
    last_started: Instant,
}

impl ChildRecord {
    pub(crate) fn new(
        cell: Arc<dyn AnyCell>,
        restart: Restart,
        shutdown_timeout: Duration,
    ) -> Self {
        Self {
            cell,
            restarts: None,
            incarnation: 0,
            shutdown_timeout_ms: u32::try_from(shutdown_timeout.as_millis()).unwrap_or(u32::MAX),
            restart,
        }
    }

    fn id(&self) -> ActorId {
        self.cell.meta().id
    }

    fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.shutdown_timeout_ms))
    }
}

enum Step {
    Suspend {
        child: ActorId,
        cause: Failure,
    },
    Start {
        child: ActorId,
        delay: Duration,
    },
    Stop {
        child: ActorId,
        reason: ExitReason,
        drain: bool,
    },
    Terminate {
        child: ActorId,
        reason: ExitReason,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Ack {
    Suspended,
    Started,
    Terminated,
}

struct Waiting {
    child: ActorId,
    ack: Ack,
    /// When to give up on a child that does not acknowledge a stop or suspend (then aborted).
    deadline: Option<Instant>,
}

struct PendingExit {
    child: ActorId,
    incarnation: u32,
    failure: Failure,
}

struct Children {
    /// The strategy set in this actor's props; `None` means the system default.
    strategy: Option<SupervisorStrategy>,
    /// False for the root guardian, which has nobody to escalate to.
    escalate: bool,
    by_order: BTreeMap<u64, ChildRecord>,
    order_of: HashMap<ActorId, u64>,
    next_order: u64,
    restart_log: VecDeque<Instant>,
    plan: VecDeque<Step>,
    waiting: Option<Waiting>,
    pending: VecDeque<PendingExit>,
    stopping: bool,
}

/// A parent's supervision state: one pointer, allocated when the actor has a strategy of its
/// own or spawns its first child.
pub(crate) struct Supervisor {
    children: Option<Box<Children>>,
}

/// The supervisor exceeded its restart intensity: its actor must fail with this.
pub(crate) struct Escalation(pub(crate) Failure);

impl Children {
    fn new(strategy: Option<SupervisorStrategy>, escalate: bool) -> Self {
        Self {
            strategy,
            escalate,
            by_order: BTreeMap::new(),
            order_of: HashMap::new(),
            next_order: 0,
            restart_log: VecDeque::new(),
            plan: VecDeque::new(),
            waiting: None,
            pending: VecDeque::new(),
            stopping: false,
        }
    }
}

impl Supervisor {
    pub(crate) fn new(strategy: Option<SupervisorStrategy>, escalate: bool) -> Self {
        let custom = strategy.is_some() || !escalate;
        Self {
            children: custom.then(|| Box::new(Children::new(strategy, escalate))),
        }
    }

    fn children_mut(&mut self) -> &mut Children {
        self.children
            .get_or_insert_with(|| Box::new(Children::new(None, true)))
    }

    pub(crate) fn len(&self) -> usize {
        self.children.as_ref().map_or(0, |c| c.by_order.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn child_ids(&self) -> Vec<ActorId> {
        self.children
            .as_ref()
            .map(|c| c.by_order.values().map(ChildRecord::id).collect())
            .unwrap_or_default()
    }

    pub(crate) fn add_child(&mut self, record: ChildRecord) {
        let children = self.children_mut();
        let order = children.next_order;
        children.next_order += 1;
        let id = record.id();
        children.order_of.insert(id, order);
        children.by_order.insert(order, record);
        if children.stopping {
            // Raced with this supervisor's stop: stop the newcomer too.
            children.plan.push_back(Step::Stop {
                child: id,
                reason: ExitReason::Stopped,
                drain: false,
            });
            self.advance();
        }
    }

    fn record_mut(&mut self, id: ActorId) -> Option<&mut ChildRecord> {
        let children = self.children.as_mut()?;
        let order = children.order_of.get(&id)?;
        children.by_order.get_mut(order)
    }

    /// Handles one supervision signal. `default` is the system's default strategy.
    pub(crate) fn on_signal(
        &mut self,
        signal: Supervision,
        default: &SupervisorStrategy,
    ) -> Option<Escalation> {
        match signal {
            Supervision::Adopt(record) => self.add_child(record),
            Supervision::ChildExited {
                child,
                incarnation,
                failure,
            } => {
                let children = self.children_mut();
                if children.stopping {
                    // The stop in progress reaches this child in its turn.
                    return None;
                }
                children.pending.push_back(PendingExit {
                    child,
                    incarnation,
                    failure,
                });
                self.settle_waiting(child, None);
            }
            Supervision::ChildSuspended { child } => {
                self.settle_waiting(child, Some(Ack::Suspended))
            }
            Supervision::ChildStarted { child, incarnation } => {
                if let Some(record) = self.record_mut(child) {
                    record.incarnation = incarnation;
                    if let Some(history) = record.restarts.as_mut() {
                        history.last_started = Instant::now();
                    }
                }
                self.settle_waiting(child, Some(Ack::Started));
            }
            Supervision::ChildTerminated { child, .. } => {
                if let Some(children) = self.children.as_mut() {
                    if let Some(order) = children.order_of.remove(&child) {
                        children.by_order.remove(&order);
                    }
                    // Plan steps for this child are skipped when reached (`advance`); scanning
                    // the plan here would cost O(children) per termination.
                }
                self.settle_waiting(child, None);
            }
            Supervision::Suspend { .. }
            | Supervision::Start { .. }
            | Supervision::Terminate { .. } => {
                // Directives go from parents to children, never the other way.
            }
        }
        self.progress(default)
    }

    /// Clears the wait if it was for `child` (any event for a child we wait on ends the wait,
    /// except an ack of a different kind).
    fn settle_waiting(&mut self, child: ActorId, ack: Option<Ack>) {
        let Some(children) = self.children.as_mut() else {
            return;
        };
        if let Some(waiting) = &children.waiting {
            let matches_ack = ack.as_ref().is_none_or(|a| *a == waiting.ack);
            if waiting.child == child && matches_ack {
                children.waiting = None;
            }
        }
    }

    /// Runs plan steps until one must be waited for; when no plan is running, decides on the
    /// next pending exit.
    fn progress(&mut self, default: &SupervisorStrategy) -> Option<Escalation> {
        loop {
            self.advance();
            let children = self.children.as_mut()?;
            if children.waiting.is_some() || !children.plan.is_empty() {
                return None;
            }
            let exit = children.pending.pop_front()?;
            let strategy = children.strategy.as_ref().unwrap_or(default).clone();
            if let Some(escalation) = self.decide(exit, &strategy) {
                return Some(escalation);
            }
        }
    }

    /// Issues plan steps until one needs an acknowledgement.
    fn advance(&mut self) {
        let Some(children) = self.children.as_mut() else {
            return;
        };
        while children.waiting.is_none() {
            let Some(step) = children.plan.pop_front() else {
                return;
            };
            let child = step_child(&step);
            let Some(record) = children
                .order_of
                .get(&child)
                .and_then(|order| children.by_order.get(order))
            else {
                continue;
            };
            let timeout = Instant::now() + record.shutdown_timeout();
            let (signal, ack, deadline) = match step {
                Step::Suspend { cause, .. } => (
                    Supervision::Suspend { cause },
                    Ack::Suspended,
                    Some(timeout),
                ),
                Step::Start { delay, .. } => (Supervision::Start { delay }, Ack::Started, None),
                Step::Terminate { reason, .. } => (
                    Supervision::Terminate { reason },
                    Ack::Terminated,
                    Some(timeout),
                ),
                Step::Stop { reason, drain, .. } => {
                    let _ = record
                        .cell
                        .send_system(SystemSignal::Stop { drain, reason });
                    children.waiting = Some(Waiting {
                        child,
                        ack: Ack::Terminated,
                        deadline: Some(timeout),
                    });
                    continue;
                }
            };
            // If the child is already gone its `ChildTerminated` is on its way and ends the wait.
            let _ = record.cell.send_system(SystemSignal::Supervision(signal));
            children.waiting = Some(Waiting {
                child,
                ack,
                deadline,
            });
        }
    }

    fn decide(&mut self, exit: PendingExit, strategy: &SupervisorStrategy) -> Option<Escalation> {
        let children = self.children.as_mut()?;
        let escalate = children.escalate;
        let order = *children.order_of.get(&exit.child)?;
        let record = children.by_order.get_mut(&order)?;
        if exit.incarnation < record.incarnation {
            // This instance was already replaced (e.g. restarted along with a sibling).
            return None;
        }

        let now = Instant::now();
        children.restart_log.push_back(now);
        while children
            .restart_log
            .front()
            .is_some_and(|t| now.duration_since(*t) > strategy.within)
        {
            children.restart_log.pop_front();
        }
        if children.restart_log.len() > strategy.max_restarts as usize {
            children.restart_log.clear();
            if escalate {
                return Some(Escalation(Failure::Escalated { child: exit.child }));
            }
            tracing::error!(
                target: "postbox::supervision",
                child = %exit.child,
                failure = %exit.failure,
                "restart intensity exceeded at the root; the actor is stopped for good"
            );
            children.plan.push_back(Step::Terminate {
                child: exit.child,
                reason: ExitReason::Failed(exit.failure),
            });
            return None;
        }

        let reset_after = strategy.backoff.reset_after.unwrap_or(strategy.within);
        let record = children.by_order.get_mut(&order)?;
        let history = record.restarts.get_or_insert_with(|| {
            Box::new(RestartHistory {
                consecutive: 0,
                last_started: now,
            })
        });
        if now.duration_since(history.last_started) >= reset_after {
            history.consecutive = 0;
        }
        history.consecutive += 1;
        let delay = strategy.backoff.delay(history.consecutive);
        // Uptime counts from the restart, so a child that keeps failing in `started` (and never
        // reports a start) does not look healthy just because time passed.
        history.last_started = now + delay;
        record.cell.meta().stats.record_restart();

        let affected: Vec<u64> = match strategy.scope {
            Scope::One => vec![order],
            Scope::All => children.by_order.keys().copied().collect(),
            Scope::Rest => children.by_order.range(order..).map(|(k, _)| *k).collect(),
        };
        children.plan.push_back(Step::Suspend {
            child: exit.child,
            cause: exit.failure,
        });
        for sibling_order in affected.iter().rev().filter(|o| **o != order) {
            let sibling = &children.by_order[sibling_order];
            if sibling.restart == Restart::Temporary {
                children.plan.push_back(Step::Stop {
                    child: sibling.id(),
                    reason: ExitReason::Stopped,
                    drain: false,
                });
            } else {
                sibling.cell.meta().stats.record_restart();
                children.plan.push_back(Step::Suspend {
                    child: sibling.id(),
                    cause: Failure::SiblingFailed {
                        sibling: exit.child,
                    },
                });
            }
        }
        let mut first = true;
        for start_order in &affected {
            let record = &children.by_order[start_order];
            if record.restart == Restart::Temporary && *start_order != order {
                continue;
            }
            children.plan.push_back(Step::Start {
                child: record.id(),
                delay: if first { delay } else { Duration::ZERO },
            });
            first = false;
        }
        None
    }

    /// Stops every child, one at a time in reverse start order, abandoning any restart in
    /// progress. The caller waits until [`is_empty`](Self::is_empty).
    pub(crate) fn stop_all(&mut self, reason: ExitReason, drain: bool) {
        let Some(children) = self.children.as_mut() else {
            return;
        };
        children.stopping = true;
        children.plan.clear();
        children.pending.clear();
        children.waiting = None;
        let ids: Vec<ActorId> = children
            .by_order
            .values()
            .rev()
            .map(ChildRecord::id)
            .collect();
        for child in ids {
            children.plan.push_back(Step::Stop {
                child,
                reason: reason.clone(),
                drain,
            });
        }
        self.advance();
    }

    /// Forgets everything after all children have stopped, so that a restarted supervisor
    /// starts fresh: no children, no restart history (Erlang: that state belongs to the
    /// supervisor instance).
    pub(crate) fn reset(&mut self) {
        debug_assert!(self.is_empty());
        if let Some(children) = self.children.as_mut() {
            let fresh = Children::new(children.strategy.take(), children.escalate);
            **children = fresh;
        }
    }

    /// Aborts every child at once (used when this actor is aborted).
    pub(crate) fn abort_all(&mut self) {
        if let Some(children) = self.children.as_mut() {
            for record in children.by_order.values() {
                record.cell.interrupt(INTERRUPT_ABORT);
            }
        }
    }

    /// When the child being stopped or suspended must be aborted if it has not acknowledged.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.children.as_ref()?.waiting.as_ref()?.deadline
    }

    /// The deadline passed: abort the child we are waiting for. Its termination ends the wait.
    pub(crate) fn on_deadline(&mut self) {
        let Some(children) = self.children.as_mut() else {
            return;
        };
        let Some(waiting) = children.waiting.as_mut() else {
            return;
        };
        waiting.deadline = None;
        let child = waiting.child;
        if let Some(record) = children
            .order_of
            .get(&child)
            .and_then(|order| children.by_order.get(order))
        {
            tracing::warn!(
                target: "postbox::supervision",
                child = %child,
                timeout = ?record.shutdown_timeout(),
                "child did not stop within its shutdown timeout; aborting it"
            );
            record.cell.interrupt(INTERRUPT_ABORT);
        }
    }
}

fn step_child(step: &Step) -> ActorId {
    match step {
        Step::Suspend { child, .. }
        | Step::Start { child, .. }
        | Step::Stop { child, .. }
        | Step::Terminate { child, .. } => *child,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b =
            Backoff::exponential(Duration::from_millis(10), Duration::from_millis(100)).jitter(0.0);
        let delays: Vec<_> = (1..=6).map(|n| b.delay(n)).collect();
        assert_eq!(
            delays,
            [10, 20, 40, 80, 100, 100].map(Duration::from_millis)
        );
        assert_eq!(Backoff::none().delay(5), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b =
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)).jitter(0.5);
        for _ in 0..1000 {
            let d = b.delay(1);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(150));
        }
    }
}

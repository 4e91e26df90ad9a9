//! The child side of supervision: an instance has ended, the parent decides; meanwhile no
//! instance runs and only signals are handled (user messages wait, or are dead-lettered for
//! an actor spawned with [`WhileDown::DeadLetter`]).

use super::receive::{receive_before, Listen};
use super::user_code::{drop_quietly, guarded, Outcome};
use super::{Next, Runner};
use crate::actor::Actor;
use crate::backoff::WhileDown;
use crate::cell::{ActorStatus, Signal, Supervision, SystemSignal};
use crate::lifecycle::{ExitReason, Failure};
use crate::mailbox::{Received, INTERRUPT_ABORT, INTERRUPT_KILL};
use crate::supervision::Restart;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

impl<A: Actor> Runner<A> {
    /// The instance ended with `failure`: restart if the restart type allows and the parent
    /// agrees, otherwise stop.
    pub(super) async fn after_exit(&mut self, instance: Option<A>, failure: Failure) -> Next {
        self.log_failure(&failure);
        let restartable = match self.restart {
            Restart::Permanent => true,
            Restart::Transient => failure.is_abnormal(),
            Restart::Temporary => false,
        };
        let reason = match failure {
            Failure::ExitedNormally => ExitReason::Normal,
            ref failure => ExitReason::Failed(failure.clone()),
        };
        let asked = restartable
            && self.meta().parent.as_ref().is_some_and(|parent| {
                parent
                    .send_system(SystemSignal::Supervision(Supervision::ChildExited {
                        child: self.meta().id,
                        incarnation: self.ctx.incarnation,
                        failure,
                    }))
                    .is_ok()
            });
        if !asked {
            self.stop_instance(instance, &reason, false).await;
            return Next::Exit(reason);
        }
        self.set_status(ActorStatus::Restarting);
        self.await_directive(instance).await
    }

    /// Waits for the parent's directive while no instance runs (only signals are handled).
    pub(super) async fn await_directive(&mut self, mut instance: Option<A>) -> Next {
        loop {
            let listen = Listen::Signals {
                interrupts: INTERRUPT_ABORT | INTERRUPT_KILL,
            };
            match self.receive(listen).await {
                Received::Interrupted => {
                    if self.cell().mailbox.interrupts() & INTERRUPT_ABORT != 0 {
                        if let Some(actor) = instance.take() {
                            drop_quietly(actor);
                        }
                        self.ctx.supervisor.abort_all();
                        self.wait_for_children().await;
                        return Next::Exit(ExitReason::Shutdown);
                    }
                    // Killing an actor that is already down changes nothing.
                    self.cell().mailbox.clear_interrupts(INTERRUPT_KILL);
                }
                Received::Signals(mut signals) => {
                    while let Some(signal) = signals.next() {
                        match signal {
                            Signal::System(SystemSignal::Supervision(Supervision::Suspend {
                                cause,
                            })) => {
                                self.suspend(instance.take(), &cause).await;
                            }
                            Signal::System(SystemSignal::Supervision(Supervision::Start {
                                delay,
                            })) => {
                                self.requeue(signals);
                                if let Some(actor) = instance.take() {
                                    // Start without Suspend: finish the old instance first.
                                    self.suspend(Some(actor), &Failure::ExitedNormally).await;
                                }
                                return self.delayed_start(delay).await;
                            }
                            Signal::System(SystemSignal::Supervision(Supervision::Terminate {
                                reason,
                            }))
                            | Signal::System(SystemSignal::Stop { reason, .. }) => {
                                self.requeue(signals);
                                self.stop_instance(instance.take(), &reason, false).await;
                                return Next::Exit(reason);
                            }
                            Signal::Terminated { from, envelope } => {
                                if self.ctx.take_watched(from) {
                                    self.defer(envelope);
                                }
                            }
                            Signal::System(signal) => {
                                // An escalation from a child while we are already down needs no
                                // second failure; our restart or stop handles the children.
                                let _ = self.bookkeeping(signal);
                            }
                        }
                    }
                }
                Received::Message(_) | Received::Drained => {
                    unreachable!("poll_signals yields only signals and interrupts")
                }
            }
        }
    }

    /// Ends an instance that is being restarted: `restarting` hook, children stopped, ack.
    pub(super) async fn suspend(&mut self, instance: Option<A>, cause: &Failure) {
        self.set_status(ActorStatus::Restarting);
        if let Some(mut actor) = instance {
            if let Outcome::Panicked(failure) =
                guarded(actor.restarting(&mut self.ctx, cause), &self.consumer).await
            {
                self.log_hook_panic("restarting", &failure);
            }
            drop_quietly(actor);
        }
        self.ctx.request = None;
        self.ctx.supervisor.stop_all(ExitReason::Stopped, false);
        self.wait_for_children().await;
        self.ctx.supervisor.reset();
        self.ctx.stopping = false;
        self.notify_parent(Supervision::ChildSuspended {
            child: self.meta().id,
        });
    }

    /// Sleeps the backoff delay (still answering stop and abort), then restarts.
    async fn delayed_start(&mut self, delay: Duration) -> Next {
        let dead_letter = self.while_down == WhileDown::DeadLetter;
        if dead_letter {
            while let Some(envelope) = self.consumer.try_recv() {
                self.drop_while_down(envelope);
            }
        }
        if !delay.is_zero() {
            let listen = if dead_letter {
                Listen::Everything
            } else {
                Listen::Signals {
                    interrupts: usize::MAX,
                }
            };
            let mut sleep = pin!(tokio::time::sleep(delay));
            loop {
                let received = receive_before(&mut self.consumer, listen, sleep.as_mut()).await;
                let Some(received) = received else { break };
                match received {
                    Received::Interrupted => {
                        if self.cell().mailbox.interrupts() & INTERRUPT_ABORT != 0 {
                            return Next::Exit(ExitReason::Shutdown);
                        }
                        self.cell().mailbox.clear_interrupts(INTERRUPT_KILL);
                    }
                    Received::Signals(mut signals) => {
                        while let Some(signal) = signals.next() {
                            match signal {
                                Signal::System(SystemSignal::Stop { reason, .. })
                                | Signal::System(SystemSignal::Supervision(
                                    Supervision::Terminate { reason },
                                )) => {
                                    self.requeue(signals);
                                    return Next::Exit(reason);
                                }
                                Signal::Terminated { from, envelope } => {
                                    if self.ctx.take_watched(from) {
                                        self.defer(envelope);
                                    }
                                }
                                Signal::System(signal) => {
                                    let _ = self.bookkeeping(signal);
                                }
                            }
                        }
                    }
                    Received::Message(envelope) => self.drop_while_down(envelope),
                    Received::Drained => {
                        unreachable!("the mailbox of an actor waiting to restart stays open")
                    }
                }
            }
        }
        self.ctx.incarnation += 1;
        self.system().counters.restarts.fetch_add(1, Relaxed);
        Next::Restart
    }

    fn log_failure(&self, failure: &Failure) {
        if let Failure::Panicked(_) = failure {
            self.system().counters.panics.fetch_add(1, Relaxed);
        }
        if failure.is_abnormal() {
            tracing::warn!(
                target: "postbox::actor",
                actor = %self.meta().path(),
                actor.id = self.meta().id.get(),
                %failure,
                "actor failed"
            );
        }
    }
}

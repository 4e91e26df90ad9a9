//! An entity as a [`Recipient<M>`](postbox::Recipient): a local forwarding actor, started by
//! [`EntityRef::recipient`], that passes each `M` on to the entity.
//!
//! A recipient is a local actor's reference (what routers watch, what smallest-mailbox
//! routing measures), and an entity is not one: it may not be active, may live on another
//! node, and moves. The forwarder is the local actor that stands for it, as Akka's shard
//! region stands for the entities it routes to.
//!
//! Order: a tell is put in line (waiting for room, as [`EntityRef::tell`] does) before the
//! next message is taken; an ask likewise, and only its reply is awaited elsewhere. So what a
//! sender sends through one forwarder arrives in that order. Asks awaiting their reply are
//! bounded ([`FORWARDER_MAX_ASKS`]) and counted as the forwarder's work in flight, so its
//! depth is its mailbox plus the entity's outstanding answers.

use crate::sharding::EntityRef;
use crate::Entity;
use postbox::{
    Actor, AskError, BoxError, Context, DeadLetter, DeadLetterReason, Handler, InFlight, Message,
    ReplyTo, SendError,
};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How many asks one entity recipient has sent on and not yet had answered. At the bound it
/// takes no further message until a reply comes back (its own mailbox then fills and holds
/// its senders back).
pub const FORWARDER_MAX_ASKS: usize = 1_024;

pub(crate) struct Forwarder<A: Entity, M> {
    entity: EntityRef<A>,
    /// One permit per ask that may await its reply.
    slots: Arc<Semaphore>,
    in_flight: Option<InFlight>,
    _message: PhantomData<fn(M)>,
}

impl<A: Entity, M: Message> Forwarder<A, M> {
    pub(crate) fn new(entity: EntityRef<A>) -> Self {
        Self {
            entity,
            slots: Arc::new(Semaphore::new(FORWARDER_MAX_ASKS)),
            in_flight: None,
            _message: PhantomData,
        }
    }
}

impl<A: Entity, M: Message> Actor for Forwarder<A, M> {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.in_flight = Some(ctx.in_flight());
        // Without its region the entity cannot be reached from here: leave with it, and so
        // leave any router this recipient is in. (Not a watch: `M` may be `Terminated`.)
        let region = self.entity.region.clone();
        let myself = ctx.myself().clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = region.wait_for_stop() => myself.stop(),
                _ = myself.wait_for_stop() => {}
            }
        });
        Ok(())
    }
}

impl<A, M> Handler<M> for Forwarder<A, M>
where
    A: Entity + Handler<M>,
    M: Message,
{
    /// Asks the entity and waits for its reply in place. The runtime never calls this (it
    /// calls [`handle_reply`](Handler::handle_reply), which does not hold the forwarder up);
    /// it answers a direct call the same way, and fails the forwarder when the entity cannot
    /// answer, since there is then no reply to give.
    async fn handle(&mut self, msg: M, _: &mut Context<Self>) -> M::Reply {
        match self.entity.ask(msg).await {
            Ok(reply) => reply,
            Err(error) => panic!("entity {:?}: {error}", self.entity.id()),
        }
    }

    fn handle_reply(
        &mut self,
        msg: M,
        reply: Option<ReplyTo<M::Reply>>,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = ()> + Send {
        let entity = self.entity.clone();
        let slots = self.slots.clone();
        let in_flight = self.in_flight.clone();
        let system = ctx.system().clone();
        let me = ctx.id();
        let myself = ctx.myself().clone();
        async move {
            let Some(reply) = reply else {
                if let Err(SendError(_)) = entity.tell(msg).await {
                    system.dead_letters().record(DeadLetter::new(
                        me,
                        std::any::type_name::<Self>(),
                        std::any::type_name::<M>(),
                        DeadLetterReason::ActorStopped,
                    ));
                    myself.stop();
                }
                return;
            };
            // A closed semaphore is never: it lives as long as this actor.
            let Ok(slot) = slots.acquire_owned().await else {
                let _ = reply.fail(AskError::Stopped);
                return;
            };
            let counted = in_flight.as_ref().map(InFlight::enter);
            let timeout = entity.ask_timeout();
            let deadline = Instant::now() + timeout;
            let answered = match tokio::time::timeout_at(deadline, entity.enqueue_ask(msg)).await {
                Ok(Ok(pending)) => pending,
                Ok(Err(error)) => {
                    let _ = reply.fail(error);
                    return;
                }
                Err(_) => {
                    let _ = reply.fail(AskError::Timeout(timeout));
                    return;
                }
            };
            tokio::spawn(async move {
                let outcome = tokio::time::timeout_at(deadline, answered)
                    .await
                    .unwrap_or(Err(AskError::Timeout(timeout)));
                // The place is free before the asker hears back.
                drop((slot, counted));
                let undeliverable = match outcome {
                    Ok(value) => reply.send(value).is_err(),
                    // An asker that stopped waiting loses no reply: nothing to count.
                    Err(error) => {
                        let _ = reply.fail(error);
                        false
                    }
                };
                if undeliverable {
                    system.dead_letters().record(DeadLetter::new(
                        me,
                        std::any::type_name::<Self>(),
                        std::any::type_name::<M>(),
                        DeadLetterReason::ReplyUndeliverable,
                    ));
                }
            });
        }
    }
}

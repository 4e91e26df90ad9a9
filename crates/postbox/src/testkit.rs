//! Helpers for the crate's unit tests: run a handler without spawning a task.

use crate::actor::{Actor, ActorId};
use crate::actor_ref::ActorRef;
use crate::cell::{ActorCell, ActorMeta, Stats};
use crate::context::Context;
use crate::letter::Letter;
use crate::mailbox::{Mailbox, MailboxCapacity};
use crate::slot::HandlerSlot;
use crate::supervision::Supervisor;
use crate::system::ActorSystem;
use std::future::Future;
use std::sync::Arc;

/// An actor instance with a context of its own, whose envelopes are dispatched by hand on a
/// current-thread runtime (so the tests also run under Miri).
pub(crate) struct TestCell<A: Actor> {
    pub(crate) actor: A,
    ctx: Context<A>,
    slot: HandlerSlot,
    runtime: tokio::runtime::Runtime,
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("test runtime: {e}"),
    }
}

impl<A: Actor> TestCell<A> {
    pub(crate) fn new(actor: A) -> Self {
        let runtime = runtime();
        let system = ActorSystem::builder()
            .runtime(runtime.handle().clone())
            .build();
        let cell = Arc::new(ActorCell {
            mailbox: Mailbox::new(MailboxCapacity::default()),
            meta: ActorMeta {
                id: ActorId(u64::MAX),
                name: None,
                parent: None,
                system: system.clone(),
                stats: Stats::default(),
            },
        });
        let ctx = Context::new(ActorRef::from_cell(cell), Supervisor::new(None, false));
        Self {
            actor,
            ctx,
            slot: HandlerSlot::new(),
            runtime,
        }
    }

    /// Dispatches `envelope` and runs its handler to completion.
    pub(crate) fn run(&mut self, envelope: Letter<A>) {
        let running = envelope.dispatch(&mut self.actor, &mut self.ctx, &mut self.slot);
        self.runtime.block_on(running);
    }
}

/// Runs `future` to completion on a fresh current-thread runtime.
pub(crate) fn block_on_local<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

//! Receiving from the mailbox outside the hot loop: the one loop that races the mailbox
//! against a deadline — a child's stop or suspension (enforced through the supervisor), or a
//! restart's backoff.

use super::{ActorConsumer, Runner};
use crate::actor::Actor;
use crate::cell::Signal;
use crate::letter::Letter;
use crate::mailbox::Received;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use tokio::time::Sleep;

/// What the runner receives from its mailbox.
pub(super) type Item<A> = Received<Letter<A>, Signal<A>>;

/// What the runner listens for.
#[derive(Clone, Copy)]
pub(super) enum Listen {
    /// Messages and signals: an instance is running.
    Everything,
    /// Signals only, leaving user messages queued (no instance is running), and only the
    /// interrupts in the mask.
    Signals { interrupts: usize },
}

impl Listen {
    fn poll<A: Actor>(
        self,
        consumer: &mut ActorConsumer<A>,
        cx: &mut Context<'_>,
    ) -> Poll<Item<A>> {
        match self {
            Listen::Everything => consumer.poll_recv(cx),
            Listen::Signals { interrupts } => consumer.poll_signals(cx, interrupts),
        }
    }
}

/// What `listen` asks for, or `None` once `sleep` has elapsed.
pub(super) async fn receive_before<A: Actor>(
    consumer: &mut ActorConsumer<A>,
    listen: Listen,
    mut sleep: Pin<&mut Sleep>,
) -> Option<Item<A>> {
    poll_fn(|cx| match listen.poll(consumer, cx) {
        Poll::Ready(received) => Poll::Ready(Some(received)),
        Poll::Pending => sleep.as_mut().poll(cx).map(|()| None),
    })
    .await
}

impl<A: Actor> Runner<A> {
    /// What `listen` asks for, while enforcing the deadline of any child being stopped or
    /// suspended: when it passes, the supervisor acts on it (aborting that child) and the
    /// wait goes on.
    pub(super) async fn receive(&mut self, listen: Listen) -> Item<A> {
        loop {
            let Some(deadline) = self.ctx.supervisor.deadline() else {
                return poll_fn(|cx| listen.poll(&mut self.consumer, cx)).await;
            };
            let sleep = pin!(tokio::time::sleep_until(deadline));
            match receive_before(&mut self.consumer, listen, sleep).await {
                Some(received) => return received,
                None => self.ctx.supervisor.on_deadline(),
            }
        }
    }
}

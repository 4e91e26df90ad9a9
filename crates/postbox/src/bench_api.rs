//! The mailbox as a plain channel, so that `benches/` can measure it against
//! `tokio::sync::mpsc` without going through actors. Compiled only with the `bench-api`
//! feature, which only the benches package enables; hidden from docs; not a stable API.

use crate::mailbox::{AsMailbox, Consumer, Mailbox, MailboxCapacity, PushError, Received};
use std::future::poll_fn;
use std::sync::Arc;

/// The mailbox both halves of a bench channel point to.
pub(crate) struct Channel<T> {
    mailbox: Mailbox<T, ()>,
}

impl<T: Send> AsMailbox for Channel<T> {
    type Item = T;
    type Signal = ();
    fn mailbox(&self) -> &Mailbox<T, ()> {
        &self.mailbox
    }
}

/// The sending half; clone it for more producers.
pub struct MailboxSender<T> {
    channel: Arc<Channel<T>>,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        Self {
            channel: self.channel.clone(),
        }
    }
}

impl<T> std::fmt::Debug for MailboxSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxSender").finish_non_exhaustive()
    }
}

/// The receiving half.
pub struct MailboxReceiver<T: Send> {
    consumer: Consumer<Channel<T>>,
}

impl<T: Send> std::fmt::Debug for MailboxReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxReceiver").finish_non_exhaustive()
    }
}

/// A mailbox of `config`'s size with one receiver.
pub fn mailbox<T: Send>(config: MailboxCapacity) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let channel = Arc::new(Channel {
        mailbox: Mailbox::new(config),
    });
    // SAFETY: the receiver made here is the only consumer of this mailbox; it is not `Clone`.
    let consumer = unsafe { Consumer::new(channel.clone()) };
    (MailboxSender { channel }, MailboxReceiver { consumer })
}

impl<T: Send> MailboxSender<T> {
    /// Waits for room. (This API never closes the mailbox, so it does not fail in practice.)
    pub async fn send(&self, value: T) -> Result<(), T> {
        self.channel.mailbox.send(value).await
    }

    /// Fails at once when full.
    pub fn try_send(&self, value: T) -> Result<(), T> {
        self.channel.mailbox.try_send(value).map_err(|e| match e {
            PushError::Full(v) | PushError::Closed(v) => v,
        })
    }
}

impl<T: Send> MailboxReceiver<T> {
    /// The next value.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            match poll_fn(|cx| self.consumer.poll_recv(cx)).await {
                Received::Message(value) => return Some(value),
                Received::Drained => return None,
                Received::Signals(_) | Received::Interrupted => {}
            }
        }
    }
}

//! Shared test helpers: the testkit's bounded waits, and a log of events reported by actors
//! (from hooks and drops too, where a probe's mailbox would not do: it is an actor, and stops
//! with the system whose shutdown a test may be watching).

pub(crate) use postbox_testkit::{until, within, PATIENCE};
use std::fmt::Debug;
use tokio::sync::mpsc;

/// A log of events reported by actors, in the order they happened.
#[derive(Clone, Debug)]
pub(crate) struct Events<E> {
    tx: mpsc::UnboundedSender<E>,
}

pub(crate) struct EventLog<E> {
    rx: mpsc::UnboundedReceiver<E>,
}

pub(crate) fn events<E>() -> (Events<E>, EventLog<E>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Events { tx }, EventLog { rx })
}

impl<E> Events<E> {
    pub(crate) fn emit(&self, event: E) {
        let _ = self.tx.send(event);
    }
}

impl<E: Debug + PartialEq> EventLog<E> {
    /// The next event.
    pub(crate) async fn next(&mut self) -> E {
        within(PATIENCE, self.rx.recv())
            .await
            .expect("event source dropped")
    }

    /// The next `n` events.
    pub(crate) async fn take(&mut self, n: usize) -> Vec<E> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Asserts the next events are exactly `expected`, in order.
    pub(crate) async fn expect(&mut self, expected: &[E])
    where
        E: Clone,
    {
        let got = self.take(expected.len()).await;
        assert_eq!(got, expected);
    }

    /// Events already emitted, without waiting.
    pub(crate) fn drain_now(&mut self) -> Vec<E> {
        let mut out = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            out.push(e);
        }
        out
    }
}

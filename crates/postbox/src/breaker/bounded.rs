//! A call under the breaker's call timeout and `catch_unwind`.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// How a bounded call ended.
pub(super) enum Finished<T> {
    Done(T),
    /// The panic's payload.
    Panicked(Box<dyn std::any::Any + Send>),
    TimedOut,
}

pin_project_lite::pin_project! {
    /// Polls a future under `catch_unwind`, and gives up on it after `timeout`. The timer is
    /// armed only if the first poll does not finish the future.
    pub(super) struct Bounded<F> {
        #[pin]
        future: F,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
    }
}

impl<F> Bounded<F> {
    pub(super) fn new(future: F, timeout: Duration) -> Self {
        Self {
            future,
            deadline: None,
            timeout,
        }
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Finished<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match catch_unwind(AssertUnwindSafe(|| this.future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => return Poll::Ready(Finished::Done(output)),
            Ok(Poll::Pending) => {}
            Err(payload) => return Poll::Ready(Finished::Panicked(payload)),
        }
        if this.deadline.is_none() {
            this.deadline.set(Some(tokio::time::sleep(*this.timeout)));
        }
        match this.deadline.as_pin_mut().map(|deadline| deadline.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Finished::TimedOut),
            _ => Poll::Pending,
        }
    }
}

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("non-string panic payload")
    }
}

//! Coarse deadlines shared by asks.
//!
//! Every ask needs a deadline, but a Tokio timer per ask is expensive: registering a deadline
//! earlier than everything else in the (often empty) timer wheel re-arms the time driver, which
//! doubled the latency of an ask round trip in our benchmarks. Asks instead share **buckets**:
//! all deadlines that fall in the same [`GRANULARITY`] window wait on one `Notify`, fired by
//! one timer task. Waiting costs a short mutex hold and an intrusive-list insert.
//!
//! The price is precision: a deadline fires at the end of its window, i.e. between 0 and
//! [`GRANULARITY`] after the requested instant — never before it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Width of a deadline bucket: deadlines fire at most this late.
pub(crate) const GRANULARITY: Duration = Duration::from_millis(10);

struct Bucket {
    notify: Arc<Notify>,
    fired: AtomicBool,
}

/// The deadline buckets of one actor system.
pub(crate) struct Deadlines {
    origin: Instant,
    buckets: Mutex<BTreeMap<u64, Arc<Bucket>>>,
    runtime: tokio::runtime::Handle,
}

impl Deadlines {
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Self {
        Self {
            origin: Instant::now(),
            buckets: Mutex::new(BTreeMap::new()),
            runtime,
        }
    }

    /// A future that completes once `deadline` has passed (at most [`GRANULARITY`] later).
    pub(crate) fn wait_until(self: &Arc<Self>, deadline: Instant) -> DeadlineWait {
        let since = deadline.saturating_duration_since(self.origin);
        let tick = since.as_nanos().div_ceil(GRANULARITY.as_nanos());
        let tick = u64::try_from(tick).unwrap_or(u64::MAX);
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            buckets
                .entry(tick)
                .or_insert_with(|| self.start_bucket(tick))
                .clone()
        };
        DeadlineWait {
            notified: bucket.notify.clone().notified_owned(),
            bucket,
            enabled: false,
        }
    }

    fn start_bucket(self: &Arc<Self>, tick: u64) -> Arc<Bucket> {
        let bucket = Arc::new(Bucket {
            notify: Arc::new(Notify::new()),
            fired: AtomicBool::new(false),
        });
        let at = self
            .origin
            .checked_add(GRANULARITY.saturating_mul(u32::try_from(tick).unwrap_or(u32::MAX)))
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365));
        let deadlines = Arc::downgrade(self);
        let fire = bucket.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            fire.fired.store(true, Release);
            fire.notify.notify_waiters();
            if let Some(deadlines) = deadlines.upgrade() {
                let mut buckets = deadlines.buckets.lock().unwrap_or_else(|p| p.into_inner());
                buckets.remove(&tick);
            }
        });
        bucket
    }
}

pin_project_lite::pin_project! {
    /// Completes when its bucket fires.
    pub(crate) struct DeadlineWait {
        #[pin]
        notified: OwnedNotified,
        bucket: Arc<Bucket>,
        enabled: bool,
    }
}

impl Future for DeadlineWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if !*this.enabled {
            // Registered before looking at `fired`: a bucket firing concurrently either sees
            // this waiter or is seen by it (its flag is set before it notifies, and the Notify's
            // lock orders the two).
            this.notified.as_mut().enable();
            *this.enabled = true;
        }
        if this.bucket.fired.load(Acquire) {
            return Poll::Ready(());
        }
        this.notified.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_after_the_deadline_within_the_granularity() {
        let deadlines = Arc::new(Deadlines::new(tokio::runtime::Handle::current()));
        let start = Instant::now();
        for requested in [
            Duration::from_millis(1),
            Duration::from_millis(25),
            Duration::from_secs(3),
        ] {
            deadlines.wait_until(start + requested).await;
            let waited = start.elapsed();
            assert!(waited >= requested, "{waited:?} < {requested:?}");
            assert!(
                waited <= requested + GRANULARITY,
                "{waited:?} for {requested:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_share_a_bucket_and_a_fired_bucket_is_removed() {
        let deadlines = Arc::new(Deadlines::new(tokio::runtime::Handle::current()));
        let at = Instant::now() + Duration::from_millis(15);
        let a = deadlines.wait_until(at);
        let b = deadlines.wait_until(at + Duration::from_millis(1));
        assert_eq!(deadlines.buckets.lock().unwrap().len(), 1);
        a.await;
        b.await;
        tokio::task::yield_now().await;
        assert!(deadlines.buckets.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_in_the_past_fires_promptly() {
        let deadlines = Arc::new(Deadlines::new(tokio::runtime::Handle::current()));
        tokio::time::advance(Duration::from_secs(1)).await;
        let before = Instant::now();
        deadlines
            .wait_until(before - Duration::from_millis(500))
            .await;
        assert!(before.elapsed() <= GRANULARITY);
    }
}

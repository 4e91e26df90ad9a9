use super::events::EVENT_CAPACITY;
use super::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::sync::oneshot;
use tokio::time::{advance, Instant};

const CALL_TIMEOUT: Duration = Duration::from_millis(100);
const RESET: Duration = Duration::from_secs(1);

type R = Result<u32, BreakerError<&'static str>>;

fn builder(max_failures: u32) -> CircuitBreakerBuilder {
    CircuitBreaker::builder("test")
        .max_failures(max_failures)
        .call_timeout(CALL_TIMEOUT)
        .reset_timeout(RESET)
}

async fn ok(b: &CircuitBreaker) -> R {
    b.call(async { Ok(1) }).await
}

async fn fail(b: &CircuitBreaker) -> R {
    b.call(async { Err("down") }).await
}

async fn boom() -> Result<u32, &'static str> {
    panic!("kaboom (expected by the test)")
}

fn remaining(result: R) -> Duration {
    match result {
        Err(BreakerError::Open { remaining }) => remaining,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Trips a breaker whose `max_failures` is `n`.
async fn trip(b: &CircuitBreaker, n: u32) {
    for _ in 0..n {
        assert_eq!(fail(b).await, Err(BreakerError::Inner("down")));
    }
    assert_eq!(b.state(), BreakerState::Open);
}

async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

fn drain(rx: &mut broadcast::Receiver<BreakerEvent>) -> Vec<BreakerEvent> {
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    events
}

fn moved(from: BreakerState, to: BreakerState) -> BreakerEvent {
    BreakerEvent::Transition { from, to }
}

use BreakerState::{Closed, HalfOpen, Open};
use CallOutcome::{Failure, Rejected, Success};

#[tokio::test(start_paused = true)]
async fn a_closed_breaker_runs_calls_and_stays_closed_on_success() {
    let b = builder(3).build().unwrap();
    for i in 0..10 {
        assert_eq!(b.call(async move { Ok::<_, &str>(i) }).await, Ok(i));
    }
    let stats = b.stats();
    assert_eq!(stats.state, Closed);
    assert_eq!(stats.successes, 10);
    assert_eq!(stats.total_failures(), 0);
    assert_eq!(stats.times_opened, 0);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_the_breaker() {
    let b = builder(3).build().unwrap();
    assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
    assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().consecutive_failures, 2);
    // The call that trips the breaker still gets its own result.
    assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
    let stats = b.stats();
    assert_eq!(stats.state, Open);
    assert_eq!(stats.times_opened, 1);
    assert_eq!(stats.failures, 3);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_failure_count() {
    let b = builder(3).build().unwrap();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    ok(&b).await.unwrap();
    assert_eq!(b.stats().consecutive_failures, 0);
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), Closed);
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_rejects_at_once_without_running_the_call() {
    let b = builder(1).build().unwrap();
    trip(&b, 1).await;
    advance(Duration::from_millis(300)).await;
    let ran = AtomicBool::new(false);
    let result = b
        .call(async {
            ran.store(true, Relaxed);
            Ok::<u32, &str>(1)
        })
        .await;
    assert_eq!(
        result,
        Err(BreakerError::Open {
            remaining: Duration::from_millis(700)
        })
    );
    assert!(result.unwrap_err().is_rejected());
    assert!(!ran.load(Relaxed), "an open breaker must not run the call");
    assert_eq!(b.stats().rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_half_opens_once_the_reset_timeout_has_passed() {
    let b = builder(1).build().unwrap();
    let mut events = b.subscribe();
    trip(&b, 1).await;
    advance(RESET - Duration::from_millis(1)).await;
    assert_eq!(b.state(), Open);
    assert_eq!(remaining(ok(&b).await), Duration::from_millis(1));
    advance(Duration::from_millis(1)).await;
    // No call needed: `state` notices that the time has passed, and says so.
    assert_eq!(b.state(), HalfOpen);
    assert_eq!(
        drain(&mut events),
        [
            BreakerEvent::Call(Failure),
            moved(Closed, Open),
            BreakerEvent::Call(Rejected),
            moved(Open, HalfOpen),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_exactly_one_trial_through() {
    let b = builder(1).build().unwrap();
    trip(&b, 1).await;
    advance(RESET).await;
    let (finish, finished) = oneshot::channel::<Result<u32, &'static str>>();
    let mut trial = Box::pin(b.call(async { finished.await.unwrap() }));
    assert!(poll_once(&mut trial).await.is_pending());
    assert_eq!(b.state(), HalfOpen);
    for _ in 0..3 {
        // Concurrent callers fail fast while the trial runs.
        assert_eq!(remaining(ok(&b).await), Duration::ZERO);
    }
    finish.send(Ok(5)).unwrap();
    assert_eq!(trial.await, Ok(5));
    assert_eq!(b.state(), Closed);
    assert_eq!(ok(&b).await, Ok(1));
    let stats = b.stats();
    assert_eq!(stats.rejections, 3);
    assert_eq!(stats.successes, 2);
}

/// Callers on several OS threads arrive together at a breaker whose reset timeout has
/// passed: exactly one of them runs as the trial, every other one is rejected at once. The
/// paused clock cannot drive several threads, so this test uses a short real reset timeout
/// and waits it out (the wait is the point, not a synchronization).
#[test]
fn callers_racing_into_half_open_admit_exactly_one_trial() {
    const CALLERS: usize = 8;
    const ROUNDS: u64 = 20;
    const SHORT_RESET: Duration = Duration::from_millis(5);
    let b = CircuitBreaker::builder("race")
        .max_failures(1)
        .call_timeout(Duration::from_secs(60))
        .reset_timeout(SHORT_RESET)
        .build()
        .unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    let main = runtime();
    for round in 0..ROUNDS {
        main.block_on(trip(&b, 1));
        std::thread::sleep(SHORT_RESET + Duration::from_millis(1));
        let start = Arc::new(std::sync::Barrier::new(CALLERS));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let (results, outcomes) = std::sync::mpsc::channel();
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (b, start, release, ran, results) = (
                    b.clone(),
                    start.clone(),
                    release.clone(),
                    ran.clone(),
                    results.clone(),
                );
                std::thread::spawn(move || {
                    let rt = runtime();
                    start.wait();
                    let result: R = rt.block_on(b.call(async {
                        ran.fetch_add(1, SeqCst);
                        release.acquire().await.unwrap().forget();
                        Ok(1)
                    }));
                    let _ = results.send(result);
                })
            })
            .collect();
        // Everyone but the trial comes back at once; the trial waits for the release.
        let quick: Vec<R> = (1..CALLERS)
            .map_while(|_| outcomes.recv_timeout(Duration::from_secs(10)).ok())
            .collect();
        let state = b.state();
        release.add_permits(CALLERS);
        let last: Vec<R> = outcomes.iter().take(CALLERS - quick.len()).collect();
        for caller in callers {
            caller.join().unwrap();
        }
        // Counted once every caller is done: the trial may not have been polled yet when the
        // rejections come back, but every call that ran has finished by now.
        let trials = ran.load(SeqCst);
        assert_eq!(trials, 1, "round {round}: trial calls run");
        assert_eq!(quick.len(), CALLERS - 1, "round {round}: {quick:?}");
        assert!(
            quick.iter().all(|r| *r
                == Err(BreakerError::Open {
                    remaining: Duration::ZERO
                })),
            "round {round}: {quick:?}"
        );
        assert_eq!(state, HalfOpen, "round {round}");
        assert_eq!(last, [Ok(1)], "round {round}");
        assert_eq!(b.state(), Closed, "round {round}");
    }
    let stats = b.stats();
    assert_eq!(stats.rejections, ROUNDS * (CALLERS as u64 - 1));
    assert_eq!((stats.successes, stats.failures), (ROUNDS, ROUNDS));
    assert_eq!(stats.times_opened, ROUNDS);
}

#[tokio::test(start_paused = true)]
async fn a_successful_trial_closes_and_restores_the_reset_timeout() {
    let b = builder(1).exponential_backoff(2.0).build().unwrap();
    trip(&b, 1).await;
    advance(RESET).await;
    fail(&b).await.unwrap_err();
    assert_eq!(b.stats().reset_timeout, 2 * RESET);
    advance(2 * RESET).await;
    assert_eq!(ok(&b).await, Ok(1));
    let stats = b.stats();
    assert_eq!(stats.state, Closed);
    assert_eq!(stats.reset_timeout, RESET);
    assert_eq!(stats.consecutive_failures, 0);
    trip(&b, 1).await;
    assert_eq!(remaining(ok(&b).await), RESET);
}

#[tokio::test(start_paused = true)]
async fn failed_trials_reopen_with_backoff_growing_up_to_the_cap() {
    let b = builder(1)
        .exponential_backoff(2.0)
        .max_reset_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    trip(&b, 1).await;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let wait = remaining(ok(&b).await);
        waits.push(wait.as_secs());
        advance(wait).await;
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(fail(&b).await, Err(BreakerError::Inner("down")));
        assert_eq!(b.state(), Open);
    }
    assert_eq!(waits, [1, 2, 4, 5, 5]);
    assert_eq!(b.stats().times_opened, 6);
}

#[tokio::test(start_paused = true)]
async fn without_backoff_the_reset_timeout_stays_the_same() {
    let b = builder(1).build().unwrap();
    trip(&b, 1).await;
    for _ in 0..3 {
        assert_eq!(remaining(ok(&b).await), RESET);
        advance(RESET).await;
        fail(&b).await.unwrap_err();
    }
    assert_eq!(b.stats().reset_timeout, RESET);
}

#[tokio::test(start_paused = true)]
async fn jitter_stretches_open_periods_within_bounds() {
    let b = builder(1)
        .exponential_backoff(2.0)
        .max_reset_timeout(Duration::from_secs(4))
        .random_factor(0.5)
        .build()
        .unwrap();
    let within = |wait: Duration, base: Duration| wait >= base && wait <= base.mul_f64(1.5);
    let mut first_waits = Vec::new();
    for _ in 0..40 {
        trip(&b, 1).await;
        // Bases 1 s, 2 s, 4 s (the cap), 4 s: jitter applies on top of the capped base.
        for base in [1, 2, 4, 4].map(Duration::from_secs) {
            let wait = remaining(ok(&b).await);
            assert!(within(wait, base), "wait {wait:?} for base {base:?}");
            if base == RESET {
                first_waits.push(wait);
            }
            assert_eq!(b.stats().reset_timeout, base);
            advance(wait).await;
            fail(&b).await.unwrap_err();
        }
        advance(Duration::from_secs(6)).await;
        ok(&b).await.unwrap();
        assert_eq!(b.state(), Closed);
    }
    first_waits.dedup();
    assert!(first_waits.len() > 1, "jitter must vary the open periods");
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_slower_than_the_call_timeout_is_dropped_and_counts_as_failure() {
    let b = builder(2).build().unwrap();
    // Just in time: a success.
    let quick = b.call(async {
        tokio::time::sleep(CALL_TIMEOUT - Duration::from_millis(1)).await;
        Ok::<u32, &str>(1)
    });
    assert_eq!(quick.await, Ok(1));

    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let started = Instant::now();
    let slow: R = b
        .call(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok(1)
        })
        .await;
    assert_eq!(slow, Err(BreakerError::Timeout(CALL_TIMEOUT)));
    assert_eq!(started.elapsed(), CALL_TIMEOUT);
    assert!(dropped.load(Relaxed), "the slow call must be dropped");
    let stats = b.stats();
    assert_eq!((stats.timeouts, stats.consecutive_failures), (1, 1));

    let never = b.call(std::future::pending::<Result<u32, &str>>());
    assert_eq!(never.await, Err(BreakerError::Timeout(CALL_TIMEOUT)));
    assert_eq!(b.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_call_counts_as_failure_and_does_not_unwind() {
    let b = builder(3).build().unwrap();
    assert_eq!(
        b.call(boom()).await,
        Err(BreakerError::Panicked(
            "kaboom (expected by the test)".into()
        ))
    );
    // A panic on a later poll, with a formatted message.
    let later: R = b
        .call(async {
            tokio::task::yield_now().await;
            panic!("kaboom #{} (expected by the test)", 2)
        })
        .await;
    assert_eq!(
        later,
        Err(BreakerError::Panicked(
            "kaboom #2 (expected by the test)".into()
        ))
    );
    let stats = b.stats();
    assert_eq!((stats.panics, stats.consecutive_failures), (2, 2));
    b.call(boom()).await.unwrap_err();
    assert_eq!(b.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_predicate_decides_what_counts_as_failure() {
    let b = builder(1).build().unwrap();
    // An `Err` that is an answer, not an outage.
    for _ in 0..5 {
        let result = b
            .call_with(
                async { Err::<u32, _>("not found") },
                |r| matches!(r, Err(e) if *e != "not found"),
            )
            .await;
        assert_eq!(result, Err(BreakerError::Inner("not found")));
    }
    assert_eq!(b.state(), Closed);
    assert_eq!(b.stats().successes, 5);
    // An `Ok` that is an outage; the caller still gets it.
    let result = b
        .call_with(
            async { Ok::<u16, &str>(503) },
            |r| matches!(r, Ok(code) if *code >= 500),
        )
        .await;
    assert_eq!(result, Ok(503));
    assert_eq!(b.state(), Open);
    assert_eq!(b.stats().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_releases_the_half_open_slot() {
    let b = builder(1).build().unwrap();
    trip(&b, 1).await;
    advance(RESET).await;
    let mut trial = Box::pin(b.call(std::future::pending::<Result<u32, &str>>()));
    assert!(poll_once(&mut trial).await.is_pending());
    assert_eq!(remaining(ok(&b).await), Duration::ZERO);
    drop(trial);
    let stats = b.stats();
    assert_eq!((stats.state, stats.cancelled), (HalfOpen, 1));
    // The next caller becomes the trial.
    assert_eq!(ok(&b).await, Ok(1));
    assert_eq!(b.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn late_results_from_an_earlier_period_are_counted_but_move_nothing() {
    let b = builder(1)
        .call_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    // A slow call admitted while closed...
    let (finish_slow, slow_result) = oneshot::channel::<Result<u32, &'static str>>();
    let mut slow = Box::pin(b.call(async { slow_result.await.unwrap() }));
    assert!(poll_once(&mut slow).await.is_pending());
    trip(&b, 1).await;
    advance(RESET).await;
    let (finish_trial, trial_result) = oneshot::channel::<Result<u32, &'static str>>();
    let mut trial = Box::pin(b.call(async { trial_result.await.unwrap() }));
    assert!(poll_once(&mut trial).await.is_pending());
    // ...succeeds while the trial runs: it must not close the breaker.
    finish_slow.send(Ok(1)).unwrap();
    assert_eq!(slow.await, Ok(1));
    assert_eq!(b.state(), HalfOpen);
    assert_eq!(remaining(ok(&b).await), Duration::ZERO);
    // The trial decides.
    finish_trial.send(Err("still down")).unwrap();
    assert_eq!(trial.await, Err(BreakerError::Inner("still down")));
    let stats = b.stats();
    assert_eq!(stats.state, Open);
    assert_eq!(stats.successes, 1, "the late success is still counted");
}

#[tokio::test(start_paused = true)]
async fn events_are_published_in_order() {
    let b = builder(2).build().unwrap();
    let mut events = b.subscribe();
    ok(&b).await.unwrap();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    ok(&b).await.unwrap_err();
    advance(RESET).await;
    fail(&b).await.unwrap_err();
    advance(RESET).await;
    ok(&b).await.unwrap();
    let timed_out: R = b.call(std::future::pending()).await;
    timed_out.unwrap_err();
    b.call(boom()).await.unwrap_err();
    assert_eq!(
        drain(&mut events),
        [
            BreakerEvent::Call(Success),
            BreakerEvent::Call(Failure),
            BreakerEvent::Call(Failure),
            moved(Closed, Open),
            BreakerEvent::Call(Rejected),
            moved(Open, HalfOpen),
            BreakerEvent::Call(Failure),
            moved(HalfOpen, Open),
            moved(Open, HalfOpen),
            BreakerEvent::Call(Success),
            moved(HalfOpen, Closed),
            BreakerEvent::Call(CallOutcome::Timeout),
            BreakerEvent::Call(CallOutcome::Panicked),
            moved(Closed, Open),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn listeners_see_transitions_in_order_and_may_call_back_into_the_breaker() {
    let from_builder = Arc::new(Mutex::new(Vec::new()));
    let log = from_builder.clone();
    let b = builder(1)
        .on_transition(move |from, to| log.lock().unwrap().push((from, to)))
        .build()
        .unwrap();
    // A listener added later, which reads the breaker from inside the callback.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, breaker) = (seen.clone(), b.clone());
    b.on_event(move |event| {
        if let BreakerEvent::Transition { to, .. } = *event {
            log.lock()
                .unwrap()
                .push((to, breaker.state(), breaker.stats().state));
        }
    });
    trip(&b, 1).await;
    advance(RESET).await;
    ok(&b).await.unwrap();
    assert_eq!(
        *from_builder.lock().unwrap(),
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Open, Open, Open),
            (HalfOpen, HalfOpen, HalfOpen),
            (Closed, Closed, Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_listener_is_ignored() {
    let b = builder(1)
        .on_event(|_| panic!("listener panics (expected by the test)"))
        .build()
        .unwrap();
    let transitions = Arc::new(AtomicUsize::new(0));
    let count = transitions.clone();
    b.on_transition(move |_, _| {
        count.fetch_add(1, Relaxed);
    });
    let mut events = b.subscribe();
    trip(&b, 1).await;
    advance(RESET).await;
    ok(&b).await.unwrap();
    assert_eq!(transitions.load(Relaxed), 3);
    assert_eq!(drain(&mut events).len(), 5);
}

#[tokio::test(start_paused = true)]
async fn counters_are_exact() {
    let b = builder(3).build().unwrap();
    for _ in 0..4 {
        ok(&b).await.unwrap();
    }
    fail(&b).await.unwrap_err();
    let timed_out: R = b.call(std::future::pending()).await;
    timed_out.unwrap_err();
    b.call(boom()).await.unwrap_err();
    ok(&b).await.unwrap_err();
    ok(&b).await.unwrap_err();
    advance(RESET).await;
    drop(Box::pin(ok(&b))); // never polled: not admitted, not counted
    let mut cancelled = Box::pin(b.call(std::future::pending::<Result<u32, &str>>()));
    assert!(poll_once(&mut cancelled).await.is_pending());
    drop(cancelled);
    ok(&b).await.unwrap();
    let judged = b.call_with(async { Ok::<u32, &str>(500) }, |_| true).await;
    assert_eq!(judged, Ok(500));
    assert_eq!(
        b.stats(),
        BreakerStats {
            state: Closed,
            successes: 5,
            failures: 2,
            timeouts: 1,
            panics: 1,
            rejections: 2,
            cancelled: 1,
            ignored: 0,
            times_opened: 1,
            consecutive_failures: 1,
            reset_timeout: RESET,
            events_dropped: 0,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_keep_exact_counts_and_every_event_is_delivered_or_counted() {
    const TASKS: u64 = 4;
    const CALLS: u64 = 2_000;
    let delivered = Arc::new(AtomicU64::new(0));
    let count = delivered.clone();
    let b = builder(3)
        .on_event(move |_| {
            count.fetch_add(1, Relaxed);
        })
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..CALLS {
                    ok(&b).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = b.stats();
    assert_eq!(stats.successes, TASKS * CALLS);
    // Each outcome was delivered exactly once, or dropped (and counted) when the delivering
    // thread fell too far behind the others.
    assert_eq!(
        delivered.load(Relaxed) + stats.events_dropped,
        TASKS * CALLS
    );
}

#[tokio::test(start_paused = true)]
async fn listeners_falling_behind_lose_call_outcomes_but_never_transitions() {
    const BURST: u64 = 2_000;
    let b = builder(1).build().unwrap();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let (log, breaker) = (delivered.clone(), b.clone());
    b.on_event(move |event| {
        let first = {
            let mut log = log.lock().unwrap();
            log.push(*event);
            log.len() == 1
        };
        if first {
            // Calls made while this listener runs only queue their events: a burst
            // larger than the queue, then a trip.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            for _ in 0..BURST {
                let mut call = std::pin::pin!(breaker.call(async { Ok::<u32, &str>(1) }));
                assert!(call.as_mut().poll(&mut cx).is_ready());
            }
            let mut call = std::pin::pin!(breaker.call(async { Err::<u32, _>("down") }));
            assert!(call.as_mut().poll(&mut cx).is_ready());
        }
    });
    ok(&b).await.unwrap();
    let delivered = delivered.lock().unwrap();
    let capacity = EVENT_CAPACITY as u64;
    assert_eq!(delivered.len() as u64, 1 + capacity + 1);
    assert_eq!(delivered.last(), Some(&moved(Closed, Open)));
    let stats = b.stats();
    assert_eq!(stats.events_dropped, BURST + 1 - capacity);
    assert_eq!((stats.successes, stats.failures), (BURST + 1, 1));
}

#[test]
fn build_rejects_invalid_settings() {
    use BreakerConfigError::*;
    let err = |b: CircuitBreakerBuilder| b.build().unwrap_err();
    assert_eq!(err(builder(0)), ZeroMaxFailures);
    assert_eq!(
        err(builder(1).call_timeout(Duration::ZERO)),
        ZeroCallTimeout
    );
    assert_eq!(
        err(builder(1).reset_timeout(Duration::ZERO)),
        ZeroResetTimeout
    );
    assert_eq!(
        err(builder(1).exponential_backoff(0.5)),
        InvalidBackoffFactor(0.5)
    );
    assert!(matches!(
        err(builder(1).exponential_backoff(f64::NAN)),
        InvalidBackoffFactor(x) if x.is_nan()
    ));
    assert_eq!(
        err(builder(1).exponential_backoff(f64::INFINITY)),
        InvalidBackoffFactor(f64::INFINITY)
    );
    assert_eq!(err(builder(1).random_factor(1.5)), InvalidRandomFactor(1.5));
    assert_eq!(
        err(builder(1).random_factor(-0.1)),
        InvalidRandomFactor(-0.1)
    );
    assert_eq!(
        err(builder(1).max_reset_timeout(Duration::from_millis(10))),
        MaxResetTimeoutTooShort {
            reset_timeout: RESET,
            max_reset_timeout: Duration::from_millis(10)
        }
    );
    assert!(err(builder(1).random_factor(2.0))
        .to_string()
        .contains("random_factor"));
    let b = CircuitBreaker::builder("defaults").build().unwrap();
    assert_eq!(b.name(), "defaults");
    assert_eq!(b.call_timeout(), Duration::from_secs(10));
    assert_eq!(b.stats().reset_timeout, Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker_that_is_send_and_sync() {
    fn shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let b = builder(1).build().unwrap();
    shareable(&b);
    send(&b.call(async { Ok::<u32, &str>(1) }));
    let clone = b.clone();
    fail(&clone).await.unwrap_err();
    assert_eq!(b.state(), Open);
    assert!(format!("{b:?}").contains("Open"));
}

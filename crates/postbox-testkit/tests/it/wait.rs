//! `within` and `until`: return as soon as the awaited thing happens; fail, naming it, when
//! it does not.

use crate::common::panic_message;
use postbox_testkit::{until, until_async, within, PATIENCE};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn within_returns_the_output() {
    assert_eq!(within(PATIENCE, async { 42 }).await, 42);
    let task = tokio::spawn(async { "done" });
    assert_eq!(within(PATIENCE, task).await.unwrap(), "done");
}

#[tokio::test(start_paused = true)]
async fn within_fails_after_its_limit_naming_it_and_the_place() {
    let message = panic_message(within(
        Duration::from_millis(250),
        std::future::pending::<()>(),
    ))
    .await;
    assert!(
        message.starts_with("within: not finished after 250ms"),
        "{message}"
    );
    assert!(message.contains("tests/it/wait.rs"), "{message}");
}

#[tokio::test]
async fn until_returns_once_the_condition_holds_with_its_value() {
    let count = Arc::new(AtomicU32::new(0));
    let counting = tokio::spawn({
        let count = count.clone();
        async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    until(PATIENCE, "five counts", || {
        count.load(Ordering::Relaxed) == 5
    })
    .await;
    let value = until(PATIENCE, "a count", || {
        Some(count.load(Ordering::Relaxed)).filter(|n| *n > 0)
    })
    .await;
    assert_eq!(value, 5);
    let value = until(PATIENCE, "an Ok", || -> Result<u32, String> { Ok(7) }).await;
    assert_eq!(value, 7);
    counting.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn until_fails_naming_what_it_waited_for_and_the_condition_s_last_word() {
    let message = panic_message(until(Duration::from_secs(1), "the moon", || false)).await;
    assert!(
        message.starts_with("until: the moon did not happen within 1s ("),
        "{message}"
    );
    assert!(message.contains("checks; waited at"), "{message}");
    assert!(message.contains("tests/it/wait.rs"), "{message}");

    let tries = Arc::new(AtomicU32::new(0));
    let message = panic_message({
        let tries = tries.clone();
        until(Duration::from_secs(1), "a connection", move || {
            let n = tries.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(format!("refused ({n})"))
        })
    })
    .await;
    let checks = tries.load(Ordering::Relaxed);
    assert!(checks > 1, "{checks}");
    assert!(
        message.contains(&format!("last: \"refused ({})\"", checks - 1)),
        "{message}"
    );
}

#[tokio::test]
async fn until_async_awaits_each_check() {
    let count = Arc::new(AtomicU32::new(0));
    let value = until_async(PATIENCE, "three checks", async || {
        tokio::task::yield_now().await;
        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(value, 3);
}

#[tokio::test(start_paused = true)]
async fn until_async_bounds_a_check_that_never_finishes() {
    let message = panic_message(until_async(
        Duration::from_secs(2),
        "a hung check",
        async || std::future::pending::<bool>().await,
    ))
    .await;
    assert!(
        message.contains("a hung check did not happen within 2s"),
        "{message}"
    );
    assert!(
        message.contains("the last check itself did not finish"),
        "{message}"
    );
}

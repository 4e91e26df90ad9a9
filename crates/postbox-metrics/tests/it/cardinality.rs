//! A million idle anonymous actors add nothing to the number of series.

use crate::common::{sample_lines, series_value, until, PATIENCE};
use postbox::prelude::*;
use postbox_metrics::Metrics;

struct Idle;
impl Actor for Idle {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_anonymous_actors_do_not_multiply_the_series() {
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system).build().unwrap();
    let baseline = metrics.encode().unwrap();
    let baseline_series = sample_lines(&baseline).len();

    const ACTORS: usize = 1_000_000;
    let started = std::time::Instant::now();
    for _ in 0..ACTORS {
        system.spawn(Props::new(|| Idle)).unwrap();
    }
    until(PATIENCE, "every actor to be spawned", || {
        system.actor_count() > ACTORS
    })
    .await;
    let spawned = started.elapsed();

    let scrape_started = std::time::Instant::now();
    let exposition = tokio::task::spawn_blocking({
        let metrics = metrics.clone();
        move || metrics.encode().unwrap()
    })
    .await
    .unwrap();
    let scraped = scrape_started.elapsed();
    let series = sample_lines(&exposition).len();
    eprintln!(
        "spawned {ACTORS} actors in {spawned:?}; scrape took {scraped:?}; \
         {series} series (baseline {baseline_series})"
    );

    let idle_type = std::any::type_name::<Idle>();
    assert_eq!(
        series_value(
            &exposition,
            &format!("postbox_group_actors{{actor_type=\"{idle_type}\"}}")
        ),
        Some(ACTORS as f64)
    );
    assert_eq!(
        series_value(&exposition, "postbox_actors_live"),
        Some((ACTORS + 1) as f64)
    );
    // The new type adds its group gauges (actors, depth sum, depth max, processed): a
    // constant, whatever the number of actors of that type.
    assert!(
        series <= baseline_series + 8,
        "{series} series with a million actors, {baseline_series} without"
    );
    assert!(series < 200, "{series} series");
    assert!(
        !exposition.lines().any(
            |line| line.starts_with("postbox_actor_mailbox_depth{") && line.contains(idle_type)
        ),
        "anonymous actors get no series of their own"
    );
    // No graceful shutdown: stopping a million actors one by one would take longer than the
    // test; the runtime's end drops them.
}

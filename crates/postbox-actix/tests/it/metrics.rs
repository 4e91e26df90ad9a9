//! A hosted actix actor on the metrics endpoint: its depth there includes what waits on the
//! actix side.

use crate::common::*;
use postbox::prelude::*;
use postbox_actix::ActixHost;
use postbox_metrics::Metrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_shows_a_hosts_backlog_on_the_actix_side() {
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system).build().unwrap();
    let addr = actix().start(|_| Counter::default());
    let host = system
        .spawn(ActixHost::props(addr.clone()).name("held"))
        .unwrap();
    let waits: Vec<_> = (0..3)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.ask(Wait).await })
        })
        .collect();
    until(PATIENCE, "the waits to be in flight", || host.depth() == 3).await;

    // The scrape: the named actor's depth gauge and its type's group.
    let host_type = std::any::type_name::<ActixHost<Counter>>();
    let exposition = metrics.encode().unwrap();
    let gauge =
        format!("postbox_actor_mailbox_depth{{actor_type=\"{host_type}\",actor=\"/user/held\"}} 3");
    assert!(exposition.lines().any(|line| line == gauge), "{exposition}");
    let group = format!("postbox_group_mailbox_depth{{actor_type=\"{host_type}\"}} 3");
    assert!(exposition.lines().any(|line| line == group), "{exposition}");

    // `/actors`: the deepest mailbox in the system.
    let view = metrics.actors(5, 0);
    assert_eq!(view.total_depth, 3);
    assert_eq!(
        (view.top[0].id, view.top[0].depth, view.top[0].path.as_str()),
        (host.id().get(), 3, "/user/held")
    );

    assert_eq!(within(PATIENCE, addr.send(Release)).await.unwrap(), 3);
    for wait in waits {
        assert_eq!(within(PATIENCE, wait).await.unwrap(), Ok("released"));
    }
    until(PATIENCE, "the depth to return to 0", || host.depth() == 0).await;
    assert_eq!(metrics.actors(5, 0).total_depth, 0);
    system.shutdown().await;
}

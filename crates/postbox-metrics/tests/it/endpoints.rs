//! The JSON views, health, the dashboard's files, and errors for bad requests.

use crate::common::{get, stuck_with_depth};
use postbox::prelude::*;
use postbox_metrics::{Metrics, MetricsError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[tokio::test]
async fn health_follows_the_readiness_flag_and_check() {
    let system = ActorSystem::new();
    let joined = Arc::new(AtomicBool::new(true));
    let check = joined.clone();
    let metrics = Metrics::builder(&system)
        .ready_when(move || check.load(Ordering::Acquire))
        .build()
        .unwrap();
    let server = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();

    let live = get(addr, "/health/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(live.json()["live"], true);

    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "not marked ready yet");

    metrics.readiness().set_ready(true);
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["ready"], true);

    joined.store(false, Ordering::Release);
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "the readiness check failed");

    joined.store(true, Ordering::Release);
    system.shutdown().await;
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "the actor system is shutting down");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system).build().unwrap();
    let server = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();

    let missing = get(addr, "/nope").await;
    assert_eq!(missing.status, 404);
    let message = missing.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("/nope") && message.contains("/metrics"),
        "{message}"
    );

    for (query, needle) in [
        (
            "/actors?top=lots",
            "top must be a whole number from 0 to 1000",
        ),
        (
            "/actors?tree=-1",
            "tree must be a whole number from 0 to 10000",
        ),
        ("/actors?top=1001", "top must be a whole number"),
        ("/actors?depth=3", "unknown parameter \"depth\""),
    ] {
        let response = get(addr, query).await;
        assert_eq!(response.status, 400, "{query}");
        let error = response.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(needle), "{query}: {error}");
    }
    server.shutdown().await;
    system.shutdown().await;
}

#[tokio::test]
async fn a_second_metrics_for_one_system_is_refused() {
    let system = ActorSystem::new();
    let _first = Metrics::builder(&system).build().unwrap();
    assert_eq!(
        Metrics::builder(&system).build().err(),
        Some(MetricsError::ObserverTaken)
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_and_members_views_show_the_deepest_mailboxes_and_the_tree() {
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system).build().unwrap();
    let gate = Arc::new(Notify::new());
    let deep = stuck_with_depth(&system, &gate, Some("deep"), 9).await;
    let middle = stuck_with_depth(&system, &gate, None, 4).await;
    stuck_with_depth(&system, &gate, Some("shallow"), 1).await;
    let server = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();

    let view = get(addr, "/actors?top=2&tree=3").await;
    assert_eq!(view.status, 200);
    let view = view.json();
    assert_eq!(view["live"], 4);
    assert_eq!(view["total_depth"], 14);
    let top = view["top"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top[0]["path"], "/user/deep");
    assert_eq!(top[0]["depth"], 9);
    assert_eq!(top[0]["id"], deep.id().get());
    assert_eq!(top[1]["id"], middle.id().get());
    assert_eq!(top[1]["depth"], 4);
    assert_eq!(top[1]["status"], "running");

    let tree = &view["tree"];
    assert_eq!(tree["total"], 4);
    assert_eq!(tree["truncated"], true);
    let nodes = tree["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["path"], "/user");
    assert_eq!(nodes[0]["parent"], serde_json::Value::Null);
    assert_eq!(nodes[0]["children"], 3);
    // Children come after their parent, by id: the first two spawned.
    assert_eq!(nodes[1]["id"], deep.id().get());
    assert_eq!(nodes[1]["parent"], nodes[0]["id"]);
    assert_eq!(nodes[2]["id"], middle.id().get());

    let stuck = std::any::type_name::<crate::common::Stuck>();
    let groups = view["groups"].as_array().unwrap();
    let group = groups.iter().find(|g| g["actor_type"] == stuck).unwrap();
    assert_eq!(
        (&group["actors"], &group["depth_sum"], &group["depth_max"]),
        (&3.into(), &14.into(), &9.into())
    );

    let members = get(addr, "/members").await;
    assert_eq!(members.status, 200);
    let members = members.json();
    let members = members["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "a node without a cluster is alone");
    assert_eq!(members[0]["status"], "up");
    assert_eq!(members[0]["is_self"], true);
    assert_eq!(members[0]["load"], 14.0);

    server.shutdown().await;
    gate.notify_waiters();
}

#[tokio::test]
async fn the_dashboard_and_its_assets_are_served_from_the_binary() {
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system).build().unwrap();
    let server = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    assert!(page.body.contains("<script src=\"/assets/dashboard.js\">"));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "no CDN"
    );
    for (path, kind) in [
        ("/assets/dashboard.js", "text/javascript"),
        ("/assets/dashboard.css", "text/css"),
    ] {
        let asset = get(addr, path).await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(asset.headers["content-type"].starts_with(kind), "{path}");
        assert!(!asset.body.is_empty());
    }
    server.shutdown().await;
    system.shutdown().await;
}

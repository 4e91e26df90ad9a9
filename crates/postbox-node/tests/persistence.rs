//! The node's `[persistence]`: the store is opened at start and handed out, two nodes
//! started with the same path share it, its counters reach `/metrics`, and a store that
//! cannot be opened stops the start with an error naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use postbox::prelude::*;
use postbox_node::{Node, NodeConfig, NodeError};
use postbox_persistence::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Serialize, Deserialize)]
struct Visited;
impl Versioned for Visited {
    const TAG: &'static str = "node-test.visited";
}

#[derive(Default, Serialize, Deserialize)]
struct Visits(u64);
impl Versioned for Visits {
    const TAG: &'static str = "node-test.visits";
}
impl EventSourced for Visits {
    type Event = Visited;
    fn apply(&mut self, _: &Visited) {
        self.0 += 1;
    }
}

struct Page {
    visits: Journaled<Visits>,
}
impl Actor for Page {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.visits.recover().await?;
        Ok(())
    }
}

struct Visit;
impl Message for Visit {
    type Reply = Result<u64, PersistError>;
}
impl Handler<Visit> for Page {
    async fn handle(&mut self, _: Visit, ctx: &mut Context<Self>) -> Result<u64, PersistError> {
        self.visits.persist(ctx, Visited).await?;
        Ok(self.visits.state().0)
    }
}

fn config(store_path: &Path) -> NodeConfig {
    let mut config = NodeConfig::default();
    config.remote.listen = "127.0.0.1:0".parse().unwrap();
    config.cluster.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.node.services = Vec::new();
    config.persistence.path = store_path.to_path_buf();
    config
}

fn page(node: &Node) -> Props<Page> {
    let persistence = node.persistence().expect("a store").clone();
    Props::new(move || Page {
        visits: persistence.journaled("page|home"),
    })
}

async fn scrape(node: &Node) -> String {
    let addr = node.metrics_addr().expect("metrics on");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_one_store_path_share_entities_and_show_persistence_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/postbox.db");
    let first = Node::builder().config(config(&path)).start().await.unwrap();
    let home = first.system().spawn(page(&first)).unwrap();
    assert_eq!(home.ask(Visit).await.unwrap(), Ok(1));
    assert_eq!(home.ask(Visit).await.unwrap(), Ok(2));
    home.stop();
    home.wait_for_stop().await;

    // Another node on the same file: the entity, re-homed, finds its events.
    let second = Node::builder().config(config(&path)).start().await.unwrap();
    let rehomed = second.system().spawn(page(&second)).unwrap();
    assert_eq!(rehomed.ask(Visit).await.unwrap(), Ok(3));

    let metrics = scrape(&first).await;
    assert!(
        metrics.contains("postbox_persist_written_total{what=\"event\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postbox_persist_latency_seconds_count 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postbox_persist_commits_total 2\n"),
        "{metrics}"
    );
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_opened_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let error = Node::builder()
        .config(config(&not_a_dir.join("postbox.db")))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(error, NodeError::Persistence(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("persistence: sqlite store"),
        "{message}"
    );
    assert!(message.contains("file"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_none_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("unused.db"));
    config.persistence.store = "none".into();
    let node = Node::builder().config(config).start().await.unwrap();
    assert!(node.persistence().is_none());
    assert!(!dir.path().join("unused.db").exists());
    assert!(!scrape(&node).await.contains("postbox_persist"));
    node.shutdown().await;
}

//! The HTTP server's bounds over real loopback TCP: slowloris clients are cut at the header
//! read timeout, a connection beyond `max_connections` is answered 503 at once, and
//! `/metrics` counts both.

use crate::common::{get, series_value, within, PATIENCE};
use postbox::prelude::*;
use postbox_metrics::{HttpLimits, Metrics};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A slowloris client: a request head that never ends, one byte every 100 ms. Returns once
/// the server has closed the connection.
async fn slowloris(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n")
        .await;
    let mut buf = [0; 256];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => panic!("the server answered a request that never ended"),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let _ = stream.write_all(b"a").await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_and_connections_beyond_the_bound_refused() {
    const MAX: usize = 8;
    let system = ActorSystem::new();
    let metrics = Metrics::builder(&system)
        .http_limits(
            HttpLimits::default()
                .max_connections(MAX)
                .header_read_timeout(Duration::from_secs(3)),
        )
        .build()
        .unwrap();
    let server = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();

    let mut held = Vec::new();
    for _ in 0..MAX {
        let stream = within(PATIENCE, TcpStream::connect(addr)).await.unwrap();
        held.push(tokio::spawn(slowloris(stream)));
    }
    // Every place is taken: the next client is told so at once, without being read.
    let mut extra = within(PATIENCE, TcpStream::connect(addr)).await.unwrap();
    let mut refusal = String::new();
    within(PATIENCE, extra.read_to_string(&mut refusal))
        .await
        .unwrap();
    assert!(
        refusal.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{refusal}"
    );

    // The slow clients are cut by the header read timeout, however long they would go on.
    for client in held {
        within(PATIENCE, client).await.unwrap();
    }
    let scrape = get(addr, "/metrics").await;
    assert_eq!(scrape.status, 200);
    let value =
        |series: &str| series_value(&scrape.body, series).unwrap_or_else(|| panic!("no {series}"));
    assert_eq!(value("postbox_http_connections_max"), MAX as f64);
    assert_eq!(value("postbox_http_header_timeouts_total"), MAX as f64);
    assert_eq!(value("postbox_http_connections_refused_total"), 1.0);
    assert_eq!(
        value("postbox_http_connections_accepted_total"),
        MAX as f64 + 1.0
    );
    assert_eq!(value("postbox_http_connections"), 1.0, "the scrape itself");
    assert_eq!(value("postbox_http_accept_errors_total"), 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn limits_out_of_range_are_refused_by_build() {
    let system = ActorSystem::new();
    let error = Metrics::builder(&system)
        .http_limits(HttpLimits::default().max_connections(0))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("max_connections"), "{error}");
}

//! The `otlp` feature: spans reach a collector over OTLP/HTTP with postbox's own ids.
//!
//! The collector is a stub (axum on 127.0.0.1:0, on a runtime of its own) that decodes each
//! protobuf POST with `opentelemetry-proto` and hands the spans to the test. Its own binary:
//! it installs a tracing subscriber (see `crates/postbox/tests/tracing.rs` for why).

#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use postbox::prelude::*;
use postbox::trace::TraceContext;
use prost::Message as _;
use std::sync::mpsc;
use std::time::Duration;

/// Asks its peer (if any) and answers with the context it handled the message in.
struct Relay {
    peer: Option<ActorRef<Relay>>,
}
impl Actor for Relay {}

struct Where;
impl Message for Where {
    type Reply = Option<TraceContext>;
}
impl Handler<Where> for Relay {
    async fn handle(&mut self, _: Where, _: &mut Context<Self>) -> Option<TraceContext> {
        if let Some(peer) = &self.peer {
            peer.ask(Where).await.unwrap();
        }
        TraceContext::current()
    }
}

/// One POST the stub collector received: the service name and the spans.
type Export = (Option<String>, Vec<Span>);

/// Starts the stub collector on a thread of its own; returns its traces URL and what it
/// receives.
fn collector() -> (String, mpsc::Receiver<Export>) {
    let (exports, received) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let exports = exports.clone();
                    async move {
                        let request = ExportTraceServiceRequest::decode(body).unwrap();
                        for resource in request.resource_spans {
                            let service = resource.resource.and_then(|r| {
                                r.attributes
                                    .into_iter()
                                    .find(|kv| kv.key == "service.name")
                                    .and_then(|kv| match kv.value?.value? {
                                        Value::StringValue(name) => Some(name),
                                        _ => None,
                                    })
                            });
                            let spans = resource
                                .scope_spans
                                .into_iter()
                                .flat_map(|scope| scope.spans)
                                .collect();
                            let _ = exports.send((service, spans));
                        }
                        // An empty `ExportTraceServiceResponse`: all accepted.
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                            Vec::<u8>::new(),
                        )
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    (format!("http://{addr}/v1/traces"), received)
}

#[test]
fn handle_spans_reach_the_collector_with_postboxs_ids() {
    use tracing_subscriber::layer::SubscriberExt;
    let (endpoint, received) = collector();
    let (layer, exporter) = postbox_metrics::otlp::layer(&endpoint, "otlp-test").unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let root = TraceContext::new_root();
    let (front, back) = tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let system = ActorSystem::new();
            let back = system.spawn(|| Relay { peer: None }).unwrap();
            let front = system
                .spawn(move || Relay {
                    peer: Some(back.clone()),
                })
                .unwrap();
            // `front` asks `back` within the root's trace; `back`'s answer is not needed:
            // `front`'s context is, and `back`'s span is `front`'s child.
            let front_cx = root.scope(front.ask(Where)).await.unwrap().unwrap();
            let back_cx = front.ask(Where).await.unwrap();
            system.shutdown().await;
            (front_cx, back_cx)
        })
    });
    assert!(back.is_some());
    // Exported at once, not at the next batch interval.
    exporter.flush().unwrap();

    let mut spans = Vec::new();
    while spans.len() < 4 {
        let (service, batch) = received
            .recv_timeout(Duration::from_secs(20))
            .expect("the collector received the spans");
        assert_eq!(service.as_deref(), Some("otlp-test"));
        spans.extend(batch.into_iter().filter(|span| span.name == "handle"));
    }
    let by_id = |id: [u8; 8]| {
        spans
            .iter()
            .find(|span| span.span_id == id)
            .unwrap_or_else(|| panic!("no span {id:?} in {spans:#?}"))
    };
    // `front`'s span: postbox's trace id and span id, the root's span as parent.
    let front_span = by_id(front.span_id().to_bytes());
    assert_eq!(front_span.trace_id, root.trace_id().to_bytes());
    assert_eq!(front_span.parent_span_id, root.span_id().to_bytes());
    // `back`'s span under it, in the same trace.
    let back_span = spans
        .iter()
        .find(|span| span.parent_span_id == front.span_id().to_bytes())
        .expect("the asked actor's span");
    assert_eq!(back_span.trace_id, root.trace_id().to_bytes());
    // The fields are attributes too.
    let attribute = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    };
    assert_eq!(
        attribute(front_span, "trace_id"),
        Some(Value::StringValue(root.trace_id().to_string()))
    );
    // The second ask started a trace of its own: a root with its own random trace id.
    let roots: Vec<_> = spans
        .iter()
        .filter(|span| span.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    assert_ne!(roots[0].trace_id, root.trace_id().to_bytes());
    exporter.shutdown().unwrap();
}

#[test]
fn a_bad_endpoint_is_refused_up_front() {
    for endpoint in ["https://127.0.0.1:4318/v1/traces", "not a url", ""] {
        assert!(
            matches!(
                postbox_metrics::otlp::OtlpExporter::new(endpoint, "x"),
                Err(postbox_metrics::otlp::OtlpError::Endpoint(_))
            ),
            "{endpoint:?}"
        );
    }
}

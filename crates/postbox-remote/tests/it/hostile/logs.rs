//! Finding 13, the transport's part: a flood of refused connections costs a log line per
//! kind and period (with how many were held back), not one per connection; every refusal is
//! still counted, by reason.

use super::*;
use postbox_remote::Refusal;
use postbox_testkit::{within, CloseReason, PATIENCE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts the transport's warnings on the thread it is installed on.
#[derive(Clone, Default)]
struct Warnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        metadata.is_event()
            && *metadata.level() == tracing::Level::WARN
            && metadata.target().starts_with("postbox_remote")
    }

    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_flood_of_refused_connections_is_logged_at_a_bounded_rate() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    const FLOOD: u64 = 300;
    let refused = tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (node, _prey) = prey_node(remote_config()).await;
            for _ in 0..FLOOD {
                let mut client = WireClient::connect(node.addr()).await.expect("connect");
                client
                    .write_raw(&[0, 0, 0, 2, 0xee, 0xee])
                    .await
                    .expect("write");
                assert!(matches!(
                    within(PATIENCE, client.wait_closed()).await,
                    Ok(CloseReason::Refused { .. })
                ));
            }
            let refused = node.remote.stats().refused_by(Refusal::Malformed);
            still_serving(node.addr()).await;
            node.shutdown().await;
            refused
        })
    });
    assert_eq!(refused, FLOOD);
    let lines = warnings.0.load(Ordering::Relaxed);
    assert!(
        (1..=3).contains(&lines),
        "{lines} warnings for {FLOOD} refusals: one per kind per 10 s is the bound"
    );
}

//! Tests that install `tracing` subscribers. They live in their own binary, and take a lock,
//! because tracing caches callsite interest process-wide: subscribers installed by tests running
//! in parallel would otherwise interfere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use postbox::prelude::*;
use postbox::{DeadLetterReason, LOG_BURST};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

static SERIAL: Mutex<()> = Mutex::new(());

struct Busy {
    gate: Arc<Notify>,
}
impl Actor for Busy {}

struct Nap(u64);
impl Message for Nap {
    type Reply = ();
}
impl Handler<Nap> for Busy {
    async fn handle(&mut self, Nap(ms): Nap, _: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(ms));
        let _ = &self.gate;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Records the spans created on the thread it is installed on.
#[derive(Clone, Default)]
struct SpanLog(Arc<Mutex<Vec<(String, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanLog {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!("{}={} ", field.name(), value));
            }
        }
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_string(), fields.0));
    }
}

#[test]
fn every_handled_message_gets_a_span_with_actor_and_message_type() {
    use tracing_subscriber::layer::SubscriberExt;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let spans = SpanLog::default();
    let subscriber = tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let id = tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(async {
            let system = ActorSystem::new();
            let gate = Arc::new(Notify::new());
            let actor = system.spawn(move || Busy { gate: gate.clone() }).unwrap();
            for _ in 0..3 {
                actor.ask(Nap(0)).await.unwrap();
            }
            system.shutdown().await;
            actor.id()
        })
    });
    let spans = spans.0.lock().unwrap();
    let handled: Vec<_> = spans.iter().filter(|(name, _)| name == "handle").collect();
    assert_eq!(handled.len(), 3, "{spans:?}");
    for (_, fields) in handled {
        assert!(
            fields.contains(&format!("actor.id={}", id.get())),
            "{fields}"
        );
        assert!(fields.contains("Busy"), "{fields}");
        assert!(
            fields.contains("message=") && fields.contains("Nap"),
            "{fields}"
        );
    }
}

/// Captures formatted log lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn dead_letters_are_logged_at_a_bounded_rate() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(async {
            let system = ActorSystem::new();
            let gate = Arc::new(Notify::new());
            let actor = system.spawn(move || Busy { gate: gate.clone() }).unwrap();
            actor.stop();
            actor.wait_for_stop().await;
            for n in 0..1_000 {
                let _ = actor.try_tell(Nap(n));
            }
            assert_eq!(
                system.dead_letters().count(DeadLetterReason::ActorStopped),
                1_000
            );
            system.shutdown().await;
        });
    });
    let logged = lines
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("dead letter"))
        .count();
    assert_eq!(
        logged as u64, LOG_BURST,
        "1000 dead letters, {logged} lines"
    );
}

//! Tests that install `tracing` subscribers. They live in their own binary, and take a lock,
//! because tracing caches callsite interest process-wide: subscribers installed by tests running
//! in parallel would otherwise interfere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use postbox::prelude::*;
use postbox::trace::TraceContext;
use postbox::{DeadLetterReason, LOG_BURST};
use std::collections::HashMap;
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

/// Records every `handle` span's fields (as text) on the thread it is installed on.
#[derive(Clone, Default)]
struct Handled(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl Handled {
    fn spans(&self) -> Vec<HashMap<String, String>> {
        self.0.lock().unwrap().clone()
    }

    /// The one span whose `message` field ends with `message`.
    fn one(&self, message: &str) -> HashMap<String, String> {
        let spans = self.spans();
        let found: Vec<_> = spans
            .iter()
            .filter(|s| s["message"].ends_with(message))
            .collect();
        assert_eq!(found.len(), 1, "{message}: {spans:#?}");
        found[0].clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Handled {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(HashMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().into(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().into(), value.into());
            }
        }
        if attrs.metadata().name() == "handle" {
            let mut fields = Fields(HashMap::new());
            attrs.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

/// Relays to its peer (an ask, then a tell) and reports the context it handled in.
struct Relay {
    peer: Option<ActorRef<Relay>>,
}
impl Actor for Relay {}

struct Hop;
impl Message for Hop {
    type Reply = Option<TraceContext>;
}
impl Handler<Hop> for Relay {
    async fn handle(&mut self, _: Hop, _: &mut Context<Self>) -> Option<TraceContext> {
        if let Some(peer) = &self.peer {
            peer.ask(Leaf).await.unwrap();
            peer.tell(Told).await.unwrap();
        }
        TraceContext::current()
    }
}

struct Leaf;
impl Message for Leaf {
    type Reply = Option<TraceContext>;
}
impl Handler<Leaf> for Relay {
    async fn handle(&mut self, _: Leaf, _: &mut Context<Self>) -> Option<TraceContext> {
        // A context survives awaits: it is set around every poll.
        tokio::task::yield_now().await;
        TraceContext::current()
    }
}

struct Told;
impl Message for Told {
    type Reply = ();
}
impl Handler<Told> for Relay {
    async fn handle(&mut self, _: Told, _: &mut Context<Self>) {}
}

fn with_handled<R>(f: impl FnOnce() -> R) -> (R, Handled) {
    use tracing_subscriber::layer::SubscriberExt;
    let handled = Handled::default();
    let subscriber = tracing_subscriber::registry()
        .with(handled.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let result = tracing::subscriber::with_default(subscriber, f);
    (result, handled)
}

#[test]
fn a_trace_follows_a_request_from_actor_to_actor() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let root = TraceContext::new_root();
    let ((front, back, seen), handled) = with_handled(|| {
        runtime().block_on(async {
            let system = ActorSystem::new();
            let back = system.spawn(|| Relay { peer: None }).unwrap();
            let front = system
                .spawn({
                    let back = back.clone();
                    move || Relay {
                        peer: Some(back.clone()),
                    }
                })
                .unwrap();
            let seen = root.scope(front.ask(Hop)).await.unwrap();
            // Behind the tell in `back`'s mailbox: its span exists once this is answered.
            back.ask(Leaf).await.unwrap();
            system.shutdown().await;
            (front.id(), back.id(), seen)
        })
    });
    let hex = |id: u64| format!("{id:016x}");
    let hop = handled.one("::Hop");
    let leaf = handled
        .spans()
        .into_iter()
        .filter(|s| s["message"].ends_with("::Leaf"))
        .find(|s| s.contains_key("parent_span_id"))
        .unwrap();
    let told = handled.one("::Told");

    // The handler's own context is the one on its span.
    let seen = seen.unwrap();
    assert_eq!(hop["trace_id"], root.trace_id().to_string());
    assert_eq!(hop["span_id"], seen.span_id().to_string());
    assert_eq!(seen.trace_id(), root.trace_id());
    // The root scope sent it: child of the root's span, no sending actor.
    assert_eq!(hop["parent_span_id"], hex(root.span_id().get()));
    assert!(!hop.contains_key("sender"), "{hop:?}");
    assert_eq!(hop["actor.id"], front.get().to_string());

    // `front` asked and told `back`: both are its children, with `front` as the sender.
    for child in [&leaf, &told] {
        assert_eq!(child["trace_id"], hop["trace_id"]);
        assert_eq!(child["parent_span_id"], hop["span_id"]);
        assert_eq!(child["sender"], front.to_string());
        assert_eq!(child["actor.id"], back.get().to_string());
        assert_ne!(child["span_id"], hop["span_id"]);
    }
    assert_ne!(leaf["span_id"], told["span_id"]);
}

#[test]
fn a_message_sent_outside_any_trace_starts_a_new_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (seen, handled) = with_handled(|| {
        runtime().block_on(async {
            let system = ActorSystem::new();
            let actor = system.spawn(|| Relay { peer: None }).unwrap();
            let first = actor.ask(Leaf).await.unwrap().unwrap();
            let second = actor.ask(Leaf).await.unwrap().unwrap();
            system.shutdown().await;
            [first, second]
        })
    });
    let spans = handled.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for (span, seen) in spans.iter().zip(seen) {
        assert_eq!(span["trace_id"], seen.trace_id().to_string());
        assert_eq!(span["span_id"], seen.span_id().to_string());
        assert!(seen.is_sampled());
        assert!(!span.contains_key("parent_span_id") && !span.contains_key("sender"));
    }
    assert_ne!(seen[0].trace_id(), seen[1].trace_id(), "two roots");
}

#[test]
fn without_an_interested_subscriber_handlers_run_without_a_context() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Installing a subscriber (here, one that wants only INFO and above) also resets the
    // interest that earlier tests' subscribers left cached in the callsites.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    runtime().block_on(async {
        let system = ActorSystem::new();
        let back = system.spawn(|| Relay { peer: None }).unwrap();
        let front = system
            .spawn(move || Relay {
                peer: Some(back.clone()),
            })
            .unwrap();
        assert_eq!(front.ask(Hop).await.unwrap(), None);
        // An explicit scope is honoured all the same: the context is the application's.
        let root = TraceContext::new_root();
        assert_eq!(
            root.scope(async { TraceContext::current() }).await,
            Some(root)
        );
        system.shutdown().await;
    });
}

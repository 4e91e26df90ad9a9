//! One trace across two nodes: the W3C trace context in the wire envelope makes each remote
//! handler's span a child of the span that sent its message, in both directions.
//!
//! Both nodes run on one current-thread runtime inside a scoped subscriber (`with_default`),
//! so every span of both nodes is created on the test's thread and captured, while the other
//! scenarios of this binary, on their own threads, see no subscriber. The capturing layer
//! registers callsites as `sometimes` interesting, so they check the thread's subscriber each
//! time rather than caching this test's interest for everyone.

use super::common::*;
use postbox::prelude::*;
use postbox::trace::TraceContext;
use postbox_remote::{remote_actor, remote_message, Remote};
use postbox_testkit::wire::{self, FakeNode, WireClient};
use postbox_testkit::{TEST_CLUSTER, TEST_SECRET};
use postbox_wire::{Frame, Target};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// On node B: answers probes, takes notes, bounces messages back to node A.
struct Far;
impl Actor for Far {}

/// Asked: answers with the `traceparent` of the handler's own context.
#[derive(Serialize, Deserialize, Debug)]
struct Probe;
impl Message for Probe {
    type Reply = Option<String>;
    remote_message!("trace-test.Probe");
}
impl Handler<Probe> for Far {
    async fn handle(&mut self, _: Probe, _: &mut Context<Self>) -> Option<String> {
        TraceContext::current().map(|cx| cx.to_string())
    }
}

/// Told.
#[derive(Serialize, Deserialize, Debug)]
struct Note(u64);
impl Message for Note {
    type Reply = ();
    remote_message!("trace-test.Note");
}
impl Handler<Note> for Far {
    async fn handle(&mut self, _: Note, _: &mut Context<Self>) {}
}

/// Told: the handler tells `to` (on node A) a `Back`, continuing the trace the other way.
#[derive(Serialize, Deserialize, Debug)]
struct Bounce {
    to: ActorRef<Near>,
}
impl Message for Bounce {
    type Reply = ();
    remote_message!("trace-test.Bounce");
}
impl Handler<Bounce> for Far {
    async fn handle(&mut self, Bounce { to }: Bounce, _: &mut Context<Self>) {
        to.tell(Back).await.unwrap();
    }
}

remote_actor!(Far: Probe, Note, Bounce);

/// On node A: the caller (`Go`), and where bounced messages come back to (`Back`).
struct Near {
    far: ActorRef<Far>,
    back: mpsc::UnboundedSender<()>,
}
impl Actor for Near {}

/// Local: probe, note and bounce through the remote ref; answers with the probe's answer.
struct Go;
impl Message for Go {
    type Reply = Option<String>;
}
impl Handler<Go> for Near {
    async fn handle(&mut self, _: Go, ctx: &mut Context<Self>) -> Option<String> {
        let probed = self.far.ask(Probe).await.unwrap();
        self.far.tell(Note(1)).await.unwrap();
        let to = ctx.myself().clone();
        self.far.tell(Bounce { to }).await.unwrap();
        probed
    }
}

#[derive(Serialize, Deserialize, Debug)]
struct Back;
impl Message for Back {
    type Reply = ();
    remote_message!("trace-test.Back");
}
impl Handler<Back> for Near {
    async fn handle(&mut self, _: Back, _: &mut Context<Self>) {
        let _ = self.back.send(());
    }
}

remote_actor!(Near: Back);

type Fields = HashMap<String, String>;

/// Records the fields of every `handle` span created on the thread it is installed on.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Fields>>>);

impl Capture {
    /// The spans of `actor_type` handling messages whose type ends with `message`.
    fn find(&self, actor_type: &str, message: &str) -> Vec<Fields> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|s| s["actor.type"].ends_with(actor_type) && s["message"].ends_with(message))
            .cloned()
            .collect()
    }

    fn one(&self, actor_type: &str, message: &str) -> Fields {
        let found = self.find(actor_type, message);
        assert_eq!(found.len(), 1, "{actor_type} {message}: {found:#?}");
        found.into_iter().next().unwrap()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
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
        metadata.is_span() && *metadata.level() <= tracing::Level::DEBUG
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Visit(Fields);
        impl tracing::field::Visit for Visit {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().into(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().into(), value.into());
            }
        }
        if attrs.metadata().name() == "handle" {
            let mut visit = Visit(Fields::new());
            attrs.record(&mut visit);
            self.0.lock().unwrap().push(visit.0);
        }
    }
}

/// Asserts that `child` is a span of `parent`'s trace whose parent is `parent_span`, sent by
/// `sender` (`None`: no sender field).
fn assert_child(child: &Fields, trace: &str, parent_span: &str, sender: Option<&str>) {
    assert_eq!(child["trace_id"], trace, "{child:#?}");
    assert_eq!(child["parent_span_id"], parent_span, "{child:#?}");
    assert_eq!(
        child.get("sender").map(String::as_str),
        sender,
        "{child:#?}"
    );
    assert_ne!(child["span_id"], parent_span, "{child:#?}");
}

#[test]
fn one_trace_follows_asks_and_tells_across_two_nodes_and_back() {
    use tracing_subscriber::layer::SubscriberExt;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let root = TraceContext::new_root();
    let direct = TraceContext::new_root();
    let (a_addr, b_addr, from_actor, from_root) =
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                // Node B hosts `Far`; node A hosts `Near`, which calls it.
                let b = ActorSystem::new();
                let remote_b = Remote::start(&b, remote_config()).await.unwrap();
                remote_b.expose::<Far>();
                let far = b.spawn(Props::new(|| Far)).unwrap();
                b.registry().register("far", &far).unwrap();

                let a = ActorSystem::new();
                let remote_a = Remote::start(&a, remote_config()).await.unwrap();
                remote_a.expose::<Near>();
                let far: ActorRef<Far> = within(PATIENCE, remote_a.lookup(remote_b.addr(), "far"))
                    .await
                    .unwrap();
                let (back, mut backs) = mpsc::unbounded_channel();
                let near = a
                    .spawn(Props::new({
                        let far = far.clone();
                        move || Near {
                            far: far.clone(),
                            back: back.clone(),
                        }
                    }))
                    .unwrap();

                // From an actor on A, inside the root's trace: ask, tell, and a tell that comes
                // back to A.
                let from_actor = within(PATIENCE, root.scope(near.ask(Go))).await.unwrap();
                within(PATIENCE, backs.recv()).await.unwrap();
                // From application code on A, straight to B.
                let from_root = within(PATIENCE, direct.scope(far.ask(Probe)))
                    .await
                    .unwrap();
                within(PATIENCE, direct.scope(far.tell(Note(2))))
                    .await
                    .unwrap();
                // Behind that note in `far`'s mailbox (same sender): its span exists once this is
                // answered.
                within(PATIENCE, far.ask(Probe)).await.unwrap();

                let stats = (remote_a.stats(), remote_b.stats());
                assert_eq!(
                    (
                        stats.0.invalid_trace_contexts,
                        stats.1.invalid_trace_contexts
                    ),
                    (0, 0)
                );
                let addrs = (remote_a.addr().to_owned(), remote_b.addr().to_owned());
                remote_a.shutdown().await;
                remote_b.shutdown().await;
                a.shutdown().await;
                b.shutdown().await;
                (addrs.0, addrs.1, from_actor, from_root)
            })
        });
    let node_a = format!("postbox://{a_addr}");
    let node_b = format!("postbox://{b_addr}");
    let trace = root.trace_id().to_string();

    // On A: `Near` handles `Go` as a child of the root scope (application code: no sender).
    let go = capture.one("Near", "::Go");
    assert_child(&go, &trace, &root.span_id().to_string(), None);

    // On B: the ask, the tell and the bounce are children of `Go`'s span on A, sent by node A.
    let probes = capture.find("Far", "::Probe");
    let probe = probes
        .iter()
        .find(|s| s.get("parent_span_id") == Some(&go["span_id"]))
        .expect("the probe sent by Go");
    assert_child(probe, &trace, &go["span_id"], Some(&node_a));
    // The remote handler's own context is the one on its span.
    let seen: TraceContext = from_actor.unwrap().parse().unwrap();
    assert_eq!(probe["span_id"], seen.span_id().to_string());
    assert_eq!(seen.trace_id(), root.trace_id());

    let notes = capture.find("Far", "::Note");
    let note = notes
        .iter()
        .find(|s| s["trace_id"] == trace)
        .expect("the note sent by Go");
    assert_child(note, &trace, &go["span_id"], Some(&node_a));
    let bounce = capture.one("Far", "::Bounce");
    assert_child(&bounce, &trace, &go["span_id"], Some(&node_a));

    // Back on A: the bounced message is a child of `Bounce`'s span on B, sent by node B.
    let back = capture.one("Near", "::Back");
    assert_child(&back, &trace, &bounce["span_id"], Some(&node_b));

    // From a root scope straight to node B: ask and tell are children of the root's span.
    let direct_trace = direct.trace_id().to_string();
    let direct_parent = direct.span_id().to_string();
    let probe = probes
        .iter()
        .find(|s| s["trace_id"] == direct_trace)
        .expect("the probe sent from the root scope");
    assert_child(probe, &direct_trace, &direct_parent, Some(&node_a));
    let seen: TraceContext = from_root.unwrap().parse().unwrap();
    assert_eq!(probe["span_id"], seen.span_id().to_string());
    let note = notes
        .iter()
        .find(|s| s["trace_id"] == direct_trace)
        .expect("the note sent from the root scope");
    assert_child(note, &direct_trace, &direct_parent, Some(&node_a));

    // The last probe, sent outside any scope, started a trace of its own on B.
    let untraced: Vec<_> = probes
        .iter()
        .filter(|s| !s.contains_key("parent_span_id"))
        .collect();
    assert_eq!(untraced.len(), 1, "{probes:#?}");
    assert!(![trace, direct_trace].contains(&untraced[0]["trace_id"]));
    assert_eq!(probes.len(), 3);
    assert_eq!(notes.len(), 2);
}

/// Sends `message` to the actor registered as `name` on the client's node, with `trace` as
/// its traceparent; as an ask (returning its correlation) when `ask` is set.
async fn send_traced<M: Message>(
    client: &mut WireClient,
    name: &str,
    message: &M,
    ask: bool,
    trace: &str,
) -> Option<u64> {
    let mut envelope = wire::envelope(Target::Name(name.into()), message).unwrap();
    envelope.trace = Some(trace.into());
    let correlation = ask.then(|| client.next_correlation());
    envelope.correlation = correlation;
    client.send(&Frame::Message(envelope)).await.unwrap();
    correlation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_traceparent_is_counted_and_ignored_and_the_message_delivered() {
    let (_host_system, host, journal) = host().await;
    // A peer spoken by hand, as a misbehaving one would.
    let member = FakeNode::new(TEST_CLUSTER, TEST_SECRET);
    let mut peer = WireClient::connect_as(host.addr(), &member).await.unwrap();
    let malformed = [
        "garbage",
        "",
        // Uppercase hex, a zero trace id, an unknown version: all refused by a strict parse.
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ];
    for (n, trace) in malformed.iter().enumerate() {
        send_traced(&mut peer, "journal", &Record(n as u64), false, trace).await;
    }
    // An ask with a malformed traceparent is answered.
    let asked = send_traced(&mut peer, "journal", &Echo("still here".into()), true, "{").await;
    let payload = peer.recv_reply(asked.unwrap()).await.unwrap().unwrap();
    assert_eq!(wire::decode_reply::<Echo>(&payload).unwrap(), "still here");
    // Every tell arrived, in order.
    assert_eq!(
        within(PATIENCE, journal.ask(ReadLog)).await.unwrap(),
        (0..malformed.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        host.stats().invalid_trace_contexts,
        malformed.len() as u64 + 1
    );
    assert_eq!(host.stats().protocol_errors, 0);
}

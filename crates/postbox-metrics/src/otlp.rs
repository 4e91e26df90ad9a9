//! OpenTelemetry export of `tracing` spans over OTLP/HTTP (protobuf), with postbox's own
//! trace and span ids (feature `otlp`, off by default).
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (otlp, exporter) =
//!     postbox_metrics::otlp::layer("http://127.0.0.1:4318/v1/traces", "orders-node")?;
//! tracing_subscriber::registry()
//!     .with(otlp)
//!     .with(tracing_subscriber::filter::LevelFilter::DEBUG)
//!     .init();
//! // ... run the node ...
//! exporter.shutdown()?; // exports what is still buffered
//! # Ok(())
//! # }
//! ```
//!
//! # Same ids as postbox
//!
//! postbox gives every traced `handle` span its own W3C ids (see [`postbox::trace`]) and sends
//! them across nodes in the `traceparent`. The exporter uses those ids as they are: a `handle`
//! span arrives at the collector with its `trace_id` and `span_id` fields as the OpenTelemetry
//! trace id and span id, and its `parent_span_id` field as the parent — so the span a remote
//! node exports under that parent id is the one this node exported, and a backend draws one
//! trace across nodes. Other spans get OpenTelemetry's usual treatment (random ids, the
//! current span as parent).
//!
//! How: the returned layer is three layers in a row. The first reads a `handle` span's ids
//! when it is created, and makes a context with its parent (a remote parent, as OpenTelemetry
//! calls a parent from another process) current for the second, `tracing-opentelemetry`'s
//! layer, which takes its parent from there; the third puts the previous context back. When
//! the span is started (entered, or closed unentered) the first layer hands its ids to the
//! tracer provider's id generator, which returns them instead of random ones. All spans are
//! sampled (`ParentBased(AlwaysOn)`, and postbox's propagated parents count as sampled): sample
//! with the subscriber's filter.
//!
//! # Transport
//!
//! Spans are batched by OpenTelemetry's batch processor (on a thread of its own) and posted to
//! `endpoint`, the collector's full traces URL (`http://host:4318/v1/traces`; it is used as
//! given, nothing is appended). The client is a small hyper HTTP/1 client on a private
//! one-thread Tokio runtime, so exports work whatever runtime, if any, the application runs;
//! one connection per export (batches go out every few seconds), a 10 s limit per export.
//! Only `http://` endpoints: for TLS, export to a collector on the same host or network.

use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId,
    TraceState, TracerProvider as _,
};
use opentelemetry::{Context as OtelContext, ContextGuard};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use postbox::trace::{SpanId, TraceId};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::Duration;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The most one export (connect, post, read the answer) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer that is read.
const MAX_RESPONSE: usize = 1 << 20;

/// Why the exporter could not be set up, or could not export.
#[derive(Debug)]
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://host[:port]/path` URL.
    Endpoint(String),
    /// The exporter's runtime could not be started.
    Runtime(std::io::Error),
    /// OpenTelemetry refused the exporter's configuration.
    Build(String),
    /// Exporting (on flush or shutdown) failed, or the exporter is already shut down.
    Export(String),
}

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtlpError::Endpoint(why) => write!(f, "bad OTLP endpoint: {why}"),
            OtlpError::Runtime(error) => write!(f, "could not start the OTLP exporter: {error}"),
            OtlpError::Build(why) => write!(f, "could not build the OTLP exporter: {why}"),
            OtlpError::Export(why) => write!(f, "OTLP export failed: {why}"),
        }
    }
}

impl std::error::Error for OtlpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OtlpError::Runtime(error) => Some(error),
            _ => None,
        }
    }
}

/// A layer that exports spans to `endpoint` (the collector's traces URL, e.g.
/// `http://127.0.0.1:4318/v1/traces`) as `service_name`, and the handle that flushes and shuts
/// the export down. See the [module docs](self).
pub fn layer<S>(
    endpoint: &str,
    service_name: &str,
) -> Result<(impl Layer<S>, OtlpExporter), OtlpError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let exporter = OtlpExporter::new(endpoint, service_name)?;
    Ok((exporter.layer(), exporter))
}

/// The export pipeline: batches finished spans and posts them to the collector. Dropping the
/// last handle (the layers hold one each) shuts it down, exporting what is buffered.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    provider: SdkTracerProvider,
}

impl OtlpExporter {
    /// Starts an exporter to `endpoint` (the collector's traces URL) for `service_name` (the
    /// `service.name` resource attribute).
    pub fn new(endpoint: &str, service_name: &str) -> Result<Self, OtlpError> {
        check_endpoint(endpoint)?;
        let client = Client::new()?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(endpoint)
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|error| OtlpError::Build(error.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(PostboxIds::default())
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_owned())
                    .build(),
            )
            .build();
        Ok(Self { provider })
    }

    /// A layer that exports the spans it sees through this exporter.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("postbox");
        Before
            .and_then(tracing_opentelemetry::layer().with_tracer(tracer))
            .and_then(After)
    }

    /// Exports every finished span now; returns once the collector has answered (or the
    /// export failed). Blocks the calling thread: call it outside async code, or from a
    /// blocking task.
    pub fn flush(&self) -> Result<(), OtlpError> {
        self.provider
            .force_flush()
            .map_err(|error| OtlpError::Export(error.to_string()))
    }

    /// Exports what is buffered and stops exporting. Blocks like [`flush`](Self::flush).
    pub fn shutdown(&self) -> Result<(), OtlpError> {
        self.provider
            .shutdown()
            .map_err(|error| OtlpError::Export(error.to_string()))
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), OtlpError> {
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|error| OtlpError::Endpoint(format!("{endpoint:?}: {error}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(OtlpError::Endpoint(format!(
            "{endpoint:?}: only http:// endpoints are supported"
        )));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(OtlpError::Endpoint(format!("{endpoint:?}: no host")));
    }
    Ok(())
}

/// The ids of a postbox `handle` span, read from its fields.
#[derive(Debug, Clone, Copy)]
struct Ids {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
}

impl Ids {
    fn of(attrs: &Attributes<'_>) -> Option<Self> {
        let fields = attrs.metadata().fields();
        fields.field("trace_id")?;
        fields.field("span_id")?;
        let mut visit = IdFields::default();
        attrs.record(&mut visit);
        Some(Self {
            trace_id: visit.trace_id?,
            span_id: visit.span_id?,
            parent: visit.parent,
        })
    }

    fn trace_id(&self) -> OtelTraceId {
        OtelTraceId::from_bytes(self.trace_id.to_bytes())
    }

    fn span_id(&self) -> OtelSpanId {
        OtelSpanId::from_bytes(self.span_id.to_bytes())
    }

    /// The context the span's OpenTelemetry parent comes from: postbox's parent as a remote
    /// span context, or none (a root, whose trace id the id generator supplies).
    fn parent_context(&self) -> OtelContext {
        match self.parent {
            Some(parent) => OtelContext::new().with_remote_span_context(SpanContext::new(
                self.trace_id(),
                OtelSpanId::from_bytes(parent.to_bytes()),
                TraceFlags::SAMPLED,
                true,
                TraceState::NONE,
            )),
            None => OtelContext::new(),
        }
    }
}

#[derive(Default)]
struct IdFields {
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    parent: Option<SpanId>,
}

impl tracing::field::Visit for IdFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "trace_id" => self.trace_id = value.parse().ok(),
            "span_id" => self.span_id = value.parse().ok(),
            "parent_span_id" => self.parent = value.parse().ok(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if matches!(field.name(), "trace_id" | "span_id" | "parent_span_id") {
            // postbox records the ids as `Display` values: hex, at most 32 digits.
            let mut hex = Hex::default();
            if fmt::write(&mut hex, format_args!("{value:?}")).is_ok() {
                if let Ok(text) = std::str::from_utf8(hex.digits()) {
                    self.record_str(field, text);
                }
            }
        }
    }
}

/// Formats up to 32 bytes without allocating.
#[derive(Default)]
struct Hex {
    buf: [u8; 32],
    len: usize,
}

impl Hex {
    fn digits(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for Hex {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let place = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        place.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

thread_local! {
    /// Contexts made current by `Before` for `tracing-opentelemetry`'s `on_new_span`, put back
    /// by `After` right after it.
    static PARENTS: RefCell<Vec<ContextGuard>> = const { RefCell::new(Vec::new()) };
    /// The ids of the postbox span being started on this thread, for `PostboxIds`.
    static STARTING: Cell<Option<Ids>> = const { Cell::new(None) };
}

/// Runs before `tracing-opentelemetry`'s layer: makes a postbox span's parent current (on
/// creation) and its ids available to the id generator (on enter and close, where the
/// OpenTelemetry span may be started).
struct Before;

/// Runs after it: undoes what `Before` did.
struct After;

fn ids_of<S>(id: &Id, ctx: &Context<'_, S>) -> Option<Ids>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.span(id)?.extensions().get::<Ids>().copied()
}

impl<S> Layer<S> for Before
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let (Some(ids), Some(span)) = (Ids::of(attrs), ctx.span(id)) else {
            return;
        };
        span.extensions_mut().insert(ids);
        let guard = ids.parent_context().attach();
        let _ = PARENTS.try_with(|parents| parents.borrow_mut().push(guard));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(ids) = ids_of(id, &ctx) {
            let _ = STARTING.try_with(|starting| starting.set(Some(ids)));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.on_enter(&id, ctx);
    }
}

impl<S> Layer<S> for After
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if ids_of(id, &ctx).is_some() {
            let _ = PARENTS.try_with(|parents| parents.borrow_mut().pop());
        }
    }

    fn on_enter(&self, _: &Id, _: Context<'_, S>) {
        let _ = STARTING.try_with(|starting| starting.set(None));
    }

    fn on_close(&self, _: Id, _: Context<'_, S>) {
        let _ = STARTING.try_with(|starting| starting.set(None));
    }
}

/// The provider's id generator: a postbox span's own ids while it is being started, random
/// ones otherwise.
#[derive(Debug, Default)]
struct PostboxIds {
    random: RandomIdGenerator,
}

impl IdGenerator for PostboxIds {
    fn new_trace_id(&self) -> OtelTraceId {
        match STARTING.try_with(Cell::get) {
            Ok(Some(ids)) => ids.trace_id(),
            _ => self.random.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> OtelSpanId {
        match STARTING.try_with(Cell::get) {
            Ok(Some(ids)) => ids.span_id(),
            _ => self.random.new_span_id(),
        }
    }
}

/// Posts OTLP requests with hyper (HTTP/1, one connection per export) on a private runtime,
/// so that it works from the batch processor's thread whatever the application runs.
#[derive(Debug)]
struct Client {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Client {
    fn new() -> Result<Self, OtlpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postbox-otlp")
            .enable_io()
            .enable_time()
            .build()
            .map_err(OtlpError::Runtime)?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Never blocks, wherever the last handle is dropped (even inside async code).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self.runtime.as_ref().ok_or("the exporter is shut down")?;
        let posted = runtime.spawn(async move {
            match tokio::time::timeout(EXPORT_TIMEOUT, post(request)).await {
                Ok(result) => result,
                Err(_) => Err(HttpError::from("the OTLP export timed out")),
            }
        });
        posted.await?
    }
}

async fn post(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    use http_body_util::{BodyExt, Full, Limited};
    let (mut parts, body) = request.into_parts();
    let host = parts
        .uri
        .host()
        .ok_or("no host in the endpoint")?
        .to_owned();
    let port = parts.uri.port_u16().unwrap_or(80);
    let authority = parts
        .uri
        .authority()
        .ok_or("no host in the endpoint")?
        .as_str()
        .parse::<hyper::header::HeaderValue>()?;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    // HTTP/1 requests name their target in origin form, with the authority in `Host`.
    parts.uri = path.parse()?;
    parts.headers.insert(hyper::header::HOST, authority);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    // Drives the connection; it ends with the exchange (the sender is dropped below).
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    drop(sender);
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_endpoints_with_a_host_are_accepted() {
        assert!(check_endpoint("http://127.0.0.1:4318/v1/traces").is_ok());
        assert!(check_endpoint("http://[::1]:4318/v1/traces").is_ok());
        for bad in [
            "https://collector/v1/traces",
            "127.0.0.1:4318",
            "",
            "http:///x",
        ] {
            assert!(
                matches!(check_endpoint(bad), Err(OtlpError::Endpoint(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hex_formatting_is_bounded() {
        use std::fmt::Write;
        let mut hex = Hex::default();
        assert!(write!(hex, "{}", "a".repeat(32)).is_ok());
        assert_eq!(hex.digits().len(), 32);
        assert!(write!(hex, "b").is_err());
    }
}

//! The HTTP server's connections: the accept loop, and the bounds every client is held to.
//!
//! A client of the endpoint can grow exactly one thing, the set of open connections, and each
//! connection holds one file descriptor and a small buffer. So:
//!
//! * **At most [`max_connections`](crate::HttpLimits::max_connections) at once** (default
//!   [`DEFAULT_MAX_CONNECTIONS`]). One more is accepted, answered at once with
//!   `503 Service Unavailable` (`connection: close`, written without reading the request),
//!   counted in `postbox_http_connections_refused`, and closed: after the client has closed
//!   too or [`REFUSAL_LINGER`] has passed (what it sends meanwhile is discarded, so that it
//!   reads the 503 rather than a reset), and at once when [`MAX_LINGERING_REFUSALS`] are
//!   lingering already. Refusing beats not accepting: a client left waiting in the kernel's
//!   backlog cannot tell a full server from a dead one.
//! * **A request's head must arrive within
//!   [`header_read_timeout`](crate::HttpLimits::header_read_timeout)** (default
//!   [`DEFAULT_HEADER_READ_TIMEOUT`]) from the moment the server waits for it — on a new
//!   connection and between the requests of a kept-alive one alike — or the connection is
//!   closed (`postbox_http_header_timeouts`). A slowloris client (one header byte a second)
//!   and an idle keep-alive connection both give their place back within that time.
//! * **A response must make progress**: a write that stays blocked for
//!   [`write_timeout`](crate::HttpLimits::write_timeout) (default
//!   [`DEFAULT_WRITE_TIMEOUT`]) because the client stopped reading closes the connection
//!   (`postbox_http_write_timeouts`).
//! * Request heads are read into a buffer of at most [`MAX_BUFFER`] bytes; larger heads are
//!   refused by hyper with `431`.
//!
//! **Accept errors** (`EMFILE` when the process is out of file descriptors, `ENOBUFS`, ...)
//! are counted (`postbox_http_accept_errors`), logged at most once per [`LOG_EVERY`] with the
//! number left unlogged, and followed by a pause that doubles from [`FIRST_BACKOFF`] up to
//! [`MAX_BACKOFF`] while they go on (reset by the next accepted connection): the loop never
//! spins, and it resumes by itself once descriptors are free again.
//!
//! **Shutdown** stops accepting, lets requests in progress finish (kept-alive connections
//! close after their current response), and waits at most [`SHUTDOWN_GRACE`] for that before
//! dropping what is left.

use crate::MetricsError;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// Connections served at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Most connections [`HttpLimits::max_connections`] accepts.
pub const MAX_MAX_CONNECTIONS: usize = 65_536;
/// How long a request's head may take to arrive unless told otherwise.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a blocked response write may wait for the client to read, unless told otherwise.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest header read and write timeout accepted.
pub const MIN_HTTP_TIMEOUT: Duration = Duration::from_millis(10);
/// Longest header read and write timeout accepted.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest read buffer of one connection, so the largest request head.
pub(crate) const MAX_BUFFER: usize = 16 * 1024;
/// The first pause after a failed accept.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between failed accepts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this long for accept errors, and one for refusals.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in progress.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Refused connections that may linger at once (see [`refuse_gracefully`]).
pub(crate) const MAX_LINGERING_REFUSALS: usize = 16;
/// How long a refused connection may linger.
pub(crate) const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The bounds [`Metrics::serve`](crate::Metrics::serve) holds every HTTP client to (see
/// [`MetricsBuilder::http_limits`](crate::MetricsBuilder::http_limits)): how many connections
/// at once, how long a request head may take, how long a response may wait for the client to
/// read. What happens at each bound, and the counter that shows it, is in the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    max_connections: usize,
    header_read_timeout: Duration,
    write_timeout: Duration,
}

impl Default for HttpLimits {
    /// [`DEFAULT_MAX_CONNECTIONS`], [`DEFAULT_HEADER_READ_TIMEOUT`],
    /// [`DEFAULT_WRITE_TIMEOUT`].
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

impl HttpLimits {
    /// Serve at most `max` connections at once (1 to [`MAX_MAX_CONNECTIONS`]); one more is
    /// answered `503` and closed.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Close a connection whose next request head has not fully arrived `timeout` after the
    /// server began waiting for it ([`MIN_HTTP_TIMEOUT`] to [`MAX_HTTP_TIMEOUT`]). This is also
    /// how long an idle kept-alive connection stays open.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Close a connection whose response could not be written for `timeout` because the
    /// client does not read ([`MIN_HTTP_TIMEOUT`] to [`MAX_HTTP_TIMEOUT`]).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Checks every bound; the error names the first one out of its range.
    pub fn validate(&self) -> Result<(), MetricsError> {
        let invalid = |setting: &'static str, reason: String| {
            Err(MetricsError::InvalidLimit { setting, reason })
        };
        if !(1..=MAX_MAX_CONNECTIONS).contains(&self.max_connections) {
            return invalid(
                "max_connections",
                format!(
                    "must be from 1 to {MAX_MAX_CONNECTIONS}, not {}",
                    self.max_connections
                ),
            );
        }
        for (setting, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if !(MIN_HTTP_TIMEOUT..=MAX_HTTP_TIMEOUT).contains(&value) {
                return invalid(
                    setting,
                    format!(
                        "must be from {MIN_HTTP_TIMEOUT:?} to {MAX_HTTP_TIMEOUT:?}, not {value:?}"
                    ),
                );
            }
        }
        Ok(())
    }
}

/// The server's counters, read by every scrape.
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    max_connections: AtomicU64,
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    write_timeouts: AtomicU64,
    accept_errors: AtomicU64,
}

/// A reading of [`HttpStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HttpSnapshot {
    pub(crate) max_connections: u64,
    pub(crate) open: u64,
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    pub(crate) header_timeouts: u64,
    pub(crate) write_timeouts: u64,
    pub(crate) accept_errors: u64,
}

impl HttpStats {
    pub(crate) fn snapshot(&self) -> HttpSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        HttpSnapshot {
            max_connections: read(&self.max_connections),
            open: read(&self.open),
            accepted: read(&self.accepted),
            refused: read(&self.refused),
            header_timeouts: read(&self.header_timeouts),
            write_timeouts: read(&self.write_timeouts),
            accept_errors: read(&self.accept_errors),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Where connections come from: a TCP listener, or a test's fake.
pub(crate) trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<Self::Io> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        // Responses are written whole; no reason to wait for more to coalesce.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// What a connection over the bound is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 56\r\n\
connection: close\r\n\
retry-after: 1\r\n\
\r\n\
too many connections to the metrics endpoint; try again\n";

/// Accepts and serves connections until `stop` fires, then shuts down as the module docs say.
/// A dropped sender leaves the server running (until its runtime shuts down).
pub(crate) async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    limits: HttpLimits,
    stats: Arc<HttpStats>,
    stop: oneshot::Receiver<()>,
) {
    let stop = async move {
        if stop.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(stop);
    stats
        .max_connections
        .store(limits.max_connections as u64, Ordering::Relaxed);
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = Backoff::default();
    let mut accept_log = RateLimitedLog::default();
    let mut refusal_log = RateLimitedLog::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(io) => {
                backoff.reset();
                match places.clone().try_acquire_owned() {
                    Ok(place) => {
                        bump(&stats.accepted);
                        let (router, stats, closing) =
                            (router.clone(), stats.clone(), closing_rx.clone());
                        connections.spawn(async move {
                            let _place = place;
                            serve_connection(io, router, limits, &stats, closing).await;
                        });
                    }
                    Err(_) => {
                        bump(&stats.refused);
                        if let Some(unlogged) = refusal_log.admit(Instant::now()) {
                            tracing::warn!(
                                target: "postbox::metrics",
                                max_connections = limits.max_connections,
                                refused_unlogged = unlogged,
                                "metrics endpoint at its connection limit; refusing connections \
                                 with 503 (counted in postbox_http_connections_refused)"
                            );
                        }
                        match lingering.clone().try_acquire_owned() {
                            Ok(lingers) => {
                                connections.spawn(async move {
                                    let _lingers = lingers;
                                    refuse_gracefully(io).await;
                                });
                            }
                            Err(_) => refuse(io).await,
                        }
                    }
                }
            }
            Err(error) => {
                bump(&stats.accept_errors);
                let pause = backoff.next();
                if let Some(unlogged) = accept_log.admit(Instant::now()) {
                    tracing::warn!(
                        target: "postbox::metrics",
                        %error,
                        errors_unlogged = unlogged,
                        ?pause,
                        "metrics endpoint cannot accept connections; backing off \
                         (counted in postbox_http_accept_errors)"
                    );
                }
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            target: "postbox::metrics",
            left = connections.len(),
            "metrics connections still busy after {SHUTDOWN_GRACE:?}; closing them"
        );
        connections.shutdown().await;
    }
}

/// Writes [`REFUSAL`], ends our side, and reads and discards what the client sends until it
/// closes too, all within [`REFUSAL_LINGER`]. Closing a socket with unread input makes the
/// kernel reset the connection, and a client that had sent its request would then read a
/// reset instead of the 503; lingering a moment lets it read the answer.
async fn refuse_gracefully<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        io.write_all(REFUSAL).await?;
        io.shutdown().await?;
        let mut discard = [0; 1024];
        while io.read(&mut discard).await? != 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

/// Writes [`REFUSAL`] if the socket takes it at once (a fresh socket's send buffer does), and
/// closes the connection either way: when [`MAX_LINGERING_REFUSALS`] are lingering already,
/// a refusal waits for nothing.
async fn refuse<I: AsyncWrite + Unpin>(mut io: I) {
    std::future::poll_fn(|cx| {
        let _ = Pin::new(&mut io).poll_write(cx, REFUSAL);
        Poll::Ready(())
    })
    .await;
}

/// One connection, HTTP/1.1 with keep-alive, under the header read and write timeouts.
async fn serve_connection<I>(
    io: I,
    router: Router,
    limits: HttpLimits,
    stats: &HttpStats,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = WriteDeadline::new(io, limits.write_timeout);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUFFER)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(connection);
    // Declared after the connection so that it is dropped first: a client that sees the
    // socket close never finds it still counted as open.
    bump(&stats.open);
    let _open = OpenConnection(stats);
    let closed = tokio::select! {
        result = connection.as_mut() => Some(result),
        _ = closing.wait_for(|closing| *closing) => None,
    };
    let result = match closed {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(error) = result {
        if error.is_timeout() {
            bump(&stats.header_timeouts);
        } else if is_write_timeout(&error) {
            bump(&stats.write_timeouts);
        } else {
            tracing::debug!(target: "postbox::metrics", %error, "metrics connection ended");
        }
    }
}

/// Takes a connection out of the open count however its task ends (shutdown aborts some).
struct OpenConnection<'a>(&'a HttpStats);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn is_write_timeout(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::TimedOut;
        }
        source = cause.source();
    }
    false
}

/// Pauses between failed accepts: doubling while they fail, reset by a success.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let pause = self
            .last
            .map_or(FIRST_BACKOFF, |last| (last * 2).min(MAX_BACKOFF));
        self.last = Some(pause);
        pause
    }

    pub(crate) fn reset(&mut self) {
        self.last = None;
    }
}

/// One log line per [`LOG_EVERY`], carrying how many were left out since the last one.
#[derive(Debug, Default)]
pub(crate) struct RateLimitedLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RateLimitedLog {
    /// `Some(left out since the last line)` if a line may be written at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

/// Fails a write that has been blocked for `timeout` (the client stopped reading) with
/// `TimedOut`; reads pass through.
struct WriteDeadline<I> {
    io: I,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> WriteDeadline<I> {
    fn new(io: I, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// Called when a write could not proceed: starts the clock, or fails once it ran out.
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {timeout:?}"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn outcome<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => self.blocked(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.outcome(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.outcome(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.outcome(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.outcome(cx, poll)
    }
}

#[cfg(test)]
mod tests;

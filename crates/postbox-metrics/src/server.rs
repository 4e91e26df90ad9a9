//! The HTTP side: routes, request parsing, responses.
//!
//! Handlers never panic on input: unknown paths get a 404 naming the endpoints, bad query
//! parameters a 400 saying which and why, internal failures a 500 with the reason. Work that
//! walks the actor table runs on a blocking thread so that a scrape of a million actors does
//! not stall the runtime's workers.

use crate::Metrics;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");

/// A running endpoint, from [`Metrics::serve`]. Dropping it leaves the server running until
/// its runtime shuts down; [`shutdown`](Self::shutdown) stops it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address it listens on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in progress finish, and waits for that (at
    /// most 5 s; connections still busy then are closed).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(error) = (&mut self.task).await {
            tracing::warn!(target: "postbox::metrics", %error, "metrics server task failed");
        }
    }
}

impl Metrics {
    /// Serves the endpoint on `addr` (use [`DEFAULT_ADDR`](crate::DEFAULT_ADDR) for loopback
    /// port 9464, or port 0 for any free port) on the current Tokio runtime, HTTP/1.1 only,
    /// within the builder's [`HttpLimits`](crate::HttpLimits): at most `max_connections` at
    /// once (more are answered `503` and closed), request heads within
    /// `header_read_timeout`, no response write blocked beyond `write_timeout`; accept errors
    /// (such as running out of file descriptors) back off. The crate docs say what happens
    /// at each bound and which counter shows it.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::http::serve(
            listener,
            self.router(),
            self.http_limits(),
            self.http_stats(),
            stopped,
        ));
        tracing::info!(target: "postbox::metrics", %local_addr, "metrics endpoint listening");
        Ok(MetricsServer {
            local_addr,
            stop: Some(stop),
            task,
        })
    }

    /// The endpoint's routes, to mount in an axum application of your own instead of
    /// [`serve`](Self::serve).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(dashboard))
            .route("/assets/dashboard.js", get(dashboard_js))
            .route("/assets/dashboard.css", get(dashboard_css))
            .route("/metrics", get(metrics))
            .route("/actors", get(actors))
            .route("/members", get(members))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .fallback(not_found)
            .with_state(self.clone())
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint at {}; try /metrics, /actors, /members, /health/live, /health/ready or /",
            uri.path()
        ),
    )
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DASHBOARD_HTML,
    )
        .into_response()
}

async fn dashboard_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        DASHBOARD_JS,
    )
        .into_response()
}

async fn dashboard_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        DASHBOARD_CSS,
    )
        .into_response()
}

async fn metrics(State(metrics): State<Metrics>) -> Response {
    match tokio::task::spawn_blocking(move || metrics.encode()).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Ok(Err(_)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the exposition failed".into(),
        ),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the scrape did not finish: {join}"),
        ),
    }
}

/// Parses an optional count parameter in `0..=max`; the error says what was wrong.
fn count_param(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    let Some(raw) = params.get(name) else {
        return Ok(default);
    };
    match raw.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "{name} must be a whole number from 0 to {max}, got {raw:?}"
        )),
    }
}

async fn actors(
    State(metrics): State<Metrics>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(unknown) = params.keys().find(|k| *k != "top" && *k != "tree") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter {unknown:?}; /actors takes top and tree"),
        );
    }
    let counts =
        count_param(&params, "top", metrics.default_top(), crate::MAX_TOP).and_then(|top| {
            count_param(&params, "tree", metrics.default_tree(), crate::MAX_TREE)
                .map(|tree| (top, tree))
        });
    let (top, tree) = match counts {
        Ok(counts) => counts,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match tokio::task::spawn_blocking(move || metrics.actors(top, tree)).await {
        Ok(view) => Json(view).into_response(),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the view did not finish: {join}"),
        ),
    }
}

async fn members(State(metrics): State<Metrics>) -> Response {
    match tokio::task::spawn_blocking(move || metrics.members()).await {
        Ok(view) => Json(view).into_response(),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the members did not finish: {join}"),
        ),
    }
}

async fn live(State(metrics): State<Metrics>) -> Response {
    Json(json!({ "live": true, "actors": metrics.system().actor_count() })).into_response()
}

async fn ready(State(metrics): State<Metrics>) -> Response {
    match metrics.ready() {
        Ok(()) => Json(json!({ "ready": true })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

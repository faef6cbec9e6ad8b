//! `provisio serve`: the billing intake and the lifecycle reports over HTTP (axum on tokio,
//! the stack of [`crate::services::http`]). Requests are checked here (size, authentication,
//! content type, payload) and handed to the single writer ([`writer`]) which applies them to
//! the registry ([`provisio_core::intake`]) and commits; the answer goes out only after the
//! commit. Routes:
//!
//! - `POST /api/v1/provisioning/webhooks/{subscription-created|subscription-updated|subscription-cancelled}`
//! - `POST /api/v1/lifecycle/tenants/{tenant}/reports` (a tenant's Job reports a step,
//!   signed with that tenant's report key, [`provisio_core::lifecycle::signature`]),
//!   `GET /api/v1/lifecycle/tenants/{tenant}` (its lifecycle records, same signature)
//! - `GET /healthz` (the process answers), `GET /readyz` (the writer is running),
//!   `GET /metrics` (OpenMetrics, [`crate::services::metrics`]), `GET /openapi.json` (the committed `docs/openapi.json`).

pub mod auth;
pub mod error;
pub mod metrics;
pub mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::io::repo::Author;
use crate::io::repo::upstream::Upstream;
use crate::io::retry::Policy;
use crate::services::http;
use auth::{Authenticator, Secret};
use error::ApiError;
use metrics::Metrics;
use provisio_core::intake::{self, EventKind, Outcome, Submission, TenantView};
use provisio_core::lifecycle::{self, LifecycleView, signature};
use writer::{Job, WriteError};

/// Largest accepted body.
pub const MAX_BODY: usize = 64 * 1024;
/// How much of a body over [`MAX_BODY`] is read and dropped before answering 413 (see
/// `read_body`); a body declared bigger is answered without reading it.
pub const MAX_DISCARD: usize = http::MAX_DISCARD;
/// The OpenAPI document, as committed.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");
/// Route prefix of the webhooks.
pub const WEBHOOK_PREFIX: &str = "/api/v1/provisioning/webhooks/";
/// Route prefix of the lifecycle routes (`<prefix><tenant>` and `<prefix><tenant>/reports`).
pub const LIFECYCLE_PREFIX: &str = "/api/v1/lifecycle/tenants/";

/// The time source. The intake never reads the clock itself; tests inject a fixed one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Everything `serve` needs.
#[derive(Clone)]
pub struct Config {
    /// The registry directory, inside a git work tree.
    pub registry: PathBuf,
    pub secret: Secret,
    /// The report master secrets (the current one first, then a previous one during a
    /// rotation): each tenant's report key is derived from them. Empty: every lifecycle
    /// request is refused (401), the billing intake works as before.
    pub report_secrets: Vec<Secret>,
    /// Grace period between a cancellation and the earliest deletion.
    pub grace: chrono::Duration,
    /// Accepted distance between a signature's `t` and now, in seconds.
    pub signature_window_secs: i64,
    pub clock: Clock,
    pub author: Author,
    /// At most this many events per commit.
    pub max_group: usize,
    /// Queued events beyond this wait before their request is read further (backpressure).
    pub queue: usize,
    /// Connections served at once and the header deadline ([`http::Limits`]).
    pub limits: http::Limits,
    /// A request's body must arrive whole within this time after its header (408 otherwise).
    pub body_timeout: std::time::Duration,
    /// The shared registry repository: `registry` is provisio's clone of it, and every
    /// commit group is pushed before it is answered.
    pub upstream: Option<Upstream>,
    /// How a push is retried (and a group redone on top of a remote that moved).
    pub push: Policy,
}

/// Default of [`Config::push`]: up to 8 attempts within 20 s, waiting 50 ms, 100 ms, …
/// (at most 2 s, with jitter): a billing request is answered in time, and two writers
/// racing for the branch sort themselves out.
pub const PUSH_POLICY: Policy = Policy {
    max: std::time::Duration::from_secs(2),
    ..Policy::new(8, std::time::Duration::from_millis(50))
        .within(std::time::Duration::from_secs(20))
};

/// Default of [`Config::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Config {
    pub fn new(registry: PathBuf, secret: Secret) -> Self {
        Config {
            registry,
            secret,
            report_secrets: Vec::new(),
            grace: chrono::Duration::days(intake::DEFAULT_GRACE_DAYS),
            signature_window_secs: 300,
            clock: Arc::new(Utc::now),
            author: Author {
                name: "provisio intake".to_owned(),
                email: "provisio-intake@localhost".to_owned(),
            },
            max_group: 256,
            queue: 4096,
            limits: http::Limits::default(),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            upstream: None,
            push: PUSH_POLICY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] writer::OpenError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Io(#[source] std::io::Error),
}

impl From<http::HttpError> for ServeError {
    fn from(e: http::HttpError) -> Self {
        match e {
            http::HttpError::Bind { addr, source } => ServeError::Bind { addr, source },
            http::HttpError::Io(e) => ServeError::Io(e),
        }
    }
}

struct App {
    auth: Authenticator,
    report_masters: Vec<Vec<u8>>,
    signature_window_secs: i64,
    clock: Clock,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    body_timeout: std::time::Duration,
}

/// Opens the registry, starts the writer thread and returns the router.
pub fn app(config: &Config) -> Result<Router, ServeError> {
    let upstream = config.upstream.clone().map(|u| (u, config.push));
    let pushes = upstream.is_some();
    let (store, state) = writer::Store::open(&config.registry, config.grace, upstream)?;
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let metrics = Arc::new(Metrics::default());
    if pushes {
        metrics.unpushed(0);
    }
    let (clock, author, max_group, m) = (
        config.clock.clone(),
        config.author.clone(),
        config.max_group.max(1),
        metrics.clone(),
    );
    std::thread::Builder::new()
        .name("provisio-intake-writer".to_owned())
        .spawn(move || writer::run(store, state, rx, clock, author, max_group, m))
        .map_err(ServeError::Io)?;
    let registry = metrics.registry();
    let app = Arc::new(App {
        auth: Authenticator::new(config.secret.clone(), config.signature_window_secs),
        report_masters: config
            .report_secrets
            .iter()
            .map(|s| s.expose().to_vec())
            .collect(),
        signature_window_secs: config.signature_window_secs,
        clock: config.clock.clone(),
        jobs: tx,
        metrics,
        body_timeout: config.body_timeout,
    });
    Ok(Router::new()
        .route(
            "/api/v1/provisioning/webhooks/{event}",
            post(webhook).fallback(|| method_not_allowed("POST")),
        )
        .route(
            "/api/v1/lifecycle/tenants/{tenant}/reports",
            post(report).fallback(|| method_not_allowed("POST")),
        )
        .route(
            "/api/v1/lifecycle/tenants/{tenant}",
            get(lifecycle_view).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .route(
            "/healthz",
            get(healthz).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .route(
            "/readyz",
            get(readyz).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .route(
            "/metrics",
            crate::services::metrics::route(registry).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .route(
            "/openapi.json",
            get(openapi).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .fallback(|| async { ApiError::not_found() })
        .with_state(app))
}

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let router = app(&config)?;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, registry = %config.registry.display(), "intake listening");
    }
    http::serve(listener, router, shutdown, config.limits)
        .await
        .map_err(ServeError::Io)
}

/// A server running on its own runtime thread (tests, benchmarks). Dropping it stops it.
pub struct Running {
    server: Option<http::Server>,
    runtime: Option<http::RuntimeThread>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running until stopped").addr()
    }

    /// Stops accepting, waits for in-flight requests, returns the server's result.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ServeError> {
        let result = match self.server.take() {
            Some(s) => s.stop().map_err(ServeError::from),
            None => Ok(()),
        };
        if let Some(r) = self.runtime.take() {
            r.stop();
        }
        result
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Binds `addr` (port 0 = any free port) and serves on a new thread with `workers` tokio
/// worker threads.
pub fn spawn(config: Config, addr: SocketAddr, workers: usize) -> Result<Running, ServeError> {
    let runtime = http::RuntimeThread::start("provisio-serve", workers.max(1))?;
    let listener = http::bind(addr)?;
    let router = {
        let _entered = runtime.handle().enter();
        app(&config)?
    };
    let server = http::Server::start(runtime.handle(), listener, router, config.limits)?;
    Ok(Running {
        server: Some(server),
        runtime: Some(runtime),
    })
}

async fn webhook(
    State(app): State<Arc<App>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let kind = EventKind::from_route(&route);
    let label = kind.map(EventKind::label).unwrap_or("unknown");
    let result = handle(&app, kind, &route, &headers, body).await;
    let (outcome, response) = match result {
        Ok((status, tenant)) => {
            let outcome = if status == StatusCode::CREATED {
                "created"
            } else {
                "ok"
            };
            let mut r = (status, axum::Json(&tenant)).into_response();
            if let Ok(v) = HeaderValue::from_str(&tenant.tenant_id) {
                r.headers_mut().insert("x-provisio-tenant", v);
            }
            (outcome.to_owned(), r)
        }
        Err(e) => {
            if e.status.is_server_error() {
                warn!(code = e.code, message = %e.message, route = %route, "webhook failed");
            } else {
                info!(code = e.code, message = %e.message, field = ?e.field, route = %route, "webhook refused");
            }
            (e.code.to_owned(), e.into_response())
        }
    };
    app.metrics.observe(
        label,
        &outcome,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn handle(
    app: &App,
    kind: Option<EventKind>,
    route: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, TenantView), ApiError> {
    let Some(kind) = kind else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_event",
            format!(
                "no webhook `{}`; expected subscription-created, subscription-updated or subscription-cancelled",
                route.chars().take(64).collect::<String>()
            ),
        ));
    };
    let bytes = read_body(app, headers, body).await?;
    app.auth
        .check(
            headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            headers.get("x-signature").map(HeaderValue::as_bytes),
            &bytes,
            (app.clock)(),
        )
        .map_err(|e| ApiError::unauthorized(e.code(), e.to_string()))?;
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the event as `Content-Type: application/json`",
        ));
    }
    let event = intake::parse(kind, &bytes).map_err(|e| ApiError::from(&e))?;
    let applied = submit(app, Submission::Event(event)).await?;
    // The answer to an accepted event: 201 when it created the tenant, 200 otherwise (a
    // change, or a redelivery that changed nothing); the body is the tenant as it now is.
    let status = match applied.outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Changed | Outcome::Unchanged => StatusCode::OK,
    };
    Ok((status, applied.tenant))
}

/// The request's body, whole, within the body deadline and the size limit.
///
/// A body over the limit is still read, up to [`MAX_DISCARD`] bytes in all, and thrown away
/// before the 413 goes out, so that the connection stays usable and the answer is not lost
/// to a reset: closing a socket with unread bytes makes the kernel send RST, and a client
/// that has not read the answer yet loses it. A bigger body is answered at once and the
/// connection closed (`Connection: close`, `services::http`), as is one declared over
/// [`MAX_BODY`] with `Expect: 100-continue`. Go's net/http does the same
/// (`maxPostHandlerReadBytes`, 256 KiB, in `net/http/server.go`).
async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A client that sent `Expect: 100-continue` waits to be told to send its body: one
    // declared too large is refused before it is asked for.
    let expects = headers.contains_key(header::EXPECT);
    let limit = if expects { MAX_BODY } else { MAX_DISCARD };
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    // The whole body within the deadline: a sender trickling it byte by byte holds a
    // connection for at most this long.
    let read = tokio::time::timeout(app.body_timeout, http::read_capped(body, MAX_BODY))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the body did not arrive within {} s",
                    app.body_timeout.as_secs_f64()
                ),
            )
        })?;
    match read {
        http::BodyRead::Whole(bytes) => Ok(bytes),
        http::BodyRead::TooLarge { .. } => Err(too_large()),
        http::BodyRead::Broken(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body could not be read whole: {e}"),
        )),
    }
}

/// Hands a checked submission to the single writer and waits for its answer (after the
/// commit, when it changed anything).
async fn submit(app: &App, submission: Submission) -> Result<intake::Applied, ApiError> {
    let (reply, answer) = oneshot::channel();
    app.jobs
        .send(Job { submission, reply })
        .await
        .map_err(|_| ApiError::unavailable("the registry writer has stopped"))?;
    answer
        .await
        .map_err(|_| ApiError::unavailable("the registry writer has stopped"))?
        .map_err(|e| match e {
            WriteError::Intake(e) => ApiError::from(&e),
            // The cause (a git or file-system error, with server paths) goes to the log,
            // not to the sender.
            WriteError::Commit(_) => ApiError::unavailable(
                "the registry change could not be committed; nothing was recorded, retry (the cause is in the server's log)",
            ),
            WriteError::Unavailable(m) => ApiError::unavailable(m),
            WriteError::Push(_) => ApiError::unavailable(
                "the registry change could not be pushed to the registry repository; nothing was recorded, retry (the cause is in the server's log)",
            ),
            e @ WriteError::Uncommitted { .. } => ApiError {
                code: "uncommitted_changes",
                ..ApiError::unavailable(e.to_string())
            },
        })
}

/// The answer to a report: whether it was recorded (a repeat is not), and the tenant's
/// lifecycle records after it.
#[derive(Debug, serde::Serialize)]
struct ReportResult {
    tenant: String,
    recorded: bool,
    lifecycle: LifecycleView,
}

/// Checks a lifecycle request's signature: the key of the tenant it claims, derived from
/// the report master secrets, over the method, the path and the body; then that it claims
/// the route's tenant (403 `wrong_tenant` otherwise).
fn check_report_signature(
    app: &App,
    tenant: &str,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    if app.report_masters.is_empty() {
        return Err(ApiError::unauthorized(
            "unauthorized",
            "this server takes no lifecycle reports: it was started without a report secret (PROVISIO_REPORT_SECRET or --report-secret-file)",
        ));
    }
    signature::verify(
        headers.get(signature::HEADER).map(HeaderValue::as_bytes),
        &app.report_masters,
        tenant,
        method,
        path,
        body,
        (app.clock)().timestamp(),
        app.signature_window_secs,
    )
    .map_err(|e| match e {
        signature::SignatureError::WrongTenant { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, e.code(), e.to_string())
        }
        e => ApiError::unauthorized(e.code(), e.to_string()),
    })
}

/// Answers a lifecycle route and counts it (by report kind, or `view`).
fn lifecycle_answer(
    app: &App,
    label: &'static str,
    tenant: &str,
    started: Instant,
    result: Result<(StatusCode, serde_json::Value), ApiError>,
) -> Response {
    let (outcome, response) = match result {
        Ok((status, body)) => {
            let outcome = match body.get("recorded").and_then(serde_json::Value::as_bool) {
                Some(true) => "recorded",
                Some(false) => "repeat",
                None => "ok",
            };
            let mut r = (status, axum::Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(tenant) {
                r.headers_mut().insert("x-provisio-tenant", v);
            }
            (outcome.to_owned(), r)
        }
        Err(e) => {
            if e.status.is_server_error() {
                warn!(code = e.code, message = %e.message, tenant = %tenant, route = label, "lifecycle request failed");
            } else {
                info!(code = e.code, message = %e.message, field = ?e.field, tenant = %tenant, route = label, "lifecycle request refused");
            }
            (e.code.to_owned(), e.into_response())
        }
    };
    app.metrics
        .observe_report(label, &outcome, started.elapsed());
    response
}

async fn report(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut label = "unknown";
    let result = async {
        let bytes = read_body(&app, &headers, body).await?;
        check_report_signature(&app, &tenant, "POST", uri.path(), &headers, &bytes)?;
        if !is_json(&headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the report as `Content-Type: application/json`",
            ));
        }
        let report = lifecycle::report::parse(&bytes)
            .map_err(|r| ApiError::from(&intake::IntakeError::Lifecycle(r)))?;
        label = report.kind().as_str();
        let applied = submit(
            &app,
            Submission::Report {
                tenant: tenant.clone(),
                report,
            },
        )
        .await?;
        let body = ReportResult {
            tenant: tenant.clone(),
            recorded: applied.change.is_some(),
            lifecycle: applied.lifecycle.ok_or_else(|| {
                ApiError::unavailable("the writer answered a report without the tenant's records")
            })?,
        };
        Ok((
            StatusCode::OK,
            serde_json::to_value(&body).expect("the answer serializes"),
        ))
    }
    .await;
    lifecycle_answer(&app, label, &tenant, started, result)
}

async fn lifecycle_view(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = async {
        check_report_signature(&app, &tenant, "GET", uri.path(), &headers, b"")?;
        let applied = submit(
            &app,
            Submission::View {
                tenant: tenant.clone(),
            },
        )
        .await?;
        let view = applied.lifecycle.ok_or_else(|| {
            ApiError::unavailable("the writer answered a view without the tenant's records")
        })?;
        Ok((
            StatusCode::OK,
            serde_json::to_value(&view).expect("the view serializes"),
        ))
    }
    .await;
    lifecycle_answer(&app, "view", &tenant, started, result)
}

/// `application/json`, optionally with parameters (`; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method not allowed on this route; allowed: {allow}"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.jobs.is_closed() {
        ApiError::unavailable("the registry writer has stopped").into_response()
    } else {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

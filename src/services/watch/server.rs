//! watch's HTTP server (`--metrics-addr`, the stack of [`crate::services::http`]):
//!
//! - `GET /metrics`: the watch metrics;
//! - `GET /healthz`: 200 while the loop came round (a cycle, a poll, an idle wake-up) within
//!   [`STUCK_AFTER`], 503 after (the liveness probe then restarts a hung loop);
//! - `GET /readyz`: 200 once the start-up cycle is done, 503 before it and while stopping;
//! - `POST /api/v1/webhooks/registry` (with a registry webhook secret): the git host's push
//!   webhook for the registry repository ([`super::hook`]); an authentic push to the
//!   followed branch makes the loop fetch at once (202).
//!
//! [`Health`] is what the loop and the server share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use serde_json::json;
use tracing::{info, warn};

use super::hook::{self, HookError, Verdict};

/// `/healthz` fails once the loop has not come round for this long.
pub const STUCK_AFTER: Duration = Duration::from_secs(600);
/// The route of the registry repository's push webhook.
pub const REGISTRY_HOOK: &str = "/api/v1/webhooks/registry";
/// The largest push event accepted (GitLab lists at most 20 commits).
pub const MAX_HOOK_BODY: usize = 4 * 1024 * 1024;

/// What the loop tells the probes, and what the webhook tells the loop.
#[derive(Debug)]
pub struct Health {
    /// Unix seconds of the loop's last round.
    last_round: AtomicU64,
    ready: AtomicBool,
    fetch_now: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        let h = Health {
            last_round: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            fetch_now: AtomicBool::new(false),
        };
        h.round();
        h
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Health {
    /// The loop came round.
    pub fn round(&self) {
        self.last_round.store(unix_secs(), Ordering::Relaxed);
    }

    /// Whether the loop came round recently.
    pub fn live(&self) -> bool {
        unix_secs().saturating_sub(self.last_round.load(Ordering::Relaxed)) < STUCK_AFTER.as_secs()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Asks the loop to fetch the registry now.
    pub fn poke(&self) {
        self.fetch_now.store(true, Ordering::SeqCst);
    }

    /// Whether a fetch was asked for since the last call.
    pub fn take_poke(&self) -> bool {
        self.fetch_now.swap(false, Ordering::SeqCst)
    }
}

/// The registry webhook's configuration.
#[derive(Debug, Clone)]
pub struct RegistryHook {
    pub secret: Vec<u8>,
    /// The followed branch: pushes to others are ignored.
    pub branch: String,
}

struct App {
    health: Arc<Health>,
    hook: Option<RegistryHook>,
}

/// The router of watch's server.
pub fn router(metrics: Arc<Registry>, health: Arc<Health>, hook: Option<RegistryHook>) -> Router {
    let with_hook = hook.is_some();
    let app = Arc::new(App { health, hook });
    let mut r = Router::new()
        .route("/metrics", crate::services::metrics::route(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if with_hook {
        r = r.route(
            REGISTRY_HOOK,
            post(registry_hook).layer(DefaultBodyLimit::max(MAX_HOOK_BODY)),
        );
    }
    r.fallback(|| async { (StatusCode::NOT_FOUND, "not found; try /metrics\n").into_response() })
        .with_state(app)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.health.live() {
        answer(StatusCode::OK, json!({"status": "ok"}))
    } else {
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "stuck", "message": format!("the watch loop has not come round for {} s", STUCK_AFTER.as_secs())}),
        )
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.health.is_ready() {
        answer(StatusCode::OK, json!({"status": "ready"}))
    } else {
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "message": "the start-up cycle has not finished, or watch is stopping"}),
        )
    }
}

async fn registry_hook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(cfg) = &app.hook else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": "no registry webhook"}),
        );
    };
    let get = |name: &str| headers.get(name).map(|v| v.as_bytes());
    let h = hook::Headers {
        gitlab_event: get("x-gitlab-event"),
        gitlab_token: get("x-gitlab-token"),
        github_event: get("x-github-event"),
        github_signature: get("x-hub-signature-256"),
    };
    match hook::check(&h, &body, &cfg.secret, &cfg.branch) {
        Ok(Verdict::Fetch) => {
            info!("registry push webhook: fetching now");
            app.health.poke();
            answer(StatusCode::ACCEPTED, json!({"status": "fetching"}))
        }
        Ok(Verdict::Ignore(why)) => {
            info!(reason = %why, "registry webhook ignored");
            answer(StatusCode::OK, json!({"status": "ignored", "reason": why}))
        }
        Err(e @ HookError::Unauthorized(_)) => {
            warn!(error = %e, "registry webhook refused");
            answer(StatusCode::UNAUTHORIZED, json!({"error": e.to_string()}))
        }
        Err(e @ HookError::BadRequest(_)) => {
            info!(error = %e, "registry webhook refused");
            answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}))
        }
    }
}

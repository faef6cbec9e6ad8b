//! The one metrics stack of the services: each service registers its metrics in a
//! `prometheus-client` [`Registry`] (prefix `provisio`), and one `/metrics` route ([`route`],
//! [`router`]) serves any registry in the OpenMetrics text format, `# EOF`-terminated, with
//! [`CONTENT_TYPE`]. `serve` mounts the route in its own router; `watch` serves [`router`] on
//! its own address (see [`super::http`]).

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use prometheus_client::registry::Registry;

/// The media type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A service's metrics registry, with the `provisio` prefix every metric name carries.
pub fn registry() -> Registry {
    Registry::with_prefix("provisio")
}

/// The OpenMetrics text exposition of `registry`, ending with `# EOF`.
pub fn encode(registry: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, registry)
        .expect("writing to a String cannot fail");
    s
}

/// `GET /metrics` for `registry`, to mount in any router.
pub fn route<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>) -> MethodRouter<S> {
    get(move || async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(&registry)) })
}

/// A router with only `/metrics` (anything else is 404), for a service whose main work is
/// not HTTP.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", route(registry))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; try /metrics\n").into_response() })
}

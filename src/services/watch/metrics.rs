//! Watch-mode metrics (`prometheus-client`) and the small HTTP server (`tiny_http`) that
//! serves them at `/metrics` in the Prometheus/OpenMetrics text format.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::{debug, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Stage {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    pub status: String,
}

/// Every metric watch mode exports.
pub struct Metrics {
    registry: Arc<Registry>,
    pub regenerations: Family<Outcome, Counter>,
    pub duration: Histogram,
    pub tenants: Family<Status, Gauge>,
    pub commits: Counter,
    pub push_retries: Counter,
    pub failures: Family<Stage, Counter>,
    pub last_success: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = crate::services::metrics::registry();
        let m = Metrics {
            registry: Arc::default(),
            regenerations: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            tenants: Family::default(),
            commits: Counter::default(),
            push_retries: Counter::default(),
            failures: Family::default(),
            last_success: Gauge::default(),
        };
        registry.register(
            "regenerations",
            "Regenerations by outcome (ok, invalid, mass_delete, error)",
            m.regenerations.clone(),
        );
        registry.register(
            "regeneration_duration_seconds",
            "Time from the change being noticed to the output committed and pushed",
            m.duration.clone(),
        );
        registry.register(
            "tenants",
            "Tenants of the last successful regeneration by status (changed, unchanged, removed)",
            m.tenants.clone(),
        );
        registry.register(
            "commits",
            "Commits made to the manifests repository",
            m.commits.clone(),
        );
        registry.register(
            "push_retries",
            "Push attempts after the first (remote moved or transport failure)",
            m.push_retries.clone(),
        );
        registry.register(
            "failures",
            "Failures by stage (registry, generate, delivery, nudge)",
            m.failures.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last regeneration that ended with the output delivered",
            m.last_success.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    pub fn regeneration(&self, outcome: &str) {
        self.regenerations
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn failure(&self, stage: &str) {
        self.failures
            .get_or_create(&Stage {
                stage: stage.into(),
            })
            .inc();
    }

    pub fn tenants(&self, status: &str, n: usize) {
        self.tenants
            .get_or_create(&Status {
                status: status.into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn success_now(&self) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success.set(t);
    }

    /// The registry, for the `/metrics` route.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The exposition, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        crate::services::metrics::encode(&self.registry)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for /metrics on {addr}: {message}")]
pub struct ServeError {
    pub addr: SocketAddr,
    pub message: String,
}

/// Serves `/metrics` on `addr` from a thread until `stop` is set. Returns the bound address
/// (port 0 picks a free one).
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<(SocketAddr, std::thread::JoinHandle<()>), ServeError> {
    let server = tiny_http::Server::http(addr).map_err(|e| ServeError {
        addr,
        message: e.to_string(),
    })?;
    let bound = server.server_addr().to_ip().ok_or_else(|| ServeError {
        addr,
        message: "not an IP socket".into(),
    })?;
    let handle = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let req = match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(error = %e, "metrics server: receive failed");
                        continue;
                    }
                };
                debug!(url = %req.url(), "metrics request");
                let resp = if req.url() == "/metrics" {
                    tiny_http::Response::from_string(metrics.encode()).with_header(
                        tiny_http::Header::from_bytes(
                            "Content-Type",
                            crate::services::metrics::CONTENT_TYPE,
                        )
                        .expect("a valid header"),
                    )
                } else {
                    tiny_http::Response::from_string("not found; try /metrics\n")
                        .with_status_code(404)
                };
                if let Err(e) = req.respond(resp) {
                    debug!(error = %e, "metrics server: respond failed");
                }
            }
        })
        .map_err(|e| ServeError {
            addr,
            message: e.to_string(),
        })?;
    Ok((bound, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = Metrics::new();
        m.regeneration("ok");
        m.failure("push");
        m.commits.inc();
        m.tenants("changed", 3);
        let text = m.encode();
        for needle in [
            "provisio_regenerations_total{outcome=\"ok\"} 1",
            "provisio_failures_total{stage=\"push\"} 1",
            "provisio_commits_total 1",
            "provisio_tenants{status=\"changed\"} 3",
            "provisio_regeneration_duration_seconds_bucket",
            "provisio_last_success_timestamp_seconds",
            "provisio_push_retries_total 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}

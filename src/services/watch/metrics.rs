//! Watch-mode metrics, in a `prometheus-client` registry served at `/metrics` by
//! [`crate::services::metrics`] (on the address `--metrics-addr` names).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

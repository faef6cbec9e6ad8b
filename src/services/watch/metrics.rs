//! Watch-mode metrics, in a `prometheus-client` registry served at `/metrics` by
//! [`crate::services::metrics`] (on the address `--metrics-addr` names): the cycles, the git
//! side ([`GitMetrics`]: pushes to the manifests, the registry's last fetch), whether the
//! registry validates and since when not, the oldest undelivered change, and the lifecycle
//! of the last valid registry ([`Metrics::lifecycle`]: counts by status, and per-tenant
//! series only for tenants that are not `active`, so cardinality stays at tens of series).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use provisio_core::registry::{Registry as Model, TenantStatus};

use crate::services::metrics::GitMetrics;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantInStatus {
    pub tenant: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Tenant {
    pub tenant: String,
}

/// Every lifecycle status, in order (a new one fails to compile in [`status_index`]).
pub const STATUSES: [TenantStatus; 6] = [
    TenantStatus::Provisioning,
    TenantStatus::Failed,
    TenantStatus::Active,
    TenantStatus::Deprovisioning,
    TenantStatus::Purging,
    TenantStatus::Removed,
];

fn status_index(s: TenantStatus) -> usize {
    match s {
        TenantStatus::Provisioning => 0,
        TenantStatus::Failed => 1,
        TenantStatus::Active => 2,
        TenantStatus::Deprovisioning => 3,
        TenantStatus::Purging => 4,
        TenantStatus::Removed => 5,
    }
}

type TimeGauge = Gauge<f64, AtomicU64>;

/// Every metric watch mode exports.
pub struct Metrics {
    registry: Arc<Registry>,
    pub regenerations: Family<Outcome, Counter>,
    pub duration: Histogram,
    pub tenants: Family<Status, Gauge>,
    pub commits: Counter,
    pub push_retries: Counter,
    pub failures: Family<Stage, Counter>,
    pub last_success: TimeGauge,
    pub git: GitMetrics,
    pub pending_since: TimeGauge,
    pub registry_valid: Gauge,
    pub invalid_since: TimeGauge,
    pub registry_tenants: Family<Status, Gauge>,
    pub status_since: Family<TenantInStatus, TimeGauge>,
    pub deletion: Family<Tenant, TimeGauge>,
    pub backup_completed: Family<Tenant, TimeGauge>,
    /// The per-tenant series set by the last [`Metrics::lifecycle`], to remove those that
    /// are no longer true (without a scrape ever seeing the others vanish).
    lifecycle_series: std::sync::Mutex<(Vec<TenantInStatus>, Vec<Tenant>)>,
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
            git: GitMetrics::register(&mut registry, true),
            pending_since: Gauge::default(),
            registry_valid: Gauge::default(),
            invalid_since: Gauge::default(),
            registry_tenants: Family::default(),
            status_since: Family::default(),
            deletion: Family::default(),
            backup_completed: Family::default(),
            lifecycle_series: Default::default(),
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
        registry.register(
            "watch_pending_since_timestamp_seconds",
            "Unix time at which the oldest registry change not yet delivered was noticed; 0 when nothing waits",
            m.pending_since.clone(),
        );
        registry.register(
            "registry_valid",
            "1 when the last load of the registry validated, 0 when not",
            m.registry_valid.clone(),
        );
        registry.register(
            "registry_invalid_since_timestamp_seconds",
            "While the registry does not validate: since when (the first registry commit that did not, or when watch first saw it); 0 when valid",
            m.invalid_since.clone(),
        );
        registry.register(
            "registry_tenants",
            "Tenants of the last valid registry by lifecycle status",
            m.registry_tenants.clone(),
        );
        registry.register(
            "tenant_status_since_timestamp_seconds",
            "For each tenant that is not active: when it entered its status",
            m.status_since.clone(),
        );
        registry.register(
            "tenant_deletion_timestamp_seconds",
            "For each deprovisioning tenant: the earliest deletion time (end of the grace period)",
            m.deletion.clone(),
        );
        registry.register(
            "tenant_backup_completed_timestamp_seconds",
            "For each deprovisioning tenant: when its backup completed, as recorded in its tenant file; 0 while none",
            m.backup_completed.clone(),
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
        self.last_success.set(crate::services::metrics::unix_now());
    }

    /// A registry change was noticed: the oldest pending one keeps its time.
    pub fn pending(&self) {
        if self.pending_since.get() == 0.0 {
            self.pending_since.set(crate::services::metrics::unix_now());
        }
    }

    /// Everything noticed so far is delivered.
    pub fn delivered(&self) {
        self.pending_since.set(0.0);
    }

    /// The registry validated.
    pub fn valid(&self) {
        self.registry_valid.set(1);
        self.invalid_since.set(0.0);
    }

    /// The registry does not validate; `since` is kept while it stays invalid.
    pub fn invalid(&self, since: impl FnOnce() -> f64) {
        self.registry_valid.set(0);
        if self.invalid_since.get() == 0.0 {
            self.invalid_since.set(since());
        }
    }

    /// The lifecycle gauges from a registry that validated: counts by status (0 included),
    /// and for each tenant that is not active, when it entered its status (and, while
    /// deprovisioning, its deletion time). Series of tenants no longer in such a state go.
    pub fn lifecycle(&self, reg: &Model) {
        let mut counts = [0usize; STATUSES.len()];
        let (mut since_keys, mut deletion_keys) = (Vec::new(), Vec::new());
        let secs = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        for (id, t) in &reg.tenants {
            let status = t.status.value;
            counts[status_index(status)] += 1;
            let since = match status {
                // A removed tenant's file is a tombstone: counted, nothing left to watch.
                TenantStatus::Active | TenantStatus::Removed => continue,
                TenantStatus::Provisioning => Some(t.created),
                TenantStatus::Failed => Some(t.failure.as_ref().map_or(t.created, |f| f.at)),
                TenantStatus::Deprovisioning => t.cancellation.as_ref().map(|c| c.requested),
                TenantStatus::Purging => t.purge.as_ref().map(|p| p.started.value),
            };
            if let Some(since) = since {
                let key = TenantInStatus {
                    tenant: id.clone(),
                    status: status.as_str(),
                };
                self.status_since.get_or_create(&key).set(secs(since));
                since_keys.push(key);
            }
            if let (TenantStatus::Deprovisioning, Some(c)) = (status, &t.cancellation) {
                let key = Tenant { tenant: id.clone() };
                self.deletion
                    .get_or_create(&key)
                    .set(secs(c.deletion.value));
                let backup = t.backup.as_ref().map_or(0.0, |b| secs(b.completed.value));
                self.backup_completed.get_or_create(&key).set(backup);
                deletion_keys.push(key);
            }
        }
        let mut previous = self
            .lifecycle_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for gone in previous.0.iter().filter(|k| !since_keys.contains(k)) {
            self.status_since.remove(gone);
        }
        for gone in previous.1.iter().filter(|k| !deletion_keys.contains(k)) {
            self.deletion.remove(gone);
            self.backup_completed.remove(gone);
        }
        *previous = (since_keys, deletion_keys);
        for s in STATUSES {
            self.registry_tenants
                .get_or_create(&Status {
                    status: s.as_str().to_owned(),
                })
                .set(i64::try_from(counts[status_index(s)]).unwrap_or(i64::MAX));
        }
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

//! Intake metrics: events by type, outcome and HTTP status, lifecycle reports by kind and
//! outcome, request latency histogram, commits and events per commit, pushes to the registry
//! repository, in a `prometheus-client` registry served at `/metrics` by
//! [`crate::services::metrics`].

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::services::metrics::GitMetrics;

/// The `repository` label of serve's git metrics.
const REGISTRY: &str = "registry";

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Event {
    event: &'static str,
    outcome: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Report {
    kind: &'static str,
    outcome: String,
}

/// Every metric the intake exports.
pub struct Metrics {
    registry: Arc<Registry>,
    events: Family<Event, Counter>,
    reports: Family<Report, Counter>,
    latency: Histogram,
    commits: Counter,
    committed_events: Counter,
    git: GitMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = crate::services::metrics::registry();
        let events = Family::<Event, Counter>::default();
        let reports = Family::<Report, Counter>::default();
        let latency = Histogram::new(BUCKETS);
        let (commits, committed_events) = (Counter::default(), Counter::default());
        registry.register(
            "intake_events",
            "Webhook events received, by type, outcome and HTTP status",
            events.clone(),
        );
        let git = GitMetrics::register(&mut registry, false);
        registry.register(
            "lifecycle_reports",
            "Lifecycle requests of tenants' Jobs (reports by kind, and `view` reads), by outcome",
            reports.clone(),
        );
        registry.register(
            "intake_request_duration_seconds",
            "Webhook request latency, including the git commit and push",
            latency.clone(),
        );
        registry.register(
            "intake_commits",
            "Git commits made by the intake",
            commits.clone(),
        );
        registry.register(
            "intake_committed_events",
            "Events whose change is in a commit",
            committed_events.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            events,
            reports,
            latency,
            commits,
            committed_events,
            git,
        }
    }
}

impl Metrics {
    /// One webhook request: its event type (`created`, `updated`, `cancelled`, or `unknown`),
    /// its outcome (`created`, `ok`, or the error code), the HTTP status sent and how long it
    /// took.
    pub fn observe(&self, event: &'static str, outcome: &str, status: u16, took: Duration) {
        self.events
            .get_or_create(&Event {
                event,
                outcome: outcome.to_owned(),
                status,
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// One lifecycle request: the report's kind (`unknown` when the body did not parse, `view`
    /// for a read of the records), its outcome (`recorded`, `repeat`, `ok` or the error code)
    /// and how long it took.
    pub fn observe_report(&self, kind: &'static str, outcome: &str, took: Duration) {
        self.reports
            .get_or_create(&Report {
                kind,
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// One git commit holding `events` events.
    pub fn commit(&self, events: usize) {
        self.commits.inc();
        self.committed_events.inc_by(events as u64);
    }

    /// One push attempt to the registry repository and its outcome.
    pub fn pushed(&self, outcome: &'static str) {
        self.git
            .pushed(REGISTRY, &std::collections::BTreeMap::from([(outcome, 1)]));
    }

    /// Commits the registry repository lacks.
    pub fn unpushed(&self, n: usize) {
        self.git.set_unpushed(REGISTRY, n);
    }

    /// The registry, for the `/metrics` route.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The exposition, as `/metrics` serves it.
    pub fn render(&self) -> String {
        crate::services::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("created", "created", 201, Duration::from_millis(3));
        m.observe("created", "unauthorized", 401, Duration::from_millis(300));
        m.observe_report("backup-completed", "not_due", Duration::from_millis(2));
        m.commit(1);
        m.pushed("ok");
        m.unpushed(0);
        let s = m.render();
        for line in [
            "# TYPE provisio_intake_events counter\n",
            "provisio_intake_events_total{event=\"created\",outcome=\"created\",status=\"201\"} 1\n",
            "provisio_intake_events_total{event=\"created\",outcome=\"unauthorized\",status=\"401\"} 1\n",
            "provisio_lifecycle_reports_total{kind=\"backup-completed\",outcome=\"not_due\"} 1\n",
            "# TYPE provisio_intake_request_duration_seconds histogram\n",
            "provisio_intake_request_duration_seconds_bucket{le=\"0.005\"} 2\n",
            "provisio_intake_request_duration_seconds_bucket{le=\"0.5\"} 3\n",
            "provisio_intake_request_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "provisio_intake_request_duration_seconds_count 3\n",
            "provisio_intake_commits_total 1\n",
            "provisio_intake_committed_events_total 1\n",
            "provisio_build_info{version=\"",
            "provisio_git_pushes_total{repository=\"registry\",outcome=\"ok\"} 1\n",
            "provisio_git_unpushed_commits{repository=\"registry\"} 0\n",
        ] {
            assert!(s.contains(line), "missing `{line}` in\n{s}");
        }
        assert!(s.ends_with("# EOF\n"), "{s}");
    }
}

//! Intake metrics in the Prometheus text format: events by type and outcome, request latency
//! histogram, commits and events per commit.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Inner {
    events: BTreeMap<(&'static str, String), u64>,
    latency_counts: [u64; BUCKETS.len()],
    latency_sum: f64,
    latency_count: u64,
    commits: u64,
    committed_events: u64,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// One webhook request: its event type (`created`, `updated`, `cancelled`, or `unknown`),
    /// its outcome (`created`, `ok`, or the error code) and how long it took.
    pub fn observe(&self, event: &'static str, outcome: &str, took: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.events.entry((event, outcome.to_owned())).or_default() += 1;
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                m.latency_counts[i] += 1;
            }
        }
        m.latency_sum += secs;
        m.latency_count += 1;
    }

    /// One git commit holding `events` events.
    pub fn commit(&self, events: usize) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.commits += 1;
        m.committed_events += events as u64;
    }

    pub fn render(&self) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = String::new();
        s.push_str(
            "# HELP provisio_intake_events_total Webhook events received, by type and outcome.\n",
        );
        s.push_str("# TYPE provisio_intake_events_total counter\n");
        for ((event, outcome), n) in &m.events {
            let _ = writeln!(
                s,
                "provisio_intake_events_total{{event=\"{event}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        s.push_str("# HELP provisio_intake_request_duration_seconds Webhook request latency, including the git commit.\n");
        s.push_str("# TYPE provisio_intake_request_duration_seconds histogram\n");
        for (le, n) in BUCKETS.iter().zip(m.latency_counts) {
            let _ = writeln!(
                s,
                "provisio_intake_request_duration_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "provisio_intake_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            m.latency_count
        );
        let _ = writeln!(
            s,
            "provisio_intake_request_duration_seconds_sum {}",
            m.latency_sum
        );
        let _ = writeln!(
            s,
            "provisio_intake_request_duration_seconds_count {}",
            m.latency_count
        );
        s.push_str("# HELP provisio_intake_commits_total Git commits made by the intake.\n");
        s.push_str("# TYPE provisio_intake_commits_total counter\n");
        let _ = writeln!(s, "provisio_intake_commits_total {}", m.commits);
        s.push_str(
            "# HELP provisio_intake_committed_events_total Events whose change is in a commit.\n",
        );
        s.push_str("# TYPE provisio_intake_committed_events_total counter\n");
        let _ = writeln!(
            s,
            "provisio_intake_committed_events_total {}",
            m.committed_events
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("created", "created", Duration::from_millis(3));
        m.observe("created", "unauthorized", Duration::from_millis(300));
        m.commit(1);
        let s = m.render();
        assert!(
            s.contains("provisio_intake_events_total{event=\"created\",outcome=\"created\"} 1\n")
        );
        assert!(s.contains("provisio_intake_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(s.contains("provisio_intake_request_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(s.contains("provisio_intake_request_duration_seconds_count 2\n"));
        assert!(s.contains("provisio_intake_commits_total 1\n"));
    }
}

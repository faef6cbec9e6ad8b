//! The one metrics stack of the services: each service registers its metrics in a
//! `prometheus-client` [`Registry`] (prefix `provisio`, with `provisio_build_info` and the
//! git metrics both services share, [`GitMetrics`]), and one `/metrics` route ([`route`])
//! serves any registry in the OpenMetrics text format, `# EOF`-terminated, with
//! [`CONTENT_TYPE`]. Both services mount the route in their own router (see [`super::http`]).
//! The names, labels and their values are the metric contract of `docs/operations.md`;
//! no label carries an unbounded value (an event id, a commit, a subscription).

use std::sync::Arc;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use axum::http::header;
use axum::routing::{MethodRouter, get};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The media type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A service's metrics registry, with the `provisio` prefix every metric name carries and
/// `provisio_build_info{version}` (always 1).
pub fn registry() -> Registry {
    let mut r = Registry::with_prefix("provisio");
    let info = Family::<Version, Gauge>::default();
    info.get_or_create(&Version {
        version: env!("CARGO_PKG_VERSION"),
    })
    .set(1);
    r.register(
        "build_info",
        "The running version of provisio (always 1)",
        info,
    );
    r
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoOutcome {
    /// `registry` or `manifests`.
    pub repository: &'static str,
    /// `ok`, `rejected`, `auth`, `verify`, `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Repository {
    pub repository: &'static str,
}

/// The git metrics of both services: push attempts by result, commits the remote lacks,
/// the last successful fetch.
#[derive(Clone, Default)]
pub struct GitMetrics {
    pub pushes: Family<RepoOutcome, Counter>,
    pub unpushed: Family<Repository, Gauge>,
    pub last_fetch: Family<Repository, Gauge<f64, AtomicU64>>,
}

impl GitMetrics {
    /// Registers them in `registry` (`last_fetch` only when `fetches`: the services that
    /// follow a remote).
    pub fn register(registry: &mut Registry, fetches: bool) -> GitMetrics {
        let m = GitMetrics::default();
        registry.register(
            "git_pushes",
            "Push attempts by repository and outcome (ok; rejected: the remote moved, fetched and redone on top; auth; verify: certificate or host key; error)",
            m.pushes.clone(),
        );
        registry.register(
            "git_unpushed_commits",
            "Commits on the local branch that the remote does not have, after the last push attempt",
            m.unpushed.clone(),
        );
        if fetches {
            registry.register(
                "git_last_fetch_success_timestamp_seconds",
                "Unix time of the last successful fetch",
                m.last_fetch.clone(),
            );
        }
        m
    }

    /// Push attempts of `repository` by outcome.
    pub fn pushed(&self, repository: &'static str, outcomes: &BTreeMap<&'static str, u64>) {
        for (outcome, n) in outcomes {
            self.pushes
                .get_or_create(&RepoOutcome {
                    repository,
                    outcome,
                })
                .inc_by(*n);
        }
    }

    pub fn set_unpushed(&self, repository: &'static str, n: usize) {
        self.unpushed
            .get_or_create(&Repository { repository })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn fetched_now(&self, repository: &'static str) {
        self.last_fetch
            .get_or_create(&Repository { repository })
            .set(unix_now());
    }
}

/// Seconds since the Unix epoch, as the `*_timestamp_seconds` metrics hold them.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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

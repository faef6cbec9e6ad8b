//! Watch mode: notices registry changes (filesystem events through `notify`, debounced so a
//! burst of writes is one regeneration; or new commits on a registry git branch, see
//! [`crate::io::repo::follow`]), regenerates incrementally with [`crate::ops::generate::generate`], and hands the
//! result to [`crate::io::repo::deliver`] (commit, push, Argo CD nudge). Stops cleanly when the
//! `stop` flag is set (SIGTERM/SIGINT in the command).
//!
//! Resilience: an invalid registry or a refused mass deletion is logged with its precise
//! diagnostics and nothing is written or committed (the last good output stays); the next
//! change retries. A failed delivery keeps its commit and is retried on a timer.
//!
//! Following a registry repository, the git host's push webhook ([`server`], [`hook`]) makes
//! the loop fetch at once; polling every interval stays the fallback. [`server::Health`]
//! tells the probes whether the loop comes round and whether the start-up cycle is done.

pub mod hook;
pub mod metrics;
pub mod server;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use notify::{EventKind, RecursiveMode, Watcher};
use tracing::{error, info, warn};

use crate::io::output::Summary;
use crate::io::repo::follow::{FollowConfig, Follower};
use crate::io::repo::output::OutputRepo;
use crate::io::repo::{GitError, Oid};
use crate::ops::PipelineError;
use crate::ops::deliver::{self, DeliveryError};
use crate::ops::generate::{self as pipeline, GenerateOptions, MassDeleteGuard, Paths};
use crate::report::chain;
use metrics::Metrics;
use server::Health;

/// The `repository` label of the manifests repository's git metrics.
const MANIFESTS: &str = "manifests";
/// The `repository` label of the registry repository's git metrics.
const REGISTRY: &str = "registry";

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch the registry {path}")]
    Notify {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("the registry watcher stopped unexpectedly")]
    WatcherGone,
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Git(#[from] GitError),
}

/// How watch mode runs.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub paths: Paths,
    /// Render for this time instead of the clock (tests, reproducible runs).
    pub now: Option<DateTime<Utc>>,
    pub mass_delete: MassDeleteGuard,
    /// Quiet time that ends a burst of events.
    pub debounce: Duration,
    /// A burst longer than this regenerates anyway (a never-ending stream still progresses).
    pub max_delay: Duration,
    /// Commit/push/nudge; `None`: only regenerate the output tree.
    pub delivery: Option<deliver::Config>,
    /// How often a failed delivery (or poll) is retried when nothing else happens.
    pub retry_interval: Duration,
    /// Poll a registry repository instead of watching the directory.
    pub poll: Option<FollowConfig>,
    /// The first cycle re-renders every tenant and compares with the disk (repairs whatever
    /// a killed run or a hand edit left).
    pub full_on_start: bool,
}

impl WatchConfig {
    pub fn new(paths: Paths) -> WatchConfig {
        WatchConfig {
            paths,
            now: None,
            mass_delete: MassDeleteGuard::default(),
            debounce: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            delivery: None,
            retry_interval: Duration::from_secs(30),
            poll: None,
            full_on_start: true,
        }
    }
}

/// What one cycle ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleOutcome {
    /// Regenerated; `commits` made, `pushed` when the remote has it.
    Delivered { commits: usize, pushed: bool },
    /// The registry is invalid or the change was refused; nothing written or committed.
    Refused,
    /// Generation or delivery failed; retried later.
    Failed,
}

/// The loop's state between cycles.
struct Loop<'a> {
    cfg: &'a WatchConfig,
    repo: Option<OutputRepo>,
    metrics: &'a Metrics,
    health: &'a Health,
    stop: &'a AtomicBool,
    /// The registry clone, when following a repository.
    follower: Option<Follower>,
    /// The registry commit last seen valid (for `registry_invalid_since`).
    last_valid: Option<Oid>,
    /// A delivery failed; retry on the timer.
    retry: bool,
    first: bool,
    /// The next deletion date of a cancelled tenant (from the last regeneration): its tree
    /// changes then without any registry change, so a cycle runs at that moment.
    deadline: Option<chrono::DateTime<Utc>>,
}

/// Runs watch mode until `stop` is set. Returns after the current cycle ends.
pub fn run(
    cfg: &WatchConfig,
    metrics: &Metrics,
    health: &Health,
    stop: &Arc<AtomicBool>,
) -> Result<(), WatchError> {
    let repo = match &cfg.delivery {
        Some(d) => Some(OutputRepo::open(&cfg.paths.out, &d.repo)?),
        None => None,
    };
    if repo
        .as_ref()
        .is_some_and(|_| cfg.delivery.as_ref().is_some_and(|d| d.push.is_some()))
    {
        metrics.git.set_unpushed(MANIFESTS, 0);
    }
    let mut lp = Loop {
        cfg,
        repo,
        metrics,
        health,
        stop,
        follower: None,
        last_valid: None,
        retry: false,
        deadline: None,
        first: true,
    };
    // Until the start-up cycle delivers, whatever the registry holds is pending.
    metrics.pending();
    let result = match &cfg.poll {
        Some(p) => run_polling(&mut lp, p),
        None => run_notify(&mut lp),
    };
    health.set_ready(false);
    result
}

fn run_notify(lp: &mut Loop) -> Result<(), WatchError> {
    // Events carry absolute paths; the canonical registry path makes them relative.
    let registry = lp
        .cfg
        .paths
        .registry
        .canonicalize()
        .unwrap_or_else(|_| lp.cfg.paths.registry.clone());
    let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|source| WatchError::Notify {
        path: registry.clone(),
        source,
    })?;
    // Watch before the first cycle so that nothing saved during it is missed.
    watcher
        .watch(&registry, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Notify {
            path: registry.clone(),
            source,
        })?;
    info!(registry = %registry.display(), out = %lp.cfg.paths.out.display(), "watching");
    lp.cycle("provisio watch started");
    lp.health.set_ready(true);
    let mut last_attempt = Instant::now();
    while !lp.stop.load(Ordering::Relaxed) {
        lp.health.round();
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                if lp.deadline_reached() {
                    last_attempt = Instant::now();
                    lp.cycle("a deletion date was reached");
                } else if lp.retry && last_attempt.elapsed() >= lp.cfg.retry_interval {
                    last_attempt = Instant::now();
                    lp.cycle("retrying after a failure");
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Err(WatchError::WatcherGone),
        };
        let mut changed = BTreeSet::new();
        let mut relevant = note(&registry, first, &mut changed);
        // Debounce: wait for `debounce` of quiet, at most `max_delay` in all.
        let started = Instant::now();
        loop {
            if lp.stop.load(Ordering::Relaxed) {
                break;
            }
            let left = lp.cfg.max_delay.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(lp.cfg.debounce.min(left)) {
                Ok(ev) => relevant |= note(&registry, ev, &mut changed),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return Err(WatchError::WatcherGone),
            }
        }
        if !relevant || lp.stop.load(Ordering::Relaxed) {
            continue;
        }
        lp.metrics.pending();
        last_attempt = Instant::now();
        lp.cycle(&trigger(&changed));
    }
    info!("stopping: signal received");
    drop(watcher);
    lp.sync_index();
    Ok(())
}

fn run_polling(lp: &mut Loop, p: &FollowConfig) -> Result<(), WatchError> {
    let poller = Follower::open(p, &lp.cfg.paths.registry)?;
    let shown = crate::io::repo::transport::redact(&p.url);
    info!(url = %shown, branch = %p.branch, "following the registry repository");
    lp.follower = Some(poller);
    match lp.poll() {
        Ok(_) => {}
        // Credentials, a certificate or a host key refused: nothing will work until a person
        // changes something; say so and stop (exit 3) rather than serve stale output.
        Err(e @ GitError::Fetch { .. }) if !fetch_is_transient(&e) => return Err(e.into()),
        Err(e) => {
            error!(error = %chain(&e), "cannot fetch the registry; using the local clone");
            lp.metrics.failure("poll");
        }
    }
    let at = lp
        .follower
        .as_ref()
        .map_or_else(String::new, Follower::describe);
    lp.cycle(&format!("provisio watch started at registry {at}"));
    lp.health.set_ready(true);
    let mut next = Instant::now() + p.interval;
    while !lp.stop.load(Ordering::Relaxed) {
        lp.health.round();
        if lp.deadline_reached() {
            lp.cycle("a deletion date was reached");
        }
        let poked = lp.health.take_poke();
        if !poked && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        next = Instant::now() + p.interval;
        match lp.poll() {
            Ok(Some(change)) => {
                lp.metrics.pending();
                let trigger = if poked {
                    format!("{change}, announced by the registry webhook")
                } else {
                    change
                };
                lp.cycle(&trigger);
            }
            Ok(None) if lp.retry => {
                lp.cycle("retrying after a failure");
            }
            Ok(None) => {}
            Err(e) => {
                error!(error = %chain(&e), "cannot fetch the registry; retrying at the next poll");
                lp.metrics.failure("poll");
            }
        }
    }
    info!("stopping: signal received");
    lp.sync_index();
    Ok(())
}

/// Whether a failed fetch may succeed later without anyone changing anything.
fn fetch_is_transient(e: &GitError) -> bool {
    match e {
        GitError::Fetch { source, .. } => source.is_transient(),
        _ => true,
    }
}

/// Records the registry paths an event touched; false when it is irrelevant (reads, files
/// inside `.git`).
fn note(
    registry: &Path,
    ev: notify::Result<notify::Event>,
    changed: &mut BTreeSet<String>,
) -> bool {
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            // Overflowed queues and similar: regenerate to be safe.
            warn!(error = %e, "file watcher error; regenerating");
            return true;
        }
    };
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    let mut relevant = ev.paths.is_empty();
    for p in &ev.paths {
        let rel = p.strip_prefix(registry).unwrap_or(p);
        if rel.components().any(|c| c.as_os_str() == ".git") {
            continue;
        }
        relevant = true;
        changed.insert(rel.to_string_lossy().into_owned());
    }
    relevant
}

fn trigger(changed: &BTreeSet<String>) -> String {
    const SHOWN: usize = 10;
    let mut s = changed
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if changed.len() > SHOWN {
        s.push_str(&format!(" and {} more", changed.len() - SHOWN));
    }
    if s.is_empty() {
        "registry changed".into()
    } else {
        format!("registry changed: {s}")
    }
}

impl Loop<'_> {
    /// Fetches the registry branch (following a repository); the change when it moved.
    fn poll(&mut self) -> Result<Option<String>, GitError> {
        let Some(f) = self.follower.as_mut() else {
            return Ok(None);
        };
        let change = f.update()?;
        self.metrics.git.fetched_now(REGISTRY);
        Ok(change)
    }

    /// Since when the registry has been invalid, as Unix seconds: the committer time of the
    /// first commit after the last valid one (the followed repository), or now (a directory).
    fn invalid_since(&self) -> f64 {
        let now = crate::services::metrics::unix_now;
        match &self.follower {
            Some(f) => match f.first_commit_after(self.last_valid) {
                Ok(Some(t)) => t as f64,
                Ok(None) => now(),
                Err(e) => {
                    warn!(error = %chain(&e), "cannot read the registry history");
                    now()
                }
            },
            None => now(),
        }
    }

    /// Brings the output clone's index in step with HEAD before exiting (`git status` clean).
    fn sync_index(&self) {
        if let Some(Err(e)) = self.repo.as_ref().map(OutputRepo::sync_index) {
            warn!(error = %chain(&e), "cannot update the output repository's index");
        }
    }

    /// The next deletion date has come (by the clock generate renders with); it is used
    /// once, the cycle it starts computes the next one.
    fn deadline_reached(&mut self) -> bool {
        let now = self.cfg.now.unwrap_or_else(Utc::now);
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            return true;
        }
        false
    }

    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            now: self.cfg.now.unwrap_or_else(Utc::now),
            full: false,
            mass_delete: self.cfg.mass_delete,
        }
    }

    /// One regeneration: generate, then deliver. Never returns an error: failures are
    /// logged, counted and retried.
    fn cycle(&mut self, trigger: &str) -> CycleOutcome {
        let started = Instant::now();
        let mut opts = self.options();
        opts.full = self.first && self.cfg.full_on_start;
        self.first = false;
        let paths = &self.cfg.paths;
        let metrics = self.metrics;
        let generated =
            pipeline::generate_observed(paths, &opts, &mut |reg| metrics.lifecycle(reg));
        match &generated {
            Err(PipelineError::Invalid(_)) => {
                let since = self.invalid_since();
                self.metrics.invalid(|| since);
            }
            Ok(_) | Err(PipelineError::MassDelete { .. }) => {
                self.metrics.valid();
                self.last_valid = self.follower.as_ref().and_then(Follower::head);
            }
            Err(_) => {}
        }
        let summary = match generated {
            Ok(s) => s,
            Err(e) => {
                self.refused(&e);
                return if matches!(
                    e,
                    PipelineError::Invalid(_)
                        | PipelineError::MassDelete { .. }
                        | PipelineError::MassPlatformRemoval { .. }
                ) {
                    CycleOutcome::Refused
                } else {
                    CycleOutcome::Failed
                };
            }
        };
        self.deadline = summary.next_deadline;
        self.metrics
            .tenants("changed", summary.tenants_changed.len());
        self.metrics
            .tenants("removed", summary.tenants_removed.len());
        self.metrics.tenants("unchanged", summary.tenants_skipped);
        info!(
            trigger,
            elapsed = ?started.elapsed(),
            written = summary.written.len(),
            removed = summary.removed.len(),
            tenants_changed = summary.tenants_changed.len(),
            tenants_removed = summary.tenants_removed.len(),
            "regenerated"
        );
        let outcome = self.deliver(&summary, trigger, opts);
        let ok = !matches!(outcome, CycleOutcome::Failed);
        if let CycleOutcome::Delivered { .. } = outcome {
            self.metrics.delivered();
        }
        self.metrics.regeneration(if ok { "ok" } else { "error" });
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        if ok {
            self.metrics.success_now();
        }
        info!(elapsed = ?started.elapsed(), ?outcome, "cycle done");
        outcome
    }

    fn refused(&self, e: &PipelineError) {
        match e {
            PipelineError::Invalid(report) => {
                self.metrics.regeneration("invalid");
                self.metrics.failure("registry");
                error!(
                    "the registry is invalid; keeping the last good output and committing nothing until it is fixed:\n{}",
                    report.render()
                );
            }
            PipelineError::MassDelete { .. } | PipelineError::MassPlatformRemoval { .. } => {
                self.metrics.regeneration("mass_delete");
                self.metrics.failure("registry");
                error!(
                    "{e}; keeping the last good output and committing nothing (watch mode takes --allow-mass-delete too)"
                );
            }
            other => {
                self.metrics.regeneration("error");
                self.metrics.failure("generate");
                error!(error = %chain(other), "generate failed; retrying at the next change");
            }
        }
    }

    fn deliver(&mut self, summary: &Summary, trigger: &str, opts: GenerateOptions) -> CycleOutcome {
        let (Some(repo), Some(cfg)) = (&self.repo, &self.cfg.delivery) else {
            return CycleOutcome::Delivered {
                commits: 0,
                pushed: false,
            };
        };
        let stop = || self.stop.load(Ordering::Relaxed);
        let result = deliver::deliver_run(
            repo,
            &self.cfg.paths,
            &opts,
            cfg,
            trigger,
            summary,
            None,
            &stop,
        );
        self.metrics
            .git
            .pushed(MANIFESTS, &repo.take_push_outcomes());
        if cfg.push.is_some() {
            match repo.unpushed() {
                Ok(n) => self.metrics.git.set_unpushed(MANIFESTS, n),
                Err(e) => warn!(error = %chain(&e), "cannot count the unpushed commits"),
            }
        }
        match result {
            Ok(outcome) => {
                let d = &outcome.delivered;
                self.metrics.commits.inc_by(d.commits.len() as u64);
                self.metrics.push_retries.inc_by(u64::from(d.push_retries));
                if let Some(newer) = &d.superseded {
                    // Another writer delivered a newer registry: catch up at once.
                    info!(registry_commit = %newer, "the manifests hold a newer registry's output; fetching the registry now");
                    self.health.poke();
                }
                self.retry = false;
                match (&outcome.nudge, &cfg.nudge) {
                    (Some(Ok(status)), Some(n)) => info!(status, url = %n.url, "nudged Argo CD"),
                    (Some(Err(e)), _) => {
                        self.metrics.failure("nudge");
                        warn!(error = %chain(e), "cannot nudge Argo CD; it will notice at its next poll");
                    }
                    _ => {}
                }
                CycleOutcome::Delivered {
                    commits: d.commits.len(),
                    pushed: d.pushed.is_some(),
                }
            }
            Err(DeliveryError::Interrupted) => {
                warn!(
                    "stopping with the push unfinished; the commit is kept and pushed at the next start"
                );
                self.retry = true;
                CycleOutcome::Failed
            }
            Err(e) => {
                self.metrics.failure("delivery");
                error!(error = %chain(&e), retry_in = ?self.cfg.retry_interval, "delivery failed");
                self.retry = true;
                CycleOutcome::Failed
            }
        }
    }
}

//! The single writer: one thread owns the intake state and the repository. Submissions
//! (billing events, the lifecycle reports of tenants' Jobs, and reads of a tenant's
//! lifecycle records) queue up while a commit is being written; the next round takes all of
//! them (up to a bound), applies them in arrival order (each sees the effect of the previous
//! ones) and writes one commit for the group, each event or report named by its trailer and
//! each report's JSON in the message. Every submission of the group is answered only after
//! that commit (with fsync) is done: an acknowledged event or report is durable.
//!
//! What each answer says is true:
//! - the commit failed before the branch moved: 503, nothing recorded (the state is rebuilt
//!   from the repository);
//! - the commit is on the branch but the work tree or index could not follow (another git
//!   process holds `index.lock`): the event is recorded and answered as such, the sync is
//!   finished before the next group (the intent file, `io::repo::worktree`);
//! - HEAD moved to a commit whose registry does not validate: every event is refused (503,
//!   naming the problem) until HEAD moves to one that does; no event is ever applied to the
//!   state of an older HEAD;
//! - the file an event would write holds a person's uncommitted work: that event is refused
//!   (503, naming the file), the work is never overwritten.
//!
//! **With a shared registry repository** (`--registry-git`, [`Upstream`]) the writer owns a
//! clone ([`crate::io::repo::upstream`]) and a group is answered only once its commit is in
//! the remote: commit, push (never forced), and when the remote moved — a person's commit,
//! another writer — fetch, move onto the remote head, reload the state from it, apply the
//! group's events again (each re-validated; an event another writer recorded is now answered
//! as a redelivery) and push again, all under the one retry policy ([`Policy`]). A push that
//! cannot be made in time rolls the clone back onto the remote-tracking head and answers 503
//! (nothing recorded): an acknowledged event is in the remote, and nothing unacknowledged
//! stays in the clone to be confused with the truth.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::io::registry_dir;
use crate::io::repo::commit::{FileChange, Flush};
use crate::io::repo::lock::Lock;
use crate::io::repo::sync::PushFailure;
use crate::io::repo::upstream::{REMOTE, Upstream};
use crate::io::repo::worktree::Uncommitted;
use crate::io::repo::{Author, GitError, Oid, Repo};
use crate::io::retry::Policy;
use provisio_core::intake::{
    Applied, EventKind, EventRecord, IntakeError, REPORT_TRAILER, ReportRecord, State, StateError,
    Submission,
};

use super::Clock;
use super::metrics::Metrics;

/// Commit-message trailer naming each event a commit carries:
/// `Provisio-Event: <event id> <event name> <subscription id> <fingerprint>`.
pub const TRAILER: &str = "Provisio-Event:";

/// Why the intake cannot start (or restart its state).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a queued event gets back.
pub type Reply = Result<Applied, WriteError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// The commit failed before the branch moved: nothing was recorded.
    #[error("the registry change could not be committed: {0}")]
    Commit(String),
    /// The registry cannot take events now (HEAD does not validate, or cannot be read):
    /// nothing was applied.
    #[error("{0}")]
    Unavailable(String),
    /// The file the event would write holds a person's uncommitted work.
    #[error("{path} {why}")]
    Uncommitted { path: String, why: String },
    /// The commit could not be pushed to the registry repository in time: rolled back,
    /// nothing recorded.
    #[error("the registry change could not be pushed: {0}")]
    Push(String),
}

pub struct Job {
    pub submission: Submission,
    pub reply: oneshot::Sender<Reply>,
}

/// The repository plus the registry directory's path inside it.
pub struct Store {
    repo: Repo,
    /// `/`-separated path of the registry inside the repository ("" = its root).
    prefix: String,
    grace: Duration,
    /// HEAD when the state was last loaded or committed by us; any other value means
    /// another author committed meanwhile and the state is reloaded before the next group.
    /// Only ever set once the state of that HEAD is loaded.
    seen_head: Option<Oid>,
    /// A HEAD whose registry did not load, and why: every group is refused with this until
    /// HEAD moves (no reload per event while nobody fixed anything).
    broken: Option<(Option<Oid>, String)>,
    /// The shared repository every group is pushed to, when there is one.
    upstream: Option<Shared>,
}

/// The shared registry repository, the clone's lock and how pushes are retried.
struct Shared {
    upstream: Upstream,
    policy: Policy,
    _lock: Lock,
}

impl Store {
    /// Opens the registry: the checkout holding `registry`, or with `upstream`, provisio's
    /// clone of the shared repository in `registry` (created, then put on the remote head).
    pub fn open(
        registry: &Path,
        grace: Duration,
        upstream: Option<(Upstream, Policy)>,
    ) -> Result<(Self, State), OpenError> {
        let (repo, shared) = match upstream {
            None => (Repo::discover(registry)?, None),
            Some((upstream, policy)) => {
                let (repo, lock) = Repo::open_upstream(registry, &upstream)?;
                let shared = Shared {
                    upstream,
                    policy,
                    _lock: lock,
                };
                (repo, Some(shared))
            }
        };
        let prefix = repo.relative(registry)?;
        let mut store = Store {
            repo,
            prefix,
            grace,
            seen_head: None,
            broken: None,
            upstream: shared,
        };
        store.repair(crate::io::repo::worktree::INDEX_LOCK_WAIT);
        let state = store.load()?;
        Ok((store, state))
    }

    fn path(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// Finishes a work-tree sync a crash or a held `index.lock` left pending (only the
    /// paths provisio itself was writing; a person's edits are never touched).
    fn repair(&self, wait: std::time::Duration) {
        match self.repo.repair_intake_within(wait) {
            Ok(report) => {
                if !report.written.is_empty() {
                    warn!(files = ?report.written, "finished writing committed tenant files to the work tree (an earlier run was interrupted, or the index was locked)");
                }
                if !report.kept.is_empty() {
                    warn!(files = ?report.kept, "uncommitted edits found where provisio had an unfinished write: left alone (`git diff` shows them against HEAD)");
                }
            }
            Err(e) => {
                warn!(error = %crate::report::chain(&e), "the work tree and index are not yet in step with HEAD; retried before the next event");
            }
        }
    }

    /// The committed registry (HEAD), and the event and report ids its history names.
    fn load(&mut self) -> Result<State, OpenError> {
        let head = self.repo.head()?;
        let sources =
            registry_dir::sources_from_git(self.repo.read_entries_at(head, &self.prefix)?);
        let mut state = State::new(sources, self.grace)?;
        let (mut events, mut reports) = (0, 0);
        for message in self.repo.messages_from(head)? {
            for line in message.lines() {
                if let Some(rest) = line.strip_prefix(REPORT_TRAILER) {
                    // `<tenant> <kind> <report id> <fingerprint>`
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    if let [tenant, kind, id, fingerprint] = parts[..] {
                        state.record_report(
                            id.to_owned(),
                            ReportRecord {
                                tenant: tenant.to_owned(),
                                kind: kind.to_owned(),
                                fingerprint: fingerprint.to_owned(),
                            },
                        );
                        reports += 1;
                    }
                    continue;
                }
                let Some(rest) = line.strip_prefix(TRAILER) else {
                    continue;
                };
                let mut parts = rest.split_whitespace();
                if let (Some(id), Some(kind), Some(sub)) =
                    (parts.next(), parts.next(), parts.next())
                    && let Some(kind) = EventKind::from_event_name(kind)
                {
                    state.record_event(
                        id.to_owned(),
                        EventRecord {
                            kind,
                            subscription: sub.to_owned(),
                            fingerprint: parts.next().map(str::to_owned),
                        },
                    );
                    events += 1;
                }
            }
        }
        // Only now: a HEAD is "seen" once its state is what the writer holds.
        self.seen_head = head;
        info!(tenants = state.tenant_count(), events, reports, prefix = %self.prefix, "intake state loaded");
        Ok(state)
    }

    /// Brings `state` to HEAD when another author moved it. `Err(why)` when HEAD's registry
    /// cannot be loaded: the caller refuses the events, and the state of the older HEAD is
    /// never used again.
    fn refresh(&mut self, state: &mut State) -> Result<(), String> {
        let head = self.repo.head().map_err(|e| {
            error!(error = %crate::report::chain(&e), "cannot read HEAD");
            "the registry repository cannot be read (the cause is in the server's log)".to_owned()
        })?;
        if head == self.seen_head {
            return Ok(());
        }
        if let Some((h, why)) = &self.broken
            && *h == head
        {
            return Err(why.clone());
        }
        info!(head = ?head, "HEAD moved: reloading the registry state");
        match self.load() {
            Ok(s) => {
                *state = s;
                if self.broken.take().is_some() {
                    info!(head = ?head, "the registry at HEAD validates again: events are applied");
                }
                Ok(())
            }
            Err(e) => {
                let why = refusal(head, &e);
                error!(error = %crate::report::chain(&e), "cannot reload the registry: refusing events until HEAD validates");
                if matches!(e, OpenError::State(_)) {
                    self.broken = Some((head, why.clone()));
                }
                Err(why)
            }
        }
    }
}

/// The answer to every event while the registry at `head` does not load.
fn refusal(head: Option<Oid>, e: &OpenError) -> String {
    let at = head.map_or_else(
        || "HEAD".to_owned(),
        |h| format!("commit {:.7}", h.to_string()),
    );
    match e {
        OpenError::State(StateError::Invalid { lines, .. }) => {
            let mut shown: Vec<&str> = lines.iter().take(5).map(String::as_str).collect();
            if lines.len() > shown.len() {
                shown.push("…");
            }
            format!(
                "the registry at {at} does not validate ({} error{}), so no event is applied until it is fixed: {}",
                lines.len(),
                if lines.len() == 1 { "" } else { "s" },
                shown.join("; ")
            )
        }
        // A git or file-system failure: its detail (server paths) is logged by the caller.
        _ => format!(
            "the registry at {at} cannot be loaded, so no event is applied until it can (the cause is in the server's log)"
        ),
    }
}

/// Runs the writer loop on the current thread until every sender is gone.
pub fn run(
    mut store: Store,
    mut state: State,
    mut rx: mpsc::Receiver<Job>,
    clock: Clock,
    author: Author,
    max_group: usize,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let submissions: Vec<&Submission> = group.iter().map(|j| &j.submission).collect();
        let replies = process(
            &mut store,
            &mut state,
            &submissions,
            clock(),
            &author,
            &metrics,
        );
        for (job, reply) in group.into_iter().zip(replies) {
            // The requester may have gone (client disconnected): the change stands anyway.
            let _ = job.reply.send(reply);
        }
    }
    debug!("every sender is gone: the writer stops");
}

/// One group: applies the submissions (billing events and lifecycle reports), commits what
/// they change and, with a shared repository, pushes it (redoing the group on top of the
/// remote when it moved); one reply each.
fn process(
    store: &mut Store,
    state: &mut State,
    events: &[&Submission],
    now: DateTime<Utc>,
    author: &Author,
    metrics: &Metrics,
) -> Vec<Reply> {
    let Some(shared) = &store.upstream else {
        return apply_and_commit(store, state, events, now, author, metrics, Flush::Synced).0;
    };
    let (policy, branch, url) = (
        shared.policy,
        shared.upstream.branch.clone(),
        shared.upstream.url.clone(),
    );
    let started = std::time::Instant::now();
    let in_time = || policy.deadline.is_none_or(|d| started.elapsed() < d);
    let mut waits = policy.delays();
    let mut attempts = 0;
    // Each round applies the group to the state of the clone's HEAD (the remote head as
    // last seen) and commits it; then the push is tried until it lands, the remote turns
    // out to have moved (next round), or the attempts are spent.
    loop {
        if store.broken.is_some() {
            // The clone's head does not validate, and nothing is pushed (so nothing would
            // fetch) until it does: see whether someone fixed the registry in the remote.
            if let Err(e) = store.repo.reset_to_upstream(&branch, &url) {
                warn!(error = %crate::report::chain(&e), "cannot fetch the registry repository");
            }
        }
        let (replies, commit) =
            apply_and_commit(store, state, events, now, author, metrics, Flush::Lazy);
        if commit.is_none() {
            // Nothing to push: refused, unchanged, or a redelivery the remote already holds.
            return replies;
        }
        let failure = loop {
            attempts += 1;
            let pushed = store.repo.push_branch(REMOTE, &branch);
            let outcome = match &pushed {
                Ok(()) => "ok",
                Err(f) => f.outcome(),
            };
            metrics.pushed(outcome);
            match pushed {
                Ok(()) => {
                    metrics.unpushed(0);
                    return replies;
                }
                Err(f @ PushFailure::Remote(_))
                    if f.is_retryable() && attempts < policy.attempts && in_time() =>
                {
                    warn!(attempt = attempts, error = %crate::report::chain(&f), "push of the registry commit failed; retrying");
                    std::thread::sleep(waits.next().unwrap_or(policy.max));
                }
                Err(f) => break f,
            }
        };
        let retry = matches!(failure, PushFailure::Moved(_))
            && attempts < policy.attempts.max(1)
            && in_time();
        if !retry {
            error!(attempts, error = %crate::report::chain(&failure), "the registry commit could not be pushed: rolled back, the events are answered 503");
            roll_back(store, state, &branch);
            return events
                .iter()
                .map(|_| Err(WriteError::Push(failure.to_string())))
                .collect();
        }
        info!(attempt = attempts, reason = %failure, "the registry repository moved: applying the events again on top of its head");
        if let Err(e) = store.repo.reset_to_upstream(&branch, &url) {
            warn!(error = %crate::report::chain(&e), "cannot fetch the registry repository; retrying");
            let _ = store.repo.roll_back_to_tracking(&branch);
        }
        let _ = reload(store, state);
        std::thread::sleep(waits.next().unwrap_or(policy.max));
    }
}

/// Puts the clone back on the remote-tracking head (what the remote is known to hold) and
/// the state with it.
fn roll_back(store: &mut Store, state: &mut State, branch: &str) {
    if let Err(e) = store.repo.roll_back_to_tracking(branch) {
        error!(error = %crate::report::chain(&e), "cannot roll the registry clone back onto the remote head");
    }
    let _ = reload(store, state);
}

/// Applies the submissions to the state of HEAD and commits what they change (with `flush`);
/// one reply each, and the commit made, if any.
fn apply_and_commit(
    store: &mut Store,
    state: &mut State,
    events: &[&Submission],
    now: DateTime<Utc>,
    author: &Author,
    metrics: &Metrics,
    flush: Flush,
) -> (Vec<Reply>, Option<Oid>) {
    let all = |e: WriteError| {
        (
            events.iter().map(|_| Err(e.clone())).collect::<Vec<_>>(),
            None,
        )
    };
    if store.repo.pending_intent().is_ok_and(|p| p.is_some()) {
        store.repair(std::time::Duration::from_millis(100));
    }
    // Another author (a person, watch mode pulling) may have committed since: the registry
    // at HEAD is the truth, so the indexes are rebuilt from it first.
    if let Err(why) = store.refresh(state) {
        return all(WriteError::Unavailable(why));
    }
    // Apply; an event whose file holds a person's uncommitted work is refused, and the
    // others are applied again on a state that never saw it.
    let mut blocked: BTreeMap<usize, WriteError> = BTreeMap::new();
    let results = loop {
        let results: Vec<Reply> = events
            .iter()
            .enumerate()
            .map(|(i, e)| match blocked.get(&i) {
                Some(err) => Err(err.clone()),
                None => state.submit(e, now).map_err(WriteError::from),
            })
            .collect();
        let paths: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok()?.change.as_ref())
            .map(|c| store.path(&c.path))
            .collect();
        let dirty = match store.repo.uncommitted(&paths) {
            Ok(d) => d,
            Err(e) => {
                let chain = crate::report::chain(&e);
                error!(error = %chain, "cannot read the work tree; reloading the registry state");
                let _ = reload(store, state);
                return all(WriteError::Commit(chain));
            }
        };
        if dirty.is_empty() {
            break results;
        }
        for (i, r) in results.iter().enumerate() {
            if let Ok(a) = r
                && let Some(c) = &a.change
                && let Some(why) = dirty.get(&store.path(&c.path))
            {
                blocked.insert(i, uncommitted(store.path(&c.path), why));
            }
        }
        warn!(files = ?dirty.keys().collect::<Vec<_>>(), "events refused: their tenant files hold uncommitted work in the registry's work tree");
        if let Err(why) = reload(store, state) {
            return all(WriteError::Unavailable(why));
        }
    };

    // Later events of the group win for the same file (they saw the earlier ones).
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut details = Vec::new();
    let mut trailers = Vec::new();
    let mut reports = 0;
    for (submission, result) in events.iter().zip(&results) {
        if let Ok(a) = result
            && let Some(change) = &a.change
        {
            files.insert(store.path(&change.path), change.text.clone());
            lines.push(a.summary.clone());
            details.extend(a.detail.clone());
            trailers.extend(submission.trailer());
            reports += usize::from(submission.is_lifecycle());
        }
    }
    if files.is_empty() {
        return (results, None);
    }
    let message = commit_message(&lines, reports, &details, &trailers);
    let changes: Vec<FileChange> = files
        .into_iter()
        .map(|(path, text)| FileChange {
            path,
            content: Some(text.into_bytes()),
        })
        .collect();
    match store
        .repo
        .commit_files_on(store.seen_head, &changes, &message, author, flush)
    {
        Ok(done) => {
            if let Some(oid) = done.commit {
                store.seen_head = Some(oid);
            }
            for w in &done.warnings {
                warn!(error = %crate::report::chain(w), "the registry change is committed; the work tree and index follow before the next event");
            }
            if !done.synced.kept.is_empty() {
                warn!(files = ?done.synced.kept, "a person edited these files while provisio committed them: their edits are left alone (`git diff` shows them against HEAD)");
            }
            metrics.commit(lines.len());
            info!(
                commit = %done.commit.map(|o| o.to_string()).unwrap_or_default(),
                events = lines.len(),
                group = events.len(),
                "registry change committed"
            );
            (results, done.commit)
        }
        Err(e) => {
            let chain = crate::report::chain(&e);
            // The answer must be true: if HEAD holds every file anyway, it is recorded.
            if store.repo.head_has(&changes).unwrap_or(false) {
                warn!(error = %chain, "the commit reported a failure but HEAD holds the change: answering it as recorded");
                let _ = reload(store, state);
                let head = store.repo.head().ok().flatten();
                return (results, head);
            }
            error!(error = %chain, "commit failed; reloading the registry state");
            let _ = reload(store, state);
            all(WriteError::Commit(chain))
        }
    }
}

/// Rebuilds the state from HEAD after a failure. Until that succeeds, `seen_head` stays
/// unset, so the next group reloads (and is refused while it cannot) before applying
/// anything: no event is ever applied to a state that may not be HEAD's.
fn reload(store: &mut Store, state: &mut State) -> Result<(), String> {
    store.seen_head = None;
    store.refresh(state)
}

fn uncommitted(path: String, why: &Uncommitted) -> WriteError {
    WriteError::Uncommitted {
        path,
        why: format!(
            "{why}; provisio never overwrites a person's work in the registry's checkout: commit or discard it, then the event is accepted"
        ),
    }
}

/// The message of one group's commit: a subject naming the change (one) or counting them,
/// the list of changes when there are several, each report's JSON, then the trailers.
/// `reports` of the `lines` are lifecycle reports (subject `lifecycle:`), the others billing
/// events (`intake:`).
fn commit_message(
    lines: &[String],
    reports: usize,
    details: &[String],
    trailers: &[String],
) -> String {
    let events = lines.len() - reports;
    let subject = match (lines, reports) {
        ([one], 0) => format!("intake: {one}"),
        ([one], _) => format!("lifecycle: {one}"),
        (many, 0) => format!("intake: {} billing events", many.len()),
        (many, r) if r == many.len() => format!("lifecycle: {r} reports"),
        (_, r) => format!(
            "intake: {events} billing event{} and {r} lifecycle report{}",
            if events == 1 { "" } else { "s" },
            if r == 1 { "" } else { "s" }
        ),
    };
    let mut m = subject;
    m.push_str("\n\n");
    if lines.len() > 1 {
        for l in lines {
            m.push_str("- ");
            m.push_str(l);
            m.push('\n');
        }
        m.push('\n');
    }
    for d in details {
        m.push_str(d);
        m.push_str("\n\n");
    }
    for t in trailers {
        m.push_str(t);
        m.push('\n');
    }
    m
}

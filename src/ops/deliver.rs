//! Delivery: what `generate` wrote becomes one commit in the manifests repository, pushed
//! without ever forcing, then Argo CD is nudged. One sequence — why → commit → push
//! (regenerating on top when the remote moved) → nudge — shared by `generate --commit` and
//! watch mode ([`deliver_run`]).
//!
//! - A push the remote rejects because it moved is "rebased" by regenerating: fetch, reset
//!   the clone onto the remote head, run `generate` again (the output is a pure function of
//!   the registry), commit, push again, with bounded exponential backoff.
//! - A transport failure is retried with backoff; the local commit is kept either way and
//!   pushed by the next attempt.
//! - Output is never moved back in time: when the remote's head was made from a registry
//!   commit this writer's registry does not contain yet (another writer that fetched the
//!   registry later), nothing is pushed on top of it ([`Delivered::superseded`]): re-rendering
//!   the older registry there would remove the newest tenants' trees until the next cycle,
//!   and Argo CD could prune their Applications meanwhile.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::error::PipelineError;
use super::generate::{self, GenerateOptions, Paths};
use crate::io::nudge::{self, Nudge, NudgeError};
use crate::io::output::Summary;
use crate::io::repo::message::{CommitInfo, Why};
use crate::io::repo::output::{IndexSyncer, OutputRepo, RepoConfig};
use crate::io::repo::sync::PushFailure;
use crate::io::repo::{self, GitError, Oid};
use crate::io::retry::Policy;
use crate::report::chain;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The output repository could not be opened, read or committed to.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Pushing failed `attempts` times; the local commit is kept.
    #[error(
        "pushing {branch} to {remote} failed after {attempts} attempt(s); the local commit is kept and pushed by the next attempt"
    )]
    PushGaveUp {
        branch: String,
        remote: String,
        attempts: u32,
        #[source]
        last: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The remote refused the push for a reason other than having moved (e.g. a hook).
    #[error("the remote refused {refname}: {message}")]
    PushRefused { refname: String, message: String },
    /// Regenerating on top of the remote head (after a rejected push) failed.
    #[error("regenerating on top of the remote head failed")]
    Regenerate(#[source] Box<PipelineError>),
    /// Stopped (SIGTERM) while waiting to retry a push; the local commit is kept.
    #[error(
        "stopped before the push succeeded; the local commit is kept and pushed on the next run"
    )]
    Interrupted,
}

type Result<T, E = DeliveryError> = std::result::Result<T, E>;

/// Everything one delivery needs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub repo: RepoConfig,
    /// Push, retrying under this policy; `None`: commit only.
    pub push: Option<Policy>,
    /// Nudge Argo CD after a push.
    pub nudge: Option<Nudge>,
}

/// What [`deliver`] did.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Commits made (more than one when a rejected push was regenerated on top).
    pub commits: Vec<CommitInfo>,
    /// The remote head before and after, when a push succeeded.
    pub pushed: Option<(Option<Oid>, Oid)>,
    /// Push attempts after the first.
    pub push_retries: u32,
    /// The remote holds output made from a newer registry commit (named) than this one: this
    /// writer's output was not pushed over it.
    pub superseded: Option<String>,
    /// The commit the index was brought in step with beside the first push (see
    /// [`deliver`]'s `index`); `None`: the caller still has to.
    pub index_synced: Option<Oid>,
}

/// What [`deliver_run`] did: the delivery, and the nudge's answer when one was sent (a
/// failed nudge is not a failed delivery: Argo CD's poll picks the push up).
#[derive(Debug)]
pub struct Outcome {
    pub delivered: Delivered,
    pub nudge: Option<std::result::Result<u16, NudgeError>>,
}

/// The whole sequence after a `generate`: commit what it wrote (`summary`: that run's
/// summary; output generated earlier and not committed yet is found through the state file),
/// push with the configured backoff (regenerating on top of the remote when it moved), nudge
/// Argo CD. `index`: see [`deliver`].
#[allow(clippy::too_many_arguments)] // each is one thing a caller decides; no natural group
pub fn deliver_run(
    repo: &OutputRepo,
    paths: &Paths,
    opts: &GenerateOptions,
    cfg: &Config,
    trigger: &str,
    summary: &Summary,
    index: Option<IndexSyncer>,
    stop: &dyn Fn() -> bool,
) -> Result<Outcome> {
    let why = Why {
        trigger: trigger.to_owned(),
        registry_commit: repo::head_of(&paths.registry),
        registry: Some(paths.registry.clone()),
    };
    // On top of another writer's commit the state file is theirs: re-render everything and
    // compare with the disk rather than trust it.
    let full = GenerateOptions {
        full: true,
        ..opts.clone()
    };
    let mut regenerate = || generate::generate(paths, &full);
    let delivered = deliver(
        repo,
        Some(summary),
        &why,
        cfg.push.as_ref(),
        &mut regenerate,
        index,
        stop,
    )?;
    let nudge = match &cfg.nudge {
        Some(n) => nudge_argocd(repo, n, &delivered).transpose(),
        None => None,
    };
    Ok(Outcome { delivered, nudge })
}

/// Commits what the output holds and HEAD lacks (`summary`: what one `generate` run did;
/// `None`: no run, only what the state file on disk records differently from HEAD's; see
/// [`OutputRepo::commit_summary`]) and, with `push`, pushes whatever the remote lacks. A push
/// rejected because the remote moved is fetched, reset onto and regenerated on top by
/// `regenerate`; transport failures are retried with `backoff`; `stop` abandons the waiting
/// between attempts (the commit stays local). With `index`, the index is brought in step
/// with the commit on a second thread while the first push runs ([`Delivered::index_synced`]):
/// at 10,000 tenants a release's index update takes about a second, the push several, and
/// the push leaves a core idle. It is done by then: a rejected push resets the index.
pub fn deliver(
    repo: &OutputRepo,
    summary: Option<&Summary>,
    why: &Why,
    push: Option<&Policy>,
    regenerate: &mut dyn FnMut() -> std::result::Result<Summary, PipelineError>,
    mut index: Option<IndexSyncer>,
    stop: &dyn Fn() -> bool,
) -> Result<Delivered> {
    let t = Instant::now();
    let mut out = Delivered::default();
    let none = Summary::default();
    out.commits
        .extend(repo.commit_summary(summary.unwrap_or(&none), why)?);
    debug!(elapsed = ?t.elapsed(), "committed");
    let Some(backoff) = push else {
        return Ok(out);
    };
    if repo.head().is_none() || (out.commits.is_empty() && !repo.ahead()?) {
        return Ok(out); // nothing the remote lacks
    }
    let before = repo.remote_head()?;
    // The waits come from the one retry policy; this loop sleeps itself because it can be
    // stopped and regenerates between attempts.
    let mut waits = backoff.delays();
    let mut delay = waits.next().unwrap_or(backoff.initial);
    let mut last = None;
    for attempt in 1..=backoff.attempts.max(1) {
        if attempt > 1 {
            out.push_retries += 1;
        }
        let started = Instant::now();
        let pushed = match (index.take(), out.commits.last()) {
            (Some(syncer), Some(commit)) => {
                let (pushed, synced) = std::thread::scope(|s| {
                    let side = s.spawn(move || syncer.sync_index_after(commit));
                    (repo.push_once(), side.join())
                });
                match synced {
                    Ok(Ok(())) => out.index_synced = Some(commit.id),
                    Ok(Err(e)) => {
                        debug!(error = %chain(&e), "the index was not synced beside the push; the caller syncs it");
                    }
                    // A push that landed is not thrown away for it: logged, and the
                    // caller syncs on its own handle.
                    Err(_) => {
                        warn!("the index sync beside the push panicked; the caller syncs it");
                    }
                }
                pushed
            }
            _ => repo.push_once(),
        };
        match pushed {
            Ok(()) => {
                let head = repo.head().expect("a branch with commits");
                debug!(elapsed = ?started.elapsed(), commit = %head, "pushed");
                out.pushed = Some((before, head));
                return Ok(out);
            }
            Err(PushFailure::Moved(msg)) => {
                warn!(attempt, reason = %msg, "the remote moved; regenerating on top of its head");
                if attempt > 1 {
                    sleep_unless_stopped(delay, stop)?;
                }
                match repo.fetch() {
                    Err(e) => {
                        warn!(error = %chain(&e), "fetch failed; retrying");
                        last = Some(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
                    }
                    Ok(remote) => {
                        if let Some(r) = remote {
                            repo.reset_to(r)?;
                            if let Some(newer) = newer_registry(repo, r, why)? {
                                info!(registry_commit = %newer, "the remote holds the output of a newer registry commit; not pushing this older one over it");
                                out.pushed = None;
                                out.superseded = Some(newer);
                                return Ok(out);
                            }
                        }
                        let s = regenerate().map_err(|e| DeliveryError::Regenerate(Box::new(e)))?;
                        let mut again = why.clone();
                        again.trigger = format!(
                            "{} (regenerated on top of {} after the push was rejected)",
                            why.trigger,
                            remote.map_or_else(|| "nothing".to_owned(), |r| r.to_string())
                        );
                        match repo.commit_summary(&s, &again)? {
                            Some(c) => out.commits.push(c),
                            None => {
                                info!("the remote already holds this output");
                                out.pushed = None;
                                return Ok(out);
                            }
                        }
                    }
                }
            }
            Err(PushFailure::Refused { refname, message }) => {
                return Err(DeliveryError::PushRefused { refname, message });
            }
            Err(f @ PushFailure::Remote(_)) if f.is_retryable() => {
                warn!(attempt, error = %chain(&f), retry_in = ?delay, "push failed; retrying");
                last = Some(Box::new(f));
                if attempt < backoff.attempts {
                    sleep_unless_stopped(delay, stop)?;
                }
            }
            Err(f) => {
                // Credentials, certificate or host key refused: retrying will not help.
                return Err(DeliveryError::PushGaveUp {
                    branch: repo.branch().to_owned(),
                    remote: repo.remote().to_owned(),
                    attempts: attempt,
                    last: Box::new(f),
                });
            }
        }
        delay = waits.next().unwrap_or(delay);
        if stop() {
            return Err(DeliveryError::Interrupted);
        }
    }
    Err(DeliveryError::PushGaveUp {
        branch: repo.branch().to_owned(),
        remote: repo.remote().to_owned(),
        attempts: backoff.attempts.max(1),
        last: last.unwrap_or_else(|| "the remote kept moving".into()),
    })
}

/// The registry commit `remote_head` was made from, when it is newer than (not contained in)
/// the registry this writer rendered; `None` when this writer's is as new or newer, or when
/// either is unknown (a registry outside git).
fn newer_registry(repo: &OutputRepo, remote_head: Oid, why: &Why) -> Result<Option<String>> {
    let (Some(ours), Some(dir)) = (&why.registry_commit, &why.registry) else {
        return Ok(None);
    };
    let Some(theirs) = repo.registry_commit_at(remote_head)? else {
        return Ok(None);
    };
    if theirs == *ours {
        return Ok(None);
    }
    Ok(match repo::is_ancestor_in(dir, &theirs, ours) {
        Some(true) => None,
        // Theirs is a descendant of ours, or a commit our clone has not fetched yet.
        _ => Some(theirs),
    })
}

/// Tells Argo CD about what `d` pushed (nothing when nothing was pushed). A failure is the
/// caller's to log: the push stands and Argo CD's poll picks it up.
pub fn nudge_argocd(
    repo: &OutputRepo,
    n: &Nudge,
    d: &Delivered,
) -> std::result::Result<Option<u16>, NudgeError> {
    let Some((before, after)) = d.pushed else {
        return Ok(None);
    };
    if before == Some(after) {
        return Ok(None);
    }
    // Only the last commit is on the remote (earlier ones were regenerated on top).
    let last: Vec<CommitInfo> = d.commits.last().cloned().into_iter().collect();
    let files = match last.first() {
        Some(c) => match repo.changed_files(c, 5_000) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %chain(&e), "cannot list the pushed files; nudging without them");
                None
            }
        },
        None => None,
    };
    n.send(&nudge::PushEvent {
        branch: repo.branch(),
        before,
        after,
        commits: &last,
        files: files.as_ref(),
        author: repo.author(),
    })
    .map(Some)
}

fn sleep_unless_stopped(total: Duration, stop: &dyn Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + total;
    loop {
        if stop() {
            return Err(DeliveryError::Interrupted);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

//! The single writer: one thread owns the intake state and the repository. Events queue up
//! while a commit is being written; the next round takes all of them (up to a bound),
//! applies them in arrival order (each sees the effect of the previous ones) and writes one
//! commit for the group. Every event of the group is answered only after that commit (with
//! fsync) is done: an acknowledged event is durable. If the commit fails, the state is
//! rebuilt from the repository and the whole group is answered 503 (nothing acknowledged).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::io::repo::commit::FileChange;
use crate::io::repo::{Author, GitError, Oid, Repo};
use provisio_core::intake::{
    Applied, Event, EventKind, EventRecord, IntakeError, State, StateError,
};
use provisio_core::registry::layout::{FileKind, TENANTS_DIR, classify};

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
    #[error("{0} in the registry is not UTF-8")]
    NotUtf8(String),
}

/// What a queued event gets back.
pub type Reply = Result<Applied, WriteError>;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("the registry change could not be committed: {0}")]
    Commit(String),
}

pub struct Job {
    pub event: Event,
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
    seen_head: Option<Oid>,
}

impl Store {
    pub fn open(registry: &Path, grace: Duration) -> Result<(Self, State), OpenError> {
        let repo = Repo::discover(registry)?;
        let prefix = repo.relative(registry)?;
        let mut store = Store {
            repo,
            prefix,
            grace,
            seen_head: None,
        };
        let restored = store.repo.restore_unsynced(&store.path(TENANTS_DIR))?;
        if !restored.is_empty() {
            warn!(files = ?restored, "restored tenant files committed before a crash but not written");
        }
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

    /// The committed registry (HEAD), and the event ids its history names.
    fn load(&mut self) -> Result<State, OpenError> {
        self.seen_head = self.repo.head()?;
        let mut sources = BTreeMap::new();
        for (rel, bytes) in self.repo.read_committed(&self.prefix)? {
            let wanted = match classify(&rel) {
                FileKind::Product(name) | FileKind::Tenant(name) => !name.starts_with('.'),
                kind => kind.is_shared(),
            };
            if wanted {
                let text = String::from_utf8(bytes).map_err(|_| OpenError::NotUtf8(rel.clone()))?;
                sources.insert(rel, text);
            }
        }
        let mut state = State::new(sources, self.grace)?;
        let mut events = 0;
        for message in self.repo.messages()? {
            for line in message.lines() {
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
        info!(tenants = state.tenant_count(), events, prefix = %self.prefix, "intake state loaded");
        Ok(state)
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
        // Another author (a person, watch mode pulling) may have committed since: the
        // registry at HEAD is the truth, so the indexes are rebuilt from it first.
        match store.repo.head() {
            Ok(head) if head == store.seen_head => {}
            moved => {
                info!(head = ?moved.as_ref().ok(), "HEAD moved: reloading the registry state");
                match store.load() {
                    Ok(s) => state = s,
                    Err(e) => {
                        let chain = crate::report::chain(&e);
                        error!(error = %chain, "cannot reload the registry");
                        let results = group
                            .iter()
                            .map(|_| Err(IntakeError::Internal(String::new())))
                            .collect();
                        reply_all(group, results, Err(chain));
                        continue;
                    }
                }
            }
        }
        let now = clock();
        let results: Vec<Result<Applied, IntakeError>> =
            group.iter().map(|j| state.apply(&j.event, now)).collect();

        // Later events of the group win for the same file (they saw the earlier ones).
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let mut lines = Vec::new();
        let mut trailers = Vec::new();
        for (job, result) in group.iter().zip(&results) {
            if let Ok(a) = result
                && let Some(change) = &a.change
            {
                files.insert(store.path(&change.path), change.text.clone());
                lines.push(a.summary.clone());
                trailers.push(format!(
                    "{TRAILER} {} {} {} {}",
                    job.event.id,
                    job.event.kind().event_name(),
                    job.event.subscription_id,
                    job.event.fingerprint
                ));
            }
        }
        let outcome = if files.is_empty() {
            Ok(())
        } else {
            let message = commit_message(&lines, &trailers);
            let changes: Vec<FileChange> = files
                .into_iter()
                .map(|(path, text)| FileChange {
                    path,
                    content: Some(text.into_bytes()),
                })
                .collect();
            match store.repo.commit_files(&changes, &message, &author) {
                Ok(oid) => {
                    if oid.is_some() {
                        store.seen_head = oid;
                    }
                    metrics.commit(lines.len());
                    info!(
                        commit = %oid.map(|o| o.to_string()).unwrap_or_default(),
                        events = lines.len(),
                        group = group.len(),
                        "registry change committed"
                    );
                    Ok(())
                }
                Err(e) => {
                    let chain = crate::report::chain(&e);
                    error!(error = %chain, "commit failed; reloading the registry state");
                    match store.load() {
                        Ok(s) => state = s,
                        Err(e) => {
                            error!(error = %crate::report::chain(&e), "cannot reload the registry: stopping the writer");
                            reply_all(group, results, Err(chain));
                            return;
                        }
                    }
                    Err(chain)
                }
            }
        };
        reply_all(group, results, outcome);
    }
    debug!("every sender is gone: the writer stops");
}

fn reply_all(
    group: Vec<Job>,
    results: Vec<Result<Applied, IntakeError>>,
    outcome: Result<(), String>,
) {
    for (job, result) in group.into_iter().zip(results) {
        let reply = match (&outcome, result) {
            (Err(e), _) => Err(WriteError::Commit(e.clone())),
            (Ok(()), r) => r.map_err(WriteError::from),
        };
        // The requester may have gone (client disconnected): the change stands anyway.
        let _ = job.reply.send(reply);
    }
}

fn commit_message(lines: &[String], trailers: &[String]) -> String {
    let subject = match lines {
        [one] => format!("intake: {one}"),
        many => format!("intake: {} billing events", many.len()),
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
    for t in trailers {
        m.push_str(t);
        m.push('\n');
    }
    m
}

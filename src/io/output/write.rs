//! Writing the output tree. The only code that creates, replaces or removes files under
//! `<out>/tenants-out/`, `<out>/platform-out/` and `<out>/argocd/`.
//!
//! - Tenants are written one at a time ([`Writer::tenant`]), so memory stays flat however
//!   many tenants there are.
//! - A file is written only when its bytes change, through a temporary file in the same
//!   directory renamed over the old one: a crash leaves the old file or the new one, never a
//!   half-written one.
//! - The state file is written last ([`Writer::finish`]); after a crash the next run sees the
//!   old state, re-renders what it may have missed, and converges.
//! - A tenant directory that is not in the registry is removed (callers guard against mass
//!   removals before calling `finish`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::state::{Inputs, STATE_FILE, State, TenantState, tree_hash};
use provisio_core::render::{ARGOCD_DIR, Files, PLATFORM_DIR, TENANTS_DIR};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file or directory of the output tree could not be read, written or removed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io {
        action,
        path,
        source,
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub written: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Tenants whose tree gained, changed or lost a file.
    pub tenants_changed: BTreeSet<String>,
    pub tenants_removed: BTreeSet<String>,
    /// Tenants skipped because their inputs did not change.
    pub tenants_skipped: usize,
}

impl Summary {
    pub fn is_noop(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }
}

/// Reads the state file of an output root, if any.
pub fn read_state(root: &Path) -> Result<Option<State>, WriteError> {
    let p = root.join(STATE_FILE);
    match std::fs::read(&p) {
        Ok(b) => Ok(State::from_bytes(&b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &p)(e)),
    }
}

/// Writes `bytes` to `path` atomically (temporary file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".provisio-")
        .tempfile_in(dir)
        .map_err(io("create a temporary file in", dir))?;
    tmp.write_all(bytes).map_err(io("write", path))?;
    tmp.persist(path)
        .map_err(|e| io("replace", path)(e.error))?;
    Ok(())
}

/// Streams a run's output to disk, tenant by tenant.
pub struct Writer<'a> {
    root: &'a Path,
    previous: Option<&'a State>,
    next: State,
    summary: Summary,
}

impl<'a> Writer<'a> {
    pub fn new(root: &'a Path, previous: Option<&'a State>, inputs: &Inputs) -> Self {
        Writer {
            root,
            previous,
            next: State::empty(&inputs.shared),
            summary: Summary::default(),
        }
    }

    /// A tenant whose inputs did not change: its tree is kept as recorded. False (render it)
    /// when there is no record or its directory has gone.
    pub fn keep(&mut self, id: &str) -> bool {
        match self.previous.and_then(|p| p.tenants.get(id)) {
            Some(t) if self.root.join(TENANTS_DIR).join(id).is_dir() => {
                self.next.tenants.insert(id.to_owned(), t.clone());
                self.summary.tenants_skipped += 1;
                true
            }
            _ => false,
        }
    }

    /// Writes the files of one tenant (paths `tenants-out/<id>/…`) and removes files of its
    /// directory that are no longer rendered.
    pub fn tenant(&mut self, id: &str, input: &str, files: &Files) -> Result<(), WriteError> {
        let dir = self.root.join(TENANTS_DIR).join(id);
        let changed = if dir.exists() {
            self.sync_dir(&dir, files)?
        } else {
            self.create_dir(&dir, id, files)?;
            true
        };
        if changed {
            self.summary.tenants_changed.insert(id.to_owned());
        }
        self.next.tenants.insert(
            id.to_owned(),
            TenantState {
                input: input.to_owned(),
                tree: tree_hash(files),
            },
        );
        Ok(())
    }

    /// A new tenant's tree is written into a staging directory renamed into place at the
    /// end: the tree appears whole or not at all. A staging directory left by a crash is
    /// removed by [`Writer::finish`] (its name is no tenant id).
    fn create_dir(&mut self, dir: &Path, id: &str, files: &Files) -> Result<(), WriteError> {
        let staging = self
            .root
            .join(TENANTS_DIR)
            .join(format!(".provisio-staging-{id}"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io("remove", &staging))?;
        }
        let prefix = format!("{TENANTS_DIR}/{id}/");
        for (path, bytes) in files {
            let rel = path.strip_prefix(&prefix).unwrap_or(path);
            let target = staging.join(rel);
            let parent = target.parent().unwrap_or(&staging);
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
            std::fs::write(&target, bytes).map_err(io("write", &target))?;
            self.summary.written.push(path.clone());
        }
        std::fs::rename(&staging, dir).map_err(io("rename into place", dir))?;
        Ok(())
    }

    /// Writes `argocd/`.
    pub fn argocd(&mut self, files: &Files) -> Result<(), WriteError> {
        self.sync_dir(&self.root.join(ARGOCD_DIR), files)?;
        self.next.argocd = tree_hash(files);
        Ok(())
    }

    /// Writes `platform-out/` (the platform tools' tree; empty without `platformTools`, which
    /// removes a former tree: the caller guards against mass removals first).
    pub fn platform(&mut self, files: &Files) -> Result<(), WriteError> {
        self.sync_dir(&self.root.join(PLATFORM_DIR), files)?;
        self.next.platform = if files.is_empty() {
            String::new()
        } else {
            tree_hash(files)
        };
        Ok(())
    }

    /// Makes `dir` hold exactly `files` (root-relative paths); true when anything changed.
    fn sync_dir(&mut self, dir: &Path, files: &Files) -> Result<bool, WriteError> {
        let mut changed = false;
        for (path, bytes) in files {
            let full = self.root.join(path);
            let same = match std::fs::read(&full) {
                Ok(old) => old == *bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(io("read", &full)(e)),
            };
            if same {
                self.summary.unchanged += 1;
            } else {
                write_atomic(&full, bytes)?;
                self.summary.written.push(path.clone());
                changed = true;
            }
        }
        for file in list_files(dir)? {
            let rel = relative(self.root, &file);
            if !files.contains_key(&rel) {
                remove_file(&file)?;
                self.summary.removed.push(rel);
                changed = true;
            }
        }
        remove_empty_dirs(dir)?;
        Ok(changed)
    }

    /// Removes the trees of tenants not in `all_tenants`, writes the state file, and returns
    /// what the run did.
    pub fn finish(mut self, all_tenants: &BTreeSet<String>) -> Result<Summary, WriteError> {
        let tenants_root = self.root.join(TENANTS_DIR);
        for name in list_dirs(&tenants_root)? {
            if !all_tenants.contains(&name) {
                let dir = tenants_root.join(&name);
                for file in list_files(&dir)? {
                    self.summary.removed.push(relative(self.root, &file));
                }
                std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
                self.summary.tenants_removed.insert(name);
            }
        }
        self.next.tenants.retain(|id, _| all_tenants.contains(id));
        if self.previous != Some(&self.next) {
            write_atomic(&self.root.join(STATE_FILE), &self.next.to_bytes())?;
        }
        self.summary.written.sort();
        self.summary.removed.sort();
        Ok(self.summary)
    }
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn remove_file(path: &Path) -> Result<(), WriteError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

/// Names of the directories directly below `dir` (none if it does not exist).
pub fn list_dirs(dir: &Path) -> Result<Vec<String>, WriteError> {
    list_children(dir, |t| t.is_dir())
}

/// Names of the files (not directories) directly below `dir`.
pub fn list_top_files(dir: &Path) -> Result<Vec<String>, WriteError> {
    list_children(dir, |t| !t.is_dir())
}

fn list_children(
    dir: &Path,
    keep: impl Fn(&std::fs::FileType) -> bool,
) -> Result<Vec<String>, WriteError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        if keep(&entry.file_type().map_err(io("list", dir))?) {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Every file below `dir`, recursively, sorted (none if it does not exist).
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("list", &d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &d))?;
            let ty = entry.file_type().map_err(io("list", &d))?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn remove_empty_dirs(dir: &Path) -> Result<(), WriteError> {
    let mut dirs = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
            dirs.push(d);
        }
    }
    // Deepest first; a non-empty directory simply stays.
    for d in dirs.iter().rev() {
        if std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_none()) {
            std::fs::remove_dir(d).map_err(io("remove", d))?;
        }
    }
    Ok(())
}

/// The files below `root/<dir>` with their bytes, keyed by root-relative path.
pub fn read_files(root: &Path, dir: &str) -> Result<Files, WriteError> {
    let mut files = BTreeMap::new();
    for f in list_files(&root.join(dir))? {
        let bytes = std::fs::read(&f).map_err(io("read", &f))?;
        files.insert(relative(root, &f), bytes);
    }
    Ok(files)
}

/// Files of the output root as `generate` writes them: the tenant trees, the platform tree and
/// `argocd/`.
pub fn read_tree(root: &Path) -> Result<Files, WriteError> {
    let mut files = read_files(root, TENANTS_DIR)?;
    files.extend(read_files(root, PLATFORM_DIR)?);
    files.extend(read_files(root, ARGOCD_DIR)?);
    Ok(files)
}

//! Writing the output tree. The only code that creates, replaces or removes files under
//! `<out>/tenants-out/` and `<out>/argocd/`.
//!
//! - A file is written only when its bytes change, through a temporary file in the same
//!   directory renamed over the old one: a crash leaves the old file or the new one, never a
//!   half-written one.
//! - The state file is written last; after a crash the next run sees the old state,
//!   re-renders what it may have missed, and converges.
//! - A tenant directory that is not in the registry is removed (callers guard against mass
//!   removals before calling [`apply`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::state::{STATE_FILE, State, sha256_hex};
use crate::render::{ARGOCD_DIR, Files, Output, TENANTS_DIR};

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

/// What one `apply` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub written: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Tenants whose tree gained, changed or lost a file.
    pub tenants_changed: BTreeSet<String>,
    pub tenants_removed: BTreeSet<String>,
}

impl Summary {
    pub fn is_noop(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }
}

/// What the writer must do: the rendered files of some tenants (others are known to be up to
/// date), every tenant id that must exist, the Argo CD files.
pub struct Change<'a> {
    pub output: &'a Output,
    /// Every tenant of the registry (rendered or skipped as unchanged).
    pub all_tenants: &'a BTreeSet<String>,
    pub previous: Option<&'a State>,
    pub next_inputs: &'a super::state::Inputs,
    /// Compare every rendered file with the disk even when the state records its hash
    /// (repairs hand edits; slower).
    pub verify_disk: bool,
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

fn tenant_of(path: &str) -> Option<&str> {
    path.strip_prefix(TENANTS_DIR)?
        .strip_prefix('/')?
        .split('/')
        .next()
}

/// Applies a change to the output root; returns what was done.
pub fn apply(root: &Path, change: &Change<'_>) -> Result<Summary, WriteError> {
    let mut summary = Summary::default();
    let previous_files = change.previous.map(|s| &s.files);
    let mut next_files: BTreeMap<String, String> = BTreeMap::new();

    // Files of tenants that were not re-rendered stay as recorded.
    if let Some(prev) = previous_files {
        for (path, hash) in prev {
            if let Some(t) = tenant_of(path)
                && change.all_tenants.contains(t)
                && !change.output.tenants.contains_key(t)
            {
                next_files.insert(path.clone(), hash.clone());
            }
        }
    }

    let rendered = change
        .output
        .tenants
        .values()
        .flat_map(|f| f.iter())
        .chain(change.output.argocd.iter());
    for (path, bytes) in rendered {
        let hash = sha256_hex(bytes);
        let full = root.join(path);
        let recorded = previous_files.and_then(|f| f.get(path));
        let same = if recorded == Some(&hash) && !change.verify_disk {
            // Recorded as written with these bytes; trust it unless the file is gone.
            full.is_file()
        } else {
            match std::fs::read(&full) {
                Ok(old) => old == *bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(io("read", &full)(e)),
            }
        };
        if same {
            summary.unchanged += 1;
        } else {
            write_atomic(&full, bytes)?;
            summary.written.push(path.clone());
            if let Some(t) = tenant_of(path) {
                summary.tenants_changed.insert(t.to_owned());
            }
        }
        next_files.insert(path.clone(), hash);
    }

    // Stale files inside re-rendered tenants and in argocd/.
    let mut stale_dirs: Vec<PathBuf> = change
        .output
        .tenants
        .keys()
        .map(|t| root.join(TENANTS_DIR).join(t))
        .collect();
    stale_dirs.push(root.join(ARGOCD_DIR));
    for dir in stale_dirs {
        for file in list_files(&dir)? {
            let rel = relative(root, &file);
            if !next_files.contains_key(&rel) {
                remove_file(&file)?;
                if let Some(t) = tenant_of(&rel) {
                    summary.tenants_changed.insert(t.to_owned());
                }
                summary.removed.push(rel);
            }
        }
        remove_empty_dirs(&dir)?;
    }

    // Tenant trees that are no longer in the registry.
    let tenants_root = root.join(TENANTS_DIR);
    for name in list_dirs(&tenants_root)? {
        if !change.all_tenants.contains(&name) {
            let dir = tenants_root.join(&name);
            for file in list_files(&dir)? {
                summary.removed.push(relative(root, &file));
            }
            std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
            summary.tenants_removed.insert(name);
        }
    }

    let state = State::new(change.next_inputs, next_files);
    if change.previous != Some(&state) {
        write_atomic(&root.join(super::state::STATE_FILE), &state.to_bytes())?;
    }
    summary.written.sort();
    summary.removed.sort();
    Ok(summary)
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
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        if entry.file_type().map_err(io("list", dir))?.is_dir() {
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

/// Files of the output root as `generate` would see them: the tenant trees and `argocd/`.
pub fn read_tree(root: &Path) -> Result<Files, WriteError> {
    let mut files = Files::new();
    for dir in [TENANTS_DIR, ARGOCD_DIR] {
        for f in list_files(&root.join(dir))? {
            let bytes = std::fs::read(&f).map_err(io("read", &f))?;
            files.insert(relative(root, &f), bytes);
        }
    }
    Ok(files)
}

//! Reading the registry directory into [`Sources`] (the only code that reads registry files
//! from disk); parsing and checking are `provisio_core::registry`'s.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use std::collections::BTreeMap;

use crate::io::repo::commit::Committed;
use provisio_core::registry::layout::{
    ENTRY_DIRS, FileKind, NOT_UTF8, PLATFORM_FILE, TIERS_FILE, Unreadable, classify,
};
use provisio_core::registry::{Loaded, Sources, load_sources};

/// Errors reading the registry directory itself (before any file is parsed).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The registry directory or one of its files cannot be read.
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the registry has at `p`, never following a link: the file's text, the marker of an
/// [`Unreadable`] entry, or `None` when nothing is there.
fn entry(p: &Path) -> std::io::Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let t = meta.file_type();
    let unreadable = if t.is_symlink() {
        Unreadable::Symlink(std::fs::read_link(p)?.display().to_string())
    } else if t.is_dir() {
        Unreadable::Directory
    } else if t.is_file() {
        return Ok(Some(match String::from_utf8(std::fs::read(p)?) {
            Ok(text) => text,
            // Kept as a marker: the loader reports it as not UTF-8.
            Err(_) => NOT_UTF8.to_owned(),
        }));
    } else if t.is_fifo() {
        Unreadable::Special("FIFO".to_owned())
    } else if t.is_socket() {
        Unreadable::Special("socket".to_owned())
    } else {
        Unreadable::Special("device".to_owned())
    };
    Ok(Some(unreadable.marker()))
}

/// Reads `platform.yaml`, `tiers.yaml` and every entry of `products/`, `teams/` and `tenants/` below
/// `root`. Nothing is skipped and no link is followed: hidden files, files of other names,
/// directories, links and special files are passed on (as [`Unreadable`] markers where they
/// are not regular files), so the loader reports each with its path.
pub fn read_dir(root: &Path) -> Result<Sources, ReadError> {
    let io = |path: &Path, source| ReadError::Io {
        path: path.display().to_string(),
        source,
    };
    if !root.is_dir() {
        return Err(io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    let mut sources = Sources::new();
    for name in [PLATFORM_FILE, TIERS_FILE] {
        let p = root.join(name);
        if let Some(text) = entry(&p).map_err(|e| io(&p, e))? {
            sources.insert(name.to_owned(), text);
        }
    }
    for dir in ENTRY_DIRS {
        let d = root.join(dir);
        match entry(&d).map_err(|e| io(&d, e))? {
            None => continue,
            Some(marker) if Unreadable::of(&marker) == Some(Unreadable::Directory) => {}
            // A link, a special file or a file where the folder should be: reported, not
            // followed (a file's text would not be reported by the loader: it is no
            // registry path of its own).
            Some(other) => {
                let marker = match Unreadable::of(&other) {
                    Some(u) if u != Unreadable::NotUtf8 => u.marker(),
                    _ => Unreadable::NotAFolder.marker(),
                };
                sources.insert(dir.to_owned(), marker);
                continue;
            }
        }
        let entries = std::fs::read_dir(&d).map_err(|e| io(&d, e))?;
        for e in entries {
            let e = e.map_err(|e| io(&d, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if let Some(text) = entry(&p).map_err(|e| io(&p, e))? {
                sources.insert(format!("{dir}/{name}"), text);
            }
        }
    }
    Ok(sources)
}

/// The registry as a git tree holds it (entries relative to the registry's folder, from
/// [`crate::io::repo::Repo::read_entries_at`] or `read_revision`), read the way [`read_dir`]
/// reads a directory: every entry at a registry path goes to the loader, a link's target or
/// a submodule is never taken for a file's text, and a hidden or misplaced file is reported
/// rather than skipped.
pub fn sources_from_git(entries: BTreeMap<String, Committed>) -> Sources {
    let mut sources = Sources::new();
    for (rel, entry) in entries {
        let registry_path =
            !matches!(classify(&rel), FileKind::Other) || ENTRY_DIRS.contains(&rel.as_str());
        if !registry_path {
            continue;
        }
        let text = match entry {
            Committed::File(bytes) => {
                String::from_utf8(bytes).unwrap_or_else(|_| NOT_UTF8.to_owned())
            }
            Committed::Link(target) => Unreadable::Symlink(target).marker(),
            Committed::Submodule => Unreadable::Submodule.marker(),
        };
        sources.insert(rel, text);
    }
    sources
}

/// Convenience: [`read_dir`] then [`load_sources`].
pub fn load_dir(root: &Path) -> Result<Loaded, ReadError> {
    Ok(load_sources(read_dir(root)?))
}

//! Reading the registry directory into [`Sources`] (the only code that reads registry files
//! from disk); parsing and checking are `provisio_core::registry`'s.

use std::path::Path;

use provisio_core::registry::layout::{ENTRY_DIRS, NOT_UTF8, PLATFORM_FILE, TIERS_FILE};
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

/// Reads `platform.yaml`, `tiers.yaml`, `products/*`, `teams/*` and `tenants/*` below `root`. Files of
/// other names in those folders are read too, so the loader can complain about them.
pub fn read_dir(root: &Path) -> Result<Sources, ReadError> {
    let io = |path: &Path, source| ReadError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut sources = Sources::new();
    for name in [PLATFORM_FILE, TIERS_FILE] {
        let p = root.join(name);
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                sources.insert(name.to_owned(), text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p, e)),
        }
    }
    if !root.is_dir() {
        return Err(io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    for dir in ENTRY_DIRS {
        let d = root.join(dir);
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&d, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io(&d, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().map_err(|e| io(&d, e))?.is_file() {
                continue;
            }
            let p = entry.path();
            let rel = format!("{dir}/{name}");
            match std::fs::read(&p) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => {
                        sources.insert(rel, text);
                    }
                    Err(_) => {
                        // Kept as a marker: the loader reports it as not UTF-8.
                        sources.insert(rel, NOT_UTF8.to_owned());
                    }
                },
                Err(e) => return Err(io(&p, e)),
            }
        }
    }
    Ok(sources)
}

/// Convenience: [`read_dir`] then [`load_sources`].
pub fn load_dir(root: &Path) -> Result<Loaded, ReadError> {
    Ok(load_sources(read_dir(root)?))
}

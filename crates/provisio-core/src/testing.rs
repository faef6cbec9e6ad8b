//! Test support: the bundled example registry as [`Sources`]. Tests may read files; the
//! library may not (this module is compiled for tests only).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use crate::registry::Sources;

/// The example registry at the repository root (`registry/`), read the way the `provisio`
/// crate's reader does (top-level files and the files directly in `products/`, `tenants/`).
pub fn example_sources() -> Sources {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../registry");
    let mut sources = Sources::new();
    for name in ["platform.yaml", "tiers.yaml"] {
        sources.insert(
            name.to_owned(),
            std::fs::read_to_string(root.join(name)).expect("the example registry"),
        );
    }
    for dir in ["products", "tenants"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("the example registry") {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            sources.insert(
                format!("{dir}/{name}"),
                std::fs::read_to_string(entry.path()).expect("a registry file"),
            );
        }
    }
    sources
}

//! git2, for the registry repository and the manifests repository alike.

pub mod commit;
pub mod deliver;
pub mod follow;

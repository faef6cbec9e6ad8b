//! Everything that touches the world outside the process, one module per kind: the registry
//! directory, the output tree, git, HTTP.

pub mod fsx;
pub mod http;
pub mod nudge;
pub mod output;
pub mod registry_dir;
pub mod repo;

//! Everything that touches the world outside the process, one module per kind: the registry
//! directory, the output tree, git, outbound HTTP ([`http`]: the one client configuration)
//! and the one retry policy of every outbound caller ([`retry`]).

pub mod fsx;
pub mod http;
pub mod kube;
pub mod nudge;
pub mod output;
pub mod registry_dir;
pub mod repo;
pub mod retry;

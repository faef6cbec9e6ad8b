//! The operations the commands and services call: load → plan → render → write
//! ([`generate`], [`check`]), the review of a registry change ([`plan`]), and delivery of the
//! output to the manifests repository ([`deliver`]), a person's [`rollback`] of a
//! never-activated tenant, the client of serve's lifecycle reports ([`report`]), a tenant's health-gated
//! [`activate`]ion. Each is a function of its inputs; printing is the caller's.

pub mod activate;
pub mod backup;
pub mod check;
pub mod deliver;
pub mod error;
pub mod generate;
pub mod load;
pub mod plan;
pub mod purge_check;
pub mod report;
pub mod rollback;
pub mod setup;
pub mod sync_failed;
pub mod teardown;

pub use error::PipelineError;

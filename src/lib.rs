//! provisio: renders a tenant registry into GitOps output for Argo CD.
//!
//! The pipeline, one direction: [`registry`] (load + validate) → [`plan`] (derive names and
//! figures per tenant) → [`render`] (typed Kubernetes objects → bytes, pure) → [`output`]
//! (the only module that touches the output tree). See `ARCHITECTURE.md`.

pub mod cli;
pub mod commands;
pub mod delivery;
pub mod diagnostic;
pub mod git;
pub mod intake;
pub mod naming;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod registry;
pub mod render;
pub mod serve;
pub mod setup;
pub mod watch;

//! provisio's pure core: everything that turns registry text into output bytes and billing
//! events into registry edits, with no I/O at all.
//!
//! The pipeline, one direction: [`registry`] (parse + validate) → [`plan`] (derive names and
//! figures per tenant, and the [`plan::setup::SetupSpec`] the setup Jobs read) → [`render`]
//! (typed Kubernetes objects → bytes). [`intake`] decides what a billing event does to the
//! registry; [`lifecycle`] decides what a tenant's Jobs' reports do to it, and which phase (and
//! so which tree) a tenant is in at a given time; [`review`] says what a registry change does to the platform tools (`provisio
//! plan`). The `provisio` crate around this one reads and writes files, talks to git and
//! to servers, and runs the commands. See `ARCHITECTURE.md`.
//!
//! Architecture Invariant: this crate does no I/O and never reads the clock or the
//! environment. Its `Cargo.toml` has no I/O crate and chrono without `clock`; `clippy.toml`
//! bans `std::fs`, `std::env`, `std::net`, `std::process` and the system clocks.

pub mod consumers;
pub mod diagnostic;
pub mod intake;
pub mod lifecycle;
pub mod naming;
pub mod plan;
pub mod registry;
pub mod render;
pub mod review;
pub mod strict_json;

#[cfg(test)]
mod testing;

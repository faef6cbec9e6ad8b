//! The tenant lifecycle, as pure functions: which phase a tenant is in at a given time
//! ([`phase`]: the status, refined by the clock for the one transition the clock makes, the
//! deletion date), what a Job's report does to a tenant file ([`decide`]: record, repeat or
//! refuse), the transitions people and billing make ([`rollback`], [`reinstate`]), the
//! reports' wire format ([`report`]) and their signature ([`signature`]).
//!
//! Architecture Invariant: nothing here reads the clock; `now` is always a parameter (the
//! generator's `--now`, serve's clock). Nothing here knows HTTP or git: `serve` maps a
//! [`Refusal`] to a status, the intake turns a [`Change`] into file text.
//!
//! The state machine (docs/lifecycle.md):
//!
//! ```text
//! provisioning ─activated─▶ active ─cancelled─▶ deprovisioning ─(deletion date)─▶ due
//!   │  ▲                      ▲                  │ reinstated (before the date)    │ backup-completed
//!   failed ─┘ (rollback)      └──────────────────┘                                 ▼
//!   └──────────────────────────────────────────────────────────────────▶ purging: workloads → teardown → namespace
//!                                                                                   │ namespace-removed
//!                                                                                   ▼
//!                                                                                removed (tombstone)
//! ```

pub mod phase;
mod refusal;
pub mod report;
pub mod signature;
mod transition;
pub mod view;

#[cfg(test)]
mod tests;

pub use phase::{Phase, next_deadline, phase};
pub use refusal::Refusal;
pub use report::{Removed, Report, ReportBody, ReportKind};
pub use transition::{Change, Decision, Policy, decide, reinstate, rollback};
pub use view::LifecycleView;

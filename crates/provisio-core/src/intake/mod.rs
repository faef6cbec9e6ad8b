//! Intake: billing events → registry changes. Pure: given the registry as it is committed, a
//! checked [`Event`] and the current time (a parameter; this module never reads the clock),
//! [`State::apply`] decides what the event does ([`Applied`]: created, changed or unchanged,
//! the tenant as it now is, and the new text of `tenants/<id>.yaml`) or why it is refused
//! ([`IntakeError`]). Every candidate file is validated by the registry loader's own pieces:
//! the webhook is just another author.
//!
//! Architecture Invariant: nothing here knows HTTP. Status codes and response bodies are
//! `provisio serve`'s mapping of these decisions.
//!
//! - [`event`]: raw payload bytes → a checked [`Event`].
//! - `decide`: the [`State`] of the registry and the decision for one event.
//! - `tenant_file`: the text of a new tenant file, and edits of an existing one.
//! - `error`: why an event is refused, why the state cannot be built.

mod decide;
mod error;
pub mod event;
mod tenant_file;

pub use decide::{
    Applied, CancellationDates, Change, DEFAULT_GRACE_DAYS, EVENT_TRAILER, EventRecord, Outcome,
    REPORT_TRAILER, ReportRecord, State, Submission, TenantView, deletion_date,
};
pub use error::{IntakeError, StateError};
pub use event::{Event, EventBody, EventKind, parse};
pub use tenant_file::{NewTenant, render_new_tenant, timestamp, with_lifecycle_change};

//! Why a report (or a lifecycle transition asked by a person or the billing system) is not
//! applied: a stable machine code, a message in the API's terms, the offending field.

/// A refusal. `code` is one of: `malformed_json`, `invalid_field`, `unknown_kind` (the
/// report is not one `serve` takes), `invalid_transition` (the tenant's state does not allow
/// it), `not_due` (before the deletion date), `deletion_due` (a reinstatement after it),
/// `conflicting_report` (another backup is already recorded), `tenant_deprovisioning` (the
/// tenant is being removed), `refused` (a person's command the guard refuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl Refusal {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// A conflict with the tenant's state (HTTP 409 for serve, exit 4 for a person).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.code,
            "invalid_transition"
                | "not_due"
                | "deletion_due"
                | "conflicting_report"
                | "tenant_deprovisioning"
                | "refused"
        )
    }
}

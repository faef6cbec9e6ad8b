//! Why the intake refuses an event ([`IntakeError`]) or cannot start ([`StateError`]). The
//! errors say what is wrong and where in the payload; which protocol answer that becomes
//! (an HTTP status, for `provisio serve`) is the caller's business.

/// Why an event is not applied. Each variant has a stable machine code ([`Self::code`]) and,
/// where it concerns one payload field, that field's dotted path ([`Self::field`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntakeError {
    /// The body is not JSON at all (or not the JSON shape of an event).
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// A payload field is missing, of the wrong type or has a value the intake refuses.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// The plan names a tier the registry does not have.
    #[error("unknown tier `{tier}`; the registry has {known}")]
    UnknownTier { tier: String, known: String },
    /// The metadata names a region the platform does not have.
    #[error("unknown region `{region}`; the registry has {known}")]
    UnknownRegion { region: String, known: String },
    /// An update or cancellation for a subscription no tenant has.
    #[error("no tenant has subscription `{0}`")]
    UnknownSubscription(String),
    /// The event contradicts the registry or an earlier event (taken id, subscription or
    /// domain; a reused event id; a tier change while deprovisioning). `code` says which.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        field: Option<&'static str>,
        message: String,
    },
    /// The region cannot take another tenant now (its ApplicationSet shards are full): a
    /// capacity problem of the platform, not a fault of the event; retried later, it succeeds
    /// once the platform team made room.
    #[error("{0}")]
    NoCapacity(String),
    /// A lifecycle report names a tenant the registry does not have.
    #[error("no tenant `{0}` in the registry")]
    UnknownTenant(String),
    /// A lifecycle report, or a lifecycle transition asked by an event, is refused: its
    /// `code` says why (`invalid_transition`, `not_due`, `deletion_due`, …).
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::Refusal),
    /// The registry loader refused the candidate tenant file.
    #[error("the registry rejects the tenant file: {0}")]
    Rejected(String),
    /// The registry as committed cannot be read back (a bug or a hand edit gone wrong).
    #[error("{0}")]
    Internal(String),
}

impl IntakeError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    pub(crate) fn invalid_opt(field: Option<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The stable machine code of the failure class.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::Invalid { .. } => "invalid_field",
            Self::UnknownTier { .. } => "unknown_tier",
            Self::UnknownRegion { .. } => "unknown_region",
            Self::UnknownSubscription(_) => "unknown_subscription",
            Self::Conflict { code, .. } => code,
            Self::NoCapacity(_) => "no_capacity",
            Self::UnknownTenant(_) => "unknown_tenant",
            Self::Lifecycle(r) => r.code,
            Self::Rejected(_) => "registry_rejected",
            Self::Internal(_) => "internal",
        }
    }

    /// The dotted path of the payload field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => field.as_deref(),
            Self::UnknownTier { .. } => Some("data.plan.tier"),
            Self::UnknownRegion { .. } | Self::NoCapacity(_) => Some("data.metadata.region"),
            Self::UnknownSubscription(_) => Some("data.subscription_id"),
            Self::Conflict { field, .. } => *field,
            Self::Lifecycle(r) => r.field.as_deref(),
            _ => None,
        }
    }
}

/// The registry could not be loaded when the intake started (or reloaded it).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The committed registry has diagnostics: every one of them rendered (`rendered`), and
    /// each on one line (`file:line:column: message`, for logs and HTTP answers).
    #[error("the registry is invalid:\n{rendered}")]
    Invalid {
        rendered: String,
        lines: Vec<String>,
    },
}

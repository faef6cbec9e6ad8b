//! The intake's HTTP errors: one JSON shape, `{"error": {"code", "message", "field"}}`, a
//! stable machine `code` per failure class and the offending payload `field` when there is one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use provisio_core::intake::IntakeError;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// `Retry-After` in seconds (503 answers: when trying again makes sense).
    pub retry_after: Option<u32>,
}

/// `Retry-After` of a 503 caused by something transient on our side (a failed commit, a
/// stopped writer, a registry being fixed).
pub const RETRY_SOON_SECS: u32 = 30;
/// `Retry-After` of a 503 that needs the platform team (a full region).
pub const RETRY_CAPACITY_SECS: u32 = 3600;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// The intake cannot take the event now (the writer stopped, the commit failed, the
    /// registry at HEAD does not validate): nothing was recorded, the sender should retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(RETRY_SOON_SECS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message, "field": self.field}})
    }
}

/// The HTTP status of each refusal of the intake: 400 for a body that is not JSON, 422 for
/// a payload the registry cannot take, 404 for an unknown subscription, 409 for a conflict
/// with the registry or an earlier event (or a lifecycle transition the tenant's state does
/// not allow), 404 for an unknown tenant, 503 for a region without room (ours to fix, so
/// the sender retries), 500 for a registry that cannot be read back.
pub fn intake_status(e: &IntakeError) -> StatusCode {
    match e {
        IntakeError::MalformedJson(_) => StatusCode::BAD_REQUEST,
        IntakeError::Invalid { .. }
        | IntakeError::UnknownTier { .. }
        | IntakeError::UnknownRegion { .. }
        | IntakeError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        IntakeError::UnknownSubscription(_) | IntakeError::UnknownTenant(_) => {
            StatusCode::NOT_FOUND
        }
        IntakeError::Conflict { .. } => StatusCode::CONFLICT,
        IntakeError::Lifecycle(r) if r.is_conflict() => StatusCode::CONFLICT,
        IntakeError::Lifecycle(r) if r.code == "malformed_json" => StatusCode::BAD_REQUEST,
        IntakeError::Lifecycle(_) => StatusCode::UNPROCESSABLE_ENTITY,
        IntakeError::NoCapacity(_) => StatusCode::SERVICE_UNAVAILABLE,
        IntakeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<&IntakeError> for ApiError {
    fn from(e: &IntakeError) -> Self {
        ApiError {
            status: intake_status(e),
            code: e.code(),
            message: e.to_string(),
            field: e.field().map(str::to_owned),
            retry_after: matches!(e, IntakeError::NoCapacity(_)).then_some(RETRY_CAPACITY_SECS),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"provisio\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_intake_refusal_has_its_status_code_and_field() {
        let cases = [
            (
                IntakeError::MalformedJson("eof".into()),
                400,
                "malformed_json",
            ),
            (
                IntakeError::Invalid {
                    field: Some("data.customer.email".into()),
                    message: "not an email".into(),
                },
                422,
                "invalid_field",
            ),
            (
                IntakeError::UnknownTier {
                    tier: "gold".into(),
                    known: "`premium`".into(),
                },
                422,
                "unknown_tier",
            ),
            (
                IntakeError::UnknownRegion {
                    region: "mars".into(),
                    known: "`eu-west`".into(),
                },
                422,
                "unknown_region",
            ),
            (
                IntakeError::Rejected("bad".into()),
                422,
                "registry_rejected",
            ),
            (
                IntakeError::UnknownSubscription("sub_x".into()),
                404,
                "unknown_subscription",
            ),
            (
                IntakeError::Conflict {
                    code: "domain_collision",
                    field: Some("data.customer.name"),
                    message: "taken".into(),
                },
                409,
                "domain_collision",
            ),
            (IntakeError::NoCapacity("full".into()), 503, "no_capacity"),
            (
                IntakeError::UnknownTenant("t-x".into()),
                404,
                "unknown_tenant",
            ),
            (
                IntakeError::Lifecycle(provisio_core::lifecycle::Refusal {
                    code: "not_due",
                    message: "the deletion date has not passed".into(),
                    field: None,
                }),
                409,
                "not_due",
            ),
            (
                IntakeError::Lifecycle(provisio_core::lifecycle::Refusal {
                    code: "unknown_kind",
                    message: "unknown kind".into(),
                    field: Some("kind".into()),
                }),
                422,
                "unknown_kind",
            ),
            (IntakeError::Internal("oops".into()), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from(&e);
            assert_eq!((api.status.as_u16(), api.code), (status, code), "{e:?}");
            assert_eq!(api.field.as_deref(), e.field());
            assert_eq!(api.message, e.to_string());
            assert_eq!(api.retry_after.is_some(), status == 503, "{e:?}");
        }
    }
}

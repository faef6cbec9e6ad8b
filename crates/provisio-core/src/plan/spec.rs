//! What every Job spec shares: the error a Job refuses a spec with, the checks of the values
//! that reach a server or a URL, where a lifecycle Job reports ([`ReportTarget`]) and the
//! archive of final backups ([`Archive`]). A leaf of `plan`: [`super::setup`] and
//! [`super::lifecycle`] build on it.

use serde::{Deserialize, Serialize};

use super::TenantPlan;
use crate::registry::lifecycle_rules::url_problem;
use crate::{consumers, naming};

/// Route prefix of the lifecycle API on `serve`.
pub const LIFECYCLE_ROUTE: &str = "/api/v1/lifecycle/tenants";
/// Format version of every lifecycle spec; a Job refuses a spec it does not know.
pub const LIFECYCLE_SPEC_VERSION: u32 = 1;

/// A spec that setup must not act on: which value, and what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct SpecError {
    pub what: String,
    pub reason: String,
}

impl SpecError {
    pub fn new(what: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

pub(crate) fn check(ok: bool, what: &str, value: &str, expected: &str) -> Result<(), SpecError> {
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            format!("{what} `{}`", value.escape_default()),
            format!("expected {expected}"),
        ))
    }
}

pub fn check_host(host: &str) -> Result<(), SpecError> {
    match consumers::host_problem(host) {
        None => Ok(()),
        Some(why) => Err(SpecError::new(
            format!("host `{}`", host.escape_default()),
            format!("it {why}"),
        )),
    }
}

pub fn check_key(key: &str) -> Result<(), SpecError> {
    match consumers::secret_key_problem(key) {
        None if !key.is_empty() => Ok(()),
        None => Err(SpecError::new("secret-store key ``", "it is empty")),
        Some(why) => Err(SpecError::new(
            format!("secret-store key `{}`", key.escape_default()),
            format!("it {why}"),
        )),
    }
}

/// Where a Job reports, and the secret-store key holding its tenant's report key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReportTarget {
    /// `<lifecycle.reports.url>/api/v1/lifecycle/tenants/<id>/reports`.
    pub url: String,
    /// `<keyPrefix>/<id>/report`: `{"tenant": …, "key": <hex>}`.
    pub key_secret: String,
}

impl ReportTarget {
    pub fn of(plan: &TenantPlan<'_>) -> Self {
        ReportTarget {
            url: report_url(&plan.platform.lifecycle.reports.url.value, plan.id),
            key_secret: plan.report_remote_key.clone(),
        }
    }

    /// The lifecycle view's URL (`GET`): the report URL without `/reports`.
    pub fn view_url(&self) -> &str {
        self.url.strip_suffix("/reports").unwrap_or(&self.url)
    }

    pub fn validate(&self, tenant: &str) -> Result<(), SpecError> {
        let expected_tail = format!("{LIFECYCLE_ROUTE}/{tenant}/reports");
        if !self.url.ends_with(&expected_tail) {
            return Err(SpecError::new(
                format!("report URL `{}`", self.url.escape_default()),
                format!("expected a URL ending in `{expected_tail}`"),
            ));
        }
        if let Some(why) = url_problem(&self.url, true) {
            return Err(SpecError::new(
                format!("report URL `{}`", self.url.escape_default()),
                format!("it {why}"),
            ));
        }
        check_key(&self.key_secret)
    }
}

/// The report URL of a tenant, given serve's base URL.
pub fn report_url(base: &str, tenant: &str) -> String {
    format!(
        "{}{LIFECYCLE_ROUTE}/{tenant}/reports",
        base.trim_end_matches('/')
    )
}

/// The archive bucket (`lifecycle.archive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Archive {
    pub bucket: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `<tenant>/`: every backup of the tenant is below it.
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `manifest.json` is always readable at once.
    pub manifest_storage_class: String,
}

impl Archive {
    pub fn of(plan: &TenantPlan<'_>) -> Self {
        let a = &plan.platform.lifecycle.archive;
        Archive {
            bucket: a.bucket.value.clone(),
            region: a.region.clone(),
            endpoint: a.endpoint.as_ref().map(|e| e.value.clone()),
            prefix: format!("{}/", plan.id),
            storage_class: a.storage_class.as_ref().map(|s| s.value.clone()),
            manifest_storage_class: "STANDARD".to_owned(),
        }
    }

    pub fn validate(&self, tenant: &str) -> Result<(), SpecError> {
        if let Some(why) = consumers::bucket_problem(&self.bucket) {
            return Err(SpecError::new(
                format!("archive bucket `{}`", self.bucket.escape_default()),
                format!("it {why}"),
            ));
        }
        if self.prefix != format!("{tenant}/") {
            return Err(SpecError::new(
                "archive prefix",
                format!("expected `{tenant}/`"),
            ));
        }
        if let Some(e) = &self.endpoint {
            check_url("archive endpoint", e, true)?;
        }
        Ok(())
    }
}

pub(crate) fn check_version(what: &str, version: u32) -> Result<(), SpecError> {
    if version == LIFECYCLE_SPEC_VERSION {
        Ok(())
    } else {
        Err(SpecError::new(
            what,
            format!("version {version} is not supported (expected {LIFECYCLE_SPEC_VERSION})"),
        ))
    }
}

pub(crate) fn check_tenant(tenant: &str) -> Result<(), SpecError> {
    match naming::check_dns_name(tenant, naming::MAX_TENANT_ID_LEN) {
        None => Ok(()),
        Some(why) => Err(SpecError::new(format!("tenant id `{tenant}`"), why)),
    }
}

pub(crate) fn check_label(what: &str, name: &str) -> Result<(), SpecError> {
    if naming::is_dns1123_label(name) {
        Ok(())
    } else {
        Err(SpecError::new(
            format!("{what} `{}`", name.escape_default()),
            "expected a DNS-1123 label",
        ))
    }
}

pub(crate) fn check_url(what: &str, url: &str, http_in_cluster: bool) -> Result<(), SpecError> {
    match url_problem(url, http_in_cluster) {
        None => Ok(()),
        Some(why) => Err(SpecError::new(
            format!("{what} `{}`", url.escape_default()),
            format!("it {why}"),
        )),
    }
}

/// Parses and validates a spec of type `T`.
pub(crate) fn parse_spec<T: serde::de::DeserializeOwned>(
    what: &str,
    json: &str,
) -> Result<T, SpecError> {
    serde_json::from_str(json).map_err(|e| SpecError::new(what, e.to_string()))
}

/// Pretty JSON ending in a newline (the ConfigMaps' `spec.json`).
pub fn pretty<T: Serialize>(spec: &T) -> String {
    let mut text = serde_json::to_string_pretty(spec).expect("plain data serializes");
    text.push('\n');
    text
}

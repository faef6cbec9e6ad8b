//! The client of the websites-service (the seed's phase 9 and its offboarding "soft delete"):
//! the tenant's own `websites` product, reached in its namespace with the bearer token
//! `setup credentials` stored (`<keyPrefix>/<tenant>/internal-api`). Every request goes through
//! `io::http` under the one retry policy. What the seed shows is the `POST`; the look-up
//! (`GET <path>?domain=`, answering a list or `{"data": list}`) and `PATCH <path>/<id>` with
//! `{"status"}` are the assumptions docs/lifecycle.md names.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Change, Report, SetupError, gave_up, refused};
use crate::io::http;
use crate::io::retry::Policy;
use provisio_core::plan::lifecycle::WebsiteBody;

const SERVICE: &str = "websites-service";

/// One website record, as the service lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The service's id (a number or a string), kept as a string.
    pub id: String,
    pub domain: String,
    pub tenant_id: String,
    pub status: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Listing {
    Plain(Vec<Value>),
    Wrapped { data: Vec<Value> },
}

/// A connection to one tenant's websites-service.
pub struct Client {
    agent: ureq::Agent,
    /// `http://<product>.<namespace>.svc.cluster.local:<port>/api/v1/websites`.
    url: String,
    bearer: String,
    retry: Policy,
}

impl Client {
    pub fn new(url: &str, token: &str, retry: Policy) -> Self {
        Client {
            agent: http::agent(Duration::from_secs(30)),
            url: url.trim_end_matches('/').to_owned(),
            bearer: format!("Bearer {token}"),
            retry,
        }
    }

    fn check_auth(&self, action: &str, r: &http::Response) -> Result<(), SetupError> {
        if matches!(r.status, 401 | 403) {
            return Err(SetupError::Refused {
                service: SERVICE,
                action: action.to_owned(),
                detail: format!(
                    "HTTP {}: the service refused the tenant's token (the secret store and the service's INTERNAL_SERVICE_TOKEN disagree)",
                    r.status
                ),
            });
        }
        Ok(())
    }

    /// The records of `domain` that belong to `tenant`.
    pub fn lookup(&self, domain: &str, tenant: &str) -> Result<Vec<Record>, SetupError> {
        let action = format!("list the websites of {domain}");
        let url = format!("{}?domain={}", self.url, http::seg(domain));
        let r = http::send(&self.retry, &action, || {
            self.agent
                .get(&url)
                .header("authorization", &self.bearer)
                .header("accept", "application/json")
                .call()
        })
        .map_err(|e| gave_up(SERVICE, &self.url, &action, e))?;
        self.check_auth(&action, &r)?;
        if r.status != 200 {
            return Err(refused(SERVICE, &action, &r));
        }
        let listing: Listing = r.json().map_err(|e| SetupError::Refused {
            service: SERVICE,
            action: action.clone(),
            detail: format!("expected a list of websites ({e}): {}", r.excerpt()),
        })?;
        let (Listing::Plain(items) | Listing::Wrapped { data: items }) = listing;
        let text = |v: &Value, k: &str| match &v[k] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        Ok(items
            .iter()
            .map(|v| Record {
                id: text(v, "id"),
                domain: text(v, "domain"),
                tenant_id: text(v, "tenant_id"),
                status: text(v, "status"),
            })
            .filter(|r| r.domain == domain && r.tenant_id == tenant && !r.id.is_empty())
            .collect())
    }

    /// Sets the status of record `id`.
    pub fn set_status(&self, id: &str, status: &str) -> Result<(), SetupError> {
        let action = format!("set website {id} to {status}");
        let url = format!("{}/{}", self.url, http::seg(id));
        let body = json!({ "status": status }).to_string();
        let r = http::send(&self.retry, &action, || {
            self.agent
                .patch(&url)
                .header("authorization", &self.bearer)
                .header("content-type", "application/json")
                .send(body.as_bytes())
        })
        .map_err(|e| gave_up(SERVICE, &self.url, &action, e))?;
        self.check_auth(&action, &r)?;
        if !r.ok() {
            return Err(refused(SERVICE, &action, &r));
        }
        Ok(())
    }
}

/// `website-status`: the tenant's one website record gets `status`; `id`, when activation
/// recorded it, must be that record. Unchanged when it already has it.
pub fn set_status(
    client: &Client,
    tenant: &str,
    domain: &str,
    id: Option<&str>,
    status: &str,
) -> Result<Report, SetupError> {
    let records = client.lookup(domain, tenant)?;
    let what = format!("website {domain}");
    let record = match (id, records.as_slice()) {
        (Some(id), _) => records.iter().find(|r| r.id == id).ok_or_else(|| {
            SetupError::invalid(
                what.clone(),
                format!(
                    "the record {id} activation recorded is not among the service's records of tenant {tenant} ({})",
                    ids(&records)
                ),
            )
        })?,
        (None, [one]) => one,
        (None, []) => {
            return Err(SetupError::invalid(
                what,
                format!("the websites-service has no record of tenant {tenant}: activation creates it"),
            ));
        }
        (None, many) => {
            return Err(SetupError::invalid(
                what,
                format!(
                    "{} website records of tenant {tenant} ({}): resolve by hand, provisio never guesses",
                    many.len(),
                    ids(many)
                ),
            ));
        }
    };
    let mut report = Report::default();
    if record.status == status {
        report.record(
            format!("{what} ({}) {status}", record.id),
            Change::Unchanged,
        );
    } else {
        client.set_status(&record.id, status)?;
        report.record(format!("{what} ({}) {status}", record.id), Change::Updated);
    }
    Ok(report)
}

fn ids(records: &[Record]) -> String {
    if records.is_empty() {
        return "none".to_owned();
    }
    records
        .iter()
        .map(|r| format!("id {}", r.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`ensure_active`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    pub id: String,
    pub change: Change,
}

impl Client {
    /// `POST`s `body` once. `None` when the answer was lost (a transport error or a 5xx after
    /// sending): the record may exist, so the caller looks up again; a POST is never retried.
    pub fn create(&self, body: &WebsiteBody) -> Result<Option<String>, SetupError> {
        let action = format!("create the website of {}", body.domain);
        let json = serde_json::to_string(body).expect("the record serializes");
        let once = Policy::new(1, Duration::from_millis(1));
        let r = match http::send(&once, &action, || {
            self.agent
                .post(&self.url)
                .header("authorization", &self.bearer)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .send(json.as_bytes())
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.error, "{action}: answer lost; looking the record up again");
                return Ok(None);
            }
        };
        self.check_auth(&action, &r)?;
        if !r.ok() {
            return Err(refused(SERVICE, &action, &r));
        }
        let answer: Value = r.json().map_err(|e| SetupError::Refused {
            service: SERVICE,
            action: action.clone(),
            detail: format!("expected the created record ({e}): {}", r.excerpt()),
        })?;
        let record = if answer["data"].is_object() {
            &answer["data"]
        } else {
            &answer
        };
        match &record["id"] {
            Value::String(s) if !s.is_empty() => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            _ => Err(SetupError::Refused {
                service: SERVICE,
                action,
                detail: format!("the created record has no id: {}", r.excerpt()),
            }),
        }
    }
}

/// Activation's record (seed phase 9), idempotent: looked up first; created once when there
/// is none (a lost answer is followed by a look-up, never a second POST); an existing one is
/// reused and set `active`; two or more are refused (resolved by hand).
pub fn ensure_active(client: &Client, body: &WebsiteBody) -> Result<Ensured, SetupError> {
    let mut posted = false;
    loop {
        let records = client.lookup(&body.domain, &body.tenant_id)?;
        match records.as_slice() {
            [] if !posted => {
                posted = true;
                if let Some(id) = client.create(body)? {
                    return Ok(Ensured {
                        id,
                        change: Change::Created,
                    });
                }
            }
            [] => {
                return Err(SetupError::Refused {
                    service: SERVICE,
                    action: format!("create the website of {}", body.domain),
                    detail: "the answer to the POST was lost and no record appeared: run again"
                        .to_owned(),
                });
            }
            [one] => {
                let change = if one.status == "active" {
                    Change::Unchanged
                } else {
                    client.set_status(&one.id, "active")?;
                    Change::Updated
                };
                return Ok(Ensured {
                    id: one.id.clone(),
                    change: if posted { Change::Created } else { change },
                });
            }
            many => {
                return Err(SetupError::invalid(
                    format!("website {}", body.domain),
                    format!(
                        "{} website records of tenant {} ({}): resolve by hand, provisio never guesses",
                        many.len(),
                        body.tenant_id,
                        ids(many)
                    ),
                ));
            }
        }
    }
}

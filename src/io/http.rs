//! A small JSON-over-HTTP client for the management APIs setup talks to (RabbitMQ), with
//! retries on transport errors, 429 and 5xx, and errors that name the service and action.

use std::time::Duration;

use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::setup::{Attempt, Retry, SetupError};

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded (`/` included, so a name can never add a segment).
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        service: &'static str,
        action: &str,
    ) -> Result<T, SetupError> {
        serde_json::from_str(&self.body).map_err(|e| SetupError::Refused {
            service,
            action: action.to_owned(),
            detail: format!("unexpected answer ({e}): {}", truncate(&self.body)),
        })
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(300) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A management API at `base` (`http://host:port/api`) with basic authentication.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
    service: &'static str,
    retry: Retry,
}

#[derive(Debug, Clone, Copy)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Client {
    pub fn new(
        service: &'static str,
        base: String,
        user: &str,
        password: &str,
        retry: Retry,
    ) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Client {
            agent: config.into(),
            base,
            authorization: format!("Basic {token}"),
            service,
            retry,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request, retrying transport errors, 429 and 5xx; any other status is
    /// returned for the caller to judge.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, SetupError> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method:?} {path}");
        let result = self.retry.run(&what, || {
            let sent = match (method, body) {
                (Method::Get, _) => self
                    .agent
                    .get(&url)
                    .header("Authorization", &self.authorization)
                    .call(),
                (Method::Delete, _) => self
                    .agent
                    .delete(&url)
                    .header("Authorization", &self.authorization)
                    .call(),
                (Method::Put, b) => self
                    .agent
                    .put(&url)
                    .header("Authorization", &self.authorization)
                    .send_json(b.unwrap_or(&serde_json::Value::Null)),
                (Method::Post, b) => self
                    .agent
                    .post(&url)
                    .header("Authorization", &self.authorization)
                    .send_json(b.unwrap_or(&serde_json::Value::Null)),
            };
            let mut resp = sent.map_err(|e| Attempt::Transient(TransportOr::Transport(e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .read_to_string()
                .map_err(|e| Attempt::Transient(TransportOr::Transport(e)))?;
            let r = Response { status, body };
            if status == 429 || status >= 500 {
                Err(Attempt::Transient(TransportOr::Status(r)))
            } else {
                Ok(r)
            }
        });
        match result {
            Ok(r) => Ok(r),
            Err((TransportOr::Transport(e), attempts)) => Err(SetupError::Unreachable {
                service: self.service,
                endpoint: self.base.clone(),
                attempts,
                source: Box::new(e),
            }),
            Err((TransportOr::Status(r), attempts)) => Err(SetupError::Refused {
                service: self.service,
                action: format!("answer {what} (after {attempts} attempt(s))"),
                detail: format!("HTTP {}: {}", r.status, truncate(&r.body)),
            }),
        }
    }

    /// Sends a request that must succeed (2xx).
    pub fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        action: &str,
    ) -> Result<Response, SetupError> {
        let r = self.send(method, path, body)?;
        if r.ok() {
            Ok(r)
        } else {
            Err(self.refused(action, &r))
        }
    }

    pub fn refused(&self, action: &str, r: &Response) -> SetupError {
        SetupError::Refused {
            service: self.service,
            action: action.to_owned(),
            detail: format!("HTTP {}: {}", r.status, truncate(&r.body)),
        }
    }
}

enum TransportOr {
    Transport(ureq::Error),
    Status(Response),
}

impl std::fmt::Display for TransportOr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportOr::Transport(e) => write!(f, "{e}"),
            TransportOr::Status(r) => write!(f, "HTTP {}", r.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_add_path_parts() {
        assert_eq!(seg("a/b"), "a%2Fb");
        assert_eq!(seg("abc-corp.events"), "abc-corp.events");
        assert_eq!(seg("../x"), "..%2Fx");
        assert_eq!(seg("order.*"), "order.%2A");
    }
}

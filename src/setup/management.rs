//! A JSON-over-HTTP client for the management APIs setup talks to (RabbitMQ's), with basic
//! authentication: requests go through [`crate::io::http`] (one agent configuration, one
//! retry policy), and errors name the service and the action.

use std::time::Duration;

use base64::Engine;

use super::SetupError;
use crate::io::http::{self, Response};
use crate::io::retry::Policy;

/// The longest one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A management API at `base` (`http://host:port/api`) with basic authentication.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
    service: &'static str,
    retry: Policy,
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
        retry: Policy,
    ) -> Client {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Client {
            agent: http::agent(TIMEOUT),
            base,
            authorization: format!("Basic {token}"),
            service,
            retry,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request, retrying what [`http::is_transient`] calls transient; any other
    /// status is returned for the caller to judge.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, SetupError> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method:?} {path}");
        let json = body.unwrap_or(&serde_json::Value::Null);
        http::send(&self.retry, &what, || {
            let auth = ("Authorization", self.authorization.as_str());
            match method {
                Method::Get => self.agent.get(&url).header(auth.0, auth.1).call(),
                Method::Delete => self.agent.delete(&url).header(auth.0, auth.1).call(),
                Method::Put => self.agent.put(&url).header(auth.0, auth.1).send_json(json),
                Method::Post => self.agent.post(&url).header(auth.0, auth.1).send_json(json),
            }
        })
        .map_err(|e| super::gave_up(self.service, &self.base, &what, e))
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
        super::refused(self.service, action, r)
    }
}

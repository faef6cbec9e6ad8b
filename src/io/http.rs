//! The one outbound HTTP configuration. [`agent`] builds every `ureq` agent provisio uses
//! (connect and overall timeouts, Mozilla's TLS roots, `User-Agent: provisio/<version>`,
//! statuses returned rather than raised); [`send`] sends one request under an
//! [`io::retry::Policy`](crate::io::retry::Policy), retrying what [`is_transient`] calls
//! transient (connection errors, timeouts, 408, 425, 429, 500, 502, 503, 504) and nothing else.
//! Callers: setup's management and AWS clients (`setup::management`, `setup::aws`, which
//! the secret store uses), the websites-service client (`setup::websites`), the Kubernetes API
//! reader (`io::kube`), the lifecycle reports' client (`ops::report`) and the Argo CD nudge
//! (`io::nudge`).

use std::fmt;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::io::retry::{GaveUp, Policy};

/// What every request says it is.
pub const USER_AGENT: &str = concat!("provisio/", env!("CARGO_PKG_VERSION"));
/// The longest wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// An agent with provisio's configuration; `timeout` bounds a whole request (connect, send,
/// answer), the connection itself at most [`CONNECT_TIMEOUT`].
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .timeout_global(Some(timeout))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::WebPki)
                .build(),
        )
        .user_agent(USER_AGENT)
        .build()
        .into()
}

/// An agent like [`agent`] that trusts the certificates of `ca_pem` (PEM) instead of Mozilla's
/// roots: the Kubernetes API server's own CA (`io::kube`).
pub fn agent_trusting(timeout: Duration, ca_pem: &[u8]) -> Result<ureq::Agent, ureq::Error> {
    let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(ca_pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .timeout_global(Some(timeout))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
                .build(),
        )
        .user_agent(USER_AGENT)
        .build()
        .into())
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

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.body)
    }

    /// The start of the body, for error messages.
    pub fn excerpt(&self) -> &str {
        match self.body.char_indices().nth(400) {
            Some((i, _)) => &self.body[..i],
            None => &self.body,
        }
    }
}

/// Why a request did not get an answer to judge.
#[derive(Debug)]
pub enum Failure {
    /// No answer: connection, TLS, timeout, or a request that could not be built.
    Transport(ureq::Error),
    /// An answer with a transient status, still there when the attempts were spent.
    Status(Response),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Transport(e) => write!(f, "{e}"),
            Failure::Status(r) => write!(f, "HTTP {}", r.status),
        }
    }
}

/// Whether an answer with this status is worth another try.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a failure is worth another try: connection errors, timeouts and the transient
/// statuses; never a TLS, configuration or protocol error.
pub fn is_transient(f: &Failure) -> bool {
    match f {
        Failure::Status(r) => is_transient_status(r.status),
        Failure::Transport(e) => matches!(
            e,
            ureq::Error::Io(_)
                | ureq::Error::Timeout(_)
                | ureq::Error::HostNotFound
                | ureq::Error::ConnectionFailed
                | ureq::Error::ConnectProxyFailed(_)
                | ureq::Error::BodyStalled
        ),
    }
}

/// Sends the request `call` makes (once per attempt: a signature may depend on the time),
/// reads the answer, and retries under `policy` while [`is_transient`] says so. A
/// non-transient status is an answer for the caller to judge; a transient one that outlived
/// the attempts is [`Failure::Status`].
pub fn send(
    policy: &Policy,
    what: &str,
    mut call: impl FnMut() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Response, GaveUp<Failure>> {
    policy.run(what, is_transient, || {
        let mut resp = call().map_err(Failure::Transport)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(Failure::Transport)?;
        let r = Response { status, body };
        if is_transient_status(status) {
            Err(Failure::Status(r))
        } else {
            Ok(r)
        }
    })
}

/// An answer read as bytes with its headers (S3 objects: bodies are not text, and their
/// metadata is in the headers).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The answer with its body as text (for error messages).
    pub fn to_text(&self) -> Response {
        Response {
            status: self.status,
            body: String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

/// [`send`], reading the body as bytes (at most `limit` of them) and keeping the headers.
pub fn send_raw(
    policy: &Policy,
    what: &str,
    limit: u64,
    mut call: impl FnMut() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<RawResponse, GaveUp<Failure>> {
    policy.run(what, is_transient, || {
        let mut resp = call().map_err(Failure::Transport)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        // Sized from Content-Length up front: no doubling of a large body while it is read.
        let expected = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            .min(limit);
        let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        std::io::Read::read_to_end(
            &mut resp.body_mut().with_config().limit(limit).reader(),
            &mut body,
        )
        .map_err(|e| Failure::Transport(ureq::Error::from(e)))?;
        let r = RawResponse {
            status,
            headers,
            body,
        };
        if is_transient_status(status) {
            Err(Failure::Status(r.to_text()))
        } else {
            Ok(r)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn segments_cannot_add_path_parts() {
        assert_eq!(seg("a/b"), "a%2Fb");
        assert_eq!(seg("abc-corp.events"), "abc-corp.events");
        assert_eq!(seg("../x"), "..%2Fx");
        assert_eq!(seg("order.*"), "order.%2A");
    }

    #[test]
    fn transient_means_connection_timeout_and_the_listed_statuses() {
        let transient: Vec<u16> = (100..600).filter(|s| is_transient_status(*s)).collect();
        assert_eq!(transient, [408, 425, 429, 500, 502, 503, 504]);
        let t = |e| is_transient(&Failure::Transport(e));
        assert!(t(ureq::Error::ConnectionFailed));
        assert!(t(ureq::Error::HostNotFound));
        assert!(t(ureq::Error::Timeout(ureq::Timeout::Global)));
        assert!(t(ureq::Error::Io(
            std::io::ErrorKind::ConnectionReset.into()
        )));
        assert!(!t(ureq::Error::BadUri("x".into())));
        assert!(!t(ureq::Error::Tls("bad certificate")));
    }

    /// A server answering each connection with the next canned status; returns its URL and
    /// what the requests said.
    fn answering(statuses: &'static [u16]) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for status in statuses {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap();
                heads.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"
                )
                .unwrap();
            }
            heads
        });
        (url, handle)
    }

    #[test]
    fn retries_transient_statuses_and_returns_the_others() {
        let policy = Policy::new(4, Duration::from_millis(1)).without_jitter();
        let a = agent(Duration::from_secs(5));
        let (url, server) = answering(&[503, 429, 404]);
        let r = send(&policy, "GET /x", || a.get(&url).call()).unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "no"));
        let heads = server.join().unwrap();
        assert_eq!(heads.len(), 3);
        let ua = format!("user-agent: {USER_AGENT}\r\n");
        assert!(heads[0].to_ascii_lowercase().contains(&ua), "{}", heads[0]);

        let (url, server) = answering(&[502, 502]);
        let policy = Policy::new(2, Duration::from_millis(1)).without_jitter();
        let e = send(&policy, "GET /x", || a.get(&url).call()).unwrap_err();
        server.join().unwrap();
        assert_eq!(e.attempts, 2);
        assert!(matches!(
            e.error,
            Failure::Status(Response { status: 502, .. })
        ));
    }
}

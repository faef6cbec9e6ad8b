//! How provisio reaches a git remote: one credentials and transport configuration
//! ([`Transport`]) used by every fetch, push and clone, for the registry and the manifests
//! repositories alike.
//!
//! - **https**: user name and token (basic auth); the token is read from a file or an
//!   environment variable at each connection, so a rotated Secret is used without a restart.
//!   Certificates are always verified, by libgit2 with OpenSSL, against the system's CA store
//!   plus the CA bundle of `ca_file` (libgit2 keeps one certificate store per process:
//!   [`load_ca_file`] adds to it once per file).
//! - **ssh**: a private key file and a `known_hosts` file, which is required: the host key
//!   the server sends is compared with it ([`super::known_hosts`]); an unknown or changed key
//!   is refused, never added, never skipped.
//! - **Credentials never leak**: a URL carrying a password is refused, URLs are shown without
//!   their user part ([`redact`]), and no error or log line holds a token.
//! - **A refusal is an answer, not a loop**: libgit2 asks the credentials callback again
//!   after every refusal; each kind of credential is offered once per operation, the second
//!   request ends it with "authentication failed" (exit 3), instead of hanging.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Mutex, Once};

use git2::{CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};

use super::known_hosts;

/// The https user name when none is configured: GitLab accepts any name with an access token.
pub const DEFAULT_HTTPS_USER: &str = "oauth2";
/// The ssh user name when neither the URL nor the configuration names one.
pub const DEFAULT_SSH_USER: &str = "git";
/// How long connecting to a git host may take (process-wide in libgit2).
pub const CONNECT_TIMEOUT_MS: i32 = 10_000;
/// How long a git host may stay silent during a fetch or push (process-wide in libgit2).
pub const IO_TIMEOUT_MS: i32 = 120_000;

/// Where an https password or token comes from. Read at each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A file holding it (one trailing newline is ignored).
    File(PathBuf),
    /// The name of an environment variable holding it (the value is never kept here).
    Env(String),
}

impl Token {
    /// Where it is read from, for messages (never the value).
    pub fn describe(&self) -> String {
        match self {
            Token::File(p) => format!("the token file {}", p.display()),
            Token::Env(v) => format!("the token in ${v}"),
        }
    }

    pub(super) fn read(&self) -> Result<String, String> {
        let value = match self {
            Token::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the token file {} ({e})", p.display()))?,
            Token::Env(v) => {
                std::env::var(v).map_err(|_| format!("the environment variable {v} is not set"))?
            }
        };
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(&value);
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(value.to_owned())
    }
}

/// How to authenticate to a remote and verify it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// https user name (default [`DEFAULT_HTTPS_USER`]); ssh user name when the URL has none.
    pub username: Option<String>,
    /// https password or token.
    pub token: Option<Token>,
    /// PEM bundle of CAs trusted for https, besides the system's store.
    pub ca_file: Option<PathBuf>,
    /// ssh private key (OpenSSH or PEM format, no passphrase).
    pub ssh_key: Option<PathBuf>,
    /// The host keys ssh remotes are checked against; required for ssh.
    pub known_hosts: Option<PathBuf>,
}

/// Why a remote could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "{url}: a URL with a password is refused (it would be stored in the clone and shown in logs); give the token in a file or an environment variable"
    )]
    PasswordInUrl { url: String },
    /// The remote refused the credentials (or asked for some provisio does not have).
    #[error("authentication failed for {url}: {reason}")]
    Auth { url: String, reason: String },
    /// The remote's TLS certificate or ssh host key did not verify.
    #[error("cannot verify {url}: {reason}")]
    Verify { url: String, reason: String },
    /// The configuration cannot work for this URL (no known_hosts for ssh, a key file
    /// missing).
    #[error("cannot connect to {url}: {reason}")]
    Setup { url: String, reason: String },
    /// The remote's branch is locked: `lock` exists in the remote repository. A push to a local
    /// remote (a `file://` or path remote, `super::push`) updates the remote's branch itself
    /// and names the lock libgit2 could not take; a push in progress holds it for milliseconds, a push killed
    /// mid-way leaves it for good. Retried, never removed: the repository is not provisio's.
    #[error(
        "the branch of {url} is locked: {lock} exists (held by a push in progress, or left by a push killed mid-way; provisio does not remove it: if no push is running, remove it)"
    )]
    Locked { url: String, lock: String },
    /// The remote answered in a way git's protocol does not allow (a malformed pkt-line, a
    /// report without the pushed branch): a server or proxy at fault, not worth retrying.
    #[error("the remote {url} broke git's protocol: {reason}")]
    Protocol { url: String, reason: String },
    /// The network or the remote failed; worth retrying. The source is libgit2's error (fetch),
    /// or for provisio's own pushes the HTTP client's or a 5xx status (`super::send_http`),
    /// libssh2's or the connection's end with what the remote said (`super::send_ssh`).
    #[error("cannot reach {url}")]
    Network {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl RemoteError {
    /// The `outcome` label of `provisio_git_pushes_total` for this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            RemoteError::Auth { .. } => "auth",
            RemoteError::Verify { .. } => "verify",
            _ => "error",
        }
    }

    /// Whether retrying later can help without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Network { .. } | RemoteError::Locked { .. }
        )
    }
}

/// What kind of remote a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Https,
    /// Plain http: allowed without credentials only.
    Http,
    Ssh,
    /// A path or `file://` URL.
    Local,
    Other(String),
}

/// The parts of a remote URL the transport needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
}

/// Parses a remote URL (`https://…`, `ssh://…`, scp-like `user@host:path`, a path or
/// `file://…`); refuses one carrying a password.
pub fn endpoint(url: &str) -> Result<Endpoint, RemoteError> {
    let local = Endpoint {
        scheme: Scheme::Local,
        host: String::new(),
        port: 0,
        user: None,
    };
    if !url.contains("://") {
        // `user:secret@host:path` is not even an address git reads the same way: refused.
        if let Some(at) = url.find('@')
            && url[..at].contains(':')
            && !url[..at].contains('/')
        {
            return Err(RemoteError::PasswordInUrl { url: redact(url) });
        }
        // git's rule: `host:path` with the colon before any slash is scp-like ssh.
        let colon = url.find(':');
        let slash = url.find('/');
        return match colon {
            Some(c) if slash.is_none_or(|s| c < s) && c > 0 => {
                let authority = &url[..c];
                let (user, host) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, authority),
                };
                if user.is_some_and(|u| u.contains(':')) {
                    return Err(RemoteError::PasswordInUrl { url: redact(url) });
                }
                Ok(Endpoint {
                    scheme: Scheme::Ssh,
                    host: host.to_owned(),
                    port: 22,
                    user: user.map(str::to_owned),
                })
            }
            _ => Ok(local),
        };
    }
    let parsed = url::Url::parse(url).map_err(|e| RemoteError::Setup {
        url: redact(url),
        reason: format!("not a URL ({e})"),
    })?;
    if parsed.password().is_some() {
        return Err(RemoteError::PasswordInUrl { url: redact(url) });
    }
    let scheme = match parsed.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
        "file" => return Ok(local),
        other => Scheme::Other(other.to_owned()),
    };
    let default_port = match scheme {
        Scheme::Ssh => 22,
        Scheme::Http => 80,
        _ => 443,
    };
    Ok(Endpoint {
        scheme,
        host: parsed.host_str().unwrap_or_default().to_owned(),
        port: parsed.port().unwrap_or(default_port),
        user: Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
    })
}

/// `url` as it may be shown: the user part of an http(s) URL removed (it may be a deploy
/// token's name), and anything after a `:` in a user part (a password) never shown.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some((user, host)) = authority.rsplit_once('@') {
            let keep_user = scheme.contains("ssh") && !user.contains(':');
            let user = if keep_user {
                format!("{user}@")
            } else {
                String::new()
            };
            return format!("{scheme}://{user}{host}{}", &rest[end..]);
        }
        return url.to_owned();
    }
    match url.split_once('@') {
        Some((user, rest)) if user.contains(':') => rest.to_owned(),
        _ => url.to_owned(),
    }
}

/// Adds the CA bundle `file` to the certificates libgit2 trusts, once per file per process
/// (libgit2 has one store for the process; the system's store stays trusted).
pub fn load_ca_file(file: &Path) -> Result<(), String> {
    static LOADED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if loaded.contains(file) {
        return Ok(());
    }
    let pem = std::fs::read(file)
        .map_err(|e| format!("cannot read the CA bundle {} ({e})", file.display()))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(format!(
            "the CA bundle {} holds no PEM certificate",
            file.display()
        ));
    }
    // SAFETY: libgit2 adds the file to its process-wide OpenSSL context; serialized by LOADED.
    unsafe { git2::opts::set_ssl_cert_file(file) }
        .map_err(|e| format!("libgit2 refused the CA bundle {} ({e})", file.display()))?;
    loaded.insert(file.to_path_buf());
    Ok(())
}

/// libgit2's network timeouts, set once per process.
fn set_timeouts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: process-wide options, set once before any network operation of ours.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
            let _ = git2::opts::set_server_timeout_in_milliseconds(IO_TIMEOUT_MS);
        }
    });
}

/// What happened during one operation's callbacks, read when it failed.
#[derive(Debug, Default)]
struct Verdicts {
    user_pass: u32,
    ssh_key: u32,
    username: u32,
    /// A refusal of ours (credentials, host key), with its reason: libgit2 replaces the
    /// callback's error message with its own generic one.
    refusal: Option<RemoteError>,
}

/// The callbacks of one fetch or push, and what they saw.
pub(super) struct Session {
    url: String,
    verdicts: Rc<RefCell<Verdicts>>,
}

impl Session {
    /// The failure of the operation, in the terms of what went wrong.
    pub(super) fn error(&self, e: git2::Error) -> RemoteError {
        if let Some(r) = self.verdicts.borrow_mut().refusal.take() {
            return r;
        }
        classify(&self.url, e)
    }
}

/// A libgit2 failure without a refusal of ours.
fn classify(url: &str, e: git2::Error) -> RemoteError {
    let msg = e.message().to_owned();
    let lower = msg.to_ascii_lowercase();
    if e.code() == ErrorCode::Auth
        || lower.contains("authentication replays")
        || lower.contains("status code: 401")
        || lower.contains("status code: 403")
    {
        return RemoteError::Auth {
            url: url.to_owned(),
            reason: format!("the server refused the credentials ({msg})"),
        };
    }
    if lower.contains("status code: 404") {
        return RemoteError::Setup {
            url: url.to_owned(),
            reason: format!(
                "there is no repository at this URL, or the credentials cannot see it ({msg})"
            ),
        };
    }
    if e.code() == ErrorCode::Certificate || e.class() == ErrorClass::Ssl {
        return RemoteError::Verify {
            url: url.to_owned(),
            reason: format!(
                "the server's TLS certificate does not verify ({msg}); if a private CA signed it, give its bundle (--git-ca-file)"
            ),
        };
    }
    RemoteError::Network {
        url: url.to_owned(),
        source: Box::new(e),
    }
}

impl Transport {
    /// Checks that this configuration can reach `url` at all (before any connection): no
    /// password in the URL, a known_hosts file for ssh, no token over plain http, files
    /// readable. The CA bundle is loaded here.
    pub fn check(&self, url: &str) -> Result<Endpoint, RemoteError> {
        let ep = endpoint(url)?;
        let setup = |reason: String| RemoteError::Setup {
            url: redact(url),
            reason,
        };
        if let Some(ca) = &self.ca_file {
            load_ca_file(ca).map_err(setup)?;
        }
        match ep.scheme {
            Scheme::Ssh => {
                let Some(kh) = &self.known_hosts else {
                    return Err(setup(
                        "ssh needs a known_hosts file (--ssh-known-hosts-file): host keys are always checked".into(),
                    ));
                };
                std::fs::metadata(kh).map_err(|e| {
                    setup(format!(
                        "cannot read the known_hosts file {} ({e})",
                        kh.display()
                    ))
                })?;
                if let Some(key) = &self.ssh_key {
                    std::fs::metadata(key).map_err(|e| {
                        setup(format!("cannot read the ssh key {} ({e})", key.display()))
                    })?;
                }
            }
            Scheme::Http if self.token.is_some() => {
                return Err(setup(
                    "refusing to send a token over plain http; use https".into(),
                ));
            }
            _ => {}
        }
        Ok(ep)
    }

    /// The callbacks of one fetch or push of `url`: credentials offered once per kind, host
    /// keys checked against the known_hosts file, certificates left to libgit2 (with the CA
    /// bundle). The [`Session`] turns the operation's failure into a [`RemoteError`].
    pub(super) fn callbacks(
        &self,
        url: &str,
    ) -> Result<(RemoteCallbacks<'static>, Session), RemoteError> {
        let ep = self.check(url)?;
        set_timeouts();
        let shown = redact(url);
        let verdicts: Rc<RefCell<Verdicts>> = Rc::default();
        let mut cbs = RemoteCallbacks::new();
        {
            let (v, t, shown, ep) = (verdicts.clone(), self.clone(), shown.clone(), ep.clone());
            cbs.credentials(move |_url, user_from_url, allowed| {
                credentials(&t, &ep, &shown, user_from_url, allowed, &mut v.borrow_mut())
            });
        }
        {
            let (v, kh, shown, port) = (
                verdicts.clone(),
                self.known_hosts.clone(),
                shown.clone(),
                ep.port,
            );
            cbs.certificate_check(move |cert, host| {
                let Some(hostkey) = cert.as_hostkey() else {
                    // X.509: libgit2's own verification (OpenSSL, with the CA bundle) decides.
                    return Ok(CertificateCheckStatus::CertificatePassthrough);
                };
                let verdict = match (&kh, hostkey.hostkey()) {
                    (None, _) => {
                        Err("no known_hosts file: ssh host keys are always checked".to_owned())
                    }
                    (Some(_), None) => Err("libssh2 did not hand over the host key".to_owned()),
                    (Some(file), Some(key)) => known_hosts::verify(file, host, port, key),
                };
                match verdict {
                    Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                    Err(reason) => {
                        v.borrow_mut().refusal = Some(RemoteError::Verify {
                            url: shown.clone(),
                            reason: reason.clone(),
                        });
                        Err(git2::Error::new(
                            ErrorCode::Certificate,
                            ErrorClass::Ssh,
                            reason,
                        ))
                    }
                }
            });
        }
        Ok((
            cbs,
            Session {
                url: shown,
                verdicts,
            },
        ))
    }
}

/// The credentials callback: each kind once; a second request means the first was refused.
fn credentials(
    t: &Transport,
    ep: &Endpoint,
    shown: &str,
    user_from_url: Option<&str>,
    allowed: CredentialType,
    v: &mut Verdicts,
) -> Result<Cred, git2::Error> {
    let mut refuse = |reason: String| {
        let e = git2::Error::new(ErrorCode::Auth, ErrorClass::Net, reason.clone());
        v.refusal = Some(RemoteError::Auth {
            url: shown.to_owned(),
            reason,
        });
        e
    };
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        let user = t
            .username
            .as_deref()
            .or(user_from_url)
            .unwrap_or(DEFAULT_HTTPS_USER);
        let Some(token) = &t.token else {
            return Err(refuse(
                "the server asks for a user name and token, and none is configured (--git-token-file or PROVISIO_GIT_TOKEN)".into(),
            ));
        };
        v.user_pass += 1;
        if v.user_pass > 1 {
            return Err(refuse(format!(
                "the server refused user `{user}` with {} (expired or revoked, or not allowed on this repository?)",
                token.describe()
            )));
        }
        let secret = token.read().map_err(&mut refuse)?;
        return Cred::userpass_plaintext(user, &secret);
    }
    let user = user_from_url
        .or(ep.user.as_deref())
        .or(t.username.as_deref())
        .unwrap_or(DEFAULT_SSH_USER);
    if allowed.contains(CredentialType::SSH_KEY) {
        let Some(key) = &t.ssh_key else {
            return Err(refuse(
                "the server asks for an ssh key and none is configured (--ssh-key-file)".into(),
            ));
        };
        v.ssh_key += 1;
        if v.ssh_key > 1 {
            return Err(refuse(format!(
                "the server refused the key {} for user `{user}` (is it a deploy key of this repository, with write access for pushes?)",
                key.display()
            )));
        }
        return Cred::ssh_key(user, None, key, None);
    }
    if allowed.contains(CredentialType::USERNAME) {
        v.username += 1;
        if v.username > 1 {
            return Err(refuse(format!("the server refused user `{user}`")));
        }
        return Cred::username(user);
    }
    Err(refuse(format!(
        "the server asks for a kind of credentials provisio does not offer ({allowed:?})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_every_url_form() {
        let e = endpoint("https://gitlab.example.com/platform/registry.git").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Https, "gitlab.example.com", 443)
        );
        let e = endpoint("ssh://git@127.0.0.1:2222/registry.git").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port, e.user.as_deref()),
            (Scheme::Ssh, "127.0.0.1", 2222, Some("git"))
        );
        let e = endpoint("git@gitlab.example.com:platform/registry.git").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Ssh, "gitlab.example.com", 22)
        );
        for local in [
            "/srv/git/registry.git",
            "file:///srv/git/r.git",
            "./r.git",
            "r.git",
        ] {
            assert_eq!(endpoint(local).unwrap().scheme, Scheme::Local, "{local}");
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_shown() {
        for url in [
            "https://bot:glpat-s3cret@gitlab.example.com/r.git",
            "ssh://git:s3cret@gitlab.example.com/r.git",
            "git:s3cret@gitlab.example.com:r.git",
        ] {
            let e = endpoint(url).unwrap_err();
            assert!(matches!(e, RemoteError::PasswordInUrl { .. }), "{url}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
        // A user name alone is fine (an https one is not shown: it may be a token's name).
        assert!(endpoint("https://bot@gitlab.example.com/r.git").is_ok());
        assert_eq!(
            redact("https://bot@gitlab.example.com/r.git"),
            "https://gitlab.example.com/r.git"
        );
        assert_eq!(
            redact("ssh://git@gitlab.example.com/r.git"),
            "ssh://git@gitlab.example.com/r.git"
        );
    }

    #[test]
    fn ssh_without_known_hosts_and_tokens_over_http_are_refused_up_front() {
        let t = Transport::default();
        let e = t.check("ssh://git@127.0.0.1:2222/r.git").unwrap_err();
        assert!(e.to_string().contains("known_hosts"), "{e}");
        let t = Transport {
            token: Some(Token::Env("X".into())),
            ..Transport::default()
        };
        let e = t.check("http://127.0.0.1/r.git").unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
    }

    #[test]
    fn tokens_lose_one_trailing_newline_and_may_not_be_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, "glpat-abc\n").unwrap();
        assert_eq!(Token::File(p.clone()).read().unwrap(), "glpat-abc");
        std::fs::write(&p, "\n").unwrap();
        let e = Token::File(p.clone()).read().unwrap_err();
        assert!(e.contains("is empty") && !e.contains("glpat"), "{e}");
    }
}

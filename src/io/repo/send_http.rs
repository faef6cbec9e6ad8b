//! provisio's own client for the sending side of git's receive-pack protocol over smart HTTP
//! ("send-pack"): a pack provisio already holds, pushed to one branch of an https (or plain
//! http) remote without libgit2's pack builder, which git2 offers no way around (and gitoxide
//! has no push).
//!
//! One [`push`] is two requests (git's `Documentation/gitprotocol-http.txt`, "Smart Service
//! git-receive-pack"; receive-pack has no protocol v2, so this is v0/v1):
//!
//! 1. `GET <url>/info/refs?service=git-receive-pack`: the answer must have the content type
//!    `application/x-git-receive-pack-advertisement` and start with the pkt-line
//!    `# service=git-receive-pack` and a flush; anything else is a dumb or no git server and
//!    refused (provisio pushes through smart HTTP only). Then the reference advertisement
//!    (`gitprotocol-pack.txt`, "Reference Discovery"): the branch's current value and the
//!    capabilities, of which `report-status` is required (without it the outcome of the push
//!    cannot be known). A redirect of this request is followed on the same host only, never
//!    from https to plain http, and the URL it ended at becomes the base of the next request,
//!    as git does (`http.c`, `update_url_from_redirect`).
//! 2. `POST <url>/git-receive-pack`: one update command (`<old> <new> <ref>\0<capabilities>`,
//!    only capabilities the server advertised), a flush, and the pack, streamed from its file
//!    with a `Content-Length` (a first push is ~360 MB: it is never held in memory), then the
//!    report (`gitprotocol-pack.txt`, "Report Status"): `unpack ok`, then `ok <ref>` or
//!    `ng <ref> <reason>`, classified by [`super::failure::refusal`]. `side-band-64k` is asked for
//!    when advertised: receive-pack then sends the report on band 1, the hooks' output on band
//!    2 (without the side band it goes to the server's log only, `builtin/receive-pack.c`
//!    `copy_to_sideband`), which is kept for the refusal's message, and a fatal error on band 3.
//!
//! - **The protocol** past HTTP (pkt-lines, the advertisement after its service header, the
//!   command, the side band, the report) is [`super::send_pack`]'s, shared with the ssh client.
//! - **Trust** is that of the libgit2 https transport ([`super::transport`]): certificates are
//!   always verified, against the system's CA store plus the `ca_file` bundle. ureq's
//!   `RootCerts::PlatformVerifier` takes the system store alone (no bundle can be added), and
//!   its `WebPki` roots are Mozilla's, not the system's; so the system store is read with
//!   `rustls-native-certs` (on Linux the OpenSSL locations, `SSL_CERT_FILE`/`SSL_CERT_DIR`
//!   honoured, as libgit2's OpenSSL does) and given to ureq as `RootCerts::Specific` together
//!   with the bundle's certificates.
//! - **Timeouts** are those of the libgit2 transport: [`CONNECT_TIMEOUT_MS`] to connect and
//!   [`IO_TIMEOUT_MS`] of silence for each read and write, no overall bound (a 360 MB upload
//!   on a slow link takes what it takes while it moves).
//! - **Credentials**: basic auth, the user from the configuration, the URL or
//!   [`DEFAULT_HTTPS_USER`], the token read at each push and sent up front (never over plain
//!   http: [`Transport::check`] refuses a token there), never shown; URLs in errors go through
//!   [`redact`], and the request URLs carry no user part.

use std::io::{Cursor, Read};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ureq::ResponseExt as _;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::failure::PushFailure;
use super::send_pack::{self, Advertisement, Wire, command_pkts, line, read_pkt, shown_bytes};
use super::transport::{
    CONNECT_TIMEOUT_MS, DEFAULT_HTTPS_USER, IO_TIMEOUT_MS, Scheme, Token, redact,
};
use super::{Oid, RemoteError, Transport};

const SERVICE_LINE: &[u8] = b"# service=git-receive-pack";
const ADVERTISEMENT_TYPE: &str = "application/x-git-receive-pack-advertisement";
const REQUEST_TYPE: &str = "application/x-git-receive-pack-request";
const RESULT_TYPE: &str = "application/x-git-receive-pack-result";
const INFO_REFS: &str = "/info/refs?service=git-receive-pack";

/// Pushes `new` to `refname` (`refs/heads/<branch>`) of the https (or plain http) remote `url`,
/// never forced. Reads the remote's advertisement; when the remote already has `refname` at
/// `new`, returns Ok without sending. Otherwise calls `pack_for(old)` with the remote's
/// current value of `refname` (None when the branch does not exist there): it returns the
/// pack to send, a `File` positioned at its start whose length is the pack's length, or a
/// PushFailure (e.g. Moved when `old` is not an ancestor of `new` locally) that is returned
/// as is. Then sends the update command and the pack and reads the report.
pub(super) fn push(
    transport: &Transport,
    url: &str,
    refname: &str,
    new: Oid,
    pack_for: &mut dyn FnMut(Option<Oid>) -> Result<std::fs::File, PushFailure>,
) -> Result<(), PushFailure> {
    if !refname.starts_with("refs/") || !git2::Reference::is_valid_name(refname) {
        return Err(PushFailure::Remote(RemoteError::Setup {
            url: redact(url),
            reason: format!("`{refname}` is not a reference name a push can update"),
        }));
    }
    let remote = Remote::new(transport, url).map_err(PushFailure::Remote)?;
    let (base, adv) = remote.advertisement(refname)?;
    if adv.current == Some(new) {
        return Ok(());
    }
    let pack = pack_for(adv.current)?;
    remote.send(&base, &adv, refname, new, pack)
}

/// One remote for one push: its URL as shown, how requests reach it, and the credentials.
struct Remote {
    /// The URL without its user part: what requests go to and what errors show.
    shown: String,
    agent: ureq::Agent,
    user: String,
    token: Option<Token>,
}

impl Remote {
    fn new(transport: &Transport, url: &str) -> Result<Remote, RemoteError> {
        let shown = redact(url);
        let ep = transport.check(url)?;
        if !matches!(ep.scheme, Scheme::Https | Scheme::Http) {
            return Err(RemoteError::Setup {
                url: shown,
                reason: "not an https or http URL".into(),
            });
        }
        let roots = roots(transport.ca_file.as_deref()).map_err(|reason| RemoteError::Setup {
            url: shown.clone(),
            reason,
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(millis(CONNECT_TIMEOUT_MS)))
            .timeout_per_read(Some(millis(IO_TIMEOUT_MS)))
            .timeout_per_write(Some(millis(IO_TIMEOUT_MS)))
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            // Direct, like libgit2's push and fetch (no proxy options given): ureq would
            // otherwise take HTTPS_PROXY/ALL_PROXY from the environment for pushes only.
            .proxy(None)
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .user_agent(crate::io::http::USER_AGENT)
            .build()
            .into();
        let user = transport
            .username
            .clone()
            .or(ep.user)
            .unwrap_or_else(|| DEFAULT_HTTPS_USER.to_owned());
        Ok(Remote {
            shown: shown.trim_end_matches('/').to_owned(),
            agent,
            user,
            token: transport.token.clone(),
        })
    }

    /// The `Authorization` header's value, the token read now; None without a token.
    fn authorization(&self) -> Result<Option<String>, RemoteError> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        let secret = token.read().map_err(|reason| RemoteError::Auth {
            url: self.shown.clone(),
            reason,
        })?;
        let pair = format!("{}:{secret}", self.user);
        Ok(Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )))
    }

    /// The advertisement of `refname`, and the base URL the push goes to (the one the
    /// advertisement was redirected to, if it was).
    fn advertisement(&self, refname: &str) -> Result<(String, Advertisement), PushFailure> {
        let url = format!("{}{INFO_REFS}", self.shown);
        let mut request = self.agent.get(&url).header("Pragma", "no-cache");
        if let Some(auth) = self.authorization().map_err(PushFailure::Remote)? {
            request = request.header("Authorization", auth);
        }
        let response = request
            .call()
            .map_err(|e| PushFailure::Remote(self.unreachable(e)))?;
        // Where it ended first: a 401 from a host the credentials were not sent to is no
        // verdict on them.
        let base = self.redirected_base(&response.get_uri().to_string())?;
        self.check_status(response.status().as_u16())
            .map_err(PushFailure::Remote)?;
        let content_type = content_type(&response);
        if content_type != ADVERTISEMENT_TYPE {
            return Err(PushFailure::Remote(RemoteError::Setup {
                url: self.shown.clone(),
                reason: format!(
                    "the server does not speak git's smart HTTP protocol (it answered info/refs with content type `{content_type}`, not {ADVERTISEMENT_TYPE}): a dumb HTTP server, or no git server at this URL; provisio pushes through smart HTTP only"
                ),
            }));
        }
        let mut body = response.into_body().into_reader();
        let adv = read_advertisement(&mut body, refname).map_err(|e| self.wire(e))?;
        if let Some(reason) = send_pack::unusable(&adv) {
            return Err(PushFailure::Remote(RemoteError::Setup {
                url: self.shown.clone(),
                reason,
            }));
        }
        Ok((base, adv))
    }

    /// The base URL after the advertisement's request ended at `final_url`: the request's own
    /// when it was not redirected; one on the same host (https staying https) when it was.
    fn redirected_base(&self, final_url: &str) -> Result<String, PushFailure> {
        let asked = format!("{}{INFO_REFS}", self.shown);
        if final_url == asked {
            return Ok(self.shown.clone());
        }
        let refuse = |why: &str| {
            PushFailure::Remote(RemoteError::Setup {
                url: self.shown.clone(),
                reason: format!(
                    "the server redirected info/refs to {} ({why}); give that repository's URL instead",
                    redact(final_url)
                ),
            })
        };
        let (Ok(from), Ok(to)) = (url::Url::parse(&asked), url::Url::parse(final_url)) else {
            return Err(refuse("not a URL provisio can read"));
        };
        if from.host_str() != to.host_str()
            || from.port_or_known_default() != to.port_or_known_default()
        {
            return Err(refuse(
                "another host: provisio sends its credentials only to the host it was given",
            ));
        }
        if from.scheme() == "https" && to.scheme() != "https" {
            return Err(refuse("from https to plain http"));
        }
        match final_url.strip_suffix(INFO_REFS) {
            Some(base) => Ok(redact(base)),
            None => Err(refuse("not to another repository's info/refs")),
        }
    }

    /// Sends the update command and `pack`, and reads the report.
    fn send(
        &self,
        base: &str,
        adv: &Advertisement,
        refname: &str,
        new: Oid,
        pack: std::fs::File,
    ) -> Result<(), PushFailure> {
        let pack_len = pack
            .metadata()
            .map_err(|e| {
                PushFailure::Remote(RemoteError::Setup {
                    url: self.shown.clone(),
                    reason: format!("cannot read the pack to send ({e})"),
                })
            })?
            .len();
        let sideband = adv.has("side-band-64k");
        let command = command_pkts(adv, refname, new, sideband);
        let length = command.len() as u64 + pack_len;
        let body = Cursor::new(command).chain(pack.take(pack_len));
        let mut request = self
            .agent
            .post(format!("{base}/git-receive-pack"))
            .config()
            .max_redirects(0)
            .build()
            .header("Content-Type", REQUEST_TYPE)
            .header("Accept", RESULT_TYPE)
            .header("Content-Length", length.to_string());
        if let Some(auth) = self.authorization().map_err(PushFailure::Remote)? {
            request = request.header("Authorization", auth);
        }
        let response = request
            .send(ureq::SendBody::from_owned_reader(body))
            .map_err(|e| PushFailure::Remote(self.unreachable(e)))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(PushFailure::Remote(RemoteError::Setup {
                url: self.shown.clone(),
                reason: format!("the server redirected the push itself (HTTP {status})"),
            }));
        }
        self.check_status(status).map_err(PushFailure::Remote)?;
        let content_type = content_type(&response);
        if content_type != RESULT_TYPE {
            return Err(self.wire(Wire::Malformed(format!(
                "the push was answered with content type `{content_type}`, not {RESULT_TYPE}"
            ))));
        }
        let mut body = response.into_body().into_reader();
        send_pack::read_outcome(&mut body, sideband, &self.shown, refname)
    }

    /// A failure status of either request, in the terms of what went wrong.
    fn check_status(&self, status: u16) -> Result<(), RemoteError> {
        let url = self.shown.clone();
        match status {
            200..=299 => Ok(()),
            401 | 403 => Err(RemoteError::Auth {
                url,
                reason: match &self.token {
                    None => format!(
                        "the server asks for a user name and token, and none is configured (--git-token-file or PROVISIO_GIT_TOKEN) (HTTP {status})"
                    ),
                    Some(token) => format!(
                        "the server refused user `{}` with {} (expired or revoked, or not allowed on this repository?) (HTTP {status})",
                        self.user,
                        token.describe()
                    ),
                },
            }),
            404 => Err(RemoteError::Setup {
                url,
                reason: "there is no repository at this URL, or the credentials cannot see it (HTTP 404)".into(),
            }),
            408 | 425 | 429 | 500..=599 => Err(RemoteError::Network {
                url,
                source: format!("the server answered HTTP {status}").into(),
            }),
            _ => Err(RemoteError::Setup {
                url,
                reason: format!("the server answered HTTP {status}"),
            }),
        }
    }

    /// A request that got no answer: TLS failures are [`RemoteError::Verify`], everything
    /// else (connection, timeout) is worth retrying.
    fn unreachable(&self, e: ureq::Error) -> RemoteError {
        let tls = match &e {
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::TlsRequired => true,
            // rustls's failures reach ureq inside an I/O error (the TLS stream's).
            ureq::Error::Io(io) => io.get_ref().is_some_and(|i| i.is::<rustls::Error>()),
            _ => false,
        };
        if tls {
            return RemoteError::Verify {
                url: self.shown.clone(),
                reason: format!(
                    "the server's TLS certificate does not verify ({e}); if a private CA signed it, give its bundle (--git-ca-file)"
                ),
            };
        }
        RemoteError::Network {
            url: self.shown.clone(),
            source: Box::new(e),
        }
    }

    /// A failure while reading an answer: the connection failing is transient, an answer
    /// breaking git's protocol is not.
    fn wire(&self, e: Wire) -> PushFailure {
        send_pack::wire(&self.shown, e)
    }
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The response's content type without its parameters.
fn content_type<B>(response: &ureq::http::Response<B>) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The certificates https remotes are verified against: the system's store plus the PEM
/// bundle `ca_file`.
fn roots(ca_file: Option<&std::path::Path>) -> Result<RootCerts, String> {
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::warn!("a certificate of the system's store was not loaded: {e}");
    }
    let mut certs: Vec<Certificate<'static>> = system
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if let Some(file) = ca_file {
        let pem = std::fs::read(file)
            .map_err(|e| format!("cannot read the CA bundle {} ({e})", file.display()))?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "the CA bundle {} is not valid PEM ({e})",
                        file.display()
                    ));
                }
            }
        }
        if certs.len() == before {
            return Err(format!(
                "the CA bundle {} holds no PEM certificate",
                file.display()
            ));
        }
    }
    Ok(RootCerts::Specific(Arc::new(certs)))
}

/// Reads the smart HTTP advertisement of git-receive-pack: the service header and its flush,
/// then the reference advertisement up to its final flush, of which `refname` and the
/// capabilities are picked out.
fn read_advertisement(r: &mut dyn Read, refname: &str) -> Result<Advertisement, Wire> {
    let mut buf = Vec::new();
    if !read_pkt(r, &mut buf)? || line(&buf) != SERVICE_LINE {
        return Err(Wire::Malformed(format!(
            "the advertisement does not start with `# service=git-receive-pack` (it starts with {})",
            shown_bytes(&buf)
        )));
    }
    if read_pkt(r, &mut buf)? {
        return Err(Wire::Malformed(format!(
            "no flush after `# service=git-receive-pack` (a {} follows)",
            shown_bytes(&buf)
        )));
    }
    send_pack::read_advertisement(r, refname)
}

#[cfg(test)]
mod tests {
    use super::send_pack::{ZERO_ID, pkt};
    use super::*;

    #[test]
    fn the_advertisement_starts_with_the_service_header() {
        let refs = pkt(format!("{ZERO_ID} capabilities^{{}}\0report-status\n").as_bytes());
        let mut ok = pkt(b"# service=git-receive-pack\n");
        ok.extend_from_slice(b"0000");
        ok.extend_from_slice(&refs);
        ok.extend_from_slice(b"0000");
        let adv = read_advertisement(&mut ok.as_slice(), "refs/heads/main").unwrap();
        assert_eq!(adv.capabilities, ["report-status"]);

        let mut other = pkt(b"# service=git-upload-pack\n");
        other.extend_from_slice(b"0000");
        let mut no_flush = pkt(b"# service=git-receive-pack\n");
        no_flush.extend_from_slice(&refs);
        for (bytes, expected) in [
            (other, "does not start with `# service=git-receive-pack`"),
            (no_flush, "no flush after"),
        ] {
            match read_advertisement(&mut bytes.as_slice(), "refs/heads/main") {
                Err(Wire::Malformed(m)) => assert!(m.contains(expected), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    fn count(roots: RootCerts) -> usize {
        match roots {
            RootCerts::Specific(certs) => certs.len(),
            other => panic!("{other:?}"),
        }
    }

    /// The system's store (this machine's, as the image's: Debian's `ca-certificates`) and
    /// the bundle are both trusted; a bundle without a certificate is refused.
    #[test]
    fn the_system_store_and_the_bundle_are_both_trusted() {
        let system = count(roots(None).unwrap());
        assert!(system > 50, "{system} certificates in the system's store");
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        let one = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
        let end = "-----END CERTIFICATE-----\n";
        let first = &one[..one.find(end).unwrap() + end.len()];
        std::fs::write(&bundle, format!("{first}{first}")).unwrap();
        assert_eq!(count(roots(Some(&bundle)).unwrap()), system + 2);
        std::fs::write(&bundle, "no certificate here\n").unwrap();
        let e = roots(Some(&bundle)).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = roots(Some(&dir.path().join("absent.pem"))).unwrap_err();
        assert!(e.contains("cannot read the CA bundle"), "{e}");
    }
}

/// Pushes to git's own `http-backend` behind lighttpd with TLS and basic auth
/// (`tests/tools/git-https-server.sh`), and to a fake server on 127.0.0.1 speaking plain
/// HTTP for the answers no git writes. Packs are made by stock `git pack-objects`. Its helpers
/// (stock git, a work repository and its packs) serve `send_ssh`'s tests too.
#[cfg(test)]
pub(super) mod live {
    use std::collections::BTreeMap;
    use std::fs::File;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::Mutex;

    use super::send_pack::{ZERO_ID, pkt};
    use super::*;

    /// A git server of `tests/tools/` running in a temporary directory, stopped when dropped:
    /// its `KEY=VALUE` lines, `<prefix>_REPOS` the directory it serves, `<prefix>_URL` its base
    /// URL.
    pub(in crate::io::repo) struct GitServer {
        pub(in crate::io::repo) dir: tempfile::TempDir,
        env: BTreeMap<String, String>,
        script: PathBuf,
        prefix: &'static str,
    }

    impl GitServer {
        /// Starts `tests/tools/<script>`; None (after saying so) when `missing` says what the
        /// machine lacks for it and CI does not require it.
        pub(in crate::io::repo) fn start(
            script: &str,
            prefix: &'static str,
            missing: Option<String>,
        ) -> Option<GitServer> {
            if let Some(msg) = missing {
                assert!(
                    std::env::var("PROVISIO_REQUIRE_TOOLS").as_deref() != Ok("1"),
                    "{msg}"
                );
                eprintln!("SKIPPED: {msg}");
                return None;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/tools")
                .join(script);
            let dir = tempfile::tempdir().unwrap();
            let out = Command::new("bash")
                .arg(&script)
                .arg("start")
                .arg(dir.path().join("server"))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} did not start:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let env = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Some(GitServer {
                dir,
                env,
                script,
                prefix,
            })
        }

        pub(in crate::io::repo) fn var(&self, key: &str) -> &str {
            &self.env[key]
        }

        /// A new empty bare repository `name` whose HEAD names `main`.
        pub(in crate::io::repo) fn create(&self, name: &str) -> PathBuf {
            let repos = self.var(&format!("{}_REPOS", self.prefix));
            let bare = Path::new(repos).join(format!("{name}.git"));
            git(
                Path::new("/"),
                &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
            );
            bare
        }

        pub(in crate::io::repo) fn url(&self, name: &str) -> String {
            format!("{}/{name}.git", self.var(&format!("{}_URL", self.prefix)))
        }
    }

    impl Drop for GitServer {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(&self.script)
                .arg("stop")
                .arg(self.dir.path().join("server"))
                .output();
        }
    }

    /// A running https git server.
    struct Server(GitServer);

    impl std::ops::Deref for Server {
        type Target = GitServer;
        fn deref(&self) -> &GitServer {
            &self.0
        }
    }

    impl Server {
        /// None (after saying so) when lighttpd is missing and CI does not require it.
        fn start() -> Option<Server> {
            let missing: Vec<&str> = ["lighttpd", "htpasswd", "openssl"]
                .into_iter()
                .filter(|t| {
                    !Command::new("sh")
                        .args(["-c", &format!("command -v {t}")])
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
                .collect();
            let missing = (!missing.is_empty()).then(|| {
                format!(
                    "https git server: missing {missing:?} (Debian: lighttpd lighttpd-mod-openssl apache2-utils)"
                )
            });
            GitServer::start("git-https-server.sh", "GIT_HTTPS", missing).map(Server)
        }

        /// The user, password file and CA of the server.
        fn transport(&self) -> Transport {
            Transport {
                username: Some(self.var("GIT_HTTPS_USER").to_owned()),
                token: Some(Token::File(self.var("GIT_HTTPS_PASSWORD_FILE").into())),
                ca_file: Some(self.var("GIT_HTTPS_CA").into()),
                ..Transport::default()
            }
        }
    }

    /// Runs stock git in `dir` (with `stdin`), and returns its output; it must succeed.
    pub(in crate::io::repo) fn git_with(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub(in crate::io::repo) fn git(dir: &Path, args: &[&str]) -> String {
        String::from_utf8(git_with(dir, args, b""))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The value of `refname` in `bare`.
    pub(in crate::io::repo) fn value(bare: &Path, refname: &str) -> Option<Oid> {
        let out = Command::new("git")
            .current_dir(bare)
            .args(["rev-parse", "--verify", "-q", refname])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| Oid::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap())
    }

    pub(in crate::io::repo) fn fsck(bare: &Path) {
        git(bare, &["fsck", "--strict", "--no-progress"]);
    }

    /// A work repository made by stock git, and packs of its commits.
    pub(in crate::io::repo) struct Work(pub(in crate::io::repo) tempfile::TempDir);

    impl Work {
        pub(in crate::io::repo) fn new() -> Work {
            let dir = tempfile::tempdir().unwrap();
            git(dir.path(), &["init", "-q", "-b", "main"]);
            Work(dir)
        }

        /// Commits `file` with `content` on the branch checked out.
        pub(in crate::io::repo) fn commit(&self, file: &str, content: &str) -> Oid {
            std::fs::write(self.0.path().join(file), content).unwrap();
            git(self.0.path(), &["add", file]);
            git(self.0.path(), &["commit", "-q", "-m", file]);
            Oid::from_str(&git(self.0.path(), &["rev-parse", "HEAD"])).unwrap()
        }

        /// The pack of what `new` has and `old` has not, in a file at its start (written
        /// there by `git pack-objects`, never held in memory).
        pub(in crate::io::repo) fn pack(&self, new: Oid, old: Option<Oid>) -> File {
            let revs = match old {
                Some(old) => format!("{new}\n^{old}\n"),
                None => format!("{new}\n"),
            };
            let mut file = tempfile::tempfile().unwrap();
            let mut child = Command::new("git")
                .current_dir(self.0.path())
                .args(["pack-objects", "--stdout", "--revs", "-q"])
                .stdin(Stdio::piped())
                .stdout(file.try_clone().unwrap())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(revs.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "git pack-objects");
            std::io::Seek::rewind(&mut file).unwrap();
            file
        }
    }

    pub(in crate::io::repo) const MAIN: &str = "refs/heads/main";

    pub(in crate::io::repo) fn never(_: Option<Oid>) -> Result<File, PushFailure> {
        panic!("no pack may be asked for")
    }

    /// A push function of one transport (`send_http::push`, `send_ssh::push`), for the
    /// scenarios every transport must pass against its real server.
    pub(in crate::io::repo) type PushFn = fn(
        &Transport,
        &str,
        &str,
        Oid,
        &mut dyn FnMut(Option<Oid>) -> Result<File, PushFailure>,
    ) -> Result<(), PushFailure>;

    /// A first push into an empty repository, a second on top, and one of what the remote
    /// has (no pack asked for); the work tree and URL, for more.
    pub(in crate::io::repo) fn first_second_and_already_there(
        server: &GitServer,
        t: &Transport,
        push: PushFn,
    ) -> (Work, String, PathBuf) {
        let bare = server.create("first");
        let url = server.url("first");
        let work = Work::new();
        let c1 = work.commit("a.txt", "a\n");
        let mut asked = Vec::new();
        push(t, &url, MAIN, c1, &mut |old| {
            asked.push(old);
            Ok(work.pack(c1, old))
        })
        .unwrap();
        assert_eq!(value(&bare, MAIN), Some(c1));
        fsck(&bare);

        let c2 = work.commit("b.txt", "b\n");
        push(t, &url, MAIN, c2, &mut |old| {
            asked.push(old);
            Ok(work.pack(c2, old))
        })
        .unwrap();
        assert_eq!(asked, [None, Some(c1)]);
        assert_eq!(value(&bare, MAIN), Some(c2));
        fsck(&bare);
        assert_eq!(git(&bare, &["cat-file", "-p", "main:b.txt"]), "b");

        // Already there: nothing is sent.
        push(t, &url, MAIN, c2, &mut never).unwrap();
        (work, url, bare)
    }

    /// The remote's branch moving between the advertisement and the push: Moved, its branch
    /// kept; a `pack_for`'s own refusal returned as is.
    pub(in crate::io::repo) fn moved_keeps_its_branch(
        server: &GitServer,
        t: &Transport,
        push: PushFn,
    ) {
        let bare = server.create("moved");
        let url = server.url("moved");
        let work = Work::new();
        let c1 = work.commit("a.txt", "a\n");
        push(t, &url, MAIN, c1, &mut |old| Ok(work.pack(c1, old))).unwrap();
        // Another writer's commit, on top of c1, lands as `other`.
        git(work.0.path(), &["checkout", "-q", "-b", "other"]);
        let theirs = work.commit("theirs.txt", "t\n");
        push(t, &url, "refs/heads/other", theirs, &mut |old| {
            Ok(work.pack(theirs, old))
        })
        .unwrap();
        git(work.0.path(), &["checkout", "-q", "main"]);
        let ours = work.commit("ours.txt", "o\n");

        // The remote's main moves between the advertisement and the push.
        let e = push(t, &url, MAIN, ours, &mut |old| {
            assert_eq!(old, Some(c1));
            git(&bare, &["update-ref", MAIN, &theirs.to_string()]);
            Ok(work.pack(ours, old))
        })
        .unwrap_err();
        assert!(matches!(e, PushFailure::Moved(_)), "{e:?}");
        assert!(e.is_retryable() && e.outcome() == "rejected", "{e}");
        assert_eq!(value(&bare, MAIN), Some(theirs));
        fsck(&bare);

        // A pack_for's own refusal (not a descendant locally) is returned as is.
        let e = push(t, &url, MAIN, ours, &mut |old| {
            Err(PushFailure::Moved(format!("{old:?} is not an ancestor")))
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the remote moved (Some({theirs}) is not an ancestor)")
        );
        assert_eq!(value(&bare, MAIN), Some(theirs));
    }

    /// A pre-receive hook refusing: Refused with the hook's message, nothing changed.
    pub(in crate::io::repo) fn hook_refusal(server: &GitServer, t: &Transport, push: PushFn) {
        let bare = server.create("hooked");
        let hook = bare.join("hooks/pre-receive");
        std::fs::write(
            &hook,
            "#!/bin/sh\necho 'rejected by policy: no Fridays' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let work = Work::new();
        let c1 = work.commit("a.txt", "a\n");
        let e = push(t, &server.url("hooked"), MAIN, c1, &mut |old| {
            Ok(work.pack(c1, old))
        })
        .unwrap_err();
        let PushFailure::Refused { refname, message } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(refname, MAIN);
        assert!(message.contains("pre-receive hook declined"), "{message}");
        assert!(
            message.contains("rejected by policy: no Fridays"),
            "{message}"
        );
        assert!(!e.is_retryable());
        assert_eq!(value(&bare, MAIN), None);
        fsck(&bare);
    }

    #[test]
    fn a_first_push_a_second_on_top_and_one_already_there() {
        if let Some(server) = Server::start() {
            first_second_and_already_there(&server, &server.transport(), push);
        }
    }

    #[test]
    fn a_remote_that_moved_is_moved_and_keeps_its_branch() {
        if let Some(server) = Server::start() {
            moved_keeps_its_branch(&server, &server.transport(), push);
        }
    }

    #[test]
    fn a_hook_refusal_is_refused_with_the_hooks_message() {
        if let Some(server) = Server::start() {
            hook_refusal(&server, &server.transport(), push);
        }
    }

    #[test]
    fn credentials_certificates_and_urls_are_checked() {
        let Some(server) = Server::start() else {
            return;
        };
        server.create("guarded");
        let url = server.url("guarded");
        let work = Work::new();
        let c1 = work.commit("a.txt", "a\n");
        let password = server.var("GIT_HTTPS_PASSWORD");

        let wrong = server.dir.path().join("wrong");
        std::fs::write(&wrong, "not-the-password\n").unwrap();
        let t = Transport {
            token: Some(Token::File(wrong.clone())),
            ..server.transport()
        };
        let e = push(&t, &url, MAIN, c1, &mut never).unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Auth { .. })),
            "{e:?}"
        );
        assert_eq!((e.outcome(), e.is_retryable()), ("auth", false));
        let shown = e.to_string();
        assert!(
            shown.contains(&format!(
                "the server refused user `provisio` with the token file {}",
                wrong.display()
            )),
            "{shown}"
        );
        assert!(
            !shown.contains("not-the-password") && !shown.contains(password),
            "{shown}"
        );

        let t = Transport {
            token: None,
            ..server.transport()
        };
        let e = push(&t, &url, MAIN, c1, &mut never).unwrap_err();
        assert!(e.to_string().contains("none is configured"), "{e}");

        // The server's CA is not in the system's store: refused without the bundle.
        let t = Transport {
            ca_file: None,
            ..server.transport()
        };
        let e = push(&t, &url, MAIN, c1, &mut never).unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Verify { .. })),
            "{e:?}"
        );
        assert_eq!((e.outcome(), e.is_retryable()), ("verify", false));
        assert!(e.to_string().contains("--git-ca-file"), "{e}");

        let e = push(
            &server.transport(),
            &server.url("absent"),
            MAIN,
            c1,
            &mut never,
        )
        .unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Setup { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("HTTP 404"), "{e}");

        // A dumb server: info/refs as a static file.
        let www = server.dir.path().join("server/www/static.git/info");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("refs"), format!("{c1}\trefs/heads/main\n")).unwrap();
        let base = server.var("GIT_HTTPS_URL").trim_end_matches("/git");
        let e = push(
            &server.transport(),
            &format!("{base}/static.git"),
            MAIN,
            c1,
            &mut never,
        )
        .unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Setup { .. })),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("does not speak git's smart HTTP protocol"),
            "{e}"
        );
        assert!(!e.is_retryable());
    }

    /// A request a fake server received: its head and its body.
    type Request = (String, Vec<u8>);

    /// A fake server on 127.0.0.1: one canned HTTP answer per connection, in order; what
    /// each request was (head and body) is kept.
    struct Fake {
        url: String,
        requests: std::sync::Arc<Mutex<Vec<Request>>>,
        thread: std::thread::JoinHandle<()>,
    }

    fn fake(answers: impl FnOnce(&str) -> Vec<Vec<u8>>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let answers = answers(&origin);
        let url = format!("{origin}/r.git");
        let requests: std::sync::Arc<Mutex<Vec<Request>>> = Default::default();
        let kept = requests.clone();
        let thread = std::thread::spawn(move || {
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .map_or(0, |n| n.trim().parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                kept.lock().unwrap().push((head, body));
                let mut stream = reader.into_inner();
                stream.write_all(&answer).unwrap();
            }
        });
        Fake {
            url,
            requests,
            thread,
        }
    }

    fn answer(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn advertisement(caps: &str) -> Vec<u8> {
        let first = format!("{ZERO_ID} capabilities^{{}}\0{caps}\n");
        let mut body = pkt(b"# service=git-receive-pack\n");
        body.extend_from_slice(b"0000");
        body.extend(pkt(first.as_bytes()));
        body.extend_from_slice(b"0000");
        answer("200 OK", ADVERTISEMENT_TYPE, &body)
    }

    fn result(body: &[u8]) -> Vec<u8> {
        answer("200 OK", RESULT_TYPE, body)
    }

    /// Pushes a small fake pack to a fake server giving `answers`; the failure, and the
    /// requests it received.
    fn push_to_fake(
        answers: impl FnOnce(&str) -> Vec<Vec<u8>>,
    ) -> (Result<(), PushFailure>, Vec<Request>) {
        let server = fake(answers);
        let new = Oid::from_str(B).unwrap();
        let r = push(&Transport::default(), &server.url, MAIN, new, &mut |_| {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(b"PACK-bytes").unwrap();
            std::io::Seek::rewind(&mut f).unwrap();
            Ok(f)
        });
        server.thread.join().unwrap();
        let requests = std::mem::take(&mut *server.requests.lock().unwrap());
        (r, requests)
    }

    const B: &str = "2222222222222222222222222222222222222222";

    fn protocol(r: Result<(), PushFailure>) -> String {
        match r {
            Err(e @ PushFailure::Remote(RemoteError::Protocol { .. })) => {
                assert!(!e.is_retryable(), "{e}");
                e.to_string()
            }
            other => panic!("expected a protocol failure, got {other:?}"),
        }
    }

    #[test]
    fn a_reference_name_git_refuses_is_refused_before_connecting() {
        for bad in [
            "main",
            "refs/heads/a b",
            "refs/heads/a\0b",
            "refs/heads/x..y",
        ] {
            let e = push(
                &Transport::default(),
                "http://127.0.0.1:9/r.git",
                bad,
                Oid::ZERO_SHA1,
                &mut never,
            )
            .unwrap_err();
            assert!(e.to_string().contains("is not a reference name"), "{e}");
        }
    }

    #[test]
    fn the_request_is_what_receive_pack_reads() {
        let ok = pkts_of(&[b"unpack ok\n", b"ok refs/heads/main\n"]);
        let (r, requests) =
            push_to_fake(|_| vec![advertisement("report-status delete-refs"), result(&ok)]);
        r.unwrap();
        let (get, post) = (&requests[0], &requests[1]);
        assert!(
            get.0
                .starts_with("GET /r.git/info/refs?service=git-receive-pack HTTP/1.1"),
            "{}",
            get.0
        );
        assert!(
            post.0.starts_with("POST /r.git/git-receive-pack HTTP/1.1"),
            "{}",
            post.0
        );
        let head = post.0.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/x-git-receive-pack-request"),
            "{head}"
        );
        assert!(
            head.contains("accept: application/x-git-receive-pack-result"),
            "{head}"
        );
        assert!(!head.contains("authorization"), "{head}");
        let mut expected = pkt(format!("{ZERO_ID} {B} {MAIN}\0report-status").as_bytes());
        expected.extend_from_slice(b"0000PACK-bytes");
        assert_eq!(post.1, expected);
        assert!(
            head.contains(&format!("content-length: {}", expected.len())),
            "{head}"
        );
    }

    fn pkts_of(lines: &[&[u8]]) -> Vec<u8> {
        let mut out: Vec<u8> = lines.iter().flat_map(|l| pkt(l)).collect();
        out.extend_from_slice(b"0000");
        out
    }

    #[test]
    fn answers_breaking_the_protocol_are_refused_precisely() {
        let adv = || advertisement("report-status side-band-64k");
        // The advertisement.
        let (r, _) =
            push_to_fake(|_| vec![answer("200 OK", "text/plain", b"x\trefs/heads/main\n")]);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("content type `text/plain`"), "{e}");
        let (r, _) = push_to_fake(|_| vec![answer("200 OK", ADVERTISEMENT_TYPE, b"00zz")]);
        assert!(protocol(r).contains("`00zz` is not 4 hex digits"));
        let (r, _) = push_to_fake(|_| vec![answer("200 OK", ADVERTISEMENT_TYPE, b"fff9")]);
        assert!(protocol(r).contains("above the limit"));
        let (r, _) = push_to_fake(|_| vec![advertisement("delete-refs ofs-delta")]);
        let e = r.unwrap_err();
        assert!(
            e.to_string().contains("does not offer `report-status`"),
            "{e}"
        );
        let (r, _) = push_to_fake(|_| {
            vec![answer(
                "200 OK",
                ADVERTISEMENT_TYPE,
                b"001f# service=git-rec",
            )]
        });
        let e = r.unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Network { .. })) && e.is_retryable(),
            "{e:?}"
        );
        let (r, _) =
            push_to_fake(|_| vec![answer("503 Service Unavailable", "text/plain", b"busy")]);
        let e = r.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert!(
            format!("{:?}", std::error::Error::source(&e)).contains("HTTP 503"),
            "{e:?}"
        );

        // The report.
        let banded = |band: u8, data: &[u8]| {
            let mut d = vec![band];
            d.extend_from_slice(data);
            let mut out = pkt(&d);
            out.extend_from_slice(b"0000");
            out
        };
        let report = pkts_of(&[b"unpack ok\n", b"ok refs/heads/other\n"]);
        let (r, _) = push_to_fake(|_| vec![adv(), result(&banded(1, &report))]);
        assert!(protocol(r).contains("the report says nothing of refs/heads/main"));
        let (r, _) = push_to_fake(|_| vec![adv(), result(&banded(1, b"0009unpa"))]);
        assert!(
            matches!(r, Err(PushFailure::Remote(RemoteError::Network { .. }))),
            "{r:?}"
        );
        let (r, _) = push_to_fake(|_| vec![adv(), result(&banded(2, b"only talk\n"))]);
        assert!(protocol(r).contains("holds no report"));
        let (r, _) = push_to_fake(|_| vec![adv(), result(&pkts_of(&[b"1234"]))]);
        assert!(protocol(r).contains("band 49"));
        let (r, _) = push_to_fake(|_| vec![adv(), answer("200 OK", "text/html", b"<html>")]);
        assert!(protocol(r).contains("content type `text/html`"));
        let (r, _) = push_to_fake(|_| vec![adv(), result(&banded(3, b"fatal: out of space\n"))]);
        let e = r.unwrap_err();
        assert!(
            matches!(&e, PushFailure::Refused { message, .. } if message == "the remote failed: fatal: out of space"),
            "{e:?}"
        );
        let unpack = pkts_of(&[
            b"unpack index-pack abnormal exit\n",
            b"ng refs/heads/main unpacker error\n",
        ]);
        let (r, _) = push_to_fake(|_| vec![adv(), result(&banded(1, &unpack))]);
        let e = r.unwrap_err();
        assert!(
            e.to_string()
                .contains("could not unpack the pack: index-pack abnormal exit"),
            "{e}"
        );
    }

    fn redirect(to: &str) -> Vec<u8> {
        format!("HTTP/1.1 301 Moved Permanently\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
    }

    #[test]
    fn a_redirected_advertisement_moves_the_push_on_the_same_host_only() {
        let ok = pkts_of(&[b"unpack ok\n", b"ok refs/heads/main\n"]);
        let (r, requests) = push_to_fake(|origin| {
            vec![
                redirect(&format!("{origin}/moved.git{INFO_REFS}")),
                advertisement("report-status"),
                result(&ok),
            ]
        });
        r.unwrap();
        assert!(
            requests[1].0.starts_with("GET /moved.git/info/refs?"),
            "{}",
            requests[1].0
        );
        assert!(
            requests[2]
                .0
                .starts_with("POST /moved.git/git-receive-pack "),
            "{}",
            requests[2].0
        );

        // Another host (the same server under another name) is not pushed to.
        let (r, requests) = push_to_fake(|origin| {
            let other = origin.replace("127.0.0.1", "localhost");
            vec![
                redirect(&format!("{other}/r.git{INFO_REFS}")),
                answer("401 Unauthorized", "text/plain", b"who are you"),
            ]
        });
        let e = r.unwrap_err();
        assert!(e.to_string().contains("another host"), "{e}");
        assert_eq!(requests.len(), 2);

        // A redirect to something that is not info/refs names no repository.
        let (r, _) = push_to_fake(|origin| {
            vec![
                redirect(&format!("{origin}/login")),
                advertisement("report-status"),
            ]
        });
        let e = r.unwrap_err();
        assert!(
            e.to_string()
                .contains("not to another repository's info/refs"),
            "{e}"
        );
    }
}

//! provisio's own client for the sending side of git's receive-pack protocol over ssh
//! ("send-pack"): a pack provisio already holds, pushed to one branch of an ssh remote without
//! libgit2's pack builder (the ssh counterpart of [`super::send_http`]).
//!
//! One [`push`] is one ssh session with one channel (git's `Documentation/gitprotocol-pack.txt`,
//! "SSH Transport"; receive-pack has no protocol v2, so this is v0):
//!
//! 1. TCP connect (bounded by [`CONNECT_TIMEOUT_MS`]), the ssh handshake, then the host key
//!    checked against the `known_hosts` file by [`super::known_hosts::verify`], exactly as the
//!    libgit2 transport's certificate callback checks it ([`super::transport`]): never skipped,
//!    never added, and before any credential is offered.
//! 2. Public-key authentication with the key file of `--ssh-key-file` (no passphrase), as the
//!    user of the URL, else the configured one, else [`DEFAULT_SSH_USER`] (the choice of the
//!    transport's credentials callback, refused in its words).
//! 3. `git-receive-pack '<path>'` executed, the path formed as git forms it (`connect.c`,
//!    `parse_connect_url`: an `ssh://` URL's path percent-decoded and kept absolute, the part
//!    after the colon of an scp-like `host:path`, and in both a `/~user` or `x~` start cut to
//!    the `~`) and quoted as git's `sq_quote_buf` does (`quote.c`: single quotes, a `'` or `!`
//!    as `'\''` and `'\!'`).
//! 4. On that channel, the protocol of [`super::send_pack`]: the advertisement, the update
//!    command and a flush, the pack streamed from its file (a first push is ~360 MB: it is
//!    never held in memory), the report; then the channel closed and the exit status read.
//!
//! - **Crate**: `ssh2`, the libssh2 bindings, on the same `libssh2-sys` (0.3) as git2's ssh
//!   transport: one libssh2 in the binary, built once.
//! - **Timeouts**: [`CONNECT_TIMEOUT_MS`] to connect, [`IO_TIMEOUT_MS`] for each blocking ssh
//!   call (libssh2's session timeout), as libgit2's; no overall bound.
//! - **The remote's stderr** (git-shell's or receive-pack's `fatal: …`) is read when the
//!   remote ends before its advertisement or mid-way, and shown in the error: a remote that
//!   will not run receive-pack on that path (no such repository, a path the host refuses) is
//!   [`RemoteError::Setup`], as a 404 is for https.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::failure::PushFailure;
use super::send_pack::{self, Wire, command_pkts};
use super::transport::{
    CONNECT_TIMEOUT_MS, DEFAULT_SSH_USER, Endpoint, IO_TIMEOUT_MS, Scheme, redact,
};
use super::{Oid, RemoteError, Transport, known_hosts};

/// The most of the remote's stderr kept for a message.
const MAX_STDERR: u64 = 4096;
/// How much of the pack is read and written at a time: two of libssh2's 32 KiB packets.
const COPY_BUFFER: usize = 64 * 1024;

/// Pushes `new` to `refname` (`refs/heads/<branch>`) of the ssh remote `url`, never forced.
/// Reads the remote's advertisement; when the remote already has `refname` at `new`, returns
/// Ok without sending. Otherwise calls `pack_for(old)` with the remote's current value of
/// `refname` (None when the branch does not exist there): it returns the pack to send, a
/// `File` positioned at its start whose length is the pack's length, or a PushFailure (e.g.
/// Moved when `old` is not an ancestor of `new` locally) that is returned as is. Then sends
/// the update command and the pack and reads the report.
pub(super) fn push(
    transport: &Transport,
    url: &str,
    refname: &str,
    new: Oid,
    pack_for: &mut dyn FnMut(Option<Oid>) -> Result<std::fs::File, PushFailure>,
) -> Result<(), PushFailure> {
    let shown = redact(url);
    let setup = |reason: String| {
        PushFailure::Remote(RemoteError::Setup {
            url: shown.clone(),
            reason,
        })
    };
    if !refname.starts_with("refs/") || !git2::Reference::is_valid_name(refname) {
        return Err(setup(format!(
            "`{refname}` is not a reference name a push can update"
        )));
    }
    let ep = transport.check(url).map_err(PushFailure::Remote)?;
    if ep.scheme != Scheme::Ssh {
        return Err(setup("not an ssh URL".into()));
    }
    let command = receive_pack_command(url).map_err(setup)?;
    let session = connect(transport, &ep, &shown).map_err(PushFailure::Remote)?;
    let pushed = push_over(&session, &command, &shown, refname, new, pack_for);
    // Said, not needed: the channel is closed and its outcome known.
    let _ = session.disconnect(None, "provisio: push done", None);
    pushed
}

/// The push over an authenticated `session`: `command` run, then the protocol.
fn push_over(
    session: &ssh2::Session,
    command: &str,
    shown: &str,
    refname: &str,
    new: Oid,
    pack_for: &mut dyn FnMut(Option<Oid>) -> Result<std::fs::File, PushFailure>,
) -> Result<(), PushFailure> {
    let mut remote = Channel::exec(session, command, shown).map_err(PushFailure::Remote)?;
    let adv = match send_pack::read_advertisement(&mut remote.channel, refname) {
        Ok(adv) => adv,
        Err(e) => return Err(remote.not_started(e)),
    };
    if let Some(reason) = send_pack::unusable(&adv) {
        remote.end_without_command();
        return Err(PushFailure::Remote(RemoteError::Setup {
            url: shown.to_owned(),
            reason,
        }));
    }
    if adv.current == Some(new) {
        remote.end_without_command();
        return Ok(());
    }
    let pack = match pack_for(adv.current) {
        Ok(pack) => pack,
        Err(e) => {
            remote.end_without_command();
            return Err(e);
        }
    };
    let sideband = adv.has("side-band-64k");
    let command = command_pkts(&adv, refname, new, sideband);
    remote.send(&command, pack)?;
    let outcome = send_pack::read_outcome(&mut remote.channel, sideband, shown, refname);
    match outcome {
        Err(PushFailure::Remote(RemoteError::Network { source, .. })) => {
            Err(remote.ended(source.to_string()))
        }
        other => {
            remote.close();
            other
        }
    }
}

/// The command run on the remote for `url`: `git-receive-pack` and the repository's path,
/// formed and quoted as git does.
fn receive_pack_command(url: &str) -> Result<String, String> {
    let path = remote_path(url)?;
    Ok(format!("git-receive-pack {}", sq_quote(&path)))
}

/// The repository's path in an ssh `url` as git sends it (`connect.c`, `parse_connect_url`):
/// an `ssh://` URL's path percent-decoded, from its `/`; an scp-like `[user@]host:path`'s
/// from after the colon; either cut to a `~` that is its second character (`/~user/r.git`
/// becomes `~user/r.git`, and, as in git, `x~y` becomes `~y`).
fn remote_path(url: &str) -> Result<String, String> {
    let path = if url.contains("://") {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        percent_encoding::percent_decode_str(parsed.path())
            .decode_utf8()
            .map_err(|_| "the repository path is not UTF-8 once percent-decoded".to_owned())?
            .into_owned()
    } else {
        match url.split_once(':') {
            Some((_, path)) => path.to_owned(),
            None => return Err("not an scp-like `host:path` address".into()),
        }
    };
    if path.is_empty() || path == "/" {
        return Err("the URL names no repository path".into());
    }
    if path.as_bytes().get(1) == Some(&b'~') {
        return Ok(path[1..].to_owned());
    }
    Ok(path)
}

/// `s` quoted for a POSIX shell as git's `sq_quote_buf` does: in single quotes, each `'`
/// and `!` closed out, backslash-escaped and reopened (`'\''`, `'\!'`).
fn sq_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '!' {
            out.push_str("'\\");
            out.push(c);
            out.push('\'');
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// An ssh session to `ep`, its host key verified and the key accepted.
fn connect(
    transport: &Transport,
    ep: &Endpoint,
    shown: &str,
) -> Result<ssh2::Session, RemoteError> {
    let network = |source: Box<dyn std::error::Error + Send + Sync>| RemoteError::Network {
        url: shown.to_owned(),
        source,
    };
    // An IPv6 literal of an ssh:// URL comes bracketed.
    let host = ep.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = (host, ep.port)
        .to_socket_addrs()
        .map_err(|e| network(format!("cannot resolve {host}: {e}").into()))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, millis(CONNECT_TIMEOUT_MS)) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
        }
    }
    let Some(tcp) = tcp else {
        return Err(network(
            last.unwrap_or_else(|| format!("{host} resolves to no address"))
                .into(),
        ));
    };
    let mut session = ssh2::Session::new().map_err(|e| network(Box::new(e)))?;
    session.set_timeout(u32::try_from(IO_TIMEOUT_MS).unwrap_or(0));
    session.set_tcp_stream(tcp);
    session.handshake().map_err(|e| network(Box::new(e)))?;

    let verdict = match (&transport.known_hosts, session.host_key()) {
        (None, _) => Err("no known_hosts file: ssh host keys are always checked".to_owned()),
        (Some(_), None) => Err("libssh2 did not hand over the host key".to_owned()),
        (Some(file), Some((key, _))) => known_hosts::verify(file, host, ep.port, key),
    };
    verdict.map_err(|reason| RemoteError::Verify {
        url: shown.to_owned(),
        reason,
    })?;

    let user = ep
        .user
        .as_deref()
        .or(transport.username.as_deref())
        .unwrap_or(DEFAULT_SSH_USER);
    authenticate(&session, user, transport.ssh_key.as_deref(), shown)?;
    Ok(session)
}

/// Offers the key file `key` for `user`, once; a refusal in the words of the transport's
/// credentials callback.
fn authenticate(
    session: &ssh2::Session,
    user: &str,
    key: Option<&Path>,
    shown: &str,
) -> Result<(), RemoteError> {
    let auth = |reason: String| RemoteError::Auth {
        url: shown.to_owned(),
        reason,
    };
    let Some(key) = key else {
        return Err(auth(
            "the server asks for an ssh key and none is configured (--ssh-key-file)".into(),
        ));
    };
    match session.userauth_pubkey_file(user, None, key, None) {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(auth(format!(
            "the server asks for more than the key {} for user `{user}` (a second factor provisio cannot give)",
            key.display()
        ))),
        Err(e) => match e.code() {
            ssh2::ErrorCode::Session(
                libssh2_sys::LIBSSH2_ERROR_AUTHENTICATION_FAILED
                | libssh2_sys::LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED,
            ) => Err(auth(format!(
                "the server refused the key {} for user `{user}` (is it a deploy key of this repository, with write access for pushes?)",
                key.display()
            ))),
            ssh2::ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_FILE) => Err(RemoteError::Setup {
                url: shown.to_owned(),
                reason: format!(
                    "cannot use the ssh key {} ({}; OpenSSH or PEM format, without a passphrase)",
                    key.display(),
                    e.message()
                ),
            }),
            _ => Err(RemoteError::Network {
                url: shown.to_owned(),
                source: Box::new(e),
            }),
        },
    }
}

/// The channel running `git-receive-pack` on the remote.
struct Channel {
    channel: ssh2::Channel,
    shown: String,
}

impl Channel {
    fn exec(session: &ssh2::Session, command: &str, shown: &str) -> Result<Channel, RemoteError> {
        let network = |e: ssh2::Error| RemoteError::Network {
            url: shown.to_owned(),
            source: Box::new(e),
        };
        let mut channel = session.channel_session().map_err(network)?;
        channel.exec(command).map_err(|e| match e.code() {
            ssh2::ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED) => {
                RemoteError::Setup {
                    url: shown.to_owned(),
                    reason: format!("the server refused to run `{command}` ({})", e.message()),
                }
            }
            _ => network(e),
        })?;
        Ok(Channel {
            channel,
            shown: shown.to_owned(),
        })
    }

    /// The command, a flush and the pack, then the end of what is sent.
    fn send(&mut self, command: &[u8], pack: std::fs::File) -> Result<(), PushFailure> {
        let len = pack
            .metadata()
            .map_err(|e| {
                PushFailure::Remote(RemoteError::Setup {
                    url: self.shown.clone(),
                    reason: format!("cannot read the pack to send ({e})"),
                })
            })?
            .len();
        // No `flush`: ssh2's (libssh2_channel_flush) discards what was received and not yet
        // read, which may be the start of the report.
        let sent = self
            .channel
            .write_all(command)
            .and_then(|()| copy_pack(pack, len, &mut self.channel))
            .and_then(|()| self.channel.send_eof().map_err(std::io::Error::from));
        sent.map_err(|e| self.ended(format!("sending the pack: {e}")))
    }

    /// What the remote wrote on stderr, as one line of text (at most [`MAX_STDERR`] bytes).
    fn stderr(&mut self) -> String {
        let mut bytes = Vec::new();
        let _ = self
            .channel
            .stderr()
            .take(MAX_STDERR)
            .read_to_end(&mut bytes);
        send_pack::text(&bytes)
    }

    /// The exit status once the remote closed the channel; None if it is not known.
    fn exit_status(&mut self) -> Option<i32> {
        let _ = self.channel.close();
        self.channel.wait_close().ok()?;
        self.channel.exit_status().ok()
    }

    /// The remote ended (or the connection failed) before its advertisement: a remote that
    /// said why on stderr refused to run receive-pack there (no such repository, a path the
    /// host refuses), which retrying will not change; a silent end is the network's.
    fn not_started(mut self, e: Wire) -> PushFailure {
        let io = match e {
            Wire::Io(io) => io,
            malformed @ Wire::Malformed(_) => {
                self.close();
                return send_pack::wire(&self.shown, malformed);
            }
        };
        let said = self.stderr();
        let status = self.exit_status();
        if said.is_empty() {
            return PushFailure::Remote(RemoteError::Network {
                url: self.shown,
                source: Box::new(io),
            });
        }
        let status = status.map_or_else(String::new, |s| format!(", exit status {s}"));
        PushFailure::Remote(RemoteError::Setup {
            url: self.shown,
            reason: format!(
                "the remote did not run git-receive-pack (it said: {said}{status}); is the repository path right, and does the repository exist?"
            ),
        })
    }

    /// The connection failing while pushing (`what` went wrong): transient, with what the
    /// remote said on stderr.
    fn ended(&mut self, what: String) -> PushFailure {
        let said = self.stderr();
        let status = self.exit_status();
        let mut message = what;
        if !said.is_empty() {
            message.push_str(&format!(" (the remote said: {said})"));
        }
        if let Some(status) = status {
            message.push_str(&format!(" (exit status {status})"));
        }
        PushFailure::Remote(RemoteError::Network {
            url: self.shown.clone(),
            source: message.into(),
        })
    }

    /// Tells receive-pack there is no command (a flush, as git's send-pack does when it has
    /// nothing to update) and closes the channel.
    fn end_without_command(&mut self) {
        let _ = self.channel.write_all(b"0000");
        let _ = self.channel.send_eof();
        self.close();
    }

    /// Closes the channel; an exit status other than 0 after the report is logged (the report
    /// is the push's outcome).
    fn close(&mut self) {
        match self.exit_status() {
            Some(0) | None => {}
            Some(status) => {
                let said = self.stderr();
                tracing::warn!(
                    url = %self.shown,
                    "git-receive-pack exited with status {status} after its report: {said}"
                );
            }
        }
    }
}

/// Copies the `len` bytes of `pack` to `to`, [`COPY_BUFFER`] at a time: one buffer in memory,
/// whatever the pack's size.
fn copy_pack(mut pack: std::fs::File, len: u64, to: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(COPY_BUFFER as u64)).unwrap_or(COPY_BUFFER);
        let n = pack.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the pack file ended after {} of its {len} bytes",
                    len - left
                ),
            ));
        }
        to.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_formed_and_quoted_as_git_does() {
        // What git 2.47 runs for each URL (GIT_SSH printing its arguments).
        for (url, command) in [
            ("host:r.git", "git-receive-pack 'r.git'"),
            ("host:/srv/r.git", "git-receive-pack '/srv/r.git'"),
            ("host:~user/r.git", "git-receive-pack '~user/r.git'"),
            ("host:/~user/r.git", "git-receive-pack '~user/r.git'"),
            ("host:x~y", "git-receive-pack '~y'"),
            (
                "u@host:a b/it's!.git",
                r"git-receive-pack 'a b/it'\''s'\!'.git'",
            ),
            ("ssh://host/~user/r.git", "git-receive-pack '~user/r.git'"),
            (
                "ssh://u@host:2222/srv/r.git",
                "git-receive-pack '/srv/r.git'",
            ),
            ("ssh://host/r%20x.git", "git-receive-pack '/r x.git'"),
            ("ssh://host/x~y", "git-receive-pack '/x~y'"),
        ] {
            assert_eq!(receive_pack_command(url).unwrap(), command, "{url}");
        }
        for bad in ["ssh://host", "ssh://host/", "host:"] {
            let e = receive_pack_command(bad).unwrap_err();
            assert!(e.contains("no repository path"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_reference_name_or_another_scheme_is_refused_before_connecting() {
        let never = &mut |_: Option<Oid>| -> Result<std::fs::File, PushFailure> {
            panic!("no pack may be asked for")
        };
        let t = Transport::default();
        for bad in ["main", "refs/heads/a b", "refs/heads/x..y"] {
            let e = push(&t, "ssh://127.0.0.1:9/r.git", bad, Oid::ZERO_SHA1, never).unwrap_err();
            assert!(e.to_string().contains("is not a reference name"), "{e}");
        }
        let e = push(
            &t,
            "https://127.0.0.1:9/r.git",
            "refs/heads/main",
            Oid::ZERO_SHA1,
            never,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not an ssh URL"), "{e}");
        // No known_hosts: refused by the transport's check, nothing dialled.
        let e = push(
            &t,
            "ssh://127.0.0.1:9/r.git",
            "refs/heads/main",
            Oid::ZERO_SHA1,
            never,
        )
        .unwrap_err();
        assert!(e.to_string().contains("known_hosts"), "{e}");
    }
}

/// Pushes to Debian's OpenSSH `sshd` serving git through git-shell on 127.0.0.1
/// (`tests/tools/git-ssh-server.sh`). Packs are made by stock `git pack-objects`.
#[cfg(test)]
mod live {
    use std::fs::File;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::super::send_http::live::{
        GitServer, MAIN, Work, first_second_and_already_there, git, hook_refusal,
        moved_keeps_its_branch, never, value,
    };
    use super::*;

    /// A running ssh git server.
    struct Server(GitServer);

    impl std::ops::Deref for Server {
        type Target = GitServer;
        fn deref(&self) -> &GitServer {
            &self.0
        }
    }

    impl Server {
        /// None (after saying so) when sshd is missing and CI does not require it.
        fn start() -> Option<Server> {
            let sshd = Command::new("sh")
                .args(["-c", "command -v sshd || test -x /usr/sbin/sshd"])
                .output()
                .is_ok_and(|o| o.status.success());
            let missing =
                (!sshd).then(|| "ssh git server: missing sshd (Debian: openssh-server)".to_owned());
            GitServer::start("git-ssh-server.sh", "GIT_SSH", missing).map(Server)
        }

        /// The client key and the server's host keys.
        fn transport(&self) -> Transport {
            Transport {
                ssh_key: Some(self.var("GIT_SSH_KEY").into()),
                known_hosts: Some(self.var("GIT_SSH_KNOWN_HOSTS").into()),
                ..Transport::default()
            }
        }

        /// How many logins sshd accepted so far.
        fn logins(&self) -> usize {
            std::fs::read_to_string(self.dir.path().join("server/sshd.log"))
                .unwrap_or_default()
                .matches("Accepted publickey")
                .count()
        }
    }

    fn fsck(bare: &Path) {
        git(bare, &["fsck", "--full", "--strict", "--no-progress"]);
    }

    /// A new ed25519 key pair in `dir`: the private key's path.
    fn keygen(dir: &Path, name: &str) -> PathBuf {
        let key = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-keygen");
        key
    }

    #[test]
    fn a_first_push_a_second_on_top_and_one_already_there() {
        let Some(server) = Server::start() else {
            return;
        };
        let t = server.transport();
        let (work, url, bare) = first_second_and_already_there(&server, &t, push);

        // The same repository by a `/~/` path (cut to `~/`, as git does).
        let tilde = url.replace("/first.git", "/~/first.git");
        let c3 = work.commit("c.txt", "c\n");
        push(&t, &tilde, MAIN, c3, &mut |old| Ok(work.pack(c3, old))).unwrap();
        assert_eq!(value(&bare, MAIN), Some(c3));
        fsck(&bare);
    }

    #[test]
    fn a_remote_that_moved_is_moved_and_keeps_its_branch() {
        if let Some(server) = Server::start() {
            moved_keeps_its_branch(&server, &server.transport(), push);
        }
    }

    #[test]
    fn an_unknown_or_changed_host_key_is_refused_before_any_login() {
        let Some(server) = Server::start() else {
            return;
        };
        let bare = server.create("guarded");
        let url = server.url("guarded");
        let work = Work::new();
        let c1 = work.commit("a.txt", "a\n");
        let keys = tempfile::tempdir().unwrap();
        let port = server.var("GIT_SSH_PORT");
        let logins = server.logins();

        // Another host's keys only.
        let unknown = keys.path().join("unknown_hosts");
        let real = std::fs::read_to_string(server.var("GIT_SSH_KNOWN_HOSTS")).unwrap();
        std::fs::write(
            &unknown,
            real.replace(&format!("[127.0.0.1]:{port}"), "git.example.com"),
        )
        .unwrap();
        let t = Transport {
            known_hosts: Some(unknown.clone()),
            ..server.transport()
        };
        let e = push(&t, &url, MAIN, c1, &mut never).unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Verify { .. })),
            "{e:?}"
        );
        assert_eq!((e.outcome(), e.is_retryable()), ("verify", false));
        assert!(
            e.to_string().contains(&format!(
                "the host [127.0.0.1]:{port} is not in the known_hosts file"
            )),
            "{e}"
        );

        // This host, with keys of every type it has, none of them its own.
        let changed = keys.path().join("changed_hosts");
        let mut lines = String::new();
        for (name, t) in [("h1", "ed25519"), ("h2", "ecdsa"), ("h3", "rsa")] {
            let key = keys.path().join(name);
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", t, "-N", "", "-f"])
                .arg(&key)
                .output()
                .unwrap();
            assert!(out.status.success());
            let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            let public: Vec<&str> = public.split_whitespace().take(2).collect();
            lines.push_str(&format!("[127.0.0.1]:{port} {}\n", public.join(" ")));
        }
        std::fs::write(&changed, lines).unwrap();
        let t = Transport {
            known_hosts: Some(changed),
            ..server.transport()
        };
        let e = push(&t, &url, MAIN, c1, &mut never).unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Verify { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("CHANGED"), "{e}");

        assert_eq!(
            server.logins(),
            logins,
            "a key was offered to an unverified host"
        );
        assert_eq!(value(&bare, MAIN), None);
    }

    #[test]
    fn a_refused_or_missing_key_is_an_authentication_failure() {
        let Some(server) = Server::start() else {
            return;
        };
        let bare = server.create("locked");
        let url = server.url("locked");
        let work = Work::new();
        let c1 = work.commit("a.txt", "a\n");
        let keys = tempfile::tempdir().unwrap();
        let stranger = keygen(keys.path(), "stranger");
        let t = Transport {
            ssh_key: Some(stranger.clone()),
            ..server.transport()
        };
        let e = push(&t, &url, MAIN, c1, &mut never).unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Auth { .. })),
            "{e:?}"
        );
        assert_eq!((e.outcome(), e.is_retryable()), ("auth", false));
        let user = server.var("GIT_SSH_USER");
        assert!(
            e.to_string().contains(&format!(
                "the server refused the key {} for user `{user}` (is it a deploy key of this repository, with write access for pushes?)",
                stranger.display()
            )),
            "{e}"
        );

        let t = Transport {
            ssh_key: None,
            ..server.transport()
        };
        let e = push(&t, &url, MAIN, c1, &mut never).unwrap_err();
        assert!(
            matches!(e, PushFailure::Remote(RemoteError::Auth { .. })),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("none is configured (--ssh-key-file)"),
            "{e}"
        );

        // The user of the configuration when the URL names none: one sshd does not let in.
        let t = Transport {
            username: Some("nobody-here".into()),
            ..server.transport()
        };
        let port = server.var("GIT_SSH_PORT");
        let e = push(
            &t,
            &format!("ssh://127.0.0.1:{port}/locked.git"),
            MAIN,
            c1,
            &mut never,
        )
        .unwrap_err();
        assert!(e.to_string().contains("for user `nobody-here`"), "{e}");
        assert_eq!(value(&bare, MAIN), None);
    }

    #[test]
    fn a_missing_repository_is_a_setup_failure_with_the_remotes_words() {
        let Some(server) = Server::start() else {
            return;
        };
        let work = Work::new();
        let c1 = work.commit("a.txt", "a\n");
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
        assert!(!e.is_retryable());
        assert!(
            e.to_string()
                .contains("'absent.git' does not appear to be a git repository"),
            "{e}"
        );
    }

    #[test]
    fn a_hook_refusal_is_refused_with_the_hooks_message() {
        if let Some(server) = Server::start() {
            hook_refusal(&server, &server.transport(), push);
        }
    }

    /// The process's peak resident memory (KiB) since it was last reset.
    fn peak_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// A ~300 MB pack (incompressible blobs, stored by git uncompressed) goes through a
    /// bounded amount of memory: it is streamed from its file, never loaded. Alone in its
    /// process, as the peak is the process's: `cargo test --lib
    /// io::repo::send_ssh::live::a_large_pack -- --ignored --exact --nocapture`.
    #[test]
    #[ignore = "writes and pushes ~300 MB: run alone with -- --ignored"]
    fn a_large_pack_is_streamed_in_bounded_memory() {
        let Some(server) = Server::start() else {
            return;
        };
        let bare = server.create("large");
        let work = Work::new();
        git(work.0.path(), &["config", "core.compression", "0"]);
        git(work.0.path(), &["config", "pack.compression", "0"]);
        // Pseudo-random bytes (xorshift), written 1 MiB at a time.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunk = vec![0u8; 1 << 20];
        for file in 0..3 {
            let mut f = File::create(work.0.path().join(format!("blob{file}"))).unwrap();
            for _ in 0..100 {
                for b in chunk.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b.copy_from_slice(&x.to_le_bytes());
                }
                std::io::Write::write_all(&mut f, &chunk).unwrap();
            }
        }
        drop(chunk);
        git(work.0.path(), &["add", "."]);
        git(work.0.path(), &["commit", "-q", "-m", "large"]);
        let c1 = Oid::from_str(&git(work.0.path(), &["rev-parse", "HEAD"])).unwrap();
        let pack = work.pack(c1, None);
        let len = pack.metadata().unwrap().len();
        assert!(len > 300_000_000, "{len}");

        // Reset the peak (Linux's clear_refs "5"), then push.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak_kib();
        let started = std::time::Instant::now();
        let mut pack = Some(pack);
        push(
            &server.transport(),
            &server.url("large"),
            MAIN,
            c1,
            &mut |_| Ok(pack.take().unwrap()),
        )
        .unwrap();
        let peak = peak_kib();
        eprintln!(
            "pushed a {len}-byte pack over ssh in {:?}: peak RSS {before} KiB before, {peak} KiB during",
            started.elapsed()
        );
        assert!(
            peak < before + 64 * 1024,
            "peak {peak} KiB, {before} KiB before"
        );
        assert_eq!(value(&bare, MAIN), Some(c1));
        fsck(&bare);
    }
}

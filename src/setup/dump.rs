//! A database's consistent dump with the server's own tool, `mariadb-dump
//! --single-transaction`, run as a child process and streamed through gzip while both the
//! dump's and the compressed bytes are hashed. The account's password reaches the tool in an
//! option file read from an inherited pipe (`--defaults-extra-file=/dev/fd/N`): never in its
//! argv (`/proc/<pid>/cmdline`), its environment (`MYSQL_PWD`) or on disk. Options and why:
//! `docs/lifecycle.md`, "Backup".

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use super::SetupError;

/// The dump tool (MariaDB's client; its name on the image's `PATH`).
pub const DUMP_TOOL: &str = "mariadb-dump";

/// The options after the option file, before the database (MariaDB's mariadb-dump page):
/// a consistent snapshot without locks, rows streamed, stored programs included, binary
/// columns as hex, no dump date (same data, same bytes), the databases' character set.
pub const DUMP_OPTIONS: [&str; 9] = [
    "--single-transaction",
    "--quick",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
    "--no-tablespaces",
    "--skip-dump-date",
    "--default-character-set=utf8mb4",
];

/// gzip level of the dumps.
pub const GZIP_LEVEL: u32 = 6;

/// The read-only account the dumps run as.
pub struct Account {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What the manifest records of one database's plain (uncompressed) dump.
#[derive(Debug)]
pub struct Dump {
    pub uncompressed_size: u64,
    pub uncompressed_sha256: String,
}

/// A value of an option file, quoted (`\` and `"` escaped).
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The option file the tool reads: the account and the server.
fn option_file(host: &str, port: u16, account: &Account) -> String {
    format!(
        "[client]\nuser={}\npassword={}\nhost={}\nport={port}\nprotocol=TCP\n",
        quoted(&account.user),
        quoted(&account.password),
        quoted(host)
    )
}

fn io_error(action: &'static str, database: &str, source: std::io::Error) -> SetupError {
    SetupError::Io {
        action,
        path: format!("{DUMP_TOOL} {database}"),
        source,
    }
}

/// A pipe whose read end the child inherits (no `O_CLOEXEC`), holding `text`; the write end
/// is closed before returning, so the child reads the text and then end of file.
fn inheritable_pipe_with(text: &str) -> std::io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // Both ends close-on-exec from the start: the write end must never leak into a child,
    // not even one another thread forks before a later fcntl (holding the write end open,
    // that child would keep the tool from ever seeing end of file).
    // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2(2) succeeded: both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Only the read end is inherited.
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if text.len() >= 4096 {
        // Larger than PIPE_BUF: the write could block with nobody reading yet.
        return Err(std::io::Error::other("option file too large for a pipe"));
    }
    std::fs::File::from(write).write_all(text.as_bytes())?;
    Ok(read)
}

/// The tool's `--version` line (for the manifest).
pub fn tool_version() -> Result<String, SetupError> {
    let out = Command::new(DUMP_TOOL)
        .arg("--version")
        .output()
        .map_err(|e| io_error("run", "--version", e))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Dumps `database` of the server at `host:port` as `account`, gzip-compressed into `out` as
/// it comes (64 KiB at a time: nothing whole in memory). A non-zero exit is an error naming
/// the tool's first stderr line; a failure of `out` stops the dump (the caller may know more
/// of it than its `io::Error` says).
pub fn dump_database<W: Write>(
    host: &str,
    port: u16,
    account: &Account,
    database: &str,
    out: &mut W,
) -> Result<Dump, SetupError> {
    let options = inheritable_pipe_with(&option_file(host, port, account))
        .map_err(|e| io_error("pass the option file to", database, e))?;
    let mut child = Command::new(DUMP_TOOL)
        // Must be the first argument (MariaDB's option-file documentation).
        .arg(format!(
            "--defaults-extra-file=/dev/fd/{}",
            options.as_raw_fd()
        ))
        .args(DUMP_OPTIONS)
        .arg(database)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_error("start", database, e))?;
    drop(options); // the child holds its copy
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(16 * 1024).read_to_end(&mut text);
        // Drain the rest so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut gzip = GzBuilder::new()
        .mtime(0)
        .write(out, Compression::new(GZIP_LEVEL));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let streamed = loop {
        match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
                if let Err(e) = gzip.write_all(&buf[..n]) {
                    break Err(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    drop(stdout);
    let status = child.wait().map_err(|e| io_error("wait for", database, e));
    let stderr_text = errors.join().unwrap_or_default();
    // The writer's own failure first (a refused upload), not the tool's broken pipe.
    streamed.map_err(|e| io_error("write the dump of", database, e))?;
    let status = status?;
    if !status.success() {
        let first = stderr_text.lines().next().unwrap_or("").to_owned();
        return Err(SetupError::Refused {
            service: "mysql",
            action: format!("dump database {database}"),
            detail: format!(
                "{DUMP_TOOL} exited {}: {first}",
                status
                    .code()
                    .map_or_else(|| "on a signal".to_owned(), |c| c.to_string())
            ),
        });
    }
    gzip.finish()
        .map_err(|e| io_error("compress the dump of", database, e))?;
    Ok(Dump {
        uncompressed_size: size,
        uncompressed_sha256: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_file_quotes_values_and_holds_the_password() {
        let text = option_file(
            "db.example",
            3306,
            &Account {
                user: "backup".into(),
                password: r#"a"b\c"#.into(),
            },
        );
        assert_eq!(
            text,
            "[client]\nuser=\"backup\"\npassword=\"a\\\"b\\\\c\"\nhost=\"db.example\"\nport=3306\nprotocol=TCP\n"
        );
    }

    #[test]
    fn the_pipe_gives_its_text_then_end_of_file() {
        let fd = inheritable_pipe_with("hello").unwrap();
        // SAFETY: F_GETFD on a descriptor this test owns.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, 0, "the read end is the child's");
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}

//! Host-key verification for git over ssh against a `known_hosts` file (OpenSSH's format, read
//! with the `ssh-key` crate: plain and hashed `|1|salt|hash` host names, `[host]:port`
//! entries, `*`/`?` patterns and `!` negations, `@revoked` keys). git2's certificate callback
//! does not say what libgit2 itself concluded (and libgit2 only reads `~/.ssh/known_hosts`),
//! so the host key libssh2 received is compared here, and this file is the only authority: a
//! host or key it does not list is refused, never added.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use ssh_key::known_hosts::{Entry, HostPatterns, KnownHosts, Marker};
use ssh_key::{HashAlg, PublicKey};

/// The name OpenSSH looks a host up by: `host` on port 22, `[host]:port` otherwise.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// Accepts the host key `offered` (SSH wire encoding, as libssh2 hands it over) for
/// `host:port` when `file` lists that key for that host; otherwise says why not, in words
/// an operator can act on.
pub fn verify(file: &Path, host: &str, port: u16, offered: &[u8]) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "cannot read the known_hosts file {} ({e}); without it no ssh host key is accepted",
            file.display()
        )
    })?;
    let offered = PublicKey::from_bytes(offered)
        .map_err(|e| format!("{host}:{port} sent a host key provisio cannot read ({e})"))?;
    let name = lookup_name(host, port);
    let mut for_host: Vec<Entry> = Vec::new();
    // A line that does not parse is skipped (as OpenSSH does), never fatal to the others.
    for entry in KnownHosts::new(&text).flatten() {
        if matches(entry.host_patterns(), &name) {
            for_host.push(entry);
        }
    }
    let same_key = |e: &&Entry| e.public_key().key_data() == offered.key_data();
    let shown = format!(
        "{} {}",
        offered.algorithm().as_str(),
        offered.fingerprint(HashAlg::Sha256)
    );
    if for_host
        .iter()
        .filter(same_key)
        .any(|e| e.marker() == Some(&Marker::Revoked))
    {
        return Err(format!(
            "the host key of {name} ({shown}) is marked @revoked in {}",
            file.display()
        ));
    }
    if for_host
        .iter()
        .filter(same_key)
        .any(|e| e.marker().is_none())
    {
        return Ok(());
    }
    let listed: Vec<&Entry> = for_host.iter().filter(|e| e.marker().is_none()).collect();
    if listed.is_empty() {
        return Err(format!(
            "the host {name} is not in the known_hosts file {} (its key: {shown}); add the host's keys (ssh-keyscan), checked against the fingerprints the git host publishes",
            file.display()
        ));
    }
    if listed
        .iter()
        .any(|e| e.public_key().algorithm() == offered.algorithm())
    {
        return Err(format!(
            "the host key of {name} CHANGED: it sent {shown}, the known_hosts file {} lists another {} key; refused (someone may be intercepting the connection, or the host's key was replaced: check with the git host's administrators before changing the file)",
            file.display(),
            offered.algorithm().as_str()
        ));
    }
    let types: Vec<String> = listed
        .iter()
        .map(|e| e.public_key().algorithm().as_str().to_owned())
        .collect();
    Err(format!(
        "the host {name} sent its {} key ({shown}) but the known_hosts file {} lists only {} for it; add every key type of the host (ssh-keyscan lists them all)",
        offered.algorithm().as_str(),
        file.display(),
        types.join(", ")
    ))
}

/// Whether an entry's host patterns select `name`.
fn matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let mut mac = Hmac::<Sha1>::new_from_slice(salt).expect("HMAC takes keys of any size");
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut selected = false;
            for p in list {
                match p.strip_prefix('!') {
                    // A negated match rules the entry out, whatever else matches.
                    Some(neg) if glob(&neg.to_ascii_lowercase(), name) => return false,
                    Some(_) => {}
                    None => selected |= glob(&p.to_ascii_lowercase(), name),
                }
            }
            selected
        }
    }
}

/// OpenSSH's host pattern match: `*` any run of characters, `?` any one; nothing else is
/// special (`[` and `]` of `[host]:port` are literal).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    // Two ed25519 keys and an ECDSA key (public halves only).
    const ED_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK6RN902WRrPRL6bt79F60wF+JNDmSWgCAJitw/9EdSA";
    const ED_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVg1N36eLu0dXpMnkvew7svdFFH84WFmDUt6TUUitqX";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFqO5c20qBM8rY4dgsQpMeVLqJfQTDzqkFNB9m3YgWoecgIjWI7UJ/FsfofaElORKkPf+X4B7zelZRu7ZWY53KE=";

    fn wire(line: &str) -> Vec<u8> {
        let b64 = line.split_whitespace().nth(1).unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn a_listed_key_is_accepted_on_its_port_only() {
        let f = file(&format!(
            "# comment\n[127.0.0.1]:2222 {ED_A}\ngit.example.com {ED_B}\n"
        ));
        assert_eq!(verify(f.path(), "127.0.0.1", 2222, &wire(ED_A)), Ok(()));
        assert_eq!(verify(f.path(), "git.example.com", 22, &wire(ED_B)), Ok(()));
        // The same host on port 22 is another entry: not listed.
        let e = verify(f.path(), "127.0.0.1", 22, &wire(ED_A)).unwrap_err();
        assert!(e.contains("is not in the known_hosts file"), "{e}");
    }

    #[test]
    fn a_changed_key_is_refused_and_said_so() {
        let f = file(&format!("[127.0.0.1]:2222 {ED_A}\n"));
        let e = verify(f.path(), "127.0.0.1", 2222, &wire(ED_B)).unwrap_err();
        assert!(e.contains("CHANGED") && e.contains("SHA256:"), "{e}");
    }

    #[test]
    fn another_key_type_is_named() {
        let f = file(&format!("[127.0.0.1]:2222 {ED_A}\n"));
        let e = verify(f.path(), "127.0.0.1", 2222, &wire(ECDSA)).unwrap_err();
        assert!(
            e.contains("ecdsa-sha2-nistp256") && e.contains("lists only ssh-ed25519"),
            "{e}"
        );
    }

    #[test]
    fn hashed_names_patterns_negations_and_revocations() {
        // `ssh-keygen -H` form of "[127.0.0.1]:2222".
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let hashed = format!("|1|{}|{} {ED_A}\n", b64(salt), b64(&hash));
        let f = file(&hashed);
        assert_eq!(verify(f.path(), "127.0.0.1", 2222, &wire(ED_A)), Ok(()));
        assert!(verify(f.path(), "127.0.0.2", 2222, &wire(ED_A)).is_err());

        let f = file(&format!("*.example.com,!evil.example.com {ED_A}\n"));
        assert_eq!(verify(f.path(), "git.example.com", 22, &wire(ED_A)), Ok(()));
        assert!(verify(f.path(), "evil.example.com", 22, &wire(ED_A)).is_err());

        let f = file(&format!("git.example.com {ED_A}\n@revoked * {ED_A}\n"));
        let e = verify(f.path(), "git.example.com", 22, &wire(ED_A)).unwrap_err();
        assert!(e.contains("@revoked"), "{e}");
    }

    #[test]
    fn an_unparsable_line_does_not_hide_the_others_and_a_missing_file_refuses() {
        let f = file(&format!("garbage line\n[127.0.0.1]:2222 {ED_A}\n"));
        assert_eq!(verify(f.path(), "127.0.0.1", 2222, &wire(ED_A)), Ok(()));
        let e = verify(Path::new("/nonexistent/known_hosts"), "h", 22, &wire(ED_A)).unwrap_err();
        assert!(e.contains("cannot read the known_hosts file"), "{e}");
    }

    #[test]
    fn glob_is_openssh_s() {
        assert!(glob("*.example.com", "git.example.com"));
        assert!(glob("git?.example.com", "git1.example.com"));
        assert!(!glob("*.example.com", "example.com"));
        assert!(glob("[127.0.0.1]:*", "[127.0.0.1]:2222"));
        assert!(!glob("[127.0.0.1]:22", "[127.0.0.1]:2222"));
    }
}

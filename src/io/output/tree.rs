//! The output tree's paths, never through a link. Whoever can commit to the manifests
//! repository can plant a symbolic link where provisio expects a tenant directory, a file,
//! `argocd/` or the state file; following it would let `generate` delete and write files
//! outside the tree and `check` print a file from outside in its diff. So every component of
//! every path below the output root is inspected without following links
//! (`symlink_metadata`), files are opened with `O_NOFOLLOW` (and `O_NONBLOCK`, so a FIFO
//! planted there cannot hang a run) and must be regular files; a link, or anything that is
//! neither a directory nor a regular file, is an error naming the path. The output root
//! itself is the operator's choice and may be reached through links.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::{WriteError, io};

/// What a file-system entry is, when it is neither a directory nor a regular file.
fn odd_kind(t: &std::fs::FileType) -> Option<&'static str> {
    if t.is_symlink() {
        Some("symbolic link")
    } else if t.is_dir() || t.is_file() {
        None
    } else if t.is_fifo() {
        Some("FIFO")
    } else if t.is_socket() {
        Some("socket")
    } else if t.is_block_device() {
        Some("block device")
    } else if t.is_char_device() {
        Some("character device")
    } else {
        Some("special file")
    }
}

/// The refusal for an entry at `path` of kind `kind`.
pub(super) fn refusal(path: &Path, kind: &'static str) -> WriteError {
    if kind == "symbolic link" {
        WriteError::Symlink {
            path: path.to_path_buf(),
            target: std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".to_owned()),
        }
    } else {
        WriteError::NotAFile {
            path: path.to_path_buf(),
            kind,
        }
    }
}

/// Checks every existing component of `path` below `root`: each must be a directory, or
/// (the last) a regular file; never a link. Components that do not exist yet are fine
/// (provisio creates them as directories). A path outside `root` is checked as a whole.
pub fn no_link(root: &Path, path: &Path) -> Result<(), WriteError> {
    let rel = match path.strip_prefix(root) {
        Ok(r) => r,
        Err(_) => return check_one(path).map(drop),
    };
    let mut current = root.to_path_buf();
    for c in rel.components() {
        current.push(c);
        if !check_one(&current)? {
            return Ok(());
        }
    }
    Ok(())
}

/// `Ok(true)` when `path` exists and is a directory or a regular file, `Ok(false)` when it
/// does not exist, an error for anything else.
fn check_one(path: &Path) -> Result<bool, WriteError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => match odd_kind(&m.file_type()) {
            Some(kind) => Err(refusal(path, kind)),
            None => Ok(true),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("inspect", path)(e)),
    }
}

/// Whether `path` is a directory (not a link to one); `false` when absent.
pub fn is_real_dir(path: &Path) -> Result<bool, WriteError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => match odd_kind(&m.file_type()) {
            Some(kind) => Err(refusal(path, kind)),
            None => Ok(m.is_dir()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("inspect", path)(e)),
    }
}

/// The bytes of the regular file at `path`, `None` when absent; opened without following a
/// link and without blocking on a FIFO. Four system calls for a file that does not change
/// meanwhile: `open`, `fstat` (what it is, and its size), one `read`, `close`. Read back for
/// every unchanged file of every tenant a run releases, this is most of a bump's reading.
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>, WriteError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refusal(path, "symbolic link"));
        }
        Err(e) => return Err(io("read", path)(e)),
    };
    let meta = file.metadata().map_err(io("inspect", path))?;
    if let Some(kind) = odd_kind(&meta.file_type()).or(meta.is_dir().then_some("directory")) {
        return Err(WriteError::NotAFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    let bytes = read_to_end(&mut file, meta.len()).map_err(io("read", path))?;
    Ok(Some(bytes))
}

/// The rest of `file`, whose size was `size` when inspected. The buffer holds one byte more
/// than that, so a file still of that size is read in one `read`, which comes back short:
/// its end. `Read::read_to_end` would inspect the file again and ask its position (two more
/// system calls) and then make a second `read` to see the end. A file that shrank meanwhile
/// is read until a `read` returns nothing; one that grew, once the buffer is full, by
/// `read_to_end`, as before: it reserves what remains without touching it, where growing
/// the buffer by filling it with zeros would make it twice the file in resident memory.
fn read_to_end(file: &mut std::fs::File, size: u64) -> std::io::Result<Vec<u8>> {
    let size = usize::try_from(size).unwrap_or(usize::MAX - 1);
    let mut buf = vec![0; size + 1];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            // Short of what was asked: the end, at the inspected size or short of it.
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == size {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if len == buf.len() {
        // Grown since inspected.
        file.read_to_end(&mut buf)?;
        return Ok(buf);
    }
    buf.truncate(len);
    Ok(buf)
}

/// The entries directly below `dir` as (name, is a directory), sorted; none when `dir` does
/// not exist. `dir` itself and every entry must be a directory or a regular file.
pub fn children(dir: &Path) -> Result<Vec<(String, bool)>, WriteError> {
    Ok(children_with(dir, |_, _| ())?
        .into_iter()
        .map(|(name, is_dir, ())| (name, is_dir))
        .collect())
}

/// [`children`], each with what `with` takes from its directory entry (its stat data, say,
/// which `DirEntry::metadata` reads relative to the open directory, without a path lookup).
fn children_with<T>(
    dir: &Path,
    mut with: impl FnMut(&std::fs::DirEntry, bool) -> T,
) -> Result<Vec<(String, bool, T)>, WriteError> {
    if !is_real_dir(dir)? {
        return Ok(Vec::new());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        // `DirEntry::file_type` does not follow links.
        let t = entry.file_type().map_err(io("list", dir))?;
        if let Some(kind) = odd_kind(&t) {
            return Err(refusal(&entry.path(), kind));
        }
        let taken = with(&entry, t.is_dir());
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            t.is_dir(),
            taken,
        ));
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    Ok(out)
}

/// `file`'s path below `root`, `/`-separated (as the output's file maps key it).
pub fn relative(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    // A path joined from listed names is already in that form: taken as it is (this runs for
    // every file of every tree a release checks).
    if let Some(s) = rel.to_str()
        && !s.is_empty()
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.contains("//")
        && !s.split('/').any(|c| c == ".")
    {
        return s.to_owned();
    }
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every regular file below `dir`, recursively, sorted (none if it does not exist).
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    Ok(files_below_with(dir, |_| ())?
        .into_iter()
        .map(|(path, ())| path)
        .collect())
}

/// [`files_below`], each file with its stat data as listed (`lstat`'s, taken relative to the
/// open directory); `None` when it could not be taken (the file vanished since).
pub fn files_below_stat(
    dir: &Path,
) -> Result<Vec<(PathBuf, Option<std::fs::Metadata>)>, WriteError> {
    files_below_with(dir, |e| e.metadata().ok())
}

fn files_below_with<T>(
    dir: &Path,
    mut with: impl FnMut(&std::fs::DirEntry) -> T,
) -> Result<Vec<(PathBuf, T)>, WriteError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for (name, is_dir, taken) in children_with(&d, |e, is_dir| (!is_dir).then(|| with(e)))? {
            match taken {
                Some(t) if !is_dir => out.push((d.join(name), t)),
                _ => stack.push(d.join(name)),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for paths already in the output's form gives what the components give.
    #[test]
    fn relative_paths_are_the_components_joined() {
        let root = Path::new("/out");
        let joined = |file: &str| {
            let f = Path::new(file);
            f.strip_prefix(root)
                .unwrap_or(f)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        };
        for (file, want) in [
            ("/out/tenants-out/a/jobs.yaml", "tenants-out/a/jobs.yaml"),
            ("/out//tenants-out/./a/", "tenants-out/a"),
            ("/out/./x", "x"),
            ("/elsewhere/x", "//elsewhere/x"),
            ("rel//x/./y", "rel/x/y"),
            ("./x", "./x"),
        ] {
            assert_eq!(relative(root, Path::new(file)), want, "{file}");
            assert_eq!(want, joined(file), "{file}");
        }
    }

    /// Each file's stat data as listed is `lstat`'s.
    #[test]
    fn files_are_listed_with_their_lstat_data() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("t/d/e")).unwrap();
        for f in ["t/a", "t/d/b", "t/d/e/c"] {
            std::fs::write(r.join(f), f).unwrap();
        }
        let listed = files_below_stat(&r.join("t")).unwrap();
        assert_eq!(
            listed.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            files_below(&r.join("t")).unwrap()
        );
        assert_eq!(listed.len(), 3);
        for (p, m) in listed {
            let (m, l) = (m.unwrap(), std::fs::symlink_metadata(&p).unwrap());
            assert_eq!(
                (
                    m.ino(),
                    m.dev(),
                    m.size(),
                    m.mtime_nsec(),
                    m.ctime_nsec(),
                    m.mode()
                ),
                (
                    l.ino(),
                    l.dev(),
                    l.size(),
                    l.mtime_nsec(),
                    l.ctime_nsec(),
                    l.mode()
                )
            );
        }
    }

    #[test]
    fn links_and_fifos_are_refused_with_their_path() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s3cr3t").unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/f"), "ok").unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("a/link-dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), r.join("a/b/link-file")).unwrap();
        assert_eq!(read_file(&r.join("a/b/f")).unwrap().unwrap(), b"ok");
        assert_eq!(read_file(&r.join("a/b/none")).unwrap(), None);
        no_link(r, &r.join("a/b/f")).unwrap();
        no_link(r, &r.join("a/new/x")).unwrap();
        let e = no_link(r, &r.join("a/link-dir/secret")).unwrap_err();
        assert!(
            matches!(&e, WriteError::Symlink { path, .. } if path.ends_with("a/link-dir")),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&outside.path().display().to_string()),
            "{e}"
        );
        let e = read_file(&r.join("a/b/link-file")).unwrap_err();
        assert!(matches!(e, WriteError::Symlink { .. }), "{e}");
        assert!(matches!(
            files_below(&r.join("a")),
            Err(WriteError::Symlink { .. })
        ));
        let fifo = r.join("a/b/fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_file(&fifo).unwrap_err();
        assert!(
            matches!(e, WriteError::NotAFile { kind: "FIFO", .. }),
            "{e}"
        );
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_as_before() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("dir")).unwrap();
        std::os::unix::fs::symlink(r.join("dir"), r.join("link-to-dir")).unwrap();
        std::os::unix::fs::symlink(r.join("nowhere"), r.join("dangling")).unwrap();
        let e = read_file(&r.join("dir")).unwrap_err();
        assert!(
            matches!(&e, WriteError::NotAFile { kind: "directory", path } if path.ends_with("dir")),
            "{e}"
        );
        let e = read_file(&r.join("link-to-dir")).unwrap_err();
        assert!(
            matches!(&e, WriteError::Symlink { path, target }
                if path.ends_with("link-to-dir") && *target == r.join("dir").display().to_string()),
            "{e}"
        );
        let e = read_file(&r.join("dangling")).unwrap_err();
        assert!(
            matches!(&e, WriteError::Symlink { path, target }
                if path.ends_with("dangling") && *target == r.join("nowhere").display().to_string()),
            "{e}"
        );
        // A socket cannot be opened (ENXIO): an I/O error naming it, as before.
        let socket = r.join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let e = read_file(&socket).unwrap_err();
        assert!(
            matches!(&e, WriteError::Io { action: "read", path, source }
                if *path == socket && source.raw_os_error() == Some(libc::ENXIO)),
            "{e}"
        );
        assert!(matches!(
            files_below(r),
            Err(WriteError::Symlink { .. } | WriteError::NotAFile { .. })
        ));
    }

    #[test]
    fn a_file_gone_since_listed_is_none() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("f"), "x").unwrap();
        let listed = files_below(r).unwrap();
        assert_eq!(listed, vec![r.join("f")]);
        std::fs::remove_file(r.join("f")).unwrap();
        assert_eq!(read_file(&listed[0]).unwrap(), None);
    }

    #[test]
    fn files_are_read_whole_whatever_their_size() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for len in [0, 1, 4095, 4096, 4097, 1 << 20] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(r.join("f"), &bytes).unwrap();
            assert_eq!(read_file(&r.join("f")).unwrap().unwrap(), bytes, "{len}");
        }
    }

    #[test]
    fn a_file_that_grew_or_shrank_since_inspected_is_read_to_its_end() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        // Inspected when smaller (it grew), or larger (it shrank), than it is when read.
        for size in [0, 1, 100, 8191, 19_999, 20_000, 20_001, 1 << 20] {
            let mut f = std::fs::File::open(&path).unwrap();
            assert_eq!(read_to_end(&mut f, size).unwrap(), bytes, "{size}");
        }
    }

    /// main's (`779c300`) `read_file`, verbatim but for its name: what `read_file` must still
    /// answer, refusal for refusal and byte for byte.
    fn read_file_before(path: &Path) -> Result<Option<Vec<u8>>, WriteError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refusal(path, "symbolic link"));
            }
            Err(e) => return Err(io("read", path)(e)),
        };
        let meta = file.metadata().map_err(io("inspect", path))?;
        if let Some(kind) = odd_kind(&meta.file_type()).or(meta.is_dir().then_some("directory")) {
            return Err(WriteError::NotAFile {
                path: path.to_path_buf(),
                kind,
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).map_err(io("read", path))?;
        Ok(Some(bytes))
    }

    /// `read_file` and main's answer alike, with the same message, at `path`; the answer.
    fn same_as_before(path: &Path) -> String {
        let now = format!("{:?}", read_file(path));
        let before = format!("{:?}", read_file_before(path));
        assert_eq!(now, before, "{}", path.display());
        let (now, before) = (read_file(path), read_file_before(path));
        if let (Err(now), Err(before)) = (&now, &before) {
            assert_eq!(now.to_string(), before.to_string());
        }
        now.map(|b| {
            b.map(|b| b.len())
                .map_or("absent".into(), |n| format!("{n} bytes"))
        })
        .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn every_planted_entry_is_answered_as_main_answered_it() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(outside.path().join("secret"), "s3cr3t").unwrap();
        std::fs::create_dir_all(r.join("t/sub")).unwrap();
        for len in [0usize, 1, 4095, 4096, 4097, 65_536, (1 << 20) + 3] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(r.join(format!("t/sub/{len}")), bytes).unwrap();
        }
        symlink(r.join("t/sub"), r.join("t/link-to-dir")).unwrap();
        symlink(outside.path(), r.join("t/link-outside")).unwrap();
        symlink(r.join("t/nowhere"), r.join("t/dangling")).unwrap();
        symlink("nowhere/deeper", r.join("t/dangling-relative")).unwrap();
        symlink("/dev/zero", r.join("t/link-to-zero")).unwrap();
        symlink(outside.path().join("secret"), r.join("t/link-to-secret")).unwrap();
        symlink("link-to-self", r.join("t/link-to-self")).unwrap();
        let c = std::ffi::CString::new(r.join("t/fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let _listener = std::os::unix::net::UnixListener::bind(r.join("t/socket")).unwrap();
        // A device node where one may be made (root with CAP_MKNOD); `/dev/null` and
        // `/dev/zero` themselves below in any case.
        let c = std::ffi::CString::new(r.join("t/null").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
        let mut answers = Vec::new();
        for name in [
            "t/sub/0",
            "t/sub/1",
            "t/sub/4095",
            "t/sub/4096",
            "t/sub/4097",
            "t/sub/65536",
            "t/sub/1048579",
            "t/sub",
            "t",
            "t/absent",
            "t/sub/0/below-a-file",
            "t/link-to-dir",
            "t/link-outside",
            "t/dangling",
            "t/dangling-relative",
            "t/dangling/x",
            // A link in a directory's place is followed by the `open` of a file below it, by
            // main's build as by this one (`O_NOFOLLOW` guards the last component only): the
            // listing's checks are what refuse it.
            "t/link-to-dir/4096",
            "t/link-outside/secret",
            "t/link-to-zero",
            "t/link-to-secret",
            "t/link-to-self",
            "t/fifo",
            "t/socket",
        ] {
            answers.push((name, same_as_before(&r.join(name))));
        }
        if made == 0 {
            answers.push(("t/null", same_as_before(&r.join("t/null"))));
        }
        let answer = |name: &str| &answers.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(answer("t/sub/1048579"), "1048579 bytes");
        assert_eq!(answer("t/sub/0"), "0 bytes");
        assert_eq!(answer("t/absent"), "absent");
        assert_eq!(answer("t/dangling/x"), "absent");
        for link in [
            "t/link-to-dir",
            "t/dangling",
            "t/link-to-zero",
            "t/link-to-secret",
        ] {
            assert!(
                answer(link).contains("symbolic link"),
                "{link}: {}",
                answer(link)
            );
        }
        assert!(answer("t/fifo").contains("FIFO"), "{}", answer("t/fifo"));
        // Devices outside the tree: refused on what they are, never read.
        for dev in ["/dev/null", "/dev/zero"] {
            let a = same_as_before(Path::new(dev));
            assert!(a.contains("character device"), "{dev}: {a}");
        }
    }

    /// A FIFO is refused at once, with or without a writer holding it open, never waited on.
    #[test]
    fn a_fifo_never_blocks_the_read() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let alone = read_file(&path).map_err(|e| e.to_string());
            // A writer that never writes: a blocking read would wait for it forever.
            let _w = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map_err(|_| ());
            let _r = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path);
            let _w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let with_writer = read_file(&path).map_err(|e| e.to_string());
            tx.send((alone, with_writer)).unwrap();
        });
        let (alone, with_writer) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read_file blocked on a FIFO");
        for answer in [alone, with_writer] {
            assert!(answer.as_ref().unwrap_err().contains("FIFO"), "{answer:?}");
        }
    }

    /// A file that grew between `fstat` and `read` is read to its end without costing more
    /// memory than its size: the old `read_to_end` reserved what remained without touching
    /// it; a buffer grown by filling it with zeros is twice the file in resident memory.
    /// Measured in a child process (the peak of this one is every test's).
    #[test]
    fn a_file_grown_since_inspected_costs_no_more_memory_than_its_size() {
        const CHILD: &str = "PROVISIO_TEST_GROWN_READ";
        const SIZE: u64 = 256 << 20;
        if let Some(path) = std::env::var_os(CHILD) {
            let mut f = std::fs::File::open(path).unwrap();
            // Inspected one byte short of what it holds: it grew meanwhile.
            let bytes = read_to_end(&mut f, SIZE - 1).unwrap();
            assert_eq!(bytes.len() as u64, SIZE);
            // SAFETY: `getrusage` fills the zeroed struct it is given.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
            println!("peak-kib={}", usage.ru_maxrss);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Sparse: no disk, and read back as zeros.
        std::fs::File::create(&path).unwrap().set_len(SIZE).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "io::output::tree::tests::a_file_grown_since_inspected_costs_no_more_memory_than_its_size",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        let peak: u64 = stdout
            .split("peak-kib=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            peak < SIZE / 1024 * 3 / 2,
            "{peak} KiB resident at the peak to read a {} KiB file",
            SIZE / 1024
        );
    }

    /// A file appended to while it is read: every answer is a prefix of what the file ends
    /// up holding, never a byte that was not written, and the whole of it once written.
    #[test]
    fn a_file_appended_to_while_read_gives_a_prefix() {
        use std::io::Write;
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        let chunk: Vec<u8> = (0..4099u32).map(|i| (i % 253) as u8 + 1).collect();
        std::fs::write(&path, &chunk).unwrap();
        let writer = {
            let path = path.clone();
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                for _ in 0..400 {
                    f.write_all(&chunk).unwrap();
                }
            })
        };
        let mut reads = Vec::new();
        while !writer.is_finished() {
            reads.push(read_file(&path).unwrap().unwrap());
        }
        writer.join().unwrap();
        let whole = std::fs::read(&path).unwrap();
        assert_eq!(whole.len(), 401 * chunk.len());
        for bytes in &reads {
            assert!(whole.starts_with(bytes), "{} bytes", bytes.len());
            assert!(bytes.len() >= chunk.len());
        }
        assert_eq!(read_file(&path).unwrap().unwrap(), whole);
    }
}

//! libgit2's object cache as `io::repo::set_process_options` leaves it (process-wide, so in a
//! test binary of its own): commits stay cached, trees do not.
//!
//! serve reads its registry's whole history again (`messages_from`: a revwalk, then each
//! commit read) at start and whenever another author moved HEAD; with commits cached the
//! second read of each commit, and every later reload, costs no inflate (50,000 commits:
//! about 0.2 s a reload instead of 0.4 s). Trees are what a push or an index update reads by
//! the tens of thousands, once each: cached, they only held memory.

use std::path::Path;

/// Removes the loose file of `id` in the repository at `git_dir`: a later read succeeds only
/// from libgit2's object cache.
fn remove_loose(git_dir: &Path, id: git2::Oid) {
    let hex = id.to_string();
    std::fs::remove_file(git_dir.join("objects").join(&hex[..2]).join(&hex[2..])).unwrap();
}

#[test]
fn commits_stay_cached_and_trees_do_not() {
    provisio::io::repo::set_process_options();
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let blob = repo.blob(b"tenant\n").unwrap();
    let mut tb = repo.treebuilder(None).unwrap();
    tb.insert("t.yaml", blob, 0o100644).unwrap();
    let tree = tb.write().unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let commit = repo
        .commit(
            None,
            &sig,
            &sig,
            "event\n",
            &repo.find_tree(tree).unwrap(),
            &[],
        )
        .unwrap();

    // A fresh handle (nothing cached yet) reads each once, as serve's history walk does.
    let reader = git2::Repository::open(dir.path()).unwrap();
    drop(reader.find_commit(commit).unwrap());
    drop(reader.find_tree(tree).unwrap());
    remove_loose(reader.path(), commit);
    remove_loose(reader.path(), tree);

    assert_eq!(
        reader.find_commit(commit).map(|c| c.id()).ok(),
        Some(commit),
        "a commit read once is read again from the cache"
    );
    assert!(
        reader.find_tree(tree).is_err(),
        "a tree read once stays cached (the memory the cache was turned off for)"
    );
}

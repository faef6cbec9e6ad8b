//! Data-driven: each `tests/data/invalid/<case>/` overlays the example registry; the
//! rendered diagnostics must equal `expected.txt`, and `generate` must leave an existing
//! output untouched. `PROVISIO_BLESS=1` rewrites the expectations (review the diff before
//! committing).
//!
//! A case file is copied over the registry's, except when its content is an instruction
//! (for what git cannot store, or should not: the entries the loader must refuse):
//! `DELETE` removes the registry's entry, `SYMLINK <target>` replaces it by a symbolic link,
//! `DIRECTORY` by an empty directory, `FIFO` by a named pipe.

use crate::common;

use std::path::Path;

use common::Workspace;
use provisio::ops::PipelineError;
use provisio::ops::generate as pipeline;

fn overlay(ws: &Workspace, case: &Path, rel: &Path) {
    for entry in std::fs::read_dir(case.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = rel.join(&name);
        if entry.file_type().unwrap().is_dir() {
            overlay(ws, case, &rel);
        } else if rel != Path::new("expected.txt") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let target = ws.registry().join(&rel);
            let instruction = text.trim();
            if let Some(link) = instruction.strip_prefix("SYMLINK ") {
                remove_any(&target);
                std::os::unix::fs::symlink(link, &target).unwrap();
            } else if instruction == "DIRECTORY" {
                remove_any(&target);
                std::fs::create_dir_all(&target).unwrap();
            } else if instruction == "FIFO" {
                remove_any(&target);
                let status = std::process::Command::new("mkfifo")
                    .arg(&target)
                    .status()
                    .unwrap();
                assert!(status.success());
            } else if instruction == "DELETE" {
                ws.remove(&rel.to_string_lossy());
            } else {
                ws.write(&rel.to_string_lossy(), &text);
            }
        }
    }
}

/// Removes whatever is at `path` (file, link, directory), if anything.
fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

#[test]
fn invalid_registries_report_every_error_and_change_nothing() {
    let data = common::repo_root().join("tests/data/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the invalid cases are missing");
    let update = common::bless();
    let mut failures = Vec::new();
    for case in cases {
        let ws = Workspace::new();
        ws.generate();
        let before = ws.snapshot();
        overlay(&ws, &case, Path::new(""));
        let err =
            match pipeline::generate(&ws.paths(), &pipeline::GenerateOptions::new(common::now())) {
                Err(PipelineError::Invalid(report)) => report.render(),
                other => panic!(
                    "{}: expected an invalid registry, got {other:?}",
                    case.display()
                ),
            };
        assert_eq!(
            before,
            ws.snapshot(),
            "{}: the output changed",
            case.display()
        );
        let expected_path = case.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &err).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != err {
            failures.push(format!(
                "--- {} expected:\n{expected}\n--- got:\n{err}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(rerun with PROVISIO_BLESS=1 to accept)",
        failures.join("\n")
    );
}

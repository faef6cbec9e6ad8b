//! Data-driven: each `tests/data/invalid/<case>/` overlays the example registry (a file whose
//! content is `DELETE` removes it); the rendered diagnostics must equal `expected.txt`, and
//! `generate` must leave an existing output untouched. `PROVISIO_BLESS=1` rewrites the
//! expectations (review the diff before committing).

mod common;

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
            let rel = rel.to_string_lossy();
            if text.trim() == "DELETE" {
                ws.remove(&rel);
            } else {
                ws.write(&rel, &text);
            }
        }
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

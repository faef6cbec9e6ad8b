//! The clock and the people in a tenant's lifecycle (docs/lifecycle.md): `generate --now`
//! moves a cancelled tenant from its grace period to its deletion date without any registry
//! change (and rewrites only that tenant); the ordered removal is rendered only after a
//! recorded backup past the deletion date; a tenant whose lifecycle is over is an explained
//! removal; `provisio rollback` removes a never-activated tenant and refuses any other.

use crate::common;

use std::process::Command;

use chrono::{DateTime, Utc};
use common::Workspace;
use provisio::ops::PipelineError;
use provisio::ops::generate::{self as pipeline, GenerateOptions};

const ABC: &str = "abc-corporation-7f3a9c";
const CAFE: &str = "cafe-creme-93b31b";
const NORD: &str = "nordwind-logistik-7ace77";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn generate_at(ws: &Workspace, now: &str) -> Result<provisio::io::output::Summary, PipelineError> {
    pipeline::generate(&ws.paths(), &GenerateOptions::new(at(now)))
}

fn tree(ws: &Workspace, id: &str) -> Vec<String> {
    ws.snapshot()
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("tenants-out/{id}/")))
        .map(str::to_owned)
        .collect()
}

fn read(ws: &Workspace, rel: &str) -> String {
    std::fs::read_to_string(ws.out().join(rel)).unwrap()
}

fn tenant_file(ws: &Workspace, id: &str) -> String {
    std::fs::read_to_string(ws.registry().join(format!("tenants/{id}.yaml"))).unwrap()
}

/// Every `replicas:` value of a tenant's Deployments.
fn replicas(ws: &Workspace, id: &str) -> Vec<u32> {
    tree(ws, id)
        .iter()
        .filter(|f| f.starts_with("deployments/"))
        .flat_map(|f| {
            read(ws, &format!("tenants-out/{id}/{f}"))
                .lines()
                .filter_map(|l| l.trim().strip_prefix("replicas: "))
                .map(|v| v.parse::<u32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_deletion_date_reaches_an_unchanged_tenant() {
    let ws = Workspace::new();
    // nordwind's deletion date is 2025-07-15T00:00:00Z.
    generate_at(&ws, "2025-07-14T23:59:59Z").unwrap();
    let grace = tree(&ws, NORD);
    assert!(!grace.contains(&"backup.yaml".to_owned()), "{grace:?}");
    assert!(grace.contains(&"jobs.yaml".to_owned()), "{grace:?}");
    assert!(replicas(&ws, NORD).iter().all(|r| *r > 0));
    let namespace = read(&ws, &format!("tenants-out/{NORD}/namespace.yaml"));
    assert!(namespace.contains("deletion-date"), "{namespace}");
    let others: Vec<_> = [ABC, CAFE]
        .iter()
        .map(|id| {
            ws.snapshot()
                .into_iter()
                .filter(|(k, _)| k.starts_with(&format!("tenants-out/{id}/")))
                .collect::<Vec<_>>()
        })
        .collect();

    // One second past the date, the registry untouched: only nordwind is rendered again.
    let s = generate_at(&ws, "2025-07-15T00:00:01Z").unwrap();
    assert_eq!(
        s.tenants_changed.iter().collect::<Vec<_>>(),
        [NORD],
        "{s:?}"
    );
    let due = tree(&ws, NORD);
    assert!(due.contains(&"backup.yaml".to_owned()), "{due:?}");
    assert!(
        !due.contains(&"jobs.yaml".to_owned()),
        "no migrations: {due:?}"
    );
    let replicas = replicas(&ws, NORD);
    assert!(
        !replicas.is_empty() && replicas.iter().all(|r| *r == 0),
        "{replicas:?}"
    );
    let backup = read(&ws, &format!("tenants-out/{NORD}/backup.yaml"));
    assert!(backup.contains("kind: Job"), "{backup}");
    let after: Vec<_> = [ABC, CAFE]
        .iter()
        .map(|id| {
            ws.snapshot()
                .into_iter()
                .filter(|(k, _)| k.starts_with(&format!("tenants-out/{id}/")))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(after, others, "the other tenants are byte-identical");

    // `check` at the same time is clean; at the earlier time it sees the drift.
    let clean = provisio::ops::check::check(&ws.paths(), at("2025-07-15T00:00:01Z"), 50).unwrap();
    assert!(clean.drifts.is_empty(), "{}", clean.diff);
    let drift = provisio::ops::check::check(&ws.paths(), at("2025-07-14T00:00:00Z"), 50).unwrap();
    assert!(!drift.drifts.is_empty());
    assert!(
        drift.diff.contains(NORD) && !drift.diff.contains(ABC),
        "{}",
        drift.diff
    );
}

#[test]
fn the_removal_is_rendered_only_after_a_recorded_backup_past_the_deletion_date() {
    let ws = Workspace::new();
    generate_at(&ws, "2025-07-16T00:00:00Z").unwrap();
    let before = ws.snapshot();
    let original = tenant_file(&ws, NORD);

    // A person (or a bad merge) marks the tenant purging without a recorded backup.
    let no_backup = original.replace("status: deprovisioning", "status: purging")
        + "purge:\n  step: workloads\n  started: 2025-07-15T01:00:00Z\n";
    ws.write(&format!("tenants/{NORD}.yaml"), &no_backup);
    let e = generate_at(&ws, "2025-07-16T00:00:00Z").unwrap_err();
    let PipelineError::Invalid(report) = &e else {
        panic!("{e:?}")
    };
    let text = report.render();
    assert!(text.contains("backup"), "{text}");
    assert_eq!(ws.snapshot(), before, "nothing written");

    // A backup that completed before the deletion date does not allow the removal either.
    let early = original.replace("status: deprovisioning", "status: purging")
        + "backup:\n  completed: 2025-07-14T00:41:07Z\n  location: s3://ecommerce-tenant-archives/nordwind-logistik-7ace77/20250714T000312Z/\n  manifestSha256: a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2\n  files: 4\n  bytes: 350689\npurge:\n  step: workloads\n  started: 2025-07-15T01:00:00Z\n";
    ws.write(&format!("tenants/{NORD}.yaml"), &early);
    let e = generate_at(&ws, "2025-07-16T00:00:00Z").unwrap_err();
    let PipelineError::Invalid(report) = &e else {
        panic!("{e:?}")
    };
    let text = report.render();
    assert!(text.contains("before the deletion date"), "{text}");
    assert_eq!(ws.snapshot(), before, "nothing written");

    // With the backup recorded after the date: the first step of the ordered removal, the
    // workloads gone and only the namespace, its guardrails and the purge check left.
    let ok = original.replace("status: deprovisioning", "status: purging")
        + "backup:\n  completed: 2025-07-15T00:41:07Z\n  location: s3://ecommerce-tenant-archives/nordwind-logistik-7ace77/20250715T000312Z/\n  manifestSha256: a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2\n  files: 4\n  bytes: 350689\npurge:\n  step: workloads\n  started: 2025-07-15T01:00:00Z\n";
    ws.write(&format!("tenants/{NORD}.yaml"), &ok);
    let s = generate_at(&ws, "2025-07-16T00:00:00Z").unwrap();
    assert_eq!(s.tenants_changed.iter().collect::<Vec<_>>(), [NORD]);
    let files = tree(&ws, NORD);
    assert!(files.contains(&"namespace.yaml".to_owned()), "{files:?}");
    assert!(
        files.iter().all(|f| !f.starts_with("deployments/")),
        "{files:?}"
    );
    assert!(!files.contains(&"ingress.yaml".to_owned()), "{files:?}");
    assert!(!files.contains(&"backup.yaml".to_owned()), "{files:?}");
}

/// A tombstone for `id`: its file as serve leaves it after `namespace-removed`.
/// (Its lines up to `status:`, then the records; nordwind's overrides, after its status, go.)
fn tombstone(ws: &Workspace, id: &str, activated: bool) -> String {
    let text = tenant_file(ws, id);
    let keep: String = text
        .lines()
        .take_while(|l| !l.starts_with("status:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let activation = if activated {
        "activation:\n  welcomeSent: 2025-03-02T08:30:55Z\n  website: \"9\"\n  activated: 2025-03-02T08:31:00Z\n"
    } else {
        ""
    };
    format!(
        "{keep}status: removed\n{activation}cancellation:\n  requested: 2025-06-01T10:00:00Z\n  deletion: 2025-07-01T00:00:00Z\n  reason: downgrade\nbackup:\n  completed: 2025-07-01T00:41:07Z\n  location: s3://ecommerce-tenant-archives/{id}/20250701T000312Z/\n  manifestSha256: a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2\n  files: 4\n  bytes: 350689\npurge:\n  step: namespace\n  started: 2025-07-01T00:41:07Z\n  teardownCompleted: 2025-07-01T01:03:12Z\nremoved: 2025-07-01T01:09:48Z\n"
    )
}

#[test]
fn offboarded_tenants_are_explained_removals_and_missing_files_are_not() {
    let ws = Workspace::new();
    generate_at(&ws, "2025-07-16T00:00:00Z").unwrap();
    // Two of three tenants reach the end of their lifecycle: no --allow-mass-delete needed.
    for id in [ABC, NORD] {
        ws.write(&format!("tenants/{id}.yaml"), &tombstone(&ws, id, true));
    }
    let s = generate_at(&ws, "2025-07-16T00:00:00Z").unwrap();
    assert_eq!(
        s.tenants_removed.iter().collect::<Vec<_>>(),
        [ABC, NORD],
        "{s:?}"
    );
    assert!(tree(&ws, ABC).is_empty() && tree(&ws, NORD).is_empty());
    assert!(!ws.out().join(format!("tenants-out/{ABC}")).exists());
    assert!(!tree(&ws, CAFE).is_empty());
    // Nothing left to do, and the tombstones stay without a tree.
    let again = generate_at(&ws, "2025-07-16T00:00:00Z").unwrap();
    assert!(
        again.written.is_empty() && again.removed.is_empty(),
        "{again:?}"
    );

    // The same two trees losing their files instead (unexplained): refused, nothing written.
    let ws = Workspace::new();
    generate_at(&ws, "2025-07-16T00:00:00Z").unwrap();
    let before = ws.snapshot();
    ws.remove(&format!("tenants/{ABC}.yaml"));
    ws.remove(&format!("tenants/{NORD}.yaml"));
    let e = generate_at(&ws, "2025-07-16T00:00:00Z").unwrap_err();
    assert!(matches!(e, PipelineError::MassDelete { .. }), "{e:?}");
    assert_eq!(ws.snapshot(), before);
}

fn provisio(ws: &Workspace, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(args)
        .arg("--registry")
        .arg(ws.registry())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rollback_removes_a_never_activated_tenant_and_refuses_any_other() {
    let ws = Workspace::new();
    let now = "2025-06-15T12:00:00Z";

    // abc was activated and welcomed: its customer may have data. Refused, nothing changed.
    let abc = tenant_file(&ws, ABC);
    let (code, err) = provisio(&ws, &["rollback", ABC, "--now", now]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("rollback refused"), "{err}");
    assert_eq!(tenant_file(&ws, ABC), abc);
    // An unknown tenant.
    let (code, err) = provisio(&ws, &["rollback", "nobody-000000", "--now", now]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no tenant `nobody-000000`"), "{err}");

    // cafe is provisioning and never welcomed: rolled back.
    let (code, err) = provisio(
        &ws,
        &[
            "rollback",
            CAFE,
            "--now",
            now,
            "--reason",
            "setup never converged",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let text = tenant_file(&ws, CAFE);
    assert!(
        text.starts_with("# A small shop"),
        "leading comment kept: {text}"
    );
    assert!(text.contains("status: purging"), "{text}");
    assert!(text.contains("reason: setup never converged"), "{text}");
    assert!(text.contains("step: workloads"), "{text}");
    // The registry loads, and the tree is the first step of the ordered removal.
    generate_at(&ws, now).unwrap();
    let files = tree(&ws, CAFE);
    assert!(
        files.iter().all(|f| !f.starts_with("deployments/")),
        "{files:?}"
    );
    assert!(files.contains(&"namespace.yaml".to_owned()), "{files:?}");
    // A second rollback: the tenant is already being removed.
    let (code, err) = provisio(&ws, &["rollback", CAFE, "--now", now]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(tenant_file(&ws, CAFE), text);
}

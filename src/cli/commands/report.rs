//! `provisio report <kind>`: sends one signed lifecycle report to serve, as a tenant's Job
//! does (docs/lifecycle.md, "Reports"). `provisio report sync-failed --spec … --secret-store …`
//! is the SyncFail Job's: it finds why the sync failed on the cluster and reports `failed`
//! (`ops::sync_failed`). For operators (re-sending a report a Job could not
//! deliver) and for the README's walk through a tenant's life without a cluster. The key is
//! the tenant's report key (`PROVISIO_REPORT_KEY`, hex, as the secret store keeps it) or, with
//! `--key-from-master`, derived from the master secret in `PROVISIO_REPORT_SECRET`.

use serde_json::{Map, Value, json};

use super::args::NowArg;
use crate::cli::Exit;
use crate::io::retry::Policy;
use crate::ops::report::{ReportError, Target, send};
use provisio_core::lifecycle::{Removed, ReportKind, signature};

/// Environment variable holding a tenant's report key (hex).
pub const KEY_ENV: &str = "PROVISIO_REPORT_KEY";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The report's kind, or `sync-failed` (the SyncFail Job: `--spec` and `--secret-store`).
    #[arg(value_parser = parse_what)]
    pub kind: What,
    /// The tenant it is for.
    #[arg(long, required_unless_present = "spec")]
    pub tenant: Option<String>,
    /// `sync-failed`: the Job's spec (JSON).
    #[arg(long, requires = "secret_store")]
    pub spec: Option<std::path::PathBuf>,
    /// `sync-failed`: where the tenant's report key lives (as for `setup`).
    #[arg(long, value_parser = super::setup::parse_store)]
    pub secret_store: Option<crate::ops::setup::Store>,
    /// serve's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Idempotency key (default: `<kind>:cli-<unix time of --now>`); the same id again is a
    /// repeat.
    #[arg(long)]
    pub id: Option<String>,
    /// Derive the tenant's key from the master secret in `PROVISIO_REPORT_SECRET` (serve's
    /// own secret: for a person at serve's side) instead of reading `PROVISIO_REPORT_KEY`.
    #[arg(long)]
    pub key_from_master: bool,
    /// `welcome-sent`: the email's Message-ID (`<…>`).
    #[arg(long)]
    pub message_id: Option<String>,
    /// `activated`: the websites-service's record id.
    #[arg(long)]
    pub website: Option<String>,
    /// `failed`, `backup-failed`, `teardown-failed`: what failed, one line.
    #[arg(long)]
    pub reason: Option<String>,
    /// `backup-completed`: `s3://<archive bucket>/<tenant>/<backup id>/`.
    #[arg(long)]
    pub location: Option<String>,
    /// `backup-completed`: SHA-256 of the manifest (64 hex digits).
    #[arg(long)]
    pub manifest_sha256: Option<String>,
    /// `backup-completed`: files in the archive.
    #[arg(long)]
    pub files: Option<u64>,
    /// `backup-completed`: bytes in the archive.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// `teardown-completed`: a count of what was removed, `NAME=N` (databases, mysqlUsers,
    /// vhosts, rabbitmqUsers, buckets, objectVersions, minioUsers, secrets; 0 when not
    /// given); repeatable.
    #[arg(long, value_parser = parse_count)]
    pub removed: Vec<(String, u64)>,
    /// The report's `at` and the signature's time (default: now).
    #[command(flatten)]
    pub now: NowArg,
}

/// What to report: one report of a kind, or the SyncFail Job's inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Kind(ReportKind),
    SyncFailed,
}

fn parse_what(s: &str) -> Result<What, String> {
    if s == "sync-failed" {
        return Ok(What::SyncFailed);
    }
    ReportKind::from_name(s).map(What::Kind).ok_or_else(|| {
        format!(
            "expected sync-failed or one of: {}",
            ReportKind::ALL.map(ReportKind::as_str).join(", ")
        )
    })
}

fn parse_count(s: &str) -> Result<(String, u64), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=N")?;
    let n = v.parse::<u64>().map_err(|e| format!("{v}: {e}"))?;
    Ok((k.to_owned(), n))
}

/// The report's JSON from the arguments; the fields its kind does not take are left out,
/// the ones it needs and lacks are reported by the parser.
fn body(a: &Args, kind: ReportKind) -> Value {
    let kind_name = kind.as_str();
    let at = a.now.get();
    let mut m = Map::new();
    m.insert("kind".into(), json!(kind_name));
    m.insert(
        "id".into(),
        json!(
            a.id.clone()
                .unwrap_or_else(|| format!("{kind_name}:cli-{}", at.timestamp()))
        ),
    );
    m.insert("at".into(), json!(provisio_core::plan::timestamp(&at)));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    match kind {
        ReportKind::WelcomeSent => put("messageId", a.message_id.clone().map(Value::from)),
        ReportKind::Activated => put("website", a.website.clone().map(|w| json!({ "id": w }))),
        ReportKind::Failed | ReportKind::BackupFailed | ReportKind::TeardownFailed => {
            put("reason", a.reason.clone().map(Value::from))
        }
        ReportKind::BackupCompleted => {
            put("location", a.location.clone().map(Value::from));
            put("manifestSha256", a.manifest_sha256.clone().map(Value::from));
            put("files", a.files.map(Value::from));
            put("bytes", a.bytes.map(Value::from));
        }
        ReportKind::TeardownCompleted => {
            // Every count the kind takes, 0 unless given; a name it does not take is kept
            // for the parser to refuse.
            let mut counts: Map<String, Value> = Removed::FIELDS
                .iter()
                .map(|k| ((*k).to_owned(), json!(0)))
                .collect();
            counts.extend(a.removed.iter().map(|(k, v)| (k.clone(), json!(v))));
            put("removed", Some(Value::Object(counts)));
        }
        ReportKind::WorkloadsPruned | ReportKind::NamespaceRemoved => {}
    }
    Value::Object(m)
}

fn key(a: &Args, tenant: &str) -> Result<Vec<u8>, String> {
    if a.key_from_master {
        let master = std::env::var(super::serve::REPORT_SECRET_ENV).map_err(|_| {
            format!(
                "--key-from-master reads the master secret from {}",
                super::serve::REPORT_SECRET_ENV
            )
        })?;
        let master = master.trim_end_matches(['\n', '\r']);
        return Ok(signature::derive_key(master.as_bytes(), tenant).to_vec());
    }
    let hex_key = std::env::var(KEY_ENV).map_err(|_| {
        format!("set {KEY_ENV} (the tenant's report key, hex) or pass --key-from-master")
    })?;
    hex::decode(hex_key.trim()).map_err(|_| format!("{KEY_ENV} is not hex"))
}

fn sync_failed(a: &Args) -> Exit {
    let Some(store) = &a.secret_store else {
        eprintln!("error: sync-failed needs --spec and --secret-store");
        return Exit::Invalid;
    };
    let fixed = a.now.now;
    let clock = move || fixed.unwrap_or_else(chrono::Utc::now);
    match crate::ops::sync_failed::run(a.spec.as_ref(), store, Policy::default(), clock) {
        Ok((why, sent)) => {
            eprintln!(
                "report: {} failed {} ({}): {why}",
                sent.tenant,
                if sent.recorded {
                    "recorded"
                } else {
                    "was already recorded"
                },
                sent.lifecycle.status.as_str()
            );
            Exit::Ok
        }
        Err(e) => {
            crate::report::print_in("report sync-failed", &e);
            super::purge_check::exit_of(&e)
        }
    }
}

pub fn run(a: Args) -> Exit {
    let kind = match a.kind {
        What::SyncFailed => return sync_failed(&a),
        What::Kind(k) => k,
    };
    let Some(tenant) = a.tenant.clone() else {
        eprintln!("error: --tenant is required");
        return Exit::Invalid;
    };
    let key = match key(&a, &tenant) {
        Ok(k) => k,
        Err(m) => {
            eprintln!("error: {m}");
            return Exit::Invalid;
        }
    };
    let report =
        match provisio_core::lifecycle::report::parse(body(&a, kind).to_string().as_bytes()) {
            Ok(r) => r,
            Err(r) => {
                eprintln!("error: the report is invalid: {r}");
                return Exit::Invalid;
            }
        };
    let target = Target {
        url: crate::ops::report::reports_url(&a.url, &tenant),
        tenant: tenant.clone(),
        key,
    };
    let fixed = a.now.now;
    let clock = move || fixed.unwrap_or_else(chrono::Utc::now);
    match send(&target, &report, &Policy::default(), clock) {
        Ok(sent) => {
            eprintln!(
                "report: {} {} {} ({}: {})",
                sent.tenant,
                report.kind().as_str(),
                if sent.recorded {
                    "recorded"
                } else {
                    "was already recorded"
                },
                sent.lifecycle.status.as_str(),
                sent.lifecycle.phase
            );
            Exit::Ok
        }
        Err(e) => {
            crate::report::print(&e);
            match &e {
                ReportError::Invalid(_) => Exit::Invalid,
                // Refused by a guard: before the deletion date by serve's clock.
                ReportError::Refused { code, .. } if code == "not_due" => Exit::Refused,
                ReportError::Refused { code, .. } if code == "signature_expired" => {
                    Exit::Unavailable
                }
                ReportError::Refused { .. } | ReportError::Answer(_) => Exit::Invalid,
                ReportError::Unavailable(_) => Exit::Unavailable,
            }
        }
    }
}

//! `activate`: the PostSync Job of a provisioning (or failed) tenant (docs/lifecycle.md). It
//! asks serve where the tenant is (already active: done), probes what the tenant needs until
//! every probe passes or the spec's deadline comes, registers the website record (looked up
//! first, created once), sends the welcome email once (skipped when serve recorded
//! `welcome-sent`; recorded right after the relay accepted it) and reports `activated`. Every
//! step is idempotent, so a re-run of the hook does only what is left. The admin's password is
//! read from the secret store into memory, put into the email and nowhere else.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use mysql::prelude::Queryable;
use serde_json::Value;

use super::report::{ReportError, Sent, Target, job_report_id, send, stored_key, view};
use super::setup::{Store, spec_text};
use crate::io::http;
use crate::io::kube::{Kube, KubeError};
use crate::io::retry::Policy;
use crate::setup::secrets::SecretStore;
use crate::setup::websites::{self, Ensured};
use crate::setup::{Change, SetupError};
use crate::setup::{amqp, aws};
use provisio_core::lifecycle::{LifecycleView, Report, ReportBody};
use provisio_core::plan::lifecycle::{ActivationSpec, Probes, Welcome};
use provisio_core::registry::TenantStatus;
use provisio_core::render::templates;

/// Each probe's own time limit (connect and read).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The SMTP exchange's time limit.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The variables of the platform Secret `provisio-smtp` (optional: a relay without AUTH).
pub const SMTP_USERNAME_ENV: &str = "SMTP_USERNAME";
pub const SMTP_PASSWORD_ENV: &str = "SMTP_PASSWORD";

/// How activate runs.
pub struct Options {
    pub spec: Option<PathBuf>,
    pub store: Store,
    /// A PEM file of extra trusted roots (the health probe and the SMTP relay; tests).
    pub ca_file: Option<PathBuf>,
    /// Where the reason of a failure is written (`/dev/termination-log` in the Job).
    pub termination_log: Option<PathBuf>,
    /// Every request's retries (serve, the store, the websites-service).
    pub retry: Policy,
    /// The first wait between two probe rounds (doubled up to the policy's maximum).
    pub round_delay: Duration,
}

/// What activation did.
#[derive(Debug)]
pub enum Outcome {
    /// serve already records the tenant `active`: nothing done.
    AlreadyActive { since: Option<DateTime<Utc>> },
    Activated {
        website: Option<Ensured>,
        /// `false`: serve had recorded the welcome email, none was sent.
        welcome_sent: bool,
        sent: Box<Sent>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The tenant is in a state activation does not start from.
    #[error("tenant {tenant} is {status}: not activating")]
    NotActivating { tenant: String, status: String },
    /// Probes still failing at the deadline: each with its last error.
    #[error("not healthy after {seconds} s: {failing}")]
    Unhealthy { seconds: u64, failing: String },
    /// The welcome email could not be rendered (a bug in `templates/`).
    #[error(transparent)]
    Render(#[from] provisio_core::render::RenderError),
    /// The relay refused the email for good (5xx), or kept failing until the deadline.
    #[error("the welcome email to {to} was not sent: {detail}")]
    Mail { to: String, detail: String },
}

/// Runs activation; `clock` gives the reports' and signatures' time.
pub fn run(o: &Options, clock: impl Fn() -> DateTime<Utc>) -> Result<Outcome, ActivateError> {
    let started = Instant::now();
    let spec = ActivationSpec::parse(&spec_text(o.spec.as_ref())?).map_err(SetupError::from)?;
    let deadline = started + Duration::from_secs(spec.deadline_seconds);
    let ca_pem = match &o.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| SetupError::Io {
            action: "read the CA file",
            path: p.display().to_string(),
            source: e,
        })?),
        None => None,
    };
    let store = o.store.open(o.retry)?;
    let target = Target {
        url: spec.report.url.clone(),
        tenant: spec.tenant.clone(),
        key: stored_key(&*store, &spec.report.key_secret, &spec.tenant)?,
    };

    // Step 0: where serve says the tenant is.
    let current = view(&target, &o.retry, &clock)?;
    match current.status {
        TenantStatus::Active => {
            return Ok(Outcome::AlreadyActive {
                since: current.activation.as_ref().and_then(|a| a.activated),
            });
        }
        TenantStatus::Provisioning | TenantStatus::Failed => {}
        other => {
            return Err(ActivateError::NotActivating {
                tenant: spec.tenant.clone(),
                status: other.as_str().to_owned(),
            });
        }
    }

    // Step 1: every probe, in rounds, until the deadline.
    let result = probe_until(&spec, &*store, ca_pem.as_deref(), o, deadline);
    if let Err(e) = &result {
        write_termination_log(o.termination_log.as_deref(), &e.to_string());
    }
    result?;

    // Step 2: the website record.
    let website = match &spec.website {
        Some(w) => {
            let token = store_field(&*store, &w.token_secret, &spec.tenant, "token")?;
            let client = websites::Client::new(&w.url, &token, o.retry);
            Some(websites::ensure_active(&client, &w.record)?)
        }
        None => None,
    };

    // Step 3: the welcome email, once.
    let welcome_sent = if welcomed(&current) {
        false
    } else {
        let password = store_field(
            &*store,
            &spec.welcome.admin_secret,
            &spec.tenant,
            "password",
        )?;
        let text =
            templates::welcome_email(&templates::environment(), &spec.welcome.context, &password)?;
        drop(password);
        send_welcome(&spec.welcome, text, ca_pem.as_deref(), o, deadline)?;
        let now = clock();
        let report = Report {
            id: job_report_id("welcome-sent", &spec.tenant, now),
            at: now,
            body: ReportBody::WelcomeSent {
                message_id: spec.welcome.message_id.clone(),
            },
        };
        send(&target, &report, &o.retry, &clock)?;
        true
    };

    // Step 4: active.
    let now = clock();
    let report = Report {
        id: job_report_id("activated", &spec.tenant, now),
        at: now,
        body: ReportBody::Activated {
            website: website.as_ref().map(|w| w.id.clone()),
        },
    };
    let sent = send(&target, &report, &o.retry, &clock)?;
    Ok(Outcome::Activated {
        website,
        welcome_sent,
        sent: Box::new(sent),
    })
}

fn welcomed(v: &LifecycleView) -> bool {
    v.activation
        .as_ref()
        .is_some_and(|a| a.welcome_sent.is_some())
}

/// Writes `reason` where the kubelet reads a container's termination message (best effort:
/// the reason is on stderr too).
fn write_termination_log(path: Option<&Path>, reason: &str) {
    if let Some(p) = path
        && let Err(e) = std::fs::write(p, reason)
    {
        tracing::warn!(path = %p.display(), error = %e, "cannot write the termination log");
    }
}

/// The field `field` of the store entry at `key`, which must belong to `tenant`.
fn store_field(
    store: &dyn SecretStore,
    key: &str,
    tenant: &str,
    field: &str,
) -> Result<String, SetupError> {
    let entry = store.get(key)?;
    match entry.as_ref().map(|c| (c.get("tenant"), c.get(field))) {
        Some((Some(t), Some(v))) if t == tenant => Ok(v.clone()),
        Some((Some(t), _)) if t != tenant => Err(SetupError::invalid(
            format!("secret at `{key}`"),
            format!("it belongs to tenant {t}, not {tenant}"),
        )),
        _ => Err(SetupError::invalid(
            format!("secret at `{key}`"),
            format!("no `{field}` of tenant {tenant}: `setup credentials` has not run"),
        )),
    }
}

/// The first field of `names` the store entry at `key` has.
fn any_field(store: &dyn SecretStore, key: &str, names: &[&str]) -> Result<String, String> {
    let entry = store
        .get(key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no secret at `{key}`"))?;
    names
        .iter()
        .find_map(|n| entry.get(*n).cloned())
        .ok_or_else(|| format!("the secret at `{key}` has no `{}`", names.join("` or `")))
}

// ---------------------------------------------------------------------------------------------
// Step 1: probes
// ---------------------------------------------------------------------------------------------

/// One check of the tenant's health.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Deployment(String),
    Database(usize),
    Bucket(usize),
    Vhost,
    Health,
    Grafana(usize),
}

fn probes(p: &Probes, grafana: usize) -> Vec<Probe> {
    let mut out: Vec<Probe> = p
        .deployments
        .names
        .iter()
        .cloned()
        .map(Probe::Deployment)
        .collect();
    if let Some(m) = &p.mysql {
        out.extend((0..m.databases.len()).map(Probe::Database));
    }
    if let Some(s) = &p.s3 {
        out.extend((0..s.buckets.len()).map(Probe::Bucket));
    }
    if p.rabbitmq.is_some() {
        out.push(Probe::Vhost);
    }
    out.push(Probe::Health);
    out.extend((0..grafana).map(Probe::Grafana));
    out
}

fn probe_until(
    spec: &ActivationSpec,
    store: &dyn SecretStore,
    ca_pem: Option<&[u8]>,
    o: &Options,
    deadline: Instant,
) -> Result<(), ActivateError> {
    if spec.probes.health.via.is_some() {
        return Err(SetupError::invalid(
            "health probe",
            "`via` (lifecycle.activation.healthVia) is not supported by this version of activate",
        )
        .into());
    }
    let mut pending = probes(&spec.probes, spec.grafana.objects.len());
    let kube = if spec.probes.deployments.names.is_empty() && spec.grafana.objects.is_empty() {
        None
    } else {
        Some(Kube::from_env(Policy::new(1, Duration::from_millis(1)))?)
    };
    let health_agent = match ca_pem {
        Some(pem) => http::agent_trusting(PROBE_TIMEOUT, pem).map_err(|e| {
            SetupError::invalid("the CA file", format!("not PEM certificates: {e}"))
        })?,
        None => http::agent(PROBE_TIMEOUT),
    };
    let rounds = Policy {
        attempts: u32::MAX,
        initial: o.round_delay,
        ..o.retry
    };
    let mut waits = rounds.delays();
    loop {
        let mut failing = Vec::new();
        for p in pending {
            let r = match &p {
                Probe::Deployment(name) => deployment(kube.as_ref(), &spec.probes, name),
                Probe::Database(i) => database(&spec.probes, *i, store),
                Probe::Bucket(i) => bucket(&spec.probes, *i, store, &spec.tenant),
                Probe::Vhost => vhost(&spec.probes, store),
                Probe::Health => health(&health_agent, &spec.probes.health.url),
                Probe::Grafana(i) => grafana(kube.as_ref(), spec, *i),
            };
            match r {
                Ok(()) => tracing::info!(probe = %label(spec, &p), "passed"),
                Err(why) => {
                    tracing::info!(probe = %label(spec, &p), %why, "not yet");
                    failing.push((p, why));
                }
            }
        }
        if failing.is_empty() {
            return Ok(());
        }
        let wait = waits.next().unwrap_or(rounds.max);
        let now = Instant::now();
        if now >= deadline || now + wait > deadline {
            return Err(ActivateError::Unhealthy {
                seconds: spec.deadline_seconds,
                failing: failing
                    .iter()
                    .map(|(p, why)| format!("{}: {why}", label(spec, p)))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        std::thread::sleep(wait);
        pending = failing.into_iter().map(|(p, _)| p).collect();
    }
}

fn label(spec: &ActivationSpec, p: &Probe) -> String {
    let probes = &spec.probes;
    match p {
        Probe::Deployment(n) => format!("deployment {n}"),
        Probe::Database(i) => probes.mysql.as_ref().map_or_else(String::new, |m| {
            format!("database {}", m.databases[*i].database)
        }),
        Probe::Bucket(i) => probes
            .s3
            .as_ref()
            .map_or_else(String::new, |s| format!("bucket {}", s.buckets[*i])),
        Probe::Vhost => probes
            .rabbitmq
            .as_ref()
            .map_or_else(String::new, |r| format!("vhost {}", r.vhost)),
        Probe::Health => probes.health.url.clone(),
        Probe::Grafana(i) => {
            let o = &spec.grafana.objects[*i];
            format!("Grafana {} {}", o.kind, o.name)
        }
    }
}

/// Available at its generation, every replica updated, none of an old ReplicaSet left (the
/// test `kubectl rollout status` makes).
fn deployment(kube: Option<&Kube>, p: &Probes, name: &str) -> Result<(), String> {
    let kube = kube.ok_or("no Kubernetes API")?;
    let path = format!(
        "/apis/apps/v1/namespaces/{}/deployments/{}",
        http::seg(&p.deployments.namespace),
        http::seg(name)
    );
    let d = kube
        .get(&path)
        .map_err(|e| e.to_string())?
        .ok_or("not found")?;
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let (generation, observed) = (
        n(&d["metadata"]["generation"]),
        n(&d["status"]["observedGeneration"]),
    );
    let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let s = &d["status"];
    let (replicas, updated, available) = (
        n(&s["replicas"]),
        n(&s["updatedReplicas"]),
        n(&s["availableReplicas"]),
    );
    if observed < generation {
        return Err(format!(
            "generation {generation} not yet observed ({observed})"
        ));
    }
    if updated != wanted || available != wanted || replicas != updated {
        return Err(format!(
            "{available} available, {updated} updated of {wanted} ({replicas} in all)"
        ));
    }
    Ok(())
}

/// The product's own user connects, selects its database and, for a product with a
/// migration, finds a table in it.
fn database(p: &Probes, i: usize, store: &dyn SecretStore) -> Result<(), String> {
    let m = p.mysql.as_ref().ok_or("no MySQL probe")?;
    let d = &m.databases[i];
    let user = any_field(store, &d.secret_key, &["username", "user"])?;
    let password = any_field(store, &d.secret_key, &["password"])?;
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(m.host.clone()))
        .tcp_port(m.port)
        .prefer_socket(false)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(d.database.clone()))
        .tcp_connect_timeout(Some(PROBE_TIMEOUT))
        .read_timeout(Some(PROBE_TIMEOUT))
        .write_timeout(Some(PROBE_TIMEOUT));
    let mut conn = mysql::Conn::new(opts).map_err(|e| e.to_string())?;
    let one: Option<i64> = conn.query_first("SELECT 1").map_err(|e| e.to_string())?;
    if one != Some(1) {
        return Err("SELECT 1 returned no row".to_owned());
    }
    if d.migrated {
        let table: Option<i64> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? LIMIT 1",
                (&d.database,),
            )
            .map_err(|e| e.to_string())?;
        if table.is_none() {
            return Err(format!(
                "no table in {}: the {} migration has not run",
                d.database, d.product
            ));
        }
    }
    Ok(())
}

/// The tenant's user lists the bucket and writes, reads back and deletes the probe object.
fn bucket(p: &Probes, i: usize, store: &dyn SecretStore, tenant: &str) -> Result<(), String> {
    let s = p.s3.as_ref().ok_or("no S3 probe")?;
    let b = &s.buckets[i];
    let access_key = any_field(store, &s.secret_key, &["access_key", "accessKey"])?;
    let secret_key = any_field(store, &s.secret_key, &["secret_key", "secretKey"])?;
    let scheme = if s.use_ssl { "https" } else { "http" };
    let region = std::env::var("MINIO_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let client = aws::Client::new(
        "minio",
        "s3",
        &format!("{scheme}://{}:{}", s.host, s.port),
        &region,
        aws::Credentials {
            access_key,
            secret_key,
            session_token: None,
        },
        Policy::new(1, Duration::from_millis(1)),
    )
    .map_err(|e| e.to_string())?;
    let bucket_path = format!("/{}", http::seg(b));
    let key_path = format!(
        "{bucket_path}/{}",
        s.probe_key
            .split('/')
            .map(http::seg)
            .collect::<Vec<_>>()
            .join("/")
    );
    let body = format!("{tenant} {}", Utc::now().to_rfc3339());
    let step = |method: &str, path: &str, query: &[(&str, &str)], bytes: &[u8], ok: &[u16]| {
        let r = client
            .send(method, path, query, &[], bytes)
            .map_err(|e| e.to_string())?;
        if ok.contains(&r.status) {
            Ok(r.body)
        } else {
            // The S3 error code (`AccessDenied`, `NoSuchBucket`…): one line for the reason.
            let code = crate::setup::s3::tag_values(&r.body, "Code")
                .pop()
                .unwrap_or_default();
            Err(format!("{method} {path}: HTTP {} {code}", r.status)
                .trim_end()
                .to_owned())
        }
    };
    // Present and listable: a one-key listing (`s3:ListBucket`, the permission a HEAD of the
    // bucket needs on AWS and MinIO; moto checks its own `s3:HeadBucket` for a HEAD instead).
    step(
        "GET",
        &bucket_path,
        &[("list-type", "2"), ("max-keys", "1")],
        b"",
        &[200],
    )?;
    step("PUT", &key_path, &[], body.as_bytes(), &[200])?;
    let read = step("GET", &key_path, &[], b"", &[200])?;
    if read != body {
        return Err(format!("GET {key_path} returned other bytes than written"));
    }
    step("DELETE", &key_path, &[], b"", &[200, 204])?;
    Ok(())
}

/// The tenant's user logs in to the tenant's vhost over AMQP 0-9-1, opens a channel and
/// finds the tenant's exchange there (a passive `Exchange.Declare`: nothing is created).
fn vhost(p: &Probes, store: &dyn SecretStore) -> Result<(), String> {
    let r = p.rabbitmq.as_ref().ok_or("no RabbitMQ probe")?;
    let user = any_field(store, &r.secret_key, &["username", "user"])?;
    let password = any_field(store, &r.secret_key, &["password"])?;
    let login = amqp::Login {
        host: &r.host,
        port: r.port,
        vhost: &r.vhost,
        user: &user,
        password: &password,
    };
    amqp::check_exchange(&login, &r.exchange, PROBE_TIMEOUT).map_err(|e| e.to_string())
}

/// `GET <url>` answers 200 (no redirect followed: the gateway answers itself).
fn health(agent: &ureq::Agent, url: &str) -> Result<(), String> {
    let r = agent
        .get(url)
        .config()
        .max_redirects(0)
        .build()
        .call()
        .map_err(|e| e.to_string())?;
    match r.status().as_u16() {
        200 => Ok(()),
        s => Err(format!("HTTP {s}")),
    }
}

/// A Grafana object of the provider is `Ready` and `Synced`.
fn grafana(kube: Option<&Kube>, spec: &ActivationSpec, i: usize) -> Result<(), String> {
    let kube = kube.ok_or("no Kubernetes API")?;
    let o = &spec.grafana.objects[i];
    let path = format!(
        "/apis/{}/namespaces/{}/{}s/{}",
        spec.grafana.api_version,
        http::seg(&spec.grafana.namespace),
        o.kind.to_ascii_lowercase(),
        http::seg(&o.name)
    );
    let obj = kube
        .get(&path)
        .map_err(|e| e.to_string())?
        .ok_or("not found")?;
    for c in ["Ready", "Synced"] {
        let ok = obj["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["type"] == c && x["status"] == "True");
        if !ok {
            return Err(format!("not {c}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Step 3: the welcome email
// ---------------------------------------------------------------------------------------------

fn mailbox(what: &str, s: &str) -> Result<Mailbox, SetupError> {
    s.parse()
        .map_err(|e| SetupError::invalid(format!("`{what}` mailbox"), format!("{e}")))
}

/// Sends the email over SMTP (retried on a transient failure within the deadline; a
/// permanent refusal is final).
fn send_welcome(
    w: &Welcome,
    text: templates::WelcomeText,
    ca_pem: Option<&[u8]>,
    o: &Options,
    deadline: Instant,
) -> Result<(), ActivateError> {
    let mut b = Message::builder()
        .from(mailbox("from", &w.from)?)
        .to(mailbox("to", &w.to)?)
        .subject(text.subject)
        .message_id(Some(w.message_id.clone()))
        .date_now()
        .header(ContentType::TEXT_PLAIN);
    if let Some(r) = &w.reply_to {
        b = b.reply_to(mailbox("replyTo", r)?);
    }
    let message = b.body(text.body).map_err(|e| ActivateError::Mail {
        to: w.to.clone(),
        detail: e.to_string(),
    })?;
    let tls = |host: &str| -> Result<TlsParameters, ActivateError> {
        let mut p = TlsParameters::builder(host.to_owned())
            .certificate_store(CertificateStore::WebpkiRoots);
        if let Some(pem) = ca_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| {
                SetupError::invalid("the CA file", format!("not a PEM certificate: {e}"))
            })?;
            p = p.add_root_certificate(cert);
        }
        p.build_rustls().map_err(|e| ActivateError::Mail {
            to: w.to.clone(),
            detail: format!("TLS set-up: {e}"),
        })
    };
    let host = &w.smtp.host;
    let mut builder = SmtpTransport::builder_dangerous(host.as_str())
        .port(w.smtp.port)
        .timeout(Some(SMTP_TIMEOUT));
    builder = match w.smtp.security.as_str() {
        "tls" => builder.tls(Tls::Wrapper(tls(host)?)),
        "starttls" => builder.tls(Tls::Required(tls(host)?)),
        _ => builder.tls(Tls::None),
    };
    if let (Ok(user), Ok(pass)) = (
        std::env::var(SMTP_USERNAME_ENV),
        std::env::var(SMTP_PASSWORD_ENV),
    ) {
        builder = builder.credentials(SmtpCredentials::new(user, pass));
    }
    let mailer = builder.build();
    let mut waits = Policy {
        attempts: u32::MAX,
        ..o.retry
    }
    .delays();
    loop {
        match mailer.send(&message) {
            Ok(_) => return Ok(()),
            Err(e) => {
                let wait = waits.next().unwrap_or(o.retry.max);
                if e.is_permanent() || Instant::now() + wait > deadline {
                    return Err(ActivateError::Mail {
                        to: w.to.clone(),
                        detail: e.to_string(),
                    });
                }
                tracing::warn!(error = %e, "the welcome email: retrying in {wait:?}");
                std::thread::sleep(wait);
            }
        }
    }
}

/// What a step did, for the Job's log.
pub fn describe(c: &Change) -> &'static str {
    match c {
        Change::Created => "created",
        Change::Updated => "set active",
        Change::Deleted => "deleted",
        Change::Unchanged => "already active",
    }
}

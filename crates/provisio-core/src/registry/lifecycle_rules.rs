//! The lifecycle's loader rules: which combinations of `status` and records a tenant file
//! may hold ([`check_tenant`]: a `purging` tenant has a backup or a rollback, never both; a
//! backup is never older than the deletion date and always in the archive under the tenant's
//! prefix; a tenant whose welcome email went out is never rolled back…), and the values of
//! `platform.yaml`'s `lifecycle` section and of the tiers' `offer` ([`check_settings`],
//! [`check_offer`]). Each broken combination is one positioned diagnostic; all are reported.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::lifecycle::{STORAGE_CLASSES, duration_secs};
use super::model::*;
use crate::diagnostic::{Diagnostic, at, located};
use crate::{consumers, naming};

/// RFC 3339 with seconds, as the registry writes dates.
fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Longest `reason` (failure, rollback) a tenant file keeps.
pub const MAX_REASON_CHARS: usize = 500;

/// A `reason` as the tenant file keeps it: 1 to 500 characters, one line, printable.
pub fn reason_problem(r: &str) -> Option<String> {
    if r.trim().is_empty() {
        Some("is empty".to_owned())
    } else if r.chars().count() > MAX_REASON_CHARS {
        Some(format!(
            "is {} characters long; at most {MAX_REASON_CHARS}",
            r.chars().count()
        ))
    } else if r.chars().any(char::is_control) {
        Some("contains a line break or another control character; one line".to_owned())
    } else {
        None
    }
}

/// A website record id as activation records it: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn is_website_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 64 lower-case hexadecimal digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a tenant's backups must be: `s3://<bucket>/<tenant>/`.
pub fn archive_prefix(bucket: &str, tenant: &str) -> String {
    format!("s3://{bucket}/{tenant}/")
}

/// Why a backup location is refused: it must be a folder (`…/`) below the tenant's prefix in
/// the archive bucket, of URL-safe characters.
pub fn backup_location_problem(location: &str, bucket: &str, tenant: &str) -> Option<String> {
    let prefix = archive_prefix(bucket, tenant);
    let Some(rest) = location.strip_prefix(&prefix) else {
        return Some(format!("must be in the archive bucket, under `{prefix}`"));
    };
    if rest.is_empty() || !rest.ends_with('/') {
        return Some(format!(
            "must name the backup's folder below `{prefix}` and end with `/`"
        ));
    }
    if location.len() > 1024
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        || rest.split('/').any(|s| s == "." || s == "..")
        || rest.contains("//")
    {
        return Some(
            "must be a folder name of letters, digits, `-`, `_`, `.` (no `..`, no empty segment)"
                .to_owned(),
        );
    }
    None
}

/// The lifecycle records of one tenant file: what each status requires and forbids, and the
/// order of the dates.
pub fn check_tenant(platform: &Platform, path: &str, t: &Tenant, diags: &mut Vec<Diagnostic>) {
    use TenantStatus as S;
    let status = t.status.value;
    let name = status.as_str();
    let before_purge = matches!(
        status,
        S::Provisioning | S::Failed | S::Active | S::Deprovisioning
    );

    if let Some(a) = &t.activation {
        if let (S::Provisioning | S::Failed, Some(act)) = (status, &a.activated) {
            diags.push(
                at(
                    path,
                    act,
                    format!("`activation.activated` is set: the tenant is active, not `{name}`"),
                )
                .with_label("serve records `status: active` with the activation"),
            );
        }
        for (what, when) in [
            ("welcomeSent", &a.welcome_sent),
            ("activated", &a.activated),
        ] {
            if let Some(w) = when
                && w.value < t.created
            {
                diags.push(at(
                    path,
                    w,
                    format!(
                        "`activation.{what}` ({}) is before the tenant was created ({})",
                        timestamp(&w.value),
                        timestamp(&t.created)
                    ),
                ));
            }
        }
        if let Some(w) = &a.website
            && !is_website_id(&w.value)
        {
            diags.push(
                at(path, w, "invalid website record id")
                    .with_label("expected 1 to 64 letters, digits, `_` or `-`"),
            );
        }
    }

    if status == S::Failed
        && t.failure
            .as_ref()
            .is_none_or(|f| f.step.value != FailureStep::Sync)
    {
        diags.push(
            at(
                path,
                &t.status,
                "a `failed` tenant needs `failure` with `step: sync`",
            )
            .with_label("serve records the failure with the status"),
        );
    }
    if let Some(f) = &t.failure {
        let step = f.step.value;
        let allowed = match step {
            FailureStep::Sync => {
                status == S::Failed
                    || (matches!(status, S::Purging | S::Removed) && t.rollback.is_some())
            }
            FailureStep::Backup => status == S::Deprovisioning,
            FailureStep::Teardown => {
                status == S::Purging
                    && t.purge
                        .as_ref()
                        .is_some_and(|p| p.step.value == PurgeStep::Teardown)
            }
        };
        if !allowed {
            diags.push(
                at(
                    path,
                    &f.step,
                    format!(
                        "failure step `{}` does not belong to a `{name}` tenant",
                        step.as_str()
                    ),
                )
                .with_label(match step {
                    FailureStep::Sync => "`sync` failures belong to `failed` tenants",
                    FailureStep::Backup => "`backup` failures belong to `deprovisioning` tenants",
                    FailureStep::Teardown => {
                        "`teardown` failures belong to `purging` tenants at step `teardown`"
                    }
                }),
            );
        }
        if let Some(why) = reason_problem(&f.reason.value) {
            diags.push(at(path, &f.reason, format!("`failure.reason` {why}")));
        }
        if f.attempts.value == 0 {
            diags.push(at(
                path,
                &f.attempts,
                "`failure.attempts` must be at least 1",
            ));
        }
    }

    if let Some(b) = &t.backup {
        if before_purge {
            diags.push(
                at(
                    path,
                    &b.completed,
                    "`backup` is recorded only when the tenant leaves `deprovisioning` (status `purging`)",
                )
                .with_label(format!("this tenant is `{name}`")),
            );
        }
        match &t.cancellation {
            None => diags.push(
                at(
                    path,
                    &b.completed,
                    "a backup is taken at the deletion date: this tenant has no `cancellation`",
                )
                .with_label("offboarding starts with a cancellation"),
            ),
            Some(c) if b.completed.value < c.deletion.value => diags.push(
                at(
                    path,
                    &b.completed,
                    format!(
                        "the backup completed at {} is before the deletion date {}",
                        timestamp(&b.completed.value),
                        timestamp(&c.deletion.value)
                    ),
                )
                .with_label(
                    "nothing of a tenant is backed up for removal before its deletion date",
                ),
            ),
            Some(_) => {}
        }
        let bucket = &platform.lifecycle.archive.bucket.value;
        if let Some(why) = backup_location_problem(&b.location.value, bucket, &t.id.value) {
            diags.push(
                at(path, &b.location, format!("the backup location {why}")).with_label(format!(
                    "the backup must be in the archive bucket `{}`",
                    archive_prefix(bucket, &t.id.value)
                )),
            );
        }
        if !is_sha256_hex(&b.manifest_sha256.value) {
            diags.push(
                at(path, &b.manifest_sha256, "invalid `manifestSha256`")
                    .with_label("expected 64 lower-case hexadecimal digits"),
            );
        }
        if b.files.value == 0 {
            diags.push(
                at(path, &b.files, "a backup holds at least one file")
                    .with_label("expected 1 or more"),
            );
        }
    }

    if let Some(r) = &t.rollback {
        if before_purge {
            diags.push(
                at(
                    path,
                    &r.requested,
                    "`rollback` belongs to a `purging` tenant",
                )
                .with_label(format!("this tenant is `{name}`")),
            );
        }
        if let Some(sent) = t.welcome_sent().or(t.activated()) {
            diags.push(
                at(
                    path,
                    &r.requested,
                    format!(
                        "a tenant whose welcome email was sent or who was activated ({}) may hold customer data: offboard it with a cancellation, not a rollback",
                        timestamp(&sent)
                    ),
                )
                .with_label("a rollback deletes without a backup"),
            );
        }
        if let Some(why) = reason_problem(&r.reason.value) {
            diags.push(at(path, &r.reason, format!("`rollback.reason` {why}")));
        }
        if r.requested.value < t.created {
            diags.push(at(
                path,
                &r.requested,
                "`rollback.requested` is before the tenant was created",
            ));
        }
    }

    if matches!(status, S::Purging | S::Removed) {
        match (&t.backup, &t.rollback) {
            (Some(_), Some(_)) | (None, None) => diags.push(
                at(
                    path,
                    &t.status,
                    format!(
                        "a `{name}` tenant needs exactly one of `backup` (offboarding) or `rollback` (never activated)"
                    ),
                )
                .with_label("nothing is deleted without a recorded backup, or a rollback of a tenant that never held customer data"),
            ),
            _ => {}
        }
        if t.purge.is_none() {
            diags.push(
                at(
                    path,
                    &t.status,
                    format!("a `{name}` tenant needs `purge.step`"),
                )
                .with_label("serve records `purge` with the status"),
            );
        }
    }

    if let Some(p) = &t.purge {
        if before_purge {
            diags.push(
                at(path, &p.step, "`purge` belongs to a `purging` tenant")
                    .with_label(format!("this tenant is `{name}`")),
            );
        }
        match (p.step.value, &p.teardown_completed) {
            (PurgeStep::Namespace, None) => diags.push(
                at(
                    path,
                    &p.step,
                    "step `namespace` comes after a completed teardown (`purge.teardownCompleted`)",
                )
                .with_label("the namespace goes last, after the data"),
            ),
            (PurgeStep::Workloads | PurgeStep::Teardown, Some(tc)) => diags.push(
                at(
                    path,
                    tc,
                    "`purge.teardownCompleted` is recorded when the step moves to `namespace`",
                )
                .with_label(format!("the step is `{}`", p.step.value.as_str())),
            ),
            _ => {}
        }
        let mut order: Vec<(&str, DateTime<Utc>, serde_saphyr::Location)> = Vec::new();
        if let Some(b) = &t.backup {
            order.push((
                "backup.completed",
                b.completed.value,
                b.completed.referenced,
            ));
        }
        if let Some(r) = &t.rollback {
            order.push((
                "rollback.requested",
                r.requested.value,
                r.requested.referenced,
            ));
        }
        order.push(("purge.started", p.started.value, p.started.referenced));
        if let Some(tc) = &p.teardown_completed {
            order.push(("purge.teardownCompleted", tc.value, tc.referenced));
        }
        if let Some(r) = &t.removed {
            order.push(("removed", r.value, r.referenced));
        }
        // Each date after the one before it (backup and rollback each before the start).
        for pair in order.windows(2) {
            let ((a, ta, _), (b, tb, loc)) = (&pair[0], &pair[1]);
            if *a == "backup.completed" && *b == "rollback.requested" {
                continue;
            }
            if tb < ta {
                diags.push(located(
                    path,
                    *loc,
                    format!(
                        "`{b}` ({}) is before `{a}` ({})",
                        timestamp(tb),
                        timestamp(ta)
                    ),
                ));
            }
        }
    }

    match (status, &t.removed) {
        (S::Removed, None) => diags.push(
            at(
                path,
                &t.status,
                "a `removed` tenant needs `removed:` (when its namespace was found gone)",
            )
            .with_label("serve records it with the status"),
        ),
        (S::Removed, Some(_))
            if t.purge
                .as_ref()
                .is_some_and(|p| p.step.value != PurgeStep::Namespace) =>
        {
            diags.push(
                at(
                    path,
                    &t.status,
                    "a `removed` tenant went through every purge step",
                )
                .with_label("expected `purge.step: namespace` and `purge.teardownCompleted`"),
            );
        }
        (s, Some(r)) if s != S::Removed => diags.push(
            at(
                path,
                r,
                format!("`removed:` belongs to a `removed` tenant, not a `{name}` one"),
            )
            .with_label("the date the namespace was found gone"),
        ),
        _ => {}
    }
}

/// `platform.yaml`'s `lifecycle` section: URLs the Jobs call, mailboxes, the SMTP security,
/// the archive bucket and storage class, durations, and the websites product.
pub fn check_settings(
    p: &Platform,
    products: &BTreeMap<String, (String, Product)>,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let l = &p.lifecycle;
    if let Some(why) = url_problem(&l.reports.url.value, true) {
        diags.push(
            at(path, &l.reports.url, format!("invalid report URL: it {why}"))
                .with_label("expected serve as the Jobs reach it: `https://…`, or `http://<service>.<namespace>.svc.cluster.local:<port>`"),
        );
    }
    if let Some(why) = url_problem(&l.grafana.url.value, false) {
        diags.push(
            at(
                path,
                &l.grafana.url,
                format!("invalid Grafana URL: it {why}"),
            )
            .with_label("expected `https://…`"),
        );
    }
    if !naming::is_dns_subdomain(&l.grafana.provider_config) {
        diags.push(located(
            path,
            l.grafana.url.referenced,
            format!(
                "invalid `lifecycle.grafana.providerConfig` `{}`: expected a Kubernetes object name",
                l.grafana.provider_config
            ),
        ));
    }
    check_duration(
        path,
        &l.activation.deadline,
        60,
        6 * 3600,
        "1m to 6h",
        diags,
    );
    check_duration(
        path,
        &l.archive.deadline,
        600,
        48 * 3600,
        "10m to 48h",
        diags,
    );
    let hp = &l.activation.health_path.value;
    if !hp.starts_with('/') || !hp.bytes().all(|b| b.is_ascii_graphic()) || hp.contains(['?', '#'])
    {
        diags.push(
            at(path, &l.activation.health_path, "invalid `healthPath`")
                .with_label("expected a URL path such as `/health`"),
        );
    }
    if let Some(via) = &l.activation.health_via
        && let Some(why) = consumers::host_problem(&via.value)
    {
        diags.push(at(path, via, format!("invalid `healthVia`: it {why}")));
    }
    if let Some(w) = &l.websites {
        match products.get(&w.product.value) {
            None => diags.push(
                at(
                    path,
                    &w.product,
                    format!("unknown websites product `{}`", w.product.value),
                )
                .with_label(format!(
                    "expected one of: {}",
                    products.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            ),
            Some((_, product)) if product.env.contains_key(&w.token_env.value) => diags.push(at(
                path,
                &w.token_env,
                format!(
                    "`{}` is a plain variable of product `{}`; the token variable must be its own",
                    w.token_env.value, w.product.value
                ),
            )),
            Some(_) => {}
        }
        let wp = &w.path.value;
        if !wp.starts_with('/') || wp.ends_with('/') || !wp.bytes().all(|b| b.is_ascii_graphic()) {
            diags.push(
                at(path, &w.path, "invalid websites path")
                    .with_label("expected a URL path such as `/api/v1/websites`"),
            );
        }
        let te = &w.token_env.value;
        if te.is_empty()
            || te.starts_with(|c: char| c.is_ascii_digit())
            || !te
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            diags.push(at(path, &w.token_env, "invalid `tokenEnv`").with_label(
                "expected an environment variable name such as `INTERNAL_SERVICE_TOKEN`",
            ));
        }
    }
    let e = &l.email;
    if let Some(why) = consumers::host_problem(&e.smtp.host.value) {
        diags.push(at(
            path,
            &e.smtp.host,
            format!("invalid SMTP host: it {why}"),
        ));
    }
    if e.smtp.port.value == 0 {
        diags
            .push(at(path, &e.smtp.port, "port 0 is not a port").with_label("expected 1 to 65535"));
    }
    match e.smtp.security.value.as_str() {
        "tls" | "starttls" => {}
        "none" if is_private_host(&e.smtp.host.value) => {}
        "none" => diags.push(
            at(path, &e.smtp.security, "SMTP without TLS to a relay outside the cluster")
                .with_label("`none` is for a loopback or in-cluster relay (`*.svc.cluster.local`); use `starttls` or `tls`")
                .with_help("the welcome email carries the admin's initial password"),
        ),
        other => diags.push(
            at(path, &e.smtp.security, format!("unknown SMTP security `{other}`"))
                .with_label("expected one of: tls, starttls, none"),
        ),
    }
    for (what, mb) in [("from", Some(&e.from)), ("replyTo", e.reply_to.as_ref())] {
        if let Some(mb) = mb
            && mailbox_address(&mb.value).is_none()
        {
            diags.push(
                at(path, mb, format!("invalid `{what}` mailbox"))
                    .with_label("expected `Name <address@example.com>` or `address@example.com`"),
            );
        }
    }
    if !consumers::is_email(&e.support_email.value) {
        diags.push(
            at(path, &e.support_email, "invalid `supportEmail`")
                .with_label("expected an address such as `support@example.com`"),
        );
    }
    if let Some(why) = url_problem(&e.docs_url.value, false) {
        diags.push(at(
            path,
            &e.docs_url,
            format!("invalid `docsUrl`: it {why}"),
        ));
    }
    if e.brand.trim().is_empty() || e.brand.chars().any(char::is_control) || e.brand.len() > 100 {
        diags.push(located(
            path,
            e.from.referenced,
            "`lifecycle.email.brand` must be 1 to 100 printable characters",
        ));
    }
    let a = &l.archive;
    if let Some(why) = consumers::bucket_problem(&a.bucket.value) {
        diags.push(at(
            path,
            &a.bucket,
            format!("invalid archive bucket: it {why}"),
        ));
    }
    if a.region.is_empty()
        || a.region.len() > 32
        || !a
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        diags.push(located(
            path,
            a.bucket.referenced,
            format!(
                "invalid archive region `{}`: expected an S3 region such as `eu-west-3`",
                a.region
            ),
        ));
    }
    if let Some(ep) = &a.endpoint
        && let Some(why) = url_problem(&ep.value, true)
    {
        diags.push(at(path, ep, format!("invalid archive endpoint: it {why}")));
    }
    if let Some(sc) = &a.storage_class
        && !STORAGE_CLASSES.contains(&sc.value.as_str())
    {
        diags.push(
            at(path, sc, format!("unknown S3 storage class `{}`", sc.value))
                .with_label(format!("expected one of: {}", STORAGE_CLASSES.join(", ")))
                .with_help(if sc.value == "GLACIER_DEEP_ARCHIVE" {
                    "the S3 API calls Glacier Deep Archive `DEEP_ARCHIVE` (the seed's `GLACIER_DEEP_ARCHIVE` is the console's name); leave it out for MinIO and tier with a transition rule"
                } else {
                    "leave it out for MinIO, whose storage classes are parity settings, and tier with a transition rule"
                }),
        );
    }
}

/// A tier's `offer`: quantities, within the quota the tier reserves.
pub fn check_offer(name: &str, tier: &Tier, path: &str, diags: &mut Vec<Diagnostic>) {
    let Some(o) = &tier.offer else {
        return;
    };
    if o.title.trim().is_empty() || o.title.chars().any(char::is_control) {
        diags.push(located(
            path,
            o.cpu.referenced,
            format!("tier `{name}`: the offer's `title` must be printable and not empty"),
        ));
    }
    for (q, key, what) in [
        (&o.cpu, "requests.cpu", "CPU"),
        (&o.memory, "requests.memory", "memory"),
        (&o.storage, "requests.storage", "storage"),
    ] {
        let Some(value) = consumers::quantity_value(&q.value).filter(|v| *v >= 0.0) else {
            diags.push(
                at(
                    path,
                    q,
                    format!("`{}` is not a Kubernetes quantity", q.value),
                )
                .with_label(format!("expected a {what} quantity such as `6`, `12Gi`")),
            );
            continue;
        };
        if let Some(quota) = tier.quota.get(key)
            && let Some(limit) = consumers::quantity_value(&quota.value)
            && value > limit
        {
            diags.push(
                at(
                    path,
                    q,
                    format!(
                        "tier `{name}` sells {} {what}, more than its quota reserves (`{key}: {}`)",
                        q.value, quota.value
                    ),
                )
                .with_label("a tier cannot sell more than it reserves"),
            );
        }
    }
}

fn check_duration(
    path: &str,
    d: &Sp<String>,
    min: u64,
    max: u64,
    range: &str,
    diags: &mut Vec<Diagnostic>,
) {
    match duration_secs(&d.value) {
        Some(s) if (min..=max).contains(&s) => {}
        _ => diags.push(
            at(path, d, format!("invalid duration `{}`", d.value))
                .with_label(format!("expected `<n>s`, `<n>m` or `<n>h`, from {range}")),
        ),
    }
}

/// The address of a mailbox (`Name <a@b.c>` or `a@b.c`), when it is one.
pub fn mailbox_address(s: &str) -> Option<&str> {
    if s.chars().any(char::is_control) {
        return None;
    }
    let addr = match s.trim().strip_suffix('>') {
        Some(rest) => {
            let (name, addr) = rest.rsplit_once('<')?;
            if name.trim().is_empty() || name.contains(['<', '>', '"']) {
                return None;
            }
            addr
        }
        None => s.trim(),
    };
    consumers::is_email(addr).then_some(addr)
}

/// A loopback address or an in-cluster Service name: where plain HTTP or SMTP never leaves
/// the cluster's network.
pub fn is_private_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
        || host.ends_with(".svc")
        || host.ends_with(".svc.cluster.local")
}

/// The host of an `http(s)://host[:port][/path]` URL.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    Some(match authority.rsplit_once(':') {
        Some((h, _)) => h,
        None => authority,
    })
}

/// Why a URL the Jobs call is refused: `https://host[:port][/path]`, or with `http_in_cluster`
/// also `http://` to a loopback or in-cluster host; no user, query or fragment.
pub fn url_problem(url: &str, http_in_cluster: bool) -> Option<String> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Some("does not start with `https://`".to_owned()),
    };
    if rest.contains(['?', '#', '@', ' ']) || !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("must not carry a user, query, fragment or space".to_owned());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Some(format!("has an invalid port `{p}`"));
    }
    if let Some(why) = consumers::host_problem(host) {
        return Some(format!("has a host that {why}"));
    }
    if !(https || (http_in_cluster && is_private_host(host))) {
        return Some(if http_in_cluster {
            "uses plain `http://` to a host outside the cluster; use `https://`".to_owned()
        } else {
            "does not start with `https://`".to_owned()
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(url_problem("https://provisio.example.com", false), None);
        assert_eq!(
            url_problem(
                "http://provisio-serve.provisio.svc.cluster.local:8080",
                true
            ),
            None
        );
        assert_eq!(url_problem("http://127.0.0.1:8080/x", true), None);
        assert!(url_problem("http://provisio.example.com", true).is_some());
        assert!(url_problem("http://provisio-serve.provisio.svc:8080", false).is_some());
        assert!(url_problem("https://u:p@host", false).is_some());
        assert!(url_problem("https://host:0", false).is_some());
        assert!(url_problem("https://host/a?b", false).is_some());
        assert!(url_problem("ftp://host", false).is_some());
        assert_eq!(url_host("https://a.b:8/c"), Some("a.b"));
    }

    #[test]
    fn mailboxes() {
        assert_eq!(
            mailbox_address("Collect & Verything <welcome@collectverything.com>"),
            Some("welcome@collectverything.com")
        );
        assert_eq!(mailbox_address("a@b.co"), Some("a@b.co"));
        for bad in ["<a@b.co>", "Name a@b.co>", "x", "Na\nme <a@b.co>"] {
            assert_eq!(mailbox_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn backup_locations() {
        let ok = "s3://archive/t-1/20250715T000312Z/";
        assert_eq!(backup_location_problem(ok, "archive", "t-1"), None);
        for bad in [
            "s3://other/t-1/x/",
            "s3://archive/t-2/x/",
            "s3://archive/t-1/",
            "s3://archive/t-1/x",
            "s3://archive/t-1/../t-2/",
            "s3://archive/t-1/a//b/",
            "s3://archive/t-1/a b/",
        ] {
            assert!(
                backup_location_problem(bad, "archive", "t-1").is_some(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(reason_problem("setup-mysql: cannot reach mysql"), None);
        assert!(reason_problem(" ").is_some());
        assert!(reason_problem("a\nb").is_some());
        assert!(reason_problem(&"x".repeat(501)).is_some());
        assert_eq!(reason_problem(&"é".repeat(500)), None);
    }
}

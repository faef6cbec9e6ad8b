//! `provisio setup credentials`: the tenant's own credentials that no shared service creates,
//! stored once in the secret store by the PreSync Job `setup-credentials-<tenant>`
//! (docs/lifecycle.md, docs/credentials.md):
//!
//! - `<keyPrefix>/<tenant>/admin` `{"tenant", "password"}`: the tenant admin's initial password
//!   (Grafana user, welcome email); random, created once, never rotated by a re-sync;
//! - `<keyPrefix>/<tenant>/internal-api` `{"tenant", "token"}`: the websites-service's bearer
//!   token (only when the platform names a websites product); likewise;
//! - `<keyPrefix>/<tenant>/report` `{"tenant", "key"}`: the key the tenant's lifecycle Jobs sign
//!   their reports with, derived from the report master secret
//!   (`provisio_core::lifecycle::signature::derive_key`), so serve needs no copy of it.
//!
//! A stored report key that differs from the one the master derives is an error naming the
//! key, never overwritten silently (a master rotation is a person's decision: delete the key
//! and re-sync). No value is ever printed or logged.

use provisio_core::lifecycle::signature::derive_key;
use provisio_core::plan::lifecycle::CredentialsSpec;

use super::secrets::{Created, Credential, SecretStore, ensure};
use super::{Change, Report, SetupError};

/// Creates what is missing; the report names each key and what happened to it.
pub fn setup(
    spec: &CredentialsSpec,
    master: &[u8],
    store: &dyn SecretStore,
) -> Result<Report, SetupError> {
    let tenant = spec.tenant.as_str();
    let c = &spec.credentials;
    let mut report = Report::default();
    let (_, change) = ensure(store, &c.admin.secret_key, "tenant", tenant, "password")?;
    report.record(format!("admin password {}", c.admin.secret_key), change);
    if let Some(api) = &c.internal_api {
        let (_, change) = ensure(store, &api.secret_key, "tenant", tenant, "token")?;
        report.record(format!("internal API token {}", api.secret_key), change);
    }
    let key = &c.report.secret_key;
    let expected = hex::encode(derive_key(master, tenant));
    let value = Credential::from([
        ("tenant".to_owned(), tenant.to_owned()),
        ("key".to_owned(), expected.clone()),
    ]);
    let matches = |stored: &Credential| {
        stored.get("tenant").map(String::as_str) == Some(tenant)
            && stored.get("key") == Some(&expected)
    };
    let change = match store.get(key)? {
        Some(stored) if matches(&stored) => Change::Unchanged,
        Some(_) => return Err(mismatch(key)),
        None => match store.create(key, &value)? {
            Created::Stored => Change::Created,
            // Another run stored it meanwhile: it must be the same derivation.
            Created::AlreadyExists => match store.get(key)? {
                Some(stored) if matches(&stored) => Change::Unchanged,
                _ => return Err(mismatch(key)),
            },
        },
    };
    report.record(format!("report key {key}"), change);
    Ok(report)
}

fn mismatch(key: &str) -> SetupError {
    SetupError::invalid(
        format!("secret at `{key}`"),
        "the stored report key is not the one the report master secret derives for this tenant (a rotated master?): delete the key to derive it again, or restore the previous master",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::secrets::FileStore;

    fn spec(internal_api: bool) -> CredentialsSpec {
        let api = if internal_api {
            r#""internalApi": {"secretKey": "/t/t-a/internal-api"},"#
        } else {
            ""
        };
        CredentialsSpec::parse(&format!(
            r#"{{"version": 1, "tenant": "t-a", "credentials": {{
                "admin": {{"secretKey": "/t/t-a/admin"}}, {api}
                "report": {{"secretKey": "/t/t-a/report"}}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn creates_once_and_derives_the_report_key_from_the_master() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let first = setup(&spec(true), b"master", &store).unwrap();
        assert_eq!(first.changes(), 3, "{first:?}");
        let admin = store.get("/t/t-a/admin").unwrap().unwrap();
        assert_eq!(admin["tenant"], "t-a");
        assert_eq!(admin["password"].len(), crate::setup::secrets::PASSWORD_LEN);
        let report = store.get("/t/t-a/report").unwrap().unwrap();
        assert_eq!(report["key"], hex::encode(derive_key(b"master", "t-a")));
        assert_ne!(report["key"], hex::encode(derive_key(b"master", "t-b")));
        // A re-sync changes nothing and never rotates the password.
        let again = setup(&spec(true), b"master", &store).unwrap();
        assert!(again.is_unchanged(), "{again:?}");
        assert_eq!(store.get("/t/t-a/admin").unwrap().unwrap(), admin);
        // Without a websites product, no token.
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = FileStore::new(dir2.path());
        assert_eq!(
            setup(&spec(false), b"master", &store2).unwrap().changes(),
            2
        );
        assert!(store2.get("/t/t-a/internal-api").unwrap().is_none());
        // Another master derives another key: refused, the stored key kept.
        let e = setup(&spec(true), b"other-master", &store).unwrap_err();
        assert!(e.to_string().contains("/t/t-a/report"), "{e}");
        assert_eq!(store.get("/t/t-a/report").unwrap().unwrap(), report);
    }
}

//! Credentials of a tenant in the secret store: read them, create them once (never
//! overwrite: a re-sync never rotates a password), delete them at teardown. The store is a
//! trait; [`FileStore`] keeps one JSON file per key (tests, local runs). See
//! `docs/credentials.md` for the flow in the cluster.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngExt;
use rand::distr::Alphanumeric;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;

use super::{Change, SetupError};

/// One credential set: property → value (`username`/`password`, `access_key`/`secret_key`),
/// the JSON object the ExternalSecrets read properties from.
pub type Credential = BTreeMap<String, String>;

/// Whether [`SecretStore::create`] stored the value or found one already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Stored,
    AlreadyExists,
}

pub trait SecretStore {
    /// The credential at `key`, or `None` when the store has none.
    fn get(&self, key: &str) -> Result<Option<Credential>, SetupError>;
    /// Stores `value` at `key` only if nothing is there (atomic where the store allows).
    fn create(&self, key: &str, value: &Credential) -> Result<Created, SetupError>;
    /// Removes `key`; `false` when it was not there.
    fn delete(&self, key: &str) -> Result<bool, SetupError>;
}

/// Length of generated passwords (alphanumeric: ~190 bits, no quoting issues anywhere).
pub const PASSWORD_LEN: usize = 32;

/// A fresh random password from the OS generator (panics if the OS has none).
pub fn generate_password() -> String {
    UnwrapErr(SysRng)
        .sample_iter(&Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Whether a secret value is acceptable (it may have been written by an operator rotating on
/// purpose): 16–128 printable ASCII characters without quotes, backslash or space.
pub fn is_acceptable_secret(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"'\"\\`".contains(&b))
}

/// The credential at `key` for identity `id` (stored under `id_field`): the stored one when
/// present, else a new random secret stored under `secret_field` (created only if still
/// absent, so two concurrent Jobs agree). Returns the secret and whether it was created.
pub fn ensure(
    store: &dyn SecretStore,
    key: &str,
    id_field: &str,
    id: &str,
    secret_field: &str,
) -> Result<(String, Change), SetupError> {
    let found = |c: Credential| -> Result<String, SetupError> {
        match (c.get(id_field), c.get(secret_field)) {
            (Some(stored_id), Some(secret)) if stored_id == id => {
                if is_acceptable_secret(secret) {
                    Ok(secret.clone())
                } else {
                    Err(SetupError::invalid(
                        format!("secret at `{key}`"),
                        format!(
                            "`{secret_field}` must be 16-128 printable ASCII characters without quotes, backslash or space"
                        ),
                    ))
                }
            }
            (Some(stored_id), Some(_)) => Err(SetupError::invalid(
                format!("secret at `{key}`"),
                format!("`{id_field}` is `{stored_id}`, expected `{id}`"),
            )),
            _ => Err(SetupError::invalid(
                format!("secret at `{key}`"),
                format!("expected the properties `{id_field}` and `{secret_field}`"),
            )),
        }
    };
    if let Some(c) = store.get(key)? {
        return Ok((found(c)?, Change::Unchanged));
    }
    let secret = generate_password();
    let value = Credential::from([
        (id_field.to_owned(), id.to_owned()),
        (secret_field.to_owned(), secret.clone()),
    ]);
    match store.create(key, &value)? {
        Created::Stored => {
            tracing::info!(%key, "stored a new credential");
            Ok((secret, Change::Created))
        }
        Created::AlreadyExists => {
            let c = store.get(key)?.ok_or_else(|| SetupError::Store {
                action: "read",
                key: key.to_owned(),
                source: "the key exists but has no value".into(),
            })?;
            Ok((found(c)?, Change::Unchanged))
        }
    }
}

/// A directory with one JSON file per key: `<root>/<key>.json` (mode 0600).
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, SetupError> {
        let rel = key.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(SetupError::invalid(
                format!("secret-store key `{key}`"),
                "expected `/`-separated non-empty segments without `.` or `..`",
            ));
        }
        Ok(self.root.join(format!("{rel}.json")))
    }
}

fn store_err(
    action: &'static str,
    key: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> SetupError {
    SetupError::Store {
        action,
        key: key.to_owned(),
        source: Box::new(e),
    }
}

impl SecretStore for FileStore {
    fn get(&self, key: &str) -> Result<Option<Credential>, SetupError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| store_err("parse", key, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_err("read", key, e)),
        }
    }

    fn create(&self, key: &str, value: &Credential) -> Result<Created, SetupError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| store_err("create the folder of", key, e))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(Created::AlreadyExists);
            }
            Err(e) => return Err(store_err("create", key, e)),
        };
        let bytes = serde_json::to_vec_pretty(value).expect("strings serialize");
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| store_err("write", key, e))?;
        Ok(Created::Stored)
    }

    fn delete(&self, key: &str) -> Result<bool, SetupError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(store_err("delete", key, e)),
        }
    }
}

impl FileStore {
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// AWS Secrets Manager (the store the example registry's `ClusterSecretStore` reads): one
/// secret per key, its `SecretString` the credential as a JSON object, so the
/// ExternalSecrets' `remoteRef.property` picks `username`/`password`.
pub struct AwsSecretsManager {
    client: super::aws::Client,
}

impl AwsSecretsManager {
    pub fn new(client: super::aws::Client) -> Self {
        AwsSecretsManager { client }
    }

    fn call(
        &self,
        action: &'static str,
        key: &str,
        body: serde_json::Value,
    ) -> Result<(u16, serde_json::Value), SetupError> {
        let target = format!("secretsmanager.{action}");
        let bytes = serde_json::to_vec(&body).expect("JSON serializes");
        let r = self.client.send(
            "POST",
            "/",
            &[],
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", &target),
            ],
            &bytes,
        )?;
        let value: serde_json::Value = if r.body.is_empty() {
            serde_json::Value::Null
        } else {
            match serde_json::from_str(&r.body) {
                Ok(v) => v,
                // Errors outside the service (signature, proxy) may not be JSON.
                Err(_) if !r.ok() => serde_json::json!({"message": r.body.trim()}),
                Err(e) => return Err(store_err("parse the answer for", key, e)),
            }
        };
        Ok((r.status, value))
    }
}

fn error_type(v: &serde_json::Value) -> &str {
    v["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t))
        .unwrap_or("")
}

fn aws_err(action: &'static str, key: &str, status: u16, v: &serde_json::Value) -> SetupError {
    SetupError::Store {
        action,
        key: key.to_owned(),
        source: format!(
            "HTTP {status} {}: {}",
            error_type(v),
            v["message"]
                .as_str()
                .or(v["Message"].as_str())
                .unwrap_or("")
        )
        .into(),
    }
}

impl SecretStore for AwsSecretsManager {
    fn get(&self, key: &str) -> Result<Option<Credential>, SetupError> {
        let (status, v) = self.call("GetSecretValue", key, serde_json::json!({"SecretId": key}))?;
        match status {
            200 => {
                let s = v["SecretString"].as_str().ok_or_else(|| {
                    store_err("read", key, std::io::Error::other("no SecretString"))
                })?;
                serde_json::from_str(s)
                    .map(Some)
                    .map_err(|e| store_err("parse", key, e))
            }
            400..=499 if error_type(&v) == "ResourceNotFoundException" => Ok(None),
            _ => Err(aws_err("read", key, status, &v)),
        }
    }

    fn create(&self, key: &str, value: &Credential) -> Result<Created, SetupError> {
        let secret = serde_json::to_string(value).expect("strings serialize");
        let (status, v) = self.call(
            "CreateSecret",
            key,
            serde_json::json!({
                "Name": key,
                "SecretString": secret,
                "Description": "Tenant credential written by provisio setup",
            }),
        )?;
        match status {
            200 => Ok(Created::Stored),
            400..=499 if error_type(&v) == "ResourceExistsException" => Ok(Created::AlreadyExists),
            _ => Err(aws_err("create", key, status, &v)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool, SetupError> {
        // A forced delete of a missing secret may succeed silently: ask first.
        let (status, v) = self.call("DescribeSecret", key, serde_json::json!({"SecretId": key}))?;
        match status {
            200 => {}
            400..=499 if error_type(&v) == "ResourceNotFoundException" => return Ok(false),
            _ => return Err(aws_err("read", key, status, &v)),
        }
        let (status, v) = self.call(
            "DeleteSecret",
            key,
            serde_json::json!({"SecretId": key, "ForceDeleteWithoutRecovery": true}),
        )?;
        match status {
            200 => Ok(true),
            400..=499 if error_type(&v) == "ResourceNotFoundException" => Ok(false),
            _ => Err(aws_err("delete", key, status, &v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_once_and_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let (p1, c1) = ensure(&store, "/x/t/orders-db", "username", "u", "password").unwrap();
        assert_eq!(c1, Change::Created);
        assert_eq!(p1.len(), PASSWORD_LEN);
        let (p2, c2) = ensure(&store, "/x/t/orders-db", "username", "u", "password").unwrap();
        assert_eq!((p2, c2), (p1, Change::Unchanged));
        // Another identity at the same key is an error, not a silent overwrite.
        let e = ensure(&store, "/x/t/orders-db", "username", "v", "password").unwrap_err();
        assert!(e.to_string().contains("expected `v`"), "{e}");
        assert!(store.delete("/x/t/orders-db").unwrap());
        assert!(!store.delete("/x/t/orders-db").unwrap());
        assert!(store.get("../etc/passwd").is_err());
    }
}

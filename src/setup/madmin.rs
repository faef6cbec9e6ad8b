//! MinIO's admin API (`/minio/admin/v3/…`): the tenant's MinIO user and its canned policy.
//! Request bodies carrying secrets are encrypted with the admin's secret key in MinIO's
//! format (the official SDKs' `madmin` / `minio.crypto`): a 41-byte header (32-byte salt,
//! 1-byte AEAD id — 0 AES-256-GCM, 1 ChaCha20-Poly1305 — 8-byte nonce), then 16 KiB chunks
//! each sealed with the nonce ‖ little-endian chunk number, under an Argon2id key (t=1,
//! m=64 MiB, p=4) and an associated-data block marked on the last chunk.
//! Requests are signed with SigV4 (service `s3`) and use the same method, path and query as
//! the Python SDK's `MinioAdmin` (proven in `tests/it/setup_minio_admin.rs`).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use rand::Rng as _;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use serde_json::{Value, json};

use super::aws::Client;
use super::secrets::{self, SecretStore};
use super::{Change, JsonAnswer, Report, SetupError};
use crate::io::http::Response;
use provisio_core::plan::setup::S3Spec;

const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 8;
const HEADER_LEN: usize = SALT_LEN + 1 + NONCE_LEN;
const TAG_LEN: usize = 16;
const CHUNK: usize = 16 * 1024;

/// The AEADs of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    AesGcm = 0,
    ChaCha20Poly1305 = 1,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("encrypted data too short ({0} bytes, the header alone is 41)")]
    TooShort(usize),
    #[error("unknown AEAD id {0}")]
    UnknownAead(u8),
    #[error("chunk {0} does not authenticate (wrong key, or corrupted or truncated data)")]
    Authentication(u32),
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

fn derive_key(secret: &[u8], salt: &[u8]) -> Result<[u8; 32], CryptoError> {
    let params = argon2::Params::new(64 * 1024, 1, 4, Some(32))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(secret, salt, &mut key)
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(key)
}

enum Cipher {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Cipher {
    fn new(aead: u8, key: &[u8; 32]) -> Result<Cipher, CryptoError> {
        match aead {
            0 => Ok(Cipher::Aes(Box::new(Aes256Gcm::new(key.into())))),
            1 => Ok(Cipher::ChaCha(Box::new(ChaCha20Poly1305::new(key.into())))),
            n => Err(CryptoError::UnknownAead(n)),
        }
    }

    fn seal(&self, nonce: &[u8; 12], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let payload = Payload { msg: plain, aad };
        match self {
            Cipher::Aes(c) => c.encrypt(nonce.into(), payload),
            Cipher::ChaCha(c) => c.encrypt(nonce.into(), payload),
        }
        .expect("sealing a 16 KiB chunk cannot fail")
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let payload = Payload { msg: sealed, aad };
        match self {
            Cipher::Aes(c) => c.decrypt(nonce.into(), payload),
            Cipher::ChaCha(c) => c.decrypt(nonce.into(), payload),
        }
        .ok()
    }
}

fn padded(nonce: &[u8], counter: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..NONCE_LEN].copy_from_slice(nonce);
    n[NONCE_LEN..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// The associated data of every chunk: 0x00 ‖ the tag of an empty message under nonce ‖ 0.
fn associated_data(cipher: &Cipher, nonce: &[u8]) -> Vec<u8> {
    let mut ad = vec![0u8];
    ad.extend_from_slice(&cipher.seal(&padded(nonce, 0), b"", b""));
    ad
}

/// Encrypts `plain` with `password` (the admin's secret key) in MinIO's admin format.
pub fn encrypt(plain: &[u8], password: &str, aead: Aead) -> Result<Vec<u8>, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    UnwrapErr(SysRng).fill_bytes(&mut salt);
    UnwrapErr(SysRng).fill_bytes(&mut nonce);
    encrypt_with(plain, password, aead, &salt, &nonce)
}

/// [`encrypt`] with a given salt and nonce (deterministic, for tests).
pub fn encrypt_with(
    plain: &[u8],
    password: &str,
    aead: Aead,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, CryptoError> {
    let key = derive_key(password.as_bytes(), salt)?;
    let cipher = Cipher::new(aead as u8, &key)?;
    let mut ad = associated_data(&cipher, nonce);
    let mut out =
        Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN * (plain.len() / CHUNK + 1));
    out.extend_from_slice(salt);
    out.push(aead as u8);
    out.extend_from_slice(nonce);
    let chunks: Vec<&[u8]> = plain.chunks(CHUNK).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if i + 1 == chunks.len() {
            ad[0] = 0x80;
        }
        out.extend_from_slice(&cipher.seal(&padded(nonce, i as u32 + 1), &ad, chunk));
    }
    Ok(out)
}

/// Decrypts data in MinIO's admin format (either AEAD).
pub fn decrypt(data: &[u8], password: &str) -> Result<Vec<u8>, CryptoError> {
    if data.len() < HEADER_LEN {
        return Err(CryptoError::TooShort(data.len()));
    }
    let (salt, rest) = data.split_at(SALT_LEN);
    let (aead, rest) = rest.split_at(1);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let cipher = Cipher::new(aead[0], &derive_key(password.as_bytes(), salt)?)?;
    let mut ad = associated_data(&cipher, nonce);
    let sealed: Vec<&[u8]> = body.chunks(CHUNK + TAG_LEN).collect();
    let mut out = Vec::with_capacity(body.len());
    for (i, chunk) in sealed.iter().enumerate() {
        if i + 1 == sealed.len() {
            ad[0] = 0x80;
        }
        let n = i as u32 + 1;
        let plain = cipher
            .open(&padded(nonce, n), &ad, chunk)
            .ok_or(CryptoError::Authentication(n))?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

/// The admin API of one MinIO server, as its root (or an admin) user.
pub struct MinioAdmin {
    client: Client,
    secret_key: String,
}

const PREFIX: &str = "/minio/admin/v3/";

impl MinioAdmin {
    /// `client` signs with the admin's access key; `secret_key` is the same key's secret,
    /// which encrypts the bodies.
    pub fn new(client: Client, secret_key: String) -> Self {
        MinioAdmin { client, secret_key }
    }

    fn call(
        &self,
        method: &str,
        command: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, SetupError> {
        self.client.send(
            method,
            &format!("{PREFIX}{command}"),
            query,
            &[("content-type", "application/octet-stream")],
            body,
        )
    }

    fn encrypted(&self, value: &Value) -> Result<Vec<u8>, SetupError> {
        encrypt(value.to_string().as_bytes(), &self.secret_key, Aead::AesGcm)
            .map_err(|e| SetupError::invalid("MinIO admin request", e.to_string()))
    }

    fn expect_ok(&self, r: Response, action: &str) -> Result<Response, SetupError> {
        if r.ok() {
            Ok(r)
        } else {
            Err(self.client.refused(action, &r))
        }
    }

    /// `MinioAdmin.user_add`: creates or updates a user with its secret key.
    pub fn user_add(&self, access_key: &str, secret_key: &str) -> Result<(), SetupError> {
        let body = self.encrypted(&json!({"status": "enabled", "secretKey": secret_key}))?;
        let r = self.call("PUT", "add-user", &[("accessKey", access_key)], &body)?;
        self.expect_ok(r, &format!("write user {access_key}"))
            .map(drop)
    }

    /// `MinioAdmin.user_info`: the user's JSON, or `None` when there is no such user.
    pub fn user_info(&self, access_key: &str) -> Result<Option<Value>, SetupError> {
        let r = self.call("GET", "user-info", &[("accessKey", access_key)], b"")?;
        if r.status == 404 || r.body.contains("XMinioAdminNoSuchUser") {
            return Ok(None);
        }
        let r = self.expect_ok(r, &format!("read user {access_key}"))?;
        r.answer("minio", &format!("read user {access_key}"))
            .map(Some)
    }

    /// `MinioAdmin.user_remove`.
    pub fn user_remove(&self, access_key: &str) -> Result<bool, SetupError> {
        let r = self.call("DELETE", "remove-user", &[("accessKey", access_key)], b"")?;
        if r.status == 404 || r.body.contains("XMinioAdminNoSuchUser") {
            return Ok(false);
        }
        self.expect_ok(r, &format!("remove user {access_key}"))
            .map(|_| true)
    }

    /// `MinioAdmin.policy_add`: creates or replaces a canned policy (plain JSON body).
    pub fn policy_add(&self, name: &str, policy: &Value) -> Result<(), SetupError> {
        let r = self.call(
            "PUT",
            "add-canned-policy",
            &[("name", name)],
            policy.to_string().as_bytes(),
        )?;
        self.expect_ok(r, &format!("write policy {name}")).map(drop)
    }

    /// `MinioAdmin.policy_info`: the policy document, or `None` when there is none.
    pub fn policy_info(&self, name: &str) -> Result<Option<Value>, SetupError> {
        let r = self.call("GET", "info-canned-policy", &[("name", name)], b"")?;
        if r.status == 404 || r.body.contains("XMinioAdminNoSuchPolicy") {
            return Ok(None);
        }
        let r = self.expect_ok(r, &format!("read policy {name}"))?;
        let v: Value = r.answer("minio", &format!("read policy {name}"))?;
        // Newer servers wrap the document: {"PolicyName": …, "Policy": {…}}.
        Ok(Some(v.get("Policy").cloned().unwrap_or(v)))
    }

    /// `MinioAdmin.policy_remove`.
    pub fn policy_remove(&self, name: &str) -> Result<bool, SetupError> {
        let r = self.call("DELETE", "remove-canned-policy", &[("name", name)], b"")?;
        if r.status == 404 || r.body.contains("XMinioAdminNoSuchPolicy") {
            return Ok(false);
        }
        self.expect_ok(r, &format!("remove policy {name}"))
            .map(|_| true)
    }

    /// `MinioAdmin.attach_policy(policies, user=…)`.
    pub fn attach_policy(&self, policies: &[&str], user: &str) -> Result<(), SetupError> {
        let body = self.encrypted(&json!({"policies": policies, "user": user}))?;
        let r = self.call("POST", "idp/builtin/policy/attach", &[], &body)?;
        self.expect_ok(r, &format!("attach {policies:?} to {user}"))
            .map(drop)
    }
}

/// Name of the tenant's canned policy.
pub fn policy_name(spec: &S3Spec) -> String {
    format!("{}-buckets", spec.user)
}

/// Creates or converges the tenant's MinIO user (its secret key from the secret store,
/// verified by an S3 call signed with it) and its policy limited to its own buckets.
pub fn setup_user(
    admin: &MinioAdmin,
    spec: &S3Spec,
    store: &dyn SecretStore,
    can_sign_in: impl Fn(&str, &str) -> Result<bool, SetupError>,
) -> Result<Report, SetupError> {
    let mut report = Report::default();
    let name = policy_name(spec);
    let wanted = super::s3::tenant_policy(spec);
    let what = format!("policy {name}");
    match admin.policy_info(&name)? {
        Some(p) if p == wanted => report.record(what, Change::Unchanged),
        current => {
            admin.policy_add(&name, &wanted)?;
            report.record(
                what,
                if current.is_some() {
                    Change::Updated
                } else {
                    Change::Created
                },
            );
        }
    }
    let (secret, stored) = secrets::ensure(
        store,
        &spec.secret_key,
        "access_key",
        &spec.user,
        "secret_key",
    )?;
    report.record(format!("secret {}", spec.secret_key), stored);
    let what = format!("user {}", spec.user);
    let info = admin.user_info(&spec.user)?;
    match &info {
        None => {
            admin.user_add(&spec.user, &secret)?;
            report.record(what, Change::Created);
        }
        Some(i) if i["status"] == "enabled" && can_sign_in(&spec.user, &secret)? => {
            report.record(what, Change::Unchanged)
        }
        Some(_) => {
            admin.user_add(&spec.user, &secret)?;
            report.record(what, Change::Updated);
        }
    }
    let attached = info
        .as_ref()
        .and_then(|i| i["policyName"].as_str())
        .is_some_and(|p| p.split(',').any(|x| x == name));
    let what = format!("policy {name} of {}", spec.user);
    if attached {
        report.record(what, Change::Unchanged);
    } else {
        admin.attach_policy(&[&name], &spec.user)?;
        report.record(what, Change::Created);
    }
    Ok(report)
}

/// Removes the tenant's MinIO user, its policy and its secret-store entry.
pub fn teardown_user(
    admin: &MinioAdmin,
    spec: &S3Spec,
    store: &dyn SecretStore,
) -> Result<Report, SetupError> {
    let mut report = Report::default();
    let gone = Change::deleted_if;
    report.record(
        format!("user {}", spec.user),
        gone(admin.user_remove(&spec.user)?),
    );
    let name = policy_name(spec);
    report.record(format!("policy {name}"), gone(admin.policy_remove(&name)?));
    report.record(
        format!("secret {}", spec.secret_key),
        gone(store.delete(&spec.secret_key)?),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_tampering() {
        let plain: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        for aead in [Aead::AesGcm, Aead::ChaCha20Poly1305] {
            let sealed = encrypt(&plain, "admin-secret", aead).unwrap();
            assert_eq!(sealed.len(), HEADER_LEN + plain.len() + 3 * TAG_LEN);
            assert_eq!(decrypt(&sealed, "admin-secret").unwrap(), plain);
            assert_eq!(
                decrypt(&sealed, "other").unwrap_err(),
                CryptoError::Authentication(1)
            );
            // Dropping the last chunk is detected (the last-chunk mark).
            let truncated = &sealed[..HEADER_LEN + CHUNK + TAG_LEN];
            assert!(decrypt(truncated, "admin-secret").is_err());
        }
        assert_eq!(
            decrypt(b"short", "x").unwrap_err(),
            CryptoError::TooShort(5)
        );
    }
}

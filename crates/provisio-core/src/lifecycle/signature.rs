//! How a Job proves which tenant it reports for. Each tenant has its own key, derived from
//! the report master secret (which only `serve` and the `setup credentials` Job know):
//!
//! ```text
//! K_tenant = HMAC-SHA256(master, "provisio/report/v1" ‖ 0x00 ‖ tenant)
//! X-Provisio-Signature: tenant=<id>,t=<unix seconds>,v1=<hex>
//! v1 = HMAC-SHA256(K_tenant, "<t>" ‖ "." ‖ METHOD ‖ "." ‖ path ‖ "." ‖ hex(SHA-256(body)))
//! ```
//!
//! `serve` derives the key of whichever tenant a request claims (one HMAC; no per-tenant
//! state), checks the signature in constant time, and only then compares the claimed tenant
//! with the route's: a report for tenant B signed with tenant A's key is refused as
//! `wrong_tenant`. Signing the method and the path binds a signature to one route.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The request header carrying the signature.
pub const HEADER: &str = "x-provisio-signature";
/// Separates the scheme's purpose from the tenant id in the key derivation.
const DOMAIN: &[u8] = b"provisio/report/v1";

/// A tenant's report key (32 bytes), as the secret store keeps it (hex).
pub fn derive_key(master: &[u8], tenant: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(DOMAIN);
    mac.update(&[0]);
    mac.update(tenant.as_bytes());
    mac.finalize().into_bytes().into()
}

fn message(t: i64, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    format!("{t}.{method}.{path}.{}", hex::encode(Sha256::digest(body))).into_bytes()
}

/// The `v1` signature of a request (raw bytes).
pub fn sign(key: &[u8], t: i64, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&message(t, method, path, body));
    mac.finalize().into_bytes().to_vec()
}

/// The header value for a request signed with `key` for `tenant` at `t`.
pub fn header(key: &[u8], tenant: &str, t: i64, method: &str, path: &str, body: &[u8]) -> String {
    format!(
        "tenant={tenant},t={t},v1={}",
        hex::encode(sign(key, t, method, path, body))
    )
}

/// A parsed header: the tenant it claims, its time, and its `v1` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub tenant: String,
    pub t: i64,
    pub v1: Vec<Vec<u8>>,
}

/// Why a signature is refused. Each is 401 except [`SignatureError::WrongTenant`] (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "missing `X-Provisio-Signature`: lifecycle reports are signed with the tenant's report key"
    )]
    Missing,
    #[error("malformed `X-Provisio-Signature`: expected `tenant=<id>,t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error(
        "the signature's time is {0} s away from serve's clock (at most 300 s): check the Job's clock"
    )]
    Expired(i64),
    #[error("the signature does not match: wrong key, or the request was altered")]
    Mismatch,
    #[error(
        "this request is signed with the credential of tenant `{claimed}`; it may report for `{claimed}` only, not `{route}`"
    )]
    WrongTenant { claimed: String, route: String },
}

impl SignatureError {
    /// The API's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing | Self::Malformed | Self::Mismatch => "unauthorized",
            Self::Expired(_) => "signature_expired",
            Self::WrongTenant { .. } => "wrong_tenant",
        }
    }
}

/// Parses `tenant=<id>,t=<unix>,v1=<hex>[,v1=<hex>…]` (several `v1` during a rotation).
pub fn parse_header(value: &[u8]) -> Result<Signature, SignatureError> {
    let value = std::str::from_utf8(value).map_err(|_| SignatureError::Malformed)?;
    let (mut tenant, mut t, mut v1) = (None, None, Vec::new());
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("tenant", v)) if !v.is_empty() && v.len() <= 64 => {
                tenant = Some(v.to_owned());
            }
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => {
                v1.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?);
            }
            _ => return Err(SignatureError::Malformed),
        }
    }
    match (tenant, t) {
        (Some(tenant), Some(t)) if !v1.is_empty() => Ok(Signature { tenant, t, v1 }),
        _ => Err(SignatureError::Malformed),
    }
}

/// Verifies a request against the master secrets (the current one first, then any previous
/// one during a rotation), then that it claims the route's tenant.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    header: Option<&[u8]>,
    masters: &[Vec<u8>],
    route_tenant: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
    window_secs: i64,
) -> Result<(), SignatureError> {
    let sig = parse_header(header.ok_or(SignatureError::Missing)?)?;
    let skew = now.saturating_sub(sig.t);
    if skew.abs() > window_secs {
        return Err(SignatureError::Expired(skew));
    }
    let msg = message(sig.t, method, path, body);
    let matched = masters.iter().any(|m| {
        let key = derive_key(m, &sig.tenant);
        sig.v1.iter().any(|v| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
            mac.update(&msg);
            // Constant time (hmac's `verify_slice` compares with `subtle`).
            mac.verify_slice(v).is_ok()
        })
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if sig.tenant != route_tenant {
        return Err(SignatureError::WrongTenant {
            claimed: sig.tenant,
            route: route_tenant.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH_A: &str = "/api/v1/lifecycle/tenants/t-a/reports";

    fn masters() -> Vec<Vec<u8>> {
        vec![b"master-1".to_vec()]
    }

    #[test]
    fn keys_are_per_tenant_and_per_master() {
        assert_ne!(derive_key(b"m", "t-a"), derive_key(b"m", "t-b"));
        assert_ne!(derive_key(b"m", "t-a"), derive_key(b"n", "t-a"));
        // The 0 separator: the domain string cannot be shifted into the tenant id.
        assert_eq!(derive_key(b"m", "t-a"), derive_key(b"m", "t-a"));
    }

    #[test]
    fn a_good_signature_passes_and_every_alteration_fails() {
        let now = 1_750_000_000;
        let key = derive_key(b"master-1", "t-a");
        let h = header(&key, "t-a", now, "POST", PATH_A, b"{}");
        let v = |h: &str, method: &str, path: &str, body: &[u8], now: i64| {
            verify(
                Some(h.as_bytes()),
                &masters(),
                "t-a",
                method,
                path,
                body,
                now,
                300,
            )
        };
        assert_eq!(v(&h, "POST", PATH_A, b"{}", now + 299), Ok(()));
        assert_eq!(
            v(&h, "POST", PATH_A, b"{ }", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(&h, "GET", PATH_A, b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(&h, "POST", "/api/v1/lifecycle/tenants/t-a", b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(&h, "POST", PATH_A, b"{}", now + 301),
            Err(SignatureError::Expired(301))
        );
        let forged = header(
            &derive_key(b"other", "t-a"),
            "t-a",
            now,
            "POST",
            PATH_A,
            b"{}",
        );
        assert_eq!(
            v(&forged, "POST", PATH_A, b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(None, &masters(), "t-a", "POST", PATH_A, b"", now, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v("t=1,v1=00", "POST", PATH_A, b"{}", now),
            Err(SignatureError::Malformed)
        );
        // During a rotation, a signature from the previous master still passes.
        let rotated = vec![b"master-2".to_vec(), b"master-1".to_vec()];
        assert_eq!(
            verify(
                Some(h.as_bytes()),
                &rotated,
                "t-a",
                "POST",
                PATH_A,
                b"{}",
                now,
                300
            ),
            Ok(())
        );
    }

    /// Tenant A's key signs a valid request for A's identity, aimed at B's route: refused as
    /// `wrong_tenant`, never taken for B.
    #[test]
    fn a_report_for_another_tenant_is_refused() {
        let now = 1_750_000_000;
        let path_b = "/api/v1/lifecycle/tenants/t-b/reports";
        let h = header(
            &derive_key(b"master-1", "t-a"),
            "t-a",
            now,
            "POST",
            path_b,
            b"{}",
        );
        let e = verify(
            Some(h.as_bytes()),
            &masters(),
            "t-b",
            "POST",
            path_b,
            b"{}",
            now,
            300,
        )
        .unwrap_err();
        assert_eq!(e.code(), "wrong_tenant");
        assert!(
            e.to_string().contains("`t-a`") && e.to_string().contains("`t-b`"),
            "{e}"
        );
        // Claiming to be B with A's key does not verify at all.
        let lie = header(
            &derive_key(b"master-1", "t-a"),
            "t-b",
            now,
            "POST",
            path_b,
            b"{}",
        );
        assert_eq!(
            verify(
                Some(lie.as_bytes()),
                &masters(),
                "t-b",
                "POST",
                path_b,
                b"{}",
                now,
                300
            ),
            Err(SignatureError::Mismatch)
        );
    }
}

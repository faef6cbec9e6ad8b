//! Webhook authentication. Either `Authorization: Bearer <secret>` (the seed's scheme),
//! compared in constant time, or `X-Signature: t=<unix>,v1=<hex>` where `v1` is
//! HMAC-SHA256(secret, "<t>." + raw body). When `X-Signature` is present it alone decides.
//! A signature is refused outside a window around now (5 minutes by default) and when the
//! same signature was already seen inside that window (a captured request replayed); an
//! honest retry is signed again with a new `t` and then answered idempotently by event id.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The shared webhook secret. Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Trailing line breaks are dropped (secret files usually end with one). Refuses an
    /// empty secret.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let mut b: Vec<u8> = bytes.into();
        while matches!(b.last(), Some(b'\n' | b'\r')) {
            b.pop();
        }
        (!b.is_empty()).then_some(Secret(b))
    }

    /// The secret's bytes, for a key derivation (never for printing).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a request is not authenticated; each is a 401 with this code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <secret>` or `X-Signature`")]
    Missing,
    #[error("wrong bearer token")]
    WrongToken,
    #[error("malformed X-Signature: expected `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("signature timestamp is {0} s away from now, more than the allowed window")]
    Expired(i64),
    #[error("signature does not match the body")]
    WrongSignature,
    #[error("this signature was already used: replayed request")]
    Replayed,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing | Self::WrongToken | Self::Malformed | Self::WrongSignature => {
                "unauthorized"
            }
            Self::Expired(_) => "signature_expired",
            Self::Replayed => "replayed",
        }
    }
}

/// Checks credentials; remembers recent signatures to refuse replays.
pub struct Authenticator {
    secret: Secret,
    window_secs: i64,
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

impl Authenticator {
    pub fn new(secret: Secret, window_secs: i64) -> Self {
        Authenticator {
            secret,
            window_secs,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        signature: Option<&[u8]>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if let Some(sig) = signature {
            return self.check_signature(sig, body, now);
        }
        let Some(auth) = authorization else {
            return Err(AuthError::Missing);
        };
        let token = auth.strip_prefix(b"Bearer ").ok_or(AuthError::WrongToken)?;
        // Hashing first makes the comparison independent of the lengths too.
        let a = Sha256::digest(token);
        let b = Sha256::digest(&self.secret.0);
        if bool::from(a.ct_eq(&b)) {
            Ok(())
        } else {
            Err(AuthError::WrongToken)
        }
    }

    fn check_signature(
        &self,
        header: &[u8],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let mut t = None;
        let mut v1 = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| AuthError::Malformed)?),
                Some(("v1", v)) => v1.push(hex::decode(v).map_err(|_| AuthError::Malformed)?),
                Some(_) => {} // other schemes (v0…) are ignored, as senders may add them
                None => return Err(AuthError::Malformed),
            }
        }
        let t = t.ok_or(AuthError::Malformed)?;
        if v1.is_empty() {
            return Err(AuthError::Malformed);
        }
        let skew = now.timestamp().saturating_sub(t);
        if skew.abs() > self.window_secs {
            return Err(AuthError::Expired(skew));
        }
        let expected = sign(&self.secret, t, body);
        let Some(matched) = v1
            .iter()
            .find(|v| bool::from(v.as_slice().ct_eq(&expected)))
        else {
            return Err(AuthError::WrongSignature);
        };
        let key: [u8; 32] = Sha256::digest(matched).into();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let horizon = now.timestamp() - self.window_secs;
        if seen.len() > 1024 {
            seen.retain(|_, at| *at >= horizon);
        }
        match seen.get(&key) {
            Some(at) if *at >= horizon => Err(AuthError::Replayed),
            _ => {
                seen.insert(key, t.max(now.timestamp()));
                Ok(())
            }
        }
    }
}

/// HMAC-SHA256(secret, "<t>." + body): what a sender puts in `v1` (hex).
pub fn sign(secret: &Secret, t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The full header value for a body signed at `t`.
pub fn signature_header(secret: &Secret, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(sign(secret, t, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(Secret::new("s3cret\n").unwrap(), 300)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn bearer() {
        let a = auth();
        let now = at(1_750_000_000);
        assert_eq!(a.check(Some(b"Bearer s3cret"), None, b"", now), Ok(()));
        assert_eq!(
            a.check(Some(b"Bearer s3cre"), None, b"", now),
            Err(AuthError::WrongToken)
        );
        assert_eq!(
            a.check(Some(b"Basic s3cret"), None, b"", now),
            Err(AuthError::WrongToken)
        );
        assert_eq!(a.check(None, None, b"", now), Err(AuthError::Missing));
        assert!(Secret::new("\n").is_none());
        assert_eq!(
            format!("{:?}", Secret::new("x").unwrap()),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn signature_window_tampering_and_replay() {
        let a = auth();
        let secret = Secret::new("s3cret").unwrap();
        let t = 1_750_000_000;
        let h = signature_header(&secret, t, b"{}");
        // Bearer is ignored when a signature is present.
        assert_eq!(
            a.check(Some(b"Bearer nope"), Some(h.as_bytes()), b"{}", at(t + 299)),
            Ok(())
        );
        assert_eq!(
            a.check(None, Some(h.as_bytes()), b"{}", at(t + 10)),
            Err(AuthError::Replayed)
        );
        let h2 = signature_header(&secret, t + 1, b"{}");
        assert_eq!(
            a.check(None, Some(h2.as_bytes()), b"{ }", at(t)),
            Err(AuthError::WrongSignature)
        );
        assert_eq!(
            a.check(None, Some(h2.as_bytes()), b"{}", at(t + 302)),
            Err(AuthError::Expired(301))
        );
        assert_eq!(
            a.check(None, Some(b"t=1,v1=zz"), b"{}", at(t)),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            a.check(None, Some(b"v1=00"), b"{}", at(t)),
            Err(AuthError::Malformed)
        );
        let other = signature_header(&Secret::new("other").unwrap(), t, b"{}");
        assert_eq!(
            a.check(None, Some(other.as_bytes()), b"{}", at(t)),
            Err(AuthError::WrongSignature)
        );
    }
}

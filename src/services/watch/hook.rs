//! The registry repository's push webhook, as the git host sends it: which deliveries are
//! authentic, and which ask watch to fetch. No HTTP here (the route is in [`super::server`]).
//!
//! - **GitLab** (`X-Gitlab-Event`): the webhook's secret token comes back verbatim in
//!   `X-Gitlab-Token`; compared in constant time.
//! - **GitHub** (`X-GitHub-Event`, also what Gitea and Forgejo send): `X-Hub-Signature-256`
//!   is `sha256=` + HMAC-SHA256(secret, body); verified in constant time.
//!
//! An authentic push to the followed branch means "fetch now"; any other authentic delivery
//! (another branch, a tag, a ping, another event) is acknowledged and ignored. Polling stays
//! the fallback, so a lost or refused delivery only costs time.

use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What an authentic delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A push to the followed branch: fetch now.
    Fetch,
    /// Nothing to do, and why.
    Ignore(String),
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// Not authentic: no or a wrong token or signature (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Not a push webhook provisio understands (400).
    #[error("{0}")]
    BadRequest(String),
}

/// The headers the verdict depends on (names in lower case), values as sent.
#[derive(Debug, Default, Clone)]
pub struct Headers<'a> {
    pub gitlab_event: Option<&'a [u8]>,
    pub gitlab_token: Option<&'a [u8]>,
    pub github_event: Option<&'a [u8]>,
    pub github_signature: Option<&'a [u8]>,
}

/// Authenticates one delivery against `secret` and says whether it is a push to `branch`.
pub fn check(h: &Headers, body: &[u8], secret: &[u8], branch: &str) -> Result<Verdict, HookError> {
    if let Some(event) = h.gitlab_event {
        let token = h.gitlab_token.ok_or_else(|| {
            HookError::Unauthorized(
                "X-Gitlab-Token is missing: set the webhook's secret token".into(),
            )
        })?;
        if !bool::from(digest(token).ct_eq(&digest(secret))) {
            return Err(HookError::Unauthorized(
                "X-Gitlab-Token does not match the registry webhook secret".into(),
            ));
        }
        return match event {
            b"Push Hook" => push_to(body, branch),
            other => Ok(Verdict::Ignore(format!(
                "GitLab event `{}` is not a push",
                String::from_utf8_lossy(other)
            ))),
        };
    }
    if let Some(event) = h.github_event {
        let sig = h.github_signature.ok_or_else(|| {
            HookError::Unauthorized(
                "X-Hub-Signature-256 is missing: set the webhook's secret".into(),
            )
        })?;
        let expected = crate::io::nudge::signature(secret, body);
        if !bool::from(digest(sig).ct_eq(&digest(expected.as_bytes()))) {
            return Err(HookError::Unauthorized(
                "X-Hub-Signature-256 does not match the body signed with the registry webhook secret".into(),
            ));
        }
        return match event {
            b"push" => push_to(body, branch),
            other => Ok(Verdict::Ignore(format!(
                "GitHub event `{}` is not a push",
                String::from_utf8_lossy(other)
            ))),
        };
    }
    Err(HookError::BadRequest(
        "not a push webhook: expected GitLab's X-Gitlab-Event or GitHub's X-GitHub-Event header"
            .into(),
    ))
}

/// SHA-256 of a value, so that comparing in constant time does not leak its length.
fn digest(v: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(v).into()
}

/// `Fetch` when the push body's `ref` is `refs/heads/<branch>`.
fn push_to(body: &[u8], branch: &str) -> Result<Verdict, HookError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| HookError::BadRequest("the push event is not JSON".into()))?;
    let Some(r) = v.get("ref").and_then(|r| r.as_str()) else {
        return Err(HookError::BadRequest(
            "the push event has no `ref` string".into(),
        ));
    };
    if r == format!("refs/heads/{branch}") {
        Ok(Verdict::Fetch)
    } else {
        Ok(Verdict::Ignore(format!(
            "a push to `{r}`, not to the followed branch `{branch}`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"registry-hook-secret";
    const MAIN: &[u8] = br#"{"object_kind":"push","ref":"refs/heads/main","after":"abc"}"#;

    fn gitlab<'a>(event: &'a [u8], token: Option<&'a [u8]>) -> Headers<'a> {
        Headers {
            gitlab_event: Some(event),
            gitlab_token: token,
            ..Headers::default()
        }
    }

    #[test]
    fn gitlab_pushes_to_the_branch_fetch_and_the_rest_is_ignored() {
        let h = gitlab(b"Push Hook", Some(SECRET));
        assert_eq!(check(&h, MAIN, SECRET, "main"), Ok(Verdict::Fetch));
        assert!(matches!(
            check(&h, MAIN, SECRET, "prod"),
            Ok(Verdict::Ignore(_))
        ));
        let tag = gitlab(b"Tag Push Hook", Some(SECRET));
        assert!(matches!(
            check(&tag, MAIN, SECRET, "main"),
            Ok(Verdict::Ignore(_))
        ));
        assert!(matches!(
            check(&h, b"not json", SECRET, "main"),
            Err(HookError::BadRequest(_))
        ));
    }

    #[test]
    fn a_wrong_or_missing_token_or_signature_is_unauthorized() {
        for h in [
            gitlab(b"Push Hook", Some(b"wrong")),
            gitlab(b"Push Hook", None),
            Headers {
                github_event: Some(b"push"),
                github_signature: Some(b"sha256=00"),
                ..Headers::default()
            },
            Headers {
                github_event: Some(b"push"),
                ..Headers::default()
            },
        ] {
            assert!(
                matches!(
                    check(&h, MAIN, SECRET, "main"),
                    Err(HookError::Unauthorized(_))
                ),
                "{h:?}"
            );
        }
        assert!(matches!(
            check(&Headers::default(), MAIN, SECRET, "main"),
            Err(HookError::BadRequest(_))
        ));
    }

    #[test]
    fn github_signed_pushes_fetch_and_pings_are_ignored() {
        let sig = crate::io::nudge::signature(SECRET, MAIN);
        let h = Headers {
            github_event: Some(b"push"),
            github_signature: Some(sig.as_bytes()),
            ..Headers::default()
        };
        assert_eq!(check(&h, MAIN, SECRET, "main"), Ok(Verdict::Fetch));
        // The same signature over another body is refused.
        assert!(matches!(
            check(&h, br#"{"ref":"refs/heads/main"}"#, SECRET, "main"),
            Err(HookError::Unauthorized(_))
        ));
        let ping = Headers {
            github_event: Some(b"ping"),
            github_signature: Some(sig.as_bytes()),
            ..Headers::default()
        };
        assert!(matches!(
            check(&ping, MAIN, SECRET, "main"),
            Ok(Verdict::Ignore(_))
        ));
    }
}

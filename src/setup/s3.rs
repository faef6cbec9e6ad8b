//! The tenant's buckets through the S3 API (MinIO, or any S3 server): each bucket, with
//! versioning on, one lifecycle rule (noncurrent versions and expired delete markers go
//! after [`NONCURRENT_DAYS`] days), and an anonymous-read bucket policy on the public prefix
//! only where the registry names one (removed when it no longer does). Teardown empties
//! every version of every bucket, then deletes it. Also: the IAM-style policy that limits
//! the tenant's user to its own buckets ([`tenant_policy`]).

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::aws::{Client, uri_encode};
use super::{Change, Report, SetupError};
use provisio_core::plan::setup::{BucketSpec, S3Spec};

pub const NONCURRENT_DAYS: u32 = 30;
pub const LIFECYCLE_RULE_ID: &str = "provisio-expire-noncurrent";
const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

pub fn versioning_xml() -> String {
    format!(
        r#"<VersioningConfiguration xmlns="{S3_NS}"><Status>Enabled</Status></VersioningConfiguration>"#
    )
}

pub fn lifecycle_xml() -> String {
    format!(
        r#"<LifecycleConfiguration xmlns="{S3_NS}"><Rule><ID>{LIFECYCLE_RULE_ID}</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration><NoncurrentVersionExpiration><NoncurrentDays>{NONCURRENT_DAYS}</NoncurrentDays></NoncurrentVersionExpiration></Rule></LifecycleConfiguration>"#
    )
}

/// The anonymous-read policy of a bucket's public prefix.
pub fn public_policy(bucket: &str, prefix: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PublicReadPrefix",
            "Effect": "Allow",
            "Principal": {"AWS": ["*"]},
            "Action": ["s3:GetObject"],
            "Resource": [format!("arn:aws:s3:::{bucket}/{prefix}*")],
        }]
    })
}

/// The policy of the tenant's user: list and use its own buckets, nothing else.
pub fn tenant_policy(spec: &S3Spec) -> Value {
    let buckets: Vec<String> = spec
        .buckets
        .iter()
        .map(|b| format!("arn:aws:s3:::{}", b.name))
        .collect();
    let objects: Vec<String> = spec
        .buckets
        .iter()
        .map(|b| format!("arn:aws:s3:::{}/*", b.name))
        .collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": buckets,
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:PutObject",
                ],
                "Resource": objects,
            },
        ]
    })
}

/// The raw content of every `<tag>…</tag>` element inside `xml`, in order, entities left
/// as they are: for elements that hold other elements (`Contents`, `Version`, `Rule`). In
/// well-formed XML a `<` inside a value is always escaped, so the closing tag found is the
/// element's own, whatever a key holds; decoding first would let a key such as `a</Key>`
/// end its element early.
pub fn blocks<'x>(xml: &'x str, tag: &str) -> Vec<&'x str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The text of every `<tag>…</tag>` element inside `xml`, in order, with every XML entity
/// decoded — the five named ones and character references such as `&#39;` and `&#xD;`,
/// which MinIO writes for `'`, `"` and control characters in keys (quick-xml's decoder). A
/// value that does not decode is kept as sent: the request made with it then fails loudly.
pub fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    blocks(xml, tag)
        .into_iter()
        .map(|raw| {
            quick_xml::escape::unescape(raw).map_or_else(|_| raw.to_owned(), |t| t.into_owned())
        })
        .collect()
}

fn bucket_path(b: &str) -> String {
    format!("/{}", uri_encode(b))
}

fn object_path(b: &str, key: &str) -> String {
    let key: Vec<String> = key.split('/').map(uri_encode).collect();
    format!("/{}/{}", uri_encode(b), key.join("/"))
}

/// Whether a lifecycle configuration read back is exactly provisio's rule.
fn lifecycle_is_ours(xml: &str) -> bool {
    blocks(xml, "Rule").len() == 1
        && tag_values(xml, "ID") == [LIFECYCLE_RULE_ID]
        && tag_values(xml, "Status") == ["Enabled"]
        && tag_values(xml, "NoncurrentDays") == [NONCURRENT_DAYS.to_string()]
        && tag_values(xml, "ExpiredObjectDeleteMarker") == ["true"]
        && tag_values(xml, "Prefix").iter().all(|p| p.is_empty())
}

/// Creates or converges every bucket of the spec.
pub fn setup_buckets(s3: &Client, spec: &S3Spec) -> Result<Report, SetupError> {
    let mut report = Report::default();
    for b in &spec.buckets {
        ensure_bucket(s3, b, &mut report)?;
    }
    Ok(report)
}

fn ensure_bucket(s3: &Client, b: &BucketSpec, report: &mut Report) -> Result<(), SetupError> {
    let path = bucket_path(&b.name);
    let what = format!("bucket {}", b.name);
    let r = s3.send("HEAD", &path, &[], &[], b"")?;
    match r.status {
        200 => report.record(what, Change::Unchanged),
        404 => {
            let r = s3.send("PUT", &path, &[], &[], b"")?;
            if !(r.ok() || (r.status == 409 && r.body.contains("BucketAlreadyOwnedByYou"))) {
                return Err(s3.refused(&format!("create {what}"), &r));
            }
            report.record(what, Change::Created);
        }
        _ => return Err(s3.refused(&format!("read {what}"), &r)),
    }

    let what = format!("versioning of {}", b.name);
    let r = s3.send("GET", &path, &[("versioning", "")], &[], b"")?;
    if !r.ok() {
        return Err(s3.refused(&format!("read {what}"), &r));
    }
    if tag_values(&r.body, "Status") == ["Enabled"] {
        report.record(what, Change::Unchanged);
    } else {
        let body = versioning_xml();
        let r = s3.send(
            "PUT",
            &path,
            &[("versioning", "")],
            &[("content-md5", &content_md5(body.as_bytes()))],
            body.as_bytes(),
        )?;
        if !r.ok() {
            return Err(s3.refused(&format!("enable {what}"), &r));
        }
        report.record(what, Change::Updated);
    }

    let what = format!("lifecycle of {}", b.name);
    let r = s3.send("GET", &path, &[("lifecycle", "")], &[], b"")?;
    let change = match r.status {
        200 if lifecycle_is_ours(&r.body) => None,
        200 => Some(Change::Updated),
        404 => Some(Change::Created),
        _ => return Err(s3.refused(&format!("read {what}"), &r)),
    };
    match change {
        None => report.record(what, Change::Unchanged),
        Some(change) => {
            let body = lifecycle_xml();
            let r = s3.send(
                "PUT",
                &path,
                &[("lifecycle", "")],
                &[("content-md5", &content_md5(body.as_bytes()))],
                body.as_bytes(),
            )?;
            if !r.ok() {
                return Err(s3.refused(&format!("write {what}"), &r));
            }
            report.record(what, change);
        }
    }

    let what = format!("policy of {}", b.name);
    let r = s3.send("GET", &path, &[("policy", "")], &[], b"")?;
    let current: Option<Value> = match r.status {
        200 => Some(
            serde_json::from_str(&r.body).map_err(|e| SetupError::Refused {
                service: "s3",
                action: format!("read {what}"),
                detail: format!("not JSON ({e})"),
            })?,
        ),
        404 => None,
        _ => return Err(s3.refused(&format!("read {what}"), &r)),
    };
    let wanted = b
        .public_prefix
        .as_deref()
        .map(|p| public_policy(&b.name, p));
    match (current, wanted) {
        (None, None) => report.record(what, Change::Unchanged),
        (Some(c), Some(w)) if c == w => report.record(what, Change::Unchanged),
        (current, Some(w)) => {
            let body = serde_json::to_vec(&w).expect("JSON serializes");
            let r = s3.send("PUT", &path, &[("policy", "")], &[], &body)?;
            if !r.ok() {
                return Err(s3.refused(&format!("write {what}"), &r));
            }
            report.record(
                what,
                if current.is_some() {
                    Change::Updated
                } else {
                    Change::Created
                },
            );
        }
        (Some(_), None) => {
            let r = s3.send("DELETE", &path, &[("policy", "")], &[], b"")?;
            if !r.ok() {
                return Err(s3.refused(&format!("delete {what}"), &r));
            }
            report.record(what, Change::Deleted);
        }
    }
    Ok(())
}

/// Whether `as_user` holds valid credentials: `GetBucketLocation` on the first bucket, signed
/// with them. An unknown key or a wrong secret is refused with `InvalidAccessKeyId` or
/// `SignatureDoesNotMatch`; `AccessDenied` means the key is valid (its policy may be missing).
pub fn credentials_work(as_user: &Client, spec: &S3Spec) -> Result<bool, SetupError> {
    let Some(b) = spec.buckets.first() else {
        return Ok(true);
    };
    let r = as_user.send("GET", &bucket_path(&b.name), &[("location", "")], &[], b"")?;
    if r.ok() {
        return Ok(true);
    }
    let code = tag_values(&r.body, "Code").pop().unwrap_or_default();
    match code.as_str() {
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidClientTokenId" => Ok(false),
        "AccessDenied" => Ok(true),
        _ => Err(as_user.refused(&format!("check the credentials of {}", spec.user), &r)),
    }
}

/// Deletes every object version and delete marker of every bucket, then the buckets.
pub fn teardown_buckets(s3: &Client, spec: &S3Spec) -> Result<Report, SetupError> {
    Ok(teardown_buckets_counted(s3, spec)?.0)
}

/// [`teardown_buckets`], also counting the object versions and delete markers removed.
pub fn teardown_buckets_counted(s3: &Client, spec: &S3Spec) -> Result<(Report, u64), SetupError> {
    let mut report = Report::default();
    let mut versions = 0u64;
    for b in &spec.buckets {
        let path = bucket_path(&b.name);
        let what = format!("bucket {}", b.name);
        let r = s3.send("HEAD", &path, &[], &[], b"")?;
        match r.status {
            404 => {
                report.record(what, Change::Unchanged);
                continue;
            }
            200 => {}
            _ => return Err(s3.refused(&format!("read {what}"), &r)),
        }
        let mut deleted = 0usize;
        let mut previous: Vec<(String, String)> = Vec::new();
        loop {
            let r = s3.send(
                "GET",
                &path,
                &[("versions", ""), ("max-keys", "1000")],
                &[],
                b"",
            )?;
            if !r.ok() {
                return Err(s3.refused(&format!("list the versions in {what}"), &r));
            }
            let mut entries = Vec::new();
            for block in ["Version", "DeleteMarker"] {
                for v in blocks(&r.body, block) {
                    let key = tag_values(v, "Key").pop().unwrap_or_default();
                    let version = tag_values(v, "VersionId").pop().unwrap_or_default();
                    entries.push((key, version));
                }
            }
            if entries.is_empty() {
                break;
            }
            // Every listed version was deleted in the last pass: the same listing again means
            // the deletes did not reach them (a key read wrong, a server answering 204 for a
            // version it does not have), and looping would never end.
            if entries == previous {
                return Err(SetupError::Refused {
                    service: "s3",
                    action: format!("empty {what}"),
                    detail: format!(
                        "{} version(s) are still listed after being deleted, first {} ({})",
                        entries.len(),
                        entries[0].0,
                        entries[0].1
                    ),
                });
            }
            previous = entries.clone();
            for (key, version) in entries {
                let r = s3.send(
                    "DELETE",
                    &object_path(&b.name, &key),
                    &[("versionId", &version)],
                    &[],
                    b"",
                )?;
                if !r.ok() {
                    return Err(s3.refused(&format!("delete {key} ({version}) in {what}"), &r));
                }
                deleted += 1;
            }
        }
        tracing::info!(bucket = %b.name, versions = deleted, "emptied");
        versions += deleted as u64;
        let r = s3.send("DELETE", &path, &[], &[], b"")?;
        if !r.ok() {
            return Err(s3.refused(&format!("delete {what}"), &r));
        }
        report.record(what, Change::Deleted);
    }
    Ok((report, versions))
}

/// The largest object read or written in one request (the backup's single `PUT`).
pub const MAX_OBJECT: u64 = 5 * 1024 * 1024 * 1024;

/// An object as read with `GET`: its bytes and the metadata the backup manifest keeps.
#[derive(Debug)]
pub struct Object {
    pub body: Vec<u8>,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
}

/// One entry of a listing: key, size, ETag (quoted, as listed), storage class (`STANDARD`
/// when the server names none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub storage_class: String,
}

/// The part of a listing's prefix sent to the server: its leading run of SigV4's unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`), the rest matched by provisio. Our signature encodes
/// every other byte as SigV4 says (`/` as `%2F`, checked against botocore's signer in
/// tests/it/setup_s3.rs), which AWS and MinIO verify; moto's server rebuilds the query from a URL
/// its web framework has already re-quoted (`%2F` back to `/`, getmoto/moto#5948) and refuses
/// the signature. The leading run (a tenant id in the archive) still narrows the listing on
/// every server.
pub fn server_prefix(prefix: &str) -> &str {
    let end = prefix
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-._~".contains(c)))
        .unwrap_or(prefix.len());
    &prefix[..end]
}

/// Every current object below `prefix` (`ListObjectsV2`, pages of 1,000, narrowed by the
/// server to [`server_prefix`]), in key order.
pub fn list_current(s3: &Client, bucket: &str, prefix: &str) -> Result<Vec<Listed>, SetupError> {
    let path = bucket_path(bucket);
    let sent = server_prefix(prefix);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("list-type", "2"), ("max-keys", "1000")];
        if !sent.is_empty() {
            query.push(("prefix", sent));
        }
        if let Some(t) = &token {
            query.push(("continuation-token", t));
        }
        let r = s3.send("GET", &path, &query, &[], b"")?;
        if !r.ok() {
            return Err(s3.refused(&format!("list the objects of bucket {bucket}"), &r));
        }
        let unreadable = |detail: String| SetupError::Refused {
            service: "s3",
            action: format!("list the objects of bucket {bucket}"),
            detail,
        };
        for c in blocks(&r.body, "Contents") {
            let key = tag_values(c, "Key").pop().unwrap_or_default();
            if !key.starts_with(sent) {
                return Err(unreadable(format!(
                    "the listing of prefix {sent:?} holds key {key:?}, outside it"
                )));
            }
            if !key.starts_with(prefix) {
                continue;
            }
            let size = tag_values(c, "Size").pop().unwrap_or_default();
            let size = size
                .parse()
                .map_err(|_| unreadable(format!("object {key} has no readable size ({size:?})")))?;
            out.push(Listed {
                key,
                size,
                etag: tag_values(c, "ETag").pop().unwrap_or_default(),
                storage_class: tag_values(c, "StorageClass")
                    .pop()
                    .unwrap_or_else(|| "STANDARD".to_owned()),
            });
        }
        let truncated = tag_values(&r.body, "IsTruncated").pop().as_deref() == Some("true");
        token = tag_values(&r.body, "NextContinuationToken").pop();
        if !truncated {
            break;
        }
        if token.is_none() {
            // A listing that says it goes on without saying where: stopping here would
            // leave the rest out without a word.
            return Err(unreadable(
                "the listing is truncated but has no continuation token".to_owned(),
            ));
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// `GET` of an object's current version; `None` when there is none.
pub fn get_object(s3: &Client, bucket: &str, key: &str) -> Result<Option<Object>, SetupError> {
    let r = s3.send_raw("GET", &object_path(bucket, key), &[], &[], b"", MAX_OBJECT)?;
    match r.status {
        404 => return Ok(None),
        200 => {}
        _ => return Err(s3.refused(&format!("read {key} in bucket {bucket}"), &r.to_text())),
    }
    let h = |name: &str| r.header(name).map(str::to_owned);
    Ok(Some(Object {
        version_id: h("x-amz-version-id").filter(|v| v != "null"),
        etag: h("etag"),
        last_modified: h("last-modified"),
        content_type: h("content-type"),
        body: r.body,
    }))
}

/// `PUT` of one object, signed with its payload's SHA-256 (the server rejects altered
/// bytes); `storage_class` as `x-amz-storage-class` when given.
pub fn put_object(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    content_type: Option<&str>,
    storage_class: Option<&str>,
) -> Result<(), SetupError> {
    let mut headers = Vec::new();
    if let Some(t) = content_type {
        headers.push(("content-type", t));
    }
    if let Some(c) = storage_class {
        headers.push(("x-amz-storage-class", c));
    }
    let r = s3.send("PUT", &object_path(bucket, key), &[], &headers, body)?;
    if r.ok() {
        Ok(())
    } else {
        Err(s3.refused(&format!("write {key} in bucket {bucket}"), &r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_helpers() {
        let xml = "<A><Version><Key>a&amp;b</Key><VersionId>1</VersionId></Version><Version><Key>c</Key><VersionId>2</VersionId></Version></A>";
        let v = blocks(xml, "Version");
        assert_eq!(v.len(), 2);
        assert_eq!(tag_values(v[0], "Key"), ["a&b"]);
        // MinIO's encoding of `'`, `"` and CR in a key (Go's xml.EscapeText).
        let minio = "<Contents><Key>photos/Bob&#39;s &#34;cat&#34;&#xD;.jpg</Key></Contents>";
        let c = blocks(minio, "Contents");
        assert_eq!(tag_values(c[0], "Key"), ["photos/Bob's \"cat\"\r.jpg"]);
        // A key that looks like markup stays one key.
        let tricky = "<Contents><Key>a&lt;/Key&gt;&lt;Key&gt;b</Key><Size>1</Size></Contents>";
        let c = blocks(tricky, "Contents");
        assert_eq!(tag_values(c[0], "Key"), ["a</Key><Key>b"]);
        assert!(lifecycle_is_ours(&lifecycle_xml()));
        assert!(!lifecycle_is_ours(&lifecycle_xml().replace(">30<", ">31<")));
        assert_eq!(object_path("b", "public/x y.png"), "/b/public/x%20y.png");
    }
}

//! Objects written and read in bounded parts, so that no object or dump is ever whole in
//! memory (a 512 MiB Job backs up objects of any size): [`PartWriter`], an `io::Write` that
//! sends what it is given as an S3 multipart upload (`CreateMultipartUpload`, `UploadPart` of
//! `part_size` bytes, `CompleteMultipartUpload`; a single `PUT` when everything fits in one
//! part; `AbortMultipartUpload` when it fails) while counting and hashing the bytes; and
//! [`copy_object`], an object read with ranged `GET`s (`If-Match` its listed ETag, so a
//! changed object is an error, never a mixed copy) into such a writer.

use std::io::Write;

use sha2::{Digest, Sha256};

use super::aws::Client;
use super::s3::{self, tag_values};
use super::{SetupError, refused};

/// S3's smallest part but the last (`EntityTooSmall` below it).
pub const MIN_PART: usize = 5 * 1024 * 1024;
/// S3's largest number of parts of one upload.
pub const MAX_PARTS: u32 = 10_000;

/// Where the bytes go.
pub struct Target<'a> {
    pub client: &'a Client,
    pub bucket: &'a str,
    pub key: String,
    pub content_type: Option<String>,
    pub storage_class: Option<String>,
}

/// An upload under way.
struct Upload {
    id: String,
    /// (part number, ETag) of every part sent.
    parts: Vec<(u32, String)>,
}

/// Parts sent at one size before the next parts double (see [`grown_part_size`]).
pub const PARTS_PER_SIZE: u32 = 2_000;

/// The size of part `number` (from 1) of a stream whose total is unknown (a dump): `base`
/// for the first [`PARTS_PER_SIZE`] parts, then twice that, and so on, at most four
/// doublings and at most S3's largest part — so 10,000 parts hold 62 times what 10,000 parts
/// of `base` hold (496 GiB for 8 MiB) instead of failing at part 10,001 after all that was
/// sent, while a stream under 2,000 parts is held at `base` as before.
pub fn grown_part_size(base: usize, number: u32) -> usize {
    let doublings = ((number.max(1) - 1) / PARTS_PER_SIZE).min(4);
    (base << doublings).min(usize::try_from(MAX_PART).unwrap_or(usize::MAX))
}

/// Sends what is written as one object, `part_size` bytes at a time; [`PartWriter::finish`]
/// completes it and returns its size and SHA-256.
pub struct PartWriter<'a> {
    target: Target<'a>,
    part_size: usize,
    buffer: Vec<u8>,
    upload: Option<Upload>,
    hasher: Sha256,
    size: u64,
    /// The first failure: kept whole for the caller, as `io::Write` can only carry text.
    failed: Option<SetupError>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

fn path(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key.split('/').map(super::aws::uri_encode).collect();
    format!("/{}/{}", super::aws::uri_encode(bucket), key.join("/"))
}

impl<'a> PartWriter<'a> {
    /// A writer of parts of `part_size` bytes (at least [`MIN_PART`]).
    pub fn new(target: Target<'a>, part_size: usize) -> Result<Self, SetupError> {
        if part_size < MIN_PART {
            return Err(SetupError::invalid(
                "part size",
                format!("{part_size} bytes: S3 wants at least {MIN_PART}"),
            ));
        }
        Ok(PartWriter {
            target,
            part_size,
            buffer: Vec::with_capacity(part_size),
            upload: None,
            hasher: Sha256::new(),
            size: 0,
            failed: None,
        })
    }

    fn what(&self) -> String {
        format!("write {} in bucket {}", self.target.key, self.target.bucket)
    }

    fn start(&mut self) -> Result<Upload, SetupError> {
        let t = &self.target;
        let mut headers = Vec::new();
        if let Some(c) = &t.content_type {
            headers.push(("content-type", c.as_str()));
        }
        if let Some(c) = &t.storage_class {
            headers.push(("x-amz-storage-class", c.as_str()));
        }
        let r = t.client.send(
            "POST",
            &path(t.bucket, &t.key),
            &[("uploads", "")],
            &headers,
            b"",
        )?;
        let id = tag_values(&r.body, "UploadId").pop().filter(|_| r.ok());
        match id {
            Some(id) => Ok(Upload {
                id,
                parts: Vec::new(),
            }),
            None => Err(refused("s3", &format!("start to {}", self.what()), &r)),
        }
    }

    /// Sends the buffer as the next part.
    fn send_part(&mut self) -> Result<(), SetupError> {
        if self.upload.is_none() {
            self.upload = Some(self.start()?);
        }
        let what = self.what();
        let t = &self.target;
        let upload = self.upload.as_mut().expect("started above");
        let number = upload.parts.len() as u32 + 1;
        if number > MAX_PARTS {
            return Err(SetupError::invalid(
                what,
                format!("more than {MAX_PARTS} parts of {} bytes", self.part_size),
            ));
        }
        let n = number.to_string();
        let r = t.client.send_raw(
            "PUT",
            &path(t.bucket, &t.key),
            &[("partNumber", &n), ("uploadId", &upload.id)],
            &[],
            &self.buffer,
            64 * 1024,
        )?;
        let etag = r.header("etag").filter(|_| r.ok());
        match etag {
            Some(etag) => upload.parts.push((number, etag.to_owned())),
            None => {
                return Err(refused(
                    "s3",
                    &format!("send part {n} to {what}"),
                    &r.to_text(),
                ));
            }
        }
        self.buffer.clear();
        Ok(())
    }

    fn fail(&mut self, e: SetupError) -> std::io::Error {
        let text = e.to_string();
        self.failed.get_or_insert(e);
        std::io::Error::other(text)
    }

    /// The failure that stopped a write, if any (its text was the `io::Error`'s).
    pub fn take_error(&mut self) -> Option<SetupError> {
        self.failed.take()
    }

    /// Sends what is left and completes the object (a single `PUT` when it never filled a
    /// part); a failure aborts the upload.
    pub fn finish(mut self) -> Result<Written, SetupError> {
        if let Some(e) = self.failed.take() {
            self.abort();
            return Err(e);
        }
        let written = Written {
            size: self.size,
            sha256: hex::encode(self.hasher.clone().finalize()),
        };
        if self.upload.is_none() {
            let t = &self.target;
            s3::put_object(
                t.client,
                t.bucket,
                &t.key,
                &self.buffer,
                t.content_type.as_deref(),
                t.storage_class.as_deref(),
            )?;
            return Ok(written);
        }
        let result = self.complete();
        match result {
            // Completed: nothing left for `Drop` to abort.
            Ok(()) => {
                self.upload = None;
                Ok(written)
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    fn complete(&mut self) -> Result<(), SetupError> {
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        let what = self.what();
        let t = &self.target;
        let upload = self.upload.as_ref().expect("started");
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in &upload.parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                etag.replace('&', "&amp;").replace('<', "&lt;")
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let r = t.client.send_within(
            "POST",
            &path(t.bucket, &t.key),
            &[("uploadId", &upload.id)],
            &[("content-type", "application/xml")],
            xml.as_bytes(),
            complete_timeout(self.size),
        )?;
        // A 200 may still carry an error (AWS sends the status before it has finished).
        if r.ok() && !r.body.contains("<Error>") {
            Ok(())
        } else {
            Err(refused("s3", &format!("complete the upload to {what}"), &r))
        }
    }

    /// Best effort: no unfinished upload is left to hold storage.
    fn abort(&mut self) {
        if let Some(upload) = self.upload.take() {
            let t = &self.target;
            if let Err(e) = t.client.send(
                "DELETE",
                &path(t.bucket, &t.key),
                &[("uploadId", &upload.id)],
                &[],
                b"",
            ) {
                tracing::warn!(key = %t.key, error = %e, "could not abort a multipart upload");
            }
        }
    }
}

/// The time `CompleteMultipartUpload` of an object of `size` bytes is given: S3 may take
/// "several minutes" to assemble the parts, answering 200 at once and then only whitespace
/// until it is done (the API reference), so the 60 s of a request without payload would cut
/// a large upload's completion off — and its retry then finds no such upload. It is given
/// the time the object's bytes would take at the slowest rate accepted ([`super::aws::timeout_for`]).
pub fn complete_timeout(size: u64) -> std::time::Duration {
    super::aws::timeout_for(0, size)
}

/// A writer dropped before [`PartWriter::finish`] completed it (an error on the way out of
/// the caller: a failed dump, a refused range read, a refused part) aborts its upload: its
/// parts would otherwise be stored, and billed, with no object to show for them.
impl Drop for PartWriter<'_> {
    fn drop(&mut self) {
        self.abort();
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(std::io::Error::other(e.to_string()));
        }
        let n = data.len();
        self.hasher.update(data);
        self.size += n as u64;
        while !data.is_empty() {
            let sent = self.upload.as_ref().map_or(0, |u| u.parts.len() as u32);
            let part_size = grown_part_size(self.part_size, sent + 1);
            let room = part_size - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == part_size
                && let Err(e) = self.send_part()
            {
                return Err(self.fail(e));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// S3's largest part.
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

/// The part size for an object of `size` bytes: `part_size`, or, for an object that many
/// parts would not hold ([`MAX_PARTS`]), the smallest whole number of MiB that does — found
/// before the first byte is read, not after 10,000 parts were sent. `None` past S3's largest
/// part (an object larger than S3 allows).
pub fn part_size_for(size: u64, part_size: usize) -> Option<usize> {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(u64::from(MAX_PARTS)).div_ceil(MIB) * MIB;
    let part = needed.max(part_size as u64);
    (part <= MAX_PART)
        .then(|| usize::try_from(part).ok())
        .flatten()
}

/// What [`copy_object`] read of the source object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
}

/// The object `key` of `bucket` (listed with `size` bytes and `etag`), read in ranges of
/// `part_size` bytes (each `If-Match` the ETag; larger for an object that 10,000 such parts
/// would not hold: [`part_size_for`]) and written to `to` (made with the object's content
/// type and that part size once the first range is read). `None` when it is gone (404).
pub fn copy_object<'a>(
    from: &Client,
    bucket: &str,
    key: &str,
    size: u64,
    etag: &str,
    part_size: usize,
    to: impl FnOnce(Option<&str>, usize) -> Result<PartWriter<'a>, SetupError>,
) -> Result<Option<(Source, Written)>, SetupError> {
    let object = path(bucket, key);
    let what = format!("read {key} in bucket {bucket}");
    let Some(part_size) = part_size_for(size, part_size) else {
        return Err(SetupError::invalid(
            what,
            format!("{size} bytes: more than {MAX_PARTS} parts of S3's largest, {MAX_PART} bytes"),
        ));
    };
    let mut writer: Option<PartWriter<'a>> = None;
    let mut to = Some(to);
    let mut source = Source::default();
    let mut offset = 0u64;
    loop {
        let end = (offset + part_size as u64).min(size).saturating_sub(1);
        let range = format!("bytes={offset}-{end}");
        let mut headers = Vec::new();
        if !etag.is_empty() {
            headers.push(("if-match", etag));
        }
        if size > 0 {
            headers.push(("range", &range));
        }
        let r = from.send_raw("GET", &object, &[], &headers, b"", part_size as u64)?;
        match r.status {
            404 if offset == 0 => return Ok(None),
            200 | 206 => {}
            _ => return Err(from.refused(&what, &r.to_text())),
        }
        if offset == 0 {
            let h = |name: &str| r.header(name).map(str::to_owned);
            source = Source {
                version_id: h("x-amz-version-id").filter(|v| v != "null"),
                etag: h("etag"),
                last_modified: h("last-modified"),
                content_type: h("content-type"),
            };
            let make = to.take().expect("once");
            writer = Some(make(source.content_type.as_deref(), part_size)?);
        }
        let w = writer.as_mut().expect("made at the first range");
        if let Err(e) = w.write_all(&r.body) {
            return Err(w.take_error().unwrap_or_else(|| SetupError::Interrupted {
                service: "s3",
                action: what.clone(),
                source: Box::new(e),
            }));
        }
        offset += r.body.len() as u64;
        if r.body.is_empty() && offset < size {
            return Err(SetupError::Refused {
                service: "s3",
                action: what,
                detail: format!("an empty range at byte {offset} of {size}"),
            });
        }
        if offset >= size {
            break;
        }
    }
    let written = writer.expect("made at the first range").finish()?;
    if written.size != size {
        return Err(SetupError::Refused {
            service: "s3",
            action: what,
            detail: format!("read {} bytes, listed {size}", written.size),
        });
    }
    Ok(Some((source, written)))
}

/// Aborts every unfinished multipart upload of `bucket` whose key starts with `prefix` and
/// returns their keys: what an attempt killed before it could abort its own left (a SIGKILL,
/// an OOM kill, a node lost), which S3 would otherwise keep, and bill, for ever — the next
/// attempt writes under a new prefix and never completes them. The listing is narrowed on the
/// server to the prefix's leading unreserved run ([`s3::server_prefix`]) and matched here.
pub fn abort_unfinished(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, SetupError> {
    let sent = s3::server_prefix(prefix);
    let bucket_path = format!("/{}", super::aws::uri_encode(bucket));
    let action = format!("list the unfinished uploads of bucket {bucket}");
    let mut aborted = Vec::new();
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut query = vec![("uploads", "")];
        if !sent.is_empty() {
            query.push(("prefix", sent));
        }
        if let Some((key, id)) = &markers {
            query.push(("key-marker", key));
            query.push(("upload-id-marker", id));
        }
        let r = client.send("GET", &bucket_path, &query, &[], b"")?;
        if !r.ok() {
            return Err(client.refused(&action, &r));
        }
        for upload in s3::blocks(&r.body, "Upload") {
            let key = tag_values(upload, "Key").pop().unwrap_or_default();
            let id = tag_values(upload, "UploadId").pop().unwrap_or_default();
            if !key.starts_with(prefix) || id.is_empty() {
                continue;
            }
            let a = client.send(
                "DELETE",
                &path(bucket, &key),
                &[("uploadId", &id)],
                &[],
                b"",
            )?;
            // 404 NoSuchUpload: it finished or was aborted meanwhile.
            if !a.ok() && a.status != 404 {
                return Err(client.refused(&format!("abort the upload of {key}"), &a));
            }
            aborted.push(key);
        }
        let truncated = tag_values(&r.body, "IsTruncated").pop().as_deref() == Some("true");
        let next = (
            tag_values(&r.body, "NextKeyMarker")
                .pop()
                .unwrap_or_default(),
            tag_values(&r.body, "NextUploadIdMarker")
                .pop()
                .unwrap_or_default(),
        );
        if !truncated || next.0.is_empty() || markers.as_ref() == Some(&next) {
            break;
        }
        markers = Some(next);
    }
    Ok(aborted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn completing_a_large_upload_is_given_more_than_a_bare_requests_minute() {
        use std::time::Duration;
        // 64 MiB: 60 s + 256 s.
        assert_eq!(complete_timeout(64 * MIB as u64), Duration::from_secs(316));
        // 78 GiB (10,000 parts of 8 MiB): the cap, over an hour.
        assert!(complete_timeout(10_000 * 8 * MIB as u64) > Duration::from_secs(3600));
    }

    #[test]
    fn a_stream_of_unknown_size_grows_its_parts_past_2000_of_them() {
        assert_eq!(grown_part_size(8 * MIB, 1), 8 * MIB);
        assert_eq!(grown_part_size(8 * MIB, 2_000), 8 * MIB);
        assert_eq!(grown_part_size(8 * MIB, 2_001), 16 * MIB);
        assert_eq!(grown_part_size(8 * MIB, 8_001), 128 * MIB);
        assert_eq!(grown_part_size(8 * MIB, MAX_PARTS), 128 * MIB);
        // 10,000 parts hold 496 GiB at 8 MiB, not 78 GiB.
        let held: u64 = (1..=MAX_PARTS)
            .map(|n| grown_part_size(8 * MIB, n) as u64)
            .sum();
        assert_eq!(held, 2_000 * (8 + 16 + 32 + 64 + 128) * MIB as u64);
        // Never above S3's largest part.
        assert_eq!(grown_part_size(512 * MIB, 9_000) as u64, MAX_PART);
    }

    #[test]
    fn an_object_too_large_for_10000_parts_gets_larger_parts_up_front() {
        // 10,000 parts of 8 MiB hold 78.125 GiB: the given size up to there.
        assert_eq!(part_size_for(0, 8 * MIB), Some(8 * MIB));
        assert_eq!(
            part_size_for(10_000 * 8 * MIB as u64, 8 * MIB),
            Some(8 * MIB)
        );
        // One byte more: 9 MiB parts (whole MiB), and 10,000 of them hold it.
        let big = 10_000 * 8 * MIB as u64 + 1;
        let part = part_size_for(big, 8 * MIB).unwrap();
        assert_eq!(part, 9 * MIB);
        assert!(big.div_ceil(part as u64) <= u64::from(MAX_PARTS));
        // S3's largest object, 5 TiB: 525 MiB parts, under S3's largest part.
        let largest = 5 * 1024 * 1024 * MIB as u64;
        let part = part_size_for(largest, 8 * MIB).unwrap();
        assert_eq!(part, 525 * MIB);
        assert!(largest.div_ceil(part as u64) <= u64::from(MAX_PARTS));
        // Past 10,000 parts of 5 GiB: refused.
        assert_eq!(
            part_size_for(MAX_PART * u64::from(MAX_PARTS) + 1, 8 * MIB),
            None
        );
    }
}

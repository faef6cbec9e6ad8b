//! The backup's streamed copies (`setup::multipart`) when something goes wrong half-way,
//! against moto's S3 with its access control on: an object overwritten between two of its
//! range reads fails the copy with the server's 412 (never an archived mix of both versions),
//! and an upload refused after its first part is aborted, so that the archive bucket lists no
//! unfinished multipart upload (S3 keeps, and bills, the parts of one until it is aborted).

use crate::support_setup;

use provisio::setup::aws::Client;
use provisio::setup::multipart::{self, MIN_PART, PartWriter, Target};
use provisio::setup::s3::{self, tag_values};
use std::io::Write;
use support_setup::Moto;

const SOURCE: &str = "tenant-bucket";
const ARCHIVE: &str = "provisio-archive";

fn make_bucket(c: &Client, bucket: &str) {
    let r = c.send("PUT", &format!("/{bucket}"), &[], &[], b"").unwrap();
    assert_eq!(r.status, 200, "create bucket {bucket}: {}", r.body);
}

/// The keys of the bucket's unfinished multipart uploads (`ListMultipartUploads`).
fn unfinished_uploads(c: &Client, bucket: &str) -> Vec<String> {
    let r = c
        .send("GET", &format!("/{bucket}"), &[("uploads", "")], &[], b"")
        .unwrap();
    assert_eq!(r.status, 200, "list uploads: {}", r.body);
    s3::blocks(&r.body, "Upload")
        .into_iter()
        .flat_map(|u| tag_values(u, "Key"))
        .collect()
}

fn target<'a>(c: &'a Client, key: &str) -> Target<'a> {
    Target {
        client: c,
        bucket: ARCHIVE,
        key: key.to_owned(),
        content_type: None,
        storage_class: None,
    }
}

/// Bytes that differ from part to part (a copy that mixed parts would be noticed).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 4096) as u8 ^ (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn an_object_overwritten_between_range_reads_fails_the_copy_and_leaves_no_upload() {
    let Some(moto) = Moto::start() else { return };
    let admin = moto.client("s3", "s3", &moto.admin);
    make_bucket(&admin, SOURCE);
    make_bucket(&admin, ARCHIVE);
    let key = "reports/2025 q1/big.bin";
    let before = pattern(2 * MIN_PART + 1234, 1);
    s3::put_object(&admin, SOURCE, key, &before, None, None).unwrap();
    let listed = s3::list_current(&admin, SOURCE, "").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].etag.is_empty(), "moto lists an ETag");
    let archived = "tenant/20250101T000000Z/s3/big.bin";
    let after = pattern(2 * MIN_PART + 1234, 2);
    // `copy_object` makes its writer once the first range is read: the object is overwritten
    // right then, before the second range is asked for.
    let copied = multipart::copy_object(
        &admin,
        SOURCE,
        key,
        listed[0].size,
        &listed[0].etag,
        MIN_PART,
        |_, part| {
            s3::put_object(&admin, SOURCE, key, &after, None, None).unwrap();
            PartWriter::new(target(&admin, archived), part)
        },
    );
    let e = copied.expect_err("a copy across two versions of the object must fail");
    assert!(
        e.to_string().contains("412") || e.to_string().contains("PreconditionFailed"),
        "the error names the failed precondition: {e}"
    );
    // The first part had been sent (the writer started an upload): it is aborted, and no
    // object was made of it.
    assert_eq!(unfinished_uploads(&admin, ARCHIVE), Vec::<String>::new());
    assert!(
        s3::get_object(&admin, ARCHIVE, archived).unwrap().is_none(),
        "no archived object of a torn read"
    );
    // The unchanged object copies whole.
    let listed = s3::list_current(&admin, SOURCE, "").unwrap();
    let (_, written) = multipart::copy_object(
        &admin,
        SOURCE,
        key,
        listed[0].size,
        &listed[0].etag,
        MIN_PART,
        |_, part| PartWriter::new(target(&admin, archived), part),
    )
    .unwrap()
    .expect("present");
    assert_eq!(written.size, after.len() as u64);
    assert_eq!(written.sha256, provisio::setup::aws::sha256_hex(&after));
    let copy = s3::get_object(&admin, ARCHIVE, archived).unwrap().unwrap();
    assert!(
        copy.body == after,
        "the archived copy is the current object"
    );
    assert_eq!(unfinished_uploads(&admin, ARCHIVE), Vec::<String>::new());
}

#[test]
fn an_upload_refused_after_its_first_part_is_aborted() {
    let Some(moto) = Moto::start() else { return };
    let admin = moto.client("s3", "s3", &moto.admin);
    make_bucket(&admin, ARCHIVE);
    // A writer allowed everything on S3, until its policy is replaced by one that refuses
    // s3:PutObject (CreateMultipartUpload and UploadPart) and allows the rest.
    moto.iam_ok("CreateUser", &[("UserName", "backup-writer")]);
    let policy = |put: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*"}},{{"Effect":"{put}","Action":"s3:PutObject","Resource":"*"}}]}}"#
        )
    };
    let set_policy = |put: &str| {
        moto.iam_ok(
            "PutUserPolicy",
            &[
                ("UserName", "backup-writer"),
                ("PolicyName", "s3"),
                ("PolicyDocument", &policy(put)),
            ],
        );
    };
    set_policy("Allow");
    let creds = moto.create_access_key("backup-writer");
    let writer_client = moto.client("s3", "s3", &creds);
    let key = "tenant/20250101T000000Z/mysql/shop.sql.gz";

    // Dropped after the refusal, as the backup's error paths do (`?` out of the dump).
    {
        let mut w = PartWriter::new(target(&writer_client, key), MIN_PART).unwrap();
        w.write_all(&pattern(MIN_PART, 3))
            .expect("the first part is sent");
        assert_eq!(unfinished_uploads(&admin, ARCHIVE), vec![key.to_owned()]);
        set_policy("Deny");
        let refused = w.write_all(&pattern(MIN_PART, 4));
        assert!(refused.is_err(), "the second part is refused");
        let e = w.take_error().expect("the refusal is kept whole");
        assert!(e.to_string().contains("403"), "{e}");
    }
    assert_eq!(unfinished_uploads(&admin, ARCHIVE), Vec::<String>::new());

    // Finished after the refusal: the refusal is the answer, and the upload is aborted too.
    set_policy("Allow");
    let mut w = PartWriter::new(target(&writer_client, key), MIN_PART).unwrap();
    w.write_all(&pattern(MIN_PART, 5)).unwrap();
    set_policy("Deny");
    assert!(w.write_all(&pattern(MIN_PART, 6)).is_err());
    let e = w.finish().expect_err("finish gives the refusal");
    assert!(e.to_string().contains("403"), "{e}");
    assert_eq!(unfinished_uploads(&admin, ARCHIVE), Vec::<String>::new());
    assert!(s3::get_object(&admin, ARCHIVE, key).unwrap().is_none());
}

/// S3 sends CompleteMultipartUpload's 200 before it has finished, so a failure comes as an
/// `<Error>` body inside that 200 (the API reference's CompleteMultipartUpload page): that is
/// a failed upload, aborted, with no object reported written.
#[test]
fn a_complete_answered_200_with_an_error_inside_fails_and_aborts() {
    let Some(moto) = Moto::start() else { return };
    let admin = moto.client("s3", "s3", &moto.admin);
    make_bucket(&admin, ARCHIVE);
    let (proxy, injected) = support_setup::s3_fault_proxy(moto.port, |line| {
        (line.starts_with("POST ") && line.contains("uploadId=")).then(|| {
            support_setup::Fault::Answer(
                200,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>".to_owned(),
            )
        })
    });
    let through_proxy = Client::new(
        "s3",
        "s3",
        &proxy,
        "us-east-1",
        moto.admin.clone(),
        provisio::io::retry::Policy::new(2, std::time::Duration::from_millis(50)).without_jitter(),
    )
    .unwrap();
    let key = "tenant/20250101T000000Z/mysql/shop.sql.gz";
    let mut w = PartWriter::new(target(&through_proxy, key), MIN_PART).unwrap();
    w.write_all(&pattern(MIN_PART + 77, 9)).unwrap();
    let e = w
        .finish()
        .expect_err("an <Error> inside a 200 is a failed upload");
    assert!(e.to_string().contains("InternalError"), "{e}");
    assert!(*injected.lock().unwrap() >= 1);
    assert_eq!(unfinished_uploads(&admin, ARCHIVE), Vec::<String>::new());
    assert!(s3::get_object(&admin, ARCHIVE, key).unwrap().is_none());
}

/// A CompleteMultipartUpload that the server carried out but whose answer was lost: the retry
/// finds no such upload (404 NoSuchUpload). The object is there, whole, at a key only this
/// writer writes: that is a completed upload, not a failure that fails the backup.
#[test]
fn a_complete_whose_answer_was_lost_is_recognised_on_its_retry() {
    let Some(moto) = Moto::start() else { return };
    let admin = moto.client("s3", "s3", &moto.admin);
    make_bucket(&admin, ARCHIVE);
    let lost = std::sync::atomic::AtomicBool::new(false);
    let (proxy, injected) = support_setup::s3_fault_proxy(moto.port, move |line| {
        (line.starts_with("POST ")
            && line.contains("uploadId=")
            && !lost.swap(true, std::sync::atomic::Ordering::SeqCst))
        .then_some(support_setup::Fault::LoseAnswer)
    });
    let through_proxy = Client::new(
        "s3",
        "s3",
        &proxy,
        "us-east-1",
        moto.admin.clone(),
        provisio::io::retry::Policy::new(3, std::time::Duration::from_millis(50)).without_jitter(),
    )
    .unwrap();
    let key = "tenant/20250101T000000Z/mysql/shop.sql.gz";
    let body = pattern(MIN_PART + 77, 11);
    let mut w = PartWriter::new(target(&through_proxy, key), MIN_PART).unwrap();
    w.write_all(&body).unwrap();
    let written = w
        .finish()
        .expect("the upload completed on its first Complete");
    assert_eq!(*injected.lock().unwrap(), 1, "one answer was lost");
    assert_eq!(written.size, body.len() as u64);
    let stored = s3::get_object(&admin, ARCHIVE, key)
        .unwrap()
        .expect("the object");
    assert!(stored.body == body);
    assert_eq!(unfinished_uploads(&admin, ARCHIVE), Vec::<String>::new());
}

//! Attachments of a job (issue 15): photos before and after the work, receipt images (R28)
//! and the customer's signature image, as content-addressed blobs.
//!
//! The bytes never enter the automerge document: they are stored and synced beside it (the
//! device's blob directory, the edge's `PUT /api/jobs/{job}/attachments/{sha256}`). The job
//! document holds only a reference per blob under the root key `attachments`: a map from the
//! blob's SHA-256 (lowercase hex) to a map of scalars (kind, media type, size, name, when, by
//! whom). Keyed by digest, two devices attaching offline keep both, and the same bytes
//! attached twice are one entry. The server creates the empty map with the job (devices never
//! create it concurrently); a job made before attachments existed gets it from the first
//! attachment, like approvals.
//!
//! The references are part of [`crate::job::Job`] (`Job::attachments`), so the report content
//! lists every digest and the branch's signature covers the bytes through them. The customer
//! acknowledges the photos and the signature image; receipts (R28 travel expenses) are the
//! technician's own business and are blanked from the acknowledged content
//! (`report::acknowledged_content`), so a receipt photographed after the customer signed does
//! not void the signature.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::canonical::Digest;
use crate::ids::TechnicianId;
use crate::time::Timestamp;

/// The root key of the attachments map.
pub const ATTACHMENTS: &str = "attachments";

/// What a picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AttachmentKind {
    /// The product or site before the work.
    Before,
    /// The product or site after the work.
    After,
    /// A receipt (R28 travel expenses), referenced by an expense claim.
    Receipt,
    /// The customer's signature or stamp as an image (R8).
    Signature,
}

impl AttachmentKind {
    pub const ALL: [AttachmentKind; 4] = [
        AttachmentKind::Before,
        AttachmentKind::After,
        AttachmentKind::Receipt,
        AttachmentKind::Signature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Before => "before",
            AttachmentKind::After => "after",
            AttachmentKind::Receipt => "receipt",
            AttachmentKind::Signature => "signature",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One attachment as the job document references it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// SHA-256 of the bytes, lowercase hex (64 characters): the blob's name everywhere.
    pub digest: String,
    pub kind: AttachmentKind,
    /// `image/jpeg`, `image/png`…
    pub media_type: String,
    /// Length of the bytes.
    pub size: u64,
    /// The file name it was captured as (for people; never used as a path).
    pub name: String,
    /// When it was captured (the device's clock).
    pub at: Timestamp,
    pub by: TechnicianId,
}

/// The SHA-256 of `bytes` as the lowercase hex an attachment is named by.
pub fn blob_digest(bytes: &[u8]) -> String {
    Digest::of(bytes).to_hex()
}

/// Whether `s` is a blob name: 64 lowercase hex characters.
pub fn is_blob_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why an attachment could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
    #[error("{0:?} is not a SHA-256 in lowercase hex")]
    BadDigest(String),
    #[error("the attachments of this job are not a map")]
    NotAMap,
}

/// Mod key names inside one attachment's map.
pub(crate) mod key {
    pub const KIND: &str = "kind";
    pub const MEDIA_TYPE: &str = "media_type";
    pub const SIZE: &str = "size";
    pub const NAME: &str = "name";
    pub const AT: &str = "at";
    pub const BY: &str = "by";
}

/// Creates the empty attachments map (the server does it when it creates the job).
pub fn init_attachments(doc: &mut AutoCommit) -> Result<(), AttachmentError> {
    match doc.get(ROOT, ATTACHMENTS)? {
        None => {
            doc.put_object(ROOT, ATTACHMENTS, ObjType::Map)?;
            Ok(())
        }
        Some((Value::Object(ObjType::Map), _)) => Ok(()),
        Some(_) => Err(AttachmentError::NotAMap),
    }
}

/// Records a reference to a blob in the job. Returns false (and writes nothing) when the job
/// already references the same bytes.
pub fn add_attachment(
    doc: &mut AutoCommit,
    attachment: &AttachmentRef,
) -> Result<bool, AttachmentError> {
    if !is_blob_digest(&attachment.digest) {
        return Err(AttachmentError::BadDigest(attachment.digest.clone()));
    }
    init_attachments(doc)?;
    let Some((Value::Object(ObjType::Map), map)) = doc.get(ROOT, ATTACHMENTS)? else {
        return Err(AttachmentError::NotAMap);
    };
    if doc.get(&map, &attachment.digest)?.is_some() {
        return Ok(false);
    }
    let obj = doc.put_object(&map, &attachment.digest, ObjType::Map)?;
    write_fields(doc, &obj, attachment)?;
    Ok(true)
}

/// Writes one reference's fields into its (new) map.
pub(crate) fn write_fields<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    attachment: &AttachmentRef,
) -> Result<(), AutomergeError> {
    tx.put(obj, key::KIND, attachment.kind.as_str())?;
    tx.put(obj, key::MEDIA_TYPE, attachment.media_type.as_str())?;
    tx.put(
        obj,
        key::SIZE,
        ScalarValue::Int(i64::try_from(attachment.size).unwrap_or(i64::MAX)),
    )?;
    tx.put(obj, key::NAME, attachment.name.as_str())?;
    tx.put(
        obj,
        key::AT,
        ScalarValue::Timestamp(attachment.at.as_millis()),
    )?;
    tx.put(obj, key::BY, attachment.by.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::doc::JobDoc;
    use crate::job::fixtures::{new_job as sample_job, tech};

    fn photo(digest: &str, kind: AttachmentKind) -> AttachmentRef {
        AttachmentRef {
            digest: digest.into(),
            kind,
            media_type: "image/jpeg".into(),
            size: 3_000_000,
            name: "IMG_0001.jpg".into(),
            at: Timestamp::from_millis(1_700_000_000_000),
            by: tech("tech-1"),
        }
    }

    #[test]
    fn references_read_back_sorted_by_digest_and_merge_from_two_devices() {
        let mut a = JobDoc::create(&sample_job()).expect("ok");
        init_attachments(a.inner_mut()).expect("ok");
        a.inner_mut().commit();
        let mut b = a.fork();
        let (d1, d2) = (blob_digest(b"one"), blob_digest(b"two"));
        assert!(add_attachment(a.inner_mut(), &photo(&d1, AttachmentKind::Before)).expect("ok"));
        assert!(add_attachment(b.inner_mut(), &photo(&d2, AttachmentKind::After)).expect("ok"));
        // The same bytes again: nothing written.
        assert!(!add_attachment(a.inner_mut(), &photo(&d1, AttachmentKind::After)).expect("ok"));
        a.merge(&mut b).expect("ok");
        let job = a.read().expect("ok");
        let mut want = vec![
            photo(&d1, AttachmentKind::Before),
            photo(&d2, AttachmentKind::After),
        ];
        want.sort_by(|x, y| x.digest.cmp(&y.digest));
        assert_eq!(job.attachments, want);
    }

    #[test]
    fn a_job_without_the_map_reads_as_no_attachments_and_the_first_one_makes_it() {
        let mut doc = JobDoc::create(&sample_job()).expect("ok");
        assert!(doc.read().expect("ok").attachments.is_empty());
        let d = blob_digest(b"receipt");
        add_attachment(doc.inner_mut(), &photo(&d, AttachmentKind::Receipt)).expect("ok");
        assert_eq!(doc.read().expect("ok").attachments.len(), 1);
        // Old content keeps its JSON: no `attachments` member when there are none.
        let json = serde_json::to_value(sample_job()).expect("ok");
        assert!(json.get("attachments").is_none());
    }

    #[test]
    fn a_bad_digest_is_refused_and_a_malformed_entry_is_a_schema_error() {
        let mut doc = JobDoc::create(&sample_job()).expect("ok");
        let err = add_attachment(doc.inner_mut(), &photo("ABC", AttachmentKind::Before));
        assert!(matches!(err, Err(AttachmentError::BadDigest(_))));
        init_attachments(doc.inner_mut()).expect("ok");
        let Some((_, map)) = doc.inner().get(ROOT, ATTACHMENTS).expect("ok") else {
            panic!("no map");
        };
        let d = blob_digest(b"x");
        let obj = doc
            .inner_mut()
            .put_object(&map, d.as_str(), ObjType::Map)
            .expect("ok");
        doc.inner_mut().put(&obj, key::KIND, "selfie").expect("ok");
        let err = doc.read().expect_err("a malformed entry");
        assert!(err.to_string().contains("attachments"), "{err}");
    }
}

//! The complaint document: how a branch's complaint (R20–R23) reaches head office, so the
//! monthly complaint rate and attribution (R22) can be computed there across branches.
//!
//! A complaint lives at the branch desk as a versioned record; each revision the desk stores
//! is also written into one automerge document per complaint, which rides the same sync
//! protocol and the same branch link as jobs and report documents. The document holds the
//! complaint's canonical JSON and the branch's ed25519 signature over it (with the branch,
//! the complaint id and the revision), so head office checks it with nothing but the branch's
//! enrolled key, as it does reports.
//!
//! The document id derives from the branch and the complaint id ([`complaint_doc_id`]): head
//! office recomputes it, so a document cannot claim another complaint's place. Only the branch
//! writes the document; every write replaces all fields, so the document always reads as one
//! signed revision.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ROOT, ReadDoc, ScalarValue, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::ids::{BranchId, DocumentId};
use crate::keys::{KeyId, KeyPair, PublicKey, signature_from_hex};

/// The `kind` field of a complaint document.
pub const COMPLAINT_DOC_KIND: &str = "fieldsync/complaint-document/v1";
/// The purpose tag inside the signed statement.
pub const COMPLAINT_FORMAT: &str = "fieldsync/complaint/v1";

/// The document id of a branch's complaint: the first 16 bytes of
/// SHA-256(kind ‖ 0 ‖ branch ‖ 0 ‖ complaint id).
pub fn complaint_doc_id(branch: &BranchId, complaint_id: &str) -> DocumentId {
    let mut hash = Sha256::new();
    hash.update(COMPLAINT_DOC_KIND.as_bytes());
    hash.update([0]);
    hash.update(branch.as_str().as_bytes());
    hash.update([0]);
    hash.update(complaint_id.as_bytes());
    let digest = hash.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    DocumentId::from_bytes(id)
}

/// Why a complaint document is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComplaintDocError {
    #[error("malformed complaint document: {0}")]
    Malformed(String),
    #[error("the complaint is signed by key {key_id}, not by its branch's enrolled key")]
    UnknownKey { key_id: KeyId },
    #[error("the branch signature does not verify: the complaint was altered")]
    BadSignature,
    #[error("document {actual} does not hold complaint {complaint_id} of branch {branch_id}")]
    WrongDocument {
        branch_id: BranchId,
        complaint_id: String,
        actual: DocumentId,
    },
}

impl ComplaintDocError {
    /// A stable code for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ComplaintDocError::Malformed(_) => "malformed",
            ComplaintDocError::UnknownKey { .. } => "unknown_key",
            ComplaintDocError::BadSignature => "bad_branch_signature",
            ComplaintDocError::WrongDocument { .. } => "wrong_document",
        }
    }
}

/// What a complaint document holds: one signed revision of a complaint.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplaintDoc {
    pub branch_id: BranchId,
    pub complaint_id: String,
    /// The desk record's revision (1 when registered, one more per step).
    pub revision: u64,
    /// The complaint as the desk stores it, as canonical JSON.
    pub record_json: String,
    /// The branch key that signed.
    pub key_id: KeyId,
    /// Hex ed25519 signature over the canonical statement.
    pub signature: String,
}

fn statement(
    branch_id: &BranchId,
    complaint_id: &str,
    revision: u64,
    record: &serde_json::Value,
) -> Result<Vec<u8>, ComplaintDocError> {
    let value = json!({
        "format": COMPLAINT_FORMAT,
        "branch_id": branch_id,
        "complaint_id": complaint_id,
        "revision": revision,
        "record": record,
    });
    canonical::to_canonical_bytes(&value).map_err(|e| ComplaintDocError::Malformed(e.to_string()))
}

impl ComplaintDoc {
    /// Signs one revision of a complaint with the branch key.
    pub fn sign(
        branch_id: BranchId,
        complaint_id: String,
        revision: u64,
        record: &serde_json::Value,
        branch_key: &KeyPair,
    ) -> Result<Self, ComplaintDocError> {
        let signed = statement(&branch_id, &complaint_id, revision, record)?;
        let record_json = canonical::to_canonical_string(record)
            .map_err(|e| ComplaintDocError::Malformed(e.to_string()))?;
        Ok(Self {
            signature: hex::encode(branch_key.sign(&signed).to_bytes()),
            key_id: branch_key.id().clone(),
            branch_id,
            complaint_id,
            revision,
            record_json,
        })
    }

    /// The document this complaint belongs in.
    pub fn doc_id(&self) -> DocumentId {
        complaint_doc_id(&self.branch_id, &self.complaint_id)
    }

    /// Checks that this is the complaint its document id says, signed by `branch_key`
    /// (`verify_strict`), and returns the complaint record.
    pub fn verify(
        &self,
        doc: DocumentId,
        branch_key: &PublicKey,
    ) -> Result<serde_json::Value, ComplaintDocError> {
        if self.doc_id() != doc {
            return Err(ComplaintDocError::WrongDocument {
                branch_id: self.branch_id.clone(),
                complaint_id: self.complaint_id.clone(),
                actual: doc,
            });
        }
        if &self.key_id != branch_key.id() {
            return Err(ComplaintDocError::UnknownKey {
                key_id: self.key_id.clone(),
            });
        }
        let record: serde_json::Value = serde_json::from_str(&self.record_json)
            .map_err(|e| ComplaintDocError::Malformed(format!("record: {e}")))?;
        let signed = statement(&self.branch_id, &self.complaint_id, self.revision, &record)?;
        let signature =
            signature_from_hex(&self.signature).ok_or(ComplaintDocError::BadSignature)?;
        if branch_key.verify(&signed, &signature) {
            Ok(record)
        } else {
            Err(ComplaintDocError::BadSignature)
        }
    }

    /// Writes every field into `doc` (a new document or the complaint's existing one).
    pub fn write(&self, doc: &mut AutoCommit) -> Result<(), ComplaintDocError> {
        let fail = |e: automerge::AutomergeError| ComplaintDocError::Malformed(e.to_string());
        doc.put(ROOT, "kind", COMPLAINT_DOC_KIND).map_err(fail)?;
        doc.put(ROOT, "branch_id", self.branch_id.as_str())
            .map_err(fail)?;
        doc.put(ROOT, "complaint_id", self.complaint_id.as_str())
            .map_err(fail)?;
        doc.put(ROOT, "revision", ScalarValue::Uint(self.revision))
            .map_err(fail)?;
        doc.put(ROOT, "record", self.record_json.as_str())
            .map_err(fail)?;
        doc.put(ROOT, "key_id", self.key_id.as_str())
            .map_err(fail)?;
        doc.put(ROOT, "signature", self.signature.as_str())
            .map_err(fail)?;
        Ok(())
    }

    /// A new document holding this revision.
    pub fn to_document(&self) -> Result<Automerge, ComplaintDocError> {
        let mut doc = AutoCommit::new();
        self.write(&mut doc)?;
        Ok(doc.document().clone())
    }

    /// Reads a complaint document; `Ok(None)` when the document is something else.
    pub fn from_document(doc: &Automerge) -> Result<Option<Self>, ComplaintDocError> {
        let scalar = |key: &str| -> Result<Option<ScalarValue>, ComplaintDocError> {
            match doc.get(ROOT, key) {
                Ok(Some((Value::Scalar(s), _))) => Ok(Some(s.into_owned())),
                Ok(Some(_)) => Err(ComplaintDocError::Malformed(format!(
                    "{key} is an object, not a value"
                ))),
                Ok(None) => Ok(None),
                Err(e) => Err(ComplaintDocError::Malformed(e.to_string())),
            }
        };
        let text = |key: &str| -> Result<String, ComplaintDocError> {
            match scalar(key)? {
                Some(ScalarValue::Str(s)) => Ok(s.to_string()),
                Some(other) => Err(ComplaintDocError::Malformed(format!(
                    "{key} is {other:?}, not text"
                ))),
                None => Err(ComplaintDocError::Malformed(format!("{key} is missing"))),
            }
        };
        match scalar("kind")? {
            Some(ScalarValue::Str(kind)) if kind.as_str() == COMPLAINT_DOC_KIND => {}
            _ => return Ok(None),
        }
        let revision = match scalar("revision")? {
            Some(ScalarValue::Uint(n)) => n,
            Some(ScalarValue::Int(n)) if n >= 0 => n.unsigned_abs(),
            other => {
                return Err(ComplaintDocError::Malformed(format!(
                    "revision is {other:?}, not a count"
                )));
            }
        };
        let branch_id = BranchId::new(text("branch_id")?)
            .map_err(|e| ComplaintDocError::Malformed(format!("branch_id: {e}")))?;
        Ok(Some(Self {
            branch_id,
            complaint_id: text("complaint_id")?,
            revision,
            record_json: text("record")?,
            key_id: serde_json::from_value::<KeyId>(serde_json::Value::String(text("key_id")?))
                .map_err(|e| ComplaintDocError::Malformed(format!("key_id: {e}")))?,
            signature: text("signature")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch() -> BranchId {
        BranchId::new("north-01").expect("valid")
    }

    fn record() -> serde_json::Value {
        json!({"id": "cmp-1", "category": "service", "received_at": "2026-11-03T09:00:00Z"})
    }

    fn signed(key: &KeyPair) -> ComplaintDoc {
        ComplaintDoc::sign(branch(), "cmp-1".into(), 2, &record(), key).expect("signs")
    }

    #[test]
    fn r22_a_complaint_survives_the_document_and_verifies() {
        let key = KeyPair::from_seed(&[3; 32]);
        let complaint = signed(&key);
        let doc = complaint.to_document().expect("document");
        let read = ComplaintDoc::from_document(&doc)
            .expect("readable")
            .expect("a complaint document");
        assert_eq!(read, complaint);
        let value = read
            .verify(complaint_doc_id(&branch(), "cmp-1"), key.public())
            .expect("verifies");
        assert_eq!(value, record());
    }

    #[test]
    fn r22_a_rewritten_document_reads_as_the_latest_revision() {
        let key = KeyPair::from_seed(&[3; 32]);
        let mut doc = AutoCommit::new();
        signed(&key).write(&mut doc).expect("first");
        let later = ComplaintDoc::sign(
            branch(),
            "cmp-1".into(),
            3,
            &json!({"id": "cmp-1", "category": "quality"}),
            &key,
        )
        .expect("signs");
        later.write(&mut doc).expect("second");
        let read = ComplaintDoc::from_document(doc.document())
            .expect("readable")
            .expect("a complaint");
        assert_eq!(read.revision, 3);
        read.verify(later.doc_id(), key.public())
            .expect("the latest revision verifies");
    }

    #[test]
    fn r22_tampering_and_misplacement_are_refused() {
        let key = KeyPair::from_seed(&[3; 32]);
        let other = KeyPair::from_seed(&[4; 32]);
        let doc_id = complaint_doc_id(&branch(), "cmp-1");

        let mut altered = signed(&key);
        altered.record_json = altered.record_json.replace("service", "suggestion");
        assert_eq!(
            altered.verify(doc_id, key.public()),
            Err(ComplaintDocError::BadSignature)
        );

        let mut bumped = signed(&key);
        bumped.revision += 1;
        assert_eq!(
            bumped.verify(doc_id, key.public()),
            Err(ComplaintDocError::BadSignature)
        );

        let foreign = signed(&other);
        assert!(matches!(
            foreign.verify(doc_id, key.public()),
            Err(ComplaintDocError::UnknownKey { .. })
        ));

        let elsewhere = complaint_doc_id(&BranchId::new("south-02").expect("valid"), "cmp-1");
        assert_ne!(elsewhere, doc_id, "the id depends on the branch");
        assert!(matches!(
            signed(&key).verify(elsewhere, key.public()),
            Err(ComplaintDocError::WrongDocument { .. })
        ));
    }

    #[test]
    fn other_documents_are_not_complaints() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "kind", "fieldsync/job/v1").expect("put");
        assert_eq!(ComplaintDoc::from_document(doc.document()), Ok(None));
        let mut broken = AutoCommit::new();
        broken.put(ROOT, "kind", COMPLAINT_DOC_KIND).expect("put");
        broken.put(ROOT, "revision", "two").expect("put");
        assert!(matches!(
            ComplaintDoc::from_document(broken.document()),
            Err(ComplaintDocError::Malformed(_))
        ));
    }
}

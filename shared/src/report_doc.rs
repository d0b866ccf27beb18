//! The report document: how a signed service report travels from a branch to head office.
//!
//! DESIGN.md ("Documents"): one report document per signed service report. It is an automerge
//! document like a job, so it rides the same sync protocol and the same durability barrier; its
//! id derives from the report id, so the same content signed twice is one document. It holds
//! the report's canonical JSON and a [`DeviceAttestation`]: the branch's signed statement of the
//! acknowledging device's enrolled key, so head office can check the device signature with
//! nothing but the branch's public key (head office enrolls branches, not devices).
//!
//! The document is written once, by the branch, and never changed.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::ids::DocumentId;
use crate::keys::{KeyId, KeyPair, PublicKey, signature_from_hex};
use crate::report::{DeviceRecord, SignedReport, VerifyError};

/// The `kind` field of a report document.
pub const REPORT_DOC_KIND: &str = "fieldsync/report-document/v1";
/// The purpose tag inside a device attestation's signed statement.
pub const ATTESTATION_FORMAT: &str = "fieldsync/device-attestation/v1";

/// The document id of a report: the report id's 16 bytes (it is 32 hex digits).
pub fn report_doc_id(report_id: &str) -> Option<DocumentId> {
    let bytes = hex::decode(report_id).ok()?;
    Some(DocumentId::from_bytes(bytes.try_into().ok()?))
}

/// A branch's signed statement that a device key is enrolled with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAttestation {
    pub record: DeviceRecord,
    /// The branch key that signed.
    pub key_id: KeyId,
    /// Hex ed25519 signature over the canonical `{"format", "record"}` statement.
    pub signature: String,
}

fn statement(record: &DeviceRecord) -> Result<Vec<u8>, VerifyError> {
    let value = serde_json::json!({ "format": ATTESTATION_FORMAT, "record": record });
    canonical::to_canonical_bytes(&value).map_err(|e| VerifyError::Malformed(e.to_string()))
}

impl DeviceAttestation {
    pub fn sign(record: DeviceRecord, branch_key: &KeyPair) -> Result<Self, VerifyError> {
        let signature = hex::encode(branch_key.sign(&statement(&record)?).to_bytes());
        Ok(Self {
            record,
            key_id: branch_key.id().clone(),
            signature,
        })
    }

    /// Checks the statement with the branch's public key (`verify_strict`).
    pub fn verify(&self, branch_key: &PublicKey) -> Result<(), VerifyError> {
        if &self.key_id != branch_key.id() {
            return Err(VerifyError::UnknownKey {
                key_id: self.key_id.clone(),
            });
        }
        let signature =
            signature_from_hex(&self.signature).ok_or(VerifyError::BadBranchSignature)?;
        if branch_key.verify(&statement(&self.record)?, &signature) {
            Ok(())
        } else {
            Err(VerifyError::BadBranchSignature)
        }
    }
}

/// What a report document holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDoc {
    /// The report exactly as the branch exported it (canonical JSON).
    pub report_json: Vec<u8>,
    pub attestation: DeviceAttestation,
}

impl ReportDoc {
    /// The report, parsed (not verified).
    pub fn report(&self) -> Result<SignedReport, VerifyError> {
        serde_json::from_slice(&self.report_json)
            .map_err(|e| VerifyError::Malformed(format!("report: {e}")))
    }

    /// A new document holding this report.
    pub fn to_document(&self) -> Result<Automerge, VerifyError> {
        let attestation = serde_json::to_string(&self.attestation)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let report = String::from_utf8(self.report_json.clone())
            .map_err(|_| VerifyError::Malformed("report is not UTF-8".into()))?;
        let mut doc = AutoCommit::new();
        let put = |doc: &mut AutoCommit, key: &str, value: String| {
            doc.put(ROOT, key, value)
                .map_err(|e| VerifyError::Malformed(e.to_string()))
        };
        put(&mut doc, "kind", REPORT_DOC_KIND.to_owned())?;
        put(&mut doc, "report", report)?;
        put(&mut doc, "attestation", attestation)?;
        Ok(doc.document().clone())
    }

    /// Reads a report document; `Ok(None)` when the document is something else (a job).
    pub fn from_document(doc: &Automerge) -> Result<Option<Self>, VerifyError> {
        let text = |key: &str| -> Result<Option<String>, VerifyError> {
            match doc.get(ROOT, key) {
                Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                    ScalarValue::Str(s) => Ok(Some(s.to_string())),
                    other => Err(VerifyError::Malformed(format!(
                        "{key} is {other:?}, not text"
                    ))),
                },
                Ok(Some(_)) => Err(VerifyError::Malformed(format!("{key} is not text"))),
                Ok(None) => Ok(None),
                Err(e) => Err(VerifyError::Malformed(e.to_string())),
            }
        };
        if text("kind")?.as_deref() != Some(REPORT_DOC_KIND) {
            return Ok(None);
        }
        let report = text("report")?
            .ok_or_else(|| VerifyError::Malformed("report document without a report".into()))?;
        let attestation = text("attestation")?.ok_or_else(|| {
            VerifyError::Malformed("report document without a device attestation".into())
        })?;
        let attestation = serde_json::from_str(&attestation)
            .map_err(|e| VerifyError::Malformed(format!("attestation: {e}")))?;
        Ok(Some(Self {
            report_json: report.into_bytes(),
            attestation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BranchId, DeviceId, TechnicianId};

    fn record() -> DeviceRecord {
        DeviceRecord {
            device_id: DeviceId::new("dev-1").expect("valid"),
            branch_id: BranchId::new("north-01").expect("valid"),
            technician: TechnicianId::new("tech-wang").expect("valid"),
            public_key: KeyPair::from_seed(&[7; 32]).public().to_hex(),
            revoked_at: None,
        }
    }

    #[test]
    fn an_attestation_verifies_with_its_branch_key_only() {
        let branch = KeyPair::from_seed(&[1; 32]);
        let other = KeyPair::from_seed(&[2; 32]);
        let attestation = DeviceAttestation::sign(record(), &branch).expect("valid");
        assert_eq!(attestation.verify(branch.public()), Ok(()));
        assert!(matches!(
            attestation.verify(other.public()),
            Err(VerifyError::UnknownKey { .. })
        ));
        let mut altered = attestation.clone();
        altered.record.technician = TechnicianId::new("tech-li").expect("valid");
        assert_eq!(
            altered.verify(branch.public()),
            Err(VerifyError::BadBranchSignature)
        );
    }

    #[test]
    fn a_report_document_round_trips_and_other_documents_are_not_reports() {
        let branch = KeyPair::from_seed(&[1; 32]);
        let doc = ReportDoc {
            report_json: br#"{"body":{},"signature":"00"}"#.to_vec(),
            attestation: DeviceAttestation::sign(record(), &branch).expect("valid"),
        };
        let automerge = doc.to_document().expect("valid");
        assert_eq!(
            ReportDoc::from_document(&automerge).expect("valid"),
            Some(doc)
        );
        assert_eq!(
            ReportDoc::from_document(&Automerge::new()).expect("valid"),
            None
        );
    }

    #[test]
    fn report_ids_map_to_document_ids() {
        let id = "00112233445566778899aabbccddeeff";
        let doc = report_doc_id(id).expect("valid");
        assert_eq!(hex::encode(doc.as_bytes()), id);
        assert_eq!(report_doc_id("not hex"), None);
        assert_eq!(report_doc_id("0011"), None);
    }
}

/// Head office's verdict on a report, as a branch asks for it (issue 16): a branch counts a
/// report delivered once head office holds it, and archived once the verdict is `verified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    /// Verified and archived.
    Verified,
    /// Kept aside: a check failed (`code`, `message`); head office may retry it after an
    /// operator fixed the cause (`fieldsync archive retry`).
    Rejected,
    /// Waiting for its job document to reach the report's heads.
    Pending,
    /// Head office holds nothing of it from this branch (not delivered yet, or not this
    /// branch's report).
    Unknown,
}

impl VerdictStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictStatus::Verified => "verified",
            VerdictStatus::Rejected => "rejected",
            VerdictStatus::Pending => "pending",
            VerdictStatus::Unknown => "unknown",
        }
    }
}

/// One report's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verdict {
    pub report_id: String,
    pub status: VerdictStatus,
    /// Why it was kept aside or waits (`unknown_key`, `awaiting_job_document`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When head office reached the verdict (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

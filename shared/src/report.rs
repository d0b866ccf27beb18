//! The trust chain's signed artefacts: the customer's acknowledgement and the service report.
//!
//! DESIGN.md, "Trust chain": the device signs the customer's acknowledgement over a digest of
//! the job's content and the document heads; the edge server signs the service report (the job
//! content, the acknowledgement, the heads, its branch id, key id and the time) with the branch
//! key; head office verifies both without trusting anything in between. Everything signed is
//! canonical JSON (RFC 8785), so every tier hashes the same bytes. Verification uses
//! `verify_strict` and says exactly what failed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, CanonicalError, Digest};
use crate::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use crate::job::{Acknowledgement, Job, SignatureMark, Survey};
use crate::keys::{KeyId, KeyPair, PublicKey, signature_from_hex};
use crate::time::Timestamp;

/// The format tag inside every acknowledgement statement.
pub const ACK_FORMAT: &str = "fieldsync/acknowledgement/v1";
/// The format tag of a report body.
pub const REPORT_FORMAT: &str = "fieldsync/report/v1";

/// Why a report or acknowledgement could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot canonicalise: {0}")]
    Canonical(#[from] CanonicalError),
    #[error("the job has no customer acknowledgement to report")]
    NoAcknowledgement,
}

/// The content a customer acknowledges: the whole job except the acknowledgement itself and
/// what is recorded after the customer signs (check-out R11, the completion request, the
/// server's report outcome, the timeline and free notes). If any acknowledged field changes
/// afterwards, the acknowledgement no longer matches and must be taken again. The training of
/// the customer's staff (R16) is given before the customer signs and is acknowledged with
/// the rest, and so are the photos and the signature image (issue 15); receipt images
/// (R28, the technician's travel expenses) are not the customer's to acknowledge and are
/// left out, so a receipt added after the signature does not void it. For the same reason the
/// approved travel expense claims (R28, `expenses`) are left out: the desk approves them
/// after the customer signs.
pub fn acknowledged_content(job: &Job) -> Result<Value, ReportError> {
    let mut job = job.clone();
    job.attachments
        .retain(|a| a.kind != crate::job::attachments::AttachmentKind::Receipt);
    job.expenses.clear();
    job.acknowledgement = None;
    job.completion = None;
    job.report = None;
    job.timeline.clear();
    job.notes.clear();
    job.visit.check_out = None;
    Ok(serde_json::to_value(&job).map_err(|e| CanonicalError::Serialize(e.to_string()))?)
}

/// SHA-256 of the canonical acknowledged content.
///
/// Issue 17: hashed from [`Acknowledged`], the job's members borrowed, rather than from a
/// copy of the job serialised to a `Value` ([`acknowledged_content`], the same bytes: unit
/// test `the_acknowledged_digest_is_that_of_the_acknowledged_content`).
pub fn acknowledged_digest(job: &Job) -> Result<Digest, ReportError> {
    Ok(Digest::of(&canonical::canonicalize(&Acknowledged::of(
        job,
    ))?))
}

/// The acknowledged content as [`acknowledged_content`] makes it, borrowed from the job: the
/// members serialised as the job serialises them, the six blanked ones as their blank, the
/// receipts and the expense claims left out. Built by destructuring `Job` and `Visit` in
/// full, so a member added to either does not compile until it is placed here.
#[derive(Serialize)]
struct Acknowledged<'a> {
    schema_version: u64,
    job_id: &'a DocumentId,
    branch_id: &'a BranchId,
    kind: crate::job::JobKind,
    request: &'a crate::job::ServiceRequest,
    customer: &'a crate::job::Customer,
    product: &'a crate::job::Product,
    technicians: &'a [TechnicianId],
    visit: AcknowledgedVisit<'a>,
    diagnosis: &'a crate::job::Diagnosis,
    parts: &'a [crate::job::PartUsed],
    labour: &'a crate::job::Labour,
    travel: &'a crate::job::Travel,
    billing: &'a crate::job::Billing,
    handover: &'a Option<crate::job::Handover>,
    customer_opinion: &'a Option<String>,
    acknowledgement: (),
    completion: (),
    report: (),
    timeline: [(); 0],
    notes: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<&'a crate::job::attachments::AttachmentRef>,
}

#[derive(Serialize)]
struct AcknowledgedVisit<'a> {
    appointment: &'a Option<Timestamp>,
    arrival: &'a Option<Timestamp>,
    safety_briefing: &'a Option<crate::job::SafetyBriefing>,
    check_out: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    training: &'a Option<crate::job::Training>,
}

impl<'a> Acknowledged<'a> {
    fn of(job: &'a Job) -> Self {
        let Job {
            schema_version,
            job_id,
            branch_id,
            kind,
            request,
            customer,
            product,
            technicians,
            visit,
            diagnosis,
            parts,
            labour,
            travel,
            billing,
            handover,
            customer_opinion,
            acknowledgement: _,
            completion: _,
            report: _,
            timeline: _,
            notes: _,
            attachments,
            expenses: _,
        } = job;
        let crate::job::Visit {
            appointment,
            arrival,
            safety_briefing,
            check_out: _,
            training,
        } = visit;
        Self {
            schema_version: *schema_version,
            job_id,
            branch_id,
            kind: *kind,
            request,
            customer,
            product,
            technicians,
            visit: AcknowledgedVisit {
                appointment,
                arrival,
                safety_briefing,
                check_out: (),
                training,
            },
            diagnosis,
            parts,
            labour,
            travel,
            billing,
            handover,
            customer_opinion,
            acknowledgement: (),
            completion: (),
            report: (),
            timeline: [],
            notes: "",
            attachments: attachments
                .iter()
                .filter(|a| a.kind != crate::job::attachments::AttachmentKind::Receipt)
                .collect(),
        }
    }
}

/// The content of a report: the job at the report's heads without the acknowledgement (the
/// report carries it on its own), the completion request and the report outcome (which the
/// server writes after signing).
pub fn report_content(job: &Job) -> Result<Value, ReportError> {
    // The job's JSON with those three members null, as a copy of the job with them `None`
    // serialises (they are plain options), without copying the job first (issue 17).
    let mut content =
        serde_json::to_value(job).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
    if let Value::Object(members) = &mut content {
        for member in ["acknowledgement", "completion", "report"] {
            if let Some(value) = members.get_mut(member) {
                *value = Value::Null;
            }
        }
    }
    Ok(content)
}

/// Normalises document heads: lowercase hex, sorted, without duplicates.
pub fn normalise_heads(heads: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut heads: Vec<String> = heads.into_iter().map(|h| h.to_ascii_lowercase()).collect();
    heads.sort();
    heads.dedup();
    heads
}

/// What the customer filled in on the device, before the device signs it.
#[derive(Debug, Clone, PartialEq)]
pub struct AckDraft {
    pub signer_name: String,
    pub signature: SignatureMark,
    pub signed_at: Timestamp,
    pub survey: Survey,
}

/// The statement a device signs for an acknowledgement. The signature mark enters as its
/// digest, so a large image does not have to be hashed twice.
#[derive(Serialize)]
struct AckStatement<'a> {
    format: &'static str,
    job_id: &'a DocumentId,
    branch_id: &'a BranchId,
    device_id: &'a DeviceId,
    job_digest: &'a str,
    heads: &'a [String],
    signer_name: &'a str,
    signed_at: Timestamp,
    survey: &'a Survey,
    signature_mark_digest: String,
}

fn ack_statement_bytes(
    job_id: &DocumentId,
    branch_id: &BranchId,
    ack: &Acknowledgement,
) -> Result<Vec<u8>, CanonicalError> {
    let statement = AckStatement {
        format: ACK_FORMAT,
        job_id,
        branch_id,
        device_id: &ack.device_id,
        job_digest: &ack.job_digest,
        heads: &ack.heads,
        signer_name: &ack.signer_name,
        signed_at: ack.signed_at,
        survey: &ack.survey,
        signature_mark_digest: canonical::digest_of(&ack.signature)?.to_hex(),
    };
    canonical::canonicalize(&statement)
}

/// Signs a customer acknowledgement on the device over the job as it is now (`job`, read at
/// `heads`). The returned value is what the device writes into the job.
pub fn sign_acknowledgement(
    job: &Job,
    heads: impl IntoIterator<Item = String>,
    draft: AckDraft,
    device_id: DeviceId,
    device_key: &KeyPair,
) -> Result<Acknowledgement, ReportError> {
    let mut ack = Acknowledgement {
        signer_name: draft.signer_name,
        signature: draft.signature,
        signed_at: draft.signed_at,
        survey: draft.survey,
        device_id,
        job_digest: acknowledged_digest(job)?.to_hex(),
        heads: normalise_heads(heads),
        device_signature: String::new(),
    };
    let bytes = ack_statement_bytes(&job.job_id, &job.branch_id, &ack)?;
    ack.device_signature = hex::encode(device_key.sign(&bytes).to_bytes());
    Ok(ack)
}

/// Whether a job's acknowledgement still matches the job's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckMatch {
    Matches,
    NoAcknowledgement,
    /// The acknowledged content changed after the customer signed.
    ContentChanged {
        signed: String,
        current: String,
    },
}

/// Compares the acknowledgement in `job` with the job's current acknowledged content.
pub fn acknowledgement_matches(job: &Job) -> Result<AckMatch, ReportError> {
    let Some(ack) = &job.acknowledgement else {
        return Ok(AckMatch::NoAcknowledgement);
    };
    let current = acknowledged_digest(job)?.to_hex();
    Ok(if current == ack.job_digest {
        AckMatch::Matches
    } else {
        AckMatch::ContentChanged {
            signed: ack.job_digest.clone(),
            current,
        }
    })
}

/// Checks an acknowledgement's device signature (not whether the device is trusted: that is
/// the trust store's question).
pub fn verify_acknowledgement_signature(
    job_id: &DocumentId,
    branch_id: &BranchId,
    ack: &Acknowledgement,
    device_key: &PublicKey,
) -> Result<(), VerifyError> {
    let bad = || VerifyError::BadDeviceSignature {
        device_id: ack.device_id.clone(),
    };
    let signature = signature_from_hex(&ack.device_signature).ok_or_else(bad)?;
    let bytes = ack_statement_bytes(job_id, branch_id, ack)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if device_key.verify(&bytes, &signature) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The signed part of a service report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBody {
    pub format: String,
    /// Derived from the job and the content digest, so the same content signed twice is one
    /// report.
    pub report_id: String,
    pub job_id: DocumentId,
    pub branch_id: BranchId,
    /// The job document's heads the content was read at.
    pub heads: Vec<String>,
    /// [`report_content`] of the job at `heads`.
    pub content: Value,
    /// Hex SHA-256 of the canonical `content`.
    pub content_digest: String,
    pub acknowledgement: Acknowledgement,
    pub signed_at: Timestamp,
    /// The branch key that signed.
    pub key_id: KeyId,
    /// The report this one replaces (the job was reopened and completed again).
    pub supersedes: Option<String>,
}

/// A service report signed by a branch key: what travels to head office and what `fieldsync
/// verify` checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReport {
    pub body: ReportBody,
    /// Hex ed25519 signature by the branch key over the canonical body.
    pub signature: String,
}

/// The id of the report of `content_digest` for job `job_id`.
pub fn report_id(job_id: &DocumentId, content_digest: &str) -> String {
    let d = Digest::of(format!("{REPORT_FORMAT}\n{job_id}\n{content_digest}").as_bytes());
    d.to_hex()[..32].to_owned()
}

impl SignedReport {
    /// Signs the report of `job` read at `heads` with the branch key. The job must carry an
    /// acknowledgement; whether it is valid and complete is checked before (rules and
    /// [`TrustStore::check_acknowledgement`]).
    pub fn sign(
        job: &Job,
        heads: impl IntoIterator<Item = String>,
        signed_at: Timestamp,
        supersedes: Option<String>,
        branch_key: &KeyPair,
    ) -> Result<Self, ReportError> {
        Self::sign_exported(job, heads, signed_at, supersedes, branch_key).map(|(r, _)| r)
    }

    /// [`SignedReport::sign`], with the report's canonical JSON (what
    /// [`SignedReport::to_canonical_json`] gives) made from the body's canonical bytes the
    /// signature was computed over, rather than by canonicalising the whole report again
    /// (issue 17: the edge signer stores and sends exactly these bytes).
    pub fn sign_exported(
        job: &Job,
        heads: impl IntoIterator<Item = String>,
        signed_at: Timestamp,
        supersedes: Option<String>,
        branch_key: &KeyPair,
    ) -> Result<(Self, Vec<u8>), ReportError> {
        let acknowledgement = job
            .acknowledgement
            .clone()
            .ok_or(ReportError::NoAcknowledgement)?;
        let content = report_content(job)?;
        let content_digest = Digest::of(&canonical::to_canonical_bytes(&content)?).to_hex();
        let body = ReportBody {
            format: REPORT_FORMAT.into(),
            report_id: report_id(&job.job_id, &content_digest),
            job_id: job.job_id,
            branch_id: job.branch_id.clone(),
            heads: normalise_heads(heads),
            content,
            content_digest,
            acknowledgement,
            signed_at,
            key_id: branch_key.id().clone(),
            supersedes,
        };
        let bytes = canonical::canonicalize(&body)?;
        let signature = hex::encode(branch_key.sign(&bytes).to_bytes());
        // JCS of `{"body", "signature"}`: the members in that order (sorted), the body as
        // signed, the signature a hex string (nothing to escape).
        let mut json = Vec::with_capacity(bytes.len() + signature.len() + 24);
        json.extend_from_slice(b"{\"body\":");
        json.extend_from_slice(&bytes);
        json.extend_from_slice(b",\"signature\":\"");
        json.extend_from_slice(signature.as_bytes());
        json.extend_from_slice(b"\"}");
        Ok((Self { body, signature }, json))
    }

    /// The report as canonical JSON bytes (the export format).
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, ReportError> {
        Ok(canonical::canonicalize(self)?)
    }

    /// The job as reported: content with the acknowledgement put back.
    pub fn job(&self) -> Result<Job, VerifyError> {
        let mut job = Job::deserialize(&self.body.content)
            .map_err(|e| VerifyError::Malformed(format!("content is not a job: {e}")))?;
        job.acknowledgement = Some(self.body.acknowledgement.clone());
        Ok(job)
    }
}

/// Exactly what failed when a report or acknowledgement does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed report: {0}")]
    Malformed(String),
    #[error("report is signed by unknown key {key_id}")]
    UnknownKey { key_id: KeyId },
    #[error("key {key_id} belongs to branch {key_branch}, not to the report's branch {branch_id}")]
    KeyNotForBranch {
        key_id: KeyId,
        key_branch: BranchId,
        branch_id: BranchId,
    },
    #[error(
        "the branch signature does not verify: the report was altered or signed by another key"
    )]
    BadBranchSignature,
    #[error("content digest mismatch: the report says {claimed}, the content hashes to {computed}")]
    DigestMismatch { claimed: String, computed: String },
    #[error("heads mismatch: the report says {claimed:?}, the document gives {actual:?}")]
    HeadsMismatch {
        claimed: Vec<String>,
        actual: Vec<String>,
    },
    #[error("the acknowledgement was signed by unknown device {device_id}")]
    UnknownDevice { device_id: DeviceId },
    #[error("device {device_id} is enrolled at branch {device_branch}, not {branch_id}")]
    DeviceNotForBranch {
        device_id: DeviceId,
        device_branch: BranchId,
        branch_id: BranchId,
    },
    #[error("device {device_id} was revoked at {revoked_at}")]
    RevokedDevice {
        device_id: DeviceId,
        revoked_at: Timestamp,
    },
    #[error("the device signature of {device_id} does not verify: the acknowledgement was altered")]
    BadDeviceSignature { device_id: DeviceId },
    #[error(
        "the acknowledgement does not match the job: signed over {signed}, the content is now {current}"
    )]
    AcknowledgementMismatch { signed: String, current: String },
}

impl VerifyError {
    /// A stable machine-readable code for each failure.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "malformed_report",
            VerifyError::UnknownKey { .. } => "unknown_key",
            VerifyError::KeyNotForBranch { .. } => "key_not_for_branch",
            VerifyError::BadBranchSignature => "bad_branch_signature",
            VerifyError::DigestMismatch { .. } => "digest_mismatch",
            VerifyError::HeadsMismatch { .. } => "heads_mismatch",
            VerifyError::UnknownDevice { .. } => "unknown_device",
            VerifyError::DeviceNotForBranch { .. } => "device_not_for_branch",
            VerifyError::RevokedDevice { .. } => "revoked_device",
            VerifyError::BadDeviceSignature { .. } => "bad_device_signature",
            VerifyError::AcknowledgementMismatch { .. } => "acknowledgement_mismatch",
        }
    }
}

/// An enrolled device key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub branch_id: BranchId,
    pub technician: TechnicianId,
    pub public_key: String,
    pub revoked_at: Option<Timestamp>,
}

/// The public keys a verifier trusts: branch keys by key id, device keys by device id.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    branches: HashMap<KeyId, (BranchId, PublicKey)>,
    devices: HashMap<DeviceId, (DeviceRecord, PublicKey)>,
}

/// A received body's canonical bytes and where its content lies in them.
type CanonicalBody = (Vec<u8>, Option<std::ops::Range<usize>>);

/// The body's canonical form also holds the content's (JCS is compositional): one
/// canonicalisation serves the signature and the digest.
fn canonical_body(body: &Value) -> Result<CanonicalBody, CanonicalError> {
    canonical::to_canonical_bytes_marking(body, "content")
}

/// A report that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedReport {
    pub report: SignedReport,
    pub job: Job,
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_branch_key(&mut self, branch_id: BranchId, key: PublicKey) {
        self.branches.insert(key.id().clone(), (branch_id, key));
    }

    /// Adds (or replaces) an enrolled device.
    pub fn add_device(&mut self, record: DeviceRecord) -> Result<(), crate::keys::KeyError> {
        let key = PublicKey::from_hex(&record.public_key)?;
        self.devices.insert(record.device_id.clone(), (record, key));
        Ok(())
    }

    /// Marks a device revoked from `at` on. Returns false for an unknown device.
    pub fn revoke_device(&mut self, device_id: &DeviceId, at: Timestamp) -> bool {
        match self.devices.get_mut(device_id) {
            Some((record, _)) => {
                record.revoked_at = Some(record.revoked_at.map_or(at, |r| r.min(at)));
                true
            }
            None => false,
        }
    }

    pub fn device(&self, device_id: &DeviceId) -> Option<&DeviceRecord> {
        self.devices.get(device_id).map(|(r, _)| r)
    }

    /// Checks that the acknowledgement in `job` was signed by an enrolled device of the job's
    /// branch that is not revoked as of `now`, that its signature verifies, and that it still
    /// matches the job's content. This is the edge server's R8 check before signing.
    pub fn check_acknowledgement(&self, job: &Job, now: Timestamp) -> Result<(), VerifyError> {
        let ack = job
            .acknowledgement
            .as_ref()
            .ok_or_else(|| VerifyError::Malformed("the job has no acknowledgement".into()))?;
        let (record, key) =
            self.devices
                .get(&ack.device_id)
                .ok_or_else(|| VerifyError::UnknownDevice {
                    device_id: ack.device_id.clone(),
                })?;
        if record.branch_id != job.branch_id {
            return Err(VerifyError::DeviceNotForBranch {
                device_id: ack.device_id.clone(),
                device_branch: record.branch_id.clone(),
                branch_id: job.branch_id.clone(),
            });
        }
        if let Some(revoked_at) = record.revoked_at.filter(|r| *r <= now) {
            return Err(VerifyError::RevokedDevice {
                device_id: ack.device_id.clone(),
                revoked_at,
            });
        }
        verify_acknowledgement_signature(&job.job_id, &job.branch_id, ack, key)?;
        match acknowledgement_matches(job).map_err(|e| VerifyError::Malformed(e.to_string()))? {
            AckMatch::Matches => Ok(()),
            AckMatch::NoAcknowledgement => Err(VerifyError::Malformed(
                "the job has no acknowledgement".into(),
            )),
            AckMatch::ContentChanged { signed, current } => {
                Err(VerifyError::AcknowledgementMismatch { signed, current })
            }
        }
    }

    /// Verifies an exported report from its JSON bytes. The branch signature is checked over
    /// the canonical form of the body exactly as received, so any change to the file (even a
    /// field this code does not know) fails it.
    pub fn verify_json(&self, bytes: &[u8]) -> Result<VerifiedReport, VerifyError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| VerifyError::Malformed(format!("not JSON: {e}")))?;
        self.verify_owned(value)
    }

    /// Verifies a report.
    pub fn verify(&self, report: &SignedReport) -> Result<VerifiedReport, VerifyError> {
        let value =
            serde_json::to_value(report).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        self.verify_value(&value)
    }

    /// Verifies a report already parsed from its JSON (what [`TrustStore::verify_json`] does
    /// once the bytes are parsed).
    pub fn verify_value(&self, value: &Value) -> Result<VerifiedReport, VerifyError> {
        // Read from the value in place (issue 17: not a copy of the whole tree first).
        let report =
            SignedReport::deserialize(value).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        self.verify_read(report, || value.get("body").map(canonical_body))
    }

    /// [`TrustStore::verify_value`] of a report parsed from its JSON and no longer needed as
    /// such: the signed report is moved out of the tree rather than copied from it (issue 17:
    /// the content's copy was a good part of an archive audit's allocations). The same checks
    /// in the same order, with the same answers.
    pub fn verify_owned(&self, value: Value) -> Result<VerifiedReport, VerifyError> {
        // The body's canonical form is taken before the tree is taken apart; a failure to
        // make it is answered where `verify_value` answers it, after the key checks.
        let canonical = value.get("body").map(canonical_body);
        // The content, the bulk of the report, is taken out whole and put back once the rest
        // is read: read through serde, its tree would be rebuilt member by member. Any JSON
        // is a content (`Value`), so reading `null` in its place fails exactly where the
        // content would have failed: nowhere.
        let mut value = value;
        let content = value
            .get_mut("body")
            .and_then(Value::as_object_mut)
            .and_then(|body| body.get_mut("content"))
            .map(Value::take);
        let mut report =
            SignedReport::deserialize(value).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if let Some(content) = content {
            report.body.content = content;
        }
        self.verify_read(report, || canonical)
    }

    /// The checks of [`TrustStore::verify_value`] once the report is read; `canonical` gives
    /// the received body's canonical bytes and where its content lies in them.
    fn verify_read(
        &self,
        report: SignedReport,
        canonical: impl FnOnce() -> Option<Result<CanonicalBody, CanonicalError>>,
    ) -> Result<VerifiedReport, VerifyError> {
        let body = &report.body;
        if body.format != REPORT_FORMAT {
            return Err(VerifyError::Malformed(format!(
                "format is {:?}, expected {REPORT_FORMAT:?}",
                body.format
            )));
        }

        // 1. The branch signature, over the body as received.
        let (key_branch, branch_key) =
            self.branches
                .get(&body.key_id)
                .ok_or_else(|| VerifyError::UnknownKey {
                    key_id: body.key_id.clone(),
                })?;
        if *key_branch != body.branch_id {
            return Err(VerifyError::KeyNotForBranch {
                key_id: body.key_id.clone(),
                key_branch: key_branch.clone(),
                branch_id: body.branch_id.clone(),
            });
        }
        let (body_bytes, content_at) = canonical()
            .ok_or_else(|| VerifyError::Malformed("no body".into()))?
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let signature =
            signature_from_hex(&report.signature).ok_or(VerifyError::BadBranchSignature)?;
        if !branch_key.verify(&body_bytes, &signature) {
            return Err(VerifyError::BadBranchSignature);
        }

        // 2. The content against its digest, and the report id against both.
        let content_bytes = content_at
            .and_then(|at| body_bytes.get(at))
            .ok_or_else(|| VerifyError::Malformed("the body has no content".into()))?;
        let computed = Digest::of(content_bytes).to_hex();
        if computed != body.content_digest {
            return Err(VerifyError::DigestMismatch {
                claimed: body.content_digest.clone(),
                computed,
            });
        }
        if body.report_id != report_id(&body.job_id, &body.content_digest) {
            return Err(VerifyError::Malformed(
                "report_id does not derive from the job and the content digest".into(),
            ));
        }
        let job = report.job()?;
        if job.job_id != body.job_id || job.branch_id != body.branch_id {
            return Err(VerifyError::Malformed(
                "the content's job or branch id differs from the report's".into(),
            ));
        }

        // 3. The device's acknowledgement, as the branch held it when it signed.
        self.check_acknowledgement(&job, body.signed_at)?;
        Ok(VerifiedReport { report, job })
    }

    /// Checks a verified report against the job document itself, read at the report's heads
    /// (head office holds the document): the content must be exactly what the document says.
    pub fn verify_against_document(
        report: &SignedReport,
        job_at_heads: &Job,
        document_heads: Vec<String>,
    ) -> Result<(), VerifyError> {
        let actual = normalise_heads(document_heads);
        if actual != report.body.heads {
            return Err(VerifyError::HeadsMismatch {
                claimed: report.body.heads.clone(),
                actual,
            });
        }
        let content =
            report_content(job_at_heads).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let computed = Digest::of(
            &canonical::to_canonical_bytes(&content)
                .map_err(|e| VerifyError::Malformed(e.to_string()))?,
        )
        .to_hex();
        if computed != report.body.content_digest {
            return Err(VerifyError::DigestMismatch {
                claimed: report.body.content_digest.clone(),
                computed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::sample_job;

    const HEADS: [&str; 2] = ["bb", "aa"];

    struct World {
        branch: KeyPair,
        device: KeyPair,
        trust: TrustStore,
        job: Job,
    }

    fn world() -> World {
        let branch = KeyPair::from_seed(&[1; 32]);
        let device = KeyPair::from_seed(&[2; 32]);
        let mut job = sample_job();
        let draft = AckDraft {
            signer_name: "Chen Li".into(),
            signature: SignatureMark::Strokes {
                strokes: vec![vec![[1, 2], [3, 4]]],
            },
            signed_at: Timestamp::from_millis(1_790_059_000_000),
            survey: job.acknowledgement.as_ref().expect("sample").survey.clone(),
        };
        let device_id = DeviceId::new("dev-1").expect("valid");
        job.acknowledgement = Some(
            sign_acknowledgement(
                &job,
                HEADS.map(String::from),
                draft,
                device_id.clone(),
                &device,
            )
            .expect("sign"),
        );
        let mut trust = TrustStore::new();
        trust.add_branch_key(job.branch_id.clone(), branch.public().clone());
        trust
            .add_device(DeviceRecord {
                device_id,
                branch_id: job.branch_id.clone(),
                technician: TechnicianId::new("tech-wang").expect("valid"),
                public_key: device.public().to_hex(),
                revoked_at: None,
            })
            .expect("valid key");
        World {
            branch,
            device,
            trust,
            job,
        }
    }

    fn signed(w: &World) -> SignedReport {
        SignedReport::sign(
            &w.job,
            HEADS.map(String::from),
            Timestamp::from_millis(1_790_070_000_000),
            None,
            &w.branch,
        )
        .expect("sign")
    }

    /// Re-signs a body with the real branch key: what a faulty or malicious branch would do.
    fn resign(mut report: SignedReport, key: &KeyPair) -> SignedReport {
        let bytes = canonical::canonicalize(&report.body).expect("canonical");
        report.signature = hex::encode(key.sign(&bytes).to_bytes());
        report
    }

    fn err(w: &World, report: &SignedReport) -> VerifyError {
        w.trust.verify(report).expect_err("must not verify")
    }

    #[test]
    fn a_signed_report_verifies_from_its_exported_json() {
        let w = world();
        let report = signed(&w);
        let json = report.to_canonical_json().expect("json");
        let verified = w.trust.verify_json(&json).expect("verifies");
        assert_eq!(verified.job, w.job);
        assert_eq!(report.body.heads, vec!["aa".to_owned(), "bb".to_owned()]);
    }

    #[test]
    fn the_export_made_while_signing_is_the_reports_canonical_json() {
        // Issue 17: the signer stores the bytes `sign_exported` makes from the signed body.
        let w = world();
        let (report, json) = SignedReport::sign_exported(
            &w.job,
            HEADS.map(String::from),
            Timestamp::from_millis(1_790_070_000_000),
            Some("a".repeat(32)),
            &w.branch,
        )
        .expect("sign");
        assert_eq!(json, report.to_canonical_json().expect("json"));
        w.trust.verify_json(&json).expect("verifies");
    }

    #[test]
    fn the_report_content_is_the_job_without_its_three_later_members() {
        // Issue 17: made without copying the job; the same value as the copy with them unset.
        let mut job = world().job;
        job.completion = Some(crate::job::Completion {
            at: Timestamp::from_millis(5),
            by: TechnicianId::new("tech-wang").expect("valid"),
        });
        job.report = Some(crate::job::ReportOutcome::Refused {
            at: Timestamp::from_millis(6),
            reasons: Vec::new(),
        });
        let mut copy = job.clone();
        copy.acknowledgement = None;
        copy.completion = None;
        copy.report = None;
        assert_eq!(
            report_content(&job).expect("content"),
            serde_json::to_value(&copy).expect("value")
        );
    }

    #[test]
    fn the_acknowledged_digest_is_that_of_the_acknowledged_content() {
        // Issue 17: the digest is hashed from the job's members borrowed; it must be the
        // digest of `acknowledged_content` (REPORT-FORMAT.md §4) for every member set or
        // not, blanked or kept, and receipts and expense claims present or not.
        let digest_of_content = |job: &Job| {
            Digest::of(
                &canonical::to_canonical_bytes(&acknowledged_content(job).expect("content"))
                    .expect("canonical"),
            )
        };
        let bare = world().job;
        let mut full = bare.clone();
        let by = TechnicianId::new("tech-wang").expect("valid");
        full.completion = Some(crate::job::Completion {
            at: Timestamp::from_millis(5),
            by: by.clone(),
        });
        full.report = Some(crate::job::ReportOutcome::Refused {
            at: Timestamp::from_millis(6),
            reasons: Vec::new(),
        });
        full.timeline.push(crate::job::TimelineEvent {
            at: Timestamp::from_millis(7),
            actor: "tech-wang".into(),
            kind: "note".into(),
            text: "arrived".into(),
        });
        full.notes = "left a card".into();
        full.visit.check_out = Some(crate::job::CheckOut {
            at: Timestamp::from_millis(8),
            by: by.clone(),
            note: "done".into(),
        });
        full.visit.training = Some(crate::job::Training {
            at: Timestamp::from_millis(9),
            by: by.clone(),
            trainees: vec!["Ms Chen".into()],
            topics: "alarms".into(),
        });
        let attachment = |digest: char, kind| crate::job::attachments::AttachmentRef {
            digest: digest.to_string().repeat(64),
            kind,
            media_type: "image/jpeg".into(),
            size: 10,
            name: "p.jpg".into(),
            at: Timestamp::from_millis(10),
            by: by.clone(),
        };
        use crate::job::attachments::AttachmentKind;
        full.attachments = vec![
            attachment('a', AttachmentKind::Receipt),
            attachment('b', AttachmentKind::Before),
            attachment('c', AttachmentKind::Receipt),
            attachment('d', AttachmentKind::Signature),
        ];
        full.expenses = vec![
            serde_json::from_value(serde_json::json!({
                "id": "x1", "date": "2026-03-01", "from": "depot", "to": "site",
                "category": "taxi", "amount": 4200, "reason": "no bus",
                "receipt": "a".repeat(64), "by": "tech-wang", "claimed_at": 11,
                "approved_by": "desk:manager", "approved_at": 12
            }))
            .expect("expense"),
        ];
        let mut only_receipts = full.clone();
        only_receipts
            .attachments
            .retain(|a| a.kind == AttachmentKind::Receipt);
        let mut no_acknowledgement = full.clone();
        no_acknowledgement.acknowledgement = None;
        for job in [&bare, &full, &only_receipts, &no_acknowledgement] {
            assert_eq!(
                acknowledged_digest(job).expect("digest"),
                digest_of_content(job)
            );
        }
        // And it moves with what is acknowledged, not with what is not.
        let mut after = full.clone();
        after
            .attachments
            .retain(|a| a.kind != AttachmentKind::Receipt);
        after.expenses.clear();
        after.notes = "changed after".into();
        after.timeline.clear();
        after.visit.check_out = None;
        assert_eq!(
            acknowledged_digest(&full).expect("digest"),
            acknowledged_digest(&after).expect("digest")
        );
        assert_ne!(
            acknowledged_digest(&full).expect("digest"),
            acknowledged_digest(&bare).expect("digest")
        );
    }

    #[test]
    fn the_same_content_signed_twice_has_the_same_report_id() {
        let w = world();
        let a = signed(&w);
        let b = SignedReport::sign(
            &w.job,
            HEADS.map(String::from),
            Timestamp::from_millis(1),
            None,
            &w.branch,
        )
        .expect("sign");
        assert_eq!(a.body.report_id, b.body.report_id);
    }

    #[test]
    fn tampering_with_any_body_field_breaks_the_branch_signature() {
        let w = world();
        let report = signed(&w);
        let mut tampered: Vec<SignedReport> = Vec::new();
        let mut t = |f: &dyn Fn(&mut ReportBody)| {
            let mut r = report.clone();
            f(&mut r.body);
            tampered.push(r);
        };
        t(&|b| b.content["parts"][0]["quantity"] = 3.into());
        t(&|b| b.content["diagnosis"]["solution"] = "nothing".into());
        t(&|b| b.heads.push("cc".into()));
        t(&|b| b.signed_at = b.signed_at.plus_millis(1));
        t(&|b| b.supersedes = Some("x".into()));
        t(&|b| b.acknowledgement.signer_name = "Someone else".into());
        t(&|b| b.acknowledgement.survey.attitude = Some(1));
        t(&|b| b.content_digest = "00".repeat(32));
        for r in &tampered {
            assert_eq!(err(&w, r), VerifyError::BadBranchSignature);
        }
        let mut r = report.clone();
        r.signature = "00".repeat(64);
        assert_eq!(err(&w, &r), VerifyError::BadBranchSignature);
    }

    #[test]
    fn an_unknown_field_added_to_the_exported_json_breaks_the_signature() {
        let w = world();
        let mut value = serde_json::to_value(signed(&w)).expect("value");
        value["body"]["content"]["extra"] = "smuggled".into();
        let bytes = serde_json::to_vec(&value).expect("bytes");
        assert_eq!(
            w.trust.verify_json(&bytes).expect_err("tampered"),
            VerifyError::BadBranchSignature
        );
        assert!(matches!(
            w.trust.verify_json(b"{not json"),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn a_report_verified_from_its_owned_tree_answers_as_from_a_borrowed_one() {
        // Issue 17: `verify_owned` moves the report out of the parsed JSON; every answer,
        // and the order the checks are made in, is `verify_value`'s.
        let w = world();
        let genuine = serde_json::to_value(signed(&w)).expect("value");
        let stranger = KeyPair::from_seed(&[42; 32]);
        let mut cases = vec![genuine.clone()];
        let mut t = |f: &dyn Fn(&mut Value)| {
            let mut v = genuine.clone();
            f(&mut v);
            cases.push(v);
        };
        t(&|v| v["body"]["content"]["labour"]["minutes"] = 600.into());
        t(&|v| v["signature"] = "00".repeat(64).into());
        t(&|v| v["signature"] = "zz".into());
        t(&|v| v["body"]["format"] = "fieldsync/report/v0".into());
        t(&|v| v["body"]["key_id"] = stranger.id().as_str().into());
        // A number no canonical form holds, with the key unknown or known: the key's answer
        // comes first, then the canonical form's.
        t(&|v| {
            v["body"]["content"]["labour"]["minutes"] = u64::MAX.into();
            v["body"]["key_id"] = stranger.id().as_str().into();
        });
        t(&|v| v["body"]["content"]["labour"]["minutes"] = u64::MAX.into());
        t(&|v| v["body"]["content"]["extra"] = "smuggled".into());
        t(&|v| v["body"]["content"] = "not a job".into());
        t(&|v| v["body"] = Value::Null);
        t(&|v| {
            v.as_object_mut().expect("object").remove("body");
        });
        t(&|v| *v = Value::Array(Vec::new()));
        let mut answers = Vec::new();
        for case in cases {
            let borrowed = w.trust.verify_value(&case);
            assert_eq!(w.trust.verify_owned(case), borrowed);
            answers.push(borrowed.map(|_| ()).map_err(|e| e.code()));
        }
        assert_eq!(
            answers,
            vec![
                Ok(()),
                Err("bad_branch_signature"),
                Err("bad_branch_signature"),
                Err("bad_branch_signature"),
                Err("malformed_report"),
                Err("unknown_key"),
                Err("unknown_key"),
                Err("malformed_report"),
                Err("bad_branch_signature"),
                Err("bad_branch_signature"),
                Err("malformed_report"),
                Err("malformed_report"),
                Err("malformed_report"),
            ]
        );
    }

    #[test]
    fn content_altered_and_resigned_by_the_branch_is_a_digest_mismatch() {
        let w = world();
        let mut report = signed(&w);
        report.body.content["labour"]["minutes"] = 600.into();
        let report = resign(report, &w.branch);
        assert!(matches!(
            err(&w, &report),
            VerifyError::DigestMismatch { .. }
        ));
    }

    #[test]
    fn acknowledgement_altered_and_resigned_by_the_branch_is_a_bad_device_signature() {
        let w = world();
        let mut report = signed(&w);
        report.body.acknowledgement.survey.skill = Some(1);
        let report = resign(report, &w.branch);
        assert_eq!(
            err(&w, &report),
            VerifyError::BadDeviceSignature {
                device_id: DeviceId::new("dev-1").expect("valid")
            }
        );
    }

    #[test]
    fn acknowledgement_over_other_content_is_a_mismatch() {
        let mut w = world();
        // A part is added after the customer signed: the acknowledgement no longer matches.
        w.job.parts[0].quantity += 1;
        assert!(matches!(
            acknowledgement_matches(&w.job).expect("digest"),
            AckMatch::ContentChanged { .. }
        ));
        let report = signed(&w);
        assert!(matches!(
            err(&w, &report),
            VerifyError::AcknowledgementMismatch { .. }
        ));
    }

    #[test]
    fn fields_recorded_after_signing_do_not_break_the_acknowledgement() {
        let mut w = world();
        w.job.notes = "left a card".into();
        w.job.visit.check_out = None;
        assert_eq!(
            acknowledgement_matches(&w.job).expect("digest"),
            AckMatch::Matches
        );
        w.trust.verify(&signed(&w)).expect("still verifies");
    }

    #[test]
    fn r16_training_is_acknowledged_by_the_customer_and_carried_in_the_report() {
        let mut w = world();
        // A job without training has no `training` key in what is hashed: digests and report
        // ids of jobs from before R16's record existed are unchanged.
        let content = report_content(&w.job).expect("content");
        assert!(content["visit"].get("training").is_none());
        assert!(
            acknowledged_content(&w.job).expect("content")["visit"]
                .get("training")
                .is_none()
        );

        // Recorded after the customer signed, the training voids the acknowledgement.
        w.job.kind = crate::job::JobKind::Installation;
        let ack = w.job.acknowledgement.take().expect("signed");
        w.job.visit.training = Some(crate::job::Training {
            at: Timestamp::from_millis(1_790_058_000_000),
            by: TechnicianId::new("tech-wang").expect("valid"),
            trainees: vec!["Ms Chen (shift lead)".into()],
            topics: "start-up and alarms".into(),
        });
        let draft = AckDraft {
            signer_name: ack.signer_name.clone(),
            signature: ack.signature.clone(),
            signed_at: ack.signed_at,
            survey: ack.survey.clone(),
        };
        w.job.acknowledgement = Some(ack);
        assert!(matches!(
            acknowledgement_matches(&w.job).expect("digest"),
            AckMatch::ContentChanged { .. }
        ));

        // Signed again over the job with its training, the report verifies and carries it.
        w.job.acknowledgement = Some(
            sign_acknowledgement(
                &w.job,
                HEADS.map(String::from),
                draft,
                DeviceId::new("dev-1").expect("valid"),
                &w.device,
            )
            .expect("sign"),
        );
        let report = signed(&w);
        let verified = w
            .trust
            .verify_json(&report.to_canonical_json().expect("json"))
            .expect("verifies");
        assert_eq!(verified.job.visit.training, w.job.visit.training);
        assert_eq!(
            report.body.content["visit"]["training"]["trainees"],
            serde_json::json!(["Ms Chen (shift lead)"])
        );
    }

    #[test]
    fn a_report_signed_by_an_unknown_key_fails() {
        let w = world();
        let stranger = KeyPair::from_seed(&[42; 32]);
        let report = SignedReport::sign(
            &w.job,
            HEADS.map(String::from),
            Timestamp::from_millis(5),
            None,
            &stranger,
        )
        .expect("sign");
        assert_eq!(
            err(&w, &report),
            VerifyError::UnknownKey {
                key_id: stranger.id().clone()
            }
        );
    }

    #[test]
    fn another_branchs_key_cannot_sign_for_this_branch() {
        let mut w = world();
        let other = KeyPair::from_seed(&[43; 32]);
        w.trust.add_branch_key(
            BranchId::new("south-02").expect("valid"),
            other.public().clone(),
        );
        let report = SignedReport::sign(
            &w.job,
            HEADS.map(String::from),
            Timestamp::from_millis(5),
            None,
            &other,
        )
        .expect("sign");
        assert!(matches!(
            err(&w, &report),
            VerifyError::KeyNotForBranch { .. }
        ));
    }

    #[test]
    fn a_revoked_device_fails_from_its_revocation_on() {
        let mut w = world();
        let report = signed(&w);
        let device_id = DeviceId::new("dev-1").expect("valid");
        // Revoked after the branch signed: the report stays valid.
        w.trust
            .revoke_device(&device_id, report.body.signed_at.plus_millis(1));
        w.trust.verify(&report).expect("signed before revocation");
        // Revoked before: it fails.
        w.trust
            .revoke_device(&device_id, report.body.signed_at.plus_millis(-1));
        assert!(matches!(
            err(&w, &report),
            VerifyError::RevokedDevice { .. }
        ));
    }

    #[test]
    fn an_unknown_device_fails() {
        let w = world();
        let mut trust = TrustStore::new();
        trust.add_branch_key(w.job.branch_id.clone(), w.branch.public().clone());
        assert!(matches!(
            trust.verify(&signed(&w)),
            Err(VerifyError::UnknownDevice { .. })
        ));
        let _ = &w.device;
    }

    #[test]
    fn a_document_that_disagrees_with_the_report_is_caught() {
        let w = world();
        let report = signed(&w);
        let heads: Vec<String> = HEADS.map(String::from).to_vec();
        TrustStore::verify_against_document(&report, &w.job, heads.clone()).expect("same");
        let mut other = w.job.clone();
        other.diagnosis.fault_cause = Some("Something else".into());
        assert!(matches!(
            TrustStore::verify_against_document(&report, &other, heads),
            Err(VerifyError::DigestMismatch { .. })
        ));
        assert!(matches!(
            TrustStore::verify_against_document(&report, &w.job, vec!["dd".into()]),
            Err(VerifyError::HeadsMismatch { .. })
        ));
    }
}

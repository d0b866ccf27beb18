//! Head office (issue 5; DESIGN.md, "Trust chain" 4): receives each branch's report documents
//! and the jobs they report on, verifies every report without trusting anything in between,
//! archives the valid ones with indexes by month, customer and product type (R25), keeps the
//! rest aside with the reason, and computes the monthly statistics (R24, R27) from the archive.
//!
//! Verification of a report document, in order (the first failure is the reason kept):
//! 1. it came from the branch the report names (the branch that sent the document first owns
//!    it: `registry::Registry::adopt`);
//! 2. the device attestation is signed by that branch's enrolled key;
//! 3. the report itself (`TrustStore::verify_json`): branch signature, content digest, report
//!    id, the device's acknowledgement signature, and the device not revoked when signed;
//! 4. the job document, read at the report's heads, is exactly the reported content
//!    (`TrustStore::verify_against_document`). Until the job document holds those heads the
//!    report waits (status `pending`), and is looked at again whenever the job changes.
//!
//! Storage ([`HeadOfficeStore`], SQLite or PostgreSQL): one row per verified report, unique on
//! the report id (a report delivered twice, or to two head-office processes, is archived
//! once), with month, customer, product type, branch and serial columns (R25's lists, R24's
//! month, R4's look-back); report documents kept aside or waiting, each with its
//! [`Rejection`].

use std::sync::Arc;

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_shared::ids::{BranchId, DocumentId};
use fieldsync_shared::job::doc::read_job_at;
use fieldsync_shared::job::{Acknowledgement, BillingMode, Job, JobKind};
use fieldsync_shared::keys::{KeyId, PublicKey};
use fieldsync_shared::report::{SignedReport, TrustStore, VerifyError};
use fieldsync_shared::report_doc::{
    DeviceAttestation, ReportDoc, Verdict, VerdictStatus, report_doc_id,
};
use fieldsync_shared::stats::{
    FactCharges, MonthlyStats, ReportFacts, ReportedJob, StatsError, monthly_from_facts,
};
use fieldsync_shared::time::{Money, Month, Timestamp};
use fieldsync_shared::zone::Zone;
use fieldsync_storage::{AsideRow, AsideStatus, ReportQuery, ReportRow, StatsColumns, StatsRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::head_office::HeadOffice;
use crate::head_office::store::{HeadOfficeStore, StoreError};
use crate::sync::registry::Registry;

/// A verified report as archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedReport {
    pub report_id: String,
    pub report_doc: DocumentId,
    pub branch_id: BranchId,
    pub job_id: DocumentId,
    pub month: Month,
    pub customer_id: String,
    pub product_type: String,
    pub signed_at: Timestamp,
    pub verified_at: Timestamp,
    /// The report exactly as received (its canonical JSON, parsed).
    pub report: Value,
}

/// Why a report document is not (yet) archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub report_doc: DocumentId,
    pub report_id: Option<String>,
    /// The job the report is about, when it could be read.
    pub job_id: Option<DocumentId>,
    /// The branch that sent the document.
    pub from_branch: Option<BranchId>,
    pub code: String,
    pub message: String,
    pub at: Timestamp,
}

impl ArchivedReport {
    /// The archive row: the entry's columns and the report's JSON.
    pub fn row(&self) -> ReportRow {
        let body = &self.report["body"];
        ReportRow {
            report_id: self.report_id.clone(),
            report_doc: self.report_doc.to_string(),
            branch_id: self.branch_id.to_string(),
            job_id: self.job_id.to_string(),
            month: self.month.to_string(),
            customer_id: self.customer_id.clone(),
            product_type: self.product_type.clone(),
            serial: body["content"]["product"]["serial"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            supersedes: body["supersedes"].as_str().map(str::to_owned),
            signed_at: self.signed_at.as_millis(),
            verified_at: self.verified_at.as_millis(),
            stats: stats_columns_of(
                &self.report_id,
                &self.branch_id,
                self.signed_at,
                &self.report.to_string(),
            ),
            report: self.report.to_string(),
        }
    }

    /// The entry an archive row stands for; `None` (logged) if a column does not read.
    fn from_row(row: ReportRow) -> Option<Self> {
        let read = || -> Result<Self, String> {
            Ok(Self {
                report_doc: row
                    .report_doc
                    .parse()
                    .map_err(|e| format!("report_doc: {e}"))?,
                branch_id: row
                    .branch_id
                    .parse()
                    .map_err(|e| format!("branch_id: {e:?}"))?,
                job_id: row.job_id.parse().map_err(|e| format!("job_id: {e}"))?,
                month: row.month.parse().map_err(|e| format!("month: {e}"))?,
                customer_id: row.customer_id.clone(),
                product_type: row.product_type.clone(),
                signed_at: Timestamp::from_millis(row.signed_at),
                verified_at: Timestamp::from_millis(row.verified_at),
                report: serde_json::from_str(&row.report).map_err(|e| format!("report: {e}"))?,
                report_id: row.report_id.clone(),
            })
        };
        read()
            .inspect_err(|e| {
                tracing::error!(report = row.report_id, error = e, "unreadable archive row")
            })
            .ok()
    }
}

impl Rejection {
    fn row(&self, status: AsideStatus) -> AsideRow {
        AsideRow {
            report_doc: self.report_doc.to_string(),
            status,
            report_id: self.report_id.clone(),
            at: self.at.as_millis(),
            body: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// Which rejected reports to verify again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryFilter {
    /// Every rejected report.
    All,
    /// The rejected reports a branch sent (after its key was enrolled or fixed).
    Branch(BranchId),
    /// One report, by report id.
    Report(String),
}

/// Takes the rejected reports `filter` names out of the rejected list and tells every
/// receiver on the archive (this process, a running server, every head-office process on a
/// shared database) to verify them again; answers their report ids. Works beside running
/// head offices: their receivers notice the retry generation change within a second; a
/// stopped one looks at them at its next start (they are neither archived nor kept aside).
pub async fn request_retry(
    store: &HeadOfficeStore,
    filter: &RetryFilter,
) -> Result<Vec<String>, StoreError> {
    let mut docs = Vec::new();
    let mut retried = Vec::new();
    for row in store.reports_aside(AsideStatus::Rejected).await? {
        let Ok(rejection) = serde_json::from_str::<Rejection>(&row.body) else {
            continue;
        };
        let chosen = match filter {
            RetryFilter::All => true,
            RetryFilter::Branch(branch) => rejection.from_branch.as_ref() == Some(branch),
            RetryFilter::Report(id) => rejection.report_id.as_deref() == Some(id.as_str()),
        };
        if chosen {
            retried.push(
                rejection
                    .report_id
                    .unwrap_or_else(|| row.report_doc.clone()),
            );
            docs.push(row.report_doc);
        }
    }
    if !docs.is_empty() {
        // Out of the rejected list and the generation moved on, in one transaction.
        store.retry_rejected(docs).await?;
    }
    Ok(retried)
}

/// Head office's verdicts on `report_ids` for the branch that asks, in the order asked:
/// another branch's report is `unknown` to it, as is one head office never received.
pub async fn verdicts_for(
    store: &HeadOfficeStore,
    branch: &BranchId,
    report_ids: &[String],
) -> Result<Vec<Verdict>, StoreError> {
    let archived: std::collections::HashMap<String, (String, i64)> = store
        .archived_briefs(report_ids.to_vec())
        .await?
        .into_iter()
        .map(|b| (b.report_id, (b.branch_id, b.verified_at)))
        .collect();
    // A report's own document (the id derives from the report id): what the branch sent.
    let docs: Vec<String> = report_ids
        .iter()
        .filter(|id| !archived.contains_key(id.as_str()))
        .filter_map(|id| report_doc_id(id).map(|d| d.to_string()))
        .collect();
    let aside: std::collections::HashMap<String, AsideRow> = store
        .reports_aside_by_doc(docs)
        .await?
        .into_iter()
        .map(|row| (row.report_doc.clone(), row))
        .collect();
    Ok(report_ids
        .iter()
        .map(|id| verdict(branch, id, archived.get(id), &aside))
        .collect())
}

fn verdict(
    branch: &BranchId,
    report_id: &str,
    archived: Option<&(String, i64)>,
    aside: &std::collections::HashMap<String, AsideRow>,
) -> Verdict {
    let unknown = Verdict {
        report_id: report_id.to_owned(),
        status: VerdictStatus::Unknown,
        code: None,
        message: None,
        at: None,
    };
    if let Some((owner, verified_at)) = archived {
        if owner != branch.as_str() {
            return unknown;
        }
        return Verdict {
            status: VerdictStatus::Verified,
            at: Some(*verified_at),
            ..unknown
        };
    }
    let Some(row) = report_doc_id(report_id).and_then(|doc| aside.get(&doc.to_string())) else {
        return unknown;
    };
    let Ok(r) = serde_json::from_str::<Rejection>(&row.body) else {
        return unknown;
    };
    if r.from_branch.as_ref() != Some(branch) {
        return unknown;
    }
    Verdict {
        status: match row.status {
            AsideStatus::Rejected => VerdictStatus::Rejected,
            AsideStatus::Pending => VerdictStatus::Pending,
        },
        code: Some(r.code),
        message: Some(r.message),
        at: Some(r.at.as_millis()),
        ..unknown
    }
}

/// A received document as stored; `None` if it is not there or cannot be read (logged).
pub(crate) async fn load(state: &Arc<HeadOffice>, doc: DocumentId) -> Option<Automerge> {
    match state.node.load_document(doc).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(%doc, error = %e, "cannot load a received document");
            None
        }
    }
}

/// The trust a report is checked against: the enrolled branch key it names, and the device
/// the report's branch attests to.
fn trust_for(
    state: &HeadOffice,
    doc: &ReportDoc,
    report: &SignedReport,
) -> Result<TrustStore, VerifyError> {
    trust_from(
        &state.node.registry_read(),
        doc,
        &report.body.branch_id,
        &report.body.key_id,
    )
}

/// The trust a report signed by `key_id` for `branch` is checked against, from head office's
/// records: the enrolled branch keys, and the device `doc`'s attestation names if `branch`'s
/// enrolled key signed it.
///
/// Issue 17: when `key_id` is `branch`'s enrolled key (every genuine report) that key is the
/// only one the report's check can use, so it is the only one parsed; otherwise every enrolled
/// key is, so the report is refused as before with the reason that names it (`unknown_key`,
/// or `key_not_for_branch` for another branch's key). Parsing every key for every report cost
/// a point decompression per enrolled branch.
pub fn trust_from(
    registry: &Registry,
    doc: &ReportDoc,
    branch: &BranchId,
    key_id: &KeyId,
) -> Result<TrustStore, VerifyError> {
    trust_attested(registry, &doc.attestation, branch, key_id, None)
}

/// [`trust_from`] with the device attestation on its own, and `checked`: attestations already
/// found signed by the enrolled key they name (their signature and key id, a statement's
/// signature being unique to it with `verify_strict`), so an audit checks each device's
/// attestation once rather than once per report (issue 17).
pub fn trust_attested(
    registry: &Registry,
    attestation: &DeviceAttestation,
    branch: &BranchId,
    key_id: &KeyId,
    checked: Option<&mut AttestationsChecked>,
) -> Result<TrustStore, VerifyError> {
    let mut trust = TrustStore::new();
    let own = registry.branch_key(branch);
    match &own {
        Some(key) if key.id() == key_id => trust.add_branch_key(branch.clone(), key.clone()),
        _ => {
            for record in registry.branches() {
                match PublicKey::from_hex(&record.public_key) {
                    Ok(key) => trust.add_branch_key(record.branch_id.clone(), key),
                    Err(e) => {
                        tracing::warn!(branch = %record.branch_id, error = %e, "enrolled branch has a bad key")
                    }
                }
            }
        }
    }
    let attested = &attestation.record;
    if &attested.branch_id != branch {
        return Err(VerifyError::DeviceNotForBranch {
            device_id: attested.device_id.clone(),
            device_branch: attested.branch_id.clone(),
            branch_id: branch.clone(),
        });
    }
    let key = own.ok_or_else(|| VerifyError::UnknownKey {
        key_id: attestation.key_id.clone(),
    })?;
    match checked {
        Some(checked) => checked.verify(attestation, &key)?,
        None => attestation.verify(&key)?,
    }
    trust
        .add_device(attested.clone())
        .map_err(|e| VerifyError::Malformed(format!("attested device key: {e}")))?;
    Ok(trust)
}

/// Device attestations found genuine: the record, key id and signature of each, as checked
/// against the enrolled key they name. Kept for one audit (or any run over many reports): a
/// branch's devices attest thousands of reports each with the same statement.
///
/// Issue 17: looked up by the attestation's signature (no text is made per report to look it
/// up), an entry answers only for the very record, key id and branch key it was checked
/// with, so a different record or key under a known signature is checked, and refused, as
/// before. An audit also keeps the trust each attestation gave ([`AttestationsChecked::trust`]).
#[derive(Debug, Default)]
pub struct AttestationsChecked {
    genuine: std::collections::HashMap<String, Vec<Genuine>>,
    trusts: std::collections::HashMap<String, Vec<Trusted>>,
}

/// One attestation (its signature is the map's key) found signed by `key`.
#[derive(Debug)]
struct Genuine {
    key_id: KeyId,
    record: fieldsync_shared::report::DeviceRecord,
    key: PublicKey,
}

/// What [`trust_attested`] gave for one attestation (its signature is the map's key), its
/// branch's key as enrolled and a report naming that key.
#[derive(Debug)]
struct Trusted {
    key_id: KeyId,
    record: fieldsync_shared::report::DeviceRecord,
    branch: BranchId,
    /// The branch's enrolled key (the registry's hex), the key the reports named.
    enrolled: String,
    trust: TrustStore,
}

impl AttestationsChecked {
    /// [`DeviceAttestation::verify`], answered from the ones already found genuine when this
    /// very attestation (record, key and signature) was; a failure is never kept.
    fn verify(
        &mut self,
        attestation: &DeviceAttestation,
        key: &PublicKey,
    ) -> Result<(), VerifyError> {
        let same = |g: &Genuine| {
            g.key_id == attestation.key_id && &g.key == key && g.record == attestation.record
        };
        if self
            .genuine
            .get(attestation.signature.as_str())
            .is_some_and(|found| found.iter().any(same))
        {
            return Ok(());
        }
        attestation.verify(key)?;
        self.genuine
            .entry(attestation.signature.clone())
            .or_default()
            .push(Genuine {
                key_id: attestation.key_id.clone(),
                record: attestation.record.clone(),
                key: key.clone(),
            });
        Ok(())
    }

    /// [`trust_attested`] with this record of attestations, the trust of a report that names
    /// its branch's enrolled key (every genuine one) kept with the attestation: a later report
    /// with the same attestation, branch, enrolled key and named key gets the same trust
    /// without it being built again (the branch and device keys looked up, the stores
    /// filled). Anything else is answered by [`trust_attested`] as before.
    pub fn trust(
        &mut self,
        registry: &Registry,
        attestation: &DeviceAttestation,
        branch: &BranchId,
        key_id: &KeyId,
    ) -> Result<std::borrow::Cow<'_, TrustStore>, VerifyError> {
        let enrolled = registry.branch(branch).map(|r| r.public_key.as_str());
        let same = |t: &Trusted| {
            Some(t.enrolled.as_str()) == enrolled
                && &t.key_id == key_id
                && &t.branch == branch
                && t.record == attestation.record
        };
        let found = self
            .trusts
            .get(attestation.signature.as_str())
            .and_then(|kept| kept.iter().position(same));
        if let Some(at) = found {
            return Ok(std::borrow::Cow::Borrowed(
                &self.trusts[attestation.signature.as_str()][at].trust,
            ));
        }
        let trust = trust_attested(registry, attestation, branch, key_id, Some(self))?;
        // Kept only when the report named the branch's enrolled key: then the trust depends
        // on nothing but what `same` compares.
        let own = registry.branch_key(branch);
        match (own, enrolled) {
            (Some(own), Some(enrolled)) if own.id() == key_id => {
                let kept = self
                    .trusts
                    .entry(attestation.signature.clone())
                    .or_default();
                kept.push(Trusted {
                    key_id: key_id.clone(),
                    record: attestation.record.clone(),
                    branch: branch.clone(),
                    enrolled: enrolled.to_owned(),
                    trust,
                });
                let last = kept.len() - 1;
                Ok(std::borrow::Cow::Borrowed(&kept[last].trust))
            }
            _ => Ok(std::borrow::Cow::Owned(trust)),
        }
    }
}

/// Meta namespace (head office's own store) of the device attestation each archived report
/// came with, by report id, kept when it is archived: what an audit of the stored content
/// needs beside the archive row, without loading the report document again (issue 17).
pub const ATTESTATIONS: &str = "report_attestations";

/// Verifies one report document and archives or rejects it. Returns the job to wait for when
/// the job document does not hold the report's heads yet.
pub(crate) async fn process(
    state: &Arc<HeadOffice>,
    doc: DocumentId,
    report_doc: &ReportDoc,
) -> Option<DocumentId> {
    let report = match report_doc.report() {
        Ok(r) => r,
        Err(e) => {
            reject(state, doc, None, &e).await;
            return None;
        }
    };
    let report_id = report.body.report_id.clone();
    // This very document was archived before (a restart, a second notification). Another
    // document claiming an archived report id is checked like any other: a tampered copy
    // must be kept aside, not waved through because the genuine one arrived first.
    let archived_from = match state.store.archived_report(&report_id).await {
        Ok(found) => found.map(|row| row.report_doc),
        Err(e) => {
            // Looked at again at the next start (`receive::unsettled`).
            tracing::error!(report = report_id, error = %e, "cannot read the archive");
            return None;
        }
    };
    if archived_from.as_deref() == Some(doc.to_string().as_str()) {
        return None;
    }
    let from = state.node.registry_read().owner(&doc).cloned();
    if from.as_ref() != Some(&report.body.branch_id) {
        let e = VerifyError::Malformed(format!(
            "sent by branch {} but the report is for branch {}",
            from.as_ref()
                .map_or("(unknown)".to_owned(), ToString::to_string),
            report.body.branch_id
        ));
        reject(state, doc, Some(&report), &e).await;
        return None;
    }
    let checked = trust_for(state, report_doc, &report)
        .and_then(|trust| trust.verify_json(&report_doc.report_json));
    let verified = match checked {
        Ok(v) => v,
        Err(e) => {
            reject(state, doc, Some(&report), &e).await;
            return None;
        }
    };
    let job_id = report.body.job_id;
    let heads: Vec<ChangeHash> = match report
        .body
        .heads
        .iter()
        .map(|h| h.parse::<ChangeHash>())
        .collect()
    {
        Ok(h) => h,
        Err(_) => {
            let e = VerifyError::Malformed("the report's heads are not change hashes".into());
            reject(state, doc, Some(&report), &e).await;
            return None;
        }
    };
    let same_branch = state.node.registry_read().owner(&job_id) == Some(&report.body.branch_id);
    let job_doc = if same_branch {
        load(state, job_id).await
    } else {
        None
    };
    let holds_heads = job_doc
        .as_ref()
        .is_some_and(|am| heads.iter().all(|h| am.get_change_by_hash(h).is_some()));
    let Some(job_doc) = job_doc.filter(|_| holds_heads) else {
        let pending = Rejection {
            report_doc: doc,
            report_id: Some(report_id),
            job_id: Some(job_id),
            from_branch: from,
            code: "awaiting_job_document".into(),
            message: format!("{job_id} does not hold the report's heads yet"),
            at: state.node.clock.now(),
        };
        if let Err(e) = state
            .store
            .put_report_aside(pending.row(AsideStatus::Pending))
            .await
        {
            tracing::error!(%doc, error = %e, "cannot record a report waiting for its job");
        }
        return Some(job_id);
    };
    if let Err(e) = check_against_job(&report, &job_doc, &heads) {
        reject(state, doc, Some(&report), &e).await;
        return None;
    }
    if archived_from.is_some() {
        // A genuine second copy of an archived report: archived once, by its id. If this
        // copy waited for its job before, it waits no more.
        tracing::info!(report = report_id, %doc, "report already archived from another document");
        let _ = state
            .store
            .delete_report_aside(&doc.to_string(), AsideStatus::Pending)
            .await;
        return None;
    }
    let job = &verified.job;
    let entry = ArchivedReport {
        report_id: report_id.clone(),
        report_doc: doc,
        branch_id: report.body.branch_id.clone(),
        job_id,
        // R25: the month in head office's zone (`timezone`), fixed when archived.
        month: match state.node.config.timezone.month_of(report.body.signed_at) {
            Ok(m) => m,
            Err(e) => {
                let e = VerifyError::Malformed(format!("signed_at: {e}"));
                reject(state, doc, Some(&report), &e).await;
                return None;
            }
        },
        customer_id: job.customer.id.to_string(),
        product_type: job.product.product_type.clone(),
        signed_at: report.body.signed_at,
        verified_at: state.node.clock.now(),
        report: serde_json::from_slice(&report_doc.report_json).unwrap_or(Value::Null),
    };
    // The attestation for an audit of the stored content (`audit_report`): written before
    // the row, so an archived report of this process always has it (a failure only costs the
    // audit a load of the report document).
    if let Ok(attestation) = serde_json::to_vec(&report_doc.attestation)
        && let Err(e) = state
            .node
            .store
            .put_meta(ATTESTATIONS, &report_id, attestation)
            .await
    {
        tracing::warn!(report = report_id, error = %e, "cannot keep the report's attestation");
    }
    // One row, unique on the report id, and out of the aside lists in the same transaction:
    // no reader sees a report both archived and waiting, and a second process verifying the
    // same report at the same moment adds nothing.
    if let Err(e) = state.store.archive_report(entry.row()).await {
        tracing::error!(report = report_id, error = %e, "cannot archive a verified report");
        return None;
    }
    state.metrics.reports_verified.inc();
    tracing::info!(report = report_id, branch = %entry.branch_id, "report verified and archived");
    None
}

/// The report against the job document head office holds (which holds `heads`, the report's
/// heads parsed): the job read at those heads must give exactly the reported content
/// (`TrustStore::verify_against_document`: the heads, and the content digest recomputed from
/// the document).
pub fn check_against_job(
    report: &SignedReport,
    job_doc: &Automerge,
    heads: &[ChangeHash],
) -> Result<(), VerifyError> {
    let job = read_job_at(job_doc, heads)
        .map_err(|e| VerifyError::Malformed(format!("job document at the report's heads: {e}")))?;
    TrustStore::verify_against_document(report, &job, report.body.heads.clone())
}

// ---- auditing the archive (issue 17) --------------------------------------------------

/// How far `fieldsync archive audit` re-verifies each archived report (REPORT-FORMAT.md §6,
/// "Re-verifying the archive").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDepth {
    /// Against the stored content: the report as archived (§6 checks 1–13: branch signature,
    /// content digest, report id, device signature, acknowledgement digest, the device not
    /// revoked), the device attestation it came with signed by the branch's enrolled key, and
    /// the archive's columns (branch, job, customer, product type, serial, supersedes, signed
    /// at) being what the signed report says. No automerge document is loaded.
    Stored,
    /// `Stored`, and head office's check at receipt made again from the job document it
    /// holds: the document holds the report's heads and, read at them, gives exactly the
    /// reported content. A load and a historical read of the job per report.
    Full,
}

/// Why an archived report failed an audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Report(#[from] VerifyError),
    /// An archive column is not what the signed report says.
    #[error("the archive's {column} is {archived:?}, the signed report says {signed:?}")]
    Column {
        column: &'static str,
        archived: String,
        signed: String,
    },
    /// A full audit without the job document (this process never received it).
    #[error("head office holds no job document {0} to read the report's heads in")]
    NoJobDocument(DocumentId),
}

impl AuditError {
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::Report(e) => e.code(),
            AuditError::Column { .. } => "column_mismatch",
            AuditError::NoJobDocument(_) => "job_document_missing",
        }
    }
}

/// Re-verifies one archived report, `row` as the archive holds it, with the device
/// `attestation` it came with, against head office's records (`registry`: the branch keys
/// enrolled now). With `job_doc` (a full audit) the job document is read at the report's
/// heads too; without it the check is [`AuditDepth::Stored`]'s.
pub fn audit_report(
    registry: &Registry,
    row: &ReportRow,
    attestation: &DeviceAttestation,
    job_doc: Option<&Automerge>,
    checked: &mut AttestationsChecked,
) -> Result<(), AuditError> {
    let malformed = |e: serde_json::Error| VerifyError::Malformed(format!("archived report: {e}"));
    let value: Value = serde_json::from_str(&row.report).map_err(malformed)?;
    let body = &value["body"];
    let branch = BranchId::deserialize(&body["branch_id"]).map_err(malformed)?;
    let key_id = KeyId::deserialize(&body["key_id"]).map_err(malformed)?;
    // The job id column against the id as signed, its text: a document id has one bs58check
    // text (decoding and encoding are inverse), so this is the comparison with the parsed
    // id written out again, without writing it (issue 17).
    let job_id_as_signed = body["job_id"].as_str() == Some(row.job_id.as_str());
    let trust = checked.trust(registry, attestation, &branch, &key_id)?;
    let verified = trust.verify_owned(value)?;
    let signed = &verified.report.body;
    let same = |column: &'static str, archived: &str, signed: &str| {
        if archived == signed {
            Ok(())
        } else {
            Err(AuditError::Column {
                column,
                archived: archived.to_owned(),
                signed: signed.to_owned(),
            })
        }
    };
    same("report_id", &row.report_id, &signed.report_id)?;
    same("branch_id", &row.branch_id, signed.branch_id.as_str())?;
    if !job_id_as_signed {
        same("job_id", &row.job_id, &signed.job_id.to_string())?;
    }
    same(
        "customer_id",
        &row.customer_id,
        verified.job.customer.id.as_str(),
    )?;
    same(
        "product_type",
        &row.product_type,
        &verified.job.product.product_type,
    )?;
    same("serial", &row.serial, &verified.job.product.serial)?;
    same(
        "supersedes",
        row.supersedes.as_deref().unwrap_or_default(),
        signed.supersedes.as_deref().unwrap_or_default(),
    )?;
    if row.signed_at != signed.signed_at.as_millis() {
        same(
            "signed_at",
            &row.signed_at.to_string(),
            &signed.signed_at.as_millis().to_string(),
        )?;
    }
    let Some(job_doc) = job_doc else {
        return Ok(());
    };
    let heads: Vec<ChangeHash> = signed
        .heads
        .iter()
        .map(|h| h.parse::<ChangeHash>())
        .collect::<Result<_, _>>()
        .map_err(|_| VerifyError::Malformed("the report's heads are not change hashes".into()))?;
    if !heads
        .iter()
        .all(|h| job_doc.get_change_by_hash(h).is_some())
    {
        return Err(VerifyError::Malformed(
            "the job document head office holds does not hold the report's heads".into(),
        )
        .into());
    }
    check_against_job(&verified.report, job_doc, &heads)?;
    Ok(())
}

/// One archived report an audit refused or could not check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFinding {
    pub report_id: String,
    pub code: String,
    pub message: String,
}

/// What an audit of the archive found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditSummary {
    pub depth: AuditDepth,
    /// Archived reports looked at.
    pub reports: usize,
    /// Those that passed every check of `depth`.
    pub verified: usize,
    /// Those that failed one, with the first that failed.
    pub failed: Vec<AuditFinding>,
    /// Those this process cannot check: neither the attestation kept when it was archived
    /// nor the report document is here (another head-office process on a shared archive
    /// received it).
    pub not_held: Vec<String>,
}

/// The attestation `row`'s report came with: kept when archived ([`ATTESTATIONS`]), or read
/// from the report document head office holds; `None` if neither is here.
fn attestation_of(
    documents: &fieldsync_storage::Store,
    row: &ReportRow,
) -> Option<DeviceAttestation> {
    if let Ok(Some(kept)) = documents.meta(ATTESTATIONS, &row.report_id)
        && let Ok(attestation) = serde_json::from_slice(&kept)
    {
        return Some(attestation);
    }
    let chunks = documents.load_doc(&row.report_doc).ok()??;
    let am = fieldsync_shared::stored::load(&chunks).ok()?;
    Some(ReportDoc::from_document(&am).ok()??.attestation)
}

/// Re-verifies every archived report `filter` selects, `depth` deep, against head office's
/// records (`registry`) and the documents and attestations in `documents` (this process's
/// store). A report that fails is named with the first check that failed; the archive is not
/// changed.
pub async fn audit(
    archive: &HeadOfficeStore,
    documents: Arc<fieldsync_storage::Store>,
    registry: Registry,
    filter: &Filter,
    depth: AuditDepth,
) -> Result<AuditSummary, StoreError> {
    let query = ReportQuery {
        month: filter.month.map(|m| m.to_string()),
        customer_id: filter.customer.clone(),
        product_type: filter.product_type.clone(),
        branch_id: filter.branch.clone(),
    };
    let rows = archive.archived_reports(query).await?;
    tokio::task::spawn_blocking(move || {
        let mut summary = AuditSummary {
            depth,
            reports: rows.len(),
            verified: 0,
            failed: Vec::new(),
            not_held: Vec::new(),
        };
        let mut checked = AttestationsChecked::default();
        for row in &rows {
            let Some(attestation) = attestation_of(&documents, row) else {
                summary.not_held.push(row.report_id.clone());
                continue;
            };
            let job_doc = match depth {
                AuditDepth::Stored => None,
                AuditDepth::Full => Some(
                    documents
                        .load_doc(&row.job_id)
                        .ok()
                        .flatten()
                        .and_then(|chunks| fieldsync_shared::stored::load(&chunks).ok()),
                ),
            };
            let outcome = match (&job_doc, row.job_id.parse::<DocumentId>()) {
                (Some(None), Ok(job)) => Err(AuditError::NoJobDocument(job)),
                (Some(None), Err(e)) => Err(VerifyError::Malformed(format!("job_id: {e}")).into()),
                (found, _) => audit_report(
                    &registry,
                    row,
                    &attestation,
                    found.as_ref().and_then(Option::as_ref),
                    &mut checked,
                ),
            };
            match outcome {
                Ok(()) => summary.verified += 1,
                Err(e) => summary.failed.push(AuditFinding {
                    report_id: row.report_id.clone(),
                    code: e.code().to_owned(),
                    message: e.to_string(),
                }),
            }
        }
        summary
    })
    .await
    .map_err(|e| StoreError::Join(e.to_string()))
}

pub(crate) async fn reject(
    state: &Arc<HeadOffice>,
    doc: DocumentId,
    report: Option<&SignedReport>,
    e: &VerifyError,
) {
    let rejection = Rejection {
        report_doc: doc,
        report_id: report.map(|r| r.body.report_id.clone()),
        job_id: report.map(|r| r.body.job_id),
        from_branch: state.node.registry_read().owner(&doc).cloned(),
        code: e.code().to_owned(),
        message: e.to_string(),
        at: state.node.clock.now(),
    };
    tracing::warn!(%doc, code = rejection.code, reason = rejection.message, "report kept aside");
    state.metrics.reports_rejected.inc();
    // Replaces a pending record of the same document: one document, one aside record.
    if let Err(e) = state
        .store
        .put_report_aside(rejection.row(AsideStatus::Rejected))
        .await
    {
        tracing::error!(%doc, error = %e, "cannot record a rejected report");
    }
}

// ---- reading the archive -------------------------------------------------------------

/// Which archived reports to list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    pub month: Option<Month>,
    pub customer: Option<String>,
    pub product_type: Option<String>,
    pub branch: Option<String>,
}

/// Archived reports matching `filter`, oldest first (each filter an index of the archive).
pub async fn archived(
    store: &HeadOfficeStore,
    filter: &Filter,
) -> Result<Vec<ArchivedReport>, StoreError> {
    let query = ReportQuery {
        month: filter.month.map(|m| m.to_string()),
        customer_id: filter.customer.clone(),
        product_type: filter.product_type.clone(),
        branch_id: filter.branch.clone(),
    };
    Ok(store
        .archived_reports(query)
        .await?
        .into_iter()
        .filter_map(ArchivedReport::from_row)
        .collect())
}

/// Report documents kept aside or waiting, oldest first.
pub async fn set_aside(
    store: &HeadOfficeStore,
    status: AsideStatus,
) -> Result<Vec<Rejection>, StoreError> {
    Ok(store
        .reports_aside(status)
        .await?
        .into_iter()
        .filter_map(|row| serde_json::from_str(&row.body).ok())
        .collect())
}

/// Why statistics could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum StatsFailure {
    #[error("archive: {0}")]
    Storage(#[from] StoreError),
    #[error("{0}")]
    Stats(#[from] StatsError),
    #[error("archived report {0} is unreadable: {1}")]
    Unreadable(String, String),
    #[error("the month's first instant in head office's zone: {0}")]
    MonthStart(fieldsync_shared::time::TimeError),
}

/// R24/R27 for `month`, per branch, from the archive: the month's verified reports not
/// superseded by a later one (a job reopened and completed again counts once, by its newest
/// report) and, for repeat repairs (R4), the earlier ones within the window on a serial the
/// month has. The archive selects them by index, so the work is the month's, not the
/// archive's; every process on one database reads the same rows and answers the same.
pub async fn month_stats(
    store: &HeadOfficeStore,
    month: Month,
    repeat_window_days: i64,
    zone: &Zone,
) -> Result<Vec<MonthlyStats>, StatsFailure> {
    // `monthly` counts a pair as a repeat when fewer than window + 1 whole days apart, so
    // nothing earlier than this can be the earlier half of a pair ending in the month.
    let look_back_from = zone
        .month_start(month)
        .map_err(StatsFailure::MonthStart)?
        .as_millis()
        .saturating_sub(repeat_window_days.saturating_add(1).saturating_mul(DAY_MS));
    let rows = store
        .reports_for_month_stats(&month.to_string(), look_back_from)
        .await?;
    // The archive kept what the statistics read beside each report when it archived it: a
    // few columns a report, no report to parse (only a row archived before they were kept
    // carries its JSON, read the way the columns were computed).
    let facts = tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(report_facts)
            .collect::<Result<Vec<_>, StatsFailure>>()
    })
    .await
    .map_err(|e| StatsFailure::Storage(StoreError::Join(e.to_string())))??;
    Ok(monthly_from_facts(&facts, month, repeat_window_days, zone)?)
}

/// What the statistics read of an archived report: its job with the acknowledgement, as
/// [`SignedReport::job`] gives it.
#[derive(Deserialize)]
struct StatsView {
    body: StatsBody,
}

#[derive(Deserialize)]
struct StatsBody {
    content: Job,
    acknowledgement: Acknowledgement,
}

/// The report's job as the statistics read it, from the report's JSON.
fn reported_job(
    report_id: &str,
    branch_id: &BranchId,
    signed_at: Timestamp,
    report: &str,
) -> Result<ReportedJob, String> {
    let view: StatsView =
        serde_json::from_str(report).map_err(|e| format!("content is not a job: {e}"))?;
    let mut job = view.body.content;
    job.acknowledgement = Some(view.body.acknowledgement);
    Ok(ReportedJob {
        report_id: report_id.to_owned(),
        branch_id: branch_id.clone(),
        signed_at,
        job,
    })
}

/// The statistics columns archived beside a report (the report's JSON): [`ReportFacts`] of
/// its job. `None` when
/// the report does not read as a job (the statistics then read it and name the problem).
pub fn stats_columns_of(
    report_id: &str,
    branch_id: &BranchId,
    signed_at: Timestamp,
    report: &str,
) -> Option<StatsColumns> {
    let job = reported_job(report_id, branch_id, signed_at, report).ok()?;
    let f = ReportFacts::of(&job);
    Some(StatsColumns {
        kind: f.kind.as_str().to_owned(),
        billing: f.billing.as_str().to_owned(),
        people: i64::from(f.people),
        days_on_site: i64::from(f.days_on_site),
        charges: f.charges.map(|c| {
            [
                c.parts.0,
                c.labour.0,
                c.travel.0,
                c.cost.0,
                c.customer_pays.0,
            ]
        }),
        training: f.training,
        survey: f.survey.map(|scores| scores.map(|s| s.map(i64::from))),
        suggestion: f.suggestion,
        fault: f.fault,
    })
}

/// A month-statistics row as the facts [`monthly_from_facts`] counts.
fn report_facts(row: StatsRow) -> Result<ReportFacts, StatsFailure> {
    let unreadable = |e: String| StatsFailure::Unreadable(row.report_id.clone(), e);
    let branch_id: BranchId = row
        .branch_id
        .parse()
        .map_err(|e| unreadable(format!("branch_id: {e:?}")))?;
    let signed_at = Timestamp::from_millis(row.signed_at);
    let Some(c) = row.stats.clone() else {
        let report = row.report.as_deref().unwrap_or_default();
        let job =
            reported_job(&row.report_id, &branch_id, signed_at, report).map_err(unreadable)?;
        return Ok(ReportFacts::of(&job));
    };
    let count = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| unreadable(format!("{what} {v} out of range")))
    };
    let score = |v: Option<i64>| {
        v.map(|v| u8::try_from(v).map_err(|_| unreadable(format!("score {v} out of range"))))
            .transpose()
    };
    Ok(ReportFacts {
        job_id: row
            .job_id
            .parse()
            .map_err(|e| unreadable(format!("job_id: {e}")))?,
        kind: JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == c.kind)
            .ok_or_else(|| unreadable(format!("job kind {:?}", c.kind)))?,
        billing: match c.billing.as_str() {
            "warranty" => BillingMode::Warranty,
            "billable" => BillingMode::Billable,
            other => return Err(unreadable(format!("billing {other:?}"))),
        },
        people: count(c.people, "people")?,
        days_on_site: count(c.days_on_site, "days on site")?,
        charges: c
            .charges
            .map(|[parts, labour, travel, cost, customer_pays]| FactCharges {
                parts: Money(parts),
                labour: Money(labour),
                travel: Money(travel),
                cost: Money(cost),
                customer_pays: Money(customer_pays),
            }),
        training: c.training,
        survey: match c.survey {
            Some([a, b, d, e]) => Some([score(a)?, score(b)?, score(d)?, score(e)?]),
            None => None,
        },
        suggestion: c.suggestion,
        fault: c.fault,
        product_type: row.product_type.clone(),
        serial: row.serial.clone(),
        report_id: row.report_id.clone(),
        branch_id,
        signed_at,
    })
}

const DAY_MS: i64 = 86_400_000;

/// One block of a monthly report (the statistics and the complaint report print through
/// `fieldsync_shared::stats::table`, which aligns by display width).
pub use fieldsync_shared::stats::table::MetricBlock;

/// Blocks as `csv` (`branch,month,metric,value`, the `definitions` as `#` lines above it) or
/// a text `table` (`empty` when there are none, the definitions under the figures).
pub fn render_blocks(
    blocks: &[MetricBlock],
    format: &str,
    empty: &str,
    definitions: &[&str],
) -> Result<String, String> {
    fieldsync_shared::stats::table::render_blocks(blocks, format, empty, definitions)
        .map_err(|e| e.to_string())
}

/// Statistics as `table`, `csv` or `json`: every R24 line and R9 dimension, and what each
/// includes (`fieldsync_shared::stats::render`).
pub fn render_stats(stats: &[MonthlyStats], format: &str) -> Result<String, String> {
    fieldsync_shared::stats::render(stats, format).map_err(|e| e.to_string())
}

// ---- HTTP ------------------------------------------------------------------------------

// Head office's HTTP API: desk tokens, any role may read. Mounted by `head_office::api`, which
// builds head office's OpenAPI document from the same list; an edge does not route it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use utoipa::{IntoParams, ToSchema};

use crate::auth::EVERYONE;
use crate::http::error::ApiError;
use crate::http::query;
use crate::http::wire::ErrorBody;

/// Any desk role may read head office's archive.
pub(crate) fn read_archive(state: &HeadOffice, headers: &HeaderMap) -> Result<(), ApiError> {
    state
        .node
        .authorize(headers, EVERYONE, "read the archive")?;
    Ok(())
}

/// Query of `GET /api/archive/reports` (R25: by month, customer, product type, branch).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The month the report was signed in (YYYY-MM, UTC).
    #[param(example = "2026-11")]
    month: Option<String>,
    /// A customer id.
    customer: Option<String>,
    /// A product type, e.g. chiller.
    product_type: Option<String>,
    /// A branch id.
    branch: Option<String>,
}

/// A verified report in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportSummary {
    pub report_id: String,
    /// Always `verified` in the archive.
    pub status: String,
    #[schema(value_type = String)]
    pub branch_id: BranchId,
    #[schema(value_type = String)]
    pub job_id: DocumentId,
    #[schema(value_type = String, example = "2026-11")]
    pub month: Month,
    pub customer_id: String,
    pub product_type: String,
    /// RFC 3339.
    pub signed_at: String,
    /// RFC 3339.
    pub verified_at: String,
}

fn summary(r: &ArchivedReport) -> ReportSummary {
    ReportSummary {
        report_id: r.report_id.clone(),
        status: "verified".into(),
        branch_id: r.branch_id.clone(),
        job_id: r.job_id,
        month: r.month,
        customer_id: r.customer_id.clone(),
        product_type: r.product_type.clone(),
        signed_at: r.signed_at.to_string(),
        verified_at: r.verified_at.to_string(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    pub reports: Vec<ReportSummary>,
}

/// R25: the verified reports, oldest first.
#[utoipa::path(
    get,
    path = "/api/archive/reports",
    operation_id = "archive_list_reports",
    tag = "head office",
    description = "Head office only. R13, R25: verified service reports, filtered by month, \
        customer, product type or branch. Roles: dispatcher, manager, analyst.",
    params(ListQuery),
    responses(
        (status = 200, body = ReportList),
        (status = 400, body = ErrorBody, description = "invalid_query, invalid_month"),
    ),
)]
pub async fn list_reports(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ReportList>, ApiError> {
    read_archive(&state, &headers)?;
    let query = query(q)?;
    let month = query
        .month
        .as_deref()
        .map(str::parse::<Month>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_month", format!("month: {e} (YYYY-MM)")))?;
    let filter = Filter {
        month,
        customer: query.customer,
        product_type: query.product_type,
        branch: query.branch,
    };
    let reports = archived(&state.store, &filter).await.map_err(unavailable)?;
    Ok(Json(ReportList {
        reports: reports.iter().map(summary).collect(),
    }))
}

/// The archive could not be read (the database is down, say): a 500 naming it.
pub(crate) fn unavailable(e: StoreError) -> ApiError {
    ApiError::internal("archive_unavailable", e)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_report_id",
            "a report id is 32 hex digits",
        ))
    }
}

/// A report by id with its verification status: verified (archived), rejected with the
/// reason, or pending (waiting for its job document).
#[utoipa::path(
    get,
    path = "/api/archive/reports/{id}",
    operation_id = "archive_get_report",
    tag = "head office",
    description = "Head office only. A report and its verification status: `verified` (the \
        archive entry, with the report), `rejected` (the reason: code and message) or \
        `pending` (waiting for its job document). Roles: dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The report id: 32 hex digits")),
    responses(
        (status = 200, description = "The archive entry or the rejection, with `status`", content_type = "application/json"),
        (status = 400, body = ErrorBody, description = "invalid_report_id"),
        (status = 404, body = ErrorBody, description = "unknown_report"),
    ),
)]
pub async fn get_report(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read_archive(&state, &headers)?;
    check_id(&id)?;
    let archived = state
        .store
        .archived_report(&id)
        .await
        .map_err(unavailable)?;
    let (status, mut value) = if let Some(row) = archived {
        let entry = ArchivedReport::from_row(row)
            .ok_or_else(|| ApiError::internal("corrupt_record", "unreadable archive row"))?;
        let value =
            serde_json::to_value(entry).map_err(|e| ApiError::internal("corrupt_record", e))?;
        ("verified", value)
    } else {
        let aside = state
            .store
            .report_aside_by_id(&id)
            .await
            .map_err(unavailable)?;
        let Some(row) = aside.into_iter().next() else {
            return Err(ApiError::not_found(
                "unknown_report",
                format!("head office has no report {id}"),
            ));
        };
        let value: Value =
            serde_json::from_str(&row.body).map_err(|e| ApiError::internal("corrupt_record", e))?;
        (row.status.as_str(), value)
    };
    value["status"] = Value::from(status);
    Ok(Json(value))
}

/// A verified report's canonical JSON, as `fieldsync verify` reads it.
#[utoipa::path(
    get,
    path = "/api/archive/reports/{id}/export",
    operation_id = "archive_export_report",
    tag = "head office",
    description = "Head office only. A verified report's canonical JSON, signed by its branch, \
        for `fieldsync verify` or any other verifier. Roles: dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The report id: 32 hex digits")),
    responses(
        (status = 200, description = "The signed report (canonical JSON)", content_type = "application/json"),
        (status = 400, body = ErrorBody, description = "invalid_report_id"),
        (status = 404, body = ErrorBody, description = "unknown_report"),
    ),
)]
pub async fn export_report(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    read_archive(&state, &headers)?;
    check_id(&id)?;
    let row = state
        .store
        .archived_report(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::not_found("unknown_report", format!("no verified report {id}")))?;
    let report: Value =
        serde_json::from_str(&row.report).map_err(|e| ApiError::internal("corrupt_record", e))?;
    let bytes = fieldsync_shared::canonical::to_canonical_bytes(&report)
        .map_err(|e| ApiError::internal("canonical", e))?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"report-{id}.json\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Reports kept aside and reports waiting for their job document.
#[utoipa::path(
    get,
    path = "/api/archive/rejected",
    operation_id = "archive_list_rejected_reports",
    tag = "head office",
    description = "Head office only. Report documents that failed verification (`rejected`, \
        with the code and message) and those waiting for their job document (`pending`). \
        Roles: dispatcher, manager, analyst.",
    responses(
        (status = 200, description = "`{\"rejected\": [...], \"pending\": [...]}`", content_type = "application/json"),
    ),
)]
pub async fn list_rejected(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    read_archive(&state, &headers)?;
    let rejected = set_aside(&state.store, AsideStatus::Rejected)
        .await
        .map_err(unavailable)?;
    let pending = set_aside(&state.store, AsideStatus::Pending)
        .await
        .map_err(unavailable)?;
    Ok(Json(
        serde_json::json!({ "rejected": rejected, "pending": pending }),
    ))
}

/// Body of `POST /api/archive/verdicts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictQuery {
    /// Report ids (at most [`MAX_VERDICTS`]).
    pub reports: Vec<String>,
}

/// What `POST /api/archive/verdicts` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verdicts {
    pub verdicts: Vec<Verdict>,
}

/// Report ids one verdict request may name.
pub const MAX_VERDICTS: usize = 1000;

/// A branch asks head office what became of the reports it delivered.
#[utoipa::path(
    post,
    path = "/api/archive/verdicts",
    tag = "head office",
    description = "For a branch's link (its branch token): head office's verdict on each of \
        the branch's reports (`verified`, `rejected` with the code and message, `pending`, or \
        `unknown`: not received, or another branch's). At most 1000 ids a request.",
    request_body = VerdictQuery,
    responses(
        (status = 200, body = Verdicts),
        (status = 400, body = ErrorBody, description = "invalid_body, too_many_reports"),
        (status = 403, body = ErrorBody, description = "not a branch token"),
    ),
)]
pub async fn verdicts(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Verdicts>, ApiError> {
    let branch = state
        .node
        .authorize_branch(&headers, "`/api/archive/verdicts`")?;
    let asked: VerdictQuery = crate::http::parse_body(&body)?;
    if asked.reports.len() > MAX_VERDICTS {
        return Err(ApiError::bad_request(
            "too_many_reports",
            format!(
                "{} report ids: at most {MAX_VERDICTS} a request",
                asked.reports.len()
            ),
        ));
    }
    let verdicts = verdicts_for(&state.store, &branch, &asked.reports)
        .await
        .map_err(unavailable)?;
    Ok(Json(Verdicts { verdicts }))
}

/// Query of `GET /api/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The month (YYYY-MM, UTC).
    #[param(example = "2026-11")]
    month: String,
    /// json (default), csv or table.
    format: Option<String>,
}

/// R24, R27: the month's statistics per branch.
#[utoipa::path(
    get,
    path = "/api/stats",
    operation_id = "archive_month_stats",
    tag = "head office",
    description = "Head office only. R24, R27: the month's statistics per branch from the \
        verified reports (superseded ones left out), as JSON, CSV or a text table. Roles: \
        dispatcher, manager, analyst.",
    params(StatsQuery),
    responses(
        (status = 200, description = "The statistics", content(
            (Value = "application/json"),
            (String = "text/csv"),
            (String = "text/plain"),
        )),
        (status = 400, body = ErrorBody, description = "invalid_query, invalid_month, invalid_format"),
    ),
)]
pub async fn get_stats(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    read_archive(&state, &headers)?;
    let query = query(q)?;
    let month: Month = query
        .month
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_month", format!("month: {e} (YYYY-MM)")))?;
    let format = query.format.unwrap_or_else(|| "json".into());
    if !["json", "csv", "table"].contains(&format.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_format",
            format!("format {format:?}: use json, csv or table"),
        ));
    }
    let window = state.node.config.repeat_window_days;
    let stats = month_stats(&state.store, month, window, &state.node.config.timezone)
        .await
        .map_err(|e| ApiError::internal("stats_failed", e))?;
    let text = render_stats(&stats, &format).map_err(|e| ApiError::internal("stats_failed", e))?;
    let content_type = match format.as_str() {
        "json" => "application/json",
        "csv" => "text/csv",
        _ => "text/plain; charset=utf-8",
    };
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response())
}

/// `GET /api/archive/reports/{id}/pdf`: the signed service report as the customer's printable PDF (issue 15),
/// carrying the report's JSON as an attachment (`fieldsync verify report.pdf`).
#[utoipa::path(
    get,
    path = "/api/archive/reports/{id}/pdf",
    operation_id = "archive_get_report_pdf",
    tag = "head office",
    description = "The signed service report as a printable PDF in Chinese or English, with the \
        signed report JSON attached (so `fieldsync verify report.pdf` checks it). Roles: \
        dispatcher, manager, analyst.",
    params(
        ("id" = String, Path, description = "The report id (32 hex digits)"),
        ("lang" = Option<String>, Query, description = "zh (default) or en"),
        ("zone" = Option<String>, Query, description = "Time zone of the times shown: an IANA name or an offset (Asia/Shanghai by default)"),
    ),
    responses(
        (status = 200, description = "The PDF", content_type = "application/pdf"),
        (status = 400, body = ErrorBody, description = "invalid_report_id, invalid_query"),
        (status = 404, body = ErrorBody, description = "unknown_report"),
    ),
)]
pub async fn get_report_pdf(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    asked: Result<
        axum::extract::Query<crate::http::pdf::PdfQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<axum::response::Response, ApiError> {
    read_archive(&state, &headers)?;
    // The archive row holds the report as received; its canonical form is the signed JSON
    // (as `export` answers it). A malformed id reads nothing and `download` names it.
    let json = if check_id(&id).is_ok() {
        state
            .store
            .archived_report(&id)
            .await
            .map_err(unavailable)?
            .and_then(|row| serde_json::from_str::<Value>(&row.report).ok())
            .and_then(|report| fieldsync_shared::canonical::to_canonical_bytes(&report).ok())
    } else {
        None
    };
    crate::http::pdf::download(id, asked, "verified report", move || Ok(json)).await
}

#[cfg(test)]
mod tests {
    use fieldsync_shared::ids::{DeviceId, TechnicianId};
    use fieldsync_shared::job::doc::{JobDoc, create_job};
    use fieldsync_shared::job::{ReportOutcome, SignatureMark, Survey, TimelineEvent};
    use fieldsync_shared::keys::KeyPair;
    use fieldsync_shared::report::{AckDraft, DeviceRecord, sign_acknowledgement};
    use fieldsync_shared::report_doc::DeviceAttestation;
    use fieldsync_storage::{Store, StoreConfig};

    use super::*;
    use crate::sync::registry::{BranchRecord, Tier};

    /// Head office's records with two branches enrolled, and a report of the first over a job
    /// document whose history moved on after signing (the outcome written into it).
    struct World {
        registry: Registry,
        branch: BranchId,
        key: KeyPair,
        other_key: KeyPair,
        job: Job,
        heads: Vec<ChangeHash>,
        job_doc: Automerge,
        report_doc: ReportDoc,
        _dir: tempfile::TempDir,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Store::open(dir.path().join("r.sqlite"), StoreConfig::default()).expect("store");
        let mut registry = Registry::default().with_tier(Tier::HeadOffice);
        let branch = BranchId::new("north-01").expect("id");
        let (key, other_key) = (KeyPair::from_seed(&[7; 32]), KeyPair::from_seed(&[8; 32]));
        for (id, k) in [("north-01", &key), ("south-02", &other_key)] {
            registry
                .enroll_branch(
                    &store,
                    BranchRecord {
                        branch_id: BranchId::new(id).expect("id"),
                        public_key: k.public().to_hex(),
                        enrolled_at: Timestamp::from_millis(1),
                    },
                )
                .wait()
                .expect("enrolled");
        }
        let vector: Value =
            serde_json::from_str(include_str!("../../../docs/report-vectors/report.json"))
                .expect("vector");
        let mut job: Job = serde_json::from_value(vector["job"].clone()).expect("job");
        job.acknowledgement = None;
        job.report = None;
        job.branch_id = branch.clone();
        let device_key = KeyPair::from_seed(&[9; 32]);
        let record = DeviceRecord {
            device_id: DeviceId::new("dev-a1").expect("id"),
            branch_id: branch.clone(),
            technician: TechnicianId::new("tech-wang").expect("id"),
            public_key: device_key.public().to_hex(),
            revoked_at: None,
        };
        let mut doc = JobDoc::from_autocommit(create_job(&job, None).expect("created"));
        let heads: Vec<String> = doc.heads().iter().map(ToString::to_string).collect();
        let ack = sign_acknowledgement(
            &doc.read().expect("read"),
            heads,
            AckDraft {
                signer_name: "陳力".into(),
                signature: SignatureMark::Strokes {
                    strokes: vec![vec![[0, 0], [3, 4]]],
                },
                signed_at: Timestamp::from_millis(1_793_094_000_000),
                survey: Survey::answered(5, 4, 5, 5, ""),
            },
            record.device_id.clone(),
            &device_key,
        )
        .expect("acknowledged");
        doc.set_acknowledgement(&ack).expect("written");
        let heads = doc.heads();
        let job = doc.read().expect("read");
        let report = sign(&job, &heads, &key);
        // Written after signing: the document's heads are no longer the report's.
        doc.set_report_outcome(&ReportOutcome::Signed {
            at: report.body.signed_at,
            report_id: report.body.report_id.clone(),
            digest: report.body.content_digest.clone(),
            supersedes: None,
        })
        .expect("outcome");
        doc.add_timeline_event(&TimelineEvent {
            at: report.body.signed_at,
            actor: "server".into(),
            kind: "report_signed".into(),
            text: "signed".into(),
        })
        .expect("event");
        let report_doc = ReportDoc {
            report_json: report.to_canonical_json().expect("json"),
            attestation: DeviceAttestation::sign(record, &key).expect("attested"),
        };
        let job_doc = doc.inner_mut().document().clone();
        World {
            registry,
            branch,
            key,
            other_key,
            job,
            heads,
            job_doc,
            report_doc,
            _dir: dir,
        }
    }

    fn sign(job: &Job, heads: &[ChangeHash], key: &KeyPair) -> SignedReport {
        SignedReport::sign(
            job,
            heads.iter().map(ToString::to_string),
            Timestamp::from_millis(1_793_095_000_000),
            None,
            key,
        )
        .expect("signed")
    }

    /// Head office's checks before the job document: the trust of `trust_from`, then the
    /// report itself.
    fn verify(w: &World, report: &SignedReport) -> Result<(), VerifyError> {
        let doc = ReportDoc {
            report_json: report.to_canonical_json().expect("json"),
            attestation: w.report_doc.attestation.clone(),
        };
        trust_from(&w.registry, &doc, &w.branch, &report.body.key_id)?
            .verify_json(&doc.report_json)
            .map(|_| ())
    }

    #[test]
    fn a_genuine_report_verifies_against_the_job_document_at_its_heads() {
        let w = world();
        let report = w.report_doc.report().expect("report");
        verify(&w, &report).expect("verifies");
        assert_ne!(w.job_doc.get_heads(), w.heads, "the history moved on");
        check_against_job(&report, &w.job_doc, &w.heads).expect("the document agrees");
    }

    #[test]
    fn another_branchs_key_or_an_unknown_key_is_refused_as_before() {
        // Issue 17: only the report's own branch key is parsed on the way of a genuine
        // report; any other key still gets the reason that names it.
        let w = world();
        let by_other = sign(&w.job, &w.heads, &w.other_key);
        assert!(matches!(
            verify(&w, &by_other),
            Err(VerifyError::KeyNotForBranch { .. })
        ));
        let stranger = KeyPair::from_seed(&[10; 32]);
        assert_eq!(
            verify(&w, &sign(&w.job, &w.heads, &stranger)),
            Err(VerifyError::UnknownKey {
                key_id: stranger.id().clone()
            })
        );
        let _ = &w.key;
    }

    #[test]
    fn content_the_job_document_does_not_hold_at_the_heads_is_refused() {
        let w = world();
        // A branch that signs other content at the document's heads: the digest recomputed
        // from the document disagrees.
        let mut altered = w.job.clone();
        altered.labour.minutes += 60;
        let report = sign(&altered, &w.heads, &w.key);
        assert!(matches!(
            check_against_job(&report, &w.job_doc, &w.heads),
            Err(VerifyError::DigestMismatch { .. })
        ));
        // The content as the document holds it *now* (after the outcome) is not the content
        // at the report's heads either: it is read at the heads, not at the latest state.
        let mut now = fieldsync_shared::job::doc::read_job(&w.job_doc).expect("read");
        now.report = None;
        now.acknowledgement = w.job.acknowledgement.clone();
        let report = sign(&now, &w.heads, &w.key);
        assert!(matches!(
            check_against_job(&report, &w.job_doc, &w.heads),
            Err(VerifyError::DigestMismatch { .. })
        ));
        // Heads the document does not hold are refused, never read as something else.
        let other = world();
        let report = w.report_doc.report().expect("report");
        assert!(matches!(
            check_against_job(&report, &other.job_doc, &w.heads),
            Err(VerifyError::Malformed(_))
        ));
    }

    /// The archive row of `w`'s report, as `process` writes it.
    fn archived_row(w: &World) -> ReportRow {
        let report = w.report_doc.report().expect("report");
        ArchivedReport {
            report_id: report.body.report_id.clone(),
            report_doc: report_doc_id(&report.body.report_id).expect("doc id"),
            branch_id: report.body.branch_id.clone(),
            job_id: report.body.job_id,
            month: Zone::utc().month_of(report.body.signed_at).expect("month"),
            customer_id: w.job.customer.id.to_string(),
            product_type: w.job.product.product_type.clone(),
            signed_at: report.body.signed_at,
            verified_at: report.body.signed_at,
            report: serde_json::from_slice(&w.report_doc.report_json).expect("json"),
        }
        .row()
    }

    #[test]
    fn an_audit_passes_a_genuine_row_at_both_depths_and_names_what_was_changed() {
        // Issue 17: `fieldsync archive audit`.
        let w = world();
        let row = archived_row(&w);
        let attestation = &w.report_doc.attestation;
        let mut checked = AttestationsChecked::default();
        let audit = |row: &ReportRow,
                     attestation: &DeviceAttestation,
                     job_doc: Option<&Automerge>,
                     checked: &mut AttestationsChecked| {
            audit_report(&w.registry, row, attestation, job_doc, checked)
        };
        audit(&row, attestation, None, &mut checked).expect("the stored content verifies");
        audit(&row, attestation, Some(&w.job_doc), &mut checked).expect("so does the document");

        // A column the archive's lists select by, changed behind head office's back.
        let mut changed = row.clone();
        changed.product_type = "boiler".into();
        assert!(matches!(
            audit(&changed, attestation, None, &mut checked),
            Err(AuditError::Column {
                column: "product_type",
                ..
            })
        ));
        // The stored report itself changed: its branch signature fails.
        let mut value: Value = serde_json::from_str(&row.report).expect("json");
        value["body"]["content"]["labour"]["minutes"] = 999.into();
        let mut changed = row.clone();
        changed.report = value.to_string();
        let e = audit(&changed, attestation, None, &mut checked).expect_err("changed");
        assert_eq!(e.code(), "bad_branch_signature", "{e}");

        // Another job document than the one the report was read from: only the full audit
        // reads it, and it is refused there.
        let other = world();
        let e = audit(&row, attestation, Some(&other.job_doc), &mut checked).expect_err("other");
        assert_eq!(e.code(), "malformed_report", "{e}");

        // An attestation checked once is remembered as itself only: a forged signature, or
        // the same signature over another device key, is refused after the genuine passed.
        let mut forged = attestation.clone();
        forged.signature = "00".repeat(64);
        let e = audit(&row, &forged, None, &mut checked).expect_err("forged");
        assert_eq!(e.code(), "bad_branch_signature", "{e}");
        let mut other_key = attestation.clone();
        other_key.record.public_key = KeyPair::from_seed(&[11; 32]).public().to_hex();
        let e = audit(&row, &other_key, None, &mut checked).expect_err("other key");
        assert_eq!(e.code(), "bad_branch_signature", "{e}");

        // The trust kept for an attestation answers only while the branch's enrolled key is
        // the one it was kept with: the branch enrolled again with another key, the report
        // (and the attestation) name a key head office no longer trusts.
        audit(&row, attestation, None, &mut checked).expect("still genuine");
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Store::open(dir.path().join("r.sqlite"), StoreConfig::default()).expect("store");
        let mut re_enrolled = w.registry.clone();
        re_enrolled
            .enroll_branch(
                &store,
                BranchRecord {
                    branch_id: w.branch.clone(),
                    public_key: KeyPair::from_seed(&[12; 32]).public().to_hex(),
                    enrolled_at: Timestamp::from_millis(2),
                },
            )
            .wait()
            .expect("enrolled");
        let e = audit_report(&re_enrolled, &row, attestation, None, &mut checked)
            .expect_err("key no longer enrolled");
        assert_eq!(e.code(), "unknown_key", "{e}");
        audit(&row, attestation, None, &mut checked).expect("genuine again");

        // The job id and signing time columns, compared without writing the signed ones out.
        let mut changed = row.clone();
        changed.job_id = DocumentId::random().to_string();
        assert!(matches!(
            audit(&changed, attestation, None, &mut checked),
            Err(AuditError::Column {
                column: "job_id",
                ..
            })
        ));
        let mut changed = row.clone();
        changed.signed_at += 1;
        let e = audit(&changed, attestation, None, &mut checked).expect_err("signed_at");
        assert_eq!(
            e,
            AuditError::Column {
                column: "signed_at",
                archived: (row.signed_at + 1).to_string(),
                signed: row.signed_at.to_string(),
            }
        );
    }
}

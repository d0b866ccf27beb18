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
//! Storage (`meta` namespaces): [`ARCHIVE`] (report id → [`ArchivedReport`]), one index
//! namespace per month, customer and product type (`by_month:2026-11` → report ids),
//! [`REJECTED`] and [`PENDING`] (report document id → [`Rejection`]). The archive is keyed by
//! report id, so a report delivered twice is archived once.

use std::collections::HashSet;
use std::sync::Arc;

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_shared::ids::{BranchId, DocumentId};
use fieldsync_shared::job::doc::read_job_at;
use fieldsync_shared::keys::PublicKey;
use fieldsync_shared::report::{SignedReport, TrustStore, VerifyError};
use fieldsync_shared::report_doc::{ReportDoc, Verdict, VerdictStatus, report_doc_id};
use fieldsync_shared::stats::{MonthlyStats, ReportedJob, StatsError, monthly};
use fieldsync_shared::time::{Month, Timestamp};
use fieldsync_storage::{StorageError, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::head_office::HeadOffice;
use crate::sync::registry::Registry;

/// Verified reports: report id → [`ArchivedReport`].
pub const ARCHIVE: &str = "archive";
/// Reports kept aside: report document id → [`Rejection`].
pub const REJECTED: &str = "rejected_reports";
/// Reports waiting for their job document: report document id → [`Rejection`].
pub const PENDING: &str = "pending_reports";

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

/// `meta` record whose value changes each time reports are taken out of the rejected list to
/// be verified again (`fieldsync archive retry`, a branch enrolled anew); the receiver
/// watches it.
pub const RETRY: (&str, &str) = ("head_office", "retry_generation");

/// The retry generation now (0 before the first retry).
pub fn retry_generation(store: &Store) -> Result<u64, StorageError> {
    Ok(store
        .meta(RETRY.0, RETRY.1)?
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
        .unwrap_or(0))
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

/// Takes the rejected reports `filter` names out of the rejected list and tells the receiver
/// (this process or a running server) to verify them again; answers their report ids. Works
/// beside a running head office: the receiver notices within a second; a stopped one looks at
/// them at its next start (they are neither archived nor kept aside).
pub fn request_retry(store: &Store, filter: &RetryFilter) -> Result<Vec<String>, StorageError> {
    let mut retried = Vec::new();
    for (doc, value) in store.meta_entries(REJECTED)? {
        let Ok(rejection) = serde_json::from_slice::<Rejection>(&value) else {
            continue;
        };
        let chosen = match filter {
            RetryFilter::All => true,
            RetryFilter::Branch(branch) => rejection.from_branch.as_ref() == Some(branch),
            RetryFilter::Report(id) => rejection.report_id.as_deref() == Some(id.as_str()),
        };
        if chosen {
            store.delete_meta(REJECTED, &doc).wait()?;
            retried.push(rejection.report_id.unwrap_or(doc));
        }
    }
    if !retried.is_empty() {
        let next = retry_generation(store)? + 1;
        store
            .put_meta(RETRY.0, RETRY.1, next.to_string().into_bytes())
            .wait()?;
    }
    Ok(retried)
}

/// Head office's verdict on `report_id` for the branch that asks: another branch's report is
/// `unknown` to it, as is one head office never received.
pub fn verdict(store: &Store, branch: &BranchId, report_id: &str) -> Result<Verdict, StorageError> {
    let unknown = Verdict {
        report_id: report_id.to_owned(),
        status: VerdictStatus::Unknown,
        code: None,
        message: None,
        at: None,
    };
    if let Some(bytes) = store.meta(ARCHIVE, report_id)?
        && let Ok(entry) = serde_json::from_slice::<ArchivedReport>(&bytes)
    {
        if &entry.branch_id != branch {
            return Ok(unknown);
        }
        return Ok(Verdict {
            status: VerdictStatus::Verified,
            at: Some(entry.verified_at.as_millis()),
            ..unknown
        });
    }
    let Some(doc) = report_doc_id(report_id) else {
        return Ok(unknown);
    };
    for (namespace, status) in [
        (REJECTED, VerdictStatus::Rejected),
        (PENDING, VerdictStatus::Pending),
    ] {
        if let Some(bytes) = store.meta(namespace, &doc.to_string())?
            && let Ok(r) = serde_json::from_slice::<Rejection>(&bytes)
        {
            if r.from_branch.as_ref() != Some(branch) {
                return Ok(unknown);
            }
            return Ok(Verdict {
                status,
                code: Some(r.code),
                message: Some(r.message),
                at: Some(r.at.as_millis()),
                ..unknown
            });
        }
    }
    Ok(unknown)
}

fn index_key(kind: &str, value: &str) -> String {
    format!("by_{kind}:{value}")
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

/// The trust a report is checked against: every enrolled branch key, and the device the
/// report's branch attests to.
fn trust_for(
    state: &HeadOffice,
    doc: &ReportDoc,
    branch: &BranchId,
) -> Result<TrustStore, VerifyError> {
    trust_from(&state.node.registry_read(), doc, branch)
}

/// The trust a report is checked against, from head office's records: every enrolled branch
/// key, and the device `doc`'s attestation names if `branch`'s enrolled key signed it.
pub fn trust_from(
    registry: &Registry,
    doc: &ReportDoc,
    branch: &BranchId,
) -> Result<TrustStore, VerifyError> {
    let mut trust = TrustStore::new();
    for record in registry.branches() {
        match PublicKey::from_hex(&record.public_key) {
            Ok(key) => trust.add_branch_key(record.branch_id.clone(), key),
            Err(e) => {
                tracing::warn!(branch = %record.branch_id, error = %e, "enrolled branch has a bad key")
            }
        }
    }
    let attested = &doc.attestation.record;
    if &attested.branch_id != branch {
        return Err(VerifyError::DeviceNotForBranch {
            device_id: attested.device_id.clone(),
            device_branch: attested.branch_id.clone(),
            branch_id: branch.clone(),
        });
    }
    let key = registry
        .branch_key(branch)
        .ok_or_else(|| VerifyError::UnknownKey {
            key_id: doc.attestation.key_id.clone(),
        })?;
    doc.attestation.verify(&key)?;
    trust
        .add_device(attested.clone())
        .map_err(|e| VerifyError::Malformed(format!("attested device key: {e}")))?;
    Ok(trust)
}

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
    let archived_from = state
        .node
        .store
        .meta(ARCHIVE, &report_id)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<ArchivedReport>(&b).ok())
        .map(|a| a.report_doc);
    if archived_from == Some(doc) {
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
    let checked = trust_for(state, report_doc, &report.body.branch_id)
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
        let _ = state
            .node
            .store
            .put_meta(PENDING, &doc.to_string(), encode(&pending))
            .await;
        return Some(job_id);
    };
    let document_check = read_job_at(&job_doc, &heads)
        .map_err(|e| VerifyError::Malformed(format!("job document at the report's heads: {e}")))
        .and_then(|job| {
            TrustStore::verify_against_document(&report, &job, report.body.heads.clone())
        });
    if let Err(e) = document_check {
        reject(state, doc, Some(&report), &e).await;
        return None;
    }
    if archived_from.is_some() {
        // A genuine second copy of an archived report: archived once, by its id. If this
        // copy waited for its job before, it waits no more.
        tracing::info!(report = report_id, %doc, "report already archived from another document");
        let _ = state
            .node
            .store
            .delete_meta(PENDING, &doc.to_string())
            .await;
        return None;
    }
    let job = &verified.job;
    let entry = ArchivedReport {
        report_id: report_id.clone(),
        report_doc: doc,
        branch_id: report.body.branch_id.clone(),
        job_id,
        month: match report.body.signed_at.month() {
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
    if let Err(e) = archive(&state.node.store, &entry).await {
        tracing::error!(report = report_id, error = %e, "cannot archive a verified report");
        return None;
    }
    state.metrics.reports_verified.inc();
    tracing::info!(report = report_id, branch = %entry.branch_id, "report verified and archived");
    None
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Writes the entry and its indexes, then clears any earlier pending or rejected record.
async fn archive(store: &Store, entry: &ArchivedReport) -> Result<(), StorageError> {
    let id = &entry.report_id;
    // Indexes first: an index entry without an archive entry is skipped by readers, while an
    // archive entry without its indexes would be missing from filtered lists.
    store
        .put_meta(
            &index_key("month", &entry.month.to_string()),
            id,
            Vec::new(),
        )
        .await?;
    store
        .put_meta(&index_key("customer", &entry.customer_id), id, Vec::new())
        .await?;
    store
        .put_meta(&index_key("product", &entry.product_type), id, Vec::new())
        .await?;
    // Out of the waiting and rejected lists before the archive entry appears, so no reader
    // sees a report both archived and waiting. A kill in between leaves the document neither
    // archived nor aside: `receive::unsettled` looks at it again at the next start.
    let doc = entry.report_doc.to_string();
    store.delete_meta(PENDING, &doc).await?;
    store.delete_meta(REJECTED, &doc).await?;
    store.put_meta(ARCHIVE, id, encode(entry)).await
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
    let key = doc.to_string();
    if let Err(e) = state
        .node
        .store
        .put_meta(REJECTED, &key, encode(&rejection))
        .await
    {
        tracing::error!(%doc, error = %e, "cannot record a rejected report");
    }
    let _ = state.node.store.delete_meta(PENDING, &key).await;
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

/// Archived reports matching `filter`, oldest first. An index narrows the scan when the
/// filter names a month, customer or product type.
pub fn archived(store: &Store, filter: &Filter) -> Result<Vec<ArchivedReport>, StorageError> {
    let index = if let Some(m) = &filter.month {
        Some(index_key("month", &m.to_string()))
    } else if let Some(c) = &filter.customer {
        Some(index_key("customer", c))
    } else {
        filter
            .product_type
            .as_ref()
            .map(|p| index_key("product", p))
    };
    let entries = indexed_entries(store, ARCHIVE, index.as_deref())?;
    let mut out: Vec<ArchivedReport> = entries
        .iter()
        .filter_map(|v| serde_json::from_slice(v).ok())
        .filter(|r: &ArchivedReport| {
            filter.month.is_none_or(|m| r.month == m)
                && filter.customer.as_ref().is_none_or(|c| &r.customer_id == c)
                && filter
                    .product_type
                    .as_ref()
                    .is_none_or(|p| &r.product_type == p)
                && filter
                    .branch
                    .as_ref()
                    .is_none_or(|b| r.branch_id.as_str() == b)
        })
        .collect();
    out.sort_by(|a, b| (a.signed_at, &a.report_id).cmp(&(b.signed_at, &b.report_id)));
    Ok(out)
}

/// The values of `namespace`: all of them, or those `index` (a namespace whose keys are keys
/// of `namespace`) names. An index key without its entry is skipped.
pub fn indexed_entries(
    store: &Store,
    namespace: &str,
    index: Option<&str>,
) -> Result<Vec<Vec<u8>>, StorageError> {
    match index {
        Some(ns) => store
            .meta_entries(ns)?
            .into_iter()
            .filter_map(|(key, _)| store.meta(namespace, &key).transpose())
            .collect(),
        None => Ok(store
            .meta_entries(namespace)?
            .into_iter()
            .map(|(_, v)| v)
            .collect()),
    }
}

/// Reports kept aside (`REJECTED`) or waiting (`PENDING`).
pub fn set_aside(store: &Store, namespace: &str) -> Result<Vec<Rejection>, StorageError> {
    let mut out: Vec<Rejection> = store
        .meta_entries(namespace)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect();
    out.sort_by_key(|r| r.at);
    Ok(out)
}

/// Why statistics could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum StatsFailure {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Stats(#[from] StatsError),
    #[error("archived report {0} is unreadable: {1}")]
    Unreadable(String, String),
}

/// R24/R27 for `month`, per branch, from the archive (every verified report not superseded
/// by a later one, so repeat repairs (R4) see earlier months too).
pub fn month_stats(
    store: &Store,
    month: Month,
    repeat_window_days: i64,
) -> Result<Vec<MonthlyStats>, StatsFailure> {
    let all = archived(store, &Filter::default())?;
    // A job reopened and completed again has a newer report naming the one it supersedes:
    // only the newest counts, or the job would count twice.
    let superseded: HashSet<String> = all
        .iter()
        .filter_map(|e| e.report["body"]["supersedes"].as_str().map(str::to_owned))
        .collect();
    let reports = all
        .into_iter()
        .filter(|entry| !superseded.contains(&entry.report_id))
        .map(|entry| {
            let report: SignedReport = serde_json::from_value(entry.report.clone())
                .map_err(|e| StatsFailure::Unreadable(entry.report_id.clone(), e.to_string()))?;
            let job = report
                .job()
                .map_err(|e| StatsFailure::Unreadable(entry.report_id.clone(), e.to_string()))?;
            Ok(ReportedJob {
                report_id: entry.report_id,
                branch_id: entry.branch_id,
                signed_at: entry.signed_at,
                job,
            })
        })
        .collect::<Result<Vec<_>, StatsFailure>>()?;
    Ok(monthly(&reports, month, repeat_window_days)?)
}

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
use crate::http::blocking;
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
    let store = Arc::clone(&state.node.store);
    let reports = blocking(move || archived(&store, &filter)).await?;
    Ok(Json(ReportList {
        reports: reports.iter().map(summary).collect(),
    }))
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
    let store = Arc::clone(&state.node.store);
    let key = id.clone();
    let found = blocking(move || {
        if let Some(bytes) = store.meta(ARCHIVE, &key)? {
            return Ok(Some(("verified", bytes)));
        }
        for (status, ns) in [("rejected", REJECTED), ("pending", PENDING)] {
            for r in set_aside(&store, ns)? {
                if r.report_id.as_deref() == Some(key.as_str()) {
                    return Ok(Some((status, encode(&r))));
                }
            }
        }
        Ok(None)
    })
    .await?;
    let Some((status, bytes)) = found else {
        return Err(ApiError::not_found(
            "unknown_report",
            format!("head office has no report {id}"),
        ));
    };
    let mut value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::internal("corrupt_record", e))?;
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
    let store = Arc::clone(&state.node.store);
    let key = id.clone();
    let entry = blocking(move || store.meta(ARCHIVE, &key))
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_report", format!("no verified report {id}")))?;
    let entry: ArchivedReport =
        serde_json::from_slice(&entry).map_err(|e| ApiError::internal("corrupt_record", e))?;
    let bytes = fieldsync_shared::canonical::to_canonical_bytes(&entry.report)
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
    let store = Arc::clone(&state.node.store);
    let (rejected, pending) =
        blocking(move || Ok((set_aside(&store, REJECTED)?, set_aside(&store, PENDING)?))).await?;
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
    let store = Arc::clone(&state.node.store);
    let verdicts = blocking(move || {
        asked
            .reports
            .iter()
            .map(|id| verdict(&store, &branch, id))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
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
    let store = Arc::clone(&state.node.store);
    let window = state.node.config.repeat_window_days;
    let stats = tokio::task::spawn_blocking(move || month_stats(&store, month, window))
        .await
        .map_err(|e| ApiError::internal("stats_failed", e))?
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
    let store = Arc::clone(&state.node.store);
    let key = id.clone();
    // The archive entry holds the report as received; its canonical form is the signed JSON
    // (as `export` answers it).
    crate::http::pdf::download(id, asked, "verified report", move || {
        Ok(store
            .meta(ARCHIVE, &key)?
            .and_then(|bytes| serde_json::from_slice::<ArchivedReport>(&bytes).ok())
            .and_then(|entry| fieldsync_shared::canonical::to_canonical_bytes(&entry.report).ok()))
    })
    .await
}

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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_shared::complaint_doc::ComplaintDoc;
use fieldsync_shared::ids::{BranchId, DocumentId};
use fieldsync_shared::job::doc::read_job_at;
use fieldsync_shared::keys::PublicKey;
use fieldsync_shared::report::{SignedReport, TrustStore, VerifyError};
use fieldsync_shared::report_doc::{ReportDoc, report_doc_id};
use fieldsync_shared::stats::{MonthlyStats, ReportedJob, StatsError, monthly};
use fieldsync_shared::time::{Month, Timestamp};
use fieldsync_storage::{StorageError, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;
use crate::complaint_archive;

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

fn index_key(kind: &str, value: &str) -> String {
    format!("by_{kind}:{value}")
}

/// Runs until the hub stops: looks at every document that changes.
pub async fn run(state: Arc<AppState>) {
    let mut changes = state.hub.subscribe_changes();
    // Report documents waiting for their job, by job.
    let mut waiting: HashMap<DocumentId, HashSet<DocumentId>> = HashMap::new();
    match load_pending(&state.store) {
        Ok(pending) => {
            for (report_doc, job) in pending {
                waiting.entry(job).or_default().insert(report_doc);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the pending reports"),
    }
    // Look at the waiting ones once: their job may have arrived before a restart.
    let jobs: Vec<DocumentId> = waiting.keys().copied().collect();
    for job in jobs {
        recheck(&state, &mut waiting, job).await;
    }
    // A document stored just before a kill was never looked at, yet its branch was told head
    // office holds it and will not offer it again, and nothing need ever change it: look once
    // at every stored document whose report is neither archived nor kept aside.
    match unsettled(&state.store) {
        Ok(docs) => {
            for doc in docs {
                consider(&state, &mut waiting, doc).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list the stored documents to verify"),
    }
    loop {
        let doc = match changes.recv().await {
            Ok(doc) => doc,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "verifier fell behind; rescanning stored documents");
                let ids = state.store.doc_ids().unwrap_or_default();
                for id in ids.iter().filter_map(|i| i.parse().ok()) {
                    consider(&state, &mut waiting, id).await;
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        consider(&state, &mut waiting, doc).await;
    }
}

/// Every stored document except the report documents already archived or kept aside (a
/// report document never changes once written, so its outcome stands): job documents are
/// loaded and passed over quickly, complaint documents are archived by revision, so looking
/// at them again archives nothing twice.
fn unsettled(store: &Store) -> Result<Vec<DocumentId>, StorageError> {
    let mut settled: HashSet<DocumentId> = store
        .meta_entries(REJECTED)?
        .into_iter()
        .filter_map(|(doc, _)| doc.parse().ok())
        .collect();
    // The archive is keyed by report id, from which the report document's id derives.
    settled.extend(
        store
            .meta_entries(ARCHIVE)?
            .into_iter()
            .filter_map(|(report_id, _)| report_doc_id(&report_id)),
    );
    Ok(store
        .doc_ids()?
        .iter()
        .filter_map(|d| d.parse::<DocumentId>().ok())
        .filter(|d| !settled.contains(d))
        .collect())
}

fn load_pending(store: &Store) -> Result<Vec<(DocumentId, DocumentId)>, StorageError> {
    Ok(store
        .meta_entries(PENDING)?
        .into_iter()
        .filter_map(|(_, v)| {
            let r: Rejection = serde_json::from_slice(&v).ok()?;
            Some((r.report_doc, r.job_id?))
        })
        .collect())
}

async fn consider(
    state: &Arc<AppState>,
    waiting: &mut HashMap<DocumentId, HashSet<DocumentId>>,
    doc: DocumentId,
) {
    if waiting.contains_key(&doc) {
        recheck(state, waiting, doc).await;
    }
    let Some(am) = load(state, doc).await else {
        return;
    };
    match ReportDoc::from_document(&am) {
        Ok(Some(report)) => {
            if let Some(job) = process(state, doc, &report).await {
                waiting.entry(job).or_default().insert(doc);
            }
            return;
        }
        Ok(None) => {}
        Err(e) => {
            reject(state, doc, None, &e).await;
            return;
        }
    }
    match ComplaintDoc::from_document(&am) {
        Ok(Some(complaint)) => complaint_archive::process(state, doc, &complaint).await,
        Ok(None) => {}
        Err(e) => complaint_archive::reject_unreadable(state, doc, &e).await,
    }
}

async fn recheck(
    state: &Arc<AppState>,
    waiting: &mut HashMap<DocumentId, HashSet<DocumentId>>,
    job: DocumentId,
) {
    let Some(docs) = waiting.remove(&job) else {
        return;
    };
    for report_doc in docs {
        let Some(am) = load(state, report_doc).await else {
            continue;
        };
        if let Ok(Some(report)) = ReportDoc::from_document(&am)
            && let Some(job) = process(state, report_doc, &report).await
        {
            waiting.entry(job).or_default().insert(report_doc);
        }
    }
}

async fn load(state: &Arc<AppState>, doc: DocumentId) -> Option<Automerge> {
    match state.load_document(doc).await {
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
    state: &AppState,
    doc: &ReportDoc,
    branch: &BranchId,
) -> Result<TrustStore, VerifyError> {
    let registry = state.registry_read();
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
async fn process(
    state: &Arc<AppState>,
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
        .store
        .meta(ARCHIVE, &report_id)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<ArchivedReport>(&b).ok())
        .map(|a| a.report_doc);
    if archived_from == Some(doc) {
        return None;
    }
    let from = state.registry_read().owner(&doc).cloned();
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
    let same_branch = state.registry_read().owner(&job_id) == Some(&report.body.branch_id);
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
            at: state.clock.now(),
        };
        let _ = state
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
        let _ = state.store.delete_meta(PENDING, &doc.to_string()).await;
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
        verified_at: state.clock.now(),
        report: serde_json::from_slice(&report_doc.report_json).unwrap_or(Value::Null),
    };
    if let Err(e) = archive(&state.store, &entry).await {
        tracing::error!(report = report_id, error = %e, "cannot archive a verified report");
        return None;
    }
    state
        .metrics
        .reports_verified
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    store.put_meta(ARCHIVE, id, encode(entry)).await?;
    let doc = entry.report_doc.to_string();
    store.delete_meta(PENDING, &doc).await?;
    store.delete_meta(REJECTED, &doc).await
}

async fn reject(
    state: &Arc<AppState>,
    doc: DocumentId,
    report: Option<&SignedReport>,
    e: &VerifyError,
) {
    let rejection = Rejection {
        report_doc: doc,
        report_id: report.map(|r| r.body.report_id.clone()),
        job_id: report.map(|r| r.body.job_id),
        from_branch: state.registry_read().owner(&doc).cloned(),
        code: e.code().to_owned(),
        message: e.to_string(),
        at: state.clock.now(),
    };
    tracing::warn!(%doc, code = rejection.code, reason = rejection.message, "report kept aside");
    state
        .metrics
        .reports_rejected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = doc.to_string();
    if let Err(e) = state
        .store
        .put_meta(REJECTED, &key, encode(&rejection))
        .await
    {
        tracing::error!(%doc, error = %e, "cannot record a rejected report");
    }
    let _ = state.store.delete_meta(PENDING, &key).await;
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

fn stat_rows(s: &MonthlyStats) -> Vec<(String, String)> {
    let named: Vec<(&str, String)> = vec![
        ("reports", s.summary.reports.to_string()),
        ("installation jobs", s.installation.jobs.to_string()),
        (
            "installation person-trips",
            s.installation.person_trips.to_string(),
        ),
        (
            "installation person-days",
            s.installation.person_days.to_string(),
        ),
        ("installation cost", s.installation.cost.to_string()),
        (
            "installation jobs with training (R16)",
            s.summary.installations_with_training.to_string(),
        ),
        ("service jobs", s.service.jobs.to_string()),
        ("service person-trips", s.service.person_trips.to_string()),
        ("service person-days", s.service.person_days.to_string()),
        ("service cost", s.service.cost.to_string()),
        ("materials cost", s.materials_cost.to_string()),
        ("transport cost", s.transport_cost.to_string()),
        (
            "total cost excl. installation fees",
            s.total_cost_excluding_installation_fees.to_string(),
        ),
        ("warranty jobs", s.summary.warranty_jobs.to_string()),
        (
            "billed to customers",
            s.summary.billed_to_customers.to_string(),
        ),
        (
            "mean satisfaction (attitude)",
            s.summary
                .mean_attitude
                .map_or_else(|| "not answered".to_owned(), |m| format!("{m:.2}")),
        ),
        (
            "surveys not answered (R9)",
            s.summary.surveys_not_answered.to_string(),
        ),
        ("repeat repairs (R4)", s.repeat_repairs.len().to_string()),
    ];
    let mut rows: Vec<(String, String)> = named
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    for f in &s.fault_causes {
        rows.push((
            format!("fault cause: {} / {}", f.product_type, f.fault),
            f.count.to_string(),
        ));
    }
    rows
}

/// One block of a monthly report: whose it is, its heading in a table, and its rows.
#[derive(Debug, Clone)]
pub struct MetricBlock {
    pub branch: String,
    pub month: Month,
    pub heading: String,
    pub rows: Vec<(String, String)>,
}

/// Blocks as `csv` (`branch,month,metric,value`) or a text `table` (`empty` when there are
/// none); the monthly statistics (R24) and the complaint report (R22) print through it.
pub fn render_blocks(blocks: &[MetricBlock], format: &str, empty: &str) -> Result<String, String> {
    let mut out = String::new();
    match format {
        "csv" => {
            out.push_str("branch,month,metric,value\n");
            for b in blocks {
                for (name, value) in &b.rows {
                    out.push_str(&format!("{},{},{name},{value}\n", b.branch, b.month));
                }
            }
        }
        "table" => {
            if blocks.is_empty() {
                out.push_str(empty);
            }
            for b in blocks {
                out.push_str(&b.heading);
                out.push('\n');
                for (name, value) in &b.rows {
                    out.push_str(&format!("  {name:<38} {value:>14}\n"));
                }
            }
        }
        other => return Err(format!("unknown format {other:?}: use table, json or csv")),
    }
    Ok(out)
}

/// Statistics as `table`, `csv` or `json`.
pub fn render_stats(stats: &[MonthlyStats], format: &str) -> Result<String, String> {
    if format == "json" {
        return serde_json::to_string_pretty(stats).map_err(|e| e.to_string());
    }
    let blocks: Vec<MetricBlock> = stats
        .iter()
        .map(|s| MetricBlock {
            branch: s.branch_id.to_string(),
            month: s.month,
            heading: format!("branch {}, {}", s.branch_id, s.month),
            rows: stat_rows(s),
        })
        .collect();
    render_blocks(&blocks, format, "no verified reports in this month\n")
}

// ---- HTTP ------------------------------------------------------------------------------

// Head office's HTTP API: desk tokens, any role may read. Mounted with the desk API
// (`desk::api`), so it is in the same OpenAPI document; an edge answers 404 not_head_office.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use utoipa::{IntoParams, ToSchema};

use crate::desk::intake::query;
use crate::desk::wire::ErrorBody;
use crate::desk::{EVERYONE, authorize};
use crate::error::ApiError;

/// Any desk role may read head office's archive; an edge has none (404 `not_head_office`).
pub(crate) fn read_archive(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    authorize(state, headers, EVERYONE, "read the archive")?;
    head_office_only(state)
}

pub fn head_office_only(state: &AppState) -> Result<(), ApiError> {
    if state.config.role == crate::config::Role::HeadOffice {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "not_head_office",
            "the archive is kept at head office; this server is a branch edge",
        ))
    }
}

/// Runs a storage read on the blocking pool; a failure is a 500 `storage_error`.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))
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
        (status = 404, body = ErrorBody, description = "not_head_office"),
    ),
)]
pub async fn list_reports(
    State(state): State<Arc<AppState>>,
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
    let store = Arc::clone(&state.store);
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
        (status = 404, body = ErrorBody, description = "unknown_report, not_head_office"),
    ),
)]
pub async fn get_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read_archive(&state, &headers)?;
    check_id(&id)?;
    let store = Arc::clone(&state.store);
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
        (status = 404, body = ErrorBody, description = "unknown_report, not_head_office"),
    ),
)]
pub async fn export_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    read_archive(&state, &headers)?;
    check_id(&id)?;
    let store = Arc::clone(&state.store);
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
        (status = 404, body = ErrorBody, description = "not_head_office"),
    ),
)]
pub async fn list_rejected(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    read_archive(&state, &headers)?;
    let store = Arc::clone(&state.store);
    let (rejected, pending) =
        blocking(move || Ok((set_aside(&store, REJECTED)?, set_aside(&store, PENDING)?))).await?;
    Ok(Json(
        serde_json::json!({ "rejected": rejected, "pending": pending }),
    ))
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
        (status = 404, body = ErrorBody, description = "not_head_office"),
    ),
)]
pub async fn get_stats(
    State(state): State<Arc<AppState>>,
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
    let store = Arc::clone(&state.store);
    let window = state.config.repeat_window_days;
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

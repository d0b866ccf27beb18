//! Head office's complaint archive (issue 6; R20–R23) and the monthly complaint report across
//! branches (R22).
//!
//! Each branch writes every revision of a complaint into its complaint document
//! (`shared::complaint_doc`, written by `desk::complaints::publish`, carried by the upstream
//! link like jobs and report documents). When one arrives or changes here, it is checked in
//! order: the branch that sent it is the branch it names (the first sender owns a document:
//! `registry::Registry::adopt`); its id is the one derived from branch and complaint id; it
//! is signed by that branch's enrolled key (`verify_strict`); the record reads as a
//! complaint with the id it claims. A revision that passes replaces an older one; one that
//! fails is kept aside with the reason and changes nothing archived.
//!
//! Storage ([`HeadOfficeStore`]): one row per complaint (`<branch>/<complaint id>` →
//! [`ArchivedComplaint`], its month of receipt a column), replaced only by a higher revision
//! (in the database, so two processes cannot go back), and complaint documents kept aside
//! (document id → [`ComplaintRejection`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use fieldsync_shared::complaint_doc::{ComplaintDoc, ComplaintDocError};
use fieldsync_shared::ids::{BranchId, DocumentId};
use fieldsync_shared::keys::KeyId;
use fieldsync_shared::time::Month;
use fieldsync_storage::ComplaintRow;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::edge::desk::complaints::{Complaint, ComplaintSummary, ComplaintView, summarize};
use crate::head_office::HeadOffice;
use crate::head_office::archive::{MetricBlock, read_archive, render_blocks, unavailable};
use crate::head_office::store::{HeadOfficeStore, StoreError};
use crate::http::error::ApiError;
use crate::http::query;
use crate::http::wire::{ErrorBody, Instant};

fn archive_key(branch: &BranchId, complaint_id: &str) -> String {
    format!("{branch}/{complaint_id}")
}

/// A complaint as head office holds it: the latest verified revision from its branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchivedComplaint {
    pub branch_id: BranchId,
    pub document: DocumentId,
    pub revision: u64,
    pub month: Month,
    pub key_id: KeyId,
    pub verified_at: Instant,
    pub complaint: Complaint,
}

/// An archived complaint on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArchivedComplaintView {
    #[schema(value_type = String)]
    pub branch_id: BranchId,
    /// The complaint document it came in.
    #[schema(value_type = String)]
    pub document: DocumentId,
    /// The desk record's revision at the branch (one more per R21 step).
    pub revision: u64,
    /// The month the complaint was received in (R22 counts by it).
    #[schema(value_type = String, example = "2026-11")]
    pub month: Month,
    /// The branch key that signed this revision.
    #[schema(value_type = String)]
    pub key_id: KeyId,
    pub verified_at: Instant,
    /// The complaint's full record (R23) with where it stands (R21).
    pub complaint: ComplaintView,
}

impl From<ArchivedComplaint> for ArchivedComplaintView {
    fn from(a: ArchivedComplaint) -> Self {
        Self {
            branch_id: a.branch_id,
            document: a.document,
            revision: a.revision,
            month: a.month,
            key_id: a.key_id,
            verified_at: a.verified_at,
            complaint: a.complaint.into(),
        }
    }
}

/// Why a complaint document is not archived.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComplaintRejection {
    #[schema(value_type = String)]
    pub document: DocumentId,
    /// The branch that sent the document.
    #[schema(value_type = Option<String>)]
    pub from_branch: Option<BranchId>,
    pub complaint_id: Option<String>,
    pub revision: Option<u64>,
    /// `malformed`, `unknown_key`, `bad_branch_signature`, `wrong_document`, `wrong_branch`.
    pub code: String,
    pub message: String,
    pub at: Instant,
}

fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A complaint document arrived or changed: verify it, then archive or keep it aside.
pub async fn process(state: &Arc<HeadOffice>, doc: DocumentId, complaint: &ComplaintDoc) {
    let from = state.node.registry_read().owner(&doc).cloned();
    let checked = verify(state, doc, complaint, from.as_ref());
    let record = match checked {
        Ok(record) => record,
        Err((code, message)) => {
            reject(state, doc, from, complaint, code, message).await;
            return;
        }
    };
    let key = archive_key(&complaint.branch_id, &complaint.complaint_id);
    let stored = state.store.archived_complaint(&key).await.ok().flatten();
    let revision = i64::try_from(complaint.revision).unwrap_or(i64::MAX);
    if stored.is_some_and(|s| s.revision >= revision) {
        return;
    }
    // R22: the month in head office's zone (`timezone`).
    let month = match state.node.config.timezone.month_of(record.received_at.0) {
        Ok(m) => m,
        Err(e) => {
            let message = format!("received_at: {e}");
            reject(state, doc, from, complaint, "malformed", message).await;
            return;
        }
    };
    let entry = ArchivedComplaint {
        branch_id: complaint.branch_id.clone(),
        document: doc,
        revision: complaint.revision,
        month,
        key_id: complaint.key_id.clone(),
        verified_at: Instant(state.node.clock.now()),
        complaint: record,
    };
    // Stored only over a lower revision, checked again by the database: another process may
    // have archived a later one since the read above.
    let row = ComplaintRow {
        key: key.clone(),
        branch_id: entry.branch_id.to_string(),
        month: month.to_string(),
        revision,
        body: encode(&entry),
    };
    if let Err(e) = state.store.archive_complaint(row, &doc.to_string()).await {
        tracing::error!(complaint = key, error = %e, "cannot archive a verified complaint");
        return;
    }
    state.metrics.complaints_archived.inc();
    tracing::info!(
        complaint = key,
        revision = complaint.revision,
        "complaint verified and archived"
    );
}

fn verify(
    state: &HeadOffice,
    doc: DocumentId,
    complaint: &ComplaintDoc,
    from: Option<&BranchId>,
) -> Result<Complaint, (&'static str, String)> {
    if from != Some(&complaint.branch_id) {
        return Err((
            "wrong_branch",
            format!(
                "sent by branch {} but the complaint is branch {}'s",
                from.map_or("(unknown)".to_owned(), ToString::to_string),
                complaint.branch_id
            ),
        ));
    }
    let key = state
        .node
        .registry_read()
        .branch_key(&complaint.branch_id)
        .ok_or_else(|| {
            let e = ComplaintDocError::UnknownKey {
                key_id: complaint.key_id.clone(),
            };
            (e.code(), e.to_string())
        })?;
    let value = complaint
        .verify(doc, &key)
        .map_err(|e| (e.code(), e.to_string()))?;
    let record: Complaint = serde_json::from_value(value)
        .map_err(|e| ("malformed", format!("the record is not a complaint: {e}")))?;
    if record.id != complaint.complaint_id {
        return Err((
            "malformed",
            format!(
                "the record is complaint {} but the document says {}",
                record.id, complaint.complaint_id
            ),
        ));
    }
    Ok(record)
}

async fn reject(
    state: &Arc<HeadOffice>,
    doc: DocumentId,
    from: Option<BranchId>,
    complaint: &ComplaintDoc,
    code: &'static str,
    message: String,
) {
    tracing::warn!(%doc, code, reason = message, "complaint kept aside");
    state.metrics.complaints_rejected.inc();
    let rejection = ComplaintRejection {
        document: doc,
        from_branch: from,
        complaint_id: Some(complaint.complaint_id.clone()),
        revision: Some(complaint.revision),
        code: code.to_owned(),
        message,
        at: Instant(state.node.clock.now()),
    };
    record_rejection(state, &rejection).await;
}

/// A document of the complaint kind that cannot even be read.
pub async fn reject_unreadable(state: &Arc<HeadOffice>, doc: DocumentId, e: &ComplaintDocError) {
    tracing::warn!(%doc, error = %e, "complaint document kept aside");
    state.metrics.complaints_rejected.inc();
    let rejection = ComplaintRejection {
        document: doc,
        from_branch: state.node.registry_read().owner(&doc).cloned(),
        complaint_id: None,
        revision: None,
        code: e.code().to_owned(),
        message: e.to_string(),
        at: Instant(state.node.clock.now()),
    };
    record_rejection(state, &rejection).await;
}

async fn record_rejection(state: &HeadOffice, rejection: &ComplaintRejection) {
    let key = rejection.document.to_string();
    if let Err(e) = state
        .store
        .reject_complaint(&key, rejection.at.0.as_millis(), encode(rejection))
        .await
    {
        tracing::error!(doc = key, error = %e, "cannot record a rejected complaint");
    }
}

// ---- reading ---------------------------------------------------------------------------

/// Archived complaints, received in `month` if given, from `branch` if given, oldest first.
pub async fn archived_complaints(
    store: &HeadOfficeStore,
    month: Option<Month>,
    branch: Option<&str>,
) -> Result<Vec<ArchivedComplaint>, StoreError> {
    let rows = store
        .archived_complaints(month.map(|m| m.to_string()), branch.map(str::to_owned))
        .await?;
    let mut out: Vec<ArchivedComplaint> = rows
        .iter()
        .filter_map(|row| serde_json::from_str(&row.body).ok())
        .collect();
    out.sort_by(|a, b| {
        (a.complaint.received_at, &a.branch_id).cmp(&(b.complaint.received_at, &b.branch_id))
    });
    Ok(out)
}

/// R22 at head office: one branch's month.
#[derive(Debug, Serialize, ToSchema)]
pub struct BranchComplaints {
    #[schema(value_type = String)]
    pub branch_id: BranchId,
    #[serde(flatten)]
    pub summary: ComplaintSummary,
}

/// R22 at head office: every branch's month and the total across branches.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintReport {
    #[schema(value_type = String)]
    pub month: Month,
    /// Each branch with complaints or verified reports in the month.
    pub branches: Vec<BranchComplaints>,
    /// All branches together.
    pub total: ComplaintSummary,
}

/// R22 for `month` across branches: complaints received in the month per service report
/// verified in it (the R24 count of verified, not superseded, service reports signed in the
/// month): the one definition of `fieldsync_shared::stats::complaint_rate`.
pub async fn complaint_report(
    store: &HeadOfficeStore,
    month: Month,
    repeat_window_days: i64,
    zone: &fieldsync_shared::zone::Zone,
) -> Result<ComplaintReport, crate::head_office::archive::StatsFailure> {
    let stats =
        crate::head_office::archive::month_stats(store, month, repeat_window_days, zone).await?;
    complaint_report_for(store, month, &stats).await
}

/// [`complaint_report`] over the month's statistics already computed (`stats`: `month_stats`
/// of the same month), so a page that shows both reads the month once.
pub async fn complaint_report_for(
    store: &HeadOfficeStore,
    month: Month,
    stats: &[fieldsync_shared::stats::MonthlyStats],
) -> Result<ComplaintReport, crate::head_office::archive::StatsFailure> {
    let complaints = archived_complaints(store, Some(month), None).await?;
    let reported: BTreeMap<BranchId, usize> = stats
        .iter()
        .map(|s| (s.branch_id.clone(), s.summary.reports as usize))
        .collect();
    let mut by_branch: BTreeMap<BranchId, Vec<Complaint>> = BTreeMap::new();
    for c in complaints {
        by_branch.entry(c.branch_id).or_default().push(c.complaint);
    }
    let branch_ids: BTreeSet<BranchId> = by_branch.keys().chain(reported.keys()).cloned().collect();
    let mut all = Vec::new();
    let mut branches = Vec::new();
    for branch_id in branch_ids {
        let list = by_branch.remove(&branch_id).unwrap_or_default();
        let jobs = reported.get(&branch_id).copied().unwrap_or(0);
        branches.push(BranchComplaints {
            summary: summarize(month, &list, jobs),
            branch_id,
        });
        all.extend(list);
    }
    let total = summarize(month, &all, reported.values().sum());
    Ok(ComplaintReport {
        month,
        branches,
        total,
    })
}

// ---- HTTP ------------------------------------------------------------------------------

/// Query of `GET /api/archive/complaints`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplaintArchiveQuery {
    /// Only complaints received in this month (YYYY-MM, UTC).
    #[param(value_type = Option<String>, example = "2026-11")]
    pub month: Option<Month>,
    /// Only this branch's complaints.
    pub branch: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArchivedComplaintList {
    pub complaints: Vec<ArchivedComplaintView>,
}

/// Head office: the complaints branches sent.
#[utoipa::path(
    get,
    path = "/api/archive/complaints",
    operation_id = "archive_list_complaints",
    tag = "head office",
    description = "Head office only. R23: the complaints every branch sent, each its latest \
        verified revision. Roles: dispatcher, manager, analyst.",
    params(ComplaintArchiveQuery),
    responses(
        (status = 200, body = ArchivedComplaintList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn list_archived(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<ComplaintArchiveQuery>, QueryRejection>,
) -> Result<Json<ArchivedComplaintList>, ApiError> {
    read_archive(&state, &headers)?;
    let q = query(q)?;
    let complaints = archived_complaints(&state.store, q.month, q.branch.as_deref())
        .await
        .map_err(unavailable)?;
    Ok(Json(ArchivedComplaintList {
        complaints: complaints.into_iter().map(Into::into).collect(),
    }))
}

/// Head office: one complaint's full record as its branch last sent it.
#[utoipa::path(
    get,
    path = "/api/archive/complaints/{branch}/{id}",
    operation_id = "archive_get_complaint",
    tag = "head office",
    description = "Head office only. R23: one complaint's full record, as its branch last \
        sent it. Roles: dispatcher, manager, analyst.",
    params(
        ("branch" = String, Path, description = "The branch id"),
        ("id" = String, Path, description = "The complaint id at that branch"),
    ),
    responses(
        (status = 200, body = ArchivedComplaintView),
        (status = 404, body = ErrorBody, description = "unknown_complaint"),
    ),
)]
pub async fn get_archived(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    Path((branch, id)): Path<(String, String)>,
) -> Result<Json<ArchivedComplaintView>, ApiError> {
    read_archive(&state, &headers)?;
    let key = format!("{branch}/{id}");
    let found = state
        .store
        .archived_complaint(&key)
        .await
        .map_err(unavailable)?;
    let row = found.ok_or_else(|| {
        ApiError::not_found(
            "unknown_complaint",
            format!("head office has no complaint {id:?} from branch {branch:?}"),
        )
    })?;
    let entry: ArchivedComplaint =
        serde_json::from_str(&row.body).map_err(|e| ApiError::internal("corrupt_record", e))?;
    Ok(Json(entry.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintRejectionList {
    pub rejected: Vec<ComplaintRejection>,
}

/// Head office: complaint documents kept aside, with the reason.
#[utoipa::path(
    get,
    path = "/api/archive/complaints/rejected",
    operation_id = "archive_list_rejected_complaints",
    tag = "head office",
    description = "Head office only. Complaint documents that failed verification, with the \
        reason; a later revision that verifies takes the complaint out of this list. Roles: \
        dispatcher, manager, analyst.",
    responses(
        (status = 200, body = ComplaintRejectionList),
    ),
)]
pub async fn list_rejected(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
) -> Result<Json<ComplaintRejectionList>, ApiError> {
    read_archive(&state, &headers)?;
    let mut rejected: Vec<ComplaintRejection> = state
        .store
        .rejected_complaints()
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter_map(|body| serde_json::from_str(&body).ok())
        .collect();
    rejected.sort_by_key(|r| r.at);
    Ok(Json(ComplaintRejectionList { rejected }))
}

/// Query of `GET /api/stats/complaints`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplaintStatsQuery {
    /// The month (YYYY-MM, UTC) of the complaints' receipt.
    #[param(value_type = String, example = "2026-11")]
    pub month: Month,
}

/// Head office: R22, the month's complaint rate and attribution per branch and in total.
#[utoipa::path(
    get,
    path = "/api/stats/complaints",
    operation_id = "archive_complaint_stats",
    tag = "head office",
    description = "Head office only. R22: the month's complaints per branch and across \
        branches: count, rate per job reported in the month (verified service reports signed \
        in it, as R24 counts them), attribution, category, open, judged valid. Roles: \
        dispatcher, manager, analyst.",
    params(ComplaintStatsQuery),
    responses(
        (status = 200, body = ComplaintReport),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn complaint_stats(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<ComplaintStatsQuery>, QueryRejection>,
) -> Result<Json<ComplaintReport>, ApiError> {
    read_archive(&state, &headers)?;
    let month = query(q)?.month;
    let window = state.node.config.repeat_window_days;
    let report = complaint_report(&state.store, month, window, &state.node.config.timezone)
        .await
        .map_err(|e| ApiError::internal("stats_failed", e))?;
    Ok(Json(report))
}

// ---- rendering -------------------------------------------------------------------------

fn summary_rows(s: &ComplaintSummary) -> Vec<(String, String)> {
    let mut rows = vec![
        ("complaints".to_owned(), s.complaints.to_string()),
        (
            "service reports verified".to_owned(),
            s.reports_verified.to_string(),
        ),
        (
            "complaint rate (per report verified)".to_owned(),
            s.rate.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
        ),
    ];
    for (attribution, n) in &s.by_attribution {
        rows.push((format!("attributed to {attribution}"), n.to_string()));
    }
    for (category, n) in &s.by_category {
        rows.push((format!("category {category}"), n.to_string()));
    }
    rows.push(("judged valid".to_owned(), s.valid.to_string()));
    rows.push(("judged not valid".to_owned(), s.not_valid.to_string()));
    rows.push(("still open (R21 steps)".to_owned(), s.open.to_string()));
    rows
}

/// The R22 report as `table`, `csv` or `json`.
pub fn render_complaints(report: &ComplaintReport, format: &str) -> Result<String, String> {
    if format == "json" {
        return serde_json::to_string_pretty(report).map_err(|e| e.to_string());
    }
    let blocks: Vec<MetricBlock> = report
        .branches
        .iter()
        .map(|b| (b.branch_id.to_string(), &b.summary))
        .chain(std::iter::once(("all branches".to_owned(), &report.total)))
        .map(|(branch, s)| MetricBlock {
            heading: format!("complaints (R22), {branch}, {}", report.month),
            month: report.month,
            rows: summary_rows(s),
            branch,
        })
        .collect();
    render_blocks(
        &blocks,
        format,
        "",
        &[fieldsync_shared::stats::COMPLAINT_RATE_DEFINITION],
    )
}

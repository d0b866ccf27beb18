//! Approvals (R12, R18, R31): a technician asks in the job document (`shared::job::approvals`),
//! the desk lists what is waiting, a manager decides, and the decision is written back into
//! the job document so the device shows it.
//!
//! The queue is listed from [`mirror`], the approvals of every job as read from the stored
//! job documents (what the server has promised to hold), kept current from the hub's change
//! feed: a listing loads no document, and the queue differs from the stored documents only
//! while a change is on its way through the feed. A decision is written into the job document
//! (the document is the truth) and the job is read again into the mirror before the call
//! returns, so the next listing shows it.

pub mod mirror;

use std::sync::Arc;
use std::time::Duration;

use automerge::Automerge;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::TimelineEvent;
use fieldsync_shared::job::approvals::{Approval, ApprovalKind, Decision, decide, read_approvals};
use fieldsync_shared::sync::{LocalEdit, edit_via_autocommit};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{APPROVERS, Actor, DeskRole, EVERYONE};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_body;
use crate::http::parse_job_id;
use crate::http::query;
use crate::http::wire::{ErrorBody, Instant};

/// A request for approval as the desk sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    pub job_id: String,
    pub id: String,
    pub kind: ApprovalKind,
    /// R12, R18 or R31.
    pub rule: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: Instant,
    /// R18: the warranty-claim part's amount, in minor units.
    pub amount: Option<i64>,
    /// R18: above `[desk] director_approval_above`: large amounts are the after-sales
    /// director's to approve.
    pub large_amount: bool,
    /// Whose decision it is: `director` for R18's large amounts, `manager` otherwise.
    pub approver: String,
    /// R28: the travel a travel expense claim is for.
    pub travel: Option<TravelView>,
    pub decision: Option<DecisionView>,
}

/// R28: date (YYYY-MM-DD), from, to and category of a travel expense.
#[derive(Debug, Serialize, ToSchema)]
pub struct TravelView {
    pub date: String,
    pub from: String,
    pub to: String,
    pub category: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub approved: bool,
    pub by: String,
    pub at: Instant,
    pub note: String,
}

fn view(state: &Edge, job_id: DocumentId, a: Approval) -> ApprovalView {
    let large = needs_director(state, &a);
    ApprovalView {
        job_id: job_id.to_string(),
        rule: a.kind.rule().to_owned(),
        large_amount: large,
        approver: if large { "director" } else { "manager" }.to_owned(),
        amount: a.amount.map(|m| m.0),
        travel: a.expense.map(|e| TravelView {
            date: e.date.to_string(),
            from: e.from,
            to: e.to,
            category: e.category,
        }),
        decision: a.decision.map(|d| DecisionView {
            approved: d.approved,
            by: d.by,
            at: Instant(d.at),
            note: d.note,
        }),
        id: a.id,
        kind: a.kind,
        reason: a.reason,
        requested_by: a.requested_by,
        requested_at: Instant(a.requested_at),
    }
}

/// R18: a warranty-claim part above `[desk] director_approval_above` is the after-sales
/// director's to approve, not a manager's.
fn needs_director(state: &Edge, a: &Approval) -> bool {
    let threshold = state.node.config.desk.director_approval_above;
    a.kind == ApprovalKind::WarrantyPart && a.amount.is_some_and(|m| m.0 > threshold)
}

/// How long a listing waits for the queue's first build (an edge that just started reads
/// every stored job once) before it answers 503 `approvals_loading`.
const BUILD_WAIT: Duration = Duration::from_secs(10);

/// The approvals of one stored job, read from the store: what a decision is checked against.
async fn stored_approvals(state: &Edge, job_id: DocumentId) -> Result<Vec<Approval>, ApiError> {
    let doc = state
        .node
        .load_document(job_id)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))?;
    // A device wrote these: a malformed request is the device's fault, shown, not fatal.
    read_approvals(&doc).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed_approval",
            format!("job {job_id}: {e}"),
        )
    })
}

/// Query of `GET /api/approvals`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalQuery {
    /// Only requests not decided yet (the manager's queue).
    #[serde(default)]
    pub pending: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalView>,
}

/// R12, R18, R31: the approval requests raised from devices, oldest first.
#[utoipa::path(
    get,
    path = "/api/approvals",
    tag = "approvals",
    description = "R12, R18, R31: approval requests raised in job documents, oldest first. \
        Roles: dispatcher, manager, analyst.",
    params(ApprovalQuery),
    responses(
        (status = 200, body = ApprovalList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
        (status = 503, body = ErrorBody, description = "approvals_loading: the server has \
            just started and is still reading the stored jobs"),
    ),
)]
pub async fn list_approvals(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<ApprovalQuery>, QueryRejection>,
) -> Result<Json<ApprovalList>, ApiError> {
    state.node.authorize(&headers, EVERYONE, "list approvals")?;
    let q = query(q)?;
    let approvals = listed(&state, q.pending.unwrap_or(false)).await?;
    Ok(Json(ApprovalList { approvals }))
}

/// The approval requests (only those waiting when `pending_only`), oldest first: what
/// `GET /api/approvals` and the console's approvals page list.
pub async fn listed(state: &Edge, pending_only: bool) -> Result<Vec<ApprovalView>, ApiError> {
    if !state.approvals.until_built(BUILD_WAIT).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "approvals_loading",
            "the approvals queue is still being read from the stored jobs; try again shortly",
        ));
    }
    let mut found = state.approvals.approvals(pending_only);
    found.sort_by(|(job_a, a), (job_b, b)| {
        (a.requested_at, job_a, &a.id).cmp(&(b.requested_at, job_b, &b.id))
    });
    Ok(found
        .into_iter()
        .map(|(job_id, a)| view(state, job_id, a))
        .collect())
}

/// Query of `GET /api/expenses`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExpenseQuery {
    /// The month of travel, YYYY-MM.
    pub month: String,
}

/// A total of approved travel expenses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpenseTotal {
    /// A technician or a category.
    pub key: String,
    pub claims: usize,
    /// Minor units.
    pub amount: i64,
}

/// R28: the month's travel expenses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpenseMonth {
    pub month: String,
    /// Approved claims, by date of travel.
    pub approved: Vec<ApprovalView>,
    /// Minor units, approved claims only.
    pub approved_amount: i64,
    pub by_technician: Vec<ExpenseTotal>,
    pub by_category: Vec<ExpenseTotal>,
    /// Claims of the month no one decided yet, and those refused.
    pub waiting: usize,
    pub refused: usize,
}

/// R28: the month's travel expense claims raised from devices: approved ones with totals by
/// technician and category, and how many wait or were refused.
#[utoipa::path(
    get,
    path = "/api/expenses",
    tag = "approvals",
    description = "R28: the month's travel expenses (by date of travel) as claimed from \
        devices and decided at the desk: approved claims, totals by technician and category, \
        and how many wait or were refused. Roles: dispatcher, manager, analyst, director.",
    params(ExpenseQuery),
    responses(
        (status = 200, body = ExpenseMonth),
        (status = 400, body = ErrorBody, description = "invalid_query, invalid_month"),
        (status = 503, body = ErrorBody, description = "approvals_loading"),
    ),
)]
pub async fn month_expenses(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<ExpenseQuery>, QueryRejection>,
) -> Result<Json<ExpenseMonth>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "read the travel expenses (R28)")?;
    let q = query(q)?;
    let month: fieldsync_shared::time::Month = q.month.parse().map_err(|e| {
        ApiError::bad_request(
            "invalid_month",
            format!("month {:?}: {e} (YYYY-MM)", q.month),
        )
    })?;
    if !state.approvals.until_built(BUILD_WAIT).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "approvals_loading",
            "the approvals are still being read from the stored jobs; try again shortly",
        ));
    }
    let mut claims: Vec<(DocumentId, Approval)> = state
        .approvals
        .approvals(false)
        .into_iter()
        .filter(|(_, a)| {
            a.kind == ApprovalKind::TravelExpense
                && a.expense.as_ref().is_some_and(|e| e.date.month() == month)
        })
        .collect();
    claims.sort_by(|(ja, a), (jb, b)| {
        let date = |x: &Approval| x.expense.as_ref().map(|e| e.date.to_string());
        (date(a), ja, &a.id).cmp(&(date(b), jb, &b.id))
    });
    let waiting = claims.iter().filter(|(_, a)| a.decision.is_none()).count();
    let refused = claims
        .iter()
        .filter(|(_, a)| a.decision.as_ref().is_some_and(|d| !d.approved))
        .count();
    let approved: Vec<(DocumentId, Approval)> = claims
        .into_iter()
        .filter(|(_, a)| a.decision.as_ref().is_some_and(|d| d.approved))
        .collect();
    let total = |key: &dyn Fn(&Approval) -> String| {
        let mut sums: std::collections::BTreeMap<String, (usize, i64)> = Default::default();
        for (_, a) in &approved {
            let entry = sums.entry(key(a)).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(a.amount.map_or(0, |m| m.0));
        }
        sums.into_iter()
            .map(|(key, (claims, amount))| ExpenseTotal {
                key,
                claims,
                amount,
            })
            .collect::<Vec<_>>()
    };
    let by_technician = total(&|a| a.requested_by.clone());
    let by_category = total(&|a| {
        a.expense
            .as_ref()
            .map(|e| e.category.trim().to_lowercase())
            .unwrap_or_default()
    });
    let approved_amount = approved.iter().fold(0i64, |sum, (_, a)| {
        sum.saturating_add(a.amount.map_or(0, |m| m.0))
    });
    Ok(Json(ExpenseMonth {
        month: month.to_string(),
        approved: approved
            .into_iter()
            .map(|(job, a)| view(&state, job, a))
            .collect(),
        approved_amount,
        by_technician,
        by_category,
        waiting,
        refused,
    }))
}

/// The body of `POST /api/jobs/{id}/approvals/{approval}/decision`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDecision {
    pub approved: bool,
    #[serde(default)]
    pub note: String,
}

/// R12, R18, R31: a manager decides; the decision goes into the job document.
#[utoipa::path(
    post,
    path = "/api/jobs/{id}/approvals/{approval}/decision",
    tag = "approvals",
    description = "R12, R18, R31: decide an approval request; written into the job document. \
        Roles: manager, director (R28 travel expenses: the manager, standing for the general \
        manager at the branch); an R18 warranty-claim part above `[desk] \
        director_approval_above` only the director (403 `director_approval` otherwise).",
    params(
        ("id" = String, Path, description = "The job id"),
        ("approval" = String, Path, description = "The approval request's id"),
    ),
    request_body = NewDecision,
    responses(
        (status = 200, body = ApprovalView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_job_id"),
        (status = 403, body = ErrorBody, description = "forbidden, director_approval"),
        (status = 404, body = ErrorBody, description = "unknown_job, unknown_approval"),
        (status = 409, body = ErrorBody, description = "already_decided"),
    ),
)]
pub async fn decide_approval(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path((id, approval)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ApprovalView>, ApiError> {
    let actor =
        state
            .node
            .authorize_actor(&headers, APPROVERS, "decide approvals (R12, R18, R31)")?;
    let new: NewDecision = parse_body(&body)?;
    Ok(Json(
        decide_request(&state, &id, &approval, new, &actor).await?,
    ))
}

/// R12, R18, R31: writes `actor`'s decision on request `approval` of job `id` into the job
/// document (R18's large amounts only the director's) and the audit entry
/// (`approval_decide`: `waiting` before, `approved` or `refused` after). What the decision
/// API and the console's approvals page both call.
pub async fn decide_request(
    state: &Edge,
    id: &str,
    approval: &str,
    new: NewDecision,
    actor: &Actor,
) -> Result<ApprovalView, ApiError> {
    let role = actor.role;
    let approval = approval.to_owned();
    let job_id = parse_job_id(id)?;
    if state.node.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    }
    let current = stored_approvals(state, job_id).await?;
    let Some(found) = current.into_iter().find(|a| a.id == approval) else {
        return Err(ApiError::not_found(
            "unknown_approval",
            format!("job {job_id} has no approval request {approval:?}"),
        ));
    };
    if needs_director(state, &found) && role != DeskRole::Director {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "director_approval",
            format!(
                "approval request {approval} is an R18 warranty-claim part of {} (minor units), \
                 above {}: the after-sales director decides it, not role {}",
                found.amount.map(|m| m.0).unwrap_or_default(),
                state.node.config.desk.director_approval_above,
                role.as_str()
            ),
        ));
    }
    if found.decision.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_decided",
            format!("approval request {approval} is already decided"),
        ));
    }
    let decision = Decision {
        approved: new.approved,
        by: format!("desk:{}", role.as_str()),
        at: state.node.clock.now(),
        note: new.note,
    };
    let event = TimelineEvent {
        at: decision.at,
        actor: decision.by.clone(),
        kind: "approval_decided".into(),
        text: format!(
            "{} request {approval} ({}) {}: {}",
            found.kind.as_str(),
            found.kind.rule(),
            if decision.approved {
                "approved"
            } else {
                "refused"
            },
            decision.note
        ),
    };
    let written = decision.clone();
    let key = approval.clone();
    let edit = LocalEdit::Change(Box::new(move |doc: &mut Automerge| {
        edit_via_autocommit(doc, |ac| {
            decide(ac, &key, &written).map_err(|e| e.to_string())?;
            let mut job = fieldsync_shared::job::doc::JobDoc::from_autocommit(std::mem::take(ac));
            let result = job.add_timeline_event(&event).map_err(|e| e.to_string());
            *ac = job.into_inner();
            result
        })
    }));
    state.node.hub.edit(job_id, edit).await.map_err(|e| {
        // Decided meanwhile by someone else: `ApprovalError::Decided`, reported as text.
        let message = e.to_string();
        if message.contains("already decided") {
            ApiError::new(StatusCode::CONFLICT, "already_decided", message)
        } else {
            ApiError::internal("storage_error", message)
        }
    })?;
    // The feed brings the change to the queue too, but maybe only after this call returns:
    // read the job again now, so the next listing shows the decision.
    if let Err(e) = mirror::reread(state, job_id).await {
        tracing::warn!(%job_id, error = %e, "the decision is stored; the queue shows it after the feed does");
    }
    let entry = Entry::new(
        decision.at,
        actor.name(),
        role.as_str(),
        "approval_decide",
        format!("approval:{job_id}/{approval}"),
    )
    .before("waiting")
    .after(if decision.approved {
        "approved"
    } else {
        "refused"
    })
    .detail(format!(
        "{} ({}): {}",
        found.kind.as_str(),
        found.kind.rule(),
        decision.note
    ));
    crate::console::audit_api(&state.node, entry).await?;
    let mut decided = found;
    decided.decision = Some(decision);
    Ok(view(state, job_id, decided))
}

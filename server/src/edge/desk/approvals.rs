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

use crate::auth::{EVERYONE, MANAGERS};
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
    pub decision: Option<DecisionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub approved: bool,
    pub by: String,
    pub at: Instant,
    pub note: String,
}

fn view(state: &Edge, job_id: DocumentId, a: Approval) -> ApprovalView {
    let threshold = state.node.config.desk.director_approval_above;
    ApprovalView {
        job_id: job_id.to_string(),
        rule: a.kind.rule().to_owned(),
        large_amount: a.kind == ApprovalKind::WarrantyPart
            && a.amount.is_some_and(|m| m.0 > threshold),
        amount: a.amount.map(|m| m.0),
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
    let pending_only = q.pending.unwrap_or(false);
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
    let approvals = found
        .into_iter()
        .map(|(job_id, a)| view(&state, job_id, a))
        .collect();
    Ok(Json(ApprovalList { approvals }))
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
        Roles: manager.",
    params(
        ("id" = String, Path, description = "The job id"),
        ("approval" = String, Path, description = "The approval request's id"),
    ),
    request_body = NewDecision,
    responses(
        (status = 200, body = ApprovalView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_job_id"),
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
    let role = state
        .node
        .authorize(&headers, MANAGERS, "decide approvals (R12, R18, R31)")?;
    let new: NewDecision = parse_body(&body)?;
    let job_id = parse_job_id(&id)?;
    if state.node.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    }
    let current = stored_approvals(&state, job_id).await?;
    let Some(found) = current.into_iter().find(|a| a.id == approval) else {
        return Err(ApiError::not_found(
            "unknown_approval",
            format!("job {job_id} has no approval request {approval:?}"),
        ));
    };
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
    if let Err(e) = mirror::reread(&state, job_id).await {
        tracing::warn!(%job_id, error = %e, "the decision is stored; the queue shows it after the feed does");
    }
    let mut decided = found;
    decided.decision = Some(decision);
    Ok(Json(view(&state, job_id, decided)))
}

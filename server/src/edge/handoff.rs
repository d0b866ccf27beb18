//! Stranded edits (issue 12): what a technician's device recorded offline in a job it was
//! unassigned from meanwhile. DOMAIN.md promises that nothing a technician records is lost,
//! yet the device may no longer write the job: the changes are handed over instead.
//!
//! The device posts them (`POST /api/handoffs/{job}`, its own token, the raw changes it holds
//! beyond what the server acknowledged). They are checked like changes sent over `/sync`
//! (inflation caps, whole changes, the device's write table, every dependency in the job) and
//! kept aside as a desk record: not in the job, with the device, the technician, when they
//! arrived and when they were made. The desk sees them on the job (`GET /api/jobs/{id}`) and
//! in a list (`GET /api/stranded`), and merges them into the job (they become part of it, and
//! reach whoever holds it now) or discards them with a reason. A handover is identified by
//! its changes, so a device that retries after a lost answer stores nothing twice.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use fieldsync_shared::authority::{self, Writer};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::sync::{LocalEdit, check_offline_changes};
use fieldsync_storage::RecordFilter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{EVERYONE, STAFF};
use crate::edge::Edge;
use crate::edge::desk::records::{self, DeskRecord, Stored};
use crate::http::error::ApiError;
use crate::http::parse_job_id;
use crate::http::wire::{ErrorBody, Instant};
use crate::http::{nonempty, parse_body};

/// Where a handover stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrandedStatus {
    /// Kept aside; the desk has not decided.
    Waiting,
    /// Merged into the job.
    Merged,
    /// Discarded, with a reason.
    Discarded,
}

/// A device's offline changes to a job it was unassigned from, as the desk keeps them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stranded {
    pub id: String,
    pub job_id: String,
    pub device_id: String,
    pub technician: String,
    /// When the server received them.
    pub received_at: Instant,
    /// When the device made the first and the last of them (its own clock).
    pub made_from: Option<Instant>,
    pub made_until: Option<Instant>,
    pub hashes: Vec<String>,
    /// The changes, as automerge chunks, base64.
    pub changes: String,
    pub status: StrandedStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<Instant>,
    pub reason: Option<String>,
}

impl DeskRecord for Stranded {
    const KIND: &'static str = "stranded";

    fn id(&self) -> &str {
        &self.id
    }

    fn lookup(&self) -> Option<String> {
        Some(self.job_id.clone())
    }

    fn open(&self) -> bool {
        self.status == StrandedStatus::Waiting
    }
}

/// A handover as the desk reads it (without the change bytes).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrandedView {
    pub id: String,
    pub job_id: String,
    pub device_id: String,
    pub technician: String,
    pub received_at: Instant,
    pub made_from: Option<Instant>,
    pub made_until: Option<Instant>,
    /// How many changes.
    pub changes: usize,
    pub status: StrandedStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<Instant>,
    pub reason: Option<String>,
}

impl From<&Stranded> for StrandedView {
    fn from(s: &Stranded) -> Self {
        Self {
            id: s.id.clone(),
            job_id: s.job_id.clone(),
            device_id: s.device_id.clone(),
            technician: s.technician.clone(),
            received_at: s.received_at,
            made_from: s.made_from,
            made_until: s.made_until,
            changes: s.hashes.len(),
            status: s.status,
            decided_by: s.decided_by.clone(),
            decided_at: s.decided_at,
            reason: s.reason.clone(),
        }
    }
}

/// The answer to a handover.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HandoffReceipt {
    /// The handover's id (null when nothing was new to the server).
    pub id: Option<String>,
    /// How many changes the desk now holds for the job from this handover (0: the server
    /// already had every one of them).
    pub changes: usize,
}

/// The handovers of one job, for `GET /api/jobs/{id}`.
pub async fn for_job(state: &Edge, job: DocumentId) -> Result<Vec<StrandedView>, ApiError> {
    let filter = RecordFilter {
        lookup: Some(job.to_string()),
        open_only: false,
    };
    let found: Vec<Stored<Stranded>> = records::list(state, filter).await?;
    Ok(found.iter().map(|s| StrandedView::from(&s.value)).collect())
}

/// `POST /api/handoffs/{job}`: a device hands over the changes it made to a job it was
/// unassigned from.
#[utoipa::path(
    post,
    path = "/api/handoffs/{job}",
    tag = "devices",
    description = "A device hands over changes it made offline to a job it was unassigned \
        from: the raw automerge changes it holds beyond what the server acknowledged \
        (`Automerge::save_after`). They are checked like sync changes and kept aside for the \
        desk, not put in the job. Device tokens only; the device's technician must have been \
        assigned to the job and no longer be.",
    params(("job" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, body = HandoffReceipt, description = "Nothing new, or handed over before"),
        (status = 201, body = HandoffReceipt, description = "Kept aside for the desk"),
        (status = 400, body = ErrorBody, description = "invalid_job_id, invalid_changes"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "forbidden, not_your_job, write_forbidden"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
        (status = 409, body = ErrorBody, description = "still_assigned, missing_dependencies"),
        (status = 413, body = ErrorBody, description = "too_large"),
    ),
)]
pub async fn hand_over(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(job): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<HandoffReceipt>), ApiError> {
    let (device_id, technician) = state.node.authorize_device(&headers, "a handover")?;
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "too_large",
            format!(
                "the handover body cannot be read (max_frame_bytes): {}",
                e.body_text()
            ),
        )
    })?;
    let job_id = parse_job_id(&job)?;
    let record = state
        .node
        .registry_read()
        .job(&job_id)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found("unknown_job", format!("no job {job_id} at this branch"))
        })?;
    if record.technicians.contains(&technician) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "still_assigned",
            format!("{technician} is assigned to {job_id}: sync the changes instead"),
        ));
    }
    if !record.former.contains(&technician) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_your_job",
            format!("{technician} was never assigned to {job_id}"),
        ));
    }
    let limits = state.node.config.limits.sync_limits();
    if body.len() > limits.max_message_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{} bytes of changes exceed max_frame_bytes ({})",
                body.len(),
                limits.max_message_bytes
            ),
        ));
    }
    let doc = state
        .node
        .load_document(job_id)
        .await
        .map_err(|e| ApiError::internal("document_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))?;
    let checked = tokio::task::spawn_blocking(move || {
        check_offline_changes(&doc, &body, &limits, &authority::JOB, Writer::Device)
    })
    .await
    .map_err(|e| ApiError::internal("check_failed", e))?;
    let changes = checked.map_err(|e| {
        state.node.metrics.refused(e.code());
        tracing::warn!(device = %device_id, job = %job_id, error = %e, "handover refused");
        let status = match e.code() {
            "write_forbidden" => StatusCode::FORBIDDEN,
            "missing_dependencies" => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    })?;
    if changes.is_empty() {
        return Ok((
            StatusCode::OK,
            Json(HandoffReceipt {
                id: None,
                changes: 0,
            }),
        ));
    }
    let mut hashes: Vec<String> = changes.iter().map(|c| c.hash().to_string()).collect();
    let mut sorted = hashes.clone();
    sorted.sort();
    let id = format!(
        "st-{}",
        &hex::encode(Sha256::digest(sorted.join(",").as_bytes()))[..20]
    );
    if let Some(existing) = records::load::<Stranded>(&state, &id).await? {
        return Ok((
            StatusCode::OK,
            Json(HandoffReceipt {
                id: Some(existing.value.id),
                changes: existing.value.hashes.len(),
            }),
        ));
    }
    let times = changes.iter().map(|c| c.timestamp());
    let made_from = times.clone().min().map(timestamp);
    let made_until = times.max().map(timestamp);
    let bytes: Vec<u8> = changes
        .iter()
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect();
    hashes.shrink_to_fit();
    let stranded = Stranded {
        id: id.clone(),
        job_id: job_id.to_string(),
        device_id: device_id.to_string(),
        technician: technician.to_string(),
        received_at: Instant(state.node.clock.now()),
        made_from,
        made_until,
        hashes,
        changes: base64::engine::general_purpose::STANDARD.encode(bytes),
        status: StrandedStatus::Waiting,
        decided_by: None,
        decided_at: None,
        reason: None,
    };
    records::save(&state, 0, &stranded).await?;
    tracing::info!(
        device = %device_id,
        job = %job_id,
        id,
        changes = stranded.hashes.len(),
        "changes to a job the device was unassigned from are kept for the desk"
    );
    Ok((
        StatusCode::CREATED,
        Json(HandoffReceipt {
            id: Some(id),
            changes: stranded.hashes.len(),
        }),
    ))
}

fn timestamp(ms: i64) -> Instant {
    Instant(fieldsync_shared::time::Timestamp::from_millis(ms))
}

/// `GET /api/stranded` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StrandedQuery {
    /// `waiting` (the default: what needs the desk), `merged`, `discarded` or `all`.
    pub status: Option<String>,
}

/// `GET /api/stranded`: handovers, the waiting ones by default.
#[utoipa::path(
    get,
    path = "/api/stranded",
    tag = "dispatch",
    description = "Changes devices handed over for jobs they were unassigned from; by default \
        the ones waiting for the desk. Roles: dispatcher, manager, analyst.",
    params(StrandedQuery),
    responses(
        (status = 200, body = Vec<StrandedView>),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn list_stranded(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<StrandedQuery>, QueryRejection>,
) -> Result<Json<Vec<StrandedView>>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "list handed-over changes")?;
    let q = crate::edge::desk::intake::query(q)?;
    let wanted = match q.status.as_deref() {
        None | Some("waiting") => Some(StrandedStatus::Waiting),
        Some("merged") => Some(StrandedStatus::Merged),
        Some("discarded") => Some(StrandedStatus::Discarded),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("status {other:?}: expected waiting, merged, discarded or all"),
            ));
        }
    };
    let filter = RecordFilter {
        lookup: None,
        open_only: wanted == Some(StrandedStatus::Waiting),
    };
    let found: Vec<Stored<Stranded>> = records::list(&state, filter).await?;
    Ok(Json(
        found
            .iter()
            .filter(|s| wanted.is_none_or(|w| s.value.status == w))
            .map(|s| StrandedView::from(&s.value))
            .collect(),
    ))
}

/// The body of a discard.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Discard {
    /// Why the changes are not merged (kept with the record).
    pub reason: String,
}

async fn waiting(state: &Edge, id: &str) -> Result<Stored<Stranded>, ApiError> {
    let found: Stored<Stranded> =
        records::require(state, id, "unknown_handoff", "handover").await?;
    if found.value.status != StrandedStatus::Waiting {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_decided",
            format!(
                "handover {id} was already {}",
                match found.value.status {
                    StrandedStatus::Merged => "merged",
                    _ => "discarded",
                }
            ),
        ));
    }
    Ok(found)
}

/// `POST /api/stranded/{id}/merge`: the changes become part of the job.
#[utoipa::path(
    post,
    path = "/api/stranded/{id}/merge",
    tag = "dispatch",
    description = "Merges handed-over changes into their job: they become part of it and reach \
        whoever holds it now. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The handover id")),
    responses(
        (status = 200, body = StrandedView),
        (status = 404, body = ErrorBody, description = "unknown_handoff"),
        (status = 409, body = ErrorBody, description = "already_decided, conflict"),
    ),
)]
pub async fn merge(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<StrandedView>, ApiError> {
    let role = state
        .node
        .authorize(&headers, STAFF, "merge handed-over changes")?;
    let found = waiting(&state, &id).await?;
    let job_id = parse_job_id(&found.value.job_id)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&found.value.changes)
        .map_err(|e| ApiError::internal("record_unreadable", e))?;
    // Decided first (compare-and-set): a second desk merging or discarding at once gets 409.
    let mut decided = found.value.clone();
    decided.status = StrandedStatus::Merged;
    decided.decided_by = Some(format!("desk:{}", role.as_str()));
    decided.decided_at = Some(Instant(state.node.clock.now()));
    let revision = records::save(&state, found.revision, &decided).await?;
    let applied = state
        .node
        .hub
        .edit(
            job_id,
            LocalEdit::Change(Box::new(move |doc| {
                doc.load_incremental(&bytes)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })),
        )
        .await;
    if let Err(e) = applied {
        // Back to waiting, so the desk can try again; nothing reached the job.
        records::save(&state, revision, &found.value).await?;
        return Err(ApiError::internal("merge_failed", e));
    }
    tracing::info!(id, job = %job_id, by = role.as_str(), "handed-over changes merged");
    Ok(Json(StrandedView::from(&decided)))
}

/// `POST /api/stranded/{id}/discard`: the changes stay out of the job, for a reason.
#[utoipa::path(
    post,
    path = "/api/stranded/{id}/discard",
    tag = "dispatch",
    description = "Discards handed-over changes; they stay on record with the reason. Roles: \
        dispatcher, manager.",
    params(("id" = String, Path, description = "The handover id")),
    request_body = Discard,
    responses(
        (status = 200, body = StrandedView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_handoff"),
        (status = 409, body = ErrorBody, description = "already_decided, conflict"),
    ),
)]
pub async fn discard(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<StrandedView>, ApiError> {
    let role = state
        .node
        .authorize(&headers, STAFF, "discard handed-over changes")?;
    let body: Discard = parse_body(&body)?;
    nonempty("reason", &body.reason)?;
    let found = waiting(&state, &id).await?;
    let mut decided = found.value.clone();
    decided.status = StrandedStatus::Discarded;
    decided.decided_by = Some(format!("desk:{}", role.as_str()));
    decided.decided_at = Some(Instant(state.node.clock.now()));
    decided.reason = Some(body.reason);
    records::save(&state, found.revision, &decided).await?;
    tracing::info!(id, job = %decided.job_id, by = role.as_str(), "handed-over changes discarded");
    Ok(Json(StrandedView::from(&decided)))
}

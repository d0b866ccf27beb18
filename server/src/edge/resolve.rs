//! The desk resolves what a merge left unresolved (issue 15): `POST /api/jobs/{id}/resolve`.
//!
//! Fields that belong together (the work: fault cause, category, solution, labour; a part
//! line's number, quantity, price and warranty) written by people who had not seen each
//! other's, and a part number possibly added twice, hold the job's report back
//! (`job::doc::unresolved`; the signer refuses with `unresolved_conflict` or
//! `possible_duplicate_part`). A technician resolves on the device (`fieldsync-tech
//! resolve`); the desk resolves here. Either way the resolution is one change to the job
//! document that writes every field of the group and records who, when and what under
//! `resolutions`, so it syncs to the devices. The rule for each field: `docs/MERGE-RULES.md`.

use std::sync::Arc;

use automerge::ChangeHash;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::TimelineEvent;
use fieldsync_shared::job::doc::{Chosen, EditError, read_job, unresolved};
use fieldsync_shared::sync::LocalEdit;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::{Actor, STAFF};
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::wire::ErrorBody;
use crate::http::{parse_body, parse_job_id};

/// What the desk decides for one group.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResolveRequest {
    /// The group as `GET /api/jobs/{id}` lists it under `unresolved`: `work`,
    /// `part:<line id>` or `duplicate_part:<part number>`.
    pub group: String,
    /// The values to stand; a field left out keeps the value the job reads as now. Work:
    /// `fault_cause`, `fault_category`, `solution` (empty clears), `labour_minutes`,
    /// `labour_rate_per_hour`; a part line: `part_number`, `quantity`, `unit_price`,
    /// `warranty`; a possible duplicate: `keep` (the line ids to keep, the others go).
    #[serde(default)]
    pub values: Chosen,
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/resolve",
    tag = "dispatch",
    description = "Issue 15: resolve fields a merge left in disagreement, or confirm a possibly \
        duplicated part, written into the job document (who, when, which values) and the \
        audit log. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "`{job_id, resolution, unresolved}`: the resolution as \
            recorded and what is still unresolved"),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_job_id, \
            unknown_group, invalid_field, keep_required, invalid_resolution"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_job, unknown_part"),
        (status = 409, body = ErrorBody, description = "nothing_to_resolve"),
    ),
)]
pub async fn resolve(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "resolve merged fields")?;
    let request: ResolveRequest = parse_body(&body)?;
    resolve_group(&state, &actor, &id, request).await.map(Json)
}

/// Resolves `request.group` of job `id` as `actor`: the one way the desk resolves, for the
/// API and the console's form (`edge::conflicts`). Writes the resolution and a
/// `merge_resolved` timeline event into the job in one change and the audit entry
/// `merge_resolve`; answers `{job_id, resolution, unresolved}`.
pub async fn resolve_group(
    state: &Edge,
    actor: &Actor,
    id: &str,
    request: ResolveRequest,
) -> Result<Value, ApiError> {
    let job_id = parse_job_id(id)?;
    if state.node.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    }
    let doc = load(state, job_id).await?;
    let job = read_job(&doc).map_err(|e| ApiError::internal("document_error", e))?;
    let before: Vec<String> = doc.get_heads().iter().map(ChangeHash::to_string).collect();
    let resolution = request
        .values
        .resolution(&job, &request.group)
        .map_err(|e| {
            let status = match e.code() {
                "unknown_part" => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, e.code(), e.to_string())
        })?;
    let group = resolution.group();
    if !unresolved(&doc).iter().any(|u| u.group == group) {
        return Err(nothing_to_resolve(&group));
    }
    let by = format!("desk:{}", actor.name());
    let at = state.node.clock.now();
    let values = serde_json::to_string(&resolution).unwrap_or_default();
    let event = TimelineEvent {
        at,
        actor: by.clone(),
        kind: "merge_resolved".into(),
        text: format!("{group} resolved: {values}"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let written = resolution.clone();
    let who = by.clone();
    state
        .node
        .hub
        .edit(
            job_id,
            LocalEdit::job(move |job| {
                job.stamp(&who, at);
                let record = job.resolve(&written, &who, at)?;
                let _ = tx.send(record);
                job.add_timeline_event(&event)
            }),
        )
        .await
        .map_err(|e| {
            // Resolved meanwhile by a device's change: said in the edit's words.
            let message = e.to_string();
            if message.contains("nothing to resolve") {
                ApiError::new(StatusCode::CONFLICT, "nothing_to_resolve", message)
            } else if message.contains("possible duplicates") || message.contains("keep at least") {
                ApiError::bad_request("invalid_resolution", message)
            } else {
                ApiError::internal("storage_error", message)
            }
        })?;
    let record = rx
        .try_recv()
        .map_err(|_| ApiError::internal("document_error", "the resolution was not recorded"))?;
    let doc = load(state, job_id).await?;
    let after: Vec<String> = doc.get_heads().iter().map(ChangeHash::to_string).collect();
    let entry = crate::console::audit::Entry::new(
        at,
        actor.name(),
        actor.role.as_str(),
        "merge_resolve",
        format!("job:{job_id}"),
    )
    .before(before.join(","))
    .after(after.join(","))
    .detail(format!("{group}: {values}"));
    crate::console::audit_api(&state.node, entry).await?;
    Ok(json!({
        "job_id": job_id,
        "resolution": record,
        "unresolved": unresolved(&doc),
    }))
}

fn nothing_to_resolve(group: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "nothing_to_resolve",
        EditError::NothingToResolve(group.to_owned()).to_string(),
    )
}

async fn load(state: &Edge, job_id: DocumentId) -> Result<automerge::Automerge, ApiError> {
    state
        .node
        .load_document(job_id)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))
}

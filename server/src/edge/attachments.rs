//! Attachments at the edge (issue 15): photos, receipt images and signature images as
//! content-addressed blobs beside the job documents.
//!
//! A blob is a file named by its SHA-256 under `<data dir>/attachments/`; an upload in progress
//! is `attachments/partial/<sha256>`. The job document references blobs by digest
//! (`shared::job::attachments`); the bytes never enter it.
//!
//! - `PUT /api/jobs/{job}/attachments/{sha256}` (a device token; the device's technician must
//!   be assigned to the job): the body is the blob, or a part of it with `Content-Range:
//!   bytes START-END/TOTAL`. Every part is on disk (fsync) before the answer, so what the
//!   server says it holds survives a kill; a part must start where the held bytes end (409
//!   `offset_mismatch` names where). Once all bytes are held, their SHA-256 is checked against
//!   the name: a mismatch is 422 `digest_mismatch` and the partial bytes are dropped; a match
//!   moves the blob into place (rename, directory fsync). Over `[limits]
//!   max_attachment_bytes`: 413 `attachment_too_large`.
//! - `GET …/{sha256}/status`: how many bytes are held and whether the blob is complete (a
//!   device resumes from there).
//! - `GET …/{sha256}`: the bytes, to the desk and to a device assigned to the job, only for a
//!   blob the stored job references; the bytes are hashed again on the way out, so a blob
//!   changed on disk is refused (`attachment_corrupt`), never served.
//! - `GET /api/jobs/{job}/attachments`: the job's references and whether each is held.
//!
//! The signer refuses a report while a referenced blob is missing or does not hash to its
//! name ([`check_for_report`]). Blobs stay at the branch: head office receives the digests in
//! the signed report (the branch's signature covers them), not the bytes.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fieldsync_shared::ids::{DocumentId, TechnicianId};
use fieldsync_shared::job::attachments::{AttachmentKind, AttachmentRef, is_blob_digest};
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::job::{Job, RefusalReason};
use fieldsync_shared::sync::Principal;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use crate::auth::EVERYONE;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_job_id;
use crate::http::wire::ErrorBody;

/// The header that says how many bytes of an upload the server holds.
pub const UPLOAD_OFFSET: &str = "upload-offset";

/// The edge's blob directory.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    /// Digests being written right now: a second upload of the same blob waits its turn (409).
    busy: Mutex<HashSet<String>>,
}

impl Blobs {
    /// The blobs under `dir` (created on the first upload).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            busy: Mutex::new(HashSet::new()),
        }
    }

    /// Where a complete blob lives.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    fn partial(&self, digest: &str) -> PathBuf {
        self.dir.join("partial").join(digest)
    }

    /// Bytes held of `digest` and whether it is complete.
    pub async fn held(&self, digest: &str) -> (u64, bool) {
        if let Ok(m) = tokio::fs::metadata(self.path(digest)).await {
            return (m.len(), true);
        }
        match tokio::fs::metadata(self.partial(digest)).await {
            Ok(m) => (m.len(), false),
            Err(_) => (0, false),
        }
    }

    fn claim(&self, digest: &str) -> Option<Claim<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.insert(digest.to_owned()).then(|| Claim {
            blobs: self,
            digest: digest.to_owned(),
        })
    }
}

/// One upload's hold on its digest.
struct Claim<'a> {
    blobs: &'a Blobs,
    digest: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.blobs
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.digest);
    }
}

/// SHA-256 of a file, read in blocks on the blocking pool.
async fn hash_file(path: PathBuf) -> std::io::Result<(String, u64)> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok((hex::encode(hasher.finalize()), len))
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

/// Who reads: the desk, or the device of an assigned technician.
enum Reader {
    Desk,
    Device(TechnicianId),
}

fn who(state: &Edge, headers: &HeaderMap, what: &str) -> Result<Reader, ApiError> {
    match state.node.principal(headers)? {
        Principal::Device { technician, .. } => Ok(Reader::Device(technician)),
        Principal::Desk { .. } => {
            state.node.authorize(headers, EVERYONE, what)?;
            Ok(Reader::Desk)
        }
        _ => Err(ApiError::forbidden(format!(
            "{what} answers device and desk tokens only"
        ))),
    }
}

/// The job, and that the technician (if a device asks) is assigned to it.
fn check_job(state: &Edge, job: &str, reader: &Reader) -> Result<DocumentId, ApiError> {
    let job_id = parse_job_id(job)?;
    let record = state
        .node
        .registry_read()
        .job(&job_id)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found("unknown_job", format!("no job {job_id} at this branch"))
        })?;
    if let Reader::Device(technician) = reader
        && !record.technicians.contains(technician)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_your_job",
            format!("{technician} is not assigned to {job_id}"),
        ));
    }
    Ok(job_id)
}

fn check_digest(digest: &str) -> Result<(), ApiError> {
    if is_blob_digest(digest) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_digest",
            format!("{digest:?} is not a SHA-256 in lowercase hex (64 characters)"),
        ))
    }
}

/// `?size=` of a status request.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SizeQuery {
    pub size: Option<u64>,
}

/// What the server holds of an upload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadStatus {
    pub digest: String,
    /// Bytes held: where a resumed upload starts.
    pub received: u64,
    /// The whole blob is held and its SHA-256 matched.
    pub complete: bool,
}

/// `bytes START-END/TOTAL` (END inclusive; `bytes */TOTAL` for an empty part).
fn parse_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total: u64 = total.trim().parse().ok()?;
    if range.trim() == "*" {
        return Some((total, total, total));
    }
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end && end < total).then_some((start, end + 1, total))
}

fn too_large(limit: u64, size: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "attachment_too_large",
        format!(
            "the attachment is {size} bytes; this branch takes at most {limit} \
             ([limits] max_attachment_bytes)"
        ),
    )
}

fn answer(status: StatusCode, digest: &str, received: u64, complete: bool) -> Response {
    let mut response = (
        status,
        Json(UploadStatus {
            digest: digest.to_owned(),
            received,
            complete,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(received));
    response
}

/// `PUT /api/jobs/{job}/attachments/{digest}`: a device uploads a blob, whole or in parts.
#[utoipa::path(
    put,
    path = "/api/jobs/{job}/attachments/{digest}",
    tag = "devices",
    description = "A device uploads an attachment (photo, receipt, signature image) of a job \
        assigned to its technician, named by the SHA-256 of its bytes. The body is the whole \
        blob, or a part with `Content-Range: bytes START-END/TOTAL` starting where the held \
        bytes end (`GET …/status` says where). Each part is on disk before the answer. When \
        every byte is held the SHA-256 is checked: 422 `digest_mismatch` drops the upload. \
        Device tokens only.",
    params(
        ("job" = String, Path, description = "The job id (bs58 or automerge: URL)"),
        ("digest" = String, Path, description = "SHA-256 of the bytes, lowercase hex"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, body = UploadStatus, description = "Already held"),
        (status = 201, body = UploadStatus, description = "Complete and checked"),
        (status = 202, body = UploadStatus, description = "Part held; send the rest"),
        (status = 400, body = ErrorBody, description = "invalid_job_id, invalid_digest, invalid_range"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "forbidden, not_your_job"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
        (status = 409, body = ErrorBody, description = "offset_mismatch, upload_in_progress"),
        (status = 413, body = ErrorBody, description = "attachment_too_large"),
        (status = 422, body = ErrorBody, description = "digest_mismatch"),
    ),
)]
pub async fn upload(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path((job, digest)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let (device_id, technician) = state
        .node
        .authorize_device(&headers, "an attachment upload")?;
    check_job(&state, &job, &Reader::Device(technician))?;
    check_digest(&digest)?;
    let limit = state.node.config.limits.max_attachment_bytes;
    let range = match headers.get(header::CONTENT_RANGE) {
        Some(v) => Some(v.to_str().ok().and_then(parse_range).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_range",
                format!("Content-Range {v:?} is not `bytes START-END/TOTAL`"),
            )
        })?),
        None => None,
    };
    let declared = match range {
        Some((_, _, total)) => Some(total),
        None => headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
    };
    if let Some(total) = declared
        && total > limit
    {
        return Err(too_large(limit, total));
    }
    let blobs = &state.attachments;
    let (held, complete) = blobs.held(&digest).await;
    if complete {
        return Ok(answer(StatusCode::OK, &digest, held, true));
    }
    let Some(_claim) = blobs.claim(&digest) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "upload_in_progress",
            format!("{digest} is being uploaded by another request; ask its status and resume"),
        ));
    };
    let (held, _) = blobs.held(&digest).await;
    let start = range.map_or(0, |(s, _, _)| s);
    if start != held {
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!("the server holds {held} bytes of {digest}; send the part that starts there"),
        )
        .into_response();
        e.headers_mut()
            .insert(UPLOAD_OFFSET, HeaderValue::from(held));
        return Ok(e);
    }
    let partial = blobs.partial(&digest);
    let io = |e: std::io::Error| ApiError::internal("attachment_storage", e);
    tokio::fs::create_dir_all(partial.parent().unwrap_or(&blobs.dir))
        .await
        .map_err(io)?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial)
        .await
        .map_err(io)?;
    let end = range.map(|(_, e, _)| e);
    let mut written = held;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // The device went away mid-part: keep the prefix (it resumes from there).
                failure = Some(ApiError::bad_request(
                    "upload_interrupted",
                    format!("the body ended early: {e}"),
                ));
                break;
            }
        };
        let after = written + chunk.len() as u64;
        if after > limit {
            failure = Some(too_large(limit, after));
            break;
        }
        if end.is_some_and(|end| after > end) {
            failure = Some(ApiError::bad_request(
                "invalid_range",
                "the body is longer than its Content-Range",
            ));
            break;
        }
        file.write_all(&chunk).await.map_err(io)?;
        written = after;
    }
    file.sync_data().await.map_err(io)?;
    drop(file);
    if let Some(failure) = failure {
        if failure.code != "upload_interrupted" {
            // A refused part leaves nothing behind it.
            let f = std::fs::OpenOptions::new().write(true).open(&partial);
            if let Ok(f) = f {
                let _ = f.set_len(held);
                let _ = f.sync_data();
            }
        }
        return Err(failure);
    }
    if let Some(end) = end
        && written != end
    {
        return Ok(answer(StatusCode::ACCEPTED, &digest, written, false));
    }
    let total = range.map_or(written, |(_, _, t)| t);
    if written < total {
        return Ok(answer(StatusCode::ACCEPTED, &digest, written, false));
    }
    let (computed, _) = hash_file(partial.clone()).await.map_err(io)?;
    if computed != digest {
        let _ = tokio::fs::remove_file(&partial).await;
        tracing::warn!(device = %device_id, %digest, %computed, "attachment refused: digest mismatch");
        state.node.metrics.refused("digest_mismatch");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "digest_mismatch",
            format!(
                "the {written} bytes received hash to {computed}, not {digest}: the file \
                 changed or was damaged on the way; nothing was kept, upload it again"
            ),
        ));
    }
    tokio::fs::rename(&partial, blobs.path(&digest))
        .await
        .map_err(io)?;
    sync_dir(&blobs.dir).await.map_err(io)?;
    tracing::info!(device = %device_id, %digest, bytes = written, "attachment stored");
    Ok(answer(StatusCode::CREATED, &digest, written, true))
}

/// `GET /api/jobs/{job}/attachments/{digest}/status`.
#[utoipa::path(
    get,
    path = "/api/jobs/{job}/attachments/{digest}/status",
    tag = "devices",
    description = "How many bytes of an attachment the branch holds and whether it is complete: \
        where a resumed upload starts. A device of an assigned technician or any desk role.",
    params(
        ("job" = String, Path, description = "The job id"),
        ("digest" = String, Path, description = "SHA-256 of the bytes, lowercase hex"),
        ("size" = Option<u64>, Query, description = "The whole blob's size: 413 \
            `attachment_too_large` before any byte is sent when it is over the limit"),
    ),
    responses(
        (status = 200, body = UploadStatus),
        (status = 400, body = ErrorBody, description = "invalid_job_id, invalid_digest"),
        (status = 403, body = ErrorBody, description = "forbidden, not_your_job"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
        (status = 413, body = ErrorBody, description = "attachment_too_large"),
    ),
)]
pub async fn status(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path((job, digest)): Path<(String, String)>,
    Query(query): Query<SizeQuery>,
) -> Result<Response, ApiError> {
    let reader = who(&state, &headers, "an attachment's status")?;
    check_job(&state, &job, &reader)?;
    check_digest(&digest)?;
    // Asked before the upload, so a device is told without sending megabytes to a server
    // that closes the connection on them.
    let limit = state.node.config.limits.max_attachment_bytes;
    if let Some(size) = query.size
        && size > limit
    {
        return Err(too_large(limit, size));
    }
    let (received, complete) = state.attachments.held(&digest).await;
    Ok(answer(StatusCode::OK, &digest, received, complete))
}

/// The job's references as stored at the edge.
async fn stored_refs(state: &Edge, job_id: DocumentId) -> Result<Job, ApiError> {
    let doc = state
        .node
        .load_document(job_id)
        .await
        .map_err(|e| ApiError::internal("document_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))?;
    read_job(&doc).map_err(|e| ApiError::internal("document_error", e))
}

/// `GET /api/jobs/{job}/attachments/{digest}`: the bytes.
#[utoipa::path(
    get,
    path = "/api/jobs/{job}/attachments/{digest}",
    tag = "devices",
    description = "An attachment's bytes, with the media type the job gives. Only a blob the \
        stored job references; hashed again before it is served (500 `attachment_corrupt` if \
        the bytes on disk changed). A device of an assigned technician or any desk role.",
    params(
        ("job" = String, Path, description = "The job id"),
        ("digest" = String, Path, description = "SHA-256 of the bytes, lowercase hex"),
    ),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody, description = "invalid_job_id, invalid_digest"),
        (status = 403, body = ErrorBody, description = "forbidden, not_your_job"),
        (status = 404, body = ErrorBody, description = "unknown_job, unknown_attachment, attachment_not_uploaded"),
        (status = 500, body = ErrorBody, description = "attachment_corrupt"),
    ),
)]
pub async fn download(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path((job, digest)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let reader = who(&state, &headers, "reading an attachment")?;
    let job_id = check_job(&state, &job, &reader)?;
    check_digest(&digest)?;
    let job = stored_refs(&state, job_id).await?;
    let Some(reference) = job.attachments.iter().find(|a| a.digest == digest) else {
        return Err(ApiError::not_found(
            "unknown_attachment",
            format!("job {job_id} has no attachment {digest}"),
        ));
    };
    let path = state.attachments.path(&digest);
    if tokio::fs::metadata(&path).await.is_err() {
        return Err(ApiError::not_found(
            "attachment_not_uploaded",
            format!(
                "the device has not uploaded {digest} ({}) yet",
                reference.name
            ),
        ));
    }
    if let Some(problem) = verify_blob(&state.attachments, reference).await {
        return Err(ApiError::internal("attachment_corrupt", problem));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::internal("attachment_storage", e))?;
    let media = HeaderValue::from_str(&reference.media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(([(header::CONTENT_TYPE, media)], bytes).into_response())
}

/// One reference with whether the branch holds its bytes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttachmentView {
    pub digest: String,
    #[schema(value_type = String)]
    pub kind: AttachmentKind,
    pub media_type: String,
    pub size: u64,
    pub name: String,
    pub uploaded: bool,
}

/// `GET /api/jobs/{job}/attachments`.
#[utoipa::path(
    get,
    path = "/api/jobs/{job}/attachments",
    tag = "devices",
    description = "The attachments the stored job references, and whether the branch holds \
        each one's bytes yet. A device of an assigned technician or any desk role.",
    params(("job" = String, Path, description = "The job id")),
    responses(
        (status = 200, body = Vec<AttachmentView>),
        (status = 403, body = ErrorBody, description = "forbidden, not_your_job"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn list(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Result<Json<Vec<AttachmentView>>, ApiError> {
    let reader = who(&state, &headers, "listing attachments")?;
    let job_id = check_job(&state, &job, &reader)?;
    let job = stored_refs(&state, job_id).await?;
    let mut out = Vec::new();
    for a in job.attachments {
        let (_, uploaded) = state.attachments.held(&a.digest).await;
        out.push(AttachmentView {
            digest: a.digest,
            kind: a.kind,
            media_type: a.media_type,
            size: a.size,
            name: a.name,
            uploaded,
        });
    }
    Ok(Json(out))
}

/// What is wrong with the held bytes of `reference`, if anything (read and hashed).
async fn verify_blob(blobs: &Blobs, reference: &AttachmentRef) -> Option<String> {
    match hash_file(blobs.path(&reference.digest)).await {
        Err(e) => Some(format!("{} cannot be read: {e}", reference.digest)),
        Ok((computed, len)) if computed != reference.digest || len != reference.size => {
            tracing::error!(digest = %reference.digest, %computed, len, "attachment corrupt on disk");
            Some(format!(
                "the stored bytes of {} ({}) hash to {computed} ({len} bytes, the job says {}): \
                 they changed on disk",
                reference.digest, reference.name, reference.size
            ))
        }
        Ok(_) => None,
    }
}

/// Why the job cannot be signed as far as its attachments go: every referenced blob must be
/// held at the branch and hash to its name before the signature covers its digest.
pub async fn check_for_report(blobs: &Blobs, job: &Job) -> Vec<RefusalReason> {
    let mut reasons = Vec::new();
    for a in &job.attachments {
        let rule = match a.kind {
            AttachmentKind::Before | AttachmentKind::After => "R7",
            AttachmentKind::Receipt => "R28",
            AttachmentKind::Signature => "R8",
        };
        let (_, complete) = blobs.held(&a.digest).await;
        if !complete {
            reasons.push(RefusalReason {
                rule: rule.into(),
                code: "attachment_missing".into(),
                message: format!(
                    "the {} attachment {} ({}) has not reached the branch yet: sync the device",
                    a.kind.as_str(),
                    a.name,
                    a.digest
                ),
            });
        } else if let Some(problem) = verify_blob(blobs, a).await {
            reasons.push(RefusalReason {
                rule: rule.into(),
                code: "attachment_corrupt".into(),
                message: problem,
            });
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_range("bytes 0-99/300"), Some((0, 100, 300)));
        assert_eq!(parse_range("bytes 200-299/300"), Some((200, 300, 300)));
        assert_eq!(parse_range("bytes */0"), Some((0, 0, 0)));
        assert_eq!(parse_range("bytes 0-300/300"), None);
        assert_eq!(parse_range("bytes 5-1/300"), None);
        assert_eq!(parse_range("0-1/2"), None);
    }
}

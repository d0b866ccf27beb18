//! Enrollment over the network (issue 15, point 7): no shell on the server after a device is
//! handed to a technician.
//!
//! - The desk issues a **one-time code** for a technician (`POST /api/enrollment-codes`, a
//!   dispatcher or manager; or `fieldsync device code` on the server). Only the code's
//!   SHA-256 is stored (`shared::enrollment::code_digest`), as a record of kind
//!   `enrollment_code`; it expires after `[enrollment] code_ttl` by the server's clock.
//! - The device sends the code and its own public key (`POST /api/enroll`, no token): the code
//!   is marked used by compare-and-set on its record (two devices racing with one code: one
//!   wins, the other is refused), then the device is enrolled and gets its first token.
//! - A token is **renewed by proving possession of the device key**: `POST
//!   /api/token/challenge` hands out a random nonce for the device (kept in memory, answerable
//!   once, within `[enrollment] challenge_ttl`), `POST /api/token/renew` checks the device's
//!   ed25519 signature of `shared::enrollment::renewal_message` with `verify_strict` against
//!   the enrolled key and answers a fresh token. A revoked device is refused at both steps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::enrollment::{
    CODE_LENGTH, code_digest, format_code, normalize_code, renewal_message,
};
use fieldsync_shared::ids::{BranchId, DeviceId, TechnicianId};
use fieldsync_shared::keys::{PublicKey, signature_from_hex};
use fieldsync_shared::report::DeviceRecord;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{Record, StorageError, Store};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Actor, STAFF, Subject};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_body;
use crate::http::wire::{ErrorBody, Instant};
use crate::sync::registry::RegistryError;

/// The record kind of an enrollment code.
pub const CODE_KIND: &str = "enrollment_code";

/// Most renewal challenges held at once (answered or expired ones are dropped first).
const MAX_CHALLENGES: usize = 10_000;

/// An enrollment code as stored: its digest, never the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// `shared::enrollment::code_digest` of the normalised code (the record id).
    pub digest: String,
    pub technician: TechnicianId,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// `desk:dispatcher`, `desk:manager` or `cli`.
    pub issued_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<CodeUse>,
}

/// The enrollment a code was used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeUse {
    pub at: Timestamp,
    pub device_id: DeviceId,
}

/// Why enrollment or renewal was refused; each is an HTTP answer with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("records: {0}")]
    Registry(#[from] RegistryError),
    #[error("enrollment code record {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error("no randomness: {0}")]
    Random(String),
}

fn random<const N: usize>() -> Result<[u8; N], EnrollError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| EnrollError::Random(e.to_string()))?;
    Ok(bytes)
}

/// Issues a one-time code for `technician`, valid from `now` for `ttl`: stores its digest
/// (durable when this returns) and returns the code, which is shown once and kept nowhere.
/// Blocking: call it from a command or the blocking pool.
pub fn issue_code(
    store: &Store,
    technician: TechnicianId,
    issued_by: &str,
    now: Timestamp,
    ttl: Duration,
) -> Result<(String, CodeRecord), EnrollError> {
    let code = format_code(&random::<CODE_LENGTH>()?);
    // A code this function formats is always well formed.
    let normalized = normalize_code(&code).map_err(|e| EnrollError::Random(e.to_string()))?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let record = CodeRecord {
        digest: code_digest(&normalized),
        technician,
        issued_at: now,
        expires_at: now.plus_millis(ttl_ms),
        issued_by: issued_by.to_owned(),
        used: None,
    };
    store.put_record(to_record(&record, 1)).wait()?;
    Ok((code, record))
}

fn to_record(code: &CodeRecord, revision: u64) -> Record {
    Record {
        kind: CODE_KIND.to_owned(),
        id: code.digest.clone(),
        revision,
        lookup: Some(code.technician.to_string()),
        open: code.used.is_none(),
        // A struct of strings and numbers: serialising cannot fail.
        body: serde_json::to_vec(code).unwrap_or_default(),
    }
}

/// Why a code cannot enroll a device: what the device is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRefusal {
    Malformed(String),
    Unknown,
    Used { at: Timestamp },
    Expired { at: Timestamp },
}

impl CodeRefusal {
    fn into_api(self) -> ApiError {
        match self {
            CodeRefusal::Malformed(reason) => {
                ApiError::bad_request("invalid_enrollment_code", reason)
            }
            CodeRefusal::Unknown => ApiError::new(
                StatusCode::FORBIDDEN,
                "unknown_enrollment_code",
                "this branch issued no such enrollment code: check it, or ask the desk for a new one",
            ),
            CodeRefusal::Used { at } => ApiError::new(
                StatusCode::FORBIDDEN,
                "enrollment_code_used",
                format!(
                    "this enrollment code was already used at {at}: a code enrolls one device; \
                     ask the desk for a new one"
                ),
            ),
            CodeRefusal::Expired { at } => ApiError::new(
                StatusCode::FORBIDDEN,
                "enrollment_code_expired",
                format!("this enrollment code expired at {at}: ask the desk for a new one"),
            ),
        }
    }
}

/// Marks the code used by `device_id` at `now` if it may still enroll a device. Blocking.
/// Single use holds across processes and racing requests: the used mark is written as the
/// record's next revision by compare-and-set, so only one writer succeeds.
pub fn consume_code(
    store: &Store,
    typed: &str,
    device_id: &DeviceId,
    now: Timestamp,
) -> Result<Result<CodeRecord, CodeRefusal>, EnrollError> {
    let normalized = match normalize_code(typed) {
        Ok(n) => n,
        Err(e) => return Ok(Err(CodeRefusal::Malformed(e.to_string()))),
    };
    let digest = code_digest(&normalized);
    let Some(stored) = store.record(CODE_KIND, &digest)? else {
        return Ok(Err(CodeRefusal::Unknown));
    };
    let mut code: CodeRecord = serde_json::from_slice(&stored.body)
        .map_err(|e| EnrollError::Corrupt(digest.clone(), e.to_string()))?;
    if let Some(used) = &code.used {
        return Ok(Err(CodeRefusal::Used { at: used.at }));
    }
    if now >= code.expires_at {
        return Ok(Err(CodeRefusal::Expired {
            at: code.expires_at,
        }));
    }
    code.used = Some(CodeUse {
        at: now,
        device_id: device_id.clone(),
    });
    match store
        .put_record(to_record(&code, stored.revision + 1))
        .wait()
    {
        Ok(()) => Ok(Ok(code)),
        // Someone used it in between.
        Err(StorageError::RevisionConflict { .. }) => Ok(Err(CodeRefusal::Used { at: now })),
        Err(e) => Err(e.into()),
    }
}

/// Renewal challenges handed out and not yet answered: nonce → (device, deadline).
#[derive(Debug, Default)]
pub struct Challenges {
    open: std::sync::Mutex<HashMap<String, (DeviceId, Timestamp)>>,
}

impl Challenges {
    fn issue(
        &self,
        device: DeviceId,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<(String, Timestamp), EnrollError> {
        let nonce = hex::encode(random::<32>()?);
        let deadline = now.plus_millis(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.len() >= MAX_CHALLENGES {
            open.retain(|_, (_, until)| *until > now);
        }
        if open.len() >= MAX_CHALLENGES {
            // Still full of live ones: the oldest deadline goes.
            if let Some(oldest) = open
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                open.remove(&oldest);
            }
        }
        open.insert(nonce.clone(), (device, deadline));
        Ok((nonce, deadline))
    }

    /// Takes the challenge out (answerable once) if it was issued to `device` and is live.
    fn take(&self, nonce: &str, device: &DeviceId, now: Timestamp) -> bool {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match open.get(nonce) {
            Some((owner, until)) if owner == device => {
                let live = now < *until;
                open.remove(nonce);
                live
            }
            _ => false,
        }
    }
}

/// The body of `POST /api/enrollment-codes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    /// The technician the device will belong to.
    pub technician: String,
}

/// A code just issued: shown once, never stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCode {
    /// `XXXX-XXXX-XXXX` (case, spaces and dashes do not matter when typed).
    pub code: String,
    pub technician: String,
    pub expires_at: Instant,
}

/// Issues a one-time enrollment code for a technician's device.
#[utoipa::path(
    post,
    path = "/api/enrollment-codes",
    tag = "devices",
    description = "Issue a one-time enrollment code for a technician's new device (`fieldsync-tech \
        init --server URL --code CODE`). Single use; expires after `[enrollment] code_ttl`; \
        only its digest is stored. Roles: dispatcher, manager.",
    request_body = NewCode,
    responses(
        (status = 201, body = IssuedCode),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_technician"),
    ),
)]
pub async fn create_code(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<IssuedCode>), ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "issue enrollment codes")?;
    let new: NewCode = parse_body(&body)?;
    let issued = issue_enrollment_code(&state, &new.technician, &actor).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Issues a one-time code for `technician`'s new device and writes the audit entry
/// (`enrollment_code_issue`, naming the technician, never the code). The API and the
/// console's devices page both call it.
pub async fn issue_enrollment_code(
    state: &Edge,
    technician: &str,
    actor: &Actor,
) -> Result<IssuedCode, ApiError> {
    let technician = TechnicianId::new(technician.trim())
        .map_err(|e| ApiError::bad_request("invalid_technician", e.to_string()))?;
    let store = Arc::clone(&state.node.store);
    let now = state.node.clock.now();
    let ttl = state.node.config.enrollment.code_ttl;
    let issued_by = format!("desk:{}", actor.role.as_str());
    let (code, record) =
        tokio::task::spawn_blocking(move || issue_code(&store, technician, &issued_by, now, ttl))
            .await
            .map_err(|e| ApiError::internal("storage_error", e))?
            .map_err(|e| ApiError::internal("enrollment_error", e))?;
    tracing::info!(technician = %record.technician, by = %record.issued_by, "enrollment code issued");
    let entry = Entry::new(
        now,
        actor.name(),
        actor.role.as_str(),
        "enrollment_code_issue",
        format!("technician:{}", record.technician),
    )
    .after("issued")
    .detail(format!("expires at {} ms", record.expires_at.as_millis()));
    crate::console::audit_api(&state.node, entry).await?;
    Ok(IssuedCode {
        code,
        technician: record.technician.to_string(),
        expires_at: Instant(record.expires_at),
    })
}

/// The body of `POST /api/enroll`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The code the desk issued.
    pub code: String,
    /// The device's ed25519 public key, 64 hex digits (the secret never leaves the device).
    pub public_key: String,
}

/// A token and when it ends.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: Instant,
    /// The same end as seconds from now: a device judges by it, whatever its own clock says.
    pub expires_in_secs: u64,
}

/// What an enrolled device learns.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enrolled {
    pub device_id: String,
    pub technician: String,
    pub branch_id: String,
    /// The technician's assignment index, once a job was assigned to them.
    pub assignment_index_url: Option<String>,
    #[serde(flatten)]
    pub token: IssuedToken,
}

fn issue_token(state: &Edge, device: &DeviceId) -> Result<IssuedToken, ApiError> {
    let ttl = state.node.config.enrollment.device_token_ttl;
    let now = state.node.clock.now();
    let token = state
        .node
        .tokens
        .issue(&Subject::Device(device.clone()), ttl, now)
        .map_err(|e| ApiError::internal("token_error", e))?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    Ok(IssuedToken {
        token,
        expires_at: Instant(now.plus_millis(ttl_ms)),
        expires_in_secs: ttl.as_secs(),
    })
}

/// Enrolls a device with a one-time code and answers its first token.
#[utoipa::path(
    post,
    path = "/api/enroll",
    tag = "devices",
    description = "A new device enrolls its public key with a one-time code from the desk and \
        receives its device id and first token. No token needed: the code is the credential.",
    security(()),
    request_body = EnrollRequest,
    responses(
        (status = 201, body = Enrolled),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_enrollment_code, invalid_public_key"),
        (status = 403, body = ErrorBody, description = "unknown_enrollment_code, \
            enrollment_code_used, enrollment_code_expired"),
    ),
)]
pub async fn enroll(
    State(state): State<Arc<Edge>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let request: EnrollRequest = parse_body(&body)?;
    let public = PublicKey::from_hex(&request.public_key)
        .map_err(|e| ApiError::bad_request("invalid_public_key", e.to_string()))?;
    let device_id = DeviceId::new(format!(
        "dev-{}",
        hex::encode(random::<4>().map_err(|e| ApiError::internal("enrollment_error", e))?)
    ))
    .map_err(|e| ApiError::internal("enrollment_error", e))?;
    let store = Arc::clone(&state.node.store);
    let now = state.node.clock.now();
    let device = device_id.clone();
    let code =
        tokio::task::spawn_blocking(move || consume_code(&store, &request.code, &device, now))
            .await
            .map_err(|e| ApiError::internal("storage_error", e))?
            .map_err(|e| ApiError::internal("enrollment_error", e))?
            .map_err(|refusal| {
                tracing::info!(?refusal, "enrollment refused");
                refusal.into_api()
            })?;
    let branch_id: BranchId = state.node.branch_id.clone();
    let record = DeviceRecord {
        device_id: device_id.clone(),
        branch_id: branch_id.clone(),
        technician: code.technician.clone(),
        public_key: public.to_hex(),
        revoked_at: None,
    };
    let pending = state
        .node
        .registry_write()
        .enroll_device(&state.node.store, record)
        .map_err(|e| ApiError::internal("enrollment_error", e))?;
    pending
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    tracing::info!(device = %device_id, technician = %code.technician, key_id = %public.id(), "device enrolled by code");
    let index = state.node.registry_read().index_doc(&code.technician);
    let token = issue_token(&state, &device_id)?;
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            device_id: device_id.to_string(),
            technician: code.technician.to_string(),
            branch_id: branch_id.to_string(),
            assignment_index_url: index.map(|i| i.url()),
            token,
        }),
    ))
}

/// The body of `POST /api/token/challenge`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub device_id: String,
}

/// A nonce for the device to sign.
#[derive(Debug, Serialize, ToSchema)]
pub struct Challenge {
    /// 32 random bytes, hex.
    pub nonce: String,
    pub branch_id: String,
    pub expires_at: Instant,
}

/// The enrolled, unrevoked device's public key, or the refusal.
fn live_key(state: &Edge, device: &DeviceId) -> Result<PublicKey, ApiError> {
    // A revocation by `fieldsync device revoke` in another process counts at once.
    if let Err(e) = state.node.reload_registry_if_changed() {
        tracing::warn!(error = %e, "cannot re-read the records");
    }
    let registry = state.node.registry_read();
    let record = registry.device(device).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_device",
            format!("device {device} is not enrolled at this branch"),
        )
    })?;
    if let Some(at) = record.revoked_at {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "revoked",
            format!("device {device} was revoked at {at}: enroll it again with a new code"),
        ));
    }
    PublicKey::from_hex(&record.public_key)
        .map_err(|e| ApiError::internal("device_record_unreadable", e))
}

fn parse_device(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(id).map_err(|e| ApiError::bad_request("invalid_device_id", e.to_string()))
}

/// Hands out a nonce the device signs to renew its token.
#[utoipa::path(
    post,
    path = "/api/token/challenge",
    tag = "devices",
    description = "Step one of renewing a device token: a nonce, answerable once within \
        `[enrollment] challenge_ttl`, for the device to sign with its enrolled key. No token \
        needed (the old one may have expired).",
    security(()),
    request_body = ChallengeRequest,
    responses(
        (status = 200, body = Challenge),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_device_id"),
        (status = 403, body = ErrorBody, description = "unknown_device, revoked"),
    ),
)]
pub async fn challenge(
    State(state): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Json<Challenge>, ApiError> {
    let request: ChallengeRequest = parse_body(&body)?;
    let device = parse_device(&request.device_id)?;
    live_key(&state, &device)?;
    let (nonce, until) = state
        .challenges
        .issue(
            device,
            state.node.clock.now(),
            state.node.config.enrollment.challenge_ttl,
        )
        .map_err(|e| ApiError::internal("enrollment_error", e))?;
    Ok(Json(Challenge {
        nonce,
        branch_id: state.node.branch_id.to_string(),
        expires_at: Instant(until),
    }))
}

/// The body of `POST /api/token/renew`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub device_id: String,
    pub nonce: String,
    /// The device's ed25519 signature (hex) of `fieldsync-token-renewal-v1\n{branch}\n{device}\n{nonce}`.
    pub signature: String,
}

/// Answers a fresh token to a device that signed its challenge with its enrolled key.
#[utoipa::path(
    post,
    path = "/api/token/renew",
    tag = "devices",
    description = "Step two of renewing a device token: the signed challenge, checked with \
        `verify_strict` against the enrolled key, for a fresh token. No token needed.",
    security(()),
    request_body = RenewRequest,
    responses(
        (status = 200, body = IssuedToken),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_device_id, invalid_signature"),
        (status = 403, body = ErrorBody, description = "unknown_device, revoked, \
            unknown_challenge, bad_signature"),
    ),
)]
pub async fn renew(
    State(state): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Json<IssuedToken>, ApiError> {
    let request: RenewRequest = parse_body(&body)?;
    let device = parse_device(&request.device_id)?;
    let signature = signature_from_hex(request.signature.trim()).ok_or_else(|| {
        ApiError::bad_request("invalid_signature", "the signature is not 64 bytes of hex")
    })?;
    // Taken before anything else is checked: a challenge is answerable once, right or wrong.
    if !state
        .challenges
        .take(&request.nonce, &device, state.node.clock.now())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_challenge",
            "no live challenge with this nonce for this device (answered already, expired, or \
             never issued): ask for a new one",
        ));
    }
    let key = live_key(&state, &device)?;
    let message = renewal_message(
        state.node.branch_id.as_str(),
        device.as_str(),
        &request.nonce,
    );
    if !key.verify(&message, &signature) {
        state.node.metrics.refused("bad_renewal_signature");
        tracing::warn!(%device, "token renewal with a signature that does not verify");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            format!("the signature does not verify against device {device}'s enrolled key"),
        ));
    }
    Ok(Json(issue_token(&state, &device)?))
}

//! Enrollment and token renewal over the network (issue 15, point 7).
//!
//! [`enroll`] sends the desk's one-time code and the device's public key to the edge
//! (`POST /api/enroll`) and returns who the device now is and its first token.
//! [`KeyRenewal`] is a [`TokenSource`] that renews the device's token by proving it holds the
//! device key: it asks for a challenge, signs `shared::enrollment::renewal_message` and trades
//! the signature for a fresh token. It hands out its token before every dial and renews it
//! once a third of its lifetime is left ([`TokenSource::renews_ahead`]), judged by this
//! device's clock from the lifetime the server states (so a device whose clock is off still
//! renews in time). A revoked device's renewal is refused by the server: sync then stops with
//! [`SyncState::Refused`](crate::SyncState).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldsync_shared::enrollment::renewal_message;
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::keys::{KeyPair, PublicKey};
use fieldsync_shared::time::Timestamp;
use serde::Deserialize;
use serde_json::json;

use crate::node::now;
use crate::sync::{TokenError, TokenFuture, TokenSource};
use crate::tls::ClientTls;
use crate::url::http_url;

/// How long an HTTP call of enrollment or renewal may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why enrollment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("{0:?} is not a server URL (ws://, wss://, http:// or https://)")]
    BadUrl(String),
    /// The server could not be reached or answered nothing usable.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server refused, with its stable code (`enrollment_code_used`,
    /// `enrollment_code_expired`, `unknown_enrollment_code`…) and message.
    #[error("the server refused the enrollment ({code}): {message}")]
    Refused { code: String, message: String },
}

impl EnrollError {
    /// The server's code for a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            EnrollError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A device token and how long this device may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken {
    pub token: String,
    /// When it ends, by this device's clock (received time + the lifetime the server stated).
    pub valid_until: Timestamp,
    /// Its whole lifetime in milliseconds (renewal starts with a third of it left).
    pub lifetime_ms: i64,
}

impl DeviceToken {
    fn received(token: String, expires_in_secs: u64) -> Self {
        let lifetime_ms = i64::try_from(expires_in_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            token,
            valid_until: now().plus_millis(lifetime_ms),
            lifetime_ms,
        }
    }

    /// Whether it is still worth dialling with at `at` (more than a third of its life left).
    pub fn fresh_at(&self, at: Timestamp) -> bool {
        self.valid_until.as_millis() - at.as_millis() > self.lifetime_ms / 3
    }
}

/// What the server answered an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub device_id: DeviceId,
    pub technician: TechnicianId,
    pub branch_id: String,
    /// The technician's assignment index, when a job was already assigned to them.
    pub assignment_index: Option<DocumentId>,
    pub token: DeviceToken,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
    expires_in_secs: u64,
}

#[derive(Deserialize)]
struct EnrolledBody {
    device_id: String,
    technician: String,
    branch_id: String,
    assignment_index_url: Option<String>,
    token: String,
    expires_in_secs: u64,
}

#[derive(Deserialize)]
struct ChallengeBody {
    nonce: String,
    branch_id: String,
}

/// An HTTP answer: the body on success, the server's error code and message otherwise.
enum Answer<T> {
    Ok(T),
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

async fn post<T: for<'de> Deserialize<'de>>(
    tls: &ClientTls,
    url: reqwest::Url,
    body: serde_json::Value,
) -> Result<Answer<T>, String> {
    let client = tls.http().map_err(|e| e.to_string())?;
    let response = client
        .post(url)
        .json(&body)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map(Answer::Ok)
            .map_err(|e| format!("the server's answer is not what was expected: {e}"));
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => (body.code, body.message),
        Err(_) => (
            format!("http_{}", status.as_u16()),
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
    };
    Ok(Answer::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

/// A failed HTTP call in words: reqwest's own message names only the URL, its sources say
/// what went wrong ("Connection refused").
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn endpoint(server: &str, path: &str) -> Result<reqwest::Url, EnrollError> {
    http_url(server, path).ok_or_else(|| EnrollError::BadUrl(server.to_owned()))
}

/// Enrolls `public_key` at the edge of `server` (its sync URL, e.g. `ws://edge:3030/sync`)
/// with the desk's one-time `code`.
pub async fn enroll(
    server: &str,
    tls: &ClientTls,
    code: &str,
    public_key: &PublicKey,
) -> Result<Enrollment, EnrollError> {
    let url = endpoint(server, "/api/enroll")?;
    let shown = url.to_string();
    let answer = post::<EnrolledBody>(
        tls,
        url,
        json!({ "code": code, "public_key": public_key.to_hex() }),
    )
    .await
    .map_err(|reason| EnrollError::Unreachable {
        url: shown.clone(),
        reason,
    })?;
    let body = match answer {
        Answer::Ok(body) => body,
        Answer::Refused { code, message, .. } => {
            return Err(EnrollError::Refused { code, message });
        }
    };
    let bad = |what: &str, e: String| EnrollError::Unreachable {
        url: shown.clone(),
        reason: format!("the server answered an unusable {what}: {e}"),
    };
    Ok(Enrollment {
        device_id: DeviceId::new(body.device_id).map_err(|e| bad("device id", e.to_string()))?,
        technician: TechnicianId::new(body.technician)
            .map_err(|e| bad("technician", e.to_string()))?,
        branch_id: body.branch_id,
        assignment_index: body
            .assignment_index_url
            .as_deref()
            .map(DocumentId::from_url)
            .transpose()
            .map_err(|e| bad("assignment index", e.to_string()))?,
        token: DeviceToken::received(body.token, body.expires_in_secs),
    })
}

struct Inner {
    server: String,
    tls: ClientTls,
    device_id: DeviceId,
    key: Arc<KeyPair>,
    current: Mutex<Option<DeviceToken>>,
}

/// Renews the device's token with a challenge signed by the device key. Cheap to clone.
#[derive(Clone)]
pub struct KeyRenewal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyRenewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRenewal")
            .field("server", &self.inner.server)
            .field("device_id", &self.inner.device_id)
            .finish()
    }
}

impl KeyRenewal {
    /// Renews for `device_id`, whose enrolled key is `key`, at the edge of `server` (its sync
    /// URL).
    pub fn new(
        server: impl Into<String>,
        tls: ClientTls,
        device_id: DeviceId,
        key: Arc<KeyPair>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                server: server.into(),
                tls,
                device_id,
                key,
                current: Mutex::new(None),
            }),
        }
    }

    /// Starts from a token already held (enrollment's, or one kept from an earlier run).
    pub fn with_token(self, token: DeviceToken) -> Self {
        *self.slot() = Some(token);
        self
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<DeviceToken>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token it holds now (to keep for the next run).
    pub fn current(&self) -> Option<DeviceToken> {
        self.slot().clone()
    }

    /// Asks for a fresh token now, whatever the one held.
    pub async fn renew_now(&self) -> Result<DeviceToken, TokenError> {
        let inner = &self.inner;
        let unavailable = |reason: String| TokenError::Unavailable(reason);
        let url = http_url(&inner.server, "/api/token/challenge")
            .ok_or_else(|| TokenError::Denied(format!("{:?} is not a server URL", inner.server)))?;
        let challenge =
            match post::<ChallengeBody>(&inner.tls, url, json!({ "device_id": inner.device_id }))
                .await
                .map_err(unavailable)?
            {
                Answer::Ok(c) => c,
                Answer::Refused {
                    status,
                    code,
                    message,
                } => return Err(refusal(status, code, message)),
            };
        let message = renewal_message(
            &challenge.branch_id,
            inner.device_id.as_str(),
            &challenge.nonce,
        );
        let signature = hex::encode(inner.key.sign(&message).to_bytes());
        let url = http_url(&inner.server, "/api/token/renew")
            .ok_or_else(|| TokenError::Denied(format!("{:?} is not a server URL", inner.server)))?;
        let body = json!({
            "device_id": inner.device_id,
            "nonce": challenge.nonce,
            "signature": signature,
        });
        let token = match post::<TokenBody>(&inner.tls, url, body)
            .await
            .map_err(unavailable)?
        {
            Answer::Ok(t) => DeviceToken::received(t.token, t.expires_in_secs),
            Answer::Refused {
                status,
                code,
                message,
            } => return Err(refusal(status, code, message)),
        };
        tracing::info!(device = %inner.device_id, "device token renewed with the device key");
        *self.slot() = Some(token.clone());
        Ok(token)
    }
}

/// A refusal of the server: a revoked or unknown device, a signature the server does not
/// accept, are final; anything else (a challenge that expired on a slow link, a server error)
/// is worth another try.
fn refusal(status: u16, code: String, message: String) -> TokenError {
    match code.as_str() {
        "revoked" | "unknown_device" | "bad_signature" | "invalid_signature"
        | "invalid_device_id" => TokenError::Denied(format!("{code}: {message}")),
        _ if status >= 500 || code == "unknown_challenge" => {
            TokenError::Unavailable(format!("{code}: {message}"))
        }
        _ => TokenError::Denied(format!("{code}: {message}")),
    }
}

impl TokenSource for KeyRenewal {
    fn token(&self) -> TokenFuture {
        let this = self.clone();
        Box::pin(async move {
            if let Some(held) = this.current()
                && held.fresh_at(now())
            {
                return Ok(held.token);
            }
            this.renew_now().await.map(|t| t.token)
        })
    }

    fn renews_ahead(&self) -> bool {
        true
    }

    fn refused(&self, token: &str) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|held| held.token == token) {
            *slot = None;
        }
    }
}

//! Background sync: keep a connection to the server whenever one can be had.
//!
//! The supervisor dials, runs the connection until it ends, waits (exponential backoff with
//! jitter) and dials again, for as long as the device syncs. Credentials: a token the server
//! refuses as expired (or otherwise invalid) is renewed once through the app's
//! [`TokenSource`]; a device the server reports as revoked, a renewal the app denies, or a fresh
//! token refused again, stop sync with [`SyncState::Refused`]: retrying those forever would
//! only hammer the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fieldsync_shared::ids::DocumentId;
use tokio::sync::watch;

use crate::connection::{self, ConnectError};
use crate::events::SyncState;
use crate::node::{Hooks, Node};
use crate::tls::{ClientTls, TlsError};
use crate::url::http_url;

/// Why the app could not supply a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not now (no network to the sign-in service, say): sync retries later with backoff.
    #[error("no token available now: {0}")]
    Unavailable(String),
    /// Never (the user signed out, the device was withdrawn): sync stops.
    #[error("token renewal denied: {0}")]
    Denied(String),
}

/// A future that yields a fresh token.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send>>;

/// Where a device gets a new token when the server refuses the one it has. Any
/// `Fn() -> impl Future<Output = Result<String, TokenError>>` is one.
pub trait TokenSource: Send + Sync {
    fn token(&self) -> TokenFuture;

    /// A source that knows when its token ends (`KeyRenewal`) is asked before every dial and
    /// hands out its token, renewed before it expires; others are asked only when the server
    /// refuses the token held.
    fn renews_ahead(&self) -> bool {
        false
    }

    /// The server refused `token`: a source that keeps tokens must not hand it out again.
    fn refused(&self, _token: &str) {}
}

impl<F, Fut> TokenSource for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<String, TokenError>> + Send + 'static,
{
    fn token(&self) -> TokenFuture {
        Box::pin(self())
    }
}

/// Exponential backoff with jitter: the n-th retry waits a random time between half and all of
/// `min(initial × 2ⁿ, max)`, so devices that lost the server together do not all return in
/// the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        let full = self.initial.saturating_mul(factor).min(self.max);
        let mut bytes = [0u8; 8];
        let random = if getrandom::fill(&mut bytes).is_ok() {
            u64::from_le_bytes(bytes)
        } else {
            u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        let half = full / 2;
        let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_millis(random % spread)
    }
}

/// How a device syncs.
#[derive(Clone)]
pub struct SyncOptions {
    /// The server's WebSocket endpoint, e.g. `wss://edge.example:3030/sync`.
    pub url: String,
    /// Whom to trust for `wss://` (and the HTTP calls beside it): the system's store unless
    /// set, e.g. with [`with_ca_file`](Self::with_ca_file) for a branch's own CA.
    pub tls: ClientTls,
    /// A token to start with; without one the first is asked of `renew`.
    pub token: Option<String>,
    /// Renews a token the server refused as expired or invalid.
    pub renew: Option<Arc<dyn TokenSource>>,
    pub backoff: Backoff,
    /// Ask the server (`GET /api/me`) for the technician's assignment index when the device
    /// does not know it yet.
    pub discover_index: bool,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("url", &self.url)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("renew", &self.renew.is_some())
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl SyncOptions {
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: ClientTls::system(),
            token: Some(token.into()),
            renew: None,
            backoff: Backoff::default(),
            discover_index: true,
        }
    }

    /// Renews tokens through `source`.
    pub fn with_renewal(mut self, source: impl TokenSource + 'static) -> Self {
        self.renew = Some(Arc::new(source));
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Trusts `tls` for `wss://`.
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts only the CA certificate(s) in the PEM file at `path` (a branch's own CA); fails
    /// at once, naming the file, if it is unreadable or holds no certificate.
    pub fn with_ca_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, TlsError> {
        Ok(self.with_tls(ClientTls::from_ca_file(path)?))
    }
}

/// What the supervisor needs of the device.
pub(crate) struct Context {
    pub node: Node,
    pub max_frame_bytes: usize,
    /// This supervisor's number (see [`Reporter`]).
    pub generation: u64,
    /// The device's attachments, uploaded while connected.
    pub blobs: crate::attachments::LocalBlobs,
}

/// Reports the sync state for one supervisor, and only while it is the device's current one:
/// a supervisor that was stopped (or replaced) may still be winding down, and must not
/// overwrite the state its successor reports.
#[derive(Clone)]
pub(crate) struct Reporter {
    hooks: Arc<Hooks>,
    generation: u64,
}

impl Reporter {
    fn set(&self, state: SyncState) {
        if self.hooks.generation.load(Ordering::SeqCst) == self.generation {
            self.hooks.set_state(state);
        }
    }
}

/// Syncs until `stop` flips to true or the server refuses the device for good.
pub(crate) async fn supervise(ctx: Context, options: SyncOptions, mut stop: watch::Receiver<bool>) {
    let hooks = Reporter {
        hooks: Arc::clone(&ctx.node.hooks),
        generation: ctx.generation,
    };
    let mut token = options.token.clone();
    // Set after a renewal, cleared once a token is accepted: a fresh token refused again is
    // final.
    let mut renewed = false;
    // A source that renews ahead is asked before every dial; a token it hands out after the
    // server refused one is a renewal.
    let ahead = options.renew.as_ref().is_some_and(|s| s.renews_ahead());
    let mut forced = false;
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        if ahead {
            token = None;
        }
        let current = match token.clone() {
            Some(t) => t,
            None => match renew(&options).await {
                Ok(t) => {
                    renewed = !ahead || forced;
                    forced = false;
                    token = Some(t.clone());
                    t
                }
                Err(TokenError::Denied(reason)) => {
                    hooks.set(SyncState::Refused {
                        code: "renewal_denied".into(),
                        reason,
                    });
                    return;
                }
                Err(TokenError::Unavailable(reason)) => {
                    if !wait(&hooks, &options, &mut attempt, reason, &mut stop).await {
                        break;
                    }
                    continue;
                }
            },
        };
        hooks.set(SyncState::Connecting { attempt });
        if options.discover_index {
            discover_index(&ctx.node, &options.url, &options.tls, &current).await;
        }
        match connection::dial(&options.url, &current, ctx.max_frame_bytes, &options.tls).await {
            Ok(socket) => {
                renewed = false;
                let mut stopped = stop.clone();
                let joined_hooks = hooks.clone();
                // While connected, jobs taken off the technician hand their unsynced changes
                // to the desk (`handoff`): now, and whenever another one appears.
                let handoffs = tokio::spawn(hand_over_while_connected(
                    ctx.node.clone(),
                    options.url.clone(),
                    options.tls.clone(),
                    current.clone(),
                ));
                // And attachments captured offline go up beside the documents.
                let uploads = tokio::spawn(crate::attachments::upload_while_connected(
                    Arc::clone(&ctx.node.hooks),
                    ctx.blobs.clone(),
                    options.url.clone(),
                    options.tls.clone(),
                    current.clone(),
                ));
                let ended = connection::run(
                    &ctx.node,
                    socket,
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                    move || joined_hooks.set(SyncState::Connected),
                )
                .await;
                handoffs.abort();
                uploads.abort();
                if ended.joined {
                    attempt = 0;
                }
                tracing::info!(code = ?ended.code, reason = %ended.reason, "sync connection ended");
                let reason = match ended.code {
                    Some(code) => format!("closed ({code}): {}", ended.reason),
                    None => ended.reason,
                };
                if !wait(&hooks, &options, &mut attempt, reason, &mut stop).await {
                    break;
                }
            }
            Err(ConnectError::Refused {
                status: 401,
                code,
                reason,
            }) => {
                // An expired token is always worth renewing (a renewed one may have expired
                // during a long outage); anything else gets one renewal, and a revoked device
                // none.
                let renewable = code != "revoked"
                    && options.renew.is_some()
                    && (!renewed || code == "expired_token");
                tracing::info!(%code, %reason, renewable, "the server refused the device's token");
                if renewable {
                    if let Some(source) = &options.renew {
                        source.refused(&current);
                    }
                    forced = true;
                    if renewed && !wait(&hooks, &options, &mut attempt, reason, &mut stop).await {
                        break;
                    }
                    token = None;
                    continue;
                }
                hooks.set(SyncState::Refused { code, reason });
                return;
            }
            Err(ConnectError::BadUrl(reason)) => {
                hooks.set(SyncState::Refused {
                    code: "bad_url".into(),
                    reason,
                });
                return;
            }
            Err(e) => {
                if !wait(&hooks, &options, &mut attempt, e.to_string(), &mut stop).await {
                    break;
                }
            }
        }
    }
    hooks.set(SyncState::Offline);
}

/// Hands pending jobs' changes to the desk, then again each time the node reports a new one.
async fn hand_over_while_connected(node: Node, url: String, tls: ClientTls, token: String) {
    loop {
        let wake = node.hooks.handoffs.notified();
        crate::handoff_delivery::deliver(&node, &url, &tls, &token).await;
        wake.await;
    }
}

async fn renew(options: &SyncOptions) -> Result<String, TokenError> {
    match &options.renew {
        Some(source) => source.token().await,
        None => Err(TokenError::Denied(
            "the server refused the token and no renewal was configured".into(),
        )),
    }
}

/// Reports the disconnection and waits out the backoff. Returns false if sync was stopped.
async fn wait(
    hooks: &Reporter,
    options: &SyncOptions,
    attempt: &mut u32,
    reason: String,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let retry_in = options.backoff.delay(*attempt);
    *attempt = attempt.saturating_add(1);
    hooks.set(SyncState::Disconnected { reason, retry_in });
    let stopped = tokio::select! {
        _ = tokio::time::sleep(retry_in) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// Asks the server which assignment index belongs to this device's technician, once the
/// device does not know it. Failures are quiet: the index can also come from the app.
async fn discover_index(node: &Node, ws_url: &str, tls: &ClientTls, token: &str) {
    if node.overview().await.index.is_some() {
        return;
    }
    let Some(url) = http_url(ws_url, "/api/me") else {
        return;
    };
    // Unusable TLS settings: the dial that follows reports them.
    let Ok(client) = tls.http() else {
        return;
    };
    let response = client
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let Ok(response) = response else {
        return;
    };
    if !response.status().is_success() {
        return;
    }
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return;
    };
    if let Some(index) = body["assignment_index_url"]
        .as_str()
        .and_then(|u| DocumentId::from_url(u).ok())
    {
        node.set_index(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_it() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        };
        for attempt in 0..40 {
            let full = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(30));
            let d = b.delay(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(b.delay(30) >= Duration::from_secs(15));
    }
}

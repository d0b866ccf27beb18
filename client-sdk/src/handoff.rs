//! Jobs taken off this device's technician while it held changes the server never received
//! (issue 12: no stranded edits). The server no longer lets the device write the job, so the
//! changes are handed to the desk instead (`POST /api/handoffs/{job}` on the server), which
//! merges or discards them; nothing the technician recorded is lost, and the device never
//! calls such a job synced.
//!
//! The node marks a job `Pending` when the assignment index stops listing it; while
//! connected, [`deliver`] sends every pending job's unacknowledged changes and records what
//! the server answered. The state is kept in the store's `meta`, so a handover survives a
//! restart and is retried on the next connection until the server has answered.

use std::time::Duration;

use automerge::ChangeHash;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::node::{Node, now};
use crate::sync::http_url;
use crate::tls::ClientTls;

/// The `meta` namespace of handover states.
pub(crate) const HANDOFFS: &str = "client_handoff";

/// What became of a job's local changes once the job was taken off this device's
/// technician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Handoff {
    /// Waiting for a connection to hand the desk what the server never received.
    Pending,
    /// The server holds `changes` of them for the desk (0: it already had every change).
    HandedToDesk {
        changes: usize,
        /// The server's id of the handover (none when there was nothing to hand over).
        id: Option<String>,
        at: Timestamp,
    },
    /// The server would not take them, and said why; they stay on the device.
    Refused { code: String, message: String },
}

impl Handoff {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What to hand over for one job: the changes beyond what the server acknowledged.
struct Payload {
    count: usize,
    bytes: Vec<u8>,
}

/// Hands the desk every pending job's unacknowledged changes, recording each answer. Network
/// failures leave the job pending for the next connection.
pub(crate) async fn deliver(node: &Node, ws_url: &str, tls: &ClientTls, token: &str) {
    let pending: Vec<DocumentId> = node
        .overview()
        .await
        .handoffs
        .into_iter()
        .filter(|(_, h)| *h == Handoff::Pending)
        .map(|(job, _)| job)
        .collect();
    for job in pending {
        let payload = node
            .read(job, |view| {
                let doc = view.doc?;
                let acked: Vec<ChangeHash> = view
                    .record
                    .map(|r| r.heads.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|h| doc.get_change_meta_by_hash(h).is_some())
                    .collect();
                Some(Payload {
                    count: doc.get_changes_meta(&acked).len(),
                    bytes: doc.save_after(&acked),
                })
            })
            .await
            .flatten();
        let outcome = match payload {
            // Nothing on the device, or nothing the server lacks: nothing to hand over.
            None | Some(Payload { count: 0, bytes: _ }) => Some(Handoff::HandedToDesk {
                changes: 0,
                id: None,
                at: now(),
            }),
            Some(payload) => post(ws_url, tls, token, job, payload).await,
        };
        if let Some(outcome) = outcome {
            node.set_handoff(job, outcome);
        }
    }
}

/// Posts one job's changes. `None`: try again on a later connection.
async fn post(
    ws_url: &str,
    tls: &ClientTls,
    token: &str,
    job: DocumentId,
    payload: Payload,
) -> Option<Handoff> {
    let url = http_url(ws_url, &format!("/api/handoffs/{job}"))?;
    let client = match tls.http() {
        Ok(client) => client,
        Err(e) => {
            tracing::info!(%job, error = %e, "cannot hand over changes; retrying later");
            return None;
        }
    };
    let response = client
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(payload.bytes)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(%job, error = %e, "handing over changes failed; retrying later");
            return None;
        }
    };
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        let changes = body["changes"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(payload.count);
        tracing::info!(%job, changes, "handed over to the desk");
        return Some(Handoff::HandedToDesk {
            changes,
            id: body["id"].as_str().map(str::to_owned),
            at: now(),
        });
    }
    let code = body["code"].as_str().unwrap_or("").to_owned();
    let message = body["message"].as_str().unwrap_or("").to_owned();
    if status.is_server_error() || status.as_u16() == 401 {
        // The server's trouble, or a token to renew: the next connection tries again.
        tracing::info!(%job, %status, code, message, "handing over changes failed; retrying later");
        return None;
    }
    tracing::warn!(%job, %status, code, message, "the server refused the handed-over changes");
    Some(Handoff::Refused { code, message })
}

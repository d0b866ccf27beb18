//! Handing the desk what the server never received of a job taken off this device's
//! technician (issue 12; the states are `handoff`'s): while connected, every `Pending` job's
//! unacknowledged changes go to `POST /api/handoffs/{job}`, and the server's answer is
//! recorded on the node. Network failures leave the job pending for the next connection.

use std::time::Duration;

use automerge::ChangeHash;
use fieldsync_shared::ids::DocumentId;

use crate::handoff::Handoff;
use crate::node::{Node, now};
use crate::tls::ClientTls;
use crate::url::http_url;

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

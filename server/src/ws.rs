//! `/sync`: the WebSocket endpoint, one task per connection.
//!
//! The token is checked before the upgrade (a refused peer gets HTTP 401 with the reason and
//! never a socket). Each connection task moves binary frames between the socket and the hub,
//! pings the peer, and closes with a code and a reason that say why.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{self, CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fieldsync_shared::sync::{CloseCode, ConnId, Input, Principal};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::auth::{AuthError, Subject};
use crate::error::ApiError;
use crate::hub::{HubInput, Outbound};

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The bearer token from `Authorization: Bearer …` or, for browsers, `?token=`.
pub fn token_from(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    header.or_else(|| query.map(str::to_owned))
}

/// Checks a token and turns it into the principal the engine knows, or the 401 to send.
pub fn authenticate(state: &AppState, token: Option<String>) -> Result<Principal, AuthError> {
    let token = token.ok_or(AuthError::Missing)?;
    let verified = state.tokens.verify(&token, state.clock.now())?;
    match verified.subject {
        Subject::Device(device_id) => {
            if state.registry_read().device(&device_id).is_none() {
                recheck_records(state);
            }
            let registry = state.registry_read();
            let record = registry
                .device(&device_id)
                .ok_or_else(|| AuthError::Revoked(format!("device {device_id} is not enrolled")))?;
            if let Some(at) = record.revoked_at {
                return Err(AuthError::Revoked(format!(
                    "device {device_id} was revoked at {at}"
                )));
            }
            Ok(Principal::Device {
                device_id,
                technician: record.technician.clone(),
            })
        }
        Subject::Desk(role) => Ok(Principal::Desk {
            role: role.as_str().to_owned(),
        }),
        Subject::Branch(branch_id) => {
            if state.registry_read().branch(&branch_id).is_none() {
                recheck_records(state);
            }
            if state.registry_read().branch(&branch_id).is_none() {
                return Err(AuthError::Revoked(format!(
                    "branch {branch_id} is not enrolled at head office"
                )));
            }
            Ok(Principal::Branch { branch_id })
        }
    }
}

/// A token we signed names a device (or branch) these records do not hold: it may have been
/// enrolled by another process (the CLI) since the last poll of the records. Look now rather
/// than refuse it, since a device treats a refusal as final. One small read of the store, and
/// only on this path, which needs a token signed by this server.
fn recheck_records(state: &AppState) {
    if let Err(e) = state.reload_registry_if_changed() {
        tracing::warn!(error = %e, "cannot re-read the records");
    }
}

/// `GET /sync`: authenticate, then upgrade.
pub async fn sync_endpoint(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let principal = match authenticate(&state, token_from(&headers, query.token.as_deref())) {
        Ok(p) => p,
        Err(e) => {
            state.metrics.refused(e.code());
            tracing::info!(reason = e.code(), "refused a sync connection: {e}");
            return ApiError::unauthorized(&e).into_response();
        }
    };
    let limits = &state.config.limits;
    let open = state.metrics.connections.load(Ordering::Relaxed);
    if usize::try_from(open).unwrap_or(0) >= limits.max_connections {
        state.metrics.refused("too_many_connections");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!(
                "the server holds its limit of {} connections (max_connections); retry later",
                limits.max_connections
            ),
        )
        .into_response();
    }
    let max = limits.max_frame_bytes;
    // Small buffers: an idle connection should cost kilobytes, not the 128 KiB read buffer
    // tungstenite allocates by default. Large messages still work; buffers grow as needed.
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(state, socket, principal))
}

async fn connection(state: Arc<AppState>, socket: WebSocket, principal: Principal) {
    let conn = ConnId(state.next_conn.fetch_add(1, Ordering::Relaxed));
    let (outbox, mut inbox) = mpsc::channel(crate::hub::OUTBOX);
    if !state.hub.send(HubInput::Open {
        conn,
        principal,
        outbox,
        dialed: false,
    }) {
        return;
    }
    state.metrics.connections.fetch_add(1, Ordering::Relaxed);
    state
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let interval = state.config.limits.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last_heard = Instant::now();
    let mut shutdown = state.shutdown.subscribe();
    let max_frame = state.config.limits.max_frame_bytes;

    let close = |code: u16, reason: String| {
        // A close reason is at most 123 bytes (RFC 6455 §5.5).
        let mut reason = reason;
        while reason.len() > 123 {
            reason.pop();
        }
        WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };

    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    last_heard = Instant::now();
                    state.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
                    state.metrics.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    state.hub.engine_input(Input::Frame { conn, bytes: bytes.to_vec() });
                }
                Some(Ok(WsMessage::Text(_))) => {
                    state.metrics.refused("text_frame");
                    let _ = sink
                        .send(close(
                            ws::close_code::UNSUPPORTED,
                            "text frames are not part of the protocol: send binary CBOR".into(),
                        ))
                        .await;
                    break;
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => last_heard = Instant::now(),
                Some(Ok(WsMessage::Close(_))) | None => break,
                Some(Err(e)) => {
                    let text = e.to_string();
                    let (code, reason) = if text.contains("too long") || text.contains("Space limit") {
                        state.metrics.refused("frame_too_large");
                        (
                            ws::close_code::SIZE,
                            format!("message larger than max_frame_bytes ({max_frame})"),
                        )
                    } else {
                        state.metrics.refused("websocket_error");
                        (ws::close_code::PROTOCOL, format!("websocket error: {text}"))
                    };
                    tracing::info!(?conn, %text, "closing after a socket error");
                    let _ = sink.send(close(code, reason)).await;
                    break;
                }
            },
            outgoing = inbox.recv() => match outgoing {
                Some(Outbound::Frame(bytes)) => {
                    if sink.send(WsMessage::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = sink.send(close(code.as_u16(), reason)).await;
                    break;
                }
                None => {
                    let _ = sink
                        .send(close(
                            CloseCode::Policy.as_u16(),
                            "send queue full: the peer reads too slowly".into(),
                        ))
                        .await;
                    break;
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > interval * 3 {
                    state.metrics.refused("idle_timeout");
                    let _ = sink
                        .send(close(ws::close_code::AWAY, "no traffic for three ping intervals".into()))
                        .await;
                    break;
                }
                if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            },
            _ = shutdown.changed() => {
                let _ = sink
                    .send(close(ws::close_code::AWAY, "server shutting down".into()))
                    .await;
                break;
            },
        }
    }
    state.hub.engine_input(Input::Disconnected { conn });
    state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

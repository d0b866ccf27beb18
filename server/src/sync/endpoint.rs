//! `/sync`: the WebSocket endpoint, one task per connection.
//!
//! The token is checked before the upgrade (a refused peer gets HTTP 401 with the reason and
//! never a socket). Each connection task moves binary frames between the socket and the hub,
//! pings the peer, and closes with a code and a reason that say why.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::ws::{self, CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fieldsync_shared::sync::{CloseCode, ConnId, Input, Principal};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::http::error::ApiError;
use crate::http::token_from;
use crate::sync::hub::{HubInput, Outbound};
use crate::sync::node::Node;

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The `/sync` route, on the node's state.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/sync", get(sync_endpoint))
        .with_state(node)
}

/// `GET /sync`: authenticate, then upgrade.
pub async fn sync_endpoint(
    State(state): State<Arc<Node>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let principal = match state.authenticate(token_from(&headers, query.token.as_deref())) {
        Ok(p) => p,
        Err(e) => {
            state.metrics.refused(e.code());
            tracing::info!(reason = e.code(), "refused a sync connection: {e}");
            return ApiError::unauthorized(&e).into_response();
        }
    };
    let limits = &state.config.limits;
    if state.metrics.open_connections() >= limits.max_connections {
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

async fn connection(state: Arc<Node>, socket: WebSocket, principal: Principal) {
    let conn = ConnId(state.next_conn.fetch_add(1, Ordering::Relaxed));
    let (outbox, mut inbox) = mpsc::channel(crate::sync::hub::OUTBOX);
    if !state.hub.send(HubInput::Open {
        conn,
        principal,
        outbox,
        dialed: false,
    }) {
        return;
    }
    state.metrics.connections.inc();
    state.metrics.connections_accepted.inc();
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
                    state.metrics.messages_in.inc();
                    state.metrics.bytes_in.inc_by(bytes.len() as u64);
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
    state.metrics.connections.dec();
}

//! A light device for the load generator: one WebSocket speaking the automerge-repo protocol
//! "1", its documents in memory with one automerge sync state each, nothing on disk.
//!
//! It is deliberately the same client for every server under test (fieldsync, the JavaScript
//! sync server, samod), so whatever the client costs, it costs the same against each. It
//! keeps what a real device keeps between connections: each document's sync state in its
//! persisted form (`sync::State::encode`, the shared heads), so a reconnect resumes rather
//! than starts over. A document has converged with the server when the server's last sync
//! message announced exactly the device's heads: the server holds everything the device has,
//! and (for fieldsync) has stored it, since fieldsync announces only stored heads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use automerge::sync::{self, SyncDoc};
use automerge::{AutoCommit, ChangeHash};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::protocol::message::{
    JoinMessage, PeerId, PeerMetadata, StorageId, SyncMessage,
};
use fieldsync_shared::protocol::{Limits, Message, decode, encode};
use fieldsync_shared::sync::receive_without_changes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::workload;

const MAX_FRAME: usize = 64 << 20;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One document as a device holds it.
pub struct DeviceDoc {
    pub id: DocumentId,
    pub doc: AutoCommit,
    pub state: sync::State,
}

impl DeviceDoc {
    pub fn empty(id: DocumentId) -> Self {
        Self {
            id,
            doc: AutoCommit::new(),
            state: sync::State::new(),
        }
    }

    pub fn with(id: DocumentId, doc: AutoCommit) -> Self {
        Self {
            id,
            doc,
            state: sync::State::new(),
        }
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        let mut heads = self.doc.get_heads();
        heads.sort();
        heads
    }
}

/// A simulated device: who it is and what it holds.
pub struct Device {
    /// The device's name; each connection joins as `NAME:sN`, a fresh peer id per session as
    /// an automerge-repo app gets on each start (fieldsync accepts `device-id:suffix`). Reusing
    /// one peer id would let a server resume a stale in-memory sync state and stay silent.
    pub peer_id: String,
    /// Connections made so far.
    pub sessions: u32,
    pub storage_id: Option<String>,
    /// Bearer token (fieldsync); the baselines have no auth.
    pub token: Option<String>,
    pub docs: Vec<DeviceDoc>,
}

/// Connects to `url` and completes the join handshake; returns the socket and the server's
/// peer id.
pub async fn join(
    url: &str,
    token: Option<&str>,
    peer_id: &str,
    storage_id: Option<&str>,
) -> anyhow::Result<(Socket, PeerId)> {
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .with_context(|| format!("connect {url} as {peer_id}"))?;
    let join = Message::Join(JoinMessage {
        sender_id: PeerId::new(peer_id),
        supported_protocol_versions: vec!["1".into()],
        peer_metadata: PeerMetadata {
            storage_id: storage_id.map(StorageId::new),
            is_ephemeral: Some(false),
        },
    });
    ws.send(WsMessage::Binary(encode(&join).into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => match decode(&b, &limits())? {
                Message::Peer(peer) => return Ok((ws, peer.sender_id)),
                Message::Error(e) => bail!("{peer_id}: server refused the join: {}", e.message),
                _ => {}
            },
            Some(Ok(_)) => {}
            other => bail!("{peer_id}: handshake failed: {other:?}"),
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_message_bytes: MAX_FRAME,
        ..Limits::default()
    }
}

/// Latency probe of steady mode: edits made by one device, waiting to be seen by another.
#[derive(Debug, Default)]
pub struct Probe {
    pending: Mutex<HashMap<ChangeHash, Instant>>,
    samples_ms: Mutex<Vec<f64>>,
}

impl Probe {
    fn sent(&self, hash: ChangeHash) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(hash, Instant::now());
        }
    }

    fn check(&self, doc: &mut AutoCommit) {
        let now = Instant::now();
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let mut seen = Vec::new();
        pending.retain(|hash, at| {
            if doc.get_change_by_hash(hash).is_some() {
                seen.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                false
            } else {
                true
            }
        });
        drop(pending);
        if let Ok(mut samples) = self.samples_ms.lock() {
            samples.extend(seen);
        }
    }

    pub fn samples(&self) -> Vec<f64> {
        self.samples_ms
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub fn outstanding(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// Steady mode, editor side: one edit every `every` until `until`.
pub struct Editor {
    pub every: Duration,
    /// When the first edit happens (after every device has joined).
    pub start_at: Instant,
    pub until: Instant,
    pub probe: Arc<Probe>,
    pub next_edit: usize,
}

/// How a session runs.
pub struct SessionPlan {
    pub url: String,
    /// Told the instant every document converged (once).
    pub converged: Option<oneshot::Sender<Instant>>,
    /// The session ends when this turns true (after convergence if `converged` is set).
    pub stop: watch::Receiver<bool>,
    pub editor: Option<Editor>,
    pub watcher: Option<Arc<Probe>>,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What a session saw.
#[derive(Debug, Default, Clone)]
pub struct SessionStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
}

impl Device {
    /// Runs one connection: join, offer every document, answer the server, report when all
    /// documents have converged, go on answering (and, in steady mode, editing) until told to
    /// stop. The sync states are reset to their persisted form first, as after an app restart.
    pub async fn session(&mut self, mut plan: SessionPlan) -> anyhow::Result<SessionStats> {
        let deadline = tokio::time::Instant::now() + plan.timeout;
        let session_peer = format!("{}:s{}", self.peer_id, self.sessions);
        self.sessions += 1;
        let (ws, server) = tokio::time::timeout_at(
            deadline,
            join(
                &plan.url,
                self.token.as_deref(),
                &session_peer,
                self.storage_id.as_deref(),
            ),
        )
        .await
        .context("join timed out")??;
        let (mut sink, mut stream) = ws.split();
        let me = PeerId::new(session_peer);
        let mut stats = SessionStats::default();
        let index: HashMap<DocumentId, usize> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id, i))
            .collect();
        let mut converged = vec![false; self.docs.len()];
        let mut remaining = self.docs.len();

        let frame = |id: DocumentId, message: sync::Message, request: bool| {
            let payload = SyncMessage {
                sender_id: me.clone(),
                target_id: server.clone(),
                document_id: id,
                data: message.encode(),
            };
            let message = if request {
                Message::Request(payload)
            } else {
                Message::Sync(payload)
            };
            WsMessage::Binary(encode(&message).into())
        };

        for d in &mut self.docs {
            d.state = sync::State::decode(&d.state.encode())?;
            let empty = d.doc.get_heads().is_empty();
            if let Some(m) = d.doc.sync().generate_sync_message(&mut d.state) {
                let f = frame(d.id, m, empty);
                stats.frames_out += 1;
                stats.bytes_out += f.len() as u64;
                sink.feed(f).await?;
            }
        }
        sink.flush().await?;
        if remaining == 0
            && let Some(tx) = plan.converged.take()
        {
            let _ = tx.send(Instant::now());
        }

        let mut tick = plan
            .editor
            .as_ref()
            .map(|e| tokio::time::interval_at(e.start_at.into(), e.every));
        loop {
            let editing = tick.is_some();
            tokio::select! {
                incoming = tokio::time::timeout_at(deadline, stream.next()) => {
                    let bytes = match incoming {
                        Err(_) => bail!("{}: timed out ({} documents not converged)", self.peer_id, remaining),
                        Ok(Some(Ok(WsMessage::Binary(b)))) => b,
                        Ok(Some(Ok(WsMessage::Close(frame)))) => bail!("{}: server closed: {frame:?}", self.peer_id),
                        Ok(Some(Ok(_))) => continue,
                        Ok(Some(Err(e))) => bail!("{}: {e}", self.peer_id),
                        Ok(None) => bail!("{}: connection ended", self.peer_id),
                    };
                    stats.frames_in += 1;
                    stats.bytes_in += bytes.len() as u64;
                    match decode(&bytes, &limits())? {
                        Message::Sync(p) | Message::Request(p) => {
                            let Some(&i) = index.get(&p.document_id) else { continue };
                            let d = &mut self.docs[i];
                            let message = sync::Message::decode(&p.data)?;
                            // As our device SDK does (its engine): a message without changes is
                            // taken without walking the history.
                            if let Err(message) = receive_without_changes(d.doc.document(), &mut d.state, message) {
                                d.doc.sync().receive_sync_message(&mut d.state, message)?;
                            }
                            if let Some(m) = d.doc.sync().generate_sync_message(&mut d.state) {
                                let f = frame(d.id, m, false);
                                stats.frames_out += 1;
                                stats.bytes_out += f.len() as u64;
                                sink.send(f).await?;
                            }
                            if let Some(probe) = &plan.watcher {
                                probe.check(&mut d.doc);
                            }
                            if !converged[i] {
                                let ours = d.heads();
                                let theirs = d.state.their_heads.clone().map(|mut h| { h.sort(); h });
                                if !ours.is_empty() && theirs.as_ref() == Some(&ours) {
                                    converged[i] = true;
                                    remaining -= 1;
                                    if remaining == 0 && let Some(tx) = plan.converged.take() {
                                        let _ = tx.send(Instant::now());
                                    }
                                }
                            }
                        }
                        Message::DocUnavailable(u) => bail!("{}: server says {} is unavailable", self.peer_id, u.document_id),
                        Message::Error(e) => bail!("{}: server error: {}", self.peer_id, e.message),
                        _ => {}
                    }
                }
                changed = plan.stop.changed() => {
                    if changed.is_err() || *plan.stop.borrow() {
                        if remaining > 0 && plan.converged.is_some() {
                            bail!("{}: stopped before convergence ({remaining} left)", self.peer_id);
                        }
                        let _ = sink.send(WsMessage::Close(None)).await;
                        return Ok(stats);
                    }
                }
                _ = async { tick.as_mut().map(|t| t.tick()).expect("guarded").await; }, if editing => {
                    let Some(editor) = plan.editor.as_mut() else { continue };
                    if Instant::now() >= editor.until {
                        tick = None;
                        continue;
                    }
                    let i = editor.next_edit % self.docs.len().max(1);
                    let d = &mut self.docs[i];
                    let doc = std::mem::take(&mut d.doc);
                    d.doc = workload::edit(doc, editor.next_edit + 1_000_000)?;
                    editor.next_edit += 1;
                    if let Some(hash) = d.doc.get_last_local_change().map(|c| c.hash()) {
                        editor.probe.sent(hash);
                    }
                    if let Some(m) = d.doc.sync().generate_sync_message(&mut d.state) {
                        let f = frame(d.id, m, false);
                        stats.frames_out += 1;
                        stats.bytes_out += f.len() as u64;
                        sink.send(f).await?;
                    }
                }
            }
        }
    }
}

/// Holds a joined connection doing nothing but answering pings, until told to stop (idle
/// mode).
pub async fn hold(ws: Socket, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(WsMessage::Ping(p))) => sink.send(WsMessage::Pong(p)).await?,
                Some(Ok(WsMessage::Close(frame))) => bail!("idle connection closed: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => bail!("idle connection closed"),
                Some(Err(e)) => bail!("idle connection: {e}"),
            },
            _ = stop.changed() => {
                let _ = sink.send(WsMessage::Close(None)).await;
                return Ok(());
            }
        }
    }
}

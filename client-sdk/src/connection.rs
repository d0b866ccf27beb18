//! One WebSocket connection to a fieldsync server, driven by the shared sync engine in its
//! client role, over a local SQLite store.
//!
//! [`SyncClient::connect`] dials, authenticates with a bearer token, and runs a task that
//! moves frames between the socket and the engine and carries out the engine's effects
//! against the store. Every local edit is durable in the store before [`SyncClient::edit`]
//! returns; syncing happens in the background.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use automerge::{Automerge, ChangeHash};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::sync::{
    AllowAll, ConnId, Effect, Engine, EngineConfig, EngineRole, Input, LocalEdit, LocalEditError,
    Principal, WriteOp,
};
use fieldsync_storage::Store;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

/// Why a connection could not be made or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The server refused the token (HTTP 401): expired, forged, revoked. Not worth
    /// retrying with the same token.
    #[error("the server refused the credentials ({status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error("cannot connect: {0}")]
    Network(String),
    #[error("bad server URL: {0}")]
    BadUrl(String),
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A document's stored content changed (local edit or remote changes).
    DocChanged { doc: DocumentId },
    /// The server does not have the document, or will not share it.
    DocUnavailable { doc: DocumentId },
    /// The connection closed, with the server's code and reason if it gave one.
    Closed { code: Option<u16>, reason: String },
    /// The handshake completed.
    Joined,
}

enum Command {
    Subscribe(DocumentId),
    Edit {
        doc: DocumentId,
        edit: LocalEdit,
        reply: oneshot::Sender<Result<Vec<ChangeHash>, LocalEditError>>,
    },
    Read {
        doc: DocumentId,
        reply: oneshot::Sender<Option<Automerge>>,
    },
    WriteDone {
        id: fieldsync_shared::sync::WriteId,
        result: Result<(), String>,
    },
    Loaded(Input),
    Close,
}

/// Options of a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The peer id to join as; a device joins as its device id (the server checks).
    pub peer_id: String,
    /// The id of the local store, so the server can resume sync state on reconnect.
    pub storage_id: Option<String>,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: usize,
}

/// A live connection and its engine.
#[derive(Debug, Clone)]
pub struct SyncClient {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<ClientEvent>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl SyncClient {
    /// Dials `url` (e.g. `ws://127.0.0.1:3030/sync`) with `token` and starts syncing.
    pub async fn connect(
        url: &str,
        token: &str,
        options: ConnectOptions,
        store: Arc<Store>,
    ) -> Result<Self, ConnectError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| ConnectError::BadUrl(e.to_string()))?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ConnectError::BadUrl("token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(options.max_frame_bytes))
            .max_frame_size(Some(options.max_frame_bytes));
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(response) => ConnectError::Refused {
                        status: response.status().as_u16(),
                        reason: response
                            .body()
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default(),
                    },
                    other => ConnectError::Network(other.to_string()),
                })?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let mut config = EngineConfig::new(EngineRole::Client, options.peer_id);
        config.storage_id = options.storage_id;
        config.wire_limits.max_message_bytes = options.max_frame_bytes;
        config.sync_limits.max_message_bytes = options.max_frame_bytes;
        let driver = Driver {
            engine: Engine::new(config),
            store,
            commands: commands.clone(),
            events: events.clone(),
            edits: HashMap::new(),
            next_token: 0,
            started: tokio::time::Instant::now(),
            joined_announced: false,
        };
        tokio::spawn(driver.run(socket, rx));
        Ok(Self { commands, events })
    }

    /// Keeps `doc` in sync with the server (loads it from the store first).
    pub fn subscribe(&self, doc: DocumentId) {
        let _ = self.commands.send(Command::Subscribe(doc));
    }

    /// Applies a change locally; returns once it is durable in the local store.
    pub async fn edit(
        &self,
        doc: DocumentId,
        edit: LocalEdit,
    ) -> Result<Vec<ChangeHash>, LocalEditError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Edit { doc, edit, reply })
            .map_err(|_| LocalEditError::Storage("the connection task has stopped".into()))?;
        rx.await.unwrap_or_else(|_| {
            Err(LocalEditError::Storage(
                "the connection task has stopped".into(),
            ))
        })
    }

    /// A copy of the document as the engine holds it now, if loaded.
    pub async fn read(&self, doc: DocumentId) -> Option<Automerge> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Read { doc, reply }).ok()?;
        rx.await.ok().flatten()
    }

    /// Waits until `predicate` holds for the document, or `timeout` passes.
    pub async fn wait_for(
        &self,
        doc: DocumentId,
        timeout: Duration,
        mut predicate: impl FnMut(&Automerge) -> bool,
    ) -> bool {
        // Events wake the wait early, but not every way a document comes to hold something
        // sends one: loading it from the local store changes nothing, and a lagging receiver
        // loses events. So look again at least this often.
        const RECHECK: Duration = Duration::from_millis(50);
        let mut events = self.events.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(current) = self.read(doc).await
                && predicate(&current)
            {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = tokio::time::timeout_at(deadline.min(now + RECHECK), events.recv()).await;
            if let Ok(Err(broadcast::error::RecvError::Closed)) = wait {
                return false;
            }
        }
    }

    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        self.events.subscribe()
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

struct Driver {
    engine: Engine,
    store: Arc<Store>,
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<ClientEvent>,
    edits: HashMap<u64, oneshot::Sender<Result<Vec<ChangeHash>, LocalEditError>>>,
    next_token: u64,
    started: tokio::time::Instant,
    joined_announced: bool,
}

const CONN: ConnId = ConnId(1);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Driver {
    fn now(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    async fn run(mut self, socket: Socket, mut rx: mpsc::UnboundedReceiver<Command>) {
        let (mut sink, mut stream) = socket.split();
        let mut outgoing = self.feed(Input::Connected {
            conn: CONN,
            principal: Principal::Server,
        });
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let closed = loop {
            for frame in outgoing.drain(..) {
                let result = match frame {
                    Out::Frame(bytes) => sink.send(WsMessage::Binary(bytes.into())).await,
                    Out::Close(code, reason) => {
                        let _ = sink
                            .send(WsMessage::Close(Some(CloseFrame {
                                code: code.into(),
                                reason: reason.into(),
                            })))
                            .await;
                        Err(tungstenite::Error::ConnectionClosed)
                    }
                };
                if result.is_err() {
                    break;
                }
            }
            tokio::select! {
                incoming = stream.next() => match incoming {
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        outgoing = self.feed(Input::Frame { conn: CONN, bytes: bytes.to_vec() });
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        break ClientEvent::Closed {
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break ClientEvent::Closed { code: None, reason: e.to_string() },
                    None => break ClientEvent::Closed { code: None, reason: "connection ended".into() },
                },
                command = rx.recv() => match command {
                    Some(Command::Close) | None => {
                        let _ = sink.send(WsMessage::Close(None)).await;
                        break ClientEvent::Closed { code: Some(1000), reason: "closed by client".into() };
                    }
                    Some(command) => outgoing = self.command(command),
                },
                _ = tick.tick() => outgoing = self.feed(Input::Tick),
            }
        };
        let _ = self.feed(Input::Disconnected { conn: CONN });
        let _ = self.events.send(closed);
        // Keep answering local edits and reads while the store is open, so pending writes
        // complete and callers never hang.
        while let Some(command) = rx.recv().await {
            if matches!(command, Command::Close) {
                break;
            }
            let _ = self.command(command);
        }
    }

    fn command(&mut self, command: Command) -> Vec<Out> {
        match command {
            Command::Subscribe(doc) => self.feed(Input::Subscribe { doc }),
            Command::Edit { doc, edit, reply } => {
                let token = self.next_token;
                self.next_token += 1;
                self.edits.insert(token, reply);
                self.feed(Input::Edit { doc, edit, token })
            }
            Command::Read { doc, reply } => {
                let _ = reply.send(self.engine.document(&doc).cloned());
                Vec::new()
            }
            Command::WriteDone { id, result } => self.feed(Input::WriteDone { id, result }),
            Command::Loaded(input) => self.feed(input),
            Command::Close => Vec::new(),
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Out> {
        let now = self.now();
        let effects = self.engine.handle(input, now, &AllowAll);
        let mut out = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { bytes, .. } => out.push(Out::Frame(bytes)),
                Effect::Close { code, reason, .. } => out.push(Out::Close(code.as_u16(), reason)),
                Effect::LoadDoc { doc } => {
                    let store = Arc::clone(&self.store);
                    let tx = self.commands.clone();
                    tokio::task::spawn_blocking(move || {
                        let chunks = store.load_doc(&doc.to_string()).map_err(|e| e.to_string());
                        let _ = tx.send(Command::Loaded(Input::DocLoaded { doc, chunks }));
                    });
                }
                Effect::LoadSyncState { doc, storage_id } => {
                    let store = Arc::clone(&self.store);
                    let tx = self.commands.clone();
                    tokio::task::spawn_blocking(move || {
                        let state = store
                            .sync_state(storage_id.as_str(), &doc.to_string())
                            .ok()
                            .flatten();
                        let _ = tx.send(Command::Loaded(Input::SyncStateLoaded {
                            doc,
                            storage_id,
                            state,
                        }));
                    });
                }
                Effect::Write { id, op } => {
                    let tx = self.commands.clone();
                    let done = move |result: Result<(), String>| {
                        let _ = tx.send(Command::WriteDone { id, result });
                    };
                    match op {
                        WriteOp::AppendChanges { doc, bytes } => self
                            .store
                            .append_changes(&doc.to_string(), bytes)
                            .on_complete(move |r| done(r.map(|_| ()).map_err(|e| e.to_string()))),
                        WriteOp::Compact { doc, snapshot } => self
                            .store
                            .replace_with_snapshot(&doc.to_string(), snapshot)
                            .on_complete(move |r| done(r.map(|_| ()).map_err(|e| e.to_string()))),
                        WriteOp::PutSyncState {
                            doc,
                            storage_id,
                            state,
                        } => self
                            .store
                            .put_sync_state(storage_id.as_str(), &doc.to_string(), state)
                            .on_complete(move |r| done(r.map_err(|e| e.to_string()))),
                    }
                }
                Effect::DocChanged { doc, .. } => {
                    let _ = self.events.send(ClientEvent::DocChanged { doc });
                }
                Effect::EditDone { token, result, .. } => {
                    if let Some(reply) = self.edits.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                Effect::DocUnavailable { doc, .. } => {
                    let _ = self.events.send(ClientEvent::DocUnavailable { doc });
                }
                Effect::Refused { reason, detail, .. } => {
                    tracing::info!(reason, detail, "sync refused");
                }
            }
        }
        if self.engine.remote_peer_id(CONN).is_some() && !self.joined_announced {
            self.joined_announced = true;
            let _ = self.events.send(ClientEvent::Joined);
        }
        out
    }
}

enum Out {
    Frame(Vec<u8>),
    Close(u16, String),
}
